//! `read`: this user has read the peer's messages up to one of them.

use crate::domain::connection::Target;
use crate::domain::inbox::Entry;
use crate::domain::message::Message;
use crate::domain::send::{self, Snapshot};
use crate::flows::deps::FrameStore;
use crate::flows::frame::{not_found, FrameCtx, FrameOutcome, Outcome};
use crate::ports::{MediaObjects, MediaSigner, Notifier};
use crate::wire::frames;
use std::collections::HashMap;

/// The message `found` as far as reading it goes: ids follow arrival and `seq` follows commit,
/// so a message that arrived earlier but committed later sits before the newest with a higher
/// `seq`. Reading the conversation's newest message therefore reads everything the peer sent
/// (its `seq` becomes the entry's `peer_sent`). A message without `seq` (stored before the
/// counts existed) moves nothing.
fn read_up_to(snap: &Snapshot, found: &Message) -> Message {
    let newest = send::last_id(snap).is_none_or(|last| found.id.as_str() >= last);
    let all = snap.mine.as_ref().map(|e| e.peer_sent).filter(|_| newest);
    Message {
        seq: found.seq.max(all.filter(|_| found.seq.is_some())),
        ..found.clone()
    }
}

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: FrameStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    /// The read position only moves forward; when it moves, the peer's user connections get a
    /// receipt. This user's user connections (and the asking connection) get the entry as the
    /// list shows it. Requests: one `BatchGetItem` (the message, both entries, both
    /// registries), then two conditional `UpdateItem`s in parallel when the position moves.
    pub(super) async fn read(&self, peer: String, id: &str) -> Outcome {
        let store = &self.deps.store;
        let snap = store
            .snapshot(&self.conversation(&peer), &self.me.user, Some(id))
            .await?;
        let found = snap.message.as_ref().ok_or_else(not_found)?;
        let message = &read_up_to(&snap, found);
        let read_seq = snap.mine.as_ref().map_or(0, |e| e.read_seq);
        let ahead = message.sender == peer && message.seq.is_some_and(|s| s > read_seq);
        let (entry, moved) = match ahead {
            true => store.mark_read(&self.me.user, message).await?,
            false => (snap.mine.clone(), false),
        };
        let entry = entry.unwrap_or_else(|| Entry::empty(&self.me.user, &peer));
        let receipt = frames::read_frame(&self.me.user, id);
        let mine = frames::conversation_frame(&self.list_item(&entry).await?);
        let now_s = self.now_s();
        let mut targets: Vec<(Target, &String)> = Vec::new();
        if moved {
            let theirs = snap
                .registry(&peer)
                .map_or_else(Vec::new, |r| r.targets(now_s, |e| e.is_user_connection()));
            targets.extend(theirs.into_iter().map(|t| (t, &receipt)));
        }
        let ours = snap.registry(&self.me.user).map_or_else(Vec::new, |r| {
            r.targets(now_s, |e| {
                e.is_user_connection() || e.connection_id == self.me.connection_id
            })
        });
        targets.extend(ours.into_iter().map(|t| (t, &mine)));
        if !targets
            .iter()
            .any(|(t, _)| t.connection_id() == self.me.connection_id)
        {
            self.reply(&mine).await;
        }
        self.post_each(&targets).await;
        tracing::info!(connection_id = %self.me.connection_id, moved, "read");
        Ok(FrameOutcome::Read { moved })
    }

    /// Posts each target its own frame.
    async fn post_each(&self, targets: &[(Target, &String)]) {
        let only: Vec<Target> = targets.iter().map(|(t, _)| t.clone()).collect();
        let frames: HashMap<&str, &String> = targets
            .iter()
            .map(|(t, f)| (t.connection_id(), *f))
            .collect();
        self.poster
            .fan_out(&self.me.app_sid, &only, |t| frames[t.connection_id()])
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::new_message_id;
    use crate::domain::message::ChatType;

    fn message(at: i64, seq: Option<u64>) -> Message {
        Message {
            id: new_message_id(at),
            app_sid: "app".into(),
            sender: "222".into(),
            receiver: "111".into(),
            chat_type: ChatType::Text,
            content: String::new(),
            created_at_ms: at,
            client_msg_id: None,
            media: None,
            seq,
            conv_seq: None,
            recalled: false,
            screening: Default::default(),
        }
    }

    #[test]
    fn reading_the_newest_message_reads_all_the_peer_sent() {
        // GIVEN an entry whose newest message arrived at t = 50, the peer having sent 9
        let newest = message(50, Some(7));
        let snap = Snapshot {
            mine: Some(Entry {
                peer_sent: 9,
                last: Some(newest.clone()),
                ..Entry::empty("111", "222")
            }),
            ..Snapshot::default()
        };
        // THEN reading the newest reads up to 9; an older one only up to its own seq
        assert_eq!(read_up_to(&snap, &newest).seq, Some(9));
        assert_eq!(read_up_to(&snap, &message(40, Some(5))).seq, Some(5));
        // AND a message from before the counts moves nothing
        assert_eq!(read_up_to(&snap, &message(60, None)).seq, None);
    }
}
