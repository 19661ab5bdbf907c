//! Identifiers and keys: accounts, conversations, message ids (ULIDs) and the cursors clients
//! page with. Plain Rust.

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
    /// The conversation whose [`Conversation::key`] is `key` (`None` for any other key).
    pub fn parse_key(key: &str) -> Option<Self> {
        let mut parts = key.strip_prefix("c#")?.split('#');
        let (app, a, b) = (parts.next()?, parts.next()?, parts.next()?);
        let ok = parts.next().is_none() && !app.is_empty() && valid_ident(a) && valid_ident(b);
        let c = ok.then(|| Conversation::new(app, a, b))?;
        (c.key() == key).then_some(c)
    }
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

/// A position in a conversation list: `<updated_at zero-padded to 15 digits>#<peer>`.
/// Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor(String);

impl ListCursor {
    pub fn of(updated_at_ms: i64, peer: &str) -> Self {
        ListCursor(format!("{:015}#{peer}", updated_at_ms.max(0)))
    }
    /// Accepts only what [`ListCursor::of`] makes.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, peer) = s.split_once('#')?;
        (ms.len() == 15 && ms.bytes().all(|b| b.is_ascii_digit()) && valid_ident(peer))
            .then(|| ListCursor(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new message id for a message created at `now_ms`: its first 10 characters are the time,
/// the other 16 random, so ids sort by time and ties in the same millisecond fall either way.
pub fn new_message_id(now_ms: i64) -> String {
    ulid_at(now_ms).to_string()
}

/// The id of a message that arrived at `arrived_ms`, in a conversation whose newest message is
/// `newest`. Ids sort by arrival: an earlier arrival that commits after a later one sorts
/// before it. Within one millisecond, ids follow the order of commits: when `newest` arrived
/// in the same millisecond and sorts after the new id, the new one is `newest` plus one in its
/// random part.
pub fn new_message_id_after(arrived_ms: i64, newest: Option<&str>) -> String {
    let id = ulid_at(arrived_ms);
    match newest.and_then(|a| ulid::Ulid::from_string(a).ok()) {
        Some(prev) if prev.timestamp_ms() == id.timestamp_ms() && id <= prev => {
            prev.increment().unwrap_or(id).to_string()
        }
        _ => id.to_string(),
    }
}

fn ulid_at(now_ms: i64) -> ulid::Ulid {
    let ms = u64::try_from(now_ms).unwrap_or(0);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    ulid::Ulid::from_datetime(t)
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
    fn conversation_keys_read_back_and_nothing_else_does() {
        let c = Conversation::new("demo", "bob", "ann");
        assert_eq!(Conversation::parse_key(&c.key()), Some(c));
        for bad in [
            "c#demo#bob#ann",
            "c#demo#ann",
            "i#demo#ann#bob",
            "c##ann#bob",
            "c#demo#ann#bob#x",
        ] {
            assert_eq!(Conversation::parse_key(bad), None, "{bad}");
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
    fn ids_follow_arrival_and_within_a_millisecond_the_order_of_commits() {
        // GIVEN a stored message that arrived at t + 5 ms
        let t = 1_700_000_000_000;
        let newest = new_message_id(t + 5);
        // WHEN one that arrived earlier commits after it THEN it sorts before it
        assert!(new_message_id_after(t, Some(&newest)) < newest);
        // WHEN one of the same millisecond commits after it THEN it sorts after it
        for _ in 0..50 {
            assert!(new_message_id_after(t + 5, Some(&newest)) > newest);
        }
        // AND a later arrival, or garbage, is just the arrival's
        assert!(new_message_id_after(t + 6, Some(&newest)) > newest);
        let plain = new_message_id_after(t, Some("garbage"));
        assert!(plain.starts_with(&new_message_id(t)[..10]));
    }

    #[test]
    fn list_cursors_sort_by_time_and_accept_only_their_own_shape() {
        let a = ListCursor::of(1_700_000_000_000, "111");
        let b = ListCursor::of(1_700_000_000_001, "000");
        assert!(a.as_str() < b.as_str());
        assert_eq!(a.as_str(), "001700000000000#111");
        assert_eq!(ListCursor::parse(a.as_str()), Some(a));
        for bad in [
            "",
            "1#111",
            "00170000000000x#111",
            "001700000000000#a#b",
            "001700000000000#",
        ] {
            assert!(ListCursor::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn cursors_accept_only_canonical_ulids() {
        let id = new_message_id(1_700_000_000_000);
        assert_eq!(Cursor::parse(&id).unwrap().as_str(), id);
        assert!(Cursor::parse("not-a-cursor").is_none());
        assert!(Cursor::parse(&id.to_lowercase()).is_none());
        assert!(Cursor::parse("").is_none());
    }
}
