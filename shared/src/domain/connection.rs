//! Connections: the record of one, a user's registry of all of theirs, the send rate limit
//! counted on the record, and the connections a change is posted to. Plain Rust.

use crate::domain::message::Profile;

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

    /// The live connections that `keep` selects, as posting targets.
    pub fn targets(&self, now_s: i64, keep: impl Fn(&RegistryEntry) -> bool) -> Vec<Target> {
        self.live(now_s)
            .filter(|e| keep(e))
            .map(|e| Target {
                user: self.user.clone(),
                connection: e.clone(),
            })
            .collect()
    }
}

/// A live connection to post to, and whose it is: the sender's own connections included (not
/// to be confused with a conversation's peer, the other account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: String,
    pub connection: RegistryEntry,
}

impl Target {
    pub fn connection_id(&self) -> &str {
        &self.connection.connection_id
    }
}
