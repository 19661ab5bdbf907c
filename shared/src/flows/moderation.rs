//! Content security (issue 20): the configured checker and the operator's policy
//! ([`Moderation`]), and the WeChat checker ([`WeChatModerator`], `msgSecCheck` v2 with the
//! app's shared access token). What the answers mean is plain Rust in
//! [`crate::domain::moderation`].

use crate::domain::moderation::{
    judge, pieces, Decision, Judgement, Policy, Screening, Undecided, SCENE_PROFILE,
};
use crate::domain::wechat::{WeChatApp, WeChatError};
use crate::ports::{AccessTokens, AppDirectory, Authored, TextModerator, WeChat, Written};
use std::sync::Arc;

/// The checker `Moderation` chose (none: every text is stored as it is) and what to do where it
/// decides nothing.
#[derive(Clone, Default)]
pub struct Moderation {
    pub checker: Option<Arc<dyn TextModerator>>,
    pub policy: Policy,
}

impl std::fmt::Debug for Moderation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moderation")
            .field("checker", &self.checker.is_some())
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
