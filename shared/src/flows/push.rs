//! WeChat's message push to `/wechat/push/{app_sid}` (issue 21): the URL check (`GET`) and
//! events (`POST`). A push that is not signed with the app's `push_token`, is older than
//! [`PUSH_WINDOW_SECS`], repeats a nonce seen in that window, or is not in the app's mode (the
//! secure mode, AES, for an app with `push_aes_key`; else plain) is refused with 401 and
//! changes nothing.
//!
//! The one event read is `wxa_media_check`, the verdict on a media check a send asked for:
//! `risky` takes the message down everywhere and deletes its objects; `pass` and `review` are
//! recorded. A verdict for a trace id the chat does not hold, or for a message recalled or
//! taken down already, changes nothing and is answered 200 (WeChat pushes again otherwise).
//!
//! Requests per verdict: two reads (the trace id's item, the message); then one conditional
//! write, or for `risky` one delete per object and the take-down's requests
//! ([`crate::flows::recheck::take_down`]).

use crate::config::Config;
use crate::domain::media::sent_objects;
use crate::domain::moderation::{Screening, Suggest};
use crate::domain::push::{
    open_push, parse_event, verify_url, PushEvent, PushQuery, PUSH_WINDOW_SECS,
};
use crate::error::Result;
use crate::flows::recheck::{take_down, TakeDown};
use crate::ports::{
    AppDirectory, ConnectionRemove, MediaCheckStore, MediaObjects, MediaSigner, MessageStore,
    NonceStore, Notifier, ScreeningStore,
};
use std::collections::HashMap;

/// What the push function needs, built once per instance.
pub struct PushDeps<S, A, N, O> {
    pub store: S,
    /// app_sid → its mini-program's credentials (with `push_token`).
    pub apps: A,
    /// Tells both users' connections of a take-down.
    pub notifier: N,
    /// Deletes a taken-down message's objects; signs the pages' URLs.
    pub objects: O,
    pub config: Config,
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
pub async fn push<S, A, N, O>(
    deps: &PushDeps<S, A, N, O>,
    method: &str,
    app_sid: &str,
    query: &HashMap<String, String>,
    body: &[u8],
    now_s: i64,
) -> Result<PushAnswer>
where
    S: NonceStore + MediaCheckStore + ScreeningStore + MessageStore + ConnectionRemove,
    A: AppDirectory,
    N: Notifier,
    O: MediaObjects + MediaSigner,
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
                Some(PushEvent::MediaCheck {
                    trace_id,
                    suggest,
                    label,
                }) => {
                    verdict(deps, app_sid, &trace_id, &suggest, label, now_s * 1000).await?;
                    answer(200, "success")
                }
                Some(PushEvent::Other) => answer(200, "success"),
            })
        }
        _ => Ok(answer(405, "GET or POST")),
    }
}

/// What a media check's verdict does to the message its trace id names.
async fn verdict<S, A, N, O>(
    deps: &PushDeps<S, A, N, O>,
    app_sid: &str,
    trace_id: &str,
    suggest: &str,
    label: u32,
    now_ms: i64,
) -> Result<()>
where
    S: MediaCheckStore + ScreeningStore + MessageStore + ConnectionRemove,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    let m = match deps.store.traced(trace_id).await? {
        Some(m) if m.app_sid == app_sid => m,
        _ => {
            tracing::info!(
                app_sid,
                trace_id,
                suggest,
                "a media check verdict for a trace id the chat does not hold: nothing changes"
            );
            return Ok(());
        }
    };
    if m.recalled || matches!(m.screening, Screening::Blocked { .. }) {
        tracing::info!(message_id = %m.id, trace_id, suggest, "a media check verdict for a message recalled or taken down: nothing changes");
        return Ok(());
    }
    let settled = match Suggest::parse(suggest) {
        Some(Suggest::Pass) => deps.store.settle_media(&m, &Screening::Clear).await?,
        Some(Suggest::Review) => {
            let review = Screening::Review { label };
            deps.store.settle_media(&m, &review).await?
        }
        Some(Suggest::Risky) => {
            // The objects first: a take-down empties the item of the keys that name them, and
            // a push answered with an error comes again and finds the message blocked.
            deps.objects.delete(&sent_objects(&m)).await?;
            let with = TakeDown {
                store: &deps.store,
                notifier: &deps.notifier,
                signer: &deps.objects,
                config: &deps.config,
            };
            take_down(&with, &m, label, now_ms).await?
        }
        None => {
            tracing::warn!(message_id = %m.id, trace_id, suggest, "a media check verdict the chat does not know: nothing changes");
            return Ok(());
        }
    };
    tracing::info!(message_id = %m.id, trace_id, suggest, label, settled, "media check verdict");
    Ok(())
}
