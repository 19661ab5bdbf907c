//! The re-check (issue 20): messages stored without a moderation decision (the checker did not
//! answer, or the sender had no openid) are checked again from a schedule, a bounded number
//! per run, oldest first per shard of the sparse `unchecked` index (no queue needed). One that
//! fails is taken down everywhere ([`take_down`]).
//!
//! Per message: one read of the sender's openid, one check, one conditional write; a take-down
//! adds one `BatchGetItem` (the entries and both registries), the writes of
//! [`ScreeningStore::block`], one page query when a conversation connection listens, and the
//! posts.

use crate::config::Config;
use crate::domain::message::{Message, Page};
use crate::domain::moderation::{Decision, OnReview, Screening, Undecided, UNCHECKED_SHARDS};
use crate::domain::send;
use crate::error::Result;
use crate::flows::fanout::Poster;
use crate::flows::moderation::Moderation;
use crate::flows::records::RecordCache;
use crate::ports::{
    Authored, ConnectionRemove, IdentityStore, MediaSigner, MessageStore, Notifier, ScreeningStore,
    Written,
};
use crate::wire::frames::{self, MediaUrls, PageExtras};

/// What the re-check needs, built once per instance.
pub struct RecheckDeps<S, N, O> {
    pub store: S,
    pub notifier: N,
    /// Signs the media URLs of the pages conversation connections get after a take-down.
    pub signer: O,
    pub moderation: Moderation,
    pub config: Config,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rechecked {
    /// Passed: now clear.
    pub passed: usize,
    /// Doubtful, kept (`ModerationReview=allow`): the label recorded.
    pub review: usize,
    /// Failed: taken down.
    pub blocked: usize,
    /// Never checkable (a sender without an openid): left unchecked, out of the index.
    pub uncheckable: usize,
    /// The checker did not answer: the run stopped there, the rest waits for the next one.
    pub unanswered: usize,
    /// Recalled meanwhile: out of the index.
    pub recalled: usize,
}

/// One run: at most `RECHECK_BATCH` messages.
pub async fn recheck<S, N, O>(deps: &RecheckDeps<S, N, O>, now_ms: i64) -> Result<Rechecked>
where
    S: ScreeningStore + IdentityStore + MessageStore + ConnectionRemove,
    N: Notifier,
    O: MediaSigner,
{
    let mut out = Rechecked::default();
    let Some(checker) = &deps.moderation.checker else {
        return Ok(out);
    };
    let mut budget = deps.config.recheck_batch;
    'shards: for shard in 0..UNCHECKED_SHARDS {
        if budget == 0 {
            break;
        }
        for m in deps.store.unchecked(shard, budget).await? {
            budget = budget.saturating_sub(1);
            if m.recalled {
                deps.store.settle(&m, &Screening::Unchecked).await?;
                out.recalled += 1;
                continue;
            }
            let openid = deps.store.openid_of(&m.app_sid, &m.sender).await?;
            let text = Authored {
                app_sid: &m.app_sid,
                sender: &m.sender,
                openid: openid.as_deref(),
                written: Written::Message { peer: &m.receiver },
                text: &m.content,
            };
            let label = match checker.check(text).await {
                // A replacement cannot be applied to a text both users already read: it passes.
                Ok(Decision::Allow | Decision::Replace { .. }) => {
                    deps.store.settle(&m, &Screening::Clear).await?;
                    out.passed += 1;
                    continue;
                }
                Ok(Decision::Review { label })
                    if deps.moderation.policy.review == OnReview::Allow =>
                {
                    deps.store.settle(&m, &Screening::Review { label }).await?;
                    out.review += 1;
                    continue;
                }
                Ok(Decision::Review { label } | Decision::Deny { label }) => label,
                Err(Undecided::NoOpenid) => {
                    deps.store.settle(&m, &Screening::Unchecked).await?;
                    out.uncheckable += 1;
                    continue;
                }
                Err(Undecided::Unavailable) => {
                    out.unanswered += 1;
                    break 'shards;
                }
            };
            if take_down(deps, &m, label, now_ms).await? {
                out.blocked += 1;
            }
        }
    }
    tracing::info!(
        passed = out.passed,
        review = out.review,
        blocked = out.blocked,
        uncheckable = out.uncheckable,
        unanswered = out.unanswered,
        recalled = out.recalled,
        "re-checked"
    );
    Ok(out)
}

/// The page as a take-down leaves it: the message blocked in place.
fn blocked_in(mut page: Page, id: &str, label: u32) -> Page {
    for m in page.messages.iter_mut().filter(|m| m.id == id) {
        m.screening = Screening::Blocked { label };
        m.content.clear();
        m.media = None;
    }
    page
}

/// Takes `m` down (unless it was recalled or taken down already: `false`) and tells both
/// users' live connections: a `blocked` frame to user connections, a fresh page to the
/// conversation connections on its conversation.
pub async fn take_down<S, N, O>(
    deps: &RecheckDeps<S, N, O>,
    m: &Message,
    label: u32,
    now_ms: i64,
) -> Result<bool>
where
    S: ScreeningStore + MessageStore + ConnectionRemove,
    N: Notifier,
    O: MediaSigner,
{
    let conversation = m.conversation();
    let snap = deps
        .store
        .snapshot(&conversation, &m.sender, Some(&m.id))
        .await?;
    let holders: Vec<String> = [&snap.mine, &snap.theirs]
        .into_iter()
        .flatten()
        .filter(|e| e.last.as_ref().is_some_and(|last| last.id == m.id))
        .map(|e| e.user.clone())
        .collect();
    if !deps.store.block(m, label, &holders).await? {
        return Ok(false);
    }
    let targets = send::listeners(&snap, &m.sender, &m.receiver, now_ms / 1000);
    let page = match targets.iter().any(|t| t.connection.friend.is_some()) {
        true => {
            let limit = deps.config.limits.page_default;
            let page = deps.store.latest(&conversation, limit).await;
            // Logged, not failed: the message is down; only the pages are missing.
            page.inspect_err(|e| tracing::error!(message_id = %m.id, error = %e, "taken down, but its page is unreadable"))
                .ok()
                .map(|page| blocked_in(page, &m.id, label))
        }
        false => None,
    };
    let urls = match &page {
        Some(page) => sign(&deps.signer, &deps.config, page, now_ms).await?,
        None => MediaUrls::default(),
    };
    // One pair of frames per side, seen from it: [0] the sender's connections, [1] the
    // receiver's.
    let built: Vec<(String, Option<String>)> = [&m.receiver, &m.sender]
        .into_iter()
        .map(|other| {
            let history = page.as_ref().map(|page| {
                let extras = PageExtras {
                    peer: Some(other),
                    urls: Some(&urls),
                    ..PageExtras::default()
                };
                crate::flows::frame::history_frame(&deps.config, page, extras)
            });
            (frames::blocked_frame(other, &m.id), history)
        })
        .collect();
    let frame_for = |t: &crate::domain::connection::Target| -> &String {
        let (blocked, history) = &built[usize::from(t.user != m.sender)];
        match (&t.connection.friend, history) {
            (Some(_), Some(h)) => h,
            _ => blocked,
        }
    };
    let records = RecordCache::default();
    let poster = Poster::new(&deps.store, &deps.notifier, &records, &deps.config, now_ms);
    let (delivered, _) = poster.fan_out(&m.app_sid, &targets, frame_for).await;
    tracing::info!(message_id = %m.id, label, delivered, "taken down");
    Ok(true)
}

/// The download URLs a page's media rows need.
async fn sign<O: MediaSigner>(
    signer: &O,
    config: &Config,
    page: &Page,
    now_ms: i64,
) -> Result<MediaUrls> {
    let keys = frames::keys_to_sign(&page.messages);
    if keys.is_empty() {
        return Ok(MediaUrls::default());
    }
    let secs = config.media.download_secs;
    let signed = signer
        .download_urls(&keys, std::time::Duration::from_secs(secs))
        .await?;
    Ok(MediaUrls {
        urls: keys.into_iter().zip(signed).collect(),
        expires_at_ms: now_ms + secs as i64 * 1000,
    })
}
