//! Connections: the record of one, a user's registry of all of theirs, the send rate limit
//! per user, and the connections a change is posted to. Plain Rust.

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
    /// Messages sent from this connection per rate window, as (window, count), as this
    /// function instance counted them (the limit itself counts per user; see [`RateClaim`]).
    pub sends: Vec<(i64, u64)>,
    /// When the token the connection was opened with expires (epoch s): a frame after it is
    /// refused with `token_expired` and the connection closed. `None` on records written
    /// before it was kept.
    pub token_expires_at: Option<i64>,
    /// The user's WeChat openid in this app, when they logged in through `/login` and content
    /// security needs it (`$connect` reads it from the identity items).
    pub openid: Option<String>,
}

/// Length of a send rate window (`MaxSendsPerMinute`).
pub const SEND_RATE_WINDOW_SECS: i64 = 60;

/// When a count of `window` may go (epoch s, the connections table's TTL): a window after it
/// ends, so the count a send reads is never one DynamoDB already swept.
pub fn count_expires_at(window: i64) -> i64 {
    (window + 2) * SEND_RATE_WINDOW_SECS
}

/// The window a moment (epoch s) falls in.
pub fn send_window(now_s: i64) -> i64 {
    now_s.div_euclid(SEND_RATE_WINDOW_SECS)
}

/// A send's claim on its user's rate limit (per app and account, whatever the connection, so
/// a reconnect starts no new count), written in the send's transaction: the user's count for
/// `window` goes up by one unless it has reached `max` (then nothing of the send is written),
/// and the counts of older windows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateClaim {
    pub app_sid: String,
    pub user: String,
    pub window: i64,
    pub max: u64,
    /// Older windows the counter still holds (removed by this write).
    pub stale: Vec<i64>,
}

impl RateClaim {
    /// The claim a send by `user` at `now_s` makes, at most `max` per window, given the user's
    /// counts as last read (`sends`: (window, count)).
    pub fn new(app_sid: &str, user: &str, sends: &[(i64, u64)], now_s: i64, max: u64) -> Self {
        let window = send_window(now_s);
        RateClaim {
            app_sid: app_sid.to_owned(),
            user: user.to_owned(),
            window,
            max,
            stale: sends
                .iter()
                .map(|(w, _)| *w)
                .filter(|w| *w < window)
                .collect(),
        }
    }

    /// Whether `sends` (as read) already hold `max` sends in this claim's window.
    pub fn exhausted(&self, sends: &[(i64, u64)]) -> bool {
        sent_in(sends, self.window) >= self.max
    }
}

/// Work besides sends that a user may do a limited number of times per rate window, each
/// counted with a conditional write of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metered {
    /// Upload tickets (`MaxUploadsPerMinute`): each may bring an upload and a thumbnail run.
    Uploads,
    /// Recalls, of an already recalled message too (`MaxRecallsPerMinute`): each is posted to
    /// both users' connections.
    Recalls,
    /// Duplicate sends told to every connection again (`MaxSendsPerMinute`): each is posted to
    /// both users' connections.
    Resends,
    /// `subscribe` frames (`MaxSendsPerMinute`): each is a write.
    Subscribes,
}

impl Metered {
    pub fn name(self) -> &'static str {
        match self {
            Metered::Uploads => "uploads",
            Metered::Recalls => "recalls",
            Metered::Resends => "resends",
            Metered::Subscribes => "subscribes",
        }
    }
}

/// The count of `window` among (window, count) pairs.
pub fn sent_in(sends: &[(i64, u64)], window: i64) -> u64 {
    sends
        .iter()
        .find(|(w, _)| *w == window)
        .map_or(0, |(_, n)| *n)
}

impl ConnectionRecord {
    /// Whether the connection's token has expired at `now_s`.
    pub fn token_expired(&self, now_s: i64) -> bool {
        self.token_expires_at.is_some_and(|exp| now_s >= exp)
    }

    /// Messages this connection sent in `window`, as this instance counted them: a lower bound
    /// of its user's count, so a send it refuses would be refused by the user's limit too.
    pub fn sent_in(&self, window: i64) -> u64 {
        sent_in(&self.sends, window)
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
