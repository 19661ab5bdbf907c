//! The connection records a warm `$default` instance read lately.

use crate::domain::connection::ConnectionRecord;
use std::collections::HashMap;
use std::sync::Mutex;

/// The connection records a warm instance read in the last
/// [`crate::Config::connection_cache_secs`], so that a frame does not read its connection's
/// record again: a text send then waits on two DynamoDB round trips, not three. The price is
/// bounded staleness: a connection removed (by `$disconnect` in another function, by the cap)
/// is still served by an instance that read it less than that long ago. API Gateway sends no
/// frame on a connection it closed, so in practice only a record deleted under a live
/// connection is affected. A post from this instance that finds the connection gone (410)
/// forgets it here at once. What the record decides is rechecked where it matters: the rate
/// limit in the send's transaction, the registry when the user's connections are read.
#[derive(Default)]
pub struct RecordCache {
    entries: Mutex<HashMap<String, (ConnectionRecord, i64)>>,
}

/// Entries one instance keeps at most (an instance handles one frame at a time; this bounds
/// memory when many connections pass through it).
const RECORD_CACHE_MAX: usize = 4096;

impl RecordCache {
    /// The record of `connection_id` read at most `max_age_ms` before `now_ms` and still
    /// alive at `now_ms`.
    pub(super) fn get(
        &self,
        connection_id: &str,
        now_ms: i64,
        max_age_ms: i64,
    ) -> Option<ConnectionRecord> {
        let entries = self.entries.lock().ok()?;
        let (record, read_at) = entries.get(connection_id)?;
        (now_ms - read_at < max_age_ms && now_ms >= *read_at && record.expires_at > now_ms / 1000)
            .then(|| record.clone())
    }

    pub(super) fn put(&self, record: &ConnectionRecord, now_ms: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= RECORD_CACHE_MAX {
                entries.clear();
            }
            entries.insert(record.connection_id.clone(), (record.clone(), now_ms));
        }
    }

    /// The connection is gone: a post to it answered 410.
    pub(super) fn forget(&self, connection_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(connection_id);
        }
    }

    /// A send of this connection committed in `window`: count it in the cached copy, so the
    /// cheap early refusal stays close to the record's count.
    pub(super) fn count_send(&self, connection_id: &str, window: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            if let Some((record, _)) = entries.get_mut(connection_id) {
                match record.sends.iter_mut().find(|(w, _)| *w == window) {
                    Some((_, n)) => *n += 1,
                    None => record.sends.push((window, 1)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message::Profile;

    fn record(cid: &str, expires_at: i64) -> ConnectionRecord {
        ConnectionRecord {
            connection_id: cid.into(),
            app_sid: "app".into(),
            user: "111".into(),
            friend: None,
            profile: Profile::default(),
            connected_at_ms: 0,
            expires_at,
            registered: true,
            sends: Vec::new(),
            token_expires_at: None,
            openid: None,
        }
    }

    #[test]
    fn a_cached_record_serves_until_it_is_too_old_expired_or_forgotten() {
        // GIVEN a record read at t = 10 s that expires at 100 s
        let cache = RecordCache::default();
        cache.put(&record("c1", 100), 10_000);
        // THEN it serves within the age limit, not past it, not once expired
        assert!(cache.get("c1", 14_999, 5_000).is_some());
        assert!(cache.get("c1", 15_000, 5_000).is_none(), "too old");
        assert!(
            cache.get("c1", 9_000, 5_000).is_none(),
            "read in the future"
        );
        cache.put(&record("c2", 12), 10_000);
        assert!(cache.get("c2", 12_000, 5_000).is_none(), "expired");
        // AND sends are counted in the copy, and a 410 forgets it
        cache.count_send("c1", 7);
        cache.count_send("c1", 7);
        assert_eq!(cache.get("c1", 11_000, 5_000).unwrap().sent_in(7), 2);
        cache.forget("c1");
        assert!(cache.get("c1", 11_000, 5_000).is_none());
    }
}
