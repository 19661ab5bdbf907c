//! `$default`: one client frame, from parsing to the flow that carries it out. Each action's
//! flow is a method of [`FrameCtx`] in a file of its own (`pages`, `upload`, `send`, `list`,
//! `read`, `typing`, `recall`); [`FrameCtx::dispatch`] has one arm per action.

use crate::config::Config;
use crate::domain::connection::{send_window, ConnectionRecord, Metered, Target};
use crate::domain::ids::Conversation;
use crate::domain::message::{Message, Page};
use crate::error::Result;
use crate::flows::deps::{Deps, FrameStore, Media};
use crate::flows::fanout::Poster;
use crate::ports::{ConnectionCloser, MediaObjects, MediaSigner, Notifier};
use crate::wire::frames::{self, MediaUrls, PageExtras};
use crate::wire::request::{self, Request};

/// What became of one frame on `$default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameOutcome {
    /// The connection has no (live) record: an error frame was sent.
    UnknownConnection,
    /// The frame was invalid: an error frame was sent, nothing changed.
    Rejected(&'static str),
    Synced,
    Paged,
    Ponged,
    /// An upload ticket was signed.
    Ticketed,
    /// A message was stored (or was a duplicate) and posted to `delivered` connections, after
    /// `retries` rounds lost to concurrent sends in the same conversation.
    Sent {
        duplicate: bool,
        delivered: usize,
        gone: usize,
        retries: usize,
    },
    /// A page of the conversation list was sent.
    Listed,
    /// A read position was handled; `moved` when it advanced (and a receipt went out).
    Read {
        moved: bool,
    },
    /// A typing frame was relayed, or dropped by the throttle.
    Typed {
        relayed: bool,
    },
    /// A message was recalled (or already was).
    Recalled,
    /// A `subscribe` was answered with the user's count of grants.
    Subscribed {
        grants: u64,
    },
}

/// Why a valid frame was not carried out.
pub(super) enum Refusal {
    /// The client's mistake: an error frame with this code and text; nothing changed.
    Client(&'static str, String),
    /// Ours: an `internal` error frame, and the handler fails.
    Internal(crate::Error),
    /// Content security refused a text: `content_blocked` with the label's name.
    Blocked(&'static str),
}

impl From<crate::Error> for Refusal {
    fn from(e: crate::Error) -> Self {
        Refusal::Internal(e)
    }
}

impl From<request::Rejection> for Refusal {
    fn from(r: request::Rejection) -> Self {
        Refusal::Client(r.error, r.msg)
    }
}

/// The answer to a frame naming a message this conversation does not hold.
pub(super) fn not_found() -> Refusal {
    Refusal::Client(
        "not_found",
        "there is no message with this id in this conversation".into(),
    )
}

/// What a flow of `$default` returns.
pub(super) type Outcome = std::result::Result<FrameOutcome, Refusal>;

/// One frame being handled: who sent it, when, and how to answer.
pub(super) struct FrameCtx<'a, S, N, O> {
    pub(super) deps: &'a Deps<S, N, Media<O>>,
    pub(super) me: ConnectionRecord,
    pub(super) now_ms: i64,
    /// When API Gateway received the frame (`requestTimeEpoch`): a message's time and id.
    pub(super) arrived_ms: i64,
    pub(super) poster: Poster<'a, S, N>,
}

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: FrameStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    /// Answers the connection the frame came on.
    pub(super) async fn reply(&self, frame: &str) {
        let me = Target {
            user: self.me.user.clone(),
            connection: self.me.registry_entry(),
        };
        self.poster.deliver(&self.me.app_sid, &me, frame).await;
    }

    pub(super) fn now_s(&self) -> i64 {
        self.now_ms / 1000
    }

    /// Counts one `what` against its per-user limit of `max` a minute (one conditional write),
    /// or refuses with `code` when the minute's count is reached. Nothing else is done first,
    /// so a refusal changes nothing.
    pub(super) async fn meter(
        &self,
        what: Metered,
        max: u64,
        code: &'static str,
        noun: &str,
    ) -> std::result::Result<(), Refusal> {
        let window = send_window(self.arrived_ms.div_euclid(1000));
        let me = &self.me;
        match self
            .deps
            .store
            .claim(&me.app_sid, &me.user, what, window, max)
            .await?
        {
            true => Ok(()),
            false => Err(Refusal::Client(
                code,
                format!("at most {max} {noun} a minute per user; try again in a moment"),
            )),
        }
    }

    /// The conversation's other party: `to`, which a user connection must name; on a
    /// conversation connection its friend, which `to` may only repeat.
    pub(super) fn peer(&self, to: Option<String>) -> std::result::Result<String, Refusal> {
        match (&self.me.friend, to) {
            (Some(friend), None) => Ok(friend.clone()),
            (Some(friend), Some(to)) if *friend == to => Ok(to),
            (None, Some(to)) if to != self.me.user => Ok(to),
            _ => Err(request::bad_peer().into()),
        }
    }

    pub(super) fn conversation(&self, peer: &str) -> Conversation {
        Conversation::new(&self.me.app_sid, &self.me.user, peer)
    }

    /// Signs the download URLs a frame over `messages` needs.
    pub(super) async fn sign<'m>(
        &self,
        messages: impl IntoIterator<Item = &'m Message>,
    ) -> Result<MediaUrls> {
        let keys = frames::keys_to_sign(messages);
        if keys.is_empty() {
            return Ok(MediaUrls::default());
        }
        let secs = self.deps.config.media.download_secs;
        let signed = self
            .deps
            .media
            .objects
            .download_urls(&keys, std::time::Duration::from_secs(secs))
            .await?;
        Ok(MediaUrls {
            urls: keys.into_iter().zip(signed).collect(),
            expires_at_ms: self.now_ms + secs as i64 * 1000,
        })
    }

    /// A `history` frame of `page`, its media signed.
    pub(super) async fn page_frame(&self, page: &Page, extras: PageExtras<'_>) -> Result<String> {
        let urls = self
            .sign(page.messages.iter().chain(extras.message))
            .await?;
        let extras = PageExtras {
            urls: Some(&urls),
            ..extras
        };
        Ok(history_frame(&self.deps.config, page, extras))
    }

    /// Carries out one valid request. Every new action is one arm here.
    async fn dispatch(&self, request: Request) -> Outcome {
        match request {
            Request::Ping => {
                self.reply(&frames::pong_frame()).await;
                Ok(FrameOutcome::Ponged)
            }
            Request::Sync { to, limit } => self.sync(self.peer(to)?, limit).await,
            Request::History { to, before, limit } => {
                self.history(self.peer(to)?, before, limit).await
            }
            Request::Upload(ticket) => self.upload(ticket).await,
            Request::Send(send) => self.send(send).await,
            Request::Conversations { before, limit } => {
                self.conversations(before.as_ref(), limit).await
            }
            Request::Read { to, id } => self.read(self.peer(to)?, &id).await,
            Request::Typing { to } => self.typing(self.peer(to)?).await,
            Request::Recall { to, id } => self.recall(self.peer(to)?, &id).await,
            Request::Subscribe {
                req_id,
                template_id,
                accepted,
            } => self.subscribe(&req_id, &template_id, accepted).await,
        }
    }
}

/// A `history` frame of `page` within the configured frame budget.
pub(super) fn history_frame(config: &Config, page: &Page, extras: PageExtras<'_>) -> String {
    frames::history_frame(
        page,
        extras,
        config.display_offset,
        config.limits.max_frame_bytes,
    )
}

/// Handles one client frame on `$default`: parse, look up the connection, dispatch. A client
/// mistake gets an error frame naming it and changes nothing; an internal failure sends the
/// client an `internal` error frame and comes back as `Err` (the handler answers 500 and logs
/// it). The frame counts as arrived at `now_ms`.
pub async fn on_frame<S, N, O>(
    deps: &Deps<S, N, Media<O>>,
    connection_id: &str,
    body: &str,
    now_ms: i64,
) -> Result<FrameOutcome>
where
    S: FrameStore,
    N: Notifier + ConnectionCloser,
    O: MediaObjects + MediaSigner,
{
    on_frame_arrived(deps, connection_id, body, now_ms, now_ms).await
}

/// [`on_frame`] for a frame API Gateway received at `arrived_ms` (`requestTimeEpoch`), handled
/// at `now_ms`. A message takes its time and id from its arrival, so one connection's messages
/// are stored in the order it sent them even when their frames are handled concurrently.
pub async fn on_frame_arrived<S, N, O>(
    deps: &Deps<S, N, Media<O>>,
    connection_id: &str,
    body: &str,
    now_ms: i64,
    arrived_ms: i64,
) -> Result<FrameOutcome>
where
    S: FrameStore,
    N: Notifier + ConnectionCloser,
    O: MediaObjects + MediaSigner,
{
    let poster = Poster::new(
        &deps.store,
        &deps.notifier,
        &deps.records,
        &deps.config,
        now_ms,
    );
    let reply = |frame: String| async move { poster.post(connection_id, &frame).await };
    // Parsing first lets every later error frame echo the frame's client_msg_id / req_id.
    let request = match request::parse_request(body, &deps.config.limits) {
        Ok(r) => r,
        Err(rej) => {
            reply(frames::error_frame(rej.error, &rej.msg, &rej.echo)).await;
            return Ok(FrameOutcome::Rejected(rej.error));
        }
    };
    let echo = &request.echo();
    let internal = |e: crate::Error| async move {
        let (code, msg) = e.client_view();
        reply(frames::error_frame(code, msg, echo)).await;
        Err(e)
    };
    let me = match connection_record(deps, connection_id, now_ms).await {
        Ok(Some(me)) => me,
        Ok(None) => {
            let msg = "this connection is not registered; reconnect";
            reply(frames::error_frame("not_connected", msg, echo)).await;
            return Ok(FrameOutcome::UnknownConnection);
        }
        Err(e) => return internal(e).await,
    };
    if me.token_expired(now_ms.div_euclid(1000)) {
        // The token the connection was opened with has run out: the client fetches a new one
        // and reconnects (the seed's client, which cannot, reconnects and is refused).
        let msg = "your token has expired; reconnect with a new one";
        reply(frames::error_frame("token_expired", msg, echo)).await;
        if let Err(e) = deps.notifier.close(connection_id).await {
            tracing::info!(error = %e, "closing a connection whose token expired failed");
        }
        return Ok(FrameOutcome::Rejected("token_expired"));
    }
    let ctx = FrameCtx {
        deps,
        me,
        now_ms,
        arrived_ms,
        poster,
    };
    match ctx.dispatch(request).await {
        Ok(outcome) => Ok(outcome),
        Err(Refusal::Client(code, msg)) => {
            reply(frames::error_frame(code, &msg, echo)).await;
            Ok(FrameOutcome::Rejected(code))
        }
        Err(Refusal::Internal(e)) => internal(e).await,
        Err(Refusal::Blocked(label)) => {
            reply(frames::content_blocked_frame(label, echo)).await;
            Ok(FrameOutcome::Rejected("content_blocked"))
        }
    }
}

/// The record of the connection a frame came on: from this instance's cache, else read (and
/// cached). A connection from before the registries is entered in its user's registry once.
async fn connection_record<S, N, O>(
    deps: &Deps<S, N, Media<O>>,
    connection_id: &str,
    now_ms: i64,
) -> Result<Option<ConnectionRecord>>
where
    S: FrameStore,
{
    let cache_ms = deps.config.connection_cache_secs * 1000;
    if let Some(me) = deps.records.get(connection_id, now_ms, cache_ms) {
        return Ok(Some(me));
    }
    let Some(mut me) = deps.store.get(connection_id, now_ms / 1000).await? else {
        return Ok(None);
    };
    if !me.registered {
        // A connection made before the registries existed: enter it once, so that the other
        // user's sends find it too (it sends a ping at least every 9 minutes).
        me.registered = true;
        let (entered, marked) = futures::join!(deps.store.enroll(&me), deps.store.register(&me));
        entered.and(marked)?;
    }
    if cache_ms > 0 {
        deps.records.put(&me, now_ms);
    }
    Ok(Some(me))
}
