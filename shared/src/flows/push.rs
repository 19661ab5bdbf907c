//! WeChat's message push to `/wechat/push/{app_sid}` (issue 21): the URL check (`GET`) and
//! events (`POST`). A push that is not signed with the app's `push_token`, is older than
//! [`PUSH_WINDOW_SECS`], repeats a nonce seen in that window, or is not in the app's mode (the
//! secure mode, AES, for an app with `push_aes_key`; else plain) is refused with 401 and
//! changes nothing.
//!
//! No media check is asked yet (issue 21's sends come next), so every `wxa_media_check`
//! verdict names a trace id the chat does not hold: it is answered 200 and changes nothing,
//! as WeChat would otherwise push it again.

use crate::domain::push::{
    open_push, parse_event, verify_url, PushEvent, PushQuery, PUSH_WINDOW_SECS,
};
use crate::error::Result;
use crate::ports::{AppDirectory, NonceStore};
use std::collections::HashMap;

/// What the push function needs, built once per instance.
pub struct PushDeps<S, A> {
    pub store: S,
    /// app_sid → its mini-program's credentials (with `push_token`).
    pub apps: A,
}

/// What a push is answered: a status and a plain text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAnswer {
    pub status: u16,
    pub body: String,
}

fn answer(status: u16, body: &str) -> PushAnswer {
    PushAnswer {
        status,
        body: body.to_owned(),
    }
}

/// One request to `/wechat/push/{app_sid}` at `now_s`.
pub async fn push<S, A>(
    deps: &PushDeps<S, A>,
    method: &str,
    app_sid: &str,
    query: &HashMap<String, String>,
    body: &[u8],
    now_s: i64,
) -> Result<PushAnswer>
where
    S: NonceStore,
    A: AppDirectory,
{
    let apps = deps.apps.apps().await;
    let app = apps.get(app_sid);
    let q = PushQuery::from_map(query);
    match method {
        "GET" => Ok(match verify_url(app, &q) {
            Ok(echostr) => answer(200, &echostr),
            Err(r) => {
                tracing::warn!(app_sid, refused = r.reason(), "push URL check refused");
                answer(401, "unauthorized")
            }
        }),
        "POST" => {
            let (app, event) = match open_push(app, &q, body, now_s) {
                Ok(event) => (app.expect("an opened push has its app"), event),
                Err(r) => {
                    tracing::warn!(app_sid, refused = r.reason(), "push refused");
                    return Ok(answer(401, "unauthorized"));
                }
            };
            let until = now_s + 2 * PUSH_WINDOW_SECS;
            if !deps
                .store
                .claim_nonce(&app.appid, &q.nonce, now_s, until)
                .await?
            {
                tracing::warn!(app_sid, refused = "replayed nonce", "push refused");
                return Ok(answer(401, "unauthorized"));
            }
            Ok(match parse_event(&event) {
                None => answer(400, "not a JSON push"),
                Some(PushEvent::MediaCheck { suggest, .. }) => {
                    tracing::info!(app_sid, suggest, "a media check verdict for a trace id the chat does not hold: nothing changes");
                    answer(200, "success")
                }
                Some(PushEvent::Other) => answer(200, "success"),
            })
        }
        _ => Ok(answer(405, "GET or POST")),
    }
}
