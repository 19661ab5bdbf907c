//! Content security (issue 20): the configured checker and the operator's policy
//! ([`Moderation`]), and the WeChat checker ([`WeChatModerator`], `msgSecCheck` v2 with the
//! app's shared access token). What the answers mean is plain Rust in
//! [`crate::domain::moderation`].

use crate::domain::message::Message;
use crate::domain::moderation::{
    checked_key, judge, pieces, Decision, Judgement, Policy, Screening, Undecided,
    MEDIA_CHECK_DUE_SECS, MEDIA_CHECK_URL_SECS, SCENE_PROFILE,
};
use crate::domain::wechat::{WeChatApp, WeChatError};
use crate::ports::{
    AccessTokens, AppDirectory, Authored, MediaCheckStore, MediaModerator, MediaSigner,
    TextModerator, WeChat, Written,
};
use std::sync::Arc;

/// The checker `Moderation` chose (none: every text is stored as it is), the media checker
/// (only WeChat checks media; none: media are stored as they are), and what to do where they
/// decide nothing.
#[derive(Clone, Default)]
pub struct Moderation {
    pub checker: Option<Arc<dyn TextModerator>>,
    pub media: Option<Arc<dyn MediaModerator>>,
    pub policy: Policy,
}

impl std::fmt::Debug for Moderation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moderation")
            .field("checker", &self.checker.is_some())
            .field("media", &self.media.is_some())
            .field("policy", &self.policy)
            .finish()
    }
}

impl Moderation {
    /// Whether texts are checked at all.
    pub fn enabled(&self) -> bool {
        self.checker.is_some()
    }

    /// What becomes of `text`: the checker's answer under the policy.
    pub async fn judge(&self, text: Authored<'_>) -> Judgement {
        match &self.checker {
            None => Judgement::Store {
                replacement: None,
                screening: Screening::Clear,
            },
            Some(checker) => judge(checker.check(text).await, &self.policy),
        }
    }
}

/// How long a media check's trace id stays findable: a verdict comes within 30 minutes; one
/// for an earlier ask of a check asked again still counts.
pub const MEDIA_CHECK_KEEP_SECS: i64 = 2 * 86_400;

/// Asks for the check of media message `m` (pending) sent by `openid`: a download URL of the
/// object it looks at, valid [`MEDIA_CHECK_URL_SECS`], goes to the media checker, and its trace
/// id is kept with the message, due again in [`MEDIA_CHECK_DUE_SECS`]. `false` when the
/// checker did not answer (the message stays pending, found again when due).
pub async fn ask_media_check<S, O>(
    moderator: &dyn MediaModerator,
    signer: &O,
    store: &S,
    m: &Message,
    openid: &str,
    now_s: i64,
) -> crate::Result<bool>
where
    S: MediaCheckStore,
    O: MediaSigner,
{
    let Some(key) = checked_key(m) else {
        return Ok(false);
    };
    let url = signer
        .download_urls(
            &[key.to_owned()],
            std::time::Duration::from_secs(MEDIA_CHECK_URL_SECS),
        )
        .await?
        .pop()
        .ok_or_else(|| crate::Error::Corrupt("no URL signed".into()))?;
    let Ok(trace_id) = moderator.ask(&m.app_sid, openid, &url).await else {
        return Ok(false);
    };
    store
        .asked(
            m,
            &trace_id,
            now_s + MEDIA_CHECK_DUE_SECS,
            now_s + MEDIA_CHECK_KEEP_SECS,
        )
        .await?;
    tracing::info!(message_id = %m.id, trace_id, "media check asked");
    Ok(true)
}

/// WeChat's text check. Texts longer than WeChat takes are checked in pieces, side by side;
/// the worst piece decides.
pub struct WeChatModerator<W, T, A> {
    pub wechat: W,
    pub tokens: T,
    pub apps: A,
    /// `ModerationScene`, for messages (display names use scene 1, profile).
    pub scene: u8,
}

impl<W, T, A> WeChatModerator<W, T, A>
where
    W: WeChat,
    T: AccessTokens,
    A: AppDirectory,
{
    async fn decide(&self, text: Authored<'_>) -> Result<Decision, Undecided> {
        let Some(openid) = text.openid else {
            return Err(Undecided::NoOpenid);
        };
        let apps = self.apps.apps().await;
        let Some(app) = apps.get(text.app_sid) else {
            tracing::warn!(
                app_sid = text.app_sid,
                "a user with an openid in an app the WeChat apps secret does not hold: unchecked"
            );
            return Err(Undecided::Unavailable);
        };
        let scene = match text.written {
            Written::Message { .. } => self.scene,
            Written::DisplayName => SCENE_PROFILE,
        };
        let checks = pieces(text.text)
            .into_iter()
            .map(|piece| self.check_piece(app, openid, scene, piece));
        let mut decision = Decision::Allow;
        for answer in futures::future::join_all(checks).await {
            match answer {
                Ok(d) => decision = decision.worst(d),
                Err(e) => {
                    // WeChatError's text never quotes the request (no text, no openid).
                    tracing::warn!(app_sid = text.app_sid, error = %e, "WeChat's text check did not answer");
                    return Err(Undecided::Unavailable);
                }
            }
        }
        Ok(decision)
    }

    /// One piece, asked once more with a replaced access token when WeChat refuses the first.
    async fn check_piece(
        &self,
        app: &WeChatApp,
        openid: &str,
        scene: u8,
        piece: &str,
    ) -> Result<Decision, WeChatError> {
        let token = self.tokens.current(app).await?;
        let verdict = match self
            .wechat
            .msg_sec_check(&token, openid, scene, piece)
            .await
        {
            Err(WeChatError::InvalidToken(_)) => {
                let token = self.tokens.replace(app, &token).await?;
                self.wechat
                    .msg_sec_check(&token, openid, scene, piece)
                    .await?
            }
            other => other?,
        };
        Ok(Decision::of(&verdict))
    }
}

impl<W, T, A> TextModerator for WeChatModerator<W, T, A>
where
    W: WeChat,
    T: AccessTokens,
    A: AppDirectory,
{
    fn check<'a>(
        &'a self,
        text: Authored<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Decision, Undecided>> {
        Box::pin(self.decide(text))
    }
}

impl<W, T, A> WeChatModerator<W, T, A>
where
    W: WeChat,
    T: AccessTokens,
    A: AppDirectory,
{
    /// `mediaCheckAsync` for one image, asked once more with a replaced access token when
    /// WeChat refuses the first.
    async fn ask_media(&self, app_sid: &str, openid: &str, url: &str) -> Result<String, Undecided> {
        let apps = self.apps.apps().await;
        let Some(app) = apps.get(app_sid) else {
            tracing::warn!(
                app_sid,
                "media sent in an app the WeChat apps secret does not hold: not checked"
            );
            return Err(Undecided::Unavailable);
        };
        let asked = async {
            let token = self.tokens.current(app).await?;
            match self
                .wechat
                .media_check_async(&token, openid, self.scene, url)
                .await
            {
                Err(WeChatError::InvalidToken(_)) => {
                    let token = self.tokens.replace(app, &token).await?;
                    self.wechat
                        .media_check_async(&token, openid, self.scene, url)
                        .await
                }
                other => other,
            }
        };
        asked.await.map_err(|e: WeChatError| {
            // WeChatError's text never quotes the request (no URL, no openid).
            tracing::warn!(app_sid, error = %e, "WeChat's media check was not asked");
            Undecided::Unavailable
        })
    }
}

impl<W, T, A> MediaModerator for WeChatModerator<W, T, A>
where
    W: WeChat,
    T: AccessTokens,
    A: AppDirectory,
{
    fn ask<'a>(
        &'a self,
        app_sid: &'a str,
        openid: &'a str,
        url: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<String, Undecided>> {
        Box::pin(self.ask_media(app_sid, openid, url))
    }
}
