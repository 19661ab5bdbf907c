//! Everything the chat Lambdas share. `ls` shows the layers, from the outside in:
//!
//! - [`entrypoints`]: Lambda events in, a status out, and the wiring each function builds once
//!   per cold start. The only module that knows Lambda event types.
//! - [`adapters`]: DynamoDB (one file per port group), S3 with its POST-policy signing, API
//!   Gateway `@connections`, Secrets Manager, WeChat's server API. Tested against the real
//!   local servers (and the fake WeChat API) in `tests/`.
//! - [`flows`]: `$connect`, `$disconnect` and every frame on `$default`, each a list of named
//!   steps over the narrow traits in [`ports`]. No AWS types; unit-tested with fakes.
//! - [`wire`]: the protocol of `docs/protocol.md`, frames in and out.
//! - [`domain`]: values, keys and rules (what a send writes, who hears it, media limits,
//!   tokens). Plain Rust.
//! - [`config`] (typed, loaded once, with the table of variables), [`error`] (one enum and
//!   what a client may see of it) and [`clock`] (the system clock, read in one place) serve
//!   every layer.
//!
//! Nothing in `domain`, `wire`, `ports` or `flows` imports an AWS crate.
pub mod adapters;
pub mod clock;
pub mod config;
pub mod domain;
pub mod entrypoints;
pub mod error;
pub mod flows;
pub mod ports;
pub mod wire;

#[cfg(test)]
pub(crate) mod fakes;

pub use config::Config;
pub use error::{Error, Result};
