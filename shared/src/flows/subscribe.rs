//! `subscribe`: what `wx.requestSubscribeMessage` reported for the offline notice template. An
//! `accept` adds one grant (each allows one notice), up to `MaxNoticeGrants`.

use crate::domain::connection::Metered;
use crate::flows::deps::FrameStore;
use crate::flows::frame::{FrameCtx, FrameOutcome, Outcome, Refusal};
use crate::ports::{MediaObjects, MediaSigner, Notifier};
use crate::wire::frames;

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: FrameStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    /// Only the configured template is taken (`notices_off` without one, `bad_template` for
    /// another). Metered like sends; then one conditional `UpdateItem` of the user's registry
    /// (an `accept`) or one `GetItem` (the other answers, which add nothing).
    pub(super) async fn subscribe(
        &self,
        req_id: &str,
        template_id: &str,
        accepted: bool,
    ) -> Outcome {
        let (store, config, me) = (&self.deps.store, &self.deps.config, &self.me);
        let Some(template) = &config.notices else {
            return Err(Refusal::Client(
                "notices_off",
                "this deployment sends no offline notices".into(),
            ));
        };
        if template.id != template_id {
            return Err(Refusal::Client(
                "bad_template",
                "template_id is not this deployment's notice template".into(),
            ));
        }
        self.meter(
            Metered::Subscribes,
            config.max_sends_per_minute,
            "rate_limited",
            "subscribes",
        )
        .await?;
        let grants = match accepted {
            true => {
                store
                    .grant(&me.app_sid, &me.user, template_id, config.max_notice_grants)
                    .await?
            }
            false => store.grants(&me.app_sid, &me.user, template_id).await?,
        };
        self.reply(&frames::subscribed_frame(req_id, template_id, grants))
            .await;
        Ok(FrameOutcome::Subscribed { grants })
    }
}
