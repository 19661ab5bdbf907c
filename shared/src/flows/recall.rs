//! `recall`: the sender takes back their own message within the recall window.

use crate::domain::connection::{Metered, Target};
use crate::domain::media;
use crate::domain::message::{Message, Page};
use crate::domain::send::{self, Snapshot};
use crate::flows::deps::FrameStore;
use crate::flows::frame::{not_found, FrameCtx, FrameOutcome, Outcome, Refusal};
use crate::ports::{MediaObjects, MediaSigner, Notifier};
use crate::wire::frames::{self, PageExtras};

/// The page as a recall leaves it: the message (which the page may have read before the
/// recall was written) recalled in place.
fn recalled_in(mut page: Page, id: &str) -> Page {
    for m in page.messages.iter_mut().filter(|m| m.id == id) {
        m.recalled = true;
        m.content.clear();
        m.media = None;
    }
    page
}

/// The users whose entries show message `id` as their last message.
fn holders(snap: &Snapshot, id: &str) -> Vec<String> {
    [&snap.mine, &snap.theirs]
        .into_iter()
        .flatten()
        .filter(|e| e.last.as_ref().is_some_and(|m| m.id == id))
        .map(|e| e.user.clone())
        .collect()
}

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: FrameStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    /// The message and any entry holding it as its last message then read `recalled` with
    /// empty content; user connections of both users get a `recall` frame, conversation
    /// connections on this conversation a fresh page. Requests: one `BatchGetItem` (the
    /// message, both entries, both registries and profiles) beside the conditional `UpdateItem`
    /// of the user's recall meter, then in parallel a conditional
    /// `UpdateItem` of the message, one per entry that shows it, and the page query when a
    /// conversation connection listens.
    pub(super) async fn recall(&self, peer: String, id: &str) -> Outcome {
        let (store, config, me) = (&self.deps.store, &self.deps.config, &self.me);
        let conversation = self.conversation(&peer);
        // Every recall counts, a retry of one already made too (it is posted to everyone
        // again); the count runs beside the read.
        let metered = self.meter(
            Metered::Recalls,
            config.max_recalls_per_minute,
            "recall_rate_limited",
            "recalls",
        );
        let (metered, snap) =
            futures::join!(metered, store.snapshot(&conversation, &me.user, Some(id)));
        metered?;
        let snap = snap?;
        let message = snap.message.as_ref().ok_or_else(not_found)?;
        let not_before_ms = self.may_recall(message)?;
        let audience = send::audience(&snap, me, &peer, self.now_s());
        let page = async {
            match audience.iter().any(|t| t.connection.friend.is_some()) {
                true => store
                    .latest(&conversation, config.limits.page_default)
                    .await
                    .map(Some),
                false => Ok(None),
            }
        };
        if message.recalled {
            // Already recalled (a retry): tell everyone again, change nothing.
            let page = page.await?;
            return self.after_recall(&snap, &peer, id, &audience, page).await;
        }
        let cmid = message.client_msg_id.as_deref();
        let holders = holders(&snap, id);
        let recall = store.recall(&conversation, id, &me.user, cmid, not_before_ms, &holders);
        let (recalled, page) = futures::join!(recall, page);
        if !recalled? {
            return Err(self.window_passed());
        }
        // The message's objects go with it, beside the posts. Logged, not answered, when that
        // fails: the message is recalled and no URL to them is signed again.
        let objects = media::sent_objects(message);
        let delete = async {
            if objects.is_empty() {
                return;
            }
            if let Err(e) = self.deps.media.objects.delete(&objects).await {
                tracing::error!(message_id = id, error = %e, "recalled, but its objects were not deleted");
            }
        };
        let (told, ()) = futures::join!(
            self.after_recall(&snap, &peer, id, &audience, page?),
            delete
        );
        told
    }

    /// Whether this connection's user may recall `message` now: only its sender, only within
    /// the window (a message already recalled may be recalled again). Returns the earliest
    /// send time the window allows.
    fn may_recall(&self, message: &Message) -> std::result::Result<i64, Refusal> {
        if message.sender != self.me.user {
            return Err(Refusal::Client(
                "not_yours",
                "only the sender may recall a message".into(),
            ));
        }
        let not_before_ms = self.now_ms - self.deps.config.recall_window_secs * 1000;
        if !message.recalled && message.created_at_ms < not_before_ms {
            return Err(self.window_passed());
        }
        Ok(not_before_ms)
    }

    fn window_passed(&self) -> Refusal {
        Refusal::Client(
            "recall_window_passed",
            format!(
                "a message can be recalled for {} seconds after it was sent",
                self.deps.config.recall_window_secs
            ),
        )
    }

    /// Tells the audience: a `recall` frame to user connections, the page (if read) to
    /// conversation connections, each seen from its own side.
    async fn after_recall(
        &self,
        snap: &Snapshot,
        peer: &str,
        id: &str,
        audience: &[Target],
        page: Option<Page>,
    ) -> Outcome {
        let me = &self.me;
        let page = page.map(|page| Page {
            profiles: send::profiles(snap, me, peer),
            ..recalled_in(page, id)
        });
        // One pair of frames per side: [0] for this user's connections, [1] for the peer's.
        let mut built = Vec::new();
        for side in [peer, me.user.as_str()] {
            let history = match &page {
                Some(page) => {
                    let extras = PageExtras {
                        peer: Some(side),
                        ..PageExtras::default()
                    };
                    Some(self.page_frame(page, extras).await?)
                }
                None => None,
            };
            built.push((frames::recall_frame(side, id), history));
        }
        let frame_for = |t: &Target| -> &String {
            let (recall, history) = &built[usize::from(t.user != me.user)];
            match (&t.connection.friend, history) {
                (Some(_), Some(h)) => h,
                _ => recall,
            }
        };
        let (delivered, _) = self.poster.fan_out(&me.app_sid, audience, frame_for).await;
        tracing::info!(connection_id = %me.connection_id, message_id = id, delivered, "recalled");
        Ok(FrameOutcome::Recalled)
    }
}
