//! A user's inbox: one entry per conversation, listed by last activity. Plain Rust.

use crate::domain::ids::ListCursor;
use crate::domain::message::{Message, Profile};

/// One user's side of one conversation: what the conversation list shows. Both users' entries
/// are written together by every send and carry the same `ver`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub user: String,
    pub peer: String,
    /// The conversation's newest message (a copy; recalled in place if it is recalled).
    pub last: Option<Message>,
    pub updated_at_ms: i64,
    /// How many messages `user` has sent in this conversation.
    pub sent: u64,
    /// How many messages `peer` has sent (copied from the peer's sends).
    pub peer_sent: u64,
    /// The `seq` of the peer's message `user` has read up to.
    pub read_seq: u64,
    /// The newest of `user`'s messages that `peer` has read.
    pub peer_read_id: Option<String>,
    /// The peer's profile as of the conversation's last message.
    pub peer_profile: Profile,
    /// The conversation's version: every send moves it on both entries.
    pub ver: u64,
}

impl Entry {
    /// A conversation not yet in the list (no message since the inbox existed).
    pub fn empty(user: &str, peer: &str) -> Self {
        Entry {
            user: user.to_owned(),
            peer: peer.to_owned(),
            ..Entry::default()
        }
    }
    /// The peer's messages `user` has not read.
    pub fn unread(&self) -> u64 {
        self.peer_sent.saturating_sub(self.read_seq)
    }
    /// Sort key of the conversation list: last activity, then peer (so it is unique).
    pub fn activity(&self) -> String {
        ListCursor::of(self.updated_at_ms, &self.peer)
            .as_str()
            .to_owned()
    }
}

/// One page of a user's conversation list, most recent first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub entries: Vec<Entry>,
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_is_the_peers_count_past_what_was_read() {
        let e = Entry {
            peer_sent: 7,
            read_seq: 4,
            ..Entry::empty("a", "b")
        };
        assert_eq!(e.unread(), 3);
        assert_eq!(Entry::empty("a", "b").unread(), 0);
        assert_eq!(e.activity(), ListCursor::of(0, "b").as_str());
    }
}
