//! `typing`: relayed to the peer's user connections, throttled per connection.

use crate::flows::deps::FrameStore;
use crate::flows::frame::{FrameCtx, FrameOutcome, Outcome};
use crate::ports::{MediaObjects, MediaSigner, Notifier};
use crate::wire::frames;

/// At most one typing frame per connection is relayed in this many milliseconds.
pub const TYPING_GAP_MS: i64 = 2000;

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: FrameStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    /// Relayed at most once per connection every [`TYPING_GAP_MS`]; the rest are dropped
    /// without an answer. The throttle is a conditional write on this connection's record, so
    /// every function instance shares it. Requests: that `UpdateItem` and, beside it, one
    /// `GetItem` of the peer's registry.
    pub(super) async fn typing(&self, peer: String) -> Outcome {
        let store = &self.deps.store;
        let (claimed, registry) = futures::join!(
            store.claim_typing(&self.me.connection_id, self.now_ms, TYPING_GAP_MS),
            store.registry(&self.me.app_sid, &peer)
        );
        if !claimed? {
            return Ok(FrameOutcome::Typed { relayed: false });
        }
        let frame = frames::typing_frame(&self.me.user);
        let targets = registry?.map_or_else(Vec::new, |r| {
            r.targets(self.now_s(), |e| e.is_user_connection())
        });
        self.poster
            .fan_out(&self.me.app_sid, &targets, |_| &frame)
            .await;
        Ok(FrameOutcome::Typed { relayed: true })
    }
}
