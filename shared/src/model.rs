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
    /// A conversation connection's peer (`friendphone`); `None` on a user connection, which
    /// carries all of the user's conversations.
    pub friend: Option<String>,
    pub profile: Profile,
    pub connected_at_ms: i64,
    /// Epoch seconds after which the record is dead even if `$disconnect` never came.
    pub expires_at: i64,
    /// Whether the connection was entered in its user's [`Registry`] (every connection made
    /// since the registry exists; records from before lack it).
    pub registered: bool,
    /// Messages sent per rate window, as (window, count); see [`RateClaim`].
    pub sends: Vec<(i64, u64)>,
}

/// Length of a send rate window (`MaxSendsPerMinute`).
pub const SEND_RATE_WINDOW_SECS: i64 = 60;

/// The window a moment (epoch s) falls in.
pub fn send_window(now_s: i64) -> i64 {
    now_s.div_euclid(SEND_RATE_WINDOW_SECS)
}

/// A send's claim on its connection's rate limit, written in the send's transaction: the
/// connection's count for `window` goes up by one unless it has reached `max` (then nothing
/// of the send is written), and the counts of older windows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateClaim {
    pub connection_id: String,
    pub window: i64,
    pub max: u64,
    /// Older windows the record still counts (removed by this write).
    pub stale: Vec<i64>,
}

impl ConnectionRecord {
    /// Messages this connection sent in `window`, as its record was read.
    pub fn sent_in(&self, window: i64) -> u64 {
        self.sends
            .iter()
            .find(|(w, _)| *w == window)
            .map_or(0, |(_, n)| *n)
    }

    /// The claim a send at `now_s` makes, at most `max` per window.
    pub fn rate_claim(&self, now_s: i64, max: u64) -> RateClaim {
        let window = send_window(now_s);
        RateClaim {
            connection_id: self.connection_id.clone(),
            window,
            max,
            stale: self
                .sends
                .iter()
                .map(|(w, _)| *w)
                .filter(|w| *w < window)
                .collect(),
        }
    }

    /// The connection as its user's registry lists it.
    pub fn registry_entry(&self) -> RegistryEntry {
        RegistryEntry {
            connection_id: self.connection_id.clone(),
            friend: self.friend.clone(),
            connected_at_ms: self.connected_at_ms,
            expires_at: self.expires_at,
        }
    }
}

/// One connection in a user's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub connection_id: String,
    /// As in [`ConnectionRecord::friend`]: `None` for a user connection.
    pub friend: Option<String>,
    pub connected_at_ms: i64,
    /// Epoch seconds; an entry past it is ignored (and pruned at the user's next `$connect`).
    pub expires_at: i64,
}

impl RegistryEntry {
    pub fn live(&self, now_s: i64) -> bool {
        self.expires_at > now_s
    }
    pub fn is_user_connection(&self) -> bool {
        self.friend.is_none()
    }
    /// Whether this is a conversation connection opened on the conversation with `peer`.
    pub fn is_conversation_with(&self, peer: &str) -> bool {
        self.friend.as_deref() == Some(peer)
    }
}

/// Every connection one user holds (of either kind, on any device), read strongly
/// consistently, plus the profile of the user's latest handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    pub user: String,
    pub profile: Option<Profile>,
    pub entries: Vec<RegistryEntry>,
}

impl Registry {
    /// The entries not yet expired.
    pub fn live(&self, now_s: i64) -> impl Iterator<Item = &RegistryEntry> {
        self.entries.iter().filter(move |e| e.live(now_s))
    }
}

/// A live connection to post to, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub user: String,
    pub connection: RegistryEntry,
}

impl Peer {
    pub fn connection_id(&self) -> &str {
        &self.connection.connection_id
    }
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
    /// The sender's count of messages in this conversation, this one included (1, 2, …).
    /// `None` on messages stored before conversation entries existed.
    pub seq: Option<u64>,
    /// Recalled by its sender: `content` is empty and `media` gone.
    pub recalled: bool,
}

impl Message {
    pub fn conversation(&self) -> Conversation {
        Conversation::new(&self.app_sid, &self.sender, &self.receiver)
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
        ListCursor::of(self.updated_at_ms, &self.peer).0
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

/// One page of a user's conversation list, most recent first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub entries: Vec<Entry>,
    pub has_more: bool,
}

/// What one strongly consistent read (one request) tells about a conversation: both users'
/// entries, both registries, the profiles stored in the conversation and, when asked for, one
/// of its messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The asking user's entry, and the peer's.
    pub mine: Option<Entry>,
    pub theirs: Option<Entry>,
    /// The registries of the two users that exist.
    pub registries: Vec<Registry>,
    /// Profiles stored in the conversation's partition (written by conversation connections'
    /// handshakes and by sends).
    pub profiles: HashMap<String, Profile>,
    pub message: Option<Message>,
}

impl Snapshot {
    pub fn registry(&self, user: &str) -> Option<&Registry> {
        self.registries.iter().find(|r| r.user == user)
    }
}

/// Everything one send writes, atomically: the message (with its idempotency marker when it
/// has a `client_msg_id`), both entries, and profiles the conversation has stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCommit {
    pub message: Message,
    /// The sender's entry after the send. Written: `ver`, `sent`, `read_seq`, `last`,
    /// `updated_at`, `peer_profile`.
    pub sender: Entry,
    /// The receiver's entry after the send. Written: `ver`, `peer_sent`, `last`, `updated_at`,
    /// `peer_profile` (its `sent` and `read_seq` only when it is new).
    pub receiver: Entry,
    /// The `ver` both entries must still have (`None`: neither may exist yet).
    pub sender_was: Option<u64>,
    pub receiver_was: Option<u64>,
    pub profiles: Vec<(String, Profile)>,
    /// The handler's clock (epoch s): an idempotency marker whose `expires_at` is not after it
    /// counts as absent (DynamoDB deletes expired items only eventually).
    pub now_s: i64,
    /// When the idempotency marker this send writes expires (epoch s; the table's TTL).
    pub marker_expires_at: i64,
    /// The sending connection's rate limit, checked and counted in the same write.
    pub rate: Option<RateClaim>,
}

impl SendCommit {
    /// Sets the clock the marker's expiry is judged by, and the marker's lifetime.
    pub fn with_marker_ttl(mut self, now_s: i64, ttl_secs: i64) -> Self {
        self.now_s = now_s;
        self.marker_expires_at = now_s + ttl_secs;
        self
    }

    /// Counts this send against its connection's rate limit, in the same write.
    pub fn with_rate(mut self, claim: RateClaim) -> Self {
        self.rate = Some(claim);
        self
    }
}

/// Outcome of [`SendCommit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    Stored,
    /// The sender already stored a message with this `client_msg_id`: here it is; nothing
    /// was written.
    Duplicate(Box<Message>),
    /// An entry's version moved since it was read (a concurrent send in this conversation):
    /// nothing was written; read again and retry.
    Conflict,
    /// The sending connection reached its rate limit for this window: nothing was written.
    RateLimited,
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
