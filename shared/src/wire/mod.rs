//! The wire contract of `docs/protocol.md`: client frames in ([`request`]), server frames out
//! ([`frames`]). Plain Rust over the domain's values; no AWS type.
pub mod frames;
pub mod request;
