//! A send's rules as plain functions: what it writes to the message and both conversation
//! entries, which connections hear about a change, which profiles a conversation shows. No
//! I/O; the flows in [`crate::flows`] read a [`Snapshot`], call these, and write what they
//! return.

use crate::domain::connection::{ConnectionRecord, RateClaim, Registry, Target};
use crate::domain::ids::new_message_id_after;
use crate::domain::inbox::Entry;
use crate::domain::message::{ChatType, MediaInfo, Message, Profile};
use crate::domain::moderation::Screening;
use std::collections::HashMap;

/// How long an idempotency marker lives by default (`IDEMPOTENCY_TTL_SECONDS`): 7 days.
pub const DEFAULT_MARKER_TTL_SECS: i64 = 7 * 86_400;

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
    /// The asking user's sends per rate window, as (window, count): their rate counter, read
    /// in the same request (see [`RateClaim`]).
    pub sender_sends: Vec<(i64, u64)>,
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
    /// The sender's rate limit (per user), checked and counted in the same write.
    pub rate: Option<RateClaim>,
}

impl SendCommit {
    /// Sets the clock the marker's expiry is judged by, and the marker's lifetime.
    pub fn with_marker_ttl(mut self, now_s: i64, ttl_secs: i64) -> Self {
        self.now_s = now_s;
        self.marker_expires_at = now_s + ttl_secs;
        self
    }

    /// Counts this send against its user's rate limit, in the same write.
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

/// What a send carries, already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub chat_type: ChatType,
    pub content: String,
    pub media: Option<MediaInfo>,
    pub client_msg_id: Option<String>,
    /// What moderation made of it (a text's check, before the commit).
    pub screening: Screening,
}

/// The conversation's newest message id as the entries know it.
pub fn last_id(snap: &Snapshot) -> Option<&str> {
    [&snap.mine, &snap.theirs]
        .into_iter()
        .flatten()
        .filter_map(|e| e.last.as_ref().map(|m| m.id.as_str()))
        .max()
}

/// The profiles a conversation's frames show: each user's latest handshake (their registry),
/// else what the conversation stored, else for the sender their connection's.
pub fn profiles(snap: &Snapshot, me: &ConnectionRecord, peer: &str) -> HashMap<String, Profile> {
    let pick = |user: &str| -> Option<Profile> {
        snap.registry(user)
            .and_then(|r| r.profile.clone())
            .or_else(|| snap.profiles.get(user).cloned())
    };
    let mine = pick(&me.user).unwrap_or_else(|| me.profile.clone());
    let theirs = pick(peer)
        .or_else(|| snap.mine.as_ref().map(|e| e.peer_profile.clone()))
        .unwrap_or_default();
    HashMap::from([(me.user.clone(), mine), (peer.to_owned(), theirs)])
}

/// Everything one send writes, from one snapshot: the message (its `seq` the sender's next
/// count, its id from `arrived_ms`, when API Gateway received the frame), both entries with
/// the version moved on, and the profiles the conversation shows out of date.
///
/// Ids, and so the conversation's order, follow arrival, not commit: a send that arrived
/// earlier but commits after a later one (frames are handled concurrently) sorts before it.
/// Then the entries keep the newer message as their `last`.
pub fn plan_send(
    me: &ConnectionRecord,
    peer: &str,
    snap: &Snapshot,
    draft: &Draft,
    arrived_ms: i64,
) -> SendCommit {
    let mine = snap
        .mine
        .clone()
        .unwrap_or_else(|| Entry::empty(&me.user, peer));
    let theirs = snap
        .theirs
        .clone()
        .unwrap_or_else(|| Entry::empty(peer, &me.user));
    let seq = mine.sent + 1;
    let ver = mine.ver.max(theirs.ver) + 1;
    let message = Message {
        id: new_message_id_after(arrived_ms, last_id(snap)),
        app_sid: me.app_sid.clone(),
        sender: me.user.clone(),
        receiver: peer.to_owned(),
        chat_type: draft.chat_type,
        content: draft.content.clone(),
        created_at_ms: arrived_ms,
        client_msg_id: draft.client_msg_id.clone(),
        media: draft.media.clone(),
        seq: Some(seq),
        conv_seq: Some(ver),
        recalled: false,
        screening: draft.screening.clone(),
    };
    let shown = profiles(snap, me, peer);
    // The entries show the conversation's newest message, which is this one unless a send
    // that arrived later has committed first.
    let newest = |e: &Entry| match &e.last {
        Some(last) if last.id > message.id => Some(last.clone()),
        _ => Some(message.clone()),
    };
    // Never backwards, even if this instance's clock is behind the last writer's.
    let updated_at_ms = arrived_ms.max(mine.updated_at_ms).max(theirs.updated_at_ms);
    let sender = Entry {
        last: newest(&mine),
        updated_at_ms,
        sent: seq,
        // Whoever writes has read everything before their own message.
        read_seq: mine.peer_sent,
        peer_profile: shown[peer].clone(),
        ver,
        ..mine
    };
    let receiver = Entry {
        last: newest(&theirs),
        updated_at_ms,
        peer_sent: seq,
        peer_profile: shown[&me.user].clone(),
        ver,
        ..theirs
    };
    let mut stale: Vec<(String, Profile)> = shown
        .into_iter()
        .filter(|(user, p)| snap.profiles.get(user) != Some(p) && *p != Profile::default())
        .collect();
    stale.sort_by(|a, b| a.0.cmp(&b.0));
    SendCommit {
        message,
        sender_was: snap.mine.as_ref().map(|e| e.ver),
        receiver_was: snap.theirs.as_ref().map(|e| e.ver),
        sender,
        receiver,
        profiles: stale,
        now_s: 0,
        marker_expires_at: 0,
        rate: None,
    }
    .with_marker_ttl(arrived_ms / 1000, DEFAULT_MARKER_TTL_SECS)
}

/// What a text was submitted as: a replaced one's fingerprint, else the fingerprint of what is
/// stored (the same as what was sent).
fn submitted(screening: &Screening, content: &str) -> String {
    match screening {
        Screening::Replaced { submitted } => submitted.clone(),
        _ => crate::domain::moderation::fingerprint(content),
    }
}

/// Whether a stored message (found through its idempotency marker) is what `draft` would
/// store for `peer`: same kind, content (as submitted: a webhook's replacement is compared by
/// the text the client sent), poster and receiver. A recalled or taken-down message matches
/// whatever was sent (its content is gone), so a retry after it is still answered with it.
pub fn same_send(stored: &Message, draft: &Draft, peer: &str) -> bool {
    let poster = |m: Option<&MediaInfo>| m.and_then(|m| m.poster.clone());
    stored.receiver == peer
        && stored.chat_type == draft.chat_type
        && (stored.recalled
            || stored.blocked()
            || (submitted(&stored.screening, &stored.content)
                == submitted(&draft.screening, &draft.content)
                && poster(stored.media.as_ref()) == poster(draft.media.as_ref())))
}

/// Who hears about a change in the conversation between `me` and `peer`: every live user
/// connection of both, and the conversation connections opened on this conversation. The
/// connection `me` is on is always included (a connection from before the registry existed
/// is in none).
pub fn audience(snap: &Snapshot, me: &ConnectionRecord, peer: &str, now_s: i64) -> Vec<Target> {
    let mut out = listeners(snap, &me.user, peer, now_s);
    if !out
        .iter()
        .any(|p| p.connection.connection_id == me.connection_id)
    {
        out.push(Target {
            user: me.user.clone(),
            connection: me.registry_entry(),
        });
    }
    out
}

/// The live connections of the conversation between `a` and `b` (their registries, as read in
/// `snap`): every user connection of both, and the conversation connections opened on it.
pub fn listeners(snap: &Snapshot, a: &str, b: &str, now_s: i64) -> Vec<Target> {
    let mut out = Vec::new();
    for (user, other) in [(a, b), (b, a)] {
        let Some(registry) = snap.registry(user) else {
            continue;
        };
        out.extend(
            registry
                .live(now_s)
                .filter(|e| e.is_user_connection() || e.is_conversation_with(other))
                .map(|e| Target {
                    user: user.to_owned(),
                    connection: e.clone(),
                }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::connection::RegistryEntry;

    fn record(cid: &str, user: &str, friend: Option<&str>) -> ConnectionRecord {
        ConnectionRecord {
            connection_id: cid.into(),
            app_sid: "app".into(),
            user: user.into(),
            friend: friend.map(str::to_owned),
            profile: Profile {
                name: format!("token-{user}"),
                avatar: String::new(),
            },
            connected_at_ms: 1_000,
            expires_at: 100,
            registered: true,
            sends: Vec::new(),
            token_expires_at: None,
            openid: None,
        }
    }

    fn entry(cid: &str, friend: Option<&str>, exp: i64) -> RegistryEntry {
        RegistryEntry {
            connection_id: cid.into(),
            friend: friend.map(str::to_owned),
            connected_at_ms: 1_000,
            expires_at: exp,
        }
    }

    fn draft() -> Draft {
        Draft {
            chat_type: ChatType::Text,
            content: "hi".into(),
            media: None,
            client_msg_id: Some("k".into()),
            screening: Default::default(),
        }
    }

    #[test]
    fn a_first_send_creates_both_entries_and_a_later_one_counts_on() {
        // GIVEN a conversation without entries
        let me = record("a1", "111", None);
        let first = plan_send(&me, "222", &Snapshot::default(), &draft(), 5_000);
        // THEN the message is the sender's first, both entries are new, the receiver has one
        // unread and the sender none
        assert_eq!(first.message.seq, Some(1));
        assert_eq!((first.sender_was, first.receiver_was), (None, None));
        assert_eq!((first.sender.sent, first.sender.unread()), (1, 0));
        assert_eq!((first.receiver.peer_sent, first.receiver.unread()), (1, 1));
        assert_eq!(first.sender.ver, first.receiver.ver);
        // WHEN the peer has since sent three and read one of ours, and we send again
        let snap = Snapshot {
            mine: Some(Entry {
                peer_sent: 3,
                read_seq: 1,
                peer_read_id: Some("x".into()),
                ..first.sender.clone()
            }),
            theirs: Some(Entry {
                sent: 3,
                ..first.receiver.clone()
            }),
            ..Snapshot::default()
        };
        let next = plan_send(&me, "222", &snap, &draft(), 6_000);
        // THEN our count and theirs move on, we have read their three, versions are checked
        assert_eq!(next.message.seq, Some(2));
        assert_eq!(next.sender.read_seq, 3, "a sender has read all before");
        assert_eq!(next.sender.peer_read_id.as_deref(), Some("x"));
        assert_eq!(next.receiver.peer_sent, 2);
        assert_eq!(next.receiver.sent, 3);
        assert_eq!(next.sender_was, Some(first.sender.ver));
        assert_eq!(next.sender.ver, first.sender.ver + 1);
        assert!(next.message.id > first.message.id);
    }

    #[test]
    fn an_earlier_arrival_committed_later_sorts_before_and_the_entries_keep_the_newest() {
        // GIVEN a message that arrived at 9 s and is stored
        let me = record("a1", "111", None);
        let later = plan_send(&me, "222", &Snapshot::default(), &draft(), 9_000);
        let snap = Snapshot {
            mine: Some(later.sender.clone()),
            theirs: Some(later.receiver.clone()),
            ..Snapshot::default()
        };
        // WHEN one that arrived at 4 s commits after it
        let earlier = plan_send(&me, "222", &snap, &draft(), 4_000);
        // THEN it sorts before it, is counted, and both entries still show the newest
        assert!(earlier.message.id < later.message.id);
        assert_eq!(earlier.message.created_at_ms, 4_000);
        assert_eq!(earlier.message.seq, Some(2));
        assert_eq!(earlier.sender.last, later.sender.last);
        assert_eq!(earlier.receiver.last, later.receiver.last);
        assert_eq!(
            (earlier.receiver.peer_sent, earlier.receiver.unread()),
            (2, 2)
        );
        assert_eq!(
            earlier.sender.updated_at_ms, 9_000,
            "activity never moves back"
        );
        // AND a message that arrived after both is their last
        let snap = Snapshot {
            mine: Some(earlier.sender.clone()),
            theirs: Some(earlier.receiver.clone()),
            ..Snapshot::default()
        };
        let next = plan_send(&me, "222", &snap, &draft(), 9_001);
        assert_eq!(next.sender.last.as_ref(), Some(&next.message));
    }

    #[test]
    fn profiles_come_from_the_latest_handshake_and_stale_ones_are_rewritten() {
        // GIVEN the peer's registry with a new name, and the conversation with the old one
        let me = record("a1", "111", None);
        let snap = Snapshot {
            registries: vec![Registry {
                user: "222".into(),
                profile: Some(Profile {
                    name: "new".into(),
                    avatar: String::new(),
                }),
                entries: vec![],
            }],
            profiles: HashMap::from([(
                "222".to_string(),
                Profile {
                    name: "old".into(),
                    avatar: String::new(),
                },
            )]),
            ..Snapshot::default()
        };
        let plan = plan_send(&me, "222", &snap, &draft(), 1);
        // THEN both stale profiles are written, and the entries show each other's
        let names: Vec<(&str, &str)> = plan
            .profiles
            .iter()
            .map(|(u, p)| (u.as_str(), p.name.as_str()))
            .collect();
        assert_eq!(names, [("111", "token-111"), ("222", "new")]);
        assert_eq!(plan.sender.peer_profile.name, "new");
        assert_eq!(plan.receiver.peer_profile.name, "token-111");
    }

    #[test]
    fn the_audience_is_both_users_connections_minus_other_conversations() {
        // GIVEN A with a user connection, a connection on this conversation, one on another,
        // one expired; B with a user connection and one on this conversation
        let me = record("a-user", "111", None);
        let snap = Snapshot {
            registries: vec![
                Registry {
                    user: "111".into(),
                    profile: None,
                    entries: vec![
                        entry("a-user", None, 100),
                        entry("a-conv", Some("222"), 100),
                        entry("a-other", Some("333"), 100),
                        entry("a-old", None, 5),
                    ],
                },
                Registry {
                    user: "222".into(),
                    profile: None,
                    entries: vec![
                        entry("b-user", None, 100),
                        entry("b-conv", Some("111"), 100),
                    ],
                },
            ],
            ..Snapshot::default()
        };
        let ids: Vec<String> = audience(&snap, &me, "222", 10)
            .into_iter()
            .map(|p| format!("{}:{}", p.user, p.connection.connection_id))
            .collect();
        assert_eq!(
            ids,
            ["111:a-user", "111:a-conv", "222:b-user", "222:b-conv"]
        );
        // AND a connection from before the registry still hears itself
        let legacy = record("legacy", "111", Some("222"));
        let out = audience(&Snapshot::default(), &legacy, "222", 10);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].connection.friend.as_deref(), Some("222"));
    }
}
