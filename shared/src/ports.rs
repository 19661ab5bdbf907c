//! Narrow capabilities the domain needs, one trait each, so that every function depends on
//! exactly what it uses (`$disconnect` needs only [`ConnectionRemove`]). The DynamoDB and API
//! Gateway adapters implement them; unit tests use in-memory fakes.

use crate::error::Result;
use crate::model::{
    Appended, ConnectionRecord, Conversation, Cursor, Message, Page, Peer, Profile,
};
use std::future::Future;

/// Records a new connection (at `$connect`).
pub trait ConnectionRegister: Send + Sync {
    fn register(&self, record: &ConnectionRecord) -> impl Future<Output = Result<()>> + Send;
}

/// Forgets connections. Both calls are idempotent.
pub trait ConnectionRemove: Send + Sync {
    /// At `$disconnect`.
    fn remove(&self, connection_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// When a post answered 410 Gone: removes the record only if the connection was made
    /// before `connected_before_ms`. Returns whether a record was removed.
    fn remove_gone(
        &self,
        connection_id: &str,
        connected_before_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Finds connections.
pub trait ConnectionLookup: Send + Sync {
    /// The record of one connection, if it is registered and not expired.
    fn get(
        &self,
        connection_id: &str,
        now_s: i64,
    ) -> impl Future<Output = Result<Option<ConnectionRecord>>> + Send;
    /// Every live connection opened on `conversation`, by either participant. One request.
    fn in_conversation(
        &self,
        conversation: &Conversation,
        now_s: i64,
    ) -> impl Future<Output = Result<Vec<Peer>>> + Send;
}

/// Keeps the participants' display profiles per conversation.
pub trait ProfileWrite: Send + Sync {
    fn put_profile(
        &self,
        conversation: &Conversation,
        user: &str,
        profile: &Profile,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Stores messages and reads pages of them.
pub trait MessageStore: Send + Sync {
    /// Stores `message` unless its sender already stored one with the same `client_msg_id` in
    /// this conversation, in which case the earlier message comes back unchanged. Atomic.
    fn append(&self, message: &Message) -> impl Future<Output = Result<Appended>> + Send;
    /// The newest `limit` messages (oldest first) plus the participants' profiles.
    fn latest(
        &self,
        conversation: &Conversation,
        limit: usize,
    ) -> impl Future<Output = Result<Page>> + Send;
    /// The `limit` messages just before `before` (oldest first) plus the profiles.
    fn before(
        &self,
        conversation: &Conversation,
        before: &Cursor,
        limit: usize,
    ) -> impl Future<Output = Result<Page>> + Send;
}

/// Why a post to a connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// 410: the connection no longer exists; its record must go.
    #[error("connection gone")]
    Gone,
    /// Anything else (throttling, 5xx, network). Logged; the message stays stored.
    #[error("post failed: {0}")]
    Other(String),
}

/// Posts frames to connected clients (API Gateway's `@connections` API).
pub trait Notifier: Send + Sync {
    fn post(
        &self,
        connection_id: &str,
        frame: &str,
    ) -> impl Future<Output = std::result::Result<(), PostError>> + Send;
}
