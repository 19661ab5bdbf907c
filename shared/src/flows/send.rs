//! `send`: store the message with both conversation entries, then tell every live connection of
//! both users: user connections get a `message` frame, conversation connections on this
//! conversation the latest page.
//!
//! As steps, each a method below: [`admit`](FrameCtx::admit) (the rate limit as the record was
//! read) → [`accept_media`](FrameCtx::accept_media) (in `media.rs`: checks and the copy to
//! `m/`) → [`commit`](FrameCtx::commit) (snapshot, plan, one transaction, again after a lost
//! race; the page read beside it) → [`settle`](FrameCtx::settle) (what the commit means) →
//! [`page_after`](FrameCtx::page_after) (the page as the send leaves it) →
//! [`send_frames`](FrameCtx::send_frames) (one frame per kind of target) → fan-out.
//!
//! Requests, whatever the number of conversations, connections or messages: one
//! `BatchGetItem` (both entries, both registries, both profiles, the sender's rate counter), one
//! `TransactWriteItems`, and
//! beside it one page query only when a conversation connection of this conversation is
//! listening; plus one delete per connection found gone. A media send first adds, per object
//! (the video and its poster in parallel), two `HeadObject`s at once (the upload area and the
//! sent objects) and then a `CopyObject` unless it was already copied.

use crate::domain::connection::{send_window, ConnectionRecord, Metered, RateClaim, Target};
use crate::domain::ids::Conversation;
use crate::domain::message::{ChatType, Message, Page, Profile};
use crate::domain::moderation::{fingerprint, label_name, Judgement, Refused, Screening};
use crate::domain::send::{self, Committed, Draft, SendCommit, Snapshot};
use crate::error::Result;
use crate::flows::deps::FrameStore;
use crate::flows::frame::{history_frame, FrameCtx, FrameOutcome, Outcome, Refusal};
use crate::ports::{Authored, MediaObjects, MediaSigner, Notifier, Written};
use crate::wire::frames::{self, MediaUrls, PageExtras};
use crate::wire::request::SendRequest;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Times a send reads and writes again after a concurrent send in its conversation (or of its
/// user, on the rate counter) won.
pub const MAX_SEND_RETRIES: usize = 8;

/// A send does not post to a connection whose record expires within this many seconds (see
/// the fan-out in [`FrameCtx::send`]).
pub const FAN_OUT_MARGIN_SECS: i64 = 1;

/// A duplicate send of a message younger than this is fanned out again (see
/// [`FrameCtx::fans_out_again`]): clients resend after `ackTimeoutMs` (15 s), a few times.
pub const FAN_OUT_AGAIN_WITHIN_MS: i64 = 120_000;

/// A random pause before retry `n` (1-based): up to 2^n ms, at most 128 ms.
fn retry_pause(n: usize) -> std::time::Duration {
    super::jitter(0, 1u64 << n.min(7))
}

/// Which frame one connection gets after a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum SendFrame {
    /// A `message` frame for a user connection, of the sender's side or the receiver's.
    Message { senders: bool, ack: bool },
    /// A `history` frame for a conversation connection on this conversation.
    History { senders: bool, ack: bool },
}

/// The frame `target` gets after `me` sent: by the kind of its connection, whose side it is on,
/// and whether it is the sending connection (which gets the acknowledgement).
fn frame_kind(target: &Target, me: &ConnectionRecord) -> SendFrame {
    let senders = target.user == me.user;
    let ack = target.connection.connection_id == me.connection_id;
    match target.connection.friend {
        None => SendFrame::Message { senders, ack },
        Some(_) => SendFrame::History { senders, ack },
    }
}

/// A send as it was committed: what was read and planned, what the write said, and the page
/// read beside it (up to `through`, the conversation's newest id).
struct CommittedSend {
    conversation: Conversation,
    snap: Snapshot,
    plan: SendCommit,
    committed: Committed,
    through: String,
    retries: usize,
    /// How long the text check took (none: nothing was checked) and the first read beside it,
    /// and the writing after both (planned and committed, again after a lost race).
    check: Option<std::time::Duration>,
    read: std::time::Duration,
    write: std::time::Duration,
}

impl CommittedSend {
    /// The message the send stands for (the stored duplicate's, if it was one), and whether
    /// it was a duplicate.
    fn stored(&self) -> (&Message, bool) {
        match &self.committed {
            Committed::Duplicate(m) => (m, true),
            _ => (&self.plan.message, false),
        }
    }

    /// Unread counts of the sender and of the receiver after the send.
    fn unread(&self) -> (u64, u64) {
        match &self.committed {
            Committed::Duplicate(_) => (
                self.snap.mine.as_ref().map_or(0, |e| e.unread()),
                self.snap.theirs.as_ref().map_or(0, |e| e.unread()),
            ),
            _ => (self.plan.sender.unread(), self.plan.receiver.unread()),
        }
    }
}

/// The page after a send: `stored` in its place by id (arrival order, before any later arrival
/// that committed first), at most `limit` rows.
fn place_sent(mut page: Page, stored: &Message, limit: usize) -> Page {
    page.messages.retain(|m| m.id != stored.id);
    let at = page.messages.partition_point(|m| m.id < stored.id);
    page.messages.insert(at, stored.clone());
    if page.messages.len() > limit {
        page.messages.remove(0);
        page.has_more = true;
    }
    page
}

/// What moderation's judgement makes of the draft: stored as it is (or as the replacement),
/// marked with its screening; or refused.
fn apply(judgement: Judgement, draft: &mut Draft) -> std::result::Result<(), Refusal> {
    match judgement {
        Judgement::Store {
            replacement,
            screening,
        } => {
            draft.screening = screening;
            if let Some(text) = replacement {
                // Stored as the replacement; a retry is compared by what the client sent.
                draft.screening = Screening::Replaced {
                    submitted: fingerprint(&draft.content),
                };
                draft.content = text;
            }
            Ok(())
        }
        Judgement::Refuse(refused) => Err(refusal(refused)),
    }
}

/// What a client is told of a send moderation refused (nothing was written).
pub(super) fn refusal(refused: Refused) -> Refusal {
    match refused {
        Refused::Blocked { label } => Refusal::Blocked(label_name(label)),
        Refused::LoginRequired => Refusal::Client(
            "login_required",
            "log in through the mini-program (POST /login) to send messages".into(),
        ),
        Refused::Unavailable => Refusal::Client(
            "moderation_unavailable",
            "messages cannot be checked right now; send it again in a moment".into(),
        ),
        Refused::PosterRequired => Refusal::Client(
            "poster_required",
            "a video needs a poster (an image upload named in media.poster) to be checked".into(),
        ),
    }
}

/// A send refused by its user's rate limit: nothing was written.
fn rate_limited(max: u64) -> Refusal {
    Refusal::Client(
        "rate_limited",
        format!("at most {max} messages a minute per user; send it again in a moment"),
    )
}

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: FrameStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    /// Stores a message and tells both users' connections (see the module's steps).
    pub(super) async fn send(&self, request: SendRequest) -> Outcome {
        // Where the send's time goes (logged with "message sent"; `make bench` reads it).
        let started = Instant::now();
        let peer = self.peer(request.to.clone())?;
        self.admit()?;
        let mut draft = self.accept_media(request).await?;
        let (c, page) = self.commit(&peer, &mut draft).await?;
        let storage = started.elapsed();
        self.settle(&c, &draft, &peer)?;
        // From here the message is stored. Nothing may answer `internal` any more: it invites a
        // retry, which a client without `client_msg_id` (the seed's) would store twice. What
        // fails now is logged; connections whose frame cannot be built get none, and the
        // sender then gets `not_delivered` (stored, do not resend; sync to see it).
        let profiles = send::profiles(&c.snap, &self.me, &peer);
        let page = self.page_after(&c, page).await.map(|page| Page {
            profiles: profiles.clone(),
            ..page
        });
        // A duplicate (a retry with the same client_msg_id) is answered to the sending
        // connection, and told everyone again only when it is recent and the user's meter
        // allows (see `fans_out_again`).
        let (stored, duplicate) = c.stored();
        let to_all = !duplicate || self.fans_out_again(stored).await;
        // Who is posted to, judged by the clock now, after the writes (the meter's too), not
        // when the frame came in: a connection whose record expired meanwhile is not posted to.
        // Records in their last [`FAN_OUT_MARGIN_SECS`] are left out too: the posts go out a
        // moment after this (frames built and signed, posts queued), and on AWS a record's last
        // seconds are past the longest a connection lives (`ConnectionTtlSeconds` is API
        // Gateway's 2 h plus slack), so nobody live is missed. (The soak in
        // docs/reliability.md found 3 posts in 1,045 to records expired by up to 0.3 s when the
        // frame's start time was used under load, and 5–8 by up to 0.3 s without the margin.)
        let fan_out_s =
            (self.now_ms + started.elapsed().as_millis() as i64) / 1000 + FAN_OUT_MARGIN_SECS;
        let audience: Vec<Target> = send::audience(&c.snap, &self.me, &peer, fan_out_s)
            .into_iter()
            .filter(|t| to_all || t.connection_id() == self.me.connection_id)
            .collect();
        let frames = self
            .send_frames(&c, &peer, &profiles, page.as_ref(), &audience)
            .await;
        let (told, untold): (Vec<Target>, Vec<Target>) = audience
            .into_iter()
            .partition(|t| frames.contains_key(&frame_kind(t, &self.me)));
        if untold
            .iter()
            .any(|t| t.connection_id() == self.me.connection_id)
        {
            let cmid = stored.client_msg_id.as_deref();
            self.reply(&frames::not_delivered_frame(&stored.id, cmid))
                .await;
        }
        let built = started.elapsed();
        let (delivered, gone) = self
            .poster
            .fan_out(&self.me.app_sid, &told, |t| {
                &frames[&frame_kind(t, &self.me)]
            })
            .await;
        let posted = started.elapsed();
        if !duplicate && stored.screening == Screening::Pending {
            // After the posts: the acknowledgement does not wait for it.
            self.ask_media_check(stored).await;
        }
        let us = |d: std::time::Duration| d.as_micros() as u64;
        tracing::info!(
            connection_id = %self.me.connection_id,
            message_id = %stored.id,
            duplicate,
            told_again = duplicate && to_all,
            delivered,
            gone,
            untold = untold.len(),
            retries = c.retries,
            // µs: the text check and the first read beside it (they overlap), and the write
            // after both
            check_us = c.check.map(us),
            read_us = us(c.read),
            // µs: from the end of both to the end of the commit (after a lost race, again)
            write_us = us(c.write),
            // µs: the media checks and the DynamoDB requests; building and signing the
            // frames; the posts
            storage_us = us(storage),
            frames_us = us(built - storage),
            posts_us = us(posted - built),
            "message sent"
        );
        Ok(FrameOutcome::Sent {
            duplicate,
            delivered,
            gone,
            retries: c.retries,
        })
    }

    /// What this instance counted on the connection (a lower bound of the user's count)
    /// refuses at once, before any request; the user's counter, read with the conversation,
    /// refuses before the write; the transaction's condition enforces it exactly against
    /// concurrent sends from any of the user's connections.
    fn admit(&self) -> std::result::Result<(), Refusal> {
        let max = self.deps.config.max_sends_per_minute;
        match self
            .me
            .sent_in(send_window(self.arrived_ms.div_euclid(1000)))
            >= max
        {
            true => Err(rate_limited(max)),
            false => Ok(()),
        }
    }

    /// Reads the conversation, plans the send and writes it in one transaction; after a lost
    /// race (an entry's version moved) it reads and plans again, at most [`MAX_SEND_RETRIES`]
    /// times. The page runs beside the write when a conversation connection listens.
    ///
    /// A text is checked (content security) side by side with the first read, so the check
    /// adds to a send's time only what it takes beyond that read; what it refuses is refused
    /// before anything is written (the idempotency marker too, so the same `client_msg_id`
    /// may carry an edited text).
    async fn commit(
        &self,
        peer: &str,
        draft: &mut Draft,
    ) -> std::result::Result<(CommittedSend, Result<Option<Page>>), Refusal> {
        let (store, config, me) = (&self.deps.store, &self.deps.config, &self.me);
        let conversation = self.conversation(peer);
        let limit = config.limits.page_default;
        let mut retries = 0;
        let text = (draft.chat_type == ChatType::Text && self.deps.moderation.enabled())
            .then(|| draft.content.clone());
        let mut check = Some(self.screen(text.as_deref(), peer));
        let (mut checked, mut first_read) = (None, std::time::Duration::ZERO);
        let mut read_done = None;
        loop {
            let snap = match check.take() {
                Some(check) => {
                    let started = Instant::now();
                    let read = async {
                        let snap = store.snapshot(&conversation, &me.user, None).await;
                        (snap, started.elapsed())
                    };
                    let ((snap, read), judged) = futures::join!(read, check);
                    first_read = read;
                    read_done = Some(Instant::now());
                    if let Some((judgement, took)) = judged {
                        checked = Some(took);
                        apply(judgement, draft)?;
                    }
                    snap?
                }
                None => store.snapshot(&conversation, &me.user, None).await?,
            };
            // Counted in the minute of the message's own time (its arrival), so that every
            // calendar minute of `created_at` holds at most the limit.
            let claim = RateClaim::new(
                &me.app_sid,
                &me.user,
                &snap.sender_sends,
                self.arrived_ms.div_euclid(1000),
                config.max_sends_per_minute,
            );
            if claim.exhausted(&snap.sender_sends) {
                return Err(rate_limited(config.max_sends_per_minute));
            }
            let plan = send::plan_send(me, peer, &snap, draft, self.arrived_ms)
                .with_marker_ttl(self.now_s(), config.marker_ttl_secs)
                .with_rate(claim);
            let audience = send::audience(&snap, me, peer, self.now_s());
            // The page is bounded by the conversation's newest id (the new one, or a later
            // arrival's that committed first): it is the conversation as this send leaves it
            // whether it reads before or after the commit (a send committing in between would
            // have failed this commit).
            let through = send::last_id(&snap)
                .filter(|last| *last > plan.message.id.as_str())
                .unwrap_or(&plan.message.id)
                .to_owned();
            let page = async {
                match audience.iter().any(|t| t.connection.friend.is_some()) {
                    true => store
                        .latest_through(&conversation, &through, limit)
                        .await
                        .map(Some),
                    false => Ok(None),
                }
            };
            let (committed, page) = futures::join!(store.commit_send(&plan), page);
            let committed = match committed {
                Ok(committed) => committed,
                Err(e) => self.settle_unknown(&conversation, &plan, e).await?,
            };
            match committed {
                Committed::Conflict if retries < MAX_SEND_RETRIES => {
                    retries += 1;
                    tracing::info!(connection_id = %me.connection_id, retries, "send lost a race; retrying");
                    // The user's sends in other conversations meet on the rate counter: a
                    // random pause, growing with each loss, keeps them from meeting again.
                    tokio::time::sleep(retry_pause(retries)).await;
                }
                Committed::Conflict => return Err(crate::Error::Contention("conversation").into()),
                committed => {
                    let c = CommittedSend {
                        conversation,
                        snap,
                        plan,
                        committed,
                        through,
                        retries,
                        check: checked,
                        read: first_read,
                        write: read_done.map_or(std::time::Duration::ZERO, |t| t.elapsed()),
                    };
                    return Ok((c, page));
                }
            }
        }
    }

    /// The content check of a text (`None` for anything else, or when nothing checks), timed.
    async fn screen(
        &self,
        text: Option<&str>,
        peer: &str,
    ) -> Option<(Judgement, std::time::Duration)> {
        let text = text?;
        let started = Instant::now();
        let authored = Authored {
            app_sid: &self.me.app_sid,
            sender: &self.me.user,
            openid: self.me.openid.as_deref(),
            written: Written::Message { peer },
            text,
        };
        let judged = self.deps.moderation.judge(authored).await;
        Some((judged, started.elapsed()))
    }

    /// A commit whose answer was lost (a timeout, a broken connection) may have committed, and
    /// `internal` would invite a retry that a client without `client_msg_id` (the seed's)
    /// stores twice. So it is settled first: the same transaction goes again (the same
    /// `ClientRequestToken`: DynamoDB answers one that committed with success and writes
    /// nothing), and if that fails too, the message is looked for with a consistent read.
    /// Only what is still unknown then answers `internal`.
    async fn settle_unknown(
        &self,
        conversation: &Conversation,
        plan: &SendCommit,
        e: crate::Error,
    ) -> Result<Committed> {
        let id = &plan.message.id;
        tracing::warn!(message_id = %id, error = %e, "a send's commit has no answer; settling it");
        let store = &self.deps.store;
        if let Ok(committed) = store.commit_send(plan).await {
            return Ok(committed);
        }
        let snap = store
            .snapshot(conversation, &self.me.user, Some(id))
            .await?;
        match snap.message {
            Some(m) if m.id == *id => Ok(Committed::Stored),
            _ => Err(e),
        }
    }

    /// Whether a duplicate of `stored` goes to every connection again, not only to the one
    /// that sent it. A client retries when no acknowledgement came, and the likeliest reason is
    /// that the first send was cut off (its function killed, its posts failing) between the
    /// write and the posts: then nobody was told, and a conversation connection (the seed's
    /// client) has no way to notice. Clients match rows by `id` or replace their list, so a
    /// repeat is harmless. Bounded: only within [`FAN_OUT_AGAIN_WITHIN_MS`] of the message, not
    /// for a recalled one (its recall was posted), and counted per user on the
    /// [`Metered::Resends`] meter (`MaxSendsPerMinute` a minute), so a retry loop cannot make
    /// the server fan out without limit. A meter that cannot be read answers the sender only.
    async fn fans_out_again(&self, stored: &Message) -> bool {
        if stored.recalled || self.now_ms - stored.created_at_ms > FAN_OUT_AGAIN_WITHIN_MS {
            return false;
        }
        let window = send_window(self.arrived_ms.div_euclid(1000));
        let me = &self.me;
        let max = self.deps.config.max_sends_per_minute;
        match self
            .deps
            .store
            .claim(&me.app_sid, &me.user, Metered::Resends, window, max)
            .await
        {
            Ok(allowed) => allowed,
            Err(e) => {
                tracing::warn!(message_id = %stored.id, error = %e, "resend meter unavailable; the duplicate is answered to its connection only");
                false
            }
        }
    }

    /// What the commit means for the client: refused by the rate limit, a duplicate of another
    /// message (`client_msg_id_reused`; nothing was written either way), or stored (counted in
    /// this instance's copy of the record).
    fn settle(
        &self,
        c: &CommittedSend,
        draft: &Draft,
        peer: &str,
    ) -> std::result::Result<(), Refusal> {
        match &c.committed {
            Committed::RateLimited => Err(rate_limited(self.deps.config.max_sends_per_minute)),
            Committed::Stored => {
                let window = send_window(self.arrived_ms.div_euclid(1000));
                self.deps.records.count_send(&self.me.connection_id, window);
                Ok(())
            }
            Committed::Duplicate(m) if !send::same_send(m, draft, peer) => Err(Refusal::Client(
                "client_msg_id_reused",
                "this client_msg_id was already used for another message; use a new one".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The page as the send leaves the conversation, for conversation connections: the one
    /// read beside the write (or read once more if that failed), the new message in its
    /// place. `None` when none is needed or it cannot be read (logged).
    async fn page_after(&self, c: &CommittedSend, read: Result<Option<Page>>) -> Option<Page> {
        let (stored, duplicate) = c.stored();
        let limit = self.deps.config.limits.page_default;
        let page = match read {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "page read beside a send failed; reading it again");
                match self
                    .deps
                    .store
                    .latest_through(&c.conversation, &c.through, limit)
                    .await
                {
                    Ok(page) => Some(page),
                    Err(e) => {
                        tracing::error!(message_id = %stored.id, error = %e, "message stored but its page is unreadable");
                        None
                    }
                }
            }
        }?;
        if duplicate {
            return Some(page);
        }
        let newest = page
            .messages
            .iter()
            .map(|m| m.id.as_str())
            .rfind(|id| *id != stored.id);
        let last = send::last_id(&c.snap);
        if last.is_some() && newest < last && last > Some(stored.id.as_str()) {
            // Only a writer outside this protocol (an older function version mid-deploy) can
            // make this happen; the page is still a true state of the conversation.
            tracing::warn!(message_id = %stored.id, "page does not end at the entry's last message");
        }
        Some(place_sent(page, stored, limit))
    }

    /// One frame per kind of target the audience holds, media signed once for all. A kind whose
    /// frame cannot be built (signing failed, no page) is left out (logged).
    async fn send_frames(
        &self,
        c: &CommittedSend,
        peer: &str,
        profiles: &HashMap<String, Profile>,
        page: Option<&Page>,
        audience: &[Target],
    ) -> HashMap<SendFrame, String> {
        let (stored, _) = c.stored();
        let (unread_mine, unread_theirs) = c.unread();
        let config = &self.deps.config;
        let needed: BTreeSet<SendFrame> =
            audience.iter().map(|t| frame_kind(t, &self.me)).collect();
        let signed = self
            .sign(page.iter().flat_map(|p| &p.messages).chain([stored]))
            .await;
        let urls: MediaUrls = match signed {
            Ok(urls) => urls,
            Err(e) => {
                tracing::error!(message_id = %stored.id, error = %e, "message stored but its URLs could not be signed");
                return HashMap::new();
            }
        };
        let row = frames::row_value(stored, profiles, config.display_offset, &urls);
        let side = |senders: bool| if senders { peer } else { self.me.user.as_str() };
        let ack = |ack: bool| stored.client_msg_id.as_deref().filter(|_| ack);
        let mut out = HashMap::new();
        for kind in needed {
            let frame = match (kind, page) {
                (SendFrame::Message { senders, ack: a }, _) => {
                    let unread = if senders { unread_mine } else { unread_theirs };
                    frames::message_frame(side(senders), &row, unread, ack(a))
                }
                (SendFrame::History { senders, ack: a }, Some(page)) => {
                    let extras = PageExtras {
                        peer: Some(side(senders)),
                        message: Some(stored),
                        client_msg_id: ack(a),
                        urls: Some(&urls),
                        ..PageExtras::default()
                    };
                    history_frame(config, page, extras)
                }
                (SendFrame::History { .. }, None) => continue,
            };
            out.insert(kind, frame);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::connection::RegistryEntry;
    use crate::domain::ids::new_message_id;
    use crate::domain::message::ChatType;

    fn message(at: i64) -> Message {
        Message {
            id: new_message_id(at),
            app_sid: "app".into(),
            sender: "111".into(),
            receiver: "222".into(),
            chat_type: ChatType::Text,
            content: format!("m{at}"),
            created_at_ms: at,
            client_msg_id: None,
            media: None,
            seq: None,
            conv_seq: None,
            recalled: false,
            screening: Default::default(),
        }
    }

    #[test]
    fn the_sent_message_takes_its_place_by_id_and_the_page_keeps_its_size() {
        // GIVEN a full page of three that already holds the later arrival at t = 30
        let page = Page {
            messages: [10, 20, 30].map(message).to_vec(),
            has_more: false,
            profiles: HashMap::new(),
        };
        // WHEN a message that arrived at t = 25 is placed (it committed last)
        let later = page.messages[2].clone();
        let placed = place_sent(page.clone(), &message(25), 3);
        // THEN it sits before the later arrival, the oldest row goes, and more exist
        let at: Vec<i64> = placed.messages.iter().map(|m| m.created_at_ms).collect();
        assert_eq!(at, [20, 25, 30]);
        assert!(placed.has_more);
        // AND a page that already read it (after the commit) holds it once
        let again = place_sent(page, &later, 3);
        assert_eq!(again.messages.len(), 3);
        assert!(!again.has_more);
    }

    #[test]
    fn each_connection_gets_the_frame_of_its_kind_and_side() {
        let me = ConnectionRecord {
            connection_id: "mine".into(),
            app_sid: "app".into(),
            user: "111".into(),
            friend: None,
            profile: Profile::default(),
            connected_at_ms: 0,
            expires_at: 10,
            registered: true,
            sends: vec![],
            token_expires_at: None,
            openid: None,
        };
        let target = |user: &str, cid: &str, friend: Option<&str>| Target {
            user: user.into(),
            connection: RegistryEntry {
                connection_id: cid.into(),
                friend: friend.map(str::to_owned),
                connected_at_ms: 0,
                expires_at: 10,
            },
        };
        let kind = |t: Target| frame_kind(&t, &me);
        assert_eq!(
            kind(target("111", "mine", None)),
            SendFrame::Message {
                senders: true,
                ack: true
            }
        );
        assert_eq!(
            kind(target("111", "other-device", Some("222"))),
            SendFrame::History {
                senders: true,
                ack: false
            }
        );
        assert_eq!(
            kind(target("222", "theirs", None)),
            SendFrame::Message {
                senders: false,
                ack: false
            }
        );
    }
}
