//! What the flows need, built once per cold start by the entry points (or by tests, over
//! fakes).

use crate::config::Config;
use crate::domain::media::OwnerKey;
use crate::flows::moderation::Moderation;
use crate::flows::records::RecordCache;
use crate::ports::{
    ConnectionLookup, ConnectionRegister, ConnectionRemove, Inbox, MediaCheckStore, MessageRecall,
    MessageStore, NoticeGrants, TypingThrottle, UsageMeter,
};

/// What a function needs. `$disconnect` uses only `store`; `$default` all of it.
pub struct Deps<S, N = (), M = ()> {
    pub store: S,
    pub notifier: N,
    pub media: M,
    pub config: Config,
    /// Connection records this instance read lately (`$default`).
    pub records: RecordCache,
    /// The text checker and its policy (`$default`; none elsewhere).
    pub moderation: Moderation,
}

/// The media bucket as the domain sees it, with the key that derives owner segments.
pub struct Media<O> {
    pub objects: O,
    pub owner_key: OwnerKey,
}

/// What `$default` needs of storage.
pub trait FrameStore:
    ConnectionLookup
    + ConnectionRegister
    + ConnectionRemove
    + MessageStore
    + Inbox
    + MessageRecall
    + TypingThrottle
    + UsageMeter
    + MediaCheckStore
    + NoticeGrants
{
}
impl<T> FrameStore for T where
    T: ConnectionLookup
        + ConnectionRegister
        + ConnectionRemove
        + MessageStore
        + Inbox
        + MessageRecall
        + TypingThrottle
        + UsageMeter
        + MediaCheckStore
        + NoticeGrants
{
}
