//! The re-check (issue 20): messages stored without a moderation decision (the checker did not
//! answer, or the sender had no openid) are checked again from a schedule, a bounded number
//! per run, oldest first per shard of the sparse `unchecked` index (no queue needed). One that
//! fails is taken down everywhere ([`take_down`]). Then media checks with no verdict an hour
//! after they were asked (issue 21) are asked once more ([`sweep_media`]).
//!
//! Per message: one read of the sender's openid (`Moderation=wechat` only), one check, one
//! conditional write; a take-down adds one `BatchGetItem` (the entries and both registries), the
//! writes of [`ScreeningStore::block`], one page query when a conversation connection listens, and
//! the posts.

use crate::config::{Checker, Config};
use crate::domain::message::{Message, Page};
use crate::domain::moderation::{
    Decision, OnReview, Screening, Undecided, MEDIA_CHECK_ASKS, UNCHECKED_SHARDS,
};
use crate::domain::send;
use crate::error::Result;
use crate::flows::fanout::Poster;
use crate::flows::moderation::{ask_media_check, Moderation};
use crate::flows::records::RecordCache;
use crate::ports::{
    Authored, ConnectionRemove, IdentityStore, MediaCheckStore, MediaSigner, MessageStore,
    Notifier, ScreeningStore, Written,
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
    /// Media checks with no verdict an hour after they were asked (each logged).
    pub media_overdue: usize,
    /// ... of which asked once more.
    pub media_asked_again: usize,
    /// ... of which left unchecked for good (asked twice already, or the sender has no
    /// openid any more).
    pub media_given_up: usize,
}

/// One run: at most `RECHECK_BATCH` texts, then at most as many overdue media checks.
pub async fn recheck<S, N, O>(deps: &RecheckDeps<S, N, O>, now_ms: i64) -> Result<Rechecked>
where
    S: ScreeningStore + IdentityStore + MessageStore + ConnectionRemove + MediaCheckStore,
    N: Notifier,
    O: MediaSigner,
{
    let mut out = recheck_texts(deps, now_ms).await?;
    sweep_media(deps, now_ms, &mut out).await?;
    tracing::info!(
        passed = out.passed,
        review = out.review,
        blocked = out.blocked,
        uncheckable = out.uncheckable,
        unanswered = out.unanswered,
        recalled = out.recalled,
        media_overdue = out.media_overdue,
        media_asked_again = out.media_asked_again,
        media_given_up = out.media_given_up,
        "re-checked"
    );
    Ok(out)
}

/// Media checks that are overdue (no verdict [`crate::domain::moderation::MEDIA_CHECK_DUE_SECS`] after they were asked,
/// or never asked: the ask after the send failed): each is logged and counted, then asked once
/// more, or, asked [`MEDIA_CHECK_ASKS`] times already, left unchecked for good. Oldest due
/// first per shard of the sparse `media_checks` index, at most `RECHECK_BATCH` a run; the run
/// stops at the first ask WeChat does not answer.
pub async fn sweep_media<S, N, O>(
    deps: &RecheckDeps<S, N, O>,
    now_ms: i64,
    out: &mut Rechecked,
) -> Result<()>
where
    S: IdentityStore + MediaCheckStore,
    O: MediaSigner,
{
    let Some(moderator) = &deps.moderation.media else {
        return Ok(());
    };
    let now_s = now_ms.div_euclid(1000);
    let mut budget = deps.config.recheck_batch;
    for shard in 0..UNCHECKED_SHARDS {
        if budget == 0 {
            break;
        }
        for check in deps.store.overdue(shard, now_s, budget).await? {
            budget = budget.saturating_sub(1);
            let m = &check.message;
            if m.recalled {
                deps.store.settle_media(m, &Screening::Unchecked).await?;
                out.recalled += 1;
                continue;
            }
            tracing::warn!(message_id = %m.id, asks = check.asks, "a media check has no verdict an hour after it was asked");
            out.media_overdue += 1;
            let openid = match check.asks < MEDIA_CHECK_ASKS {
                true => deps.store.openid_of(&m.app_sid, &m.sender).await?,
                false => None,
            };
            let Some(openid) = openid else {
                deps.store.settle_media(m, &Screening::Unchecked).await?;
                out.media_given_up += 1;
                continue;
            };
            let asked = ask_media_check(
                moderator.as_ref(),
                &deps.signer,
                &deps.store,
                m,
                &openid,
                now_s,
            )
            .await?;
            if !asked {
                out.unanswered += 1;
                return Ok(());
            }
            out.media_asked_again += 1;
        }
    }
    Ok(())
}

/// The texts stored unchecked: at most `RECHECK_BATCH`.
async fn recheck_texts<S, N, O>(deps: &RecheckDeps<S, N, O>, now_ms: i64) -> Result<Rechecked>
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
            // Only WeChat's check needs the sender's openid (the webhook takes the text alone).
            let openid = match deps.config.moderation {
                Checker::WeChat => deps.store.openid_of(&m.app_sid, &m.sender).await?,
                _ => None,
            };
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
            if take_down(&deps.take_down_with(), &m, label, now_ms).await? {
                out.blocked += 1;
            }
        }
    }
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

/// What a take-down uses (the re-check's and the push function's own).
pub struct TakeDown<'a, S, N, O> {
    pub store: &'a S,
    pub notifier: &'a N,
    pub signer: &'a O,
    pub config: &'a Config,
}

impl<S, N, O> RecheckDeps<S, N, O> {
    fn take_down_with(&self) -> TakeDown<'_, S, N, O> {
        TakeDown {
            store: &self.store,
            notifier: &self.notifier,
            signer: &self.signer,
            config: &self.config,
        }
    }
}

/// Takes `m` down (unless it was recalled or taken down already: `false`) and tells both
/// users' live connections: a `blocked` frame to user connections, a fresh page to the
/// conversation connections on its conversation.
pub async fn take_down<S, N, O>(
    deps: &TakeDown<'_, S, N, O>,
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
        Some(page) => sign(deps.signer, deps.config, page, now_ms).await?,
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
                crate::flows::frame::history_frame(deps.config, page, extras)
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
    let poster = Poster::new(deps.store, deps.notifier, &records, deps.config, now_ms);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message::{ChatType, MediaInfo};
    use crate::domain::moderation::MEDIA_CHECK_DUE_SECS;
    use crate::fakes::{FakeMedia, FakeNotifier, FakeStore};
    use crate::ports::MediaModerator;
    use std::sync::{Arc, Mutex};

    /// Answers each ask with a fresh trace id (or, when `down`, nothing), recording the URLs.
    #[derive(Default)]
    struct Asks {
        urls: Mutex<Vec<String>>,
        down: Mutex<bool>,
    }

    impl MediaModerator for Asks {
        fn ask<'a>(
            &'a self,
            _app_sid: &'a str,
            _openid: &'a str,
            url: &'a str,
        ) -> futures::future::BoxFuture<'a, std::result::Result<String, Undecided>> {
            Box::pin(async move {
                if *self.down.lock().unwrap() {
                    return Err(Undecided::Unavailable);
                }
                let mut urls = self.urls.lock().unwrap();
                urls.push(url.to_owned());
                Ok(format!("t{}", urls.len()))
            })
        }
    }

    const T0_MS: i64 = 1_800_000_000_000;

    fn image(id: &str, sender: &str) -> Message {
        Message {
            id: id.into(),
            app_sid: "app".into(),
            sender: sender.into(),
            receiver: "222".into(),
            chat_type: ChatType::Image,
            content: format!("m/i/owner/{id}.png"),
            created_at_ms: T0_MS,
            client_msg_id: None,
            media: Some(MediaInfo {
                content_type: "image/png".into(),
                size: 10,
                width: None,
                height: None,
                poster: None,
            }),
            seq: None,
            conv_seq: None,
            recalled: false,
            screening: Screening::Pending,
        }
    }

    fn deps(asks: Arc<Asks>) -> RecheckDeps<FakeStore, FakeNotifier, FakeMedia> {
        RecheckDeps {
            store: FakeStore::default(),
            notifier: FakeNotifier::default(),
            signer: FakeMedia::default(),
            moderation: Moderation {
                media: Some(asks),
                ..Moderation::default()
            },
            config: crate::fakes::config(),
        }
    }

    fn put(deps: &RecheckDeps<FakeStore, FakeNotifier, FakeMedia>, m: &Message) {
        let mut s = deps.store.state.lock().unwrap();
        s.messages
            .entry(m.conversation().key())
            .or_default()
            .insert(m.id.clone(), m.clone());
    }

    fn screening_of(
        deps: &RecheckDeps<FakeStore, FakeNotifier, FakeMedia>,
        m: &Message,
    ) -> Screening {
        let s = deps.store.state.lock().unwrap();
        s.messages[&m.conversation().key()][&m.id].screening.clone()
    }

    async fn sweep(deps: &RecheckDeps<FakeStore, FakeNotifier, FakeMedia>, at_s: i64) -> Rechecked {
        let mut out = Rechecked::default();
        sweep_media(deps, at_s * 1000, &mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_media_check_without_a_verdict_is_asked_once_more_then_left_unchecked() {
        // GIVEN an image whose check was asked at the send (one ask), by a sender with an openid
        let asks = Arc::new(Asks::default());
        let deps = deps(asks.clone());
        deps.store.bind("app", "o-111", "111").await.unwrap();
        let m = image("01AAAAAAAAAAAAAAAAAAAAAAA0", "111");
        put(&deps, &m);
        let t0 = T0_MS / 1000;
        deps.store
            .asked(&m, "t-send", t0 + MEDIA_CHECK_DUE_SECS, t0 + 86_400)
            .await
            .unwrap();
        // WHEN the re-check runs before the hour is up, THEN nothing is due
        assert_eq!(
            sweep(&deps, t0 + MEDIA_CHECK_DUE_SECS - 1).await,
            Rechecked::default()
        );
        // WHEN it runs after an hour with no verdict, THEN it is counted and asked once more,
        // with a URL of the image
        let late = t0 + MEDIA_CHECK_DUE_SECS + 1;
        let run = sweep(&deps, late).await;
        assert_eq!((run.media_overdue, run.media_asked_again), (1, 1));
        assert_eq!(*asks.urls.lock().unwrap(), [FakeMedia::url(&m.content)]);
        assert_eq!(screening_of(&deps, &m), Screening::Pending);
        // AND the new trace id finds the message
        assert_eq!(
            deps.store.traced("t1").await.unwrap().map(|m| m.id),
            Some(m.id.clone())
        );
        // AND it is not due again within the next hour
        assert_eq!(sweep(&deps, late + 60).await, Rechecked::default());
        // WHEN the second ask has no verdict after an hour either, THEN it is counted and left
        // unchecked for good, and nobody is asked a third time
        let run = sweep(&deps, late + MEDIA_CHECK_DUE_SECS + 1).await;
        assert_eq!(
            (run.media_overdue, run.media_given_up, run.media_asked_again),
            (1, 1, 0)
        );
        assert_eq!(screening_of(&deps, &m), Screening::Unchecked);
        assert_eq!(asks.urls.lock().unwrap().len(), 1);
        assert_eq!(
            sweep(&deps, late + 3 * MEDIA_CHECK_DUE_SECS).await,
            Rechecked::default()
        );
    }

    #[tokio::test]
    async fn the_sweep_leaves_recalled_and_openidless_checks_and_stops_when_wechat_is_down() {
        let asks = Arc::new(Asks::default());
        let deps = deps(asks.clone());
        deps.store.bind("app", "o-111", "111").await.unwrap();
        let t0 = T0_MS / 1000;
        // GIVEN a recalled image, one whose sender has no openid (never asked), and one asked
        // while WeChat is down
        // (in shards 5, 6 and 7: read in that order)
        let mut recalled = image("01AAAAAAAAAAAAAAAAAAAAAAAA", "111");
        recalled.recalled = true;
        let orphan = image("01AAAAAAAAAAAAAAAAAAAAAAAB", "333");
        let waiting = image("01AAAAAAAAAAAAAAAAAAAAAAAC", "111");
        for m in [&recalled, &orphan, &waiting] {
            put(&deps, m);
        }
        *asks.down.lock().unwrap() = true;
        let run = sweep(&deps, t0 + MEDIA_CHECK_DUE_SECS + 1).await;
        // THEN the recalled one and the openid-less one leave the index; the run stops at the
        // unanswered ask, which stays pending for the next run
        assert_eq!(run.recalled, 1);
        assert_eq!(run.media_given_up, 1);
        assert_eq!(run.unanswered, 1);
        assert_eq!(screening_of(&deps, &recalled), Screening::Unchecked);
        assert_eq!(screening_of(&deps, &orphan), Screening::Unchecked);
        assert_eq!(screening_of(&deps, &waiting), Screening::Pending);
        // WHEN WeChat is back, THEN the next run asks it
        *asks.down.lock().unwrap() = false;
        let run = sweep(&deps, t0 + MEDIA_CHECK_DUE_SECS + 400).await;
        assert_eq!(run.media_asked_again, 1);
    }
}
