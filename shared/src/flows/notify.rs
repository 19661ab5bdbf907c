//! `chat-notify`: offline notices. The messages table's stream brings every new message
//! (Lambda's filter passes only `INSERT`s of `m#` items); for each, the receiver gets WeChat's
//! subscribe message when they hold a grant, have no live user connection and no live
//! conversation connection with the sender, and were not told about this conversation since
//! they last connected. One notice per offline period per conversation, not one per message.
//!
//! Stream records arrive at least once and batches may run in parallel, so a notice is first
//! claimed with one transaction (take a grant if there is one, mark the conversation notified
//! if it was not since the last connect) and only then sent. WeChat's 43101 (no grant left) sets
//! the grants to zero; other failures are tried [`SEND_TRIES`] times with a doubling wait, then
//! dropped (the grant given back) and counted. Nothing after the claim can fail the record, so
//! a retried record never sends a second notice; a failure before it (storage) fails the record,
//! which Lambda retries and finally hands to the on-failure queue.

use crate::domain::ids::Conversation;
use crate::domain::notice::{
    preview, NoticeClaim, NoticeTemplate, Rendered, SEND_BACKOFF_MS, SEND_TRIES,
};
use crate::domain::wechat::{WeChatApp, WeChatError};
use crate::error::Result;
use crate::ports::{
    AccessTokens, AppDirectory, ConnectionLookup, IdentityStore, NoticeStore, WeChat,
};
use futures::StreamExt;
use serde::Serialize;
use time::UtcOffset;

/// Records of one batch handled at once.
const CONCURRENCY: usize = 8;

pub struct NotifyDeps<S, W, T, A> {
    pub store: S,
    pub wechat: W,
    pub tokens: T,
    pub apps: A,
    pub template: NoticeTemplate,
    /// `DISPLAY_UTC_OFFSET`, for `time` and `date` keys.
    pub offset: UtcOffset,
}

/// One stream record: its sequence number (what a partial batch response names) and the key
/// of the item it brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKey {
    pub sequence: String,
    pub pk: String,
    pub sk: String,
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeOutcome {
    Sent,
    /// Nothing to send, and why.
    Skipped(&'static str),
    /// WeChat answered 43101: the grants are now zero.
    NoGrant,
    /// WeChat failed every try; the grant was given back.
    Dropped,
}

/// What one batch did; `failed` holds the sequence numbers to report to Lambda.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Notified {
    pub sent: u32,
    pub skipped: u32,
    pub no_grant: u32,
    pub dropped: u32,
    pub failed: Vec<String>,
}

/// Handles one batch: every record, at most [`CONCURRENCY`] at a time.
pub async fn notify<S, W, T, A>(deps: &NotifyDeps<S, W, T, A>, records: &[StreamKey]) -> Notified
where
    S: NoticeStore + IdentityStore + ConnectionLookup,
    W: WeChat,
    T: AccessTokens,
    A: AppDirectory,
{
    let outcomes: Vec<(&StreamKey, Result<NoticeOutcome>)> = futures::stream::iter(records)
        .map(|r| async move { (r, notice(deps, r).await) })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut done = Notified::default();
    for (record, outcome) in outcomes {
        match outcome {
            Ok(NoticeOutcome::Sent) => done.sent += 1,
            Ok(NoticeOutcome::Skipped(_)) => done.skipped += 1,
            Ok(NoticeOutcome::NoGrant) => done.no_grant += 1,
            Ok(NoticeOutcome::Dropped) => done.dropped += 1,
            Err(e) => {
                tracing::error!(sequence = %record.sequence, error = %e, "notice failed; the record is retried");
                done.failed.push(record.sequence.clone());
            }
        }
    }
    done
}

/// The notice for one record, if one is due.
pub async fn notice<S, W, T, A>(
    deps: &NotifyDeps<S, W, T, A>,
    r: &StreamKey,
) -> Result<NoticeOutcome>
where
    S: NoticeStore + IdentityStore + ConnectionLookup,
    W: WeChat,
    T: AccessTokens,
    A: AppDirectory,
{
    use NoticeOutcome::Skipped;
    let store = &deps.store;
    let template = &deps.template.id;
    let (Some(conversation), Some(id)) = (Conversation::parse_key(&r.pk), r.sk.strip_prefix("m#"))
    else {
        return Ok(Skipped("not a message"));
    };
    let Some(m) = store.message(&conversation, id).await? else {
        return Ok(Skipped("gone"));
    };
    if preview(&m).is_none() {
        return Ok(Skipped("recalled or blocked"));
    }
    let app_sid = m.app_sid.as_str();
    let Some(receiver) = store.recipient(app_sid, &m.receiver, template).await? else {
        return Ok(Skipped("never connected"));
    };
    if receiver.online_for(&m.sender, crate::clock::now_s()) {
        return Ok(Skipped("online"));
    }
    if receiver.grants == 0 {
        return Ok(Skipped("no grant"));
    }
    let Some(openid) = store.openid_of(app_sid, &m.receiver).await? else {
        return Ok(Skipped("no openid"));
    };
    let Some(app) = deps.apps.apps().await.get(app_sid).cloned() else {
        return Ok(Skipped("not a WeChat app"));
    };
    let claim = NoticeClaim {
        app_sid,
        user: &m.receiver,
        peer: &m.sender,
        template,
        last_connect_ms: receiver.last_connect_ms,
        now_ms: crate::clock::now_ms(),
    };
    if !store.claim_notice(&claim).await? {
        return Ok(Skipped("claimed already"));
    }
    // Claimed: from here on nothing fails the record (a retry would find the claim taken).
    let name = match store.registry(app_sid, &m.sender).await {
        Ok(r) => r
            .and_then(|r| r.profile)
            .map(|p| p.name)
            .unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "the sender's name could not be read; the notice names the account");
            String::new()
        }
    };
    let Some(rendered) = deps.template.render(&m, &name, deps.offset) else {
        return Ok(Skipped("recalled or blocked"));
    };
    let outcome = send(deps, &app, &openid, &rendered).await;
    let after = match outcome {
        NoticeOutcome::NoGrant => store.clear_grants(app_sid, &m.receiver, template).await,
        NoticeOutcome::Dropped => store.return_grant(app_sid, &m.receiver, template).await,
        _ => Ok(()),
    };
    if let Err(e) = after {
        tracing::error!(error = %e, "the grants could not be corrected after the notice");
    }
    tracing::info!(message = %m.id, outcome = ?outcome, "notice");
    Ok(outcome)
}

/// `subscribeMessage.send`, tried [`SEND_TRIES`] times (a refused access token is replaced).
async fn send<S, W, T, A>(
    deps: &NotifyDeps<S, W, T, A>,
    app: &WeChatApp,
    openid: &str,
    notice: &Rendered,
) -> NoticeOutcome
where
    W: WeChat,
    T: AccessTokens,
{
    let mut wait = std::time::Duration::from_millis(SEND_BACKOFF_MS);
    let mut refused: Option<String> = None;
    for attempt in 1..=SEND_TRIES {
        let token = match refused.take() {
            Some(old) => deps.tokens.replace(app, &old).await,
            None => deps.tokens.current(app).await,
        };
        let result = match token {
            Ok(token) => match deps.wechat.subscribe_send(&token, openid, notice).await {
                Err(WeChatError::InvalidToken(code)) => {
                    refused = Some(token);
                    Err(WeChatError::InvalidToken(code))
                }
                other => other,
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return NoticeOutcome::Sent,
            Err(WeChatError::NoGrant) => return NoticeOutcome::NoGrant,
            Err(e) => {
                tracing::warn!(attempt, error = %e, "subscribeMessage.send failed");
                if attempt < SEND_TRIES {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
    NoticeOutcome::Dropped
}
