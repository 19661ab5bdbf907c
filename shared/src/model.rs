//! Domain values and the storage keys derived from them. Plain Rust, no AWS types.

use std::collections::HashMap;
use std::fmt;

/// Longest account (phone) or app id accepted.
pub const MAX_IDENT_LEN: usize = 64;

/// Accounts and app ids: 1..=64 of `A-Z a-z 0-9 _ . @ + -`. Anything else (notably `#`, the
/// key separator) is refused, so keys built from them can never collide across tenants.
pub fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_IDENT_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'+' | b'-'))
}

/// Message kinds, numbered as in the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatType {
    Text = 0,
    Image = 1,
    Video = 2,
}

impl ChatType {
    pub fn from_i64(n: i64) -> Option<Self> {
        match n {
            0 => Some(ChatType::Text),
            1 => Some(ChatType::Image),
            2 => Some(ChatType::Video),
            _ => None,
        }
    }
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// One 1:1 conversation inside one app. Both participants derive the same key, and the app id
/// is part of it, so tenants never share a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conversation {
    pub app_sid: String,
    a: String,
    b: String,
}

impl Conversation {
    /// The conversation between two (already validated) accounts of one app.
    pub fn new(app_sid: &str, x: &str, y: &str) -> Self {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        Conversation {
            app_sid: app_sid.to_owned(),
            a: a.to_owned(),
            b: b.to_owned(),
        }
    }
    /// Partition key of the conversation: `c#<app>#<lower account>#<higher account>`.
    pub fn key(&self) -> String {
        format!("c#{}#{}#{}", self.app_sid, self.a, self.b)
    }
    pub fn members(&self) -> [&str; 2] {
        [&self.a, &self.b]
    }
}

/// Who is on a connection: taken from the verified token at `$connect`, never from frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub connection_id: String,
    pub app_sid: String,
    /// The authenticated account (`userphone`).
    pub user: String,
    /// The peer of this connection's conversation (`friendphone`).
    pub friend: String,
    pub profile: Profile,
    pub connected_at_ms: i64,
    /// Epoch seconds after which the record is dead even if `$disconnect` never came.
    pub expires_at: i64,
}

impl ConnectionRecord {
    pub fn conversation(&self) -> Conversation {
        Conversation::new(&self.app_sid, &self.user, &self.friend)
    }
}

/// A live connection found for a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub connection_id: String,
    pub user: String,
}

/// Display name and avatar URL of an account, from its token's `name` / `avatar` claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub avatar: String,
}

/// A stored chat message. `id` is a ULID: its text sorts by creation time, then randomly, which
/// gives every conversation one total order that both participants read identically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub app_sid: String,
    pub sender: String,
    pub receiver: String,
    pub chat_type: ChatType,
    pub content: String,
    pub created_at_ms: i64,
    pub client_msg_id: Option<String>,
    /// Set when `content` is a key in the media bucket (an uploaded image or video); `None`
    /// for text and for media sent as an off-site URL.
    pub media: Option<crate::media::MediaInfo>,
}

impl Message {
    pub fn conversation(&self) -> Conversation {
        Conversation::new(&self.app_sid, &self.sender, &self.receiver)
    }
}

/// Result of storing a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Newly stored.
    Stored(Message),
    /// The sender already stored a message with this `client_msg_id`: here it is, unchanged.
    Duplicate(Message),
}

impl Appended {
    pub fn message(&self) -> &Message {
        match self {
            Appended::Stored(m) | Appended::Duplicate(m) => m,
        }
    }
}

/// One page of a conversation, oldest message first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<Message>,
    /// Whether older messages exist before `messages[0]`.
    pub has_more: bool,
    /// Profiles of the participants known so far (a participant who never connected has none).
    pub profiles: HashMap<String, Profile>,
}

/// A history cursor: the id of the oldest message a client has. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    /// Accepts only what this server hands out: a ULID in canonical form.
    pub fn parse(s: &str) -> Option<Self> {
        let u = ulid::Ulid::from_string(s).ok()?;
        (u.to_string() == s).then(|| Cursor(s.to_owned()))
    }
    pub fn from_message_id(id: &str) -> Self {
        Cursor(id.to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new message id for a message created at `now_ms`.
pub fn new_message_id(now_ms: i64) -> String {
    let ms = u64::try_from(now_ms).unwrap_or(0);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    ulid::Ulid::from_datetime(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents_refuse_separators_and_oversize() {
        assert!(valid_ident("13800138000"));
        assert!(valid_ident("wx_app-1.a+b@c"));
        for bad in ["", "a#b", "a b", "中文", "a/b", &"x".repeat(65)] {
            assert!(!valid_ident(bad), "{bad:?} must be refused");
        }
    }

    #[test]
    fn both_sides_share_one_conversation_key_per_app() {
        // GIVEN the same two accounts seen from either side, and in another app
        let ab = Conversation::new("app1", "111", "222");
        let ba = Conversation::new("app1", "222", "111");
        let other_app = Conversation::new("app2", "111", "222");
        // THEN both sides agree and tenants never share a key
        assert_eq!(ab.key(), ba.key());
        assert_eq!(ab.key(), "c#app1#111#222");
        assert_ne!(ab.key(), other_app.key());
    }

    #[test]
    fn message_ids_sort_by_time() {
        let a = new_message_id(1_700_000_000_000);
        let b = new_message_id(1_700_000_000_001);
        assert!(a < b);
        assert_eq!(a.len(), 26);
    }

    #[test]
    fn cursors_accept_only_canonical_ulids() {
        let id = new_message_id(1_700_000_000_000);
        assert_eq!(Cursor::parse(&id).unwrap().as_str(), id);
        assert!(Cursor::parse("not-a-cursor").is_none());
        assert!(Cursor::parse(&id.to_lowercase()).is_none());
        assert!(Cursor::parse("").is_none());
    }

    #[test]
    fn chat_types_are_the_seeds_numbers() {
        assert_eq!(ChatType::from_i64(0), Some(ChatType::Text));
        assert_eq!(ChatType::from_i64(2).map(ChatType::as_u8), Some(2));
        assert_eq!(ChatType::from_i64(3), None);
        assert_eq!(ChatType::from_i64(-1), None);
    }
}
