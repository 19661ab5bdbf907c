//! `sync` and `history`: a page of one conversation, for the asking connection only.

use crate::domain::ids::Cursor;
use crate::flows::deps::FrameStore;
use crate::flows::frame::{FrameCtx, FrameOutcome, Outcome};
use crate::ports::{MediaObjects, MediaSigner, Notifier};
use crate::wire::frames::PageExtras;

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: FrameStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    /// `sync`: the latest page (one `Query`, profiles included).
    pub(super) async fn sync(&self, peer: String, limit: usize) -> Outcome {
        let store = &self.deps.store;
        let page = store.latest(&self.conversation(&peer), limit).await?;
        let extras = PageExtras {
            peer: Some(&peer),
            ..PageExtras::default()
        };
        self.reply(&self.page_frame(&page, extras).await?).await;
        Ok(FrameOutcome::Synced)
    }

    /// `history`: the page before `before`, or the latest without a cursor.
    pub(super) async fn history(
        &self,
        peer: String,
        before: Option<Cursor>,
        limit: usize,
    ) -> Outcome {
        let store = &self.deps.store;
        let conversation = self.conversation(&peer);
        let page = match &before {
            Some(c) => store.before(&conversation, c, limit).await?,
            None => store.latest(&conversation, limit).await?,
        };
        let extras = PageExtras {
            peer: Some(&peer),
            before: before.as_ref().map(|c| c.as_str()),
            ..PageExtras::default()
        };
        self.reply(&self.page_frame(&page, extras).await?).await;
        Ok(FrameOutcome::Paged)
    }
}
