//! In-memory fakes of the ports, for unit tests of the domain flows and handlers.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{
    Appended, ConnectionRecord, Conversation, Cursor, Message, Page, Peer, Profile,
};
use crate::ports::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

#[derive(Default)]
pub struct State {
    pub connections: HashMap<String, ConnectionRecord>,
    /// conversation key → (message id → message)
    pub messages: HashMap<String, BTreeMap<String, Message>>,
    pub profiles: HashMap<(String, String), Profile>,
    pub dedup: HashMap<(String, String, String), Message>,
    /// When set, every call fails like an unreachable database.
    pub down: bool,
}

#[derive(Default)]
pub struct FakeStore {
    pub state: Mutex<State>,
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
}

impl ConnectionRegister for FakeStore {
    async fn register(&self, r: &ConnectionRecord) -> Result<()> {
        self.with(|s| {
            s.connections.insert(r.connection_id.clone(), r.clone());
        })
    }
}

impl ConnectionRemove for FakeStore {
    async fn remove(&self, id: &str) -> Result<()> {
        self.with(|s| {
            s.connections.remove(id);
        })
    }
    async fn remove_gone(&self, id: &str, before_ms: i64) -> Result<bool> {
        self.with(|s| {
            let stale = s
                .connections
                .get(id)
                .is_some_and(|r| r.connected_at_ms < before_ms);
            if stale {
                s.connections.remove(id);
            }
            stale
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
    async fn in_conversation(&self, c: &Conversation, now_s: i64) -> Result<Vec<Peer>> {
        self.with(|s| {
            let mut peers: Vec<Peer> = s
                .connections
                .values()
                .filter(|r| r.conversation() == *c && r.expires_at > now_s)
                .map(|r| Peer {
                    connection_id: r.connection_id.clone(),
                    user: r.user.clone(),
                })
                .collect();
            peers.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
            peers
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
    async fn append(&self, m: &Message) -> Result<Appended> {
        self.with(|s| {
            let conv = m.conversation().key();
            if let Some(cmid) = &m.client_msg_id {
                let key = (conv.clone(), m.sender.clone(), cmid.clone());
                if let Some(old) = s.dedup.get(&key) {
                    return Appended::Duplicate(old.clone());
                }
                s.dedup.insert(key, m.clone());
            }
            s.messages
                .entry(conv)
                .or_default()
                .insert(m.id.clone(), m.clone());
            Appended::Stored(m.clone())
        })
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

/// Records every post; connections in `gone` answer 410, in `failing` a 5xx.
#[derive(Default)]
pub struct FakeNotifier {
    pub posts: Mutex<Vec<(String, String)>>,
    pub gone: Mutex<HashSet<String>>,
    pub failing: Mutex<HashSet<String>>,
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

impl Notifier for FakeNotifier {
    async fn post(&self, id: &str, frame: &str) -> std::result::Result<(), PostError> {
        if self.gone.lock().unwrap().contains(id) {
            return Err(PostError::Gone);
        }
        if self.failing.lock().unwrap().contains(id) {
            return Err(PostError::Other("503".into()));
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
    pub objects: Mutex<HashMap<String, crate::media::ObjectInfo>>,
    pub heads: Mutex<usize>,
    pub copies: Mutex<Vec<(String, String)>>,
}

impl FakeMedia {
    /// Stores an object as if a client had uploaded it.
    pub fn put(&self, key: &str, content_type: &str, size: u64) {
        self.objects.lock().unwrap().insert(
            key.to_owned(),
            crate::media::ObjectInfo {
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
    async fn head(&self, key: &str) -> Result<Option<crate::media::ObjectInfo>> {
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
}

impl MediaSigner for FakeMedia {
    async fn upload_ticket(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        _expires: std::time::Duration,
    ) -> Result<crate::media::UploadTicket> {
        Ok(crate::media::UploadTicket {
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
