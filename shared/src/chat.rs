//! The domain flows behind the three routes. Generic over [`crate::ports`]; no AWS types.

use crate::auth::{TokenError, TokenVerifier};
use crate::config::Config;
use crate::error::Result;
use crate::media::{self, MediaInfo, MediaKey, ObjectInfo, OwnerKey, TicketRequest};
use crate::model::{
    new_message_id, valid_ident, Appended, ConnectionRecord, Message, Page, Peer, Profile,
};
use crate::ports::{
    ConnectionLookup, ConnectionRegister, ConnectionRemove, MediaObjects, MediaSigner,
    MessageStore, Notifier, PostError, ProfileWrite,
};
use crate::protocol::{self, MediaUrls, PageExtras, Request, SendRequest};
use futures::StreamExt;

/// Longest display name kept from a token (characters).
pub const MAX_NAME_CHARS: usize = 64;
/// Longest avatar URL kept from a token (bytes).
pub const MAX_AVATAR_BYTES: usize = 1024;
/// Posts in flight at once while fanning a message out.
const FANOUT_CONCURRENCY: usize = 16;

/// The parts of a `$connect` request that matter.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest<'a> {
    pub connection_id: &'a str,
    pub userphone: Option<&'a str>,
    pub friendphone: Option<&'a str>,
    pub app_sid: Option<&'a str>,
    /// From `?token=` or `Authorization: Bearer`.
    pub token: Option<&'a str>,
    pub now_ms: i64,
}

/// What `$connect` answers. A refusal stores nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    Accepted,
    /// 400: a parameter is missing or malformed.
    BadRequest(&'static str),
    /// 401: no token, or a forged or expired one.
    Unauthorized(&'static str),
    /// 403: a valid token for another account or app.
    Forbidden(&'static str),
}

impl ConnectOutcome {
    pub fn status(self) -> u16 {
        match self {
            ConnectOutcome::Accepted => 200,
            ConnectOutcome::BadRequest(_) => 400,
            ConnectOutcome::Unauthorized(_) => 401,
            ConnectOutcome::Forbidden(_) => 403,
        }
    }
    pub fn reason(self) -> &'static str {
        match self {
            ConnectOutcome::Accepted => "connected",
            ConnectOutcome::BadRequest(r)
            | ConnectOutcome::Unauthorized(r)
            | ConnectOutcome::Forbidden(r) => r,
        }
    }
}

/// Authenticates a handshake and records the connection and the user's profile.
pub async fn connect<S: ConnectionRegister + ProfileWrite>(
    store: &S,
    verifier: &TokenVerifier,
    config: &Config,
    req: &ConnectRequest<'_>,
) -> Result<ConnectOutcome> {
    let param = |v: Option<&'_ str>| v.filter(|s| valid_ident(s)).map(str::to_owned);
    let (Some(user), Some(friend), Some(app)) = (
        param(req.userphone),
        param(req.friendphone),
        param(req.app_sid),
    ) else {
        return Ok(ConnectOutcome::BadRequest(
            "userphone, friendphone and app_sid are required (1-64 of A-Z a-z 0-9 _ . @ + -)",
        ));
    };
    if user == friend {
        return Ok(ConnectOutcome::BadRequest(
            "userphone and friendphone must differ",
        ));
    }
    let claims = match verifier.verify(req.token.unwrap_or_default()) {
        Ok(c) => c,
        Err(TokenError::Missing) => return Ok(ConnectOutcome::Unauthorized("token required")),
        Err(TokenError::Expired) => return Ok(ConnectOutcome::Unauthorized("token expired")),
        Err(TokenError::Invalid) => return Ok(ConnectOutcome::Unauthorized("token invalid")),
    };
    if claims.sub != user || claims.app != app {
        return Ok(ConnectOutcome::Forbidden(
            "token is for another account or app",
        ));
    }
    let profile = Profile {
        name: claims
            .name
            .unwrap_or_default()
            .chars()
            .take(MAX_NAME_CHARS)
            .collect(),
        avatar: claims
            .avatar
            .filter(|a| a.len() <= MAX_AVATAR_BYTES)
            .unwrap_or_default(),
    };
    let record = ConnectionRecord {
        connection_id: req.connection_id.to_owned(),
        app_sid: app,
        user,
        friend,
        profile,
        connected_at_ms: req.now_ms,
        expires_at: req.now_ms / 1000 + config.connection_ttl_secs,
    };
    // Profile first: once the connection exists, its profile does too.
    store
        .put_profile(&record.conversation(), &record.user, &record.profile)
        .await?;
    store.register(&record).await?;
    tracing::info!(connection_id = req.connection_id, app_sid = %record.app_sid, "connected");
    Ok(ConnectOutcome::Accepted)
}

/// Forgets a connection. `$disconnect` is best effort on API Gateway's side; TTL and 410
/// handling cover the cases where it never comes.
pub async fn disconnect<S: ConnectionRemove>(store: &S, connection_id: &str) -> Result<()> {
    store.remove(connection_id).await?;
    tracing::info!(connection_id, "disconnected");
    Ok(())
}

/// What a function needs, built once per cold start. `$disconnect` uses only `store`.
pub struct Deps<S, N = (), M = ()> {
    pub store: S,
    pub notifier: N,
    pub media: M,
    pub config: Config,
}

/// The media bucket as the domain sees it, with the key that derives owner segments.
pub struct Media<O> {
    pub objects: O,
    pub owner_key: OwnerKey,
}

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
    /// A message was stored (or was a duplicate) and posted to `delivered` connections.
    Sent {
        duplicate: bool,
        delivered: usize,
        gone: usize,
    },
}

/// Why a valid frame was not carried out.
enum Refusal {
    /// The client's mistake: an error frame with this code and text; nothing changed.
    Client(&'static str, String),
    /// Ours: an `internal` error frame, and the handler fails.
    Internal(crate::Error),
}

impl From<crate::Error> for Refusal {
    fn from(e: crate::Error) -> Self {
        Refusal::Internal(e)
    }
}

/// One frame being handled: who sent it, when, and how to answer.
struct FrameCtx<'a, S, N, O> {
    deps: &'a Deps<S, N, Media<O>>,
    me: ConnectionRecord,
    now_ms: i64,
    poster: Poster<'a, S, N>,
}

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: ConnectionLookup + ConnectionRemove + MessageStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    async fn reply(&self, frame: &str) {
        self.poster.post(&self.me.connection_id, frame).await;
    }

    /// Signs the download URLs a frame over `messages` needs.
    async fn sign<'m>(&self, messages: impl IntoIterator<Item = &'m Message>) -> Result<MediaUrls> {
        let keys = protocol::keys_to_sign(messages);
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

    async fn page_frame(&self, page: &Page, extras: PageExtras<'_>) -> Result<String> {
        let urls = self
            .sign(page.messages.iter().chain(extras.message))
            .await?;
        Ok(frame_for(
            &self.deps.config,
            page,
            PageExtras {
                urls: Some(&urls),
                ..extras
            },
        ))
    }

    /// Carries out one valid request. Every new action is one arm here.
    async fn dispatch(&self, request: Request) -> std::result::Result<FrameOutcome, Refusal> {
        let store = &self.deps.store;
        let conv = self.me.conversation();
        match request {
            Request::Ping => {
                self.reply(&protocol::pong_frame()).await;
                Ok(FrameOutcome::Ponged)
            }
            Request::Sync { limit } => {
                let page = store.latest(&conv, limit).await?;
                self.reply(&self.page_frame(&page, PageExtras::default()).await?)
                    .await;
                Ok(FrameOutcome::Synced)
            }
            Request::History { before, limit } => {
                let page = match &before {
                    Some(c) => store.before(&conv, c, limit).await?,
                    None => store.latest(&conv, limit).await?,
                };
                let extras = PageExtras {
                    before: before.as_ref().map(|c| c.as_str()),
                    ..PageExtras::default()
                };
                self.reply(&self.page_frame(&page, extras).await?).await;
                Ok(FrameOutcome::Paged)
            }
            Request::Upload(ticket) => self.upload(ticket).await,
            Request::Send(send) => self.send(send).await,
        }
    }

    /// Checks a ticket request against the limits, then signs a PUT and a POST for a fresh key.
    async fn upload(&self, req: TicketRequest) -> std::result::Result<FrameOutcome, Refusal> {
        let limits = &self.deps.config.media;
        if let Err(refusal) = media::check_ticket(&req, limits) {
            return Err(Refusal::Client(refusal.code(), refusal.message(req.kind)));
        }
        let media = &self.deps.media;
        let owner = media.owner_key.owner(&self.me.app_sid, &self.me.user);
        let key = MediaKey::new(req.kind, owner, &req.content_type, req.dims, self.now_ms);
        let upload_key = key.upload_key();
        let ticket = media
            .objects
            .upload_ticket(
                &upload_key,
                &req.content_type,
                req.size,
                std::time::Duration::from_secs(limits.ticket_secs),
            )
            .await?;
        self.reply(&protocol::upload_frame(
            &req.req_id,
            &upload_key,
            limits.ticket_secs,
            req.size,
            &ticket,
        ))
        .await;
        tracing::info!(key = %upload_key, size = req.size, "upload ticket signed");
        Ok(FrameOutcome::Ticketed)
    }

    /// Checks an uploaded object named by a send: what S3 holds of it, and whether it still
    /// has to be copied to the message prefix (a retried send may have copied it already).
    async fn check_object(
        &self,
        key: &MediaKey,
    ) -> std::result::Result<(ObjectInfo, bool), Refusal> {
        let objects = &self.deps.media.objects;
        let (upload, message) = (key.upload_key(), key.message_key());
        let info = match objects.head(&upload).await? {
            Some(info) => Some((info, true)),
            // Already copied: a retry of a send that got that far (the upload may have expired).
            None => objects.head(&message).await?.map(|i| (i, false)),
        };
        let Some((info, needs_copy)) = info else {
            return Err(Refusal::Client(
                "media_missing",
                "nothing was uploaded with this key (or the ticket expired)".into(),
            ));
        };
        let limits = &self.deps.config.media;
        if !key.matches_type(&info.content_type)
            || !limits.fits(key.kind, &info.content_type, info.size)
        {
            return Err(Refusal::Client(
                "media_mismatch",
                format!(
                    "the uploaded object is not an allowed {} of at most {} bytes",
                    key.kind.noun(),
                    limits.max_bytes(key.kind)
                ),
            ));
        }
        Ok((info, needs_copy))
    }

    /// Stores the message, then posts the latest page to every live connection of both
    /// participants in this conversation. Requests: one conditional write, one page query, one
    /// connection query, plus one delete per connection found gone; a media send adds a
    /// `HeadObject` and a `CopyObject` per object (the video and its poster in parallel).
    async fn send(&self, send: SendRequest) -> std::result::Result<FrameOutcome, Refusal> {
        let (store, config, me) = (&self.deps.store, &self.deps.config, &self.me);
        let (content, media) = match &send.media {
            None => (send.content, None),
            Some(r) => {
                // Ownership first (no request), then both objects checked, and only then
                // copied: a refused send leaves nothing behind.
                let owner = self.deps.media.owner_key.owner(&me.app_sid, &me.user);
                let keys: Vec<&MediaKey> = std::iter::once(&r.key).chain(&r.poster).collect();
                if keys.iter().any(|k| k.owner != owner) {
                    return Err(Refusal::Client(
                        "bad_media_key",
                        "this key was not issued to you in this app".into(),
                    ));
                }
                let checked =
                    futures::future::try_join_all(keys.iter().map(|k| self.check_object(k)))
                        .await?;
                let objects = &self.deps.media.objects;
                futures::future::try_join_all(keys.iter().zip(&checked).filter(|(_, c)| c.1).map(
                    |(k, _)| async move { objects.copy(&k.upload_key(), &k.message_key()).await },
                ))
                .await?;
                let info = checked
                    .into_iter()
                    .next()
                    .expect("the message's own object")
                    .0;
                let (width, height) = r.key.dims().unzip();
                let media = MediaInfo {
                    content_type: info.content_type,
                    size: info.size,
                    width,
                    height,
                    poster: r.poster.as_ref().map(MediaKey::message_key),
                };
                (r.key.message_key(), Some(media))
            }
        };
        let message = Message {
            id: new_message_id(self.now_ms),
            app_sid: me.app_sid.clone(),
            sender: me.user.clone(),
            receiver: me.friend.clone(),
            chat_type: send.chat_type,
            content,
            created_at_ms: self.now_ms,
            client_msg_id: send.client_msg_id,
            media,
        };
        // A duplicate is posted again like a first send: the retry may be because the first
        // fan-out never arrived, and clients replace their list, so a repeat is harmless.
        let appended = store.append(&message).await?;
        let duplicate = matches!(appended, Appended::Duplicate(_));
        let stored = appended.message();
        let conversation = me.conversation();
        let page = store
            .latest(&conversation, config.limits.page_default)
            .await?;
        let mut peers = store
            .in_conversation(&conversation, self.now_ms / 1000)
            .await?;
        // The index behind in_conversation is eventually consistent: never miss the sender.
        if !peers.iter().any(|p| p.connection_id == me.connection_id) {
            peers.push(Peer {
                connection_id: me.connection_id.clone(),
                user: me.user.clone(),
            });
        }
        let urls = self.sign(page.messages.iter().chain([stored])).await?;
        let extras = PageExtras {
            message: Some(stored),
            urls: Some(&urls),
            ..PageExtras::default()
        };
        let plain = frame_for(config, &page, extras);
        let ack = frame_for(
            config,
            &page,
            PageExtras {
                client_msg_id: stored.client_msg_id.as_deref(),
                ..extras
            },
        );
        let (delivered, gone) = self
            .poster
            .fan_out(&peers, |p| {
                if p.connection_id == me.connection_id {
                    &ack
                } else {
                    &plain
                }
            })
            .await;
        tracing::info!(
            connection_id = %me.connection_id,
            message_id = %stored.id,
            duplicate,
            delivered,
            gone,
            "message sent"
        );
        Ok(FrameOutcome::Sent {
            duplicate,
            delivered,
            gone,
        })
    }
}

/// Handles one client frame on `$default`: parse, look up the connection, dispatch. A client
/// mistake gets an error frame naming it and changes nothing; an internal failure sends the
/// client an `internal` error frame and comes back as `Err` (the handler answers 500 and logs
/// it).
pub async fn on_frame<S, N, O>(
    deps: &Deps<S, N, Media<O>>,
    connection_id: &str,
    body: &str,
    now_ms: i64,
) -> Result<FrameOutcome>
where
    S: ConnectionLookup + ConnectionRemove + MessageStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    let poster = Poster::new(&deps.store, &deps.notifier, &deps.config, now_ms);
    let reply = |frame: String| async move { poster.post(connection_id, &frame).await };
    // Parsing first lets every later error frame echo the frame's client_msg_id / req_id.
    let request = match protocol::parse_request(body, &deps.config.limits) {
        Ok(r) => r,
        Err(rej) => {
            reply(protocol::error_frame(rej.error, &rej.msg, &rej.echo)).await;
            return Ok(FrameOutcome::Rejected(rej.error));
        }
    };
    let echo = request.echo();
    let me = match deps.store.get(connection_id, now_ms / 1000).await {
        Ok(Some(me)) => me,
        Ok(None) => {
            reply(protocol::error_frame(
                "not_connected",
                "this connection is not registered; reconnect",
                &echo,
            ))
            .await;
            return Ok(FrameOutcome::UnknownConnection);
        }
        Err(e) => {
            let (code, msg) = e.client_view();
            reply(protocol::error_frame(code, msg, &echo)).await;
            return Err(e);
        }
    };
    let ctx = FrameCtx {
        deps,
        me,
        now_ms,
        poster,
    };
    match ctx.dispatch(request).await {
        Ok(outcome) => Ok(outcome),
        Err(Refusal::Client(code, msg)) => {
            reply(protocol::error_frame(code, &msg, &echo)).await;
            Ok(FrameOutcome::Rejected(code))
        }
        Err(Refusal::Internal(e)) => {
            let (code, msg) = e.client_view();
            reply(protocol::error_frame(code, msg, &echo)).await;
            Err(e)
        }
    }
}

fn frame_for(config: &Config, page: &Page, extras: PageExtras<'_>) -> String {
    protocol::history_frame(
        page,
        extras,
        config.display_offset,
        config.limits.max_frame_bytes,
    )
}

/// Posts frames, removing the records of connections API Gateway reports gone.
struct Poster<'a, S, N> {
    store: &'a S,
    notifier: &'a N,
    /// Only records of connections made before this (epoch ms) are removed on a 410: API
    /// Gateway also answers 410 while a connection's `$connect` is still running, and that
    /// connection's brand-new record must survive.
    gone_before_ms: i64,
}

impl<S, N> Clone for Poster<'_, S, N> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S, N> Copy for Poster<'_, S, N> {}

impl<'a, S: ConnectionRemove, N: Notifier> Poster<'a, S, N> {
    fn new(store: &'a S, notifier: &'a N, config: &Config, now_ms: i64) -> Self {
        Poster {
            store,
            notifier,
            gone_before_ms: now_ms - config.gone_grace_secs * 1000,
        }
    }

    /// Posts to every peer, a bounded number at a time. Returns (delivered, not delivered).
    async fn fan_out<'f>(
        &self,
        peers: &[Peer],
        frame: impl Fn(&Peer) -> &'f String,
    ) -> (usize, usize) {
        let outcomes: Vec<bool> = futures::stream::iter(peers)
            .map(|p| {
                let frame = frame(p);
                async move { self.post(&p.connection_id, frame).await }
            })
            .buffer_unordered(FANOUT_CONCURRENCY)
            .collect()
            .await;
        let delivered = outcomes.iter().filter(|ok| **ok).count();
        (delivered, peers.len() - delivered)
    }

    /// Posts one frame. A 410 removes exactly that connection's record (if it is older than
    /// the grace period); any other failure is logged and left alone (the message is stored;
    /// the client gets it with its next sync). Returns whether the frame was delivered.
    async fn post(&self, connection_id: &str, frame: &str) -> bool {
        match self.notifier.post(connection_id, frame).await {
            Ok(()) => true,
            Err(PostError::Gone) => {
                match self
                    .store
                    .remove_gone(connection_id, self.gone_before_ms)
                    .await
                {
                    Ok(true) => tracing::info!(connection_id, "removed a gone connection"),
                    Ok(false) => {
                        tracing::info!(connection_id, "gone connection kept: still connecting")
                    }
                    Err(e) => {
                        tracing::warn!(connection_id, error = %e, "could not remove a gone connection")
                    }
                }
                false
            }
            Err(PostError::Other(e)) => {
                tracing::warn!(connection_id, error = %e, "post to connection failed");
                false
            }
        }
    }
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
