//! The domain flows behind the routes, generic over the ports in [`crate::ports`]; no AWS
//! types. `$connect` and `$disconnect` are [`connect`]; every frame on `$default` goes through
//! [`frame`], which hands each action to a file of its own: [`pages`] (`sync`, `history`),
//! [`media`] (`upload`, and what a send accepts), [`send`], [`list`] (`conversations`),
//! [`read`], [`typing`], [`recall`], [`subscribe`]. [`notify`] is `chat-notify`'s: offline
//! notices from the messages table's stream. [`fanout`] posts and handles 410s; [`records`] is a warm
//! instance's cache of connection records.
pub mod access_token;
pub mod connect;
pub mod deps;
mod fanout;
pub mod frame;
mod list;
pub mod login;
mod media;
pub mod moderation;
pub mod notify;
mod pages;
pub mod push;
mod read;
mod recall;
pub mod recheck;
pub mod records;
pub mod send;
mod subscribe;
pub mod typing;

pub use connect::{connect, disconnect, ConnectOutcome, ConnectRequest};
pub use deps::{Deps, FrameStore, Media};
pub use frame::{on_frame, on_frame_arrived, FrameOutcome};

/// A random duration from `min_ms` to `max_ms` (inclusive): the pause before a retry, so that
/// the writers that met once do not meet again. The randomness is std's per-hasher random keys
/// (no crate of its own for one number).
pub(crate) fn jitter(min_ms: u64, max_ms: u64) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(max_ms);
    std::time::Duration::from_millis(min_ms + h.finish() % (max_ms.saturating_sub(min_ms) + 1))
}

#[cfg(test)]
mod frame_props;
#[cfg(test)]
mod tests;
