//! Everything the chat Lambdas share.
//!
//! The layering, from the outside in:
//! - [`handlers`]: API Gateway WebSocket events in, `{statusCode}` out. The only module that
//!   knows Lambda event types.
//! - [`chat`]: the domain flows (`connect`, `disconnect`, a frame on `$default`), generic over
//!   the narrow capability traits in [`ports`]. Free of AWS types; unit-tested with fakes.
//! - [`protocol`] and [`model`]: the wire contract (`docs/protocol.md`), validation, keys.
//! - [`inbox`]: what a send writes to the conversation entries and who hears about it.
//! - [`media`]: media keys, limits and the presigned POST policy.
//! - Adapters: [`dynamo`] (DynamoDB), [`s3`] (the media bucket) and [`notify`] (API Gateway
//!   `@connections`), tested
//!   against the real local servers in `tests/`.
pub mod auth;
pub mod chat;
pub mod config;
pub mod dynamo;
pub mod error;
pub mod handlers;
pub mod inbox;
pub mod media;
pub mod model;
pub mod notify;
pub mod ports;
pub mod protocol;
pub mod s3;

#[cfg(test)]
pub(crate) mod fakes;

pub use config::Config;
pub use error::{Error, Result};

#[cfg(test)]
mod frame_props;
