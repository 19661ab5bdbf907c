//! Each app's WeChat access token, one for every instance: a durable copy per app
//! ([`TokenStore`]) that the scheduled token keeper ([`keep`]) refreshes before it runs out,
//! and each instance's copy in memory ([`SharedTokens`], the [`AccessTokens`] callers use).
//!
//! A caller finds the token in memory, else reads the stored one; only when neither is valid
//! does it ask WeChat (`stable_token`) and store the answer. The cache's lock is held across
//! that, so concurrent callers of one instance wait for the one refresh instead of each making
//! their own, and a lease in the store does the same across instances: one asks WeChat, the
//! others poll the store for its answer. A token WeChat refuses (40001 / 42001) is replaced by the stored one if that
//! differs, else by a normal `stable_token` call; only when that gives the same token back is
//! a `force_refresh` made, claimed first in the store so that it happens at most once an hour
//! per app across all instances (WeChat allows 20 a day, 30 s apart).

use crate::domain::wechat::{AccessToken, WeChatApp, WeChatError};
use crate::ports::{AccessTokens, TokenStore, WeChat};
use std::collections::HashMap;

/// A token with less than this left is not used from memory or the store.
pub const REFRESH_BEFORE_SECS: i64 = 60;
/// At most one forced refresh per app in this many seconds.
pub const FORCE_REFRESH_EVERY_SECS: i64 = 3600;
/// The keeper refreshes a stored token with less than this left (it runs every 10 minutes).
pub const KEEP_MARGIN_SECS: i64 = 15 * 60;
/// How long the one caller that asks WeChat for a missing token holds the lease (longer than a
/// WeChat call may take); the others poll the store meanwhile, every [`REFRESH_POLL`], and take
/// the lease over once it has ended without a token.
pub const REFRESH_LEASE_MS: i64 = 5_000;
pub const REFRESH_POLL: std::time::Duration = std::time::Duration::from_millis(100);

pub struct SharedTokens<W, S> {
    wechat: W,
    store: S,
    /// appid → this instance's copy.
    cache: tokio::sync::Mutex<HashMap<String, AccessToken>>,
}

fn usable(t: &AccessToken, now: i64) -> bool {
    t.expires_at - now > REFRESH_BEFORE_SECS
}

impl<W: WeChat, S: TokenStore> SharedTokens<W, S> {
    pub fn new(wechat: W, store: S) -> Self {
        SharedTokens {
            wechat,
            store,
            cache: Default::default(),
        }
    }

    /// The stored token when it is usable and not `refused`. A store that cannot be read
    /// counts as empty: WeChat is asked instead (and the failure logged).
    async fn stored_usable(&self, appid: &str, refused: Option<&str>) -> Option<AccessToken> {
        match self.store.stored_token(appid).await {
            Ok(s) => s
                .token
                .filter(|t| usable(t, crate::clock::now_s()) && Some(t.token.as_str()) != refused),
            Err(e) => {
                tracing::error!(appid, error = %e, "cannot read the stored access token");
                None
            }
        }
    }

    /// A token when none is stored: one caller across all instances (the lease's holder) asks
    /// WeChat and stores the answer; the others wait for it, and ask WeChat themselves only if
    /// it does not come within the lease (the holder failed) or the store cannot be reached.
    async fn refresh_once(&self, app: &WeChatApp) -> Result<AccessToken, WeChatError> {
        let give_up_at = crate::clock::now_ms() + 2 * REFRESH_LEASE_MS;
        loop {
            let now_ms = crate::clock::now_ms();
            match self
                .store
                .claim_refresh(&app.appid, now_ms, REFRESH_LEASE_MS)
                .await
            {
                // Another caller holds the lease: wait for its token (or for the lease to end).
                Ok(false) if now_ms < give_up_at => {
                    tokio::time::sleep(REFRESH_POLL).await;
                    if let Some(t) = self.stored_usable(&app.appid, None).await {
                        return Ok(t);
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(appid = %app.appid, error = %e, "cannot claim the token refresh");
                    break;
                }
            }
        }
        let t = self.wechat.stable_token(app, false).await?;
        self.keep_copy(&app.appid, &t).await;
        Ok(t)
    }

    /// Stores a token WeChat just gave (a failure is logged: the token still works).
    async fn keep_copy(&self, appid: &str, t: &AccessToken) {
        if let Err(e) = self.store.store_token(appid, t).await {
            tracing::error!(appid, error = %e, "cannot store the access token");
        }
    }
}

impl<W: WeChat, S: TokenStore> AccessTokens for SharedTokens<W, S> {
    async fn current(&self, app: &WeChatApp) -> Result<String, WeChatError> {
        let mut cache = self.cache.lock().await;
        let now = crate::clock::now_s();
        if let Some(t) = cache.get(&app.appid).filter(|t| usable(t, now)) {
            return Ok(t.token.clone());
        }
        let t = match self.stored_usable(&app.appid, None).await {
            Some(t) => t,
            None => self.refresh_once(app).await?,
        };
        cache.insert(app.appid.clone(), t.clone());
        Ok(t.token)
    }

    async fn replace(&self, app: &WeChatApp, refused: &str) -> Result<String, WeChatError> {
        let mut cache = self.cache.lock().await;
        let now = crate::clock::now_s();
        // Another caller of this instance, or another instance, may have replaced it already.
        if let Some(t) = cache
            .get(&app.appid)
            .filter(|t| usable(t, now) && t.token != refused)
        {
            return Ok(t.token.clone());
        }
        if let Some(t) = self.stored_usable(&app.appid, Some(refused)).await {
            cache.insert(app.appid.clone(), t.clone());
            return Ok(t.token);
        }
        let mut t = self.wechat.stable_token(app, false).await?;
        if t.token == refused {
            let claimed = self
                .store
                .claim_forced_refresh(&app.appid, now, FORCE_REFRESH_EVERY_SECS)
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(appid = %app.appid, error = %e, "cannot claim the forced refresh");
                    false
                });
            if !claimed {
                tracing::warn!(appid = %app.appid, "WeChat keeps refusing the access token; the forced refresh of this hour was used");
                return Err(WeChatError::InvalidToken(40001));
            }
            tracing::warn!(appid = %app.appid, "WeChat refused the access token it still hands out: forcing a refresh");
            t = self.wechat.stable_token(app, true).await?;
        }
        self.keep_copy(&app.appid, &t).await;
        cache.insert(app.appid.clone(), t.clone());
        Ok(t.token)
    }
}

/// What the keeper did for one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The stored token has more than [`KEEP_MARGIN_SECS`] left.
    Fresh,
    /// A token from WeChat was stored.
    Refreshed,
}

/// The token keeper's work for one app at `now`: refresh the stored token when less than
/// [`KEEP_MARGIN_SECS`] are left (WeChat's normal mode gives the same token until its last 5
/// minutes, then a new one while the old one keeps working until it expires).
pub async fn keep<W: WeChat, S: TokenStore>(
    wechat: &W,
    store: &S,
    app: &WeChatApp,
    now: i64,
) -> Result<Kept, KeepError> {
    let stored = store
        .stored_token(&app.appid)
        .await
        .map_err(KeepError::Store)?;
    if stored
        .token
        .is_some_and(|t| t.expires_at - now > KEEP_MARGIN_SECS)
    {
        return Ok(Kept::Fresh);
    }
    let t = wechat
        .stable_token(app, false)
        .await
        .map_err(KeepError::WeChat)?;
    store
        .store_token(&app.appid, &t)
        .await
        .map_err(KeepError::Store)?;
    Ok(Kept::Refreshed)
}

/// Why the keeper could not keep an app's token.
#[derive(Debug)]
pub enum KeepError {
    WeChat(WeChatError),
    Store(crate::error::Error),
}

impl std::fmt::Display for KeepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepError::WeChat(e) => write!(f, "{e}"),
            KeepError::Store(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{FakeStore, FakeWeChatApi};
    use std::sync::Arc;

    fn app() -> WeChatApp {
        WeChatApp {
            appid: "wx1".into(),
            secret: "s".into(),
            ..Default::default()
        }
    }

    fn wechat(token: &str) -> Arc<FakeWeChatApi> {
        let w = Arc::new(FakeWeChatApi::default());
        *w.token.lock().unwrap() = token.into();
        w.valid_tokens.lock().unwrap().insert(token.into());
        w
    }

    fn calls(w: &FakeWeChatApi) -> (u32, u32) {
        *w.token_calls.lock().unwrap()
    }

    #[tokio::test]
    async fn instances_share_the_stored_token_and_ask_wechat_once() {
        // GIVEN two instances over one store
        let w = wechat("AT-1");
        let store = Arc::new(FakeStore::default());
        let a = SharedTokens::new(w.clone(), store.clone());
        let b = SharedTokens::new(w.clone(), store.clone());
        // WHEN both need the token, and then again
        assert_eq!(a.current(&app()).await.unwrap(), "AT-1");
        assert_eq!(b.current(&app()).await.unwrap(), "AT-1");
        assert_eq!(a.current(&app()).await.unwrap(), "AT-1");
        // THEN WeChat was asked once: the second instance read the stored copy
        assert_eq!(calls(&w), (1, 0));
        let stored = store.stored_token("wx1").await.unwrap().token.unwrap();
        assert_eq!(stored.token, "AT-1");
    }

    #[tokio::test]
    async fn instances_that_miss_together_wait_for_the_one_that_holds_the_lease() {
        // GIVEN eight instances over one empty store
        let w = wechat("AT-1");
        let store = Arc::new(FakeStore::default());
        let instances: Vec<_> = (0..8)
            .map(|_| SharedTokens::new(w.clone(), store.clone()))
            .collect();
        // WHEN they all need the token at once
        let app = app();
        let all = futures::future::join_all(instances.iter().map(|t| t.current(&app))).await;
        // THEN WeChat was asked once and every instance got its token
        assert!(all.iter().all(|x| x.as_deref() == Ok("AT-1")), "{all:?}");
        assert_eq!(calls(&w), (1, 0));
    }

    #[tokio::test]
    async fn a_lease_whose_holder_never_stores_is_waited_out_then_taken_over() {
        // GIVEN a lease taken by an instance that died before storing a token
        let w = wechat("AT-1");
        let store = FakeStore::default();
        let now = crate::clock::now_ms();
        assert!(store.claim_refresh("wx1", now, 300).await.unwrap());
        let t = SharedTokens::new(w.clone(), store);
        // WHEN another instance needs the token
        let started = std::time::Instant::now();
        // THEN it waits at most the lease, then asks WeChat itself
        assert_eq!(t.current(&app()).await.unwrap(), "AT-1");
        assert!(started.elapsed() < std::time::Duration::from_millis(REFRESH_LEASE_MS as u64));
        assert_eq!(calls(&w), (1, 0));
    }

    #[tokio::test]
    async fn concurrent_callers_of_an_instance_wait_for_one_refresh() {
        let w = wechat("AT-1");
        let t = Arc::new(SharedTokens::new(w.clone(), FakeStore::default()));
        let all = futures::future::join_all((0..8).map(|_| {
            let t = t.clone();
            async move { t.current(&app()).await.unwrap() }
        }))
        .await;
        assert!(all.iter().all(|x| x == "AT-1"));
        assert_eq!(calls(&w), (1, 0));
    }

    #[tokio::test]
    async fn a_refused_token_is_forced_once_an_hour_across_instances() {
        // GIVEN a token that WeChat refuses, yet still hands out in normal mode
        let w = wechat("AT-1");
        let store = Arc::new(FakeStore::default());
        let a = SharedTokens::new(w.clone(), store.clone());
        let b = SharedTokens::new(w.clone(), store.clone());
        assert_eq!(a.current(&app()).await.unwrap(), "AT-1");
        // WHEN an instance replaces it
        let fresh = a.replace(&app(), "AT-1").await.unwrap();
        // THEN one forced refresh gave a new token, which the other instance then reads
        assert_ne!(fresh, "AT-1");
        assert_eq!(calls(&w), (2, 1));
        assert_eq!(b.replace(&app(), "AT-1").await.unwrap(), fresh);
        // AND when WeChat refuses the new one too within the hour, no second force is made
        assert_eq!(
            b.replace(&app(), &fresh).await,
            Err(WeChatError::InvalidToken(40001))
        );
        assert_eq!(calls(&w).1, 1);
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_read_falls_back_to_wechat() {
        let w = wechat("AT-1");
        let store = FakeStore::default();
        store.set_down(true);
        let t = SharedTokens::new(w.clone(), store);
        assert_eq!(t.current(&app()).await.unwrap(), "AT-1");
        assert_eq!(calls(&w), (1, 0));
    }

    #[tokio::test]
    async fn the_keeper_refreshes_only_a_token_near_its_end() {
        let w = wechat("AT-1");
        let store = FakeStore::default();
        let now = crate::clock::now_s();
        // nothing stored: refreshed
        assert_eq!(
            keep(&w, &store, &app(), now).await.unwrap(),
            Kept::Refreshed
        );
        // the fake's token lives 7200 s: fresh for the next runs
        assert_eq!(keep(&w, &store, &app(), now).await.unwrap(), Kept::Fresh);
        assert_eq!(calls(&w), (1, 0));
        // 14 minutes before it ends: refreshed again
        let end = store
            .stored_token("wx1")
            .await
            .unwrap()
            .token
            .unwrap()
            .expires_at;
        assert_eq!(
            keep(&w, &store, &app(), end - 14 * 60).await.unwrap(),
            Kept::Refreshed
        );
        assert_eq!(calls(&w), (2, 0));
        // WeChat busy: an error naming it, the stored token untouched
        w.next_errors
            .lock()
            .unwrap()
            .push(WeChatError::Unavailable("busy".into()));
        assert!(matches!(
            keep(&w, &store, &app(), end - 14 * 60).await,
            Err(KeepError::WeChat(WeChatError::Unavailable(_)))
        ));
    }
}
