//! A chat client as `clients/miniprogram` behaves, for the runs: user connections, sends that
//! wait for their acknowledgement, uploads with a ticket's POST form.

use super::peer::PeerKind;
use super::{Counters, Res, ACK_TIMEOUT, APP, SECRET};
use crate::ws_client::{conversation_query, user_query, ChatSocket, Read};
use local_stack::stack::Stack;
use serde_json::Value;
use shared::domain::auth::{mint, Claims};
use std::sync::atomic::Ordering;

pub(super) fn token(user: &str) -> Res<String> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    Ok(mint(
        SECRET.as_bytes(),
        &Claims {
            sub: user.into(),
            app: APP.into(),
            exp,
            name: None,
            avatar: None,
        },
    )?)
}

pub(super) async fn open(stack: &Stack, user: &str) -> Res<ChatSocket> {
    ChatSocket::open_retrying(&stack.ws_url, &user_query(user, APP, &token(user)?)).await
}

/// Bob's connection: a user connection, or one bound to his conversation with `ann`.
pub(super) async fn open_peer(
    stack: &Stack,
    kind: PeerKind,
    bob: &str,
    ann: &str,
) -> Res<ChatSocket> {
    let query = match kind {
        PeerKind::User => user_query(bob, APP, &token(bob)?),
        PeerKind::Conversation => conversation_query(bob, ann, APP, &token(bob)?),
    };
    ChatSocket::open_retrying(&stack.ws_url, &query).await
}

/// Sends `frame` on `ws` and reads until a frame `matches`, an "Internal server error" frame
/// (API Gateway's, when the invocation failed) or `ACK_TIMEOUT` passes (`None`).
pub(super) async fn ask(
    ws: &mut ChatSocket,
    frame: &Value,
    counters: &Counters,
    matches: impl Fn(&Value) -> bool,
) -> Res<Option<Value>> {
    ws.send_json(frame).await?;
    counters.frames_sent.fetch_add(1, Ordering::Relaxed);
    let until = std::time::Instant::now() + ACK_TIMEOUT;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        let f = match ws.read(left).await {
            Read::Frame(f) => f,
            Read::Quiet => return Ok(None),
            Read::Ended(_) => return Err("the socket closed".into()),
        };
        if f.get("message")
            .is_some_and(|m| m == "Internal server error")
        {
            counters.gateway_errors.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        if matches(&f) {
            return Ok(Some(f));
        }
    }
}

/// Uploads `body` with a ticket's POST form (what `wx.uploadFile` sends); the HTTP status, or
/// 0 when nothing answered.
pub(super) async fn post_form(http: &reqwest::Client, ticket: &Value, body: Vec<u8>) -> u16 {
    let mut form = reqwest::multipart::Form::new();
    if let Some(fields) = ticket["post"]["fields"].as_object() {
        for (k, v) in fields {
            form = form.text(k.clone(), v.as_str().unwrap_or_default().to_owned());
        }
    }
    let part = reqwest::multipart::Part::bytes(body)
        .file_name("photo.png")
        .mime_str("image/png")
        .expect("a valid mime type");
    let url = ticket["post"]["url"].as_str().unwrap_or_default();
    match http
        .post(url)
        .multipart(form.part("file", part))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Pair `p`'s sender and receiver in `phase`. In the per-user limit phase every pair has the
/// same sender (one user on many connections) and a receiver of its own.
pub(super) fn accounts(phase: &str, p: usize) -> (String, String) {
    let tag: u32 = phase.bytes().map(u32::from).sum::<u32>() % 90 + 10;
    let sender = if phase == super::user_limit::ONE_USER {
        0
    } else {
        p
    };
    (format!("13{tag}0{sender:05}"), format!("13{tag}1{p:05}"))
}
