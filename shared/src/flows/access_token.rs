//! An instance's copy of each app's WeChat access token ([`AccessTokens`]), refreshed once for
//! every caller that needs it: the cache's lock is held across the refresh, so concurrent
//! callers that find no valid token wait for the one `stable_token` call instead of each making
//! their own. A token WeChat refuses (40001 / 42001) is replaced with a normal `stable_token`
//! call; only when that gives the same token back is a `force_refresh` made, at most once an
//! hour per app (WeChat allows 20 a day, 30 s apart).
//!
//! (The durable copy shared by every instance, and the scheduled keeper, come next: issue 19.)

use crate::domain::wechat::{AccessToken, WeChatApp, WeChatError};
use crate::ports::{AccessTokens, WeChat};
use std::collections::HashMap;

/// A token with less than this left is refreshed before use.
pub const REFRESH_BEFORE_SECS: i64 = 60;
/// At most one forced refresh per app in this many seconds.
pub const FORCE_REFRESH_EVERY_SECS: i64 = 3600;

pub struct CachedTokens<W> {
    wechat: W,
    /// appid → its token; appid → when it was last force-refreshed.
    cache: tokio::sync::Mutex<(HashMap<String, AccessToken>, HashMap<String, i64>)>,
}

impl<W: WeChat> CachedTokens<W> {
    pub fn new(wechat: W) -> Self {
        CachedTokens {
            wechat,
            cache: Default::default(),
        }
    }

    fn fresh<'a>(&self, tokens: &'a HashMap<String, AccessToken>, appid: &str) -> Option<&'a str> {
        tokens
            .get(appid)
            .filter(|t| t.expires_at - crate::clock::now_s() > REFRESH_BEFORE_SECS)
            .map(|t| t.token.as_str())
    }
}

impl<W: WeChat> AccessTokens for CachedTokens<W> {
    async fn current(&self, app: &WeChatApp) -> Result<String, WeChatError> {
        let mut guard = self.cache.lock().await;
        if let Some(t) = self.fresh(&guard.0, &app.appid) {
            return Ok(t.to_owned());
        }
        let t = self.wechat.stable_token(app, false).await?;
        guard.0.insert(app.appid.clone(), t.clone());
        Ok(t.token)
    }

    async fn replace(&self, app: &WeChatApp, refused: &str) -> Result<String, WeChatError> {
        let mut guard = self.cache.lock().await;
        // Another caller may have replaced it already.
        if let Some(t) = self.fresh(&guard.0, &app.appid).filter(|t| *t != refused) {
            return Ok(t.to_owned());
        }
        let mut t = self.wechat.stable_token(app, false).await?;
        if t.token == refused {
            let now = crate::clock::now_s();
            let last = guard.1.get(&app.appid).copied();
            if last.is_some_and(|at| now - at < FORCE_REFRESH_EVERY_SECS) {
                tracing::warn!(appid = %app.appid, "WeChat keeps refusing the access token; the forced refresh of this hour was used");
                return Err(WeChatError::InvalidToken(40001));
            }
            guard.1.insert(app.appid.clone(), now);
            tracing::warn!(appid = %app.appid, "WeChat refused the access token it still hands out: forcing a refresh");
            t = self.wechat.stable_token(app, true).await?;
        }
        guard.0.insert(app.appid.clone(), t.clone());
        Ok(t.token)
    }
}
