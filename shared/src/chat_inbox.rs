//! The inbox's frames besides `send`: the conversation list, read positions, typing and
//! recall. One method each, called from one arm of [`super::FrameCtx::dispatch`].

use super::{FrameCtx, FrameOutcome, FrameStore, Refusal, TYPING_GAP_MS};
use crate::inbox;
use crate::model::{Entry, ListCursor, Message, Peer, Registry, Snapshot};
use crate::ports::{MediaObjects, MediaSigner, Notifier};
use crate::protocol::{self, PageExtras};

type Outcome = std::result::Result<FrameOutcome, Refusal>;

fn not_found() -> Refusal {
    Refusal::Client(
        "not_found",
        "there is no message with this id in this conversation".into(),
    )
}

/// `user`'s live connections in `registry` that `keep` selects, as posting targets.
fn connections_of(
    registry: Option<&Registry>,
    now_s: i64,
    keep: impl Fn(&crate::model::RegistryEntry) -> bool,
) -> Vec<Peer> {
    registry
        .map(|r| {
            r.live(now_s)
                .filter(|e| keep(e))
                .map(|e| Peer {
                    user: r.user.clone(),
                    connection: e.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: FrameStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    /// One list item for `entry` (this user's), with its last row's media signed.
    async fn list_item(&self, entry: &Entry) -> crate::Result<Box<serde_json::value::RawValue>> {
        let urls = self.sign(entry.last.iter()).await?;
        Ok(protocol::list_item(
            entry,
            &self.me.profile,
            self.deps.config.display_offset,
            &urls,
        ))
    }

    /// `conversations`: a page of this user's list, most recent first. One `Query` on the
    /// `by_activity` index.
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
                    protocol::list_item(
                        e,
                        &self.me.profile,
                        self.deps.config.display_offset,
                        &urls,
                    ),
                    ListCursor::of(e.updated_at_ms, &e.peer),
                )
            })
            .collect();
        self.reply(&protocol::conversations_frame(
            &items,
            page.has_more,
            self.deps.config.limits.max_frame_bytes,
        ))
        .await;
        Ok(FrameOutcome::Listed)
    }

    /// `read`: this user has read `peer`'s messages up to `id`. The read position only moves
    /// forward; when it moves, the peer's user connections get a receipt. This user's user
    /// connections (and the asking connection) get the entry as the list shows it. Requests:
    /// one `BatchGetItem` (the message, both entries, both registries), then two conditional
    /// `UpdateItem`s in parallel when the position moves.
    pub(super) async fn read(&self, peer: String, id: &str) -> Outcome {
        let store = &self.deps.store;
        let snap = store
            .snapshot(&self.conversation(&peer), &self.me.user, Some(id))
            .await?;
        let found = snap.message.as_ref().ok_or_else(not_found)?;
        // Ids follow arrival and `seq` follows commit, so a message that arrived earlier but
        // committed later sits before the newest with a higher `seq`: reading the
        // conversation's newest message reads everything the peer sent.
        let newest = inbox::last_id(&snap).is_none_or(|last| found.id.as_str() >= last);
        let all = snap.mine.as_ref().map(|e| e.peer_sent).filter(|_| newest);
        let message = &Message {
            seq: found.seq.max(all.filter(|_| found.seq.is_some())),
            ..found.clone()
        };
        let read_seq = snap.mine.as_ref().map_or(0, |e| e.read_seq);
        let ahead = message.sender == peer && message.seq.is_some_and(|s| s > read_seq);
        let (entry, moved) = match ahead {
            true => store.mark_read(&self.me.user, message).await?,
            false => (snap.mine.clone(), false),
        };
        let entry = entry.unwrap_or_else(|| Entry::empty(&self.me.user, &peer));
        let receipt = protocol::read_frame(&self.me.user, id);
        let mine = protocol::conversation_frame(&self.list_item(&entry).await?);
        let now_s = self.now_s();
        let mut targets: Vec<(Peer, &String)> = Vec::new();
        if moved {
            let theirs = connections_of(snap.registry(&peer), now_s, |e| e.is_user_connection());
            targets.extend(theirs.into_iter().map(|p| (p, &receipt)));
        }
        let ours = connections_of(snap.registry(&self.me.user), now_s, |e| {
            e.is_user_connection() || e.connection_id == self.me.connection_id
        });
        targets.extend(ours.into_iter().map(|p| (p, &mine)));
        if !targets
            .iter()
            .any(|(p, _)| p.connection.connection_id == self.me.connection_id)
        {
            self.reply(&mine).await;
        }
        self.post_each(&targets).await;
        tracing::info!(connection_id = %self.me.connection_id, moved, "read");
        Ok(FrameOutcome::Read { moved })
    }

    /// `typing`: relayed to the peer's user connections, at most once per connection every
    /// [`TYPING_GAP_MS`]; the rest are dropped without an answer. The throttle is a
    /// conditional write on this connection's record, so every function instance shares it.
    /// Requests: that `UpdateItem` and, beside it, one `GetItem` of the peer's registry.
    pub(super) async fn typing(&self, peer: String) -> Outcome {
        let store = &self.deps.store;
        let (claimed, registry) = futures::join!(
            store.claim_typing(&self.me.connection_id, self.now_ms, TYPING_GAP_MS),
            store.registry(&self.me.app_sid, &peer)
        );
        if !claimed? {
            return Ok(FrameOutcome::Typed { relayed: false });
        }
        let frame = protocol::typing_frame(&self.me.user);
        let targets = connections_of(registry?.as_ref(), self.now_s(), |e| e.is_user_connection());
        self.poster
            .fan_out(&self.me.app_sid, &targets, |_| &frame)
            .await;
        Ok(FrameOutcome::Typed { relayed: true })
    }

    /// `recall`: the sender takes back their own message within the recall window. The
    /// message and any entry holding it as its last message then read `recalled` with empty
    /// content; user connections of both users get a `recall` frame, conversation connections
    /// on this conversation a fresh page. Requests: one `BatchGetItem` (the message, both
    /// entries, both registries and profiles), then in parallel a conditional `UpdateItem` of
    /// the message, one per entry that shows it, and the page query when a conversation
    /// connection listens.
    pub(super) async fn recall(&self, peer: String, id: &str) -> Outcome {
        let (store, config, me) = (&self.deps.store, &self.deps.config, &self.me);
        let conversation = self.conversation(&peer);
        let snap = store.snapshot(&conversation, &me.user, Some(id)).await?;
        let message = snap.message.as_ref().ok_or_else(not_found)?;
        if message.sender != me.user {
            return Err(Refusal::Client(
                "not_yours",
                "only the sender may recall a message".into(),
            ));
        }
        let not_before_ms = self.now_ms - config.recall_window_secs * 1000;
        let window_passed = || {
            Refusal::Client(
                "recall_window_passed",
                format!(
                    "a message can be recalled for {} seconds after it was sent",
                    config.recall_window_secs
                ),
            )
        };
        if !message.recalled && message.created_at_ms < not_before_ms {
            return Err(window_passed());
        }
        let audience = inbox::audience(&snap, me, &peer, self.now_s());
        let page = async {
            match audience.iter().any(|p| p.connection.friend.is_some()) {
                true => store
                    .latest(&conversation, config.limits.page_default)
                    .await
                    .map(Some),
                false => Ok(None),
            }
        };
        if message.recalled {
            // Already recalled (a retry): tell everyone again, change nothing.
            return self
                .after_recall(&snap, &peer, id, &audience, page.await?)
                .await;
        }
        let holders: Vec<String> = [&snap.mine, &snap.theirs]
            .into_iter()
            .flatten()
            .filter(|e| e.last.as_ref().is_some_and(|m| m.id == id))
            .map(|e| e.user.clone())
            .collect();
        let (recalled, page) = futures::join!(
            store.recall(
                &conversation,
                id,
                &me.user,
                message.client_msg_id.as_deref(),
                not_before_ms,
                &holders
            ),
            page
        );
        if !recalled? {
            return Err(window_passed());
        }
        self.after_recall(&snap, &peer, id, &audience, page?).await
    }

    async fn after_recall(
        &self,
        snap: &Snapshot,
        peer: &str,
        id: &str,
        audience: &[Peer],
        page: Option<crate::model::Page>,
    ) -> Outcome {
        let me = &self.me;
        // The page may have been read before the recall was written.
        let page = page.map(|mut page| {
            for m in page.messages.iter_mut().filter(|m| m.id == id) {
                m.recalled = true;
                m.content.clear();
                m.media = None;
            }
            page.profiles = inbox::profiles(snap, me, peer);
            page
        });
        let frames = [peer, me.user.as_str()].map(|side| {
            let recall = protocol::recall_frame(side, id);
            let history = page.as_ref().map(|page| {
                (
                    page,
                    PageExtras {
                        peer: Some(side),
                        ..PageExtras::default()
                    },
                )
            });
            (recall, history)
        });
        let mut built = Vec::new();
        for (recall, history) in frames {
            let history = match history {
                Some((page, extras)) => Some(self.page_frame(page, extras).await?),
                None => None,
            };
            built.push((recall, history));
        }
        let frame_for_peer = |p: &Peer| -> &String {
            let (recall, history) = &built[usize::from(p.user != me.user)];
            match (&p.connection.friend, history) {
                (Some(_), Some(h)) => h,
                _ => recall,
            }
        };
        let (delivered, _) = self
            .poster
            .fan_out(&me.app_sid, audience, frame_for_peer)
            .await;
        tracing::info!(connection_id = %me.connection_id, message_id = id, delivered, "recalled");
        Ok(FrameOutcome::Recalled)
    }

    async fn post_each(&self, targets: &[(Peer, &String)]) {
        let peers: Vec<Peer> = targets.iter().map(|(p, _)| p.clone()).collect();
        let frames: std::collections::HashMap<&str, &String> = targets
            .iter()
            .map(|(p, f)| (p.connection.connection_id.as_str(), *f))
            .collect();
        self.poster
            .fan_out(&self.me.app_sid, &peers, |p| frames[p.connection_id()])
            .await;
    }
}
