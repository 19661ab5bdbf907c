//! Posting frames to connections, and what a 410 means.

use crate::config::Config;
use crate::domain::connection::Target;
use crate::flows::records::RecordCache;
use crate::ports::{ConnectionRemove, Notifier, PostError};
use futures::StreamExt;

/// Posts in flight at once while fanning a frame out.
const FANOUT_CONCURRENCY: usize = 16;

/// Times a post that failed with anything but 410 (throttling, a 5xx, the network) is tried
/// again, after a pause of 100–300 ms each: a connection whose client cannot notice a gap (the
/// seed's) would otherwise miss the frame until it reconnects. At most ~0.6 s of the
/// invocation's budget per connection, spent in parallel across connections.
pub const POST_RETRIES: usize = 2;

/// Posts frames, removing the records and registry entries of connections API Gateway reports
/// gone (and forgetting them in this instance's record cache).
pub(super) struct Poster<'a, S, N> {
    store: &'a S,
    notifier: &'a N,
    records: &'a RecordCache,
    /// Only connections made before this (epoch ms) are removed on a 410: API Gateway also
    /// answers 410 while a connection's `$connect` is still running, and that connection's
    /// brand-new record must survive.
    gone_before_ms: i64,
}

impl<S, N> Clone for Poster<'_, S, N> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S, N> Copy for Poster<'_, S, N> {}

impl<'a, S: ConnectionRemove, N: Notifier> Poster<'a, S, N> {
    pub(super) fn new(
        store: &'a S,
        notifier: &'a N,
        records: &'a RecordCache,
        config: &Config,
        now_ms: i64,
    ) -> Self {
        Poster {
            store,
            notifier,
            records,
            gone_before_ms: now_ms - config.gone_grace_secs * 1000,
        }
    }

    /// Posts to every target, a bounded number at a time. Returns (delivered, not delivered).
    pub(super) async fn fan_out<'f>(
        &self,
        app_sid: &str,
        targets: &[Target],
        frame: impl Fn(&Target) -> &'f String,
    ) -> (usize, usize) {
        let outcomes: Vec<bool> = futures::stream::iter(targets)
            .map(|t| {
                let frame = frame(t);
                async move { self.deliver(app_sid, t, frame).await }
            })
            .buffer_unordered(FANOUT_CONCURRENCY)
            .collect()
            .await;
        let delivered = outcomes.iter().filter(|ok| **ok).count();
        (delivered, targets.len() - delivered)
    }

    /// Posts one frame to a connection not (yet) known to be anyone's: a failure is logged.
    pub(super) async fn post(&self, connection_id: &str, frame: &str) -> bool {
        match self.notifier.post(connection_id, frame).await {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(connection_id, error = %e, "post to an unknown connection failed");
                false
            }
        }
    }

    /// Posts one frame. A 410 removes exactly that connection's record and registry entry (if
    /// it is older than the grace period); any other failure is tried again [`POST_RETRIES`]
    /// times, then logged and left alone (what changed is stored; the client sees it with its
    /// next sync). Returns whether the frame was delivered.
    pub(super) async fn deliver(&self, app_sid: &str, target: &Target, frame: &str) -> bool {
        let connection_id = target.connection_id();
        let mut tries = 0;
        loop {
            match self.notifier.post(connection_id, frame).await {
                Ok(()) => return true,
                Err(PostError::Gone) => {
                    self.records.forget(connection_id);
                    self.remove_gone(app_sid, target).await;
                    return false;
                }
                Err(PostError::Other(e)) if tries < POST_RETRIES => {
                    tries += 1;
                    tracing::info!(connection_id, error = %e, tries, "post failed; trying again");
                    tokio::time::sleep(super::jitter(100, 300)).await;
                }
                Err(PostError::Other(e)) => {
                    tracing::warn!(connection_id, error = %e, tries, "post to connection failed");
                    return false;
                }
            }
        }
    }

    async fn remove_gone(&self, app_sid: &str, target: &Target) {
        let connection_id = target.connection_id();
        match self
            .store
            .remove_gone(app_sid, target, self.gone_before_ms)
            .await
        {
            Ok(true) => tracing::info!(connection_id, "removed a gone connection"),
            Ok(false) => tracing::info!(connection_id, "gone connection kept: still connecting"),
            Err(e) => {
                tracing::warn!(connection_id, error = %e, "could not remove a gone connection")
            }
        }
    }
}
