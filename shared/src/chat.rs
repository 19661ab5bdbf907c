//! The domain flows behind the three routes. Generic over [`crate::ports`]; no AWS types.

use crate::auth::{TokenError, TokenVerifier};
use crate::config::Config;
use crate::error::Result;
use crate::model::{
    new_message_id, valid_ident, Appended, ConnectionRecord, Message, Peer, Profile,
};
use crate::ports::{
    ConnectionLookup, ConnectionRegister, ConnectionRemove, MessageStore, Notifier, PostError,
    ProfileWrite,
};
use crate::protocol::{self, PageExtras, Request, SendRequest};
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
    /// A message was stored (or was a duplicate) and posted to `delivered` connections.
    Sent {
        duplicate: bool,
        delivered: usize,
        gone: usize,
    },
}

/// Handles one client frame on `$default`. Internal failures send the client an `internal`
/// error frame and come back as `Err` (the handler answers 500 and logs them).
pub async fn on_frame<S, N>(
    store: &S,
    notifier: &N,
    config: &Config,
    connection_id: &str,
    body: &str,
    now_ms: i64,
) -> Result<FrameOutcome>
where
    S: ConnectionLookup + ConnectionRemove + MessageStore,
    N: Notifier,
{
    let poster = Poster::new(store, notifier, config, now_ms);
    let reply = |frame: String| async move { poster.post(connection_id, &frame).await };
    // Parsing first lets every later error frame echo the frame's client_msg_id.
    let request = match protocol::parse_request(body, &config.limits) {
        Ok(r) => r,
        Err(rej) => {
            reply(protocol::error_frame(
                rej.error,
                &rej.msg,
                rej.client_msg_id.as_deref(),
            ))
            .await;
            return Ok(FrameOutcome::Rejected(rej.error));
        }
    };
    let client_msg_id = match &request {
        Request::Send(s) => s.client_msg_id.clone(),
        _ => None,
    };
    let me = match store.get(connection_id, now_ms / 1000).await {
        Ok(Some(me)) => me,
        Ok(None) => {
            reply(protocol::error_frame(
                "not_connected",
                "this connection is not registered; reconnect",
                client_msg_id.as_deref(),
            ))
            .await;
            return Ok(FrameOutcome::UnknownConnection);
        }
        Err(e) => {
            let (code, msg) = e.client_view();
            reply(protocol::error_frame(code, msg, client_msg_id.as_deref())).await;
            return Err(e);
        }
    };
    let result = match request {
        Request::Ping => {
            reply(protocol::pong_frame()).await;
            Ok(FrameOutcome::Ponged)
        }
        Request::Sync { limit } => {
            let page = store.latest(&me.conversation(), limit).await;
            match page {
                Ok(page) => {
                    reply(frame_for(config, &page, PageExtras::default())).await;
                    Ok(FrameOutcome::Synced)
                }
                Err(e) => Err(e),
            }
        }
        Request::History { before, limit } => {
            let conv = me.conversation();
            let page = match &before {
                Some(c) => store.before(&conv, c, limit).await,
                None => store.latest(&conv, limit).await,
            };
            match page {
                Ok(page) => {
                    let extras = PageExtras {
                        before: before.as_ref().map(|c| c.as_str()),
                        ..PageExtras::default()
                    };
                    reply(frame_for(config, &page, extras)).await;
                    Ok(FrameOutcome::Paged)
                }
                Err(e) => Err(e),
            }
        }
        Request::Send(send) => send_message(store, &poster, config, &me, send, now_ms).await,
    };
    if let Err(e) = &result {
        let (code, msg) = e.client_view();
        reply(protocol::error_frame(code, msg, client_msg_id.as_deref())).await;
    }
    result
}

fn frame_for(config: &Config, page: &crate::model::Page, extras: PageExtras<'_>) -> String {
    protocol::history_frame(
        page,
        extras,
        config.display_offset,
        config.limits.max_frame_bytes,
    )
}

/// Stores the message, then posts the latest page to every live connection of both
/// participants in this conversation. Requests: one conditional write, one page query, one
/// connection query, plus one delete per connection found gone.
async fn send_message<S, N>(
    store: &S,
    poster: &Poster<'_, S, N>,
    config: &Config,
    me: &ConnectionRecord,
    send: SendRequest,
    now_ms: i64,
) -> Result<FrameOutcome>
where
    S: ConnectionLookup + ConnectionRemove + MessageStore,
    N: Notifier,
{
    let message = Message {
        id: new_message_id(now_ms),
        app_sid: me.app_sid.clone(),
        sender: me.user.clone(),
        receiver: me.friend.clone(),
        chat_type: send.chat_type,
        content: send.content,
        created_at_ms: now_ms,
        client_msg_id: send.client_msg_id,
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
    let mut peers = store.in_conversation(&conversation, now_ms / 1000).await?;
    // The index behind in_conversation is eventually consistent: never miss the sender.
    if !peers.iter().any(|p| p.connection_id == me.connection_id) {
        peers.push(Peer {
            connection_id: me.connection_id.clone(),
            user: me.user.clone(),
        });
    }
    let plain = frame_for(
        config,
        &page,
        PageExtras {
            message: Some(stored),
            ..PageExtras::default()
        },
    );
    let ack = frame_for(
        config,
        &page,
        PageExtras {
            message: Some(stored),
            client_msg_id: stored.client_msg_id.as_deref(),
            ..PageExtras::default()
        },
    );
    let (delivered, gone) = poster
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
