//! In-memory fakes of the ports, for unit tests of the domain flows and handlers. They keep
//! the adapters' semantics: conditional writes, versions, registries, idempotency markers.

use crate::config::Config;
use crate::domain::connection::{ConnectionRecord, Metered, Registry, Target};
use crate::domain::ids::{Conversation, Cursor, ListCursor};
use crate::domain::inbox::{Entry, ListPage};
use crate::domain::message::{Message, Page, Profile};
use crate::domain::send::{Committed, SendCommit, Snapshot};
use crate::error::{Error, Result};
use crate::ports::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

type UserKey = (String, String);

#[derive(Default)]
pub struct State {
    pub connections: HashMap<String, ConnectionRecord>,
    /// connection id → when its typing slot was last taken (ms)
    pub typing_at: HashMap<String, i64>,
    /// (app, user) → registry
    pub registries: HashMap<UserKey, Registry>,
    /// (app, user) → the user's sends per rate window, (window, count)
    pub rate_counters: HashMap<UserKey, Vec<(i64, u64)>>,
    /// (app, user, what, window) → how many were counted
    pub meters: HashMap<(String, String, Metered, i64), u64>,
    /// conversation key → (message id → message)
    pub messages: HashMap<String, BTreeMap<String, Message>>,
    pub profiles: HashMap<(String, String), Profile>,
    /// (conversation, sender, client_msg_id) → the marker's message and when it expires (s)
    pub dedup: HashMap<(String, String, String), (Message, i64)>,
    /// (app, user, peer) → entry, and the seq of the peer_read_id it holds
    pub entries: HashMap<(String, String, String), (Entry, u64)>,
    /// Sends to fail with a version conflict before any is written, as if a concurrent send
    /// had won each time.
    pub conflicts: usize,
    /// When set, every call fails like an unreachable database.
    pub down: bool,
    /// Page reads after a send (`latest_through`) to fail, as if the database went away
    /// right after the write.
    pub failing_pages: usize,
    /// Sends whose transaction is applied but whose answer is lost (a timeout, a broken
    /// connection): the caller cannot tell whether it committed.
    pub lost_answers: usize,
    /// Send transactions to fail without committing (the database refused them).
    pub failing_commits: usize,
    /// Every send transaction applied, by what the adapter's `ClientRequestToken` covers (the
    /// whole commit): DynamoDB answers a replay of one with success and writes nothing.
    pub applied: HashSet<String>,
    /// (app, openid) → account, and (app, account) → openid.
    pub accounts: HashMap<UserKey, String>,
    pub openids: HashMap<UserKey, String>,
    /// appid → its stored access token and last forced refresh.
    pub wechat_tokens: HashMap<String, crate::domain::wechat::StoredToken>,
    /// (app, user, template) → grants of the notice template.
    pub grants: HashMap<(String, String, String), u64>,
    /// trace id → (conversation key, message id): the media checks asked.
    pub traces: HashMap<String, (String, String)>,
    /// message id → (asks, when due) of its pending media check (absent: due an hour after
    /// the message, never asked).
    pub media_asks: HashMap<String, (u32, i64)>,
}

#[derive(Default)]
pub struct FakeStore {
    pub state: Mutex<State>,
}

impl crate::ports::NoticeGrants for FakeStore {
    async fn grant(&self, app_sid: &str, user: &str, template: &str, max: u64) -> Result<u64> {
        self.with(|s| {
            let g = s
                .grants
                .entry((app_sid.into(), user.into(), template.into()))
                .or_default();
            *g = (*g + 1).min(max.max(*g));
            *g
        })
    }

    async fn grants(&self, app_sid: &str, user: &str, template: &str) -> Result<u64> {
        self.with(|s| {
            s.grants
                .get(&(app_sid.into(), user.into(), template.into()))
                .copied()
                .unwrap_or(0)
        })
    }
}

impl MediaCheckStore for FakeStore {
    async fn asked(&self, m: &Message, trace_id: &str, due_s: i64, _keep: i64) -> Result<()> {
        use crate::domain::moderation::Screening;
        self.with(|s| {
            let key = m.conversation().key();
            s.traces
                .insert(trace_id.to_owned(), (key.clone(), m.id.clone()));
            let pending = s
                .messages
                .get(&key)
                .and_then(|c| c.get(&m.id))
                .is_some_and(|m| m.screening == Screening::Pending);
            if pending {
                let asks = s.media_asks.get(&m.id).map_or(0, |a| a.0);
                s.media_asks.insert(m.id.clone(), (asks + 1, due_s));
            }
        })
    }

    async fn traced(&self, trace_id: &str) -> Result<Option<Message>> {
        self.with(|s| {
            let (key, id) = s.traces.get(trace_id)?;
            s.messages.get(key)?.get(id).cloned()
        })
    }

    async fn settle_media(
        &self,
        m: &Message,
        screening: &crate::domain::moderation::Screening,
    ) -> Result<bool> {
        use crate::domain::moderation::Screening;
        self.with(|s| {
            let Some(stored) = s
                .messages
                .get_mut(&m.conversation().key())
                .and_then(|c| c.get_mut(&m.id))
            else {
                return false;
            };
            if stored.screening != Screening::Pending {
                return false;
            }
            stored.screening = screening.clone();
            s.media_asks.remove(&m.id);
            true
        })
    }

    async fn overdue(&self, shard: u8, now_s: i64, limit: usize) -> Result<Vec<PendingCheck>> {
        use crate::domain::moderation::{unchecked_shard, Screening, MEDIA_CHECK_DUE_SECS};
        self.with(|s| {
            let mut due: Vec<(i64, PendingCheck)> = s
                .messages
                .values()
                .flat_map(BTreeMap::values)
                .filter(|m| m.screening == Screening::Pending && unchecked_shard(&m.id) == shard)
                .filter_map(|m| {
                    let (asks, at) = s
                        .media_asks
                        .get(&m.id)
                        .copied()
                        .unwrap_or((0, m.created_at_ms.div_euclid(1000) + MEDIA_CHECK_DUE_SECS));
                    let check = PendingCheck {
                        message: m.clone(),
                        asks,
                    };
                    (at <= now_s).then_some((at, check))
                })
                .collect();
            due.sort_by_key(|(at, _)| *at);
            due.into_iter().take(limit).map(|(_, c)| c).collect()
        })
    }
}

impl FakeStore {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T> {
        let mut s = self.state.lock().unwrap();
        if s.down {
            return Err(Error::Store("connection refused".into()));
        }
        Ok(f(&mut s))
    }
    pub fn message_count(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .messages
            .values()
            .map(BTreeMap::len)
            .sum()
    }
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }
    pub fn has_connection(&self, id: &str) -> bool {
        self.state.lock().unwrap().connections.contains_key(id)
    }
    /// The connection ids in a user's registry.
    pub fn registered(&self, app: &str, user: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .registries
            .get(&(app.to_owned(), user.to_owned()))
            .map(|r| r.entries.iter().map(|e| e.connection_id.clone()).collect())
            .unwrap_or_default()
    }
    /// A user's entry for the conversation with `peer`.
    pub fn entry(&self, app: &str, user: &str, peer: &str) -> Option<Entry> {
        self.state
            .lock()
            .unwrap()
            .entries
            .get(&(app.to_owned(), user.to_owned(), peer.to_owned()))
            .map(|(e, _)| e.clone())
    }
    /// Makes the next `n` page reads after a send fail.
    pub fn fail_pages(&self, n: usize) {
        self.state.lock().unwrap().failing_pages = n;
    }
    /// Makes the next `n` send transactions commit but lose their answer.
    pub fn lose_commit_answers(&self, n: usize) {
        self.state.lock().unwrap().lost_answers = n;
    }
    /// Makes the next `n` send transactions fail without committing.
    pub fn fail_commits(&self, n: usize) {
        self.state.lock().unwrap().failing_commits = n;
    }
    /// Makes the next `n` sends meet a version conflict.
    pub fn conflict_next(&self, n: usize) {
        self.state.lock().unwrap().conflicts = n;
    }
}

fn user_key(app: &str, user: &str) -> UserKey {
    (app.to_owned(), user.to_owned())
}

fn entry_key(app: &str, user: &str, peer: &str) -> (String, String, String) {
    (app.to_owned(), user.to_owned(), peer.to_owned())
}

fn unregister(s: &mut State, app: &str, user: &str, id: &str, pred: impl Fn(i64) -> bool) -> bool {
    let Some(r) = s.registries.get_mut(&user_key(app, user)) else {
        return false;
    };
    let before = r.entries.len();
    r.entries
        .retain(|e| !(e.connection_id == id && pred(e.connected_at_ms)));
    r.entries.len() < before
}

impl ConnectionRegister for FakeStore {
    async fn register(&self, r: &ConnectionRecord) -> Result<()> {
        self.with(|s| {
            s.connections.insert(r.connection_id.clone(), r.clone());
        })
    }
    async fn enroll(&self, r: &ConnectionRecord) -> Result<Registry> {
        self.with(|s| {
            let reg = s
                .registries
                .entry(user_key(&r.app_sid, &r.user))
                .or_insert_with(|| Registry {
                    user: r.user.clone(),
                    ..Registry::default()
                });
            reg.entries.retain(|e| e.connection_id != r.connection_id);
            reg.entries.push(r.registry_entry());
            reg.entries.sort_by(|a, b| {
                (a.connected_at_ms, &a.connection_id).cmp(&(b.connected_at_ms, &b.connection_id))
            });
            reg.profile = Some(r.profile.clone());
            reg.clone()
        })
    }
    async fn prune(&self, app: &str, user: &str, ids: &[String]) -> Result<()> {
        self.with(|s| {
            if let Some(r) = s.registries.get_mut(&user_key(app, user)) {
                r.entries.retain(|e| !ids.contains(&e.connection_id));
            }
        })
    }
}

impl ConnectionRemove for FakeStore {
    async fn remove(&self, id: &str) -> Result<()> {
        self.with(|s| {
            if let Some(r) = s.connections.remove(id) {
                let at = r.connected_at_ms;
                unregister(s, &r.app_sid, &r.user, id, |a| a == at);
            }
        })
    }
    async fn remove_gone(&self, app: &str, peer: &Target, before_ms: i64) -> Result<bool> {
        self.with(|s| {
            let id = peer.connection_id();
            let stale = s
                .connections
                .get(id)
                .is_some_and(|r| r.connected_at_ms < before_ms);
            if stale {
                s.connections.remove(id);
            }
            let at = peer.connection.connected_at_ms;
            let entry = unregister(s, app, &peer.user, id, |a| a == at && a < before_ms);
            stale || entry
        })
    }
}

impl ConnectionLookup for FakeStore {
    async fn get(&self, id: &str, now_s: i64) -> Result<Option<ConnectionRecord>> {
        self.with(|s| {
            s.connections
                .get(id)
                .filter(|r| r.expires_at > now_s)
                .cloned()
        })
    }
    async fn registry(&self, app: &str, user: &str) -> Result<Option<Registry>> {
        self.with(|s| s.registries.get(&user_key(app, user)).cloned())
    }
}

impl TypingThrottle for FakeStore {
    async fn claim_typing(&self, id: &str, now_ms: i64, gap_ms: i64) -> Result<bool> {
        self.with(|s| {
            if !s.connections.contains_key(id) {
                return false;
            }
            match s.typing_at.get(id) {
                Some(at) if *at > now_ms - gap_ms => false,
                _ => {
                    s.typing_at.insert(id.to_owned(), now_ms);
                    true
                }
            }
        })
    }
}

impl UsageMeter for FakeStore {
    async fn claim(
        &self,
        app: &str,
        user: &str,
        what: Metered,
        window: i64,
        max: u64,
    ) -> Result<bool> {
        self.with(|s| {
            let n = s
                .meters
                .entry((app.to_owned(), user.to_owned(), what, window))
                .or_default();
            let below = *n < max;
            if below {
                *n += 1;
            }
            below
        })
    }
}

impl ProfileWrite for FakeStore {
    async fn put_profile(&self, c: &Conversation, user: &str, p: &Profile) -> Result<()> {
        self.with(|s| {
            s.profiles.insert((c.key(), user.to_owned()), p.clone());
        })
    }
}

fn page(s: &State, c: &Conversation, newest_first: Vec<Message>, limit: usize) -> Page {
    let has_more = newest_first.len() > limit;
    let mut messages: Vec<Message> = newest_first.into_iter().take(limit).collect();
    messages.reverse();
    let profiles = c
        .members()
        .iter()
        .filter_map(|u| {
            s.profiles
                .get(&(c.key(), u.to_string()))
                .map(|p| (u.to_string(), p.clone()))
        })
        .collect();
    Page {
        messages,
        has_more,
        profiles,
    }
}

impl MessageStore for FakeStore {
    async fn snapshot(&self, c: &Conversation, me: &str, id: Option<&str>) -> Result<Snapshot> {
        self.with(|s| {
            let [a, b] = c.members();
            let peer = if a == me { b } else { a };
            let app = &c.app_sid;
            Snapshot {
                mine: s
                    .entries
                    .get(&entry_key(app, me, peer))
                    .map(|e| e.0.clone()),
                theirs: s
                    .entries
                    .get(&entry_key(app, peer, me))
                    .map(|e| e.0.clone()),
                registries: [me, peer]
                    .iter()
                    .filter_map(|u| s.registries.get(&user_key(app, u)).cloned())
                    .collect(),
                profiles: c
                    .members()
                    .iter()
                    .filter_map(|u| {
                        s.profiles
                            .get(&(c.key(), u.to_string()))
                            .map(|p| (u.to_string(), p.clone()))
                    })
                    .collect(),
                message: id.and_then(|id| s.messages.get(&c.key())?.get(id).cloned()),
                sender_sends: s
                    .rate_counters
                    .get(&user_key(app, me))
                    .cloned()
                    .unwrap_or_default(),
            }
        })
    }
    async fn commit_send(&self, c: &SendCommit) -> Result<Committed> {
        let token = format!("{c:?}");
        let failing = self.with(|s| {
            let fail = s.failing_commits > 0;
            s.failing_commits = s.failing_commits.saturating_sub(1);
            fail
        })?;
        if failing {
            return Err(Error::Store("transaction refused".into()));
        }
        let applied = self.with(|s| s.applied.contains(&token))?;
        if applied {
            return Ok(Committed::Stored); // a replay of a committed transaction
        }
        let out = self.apply_send(c)?;
        self.with(|s| {
            if out == Committed::Stored {
                s.applied.insert(token);
                if s.lost_answers > 0 {
                    s.lost_answers -= 1;
                    return Err(Error::Store("the answer timed out".into()));
                }
            }
            Ok(out)
        })?
    }

    async fn latest(&self, c: &Conversation, limit: usize) -> Result<Page> {
        self.with(|s| {
            let newest_first = s
                .messages
                .get(&c.key())
                .map(|ms| ms.values().rev().take(limit + 1).cloned().collect())
                .unwrap_or_default();
            page(s, c, newest_first, limit)
        })
    }
    async fn latest_through(&self, c: &Conversation, through: &str, limit: usize) -> Result<Page> {
        {
            let mut s = self.state.lock().unwrap();
            if s.failing_pages > 0 {
                s.failing_pages -= 1;
                return Err(Error::Store("timeout reading the page".into()));
            }
        }
        self.with(|s| {
            let newest_first = s
                .messages
                .get(&c.key())
                .map(|ms| {
                    ms.range(..=through.to_owned())
                        .rev()
                        .take(limit + 1)
                        .map(|(_, m)| m.clone())
                        .collect()
                })
                .unwrap_or_default();
            Page {
                profiles: HashMap::new(),
                ..page(s, c, newest_first, limit)
            }
        })
    }
    async fn before(&self, c: &Conversation, before: &Cursor, limit: usize) -> Result<Page> {
        self.with(|s| {
            let newest_first = s
                .messages
                .get(&c.key())
                .map(|ms| {
                    ms.range(..before.as_str().to_owned())
                        .rev()
                        .take(limit + 1)
                        .map(|(_, m)| m.clone())
                        .collect()
                })
                .unwrap_or_default();
            page(s, c, newest_first, limit)
        })
    }
}

impl FakeStore {
    /// A send's transaction, as the adapter's conditions decide it.
    fn apply_send(&self, c: &SendCommit) -> Result<Committed> {
        self.with(|s| {
            let m = &c.message;
            let conv = m.conversation().key();
            if let Some(cmid) = &m.client_msg_id {
                let key = (conv.clone(), m.sender.clone(), cmid.clone());
                // Expired but not yet swept counts as absent, as the adapter's condition says.
                if let Some((old, _)) = s.dedup.get(&key).filter(|(_, exp)| *exp > c.now_s) {
                    return Committed::Duplicate(Box::new(old.clone()));
                }
            }
            if let Some(claim) = &c.rate {
                let counter = s.rate_counters.get(&user_key(&claim.app_sid, &claim.user));
                if claim.exhausted(counter.map_or(&[], Vec::as_slice)) {
                    return Committed::RateLimited;
                }
            }
            if s.conflicts > 0 {
                s.conflicts -= 1;
                return Committed::Conflict;
            }
            let app = &m.app_sid;
            let ver = |e: &Entry| {
                s.entries
                    .get(&entry_key(app, &e.user, &e.peer))
                    .map(|x| x.0.ver)
            };
            if ver(&c.sender) != c.sender_was || ver(&c.receiver) != c.receiver_was {
                return Committed::Conflict;
            }
            if let Some(claim) = &c.rate {
                let sends = s
                    .rate_counters
                    .entry(user_key(&claim.app_sid, &claim.user))
                    .or_default();
                let count = crate::domain::connection::sent_in(sends, claim.window) + 1;
                sends.retain(|(w, _)| *w != claim.window && !claim.stale.contains(w));
                sends.push((claim.window, count));
            }
            if let Some(cmid) = &m.client_msg_id {
                s.dedup.insert(
                    (conv.clone(), m.sender.clone(), cmid.clone()),
                    (m.clone(), c.marker_expires_at),
                );
            }
            s.messages
                .entry(conv.clone())
                .or_default()
                .insert(m.id.clone(), m.clone());
            // Only the fields a send owns, as the adapter's updates do.
            let (sk, rk) = (
                entry_key(app, &c.sender.user, &c.sender.peer),
                entry_key(app, &c.receiver.user, &c.receiver.peer),
            );
            let mine = s.entries.entry(sk).or_insert_with(|| (c.sender.clone(), 0));
            mine.0 = Entry {
                peer_sent: mine.0.peer_sent,
                peer_read_id: mine.0.peer_read_id.clone(),
                ..c.sender.clone()
            };
            let theirs = s.entries.entry(rk).or_insert_with(|| {
                (
                    Entry {
                        sent: 0,
                        read_seq: 0,
                        ..c.receiver.clone()
                    },
                    0,
                )
            });
            theirs.0 = Entry {
                sent: theirs.0.sent,
                read_seq: theirs.0.read_seq,
                peer_read_id: theirs.0.peer_read_id.clone(),
                ..c.receiver.clone()
            };
            for (user, p) in &c.profiles {
                s.profiles.insert((conv.clone(), user.clone()), p.clone());
            }
            Committed::Stored
        })
    }
}

impl Inbox for FakeStore {
    async fn list(
        &self,
        app: &str,
        user: &str,
        before: Option<&ListCursor>,
        limit: usize,
    ) -> Result<ListPage> {
        self.with(|s| {
            let mut entries: Vec<Entry> = s
                .entries
                .iter()
                .filter(|((a, u, _), _)| a == app && u == user)
                .map(|(_, (e, _))| e.clone())
                .filter(|e| before.is_none_or(|c| e.activity().as_str() < c.as_str()))
                .collect();
            entries.sort_by_key(|e| std::cmp::Reverse(e.activity()));
            let has_more = entries.len() > limit;
            entries.truncate(limit);
            ListPage { entries, has_more }
        })
    }
    async fn mark_read(&self, user: &str, m: &Message) -> Result<(Option<Entry>, bool)> {
        self.with(|s| {
            let seq = m.seq.unwrap_or(0);
            if let Some((theirs, read)) = s.entries.get_mut(&entry_key(&m.app_sid, &m.sender, user))
            {
                if *read < seq {
                    *read = seq;
                    theirs.peer_read_id = Some(m.id.clone());
                }
            }
            match s.entries.get_mut(&entry_key(&m.app_sid, user, &m.sender)) {
                Some((mine, _)) if mine.read_seq < seq => {
                    mine.read_seq = seq;
                    (Some(mine.clone()), true)
                }
                Some((mine, _)) => (Some(mine.clone()), false),
                None => (None, false),
            }
        })
    }
}

impl MessageRecall for FakeStore {
    async fn recall(
        &self,
        c: &Conversation,
        id: &str,
        sender: &str,
        client_msg_id: Option<&str>,
        not_before_ms: i64,
        entry_users: &[String],
    ) -> Result<bool> {
        self.with(|s| {
            let recall = |m: &mut Message| {
                m.recalled = true;
                m.content.clear();
                m.media = None;
            };
            let ok = |m: &Message| m.sender == sender && m.created_at_ms >= not_before_ms;
            if let Some(cmid) = client_msg_id {
                let key = (c.key(), sender.to_owned(), cmid.to_owned());
                if let Some((m, _)) = s.dedup.get_mut(&key).filter(|(m, _)| m.id == id && ok(m)) {
                    recall(m);
                }
            }
            let [a, b] = c.members();
            for user in entry_users {
                let peer = if user == a { b } else { a };
                if let Some((e, _)) = s.entries.get_mut(&entry_key(&c.app_sid, user, peer)) {
                    if let Some(last) = e.last.as_mut().filter(|l| l.id == id && ok(l)) {
                        recall(last);
                    }
                }
            }
            match s.messages.get_mut(&c.key()).and_then(|ms| ms.get_mut(id)) {
                Some(m) if ok(m) => {
                    recall(m);
                    true
                }
                _ => false,
            }
        })
    }
}

/// Records every post; connections in `gone` answer 410, in `failing` a 5xx (always), in
/// `failing_next` a 5xx for their next few posts.
#[derive(Default)]
pub struct FakeNotifier {
    pub posts: Mutex<Vec<(String, String)>>,
    /// Connections closed with `DELETE @connections`.
    pub closed: Mutex<Vec<String>>,
    pub gone: Mutex<HashSet<String>>,
    pub failing: Mutex<HashSet<String>>,
    /// Connection → how many of its next posts fail with a 5xx (then they succeed again).
    pub failing_next: Mutex<HashMap<String, usize>>,
    /// Every post tried, delivered or not, by connection.
    pub attempts: Mutex<Vec<String>>,
}

impl FakeNotifier {
    /// Frames delivered to `id`, parsed.
    pub fn frames_to(&self, id: &str) -> Vec<serde_json::Value> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == id)
            .map(|(_, f)| serde_json::from_str(f).unwrap())
            .collect()
    }
    /// The frames posted to `id`, as sent.
    pub fn raw_frames_to(&self, id: &str) -> Vec<String> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == id)
            .map(|(_, f)| f.clone())
            .collect()
    }
    pub fn clear(&self) {
        self.posts.lock().unwrap().clear();
    }
}

impl ConnectionCloser for FakeNotifier {
    async fn close(&self, id: &str) -> std::result::Result<(), PostError> {
        if self.gone.lock().unwrap().contains(id) {
            return Err(PostError::Gone);
        }
        self.closed.lock().unwrap().push(id.to_owned());
        Ok(())
    }
}

impl Notifier for FakeNotifier {
    async fn post(&self, id: &str, frame: &str) -> std::result::Result<(), PostError> {
        self.attempts.lock().unwrap().push(id.to_owned());
        if self.gone.lock().unwrap().contains(id) {
            return Err(PostError::Gone);
        }
        if self.failing.lock().unwrap().contains(id) {
            return Err(PostError::Other("503".into()));
        }
        if let Some(n) = self
            .failing_next
            .lock()
            .unwrap()
            .get_mut(id)
            .filter(|n| **n > 0)
        {
            *n -= 1;
            return Err(PostError::Other("500".into()));
        }
        self.posts
            .lock()
            .unwrap()
            .push((id.to_owned(), frame.to_owned()));
        Ok(())
    }
}

/// A configuration with the defaults and two table names, for unit tests.
pub fn config() -> Config {
    Config::from_lookup(|k| match k {
        "MESSAGES_TABLE" => Some("m".into()),
        "CONNECTIONS_TABLE" => Some("c".into()),
        _ => None,
    })
    .expect("a valid test configuration")
}

/// A media bucket in memory: objects by key, with the requests made counted.
#[derive(Default)]
pub struct FakeMedia {
    pub objects: Mutex<HashMap<String, crate::domain::media::ObjectInfo>>,
    pub heads: Mutex<usize>,
    pub copies: Mutex<Vec<(String, String)>>,
    /// Keys deleted, in order.
    pub deleted: Mutex<Vec<String>>,
}

impl FakeMedia {
    /// Stores an object as if a client had uploaded it.
    pub fn put(&self, key: &str, content_type: &str, size: u64) {
        self.objects.lock().unwrap().insert(
            key.to_owned(),
            crate::domain::media::ObjectInfo {
                content_type: content_type.to_owned(),
                size,
            },
        );
    }
    pub fn has(&self, key: &str) -> bool {
        self.objects.lock().unwrap().contains_key(key)
    }
    /// The download URL this fake signs for `key`: as long as a real one signed with a
    /// Lambda's session token (about 1.3 KB), so frame budgets are tested at real sizes.
    pub fn url(key: &str) -> String {
        format!(
            "https://s3.test/{key}?X-Amz-Security-Token={}",
            "t".repeat(1200)
        )
    }
}

impl MediaObjects for FakeMedia {
    async fn head(&self, key: &str) -> Result<Option<crate::domain::media::ObjectInfo>> {
        *self.heads.lock().unwrap() += 1;
        Ok(self.objects.lock().unwrap().get(key).cloned())
    }
    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let mut objects = self.objects.lock().unwrap();
        let o = objects
            .get(from)
            .cloned()
            .ok_or_else(|| Error::Corrupt("copy of a missing object".into()))?;
        objects.insert(to.to_owned(), o);
        self.copies
            .lock()
            .unwrap()
            .push((from.to_owned(), to.to_owned()));
        Ok(())
    }
    async fn delete(&self, keys: &[String]) -> Result<()> {
        let mut objects = self.objects.lock().unwrap();
        for key in keys {
            objects.remove(key);
            self.deleted.lock().unwrap().push(key.clone());
        }
        Ok(())
    }
}

impl MediaSigner for FakeMedia {
    async fn upload_ticket(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        _expires: std::time::Duration,
    ) -> Result<crate::domain::media::UploadTicket> {
        Ok(crate::domain::media::UploadTicket {
            put_url: format!("https://s3.test/{key}?put"),
            put_headers: vec![
                ("content-type".into(), content_type.into()),
                ("content-length".into(), size.to_string()),
            ],
            post_url: "https://s3.test/".into(),
            post_fields: vec![("key".into(), key.into())],
        })
    }
    async fn download_urls(
        &self,
        keys: &[String],
        _expires: std::time::Duration,
    ) -> Result<Vec<String>> {
        Ok(keys.iter().map(|k| FakeMedia::url(k)).collect())
    }
}

impl IdentityStore for FakeStore {
    async fn account_of(&self, app_sid: &str, openid: &str) -> Result<Option<String>> {
        self.with(|s| s.accounts.get(&(app_sid.into(), openid.into())).cloned())
    }
    async fn openid_of(&self, app_sid: &str, account: &str) -> Result<Option<String>> {
        self.with(|s| s.openids.get(&(app_sid.into(), account.into())).cloned())
    }
    async fn bind(&self, app_sid: &str, openid: &str, account: &str) -> Result<()> {
        self.with(|s| {
            let (app, openid, account) =
                (app_sid.to_owned(), openid.to_owned(), account.to_owned());
            if let Some(previous) = s
                .openids
                .insert((app.clone(), account.clone()), openid.clone())
            {
                if previous != openid {
                    s.accounts.remove(&(app.clone(), previous));
                }
            }
            if let Some(old) = s
                .accounts
                .insert((app.clone(), openid.clone()), account.clone())
            {
                if old != account {
                    s.openids.remove(&(app, old));
                }
            }
        })
    }
}

impl TokenStore for FakeStore {
    async fn stored_token(&self, appid: &str) -> Result<crate::domain::wechat::StoredToken> {
        self.with(|s| s.wechat_tokens.get(appid).cloned().unwrap_or_default())
    }
    async fn store_token(
        &self,
        appid: &str,
        token: &crate::domain::wechat::AccessToken,
    ) -> Result<bool> {
        self.with(|s| {
            let slot = s.wechat_tokens.entry(appid.to_owned()).or_default();
            let keep = slot
                .token
                .as_ref()
                .is_some_and(|t| t.token != token.token && t.expires_at > token.expires_at);
            if !keep {
                slot.token = Some(token.clone());
            }
            !keep
        })
    }
    async fn claim_refresh(&self, appid: &str, now_ms: i64, lease_ms: i64) -> Result<bool> {
        self.with(|s| {
            let slot = s.wechat_tokens.entry(appid.to_owned()).or_default();
            if slot.refresh_until_ms.is_some_and(|until| until > now_ms) {
                return false;
            }
            slot.refresh_until_ms = Some(now_ms + lease_ms);
            true
        })
    }
    async fn claim_forced_refresh(&self, appid: &str, now: i64, every: i64) -> Result<bool> {
        self.with(|s| {
            let slot = s.wechat_tokens.entry(appid.to_owned()).or_default();
            if slot.forced_at.is_some_and(|at| now - at < every) {
                return false;
            }
            slot.forced_at = Some(now);
            true
        })
    }
}

/// WeChat's API with scripted answers: `sessions` maps a login code to its openid (used once),
/// `phones` a phone code to its number; `valid_tokens` are the access tokens it accepts, and
/// `next_errors` are answered, in order, before anything else. `stable_token` gives `token`
/// (a forced refresh makes a new one, accepted).
#[derive(Default)]
pub struct FakeWeChatApi {
    pub sessions: Mutex<HashMap<String, String>>,
    pub phones: Mutex<HashMap<String, String>>,
    pub valid_tokens: Mutex<HashSet<String>>,
    pub next_errors: Mutex<Vec<crate::domain::wechat::WeChatError>>,
    /// The token `stable_token` gives next, and how many calls it had.
    pub token: Mutex<String>,
    pub token_calls: Mutex<(u32, u32)>,
    /// The URL of every media check asked.
    pub media_checks: Mutex<Vec<String>>,
    /// Every notice sent: (openid, notice).
    pub notices: Mutex<Vec<(String, crate::domain::notice::Rendered)>>,
}

impl FakeWeChatApi {
    fn scripted(&self) -> Option<crate::domain::wechat::WeChatError> {
        let mut e = self.next_errors.lock().unwrap();
        (!e.is_empty()).then(|| e.remove(0))
    }
}

impl WeChat for FakeWeChatApi {
    async fn subscribe_send(
        &self,
        access_token: &str,
        openid: &str,
        notice: &crate::domain::notice::Rendered,
    ) -> std::result::Result<(), crate::domain::wechat::WeChatError> {
        if let Some(e) = self.scripted() {
            return Err(e);
        }
        if !self.valid_tokens.lock().unwrap().contains(access_token) {
            return Err(crate::domain::wechat::WeChatError::InvalidToken(40001));
        }
        self.notices
            .lock()
            .unwrap()
            .push((openid.to_owned(), notice.clone()));
        Ok(())
    }

    async fn code_to_session(
        &self,
        _app: &crate::domain::wechat::WeChatApp,
        code: &str,
    ) -> std::result::Result<crate::domain::wechat::WeChatSession, crate::domain::wechat::WeChatError>
    {
        use crate::domain::wechat::{WeChatError, WeChatSession};
        if let Some(e) = self.scripted() {
            return Err(e);
        }
        match self.sessions.lock().unwrap().remove(code) {
            Some(openid) => Ok(WeChatSession {
                openid,
                unionid: None,
            }),
            None => Err(WeChatError::BadCode(40029)),
        }
    }

    async fn phone_number(
        &self,
        access_token: &str,
        code: &str,
    ) -> std::result::Result<String, crate::domain::wechat::WeChatError> {
        use crate::domain::wechat::WeChatError;
        if let Some(e) = self.scripted() {
            return Err(e);
        }
        if !self.valid_tokens.lock().unwrap().contains(access_token) {
            return Err(WeChatError::InvalidToken(40001));
        }
        self.phones
            .lock()
            .unwrap()
            .remove(code)
            .ok_or(WeChatError::BadCode(40029))
    }

    async fn stable_token(
        &self,
        _app: &crate::domain::wechat::WeChatApp,
        force_refresh: bool,
    ) -> std::result::Result<crate::domain::wechat::AccessToken, crate::domain::wechat::WeChatError>
    {
        if let Some(e) = self.scripted() {
            return Err(e);
        }
        let mut calls = self.token_calls.lock().unwrap();
        let mut token = self.token.lock().unwrap();
        if force_refresh {
            // A new token, which WeChat accepts, as a forced refresh gives.
            calls.1 += 1;
            *token = format!("{token}-forced");
            self.valid_tokens.lock().unwrap().insert(token.clone());
        } else {
            calls.0 += 1;
        }
        Ok(crate::domain::wechat::AccessToken {
            token: token.clone(),
            expires_at: i64::MAX / 2,
        })
    }

    /// Texts containing "risky" are risky (label 20001), "review" for review (21000), else
    /// pass; only with a valid token.
    async fn msg_sec_check(
        &self,
        access_token: &str,
        _openid: &str,
        _scene: u8,
        content: &str,
    ) -> std::result::Result<crate::domain::moderation::Verdict, crate::domain::wechat::WeChatError>
    {
        use crate::domain::moderation::{Suggest, Verdict};
        use crate::domain::wechat::WeChatError;
        if let Some(e) = self.scripted() {
            return Err(e);
        }
        if !self.valid_tokens.lock().unwrap().contains(access_token) {
            return Err(WeChatError::InvalidToken(40001));
        }
        let (suggest, label) = if content.contains("risky") {
            (Suggest::Risky, 20001)
        } else if content.contains("review") {
            (Suggest::Review, 21000)
        } else {
            (Suggest::Pass, 100)
        };
        Ok(Verdict {
            suggest,
            label,
            trace_id: Some("trace-fake".into()),
        })
    }

    /// A trace id per check (`trace-<n>`), recorded with the URL in `media_checks`; only with a
    /// valid token.
    async fn media_check_async(
        &self,
        access_token: &str,
        _openid: &str,
        _scene: u8,
        media_url: &str,
    ) -> std::result::Result<String, crate::domain::wechat::WeChatError> {
        use crate::domain::wechat::WeChatError;
        if let Some(e) = self.scripted() {
            return Err(e);
        }
        if !self.valid_tokens.lock().unwrap().contains(access_token) {
            return Err(WeChatError::InvalidToken(40001));
        }
        let mut checks = self.media_checks.lock().unwrap();
        checks.push(media_url.to_owned());
        Ok(format!("trace-{}", checks.len()))
    }
}
