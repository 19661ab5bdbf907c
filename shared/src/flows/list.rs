//! `conversations`: a page of the user's inbox, most recent first.

use crate::domain::ids::ListCursor;
use crate::domain::inbox::Entry;
use crate::error::Result;
use crate::flows::deps::FrameStore;
use crate::flows::frame::{FrameCtx, FrameOutcome, Outcome};
use crate::ports::{MediaObjects, MediaSigner, Notifier};
use crate::wire::frames::{self, MediaUrls};
use serde_json::value::RawValue;

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: FrameStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    /// One list item for `entry` (this user's), its last row's media signed with `urls`.
    fn item(&self, entry: &Entry, urls: &MediaUrls) -> Box<RawValue> {
        let offset = self.deps.config.display_offset;
        frames::list_item(entry, &self.me.profile, offset, urls)
    }

    /// One list item for `entry`, signing what it shows.
    pub(super) async fn list_item(&self, entry: &Entry) -> Result<Box<RawValue>> {
        let urls = self.sign(entry.last.iter()).await?;
        Ok(self.item(entry, &urls))
    }

    /// A page of this user's list. One `Query` on the `by_activity` index.
    pub(super) async fn conversations(&self, before: Option<&ListCursor>, limit: usize) -> Outcome {
        let page = self
            .deps
            .store
            .list(&self.me.app_sid, &self.me.user, before, limit)
            .await?;
        let urls = self
            .sign(page.entries.iter().filter_map(|e| e.last.as_ref()))
            .await?;
        let items: Vec<_> = page
            .entries
            .iter()
            .map(|e| {
                (
                    self.item(e, &urls),
                    ListCursor::of(e.updated_at_ms, &e.peer),
                )
            })
            .collect();
        let max_bytes = self.deps.config.limits.max_frame_bytes;
        let frame = frames::conversations_frame(&items, page.has_more, max_bytes);
        self.reply(&frame).await;
        Ok(FrameOutcome::Listed)
    }
}
