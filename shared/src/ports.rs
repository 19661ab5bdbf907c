//! Narrow capabilities the domain needs, one trait each, so that every function depends on
//! exactly what it uses (`$disconnect` needs only [`ConnectionRemove`]). The DynamoDB and API
//! Gateway adapters implement them; unit tests use in-memory fakes.

use crate::error::Result;
use crate::media::{ObjectInfo, UploadTicket};
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

/// Reads and copies objects in the media bucket.
pub trait MediaObjects: Send + Sync {
    /// Type and size of `key`, or `None` when there is no such object.
    fn head(&self, key: &str) -> impl Future<Output = Result<Option<ObjectInfo>>> + Send;
    /// Copies `from` to `to` inside the bucket (server side; no bytes pass through here).
    fn copy(&self, from: &str, to: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Signs URLs for the media bucket. Signing is local work: no request is made.
pub trait MediaSigner: Send + Sync {
    /// A presigned PUT (type and length signed) and POST form (exact key and type, a length
    /// range up to `size`) for one upload.
    fn upload_ticket(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        expires: std::time::Duration,
    ) -> impl Future<Output = Result<UploadTicket>> + Send;
    /// Presigned GET URLs, one per key, in order.
    fn download_urls(
        &self,
        keys: &[String],
        expires: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
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
