//! Media in flows: `upload` (a ticket, presigned PUT and POST, for one image or video) and
//! what a send accepts of what was uploaded with it (checked, then copied to `m/`).

use crate::domain::connection::Metered;
use crate::domain::media::{self, MediaKey, MediaKind, ObjectInfo, TicketRequest};
use crate::domain::message::{MediaInfo, Message};
use crate::domain::moderation::{media_screening, Screening};
use crate::domain::send::Draft;
use crate::flows::deps::FrameStore;
use crate::flows::frame::{FrameCtx, FrameOutcome, Outcome, Refusal};
use crate::flows::moderation::ask_media_check;
use crate::flows::send::refusal;
use crate::ports::{MediaObjects, MediaSigner, Notifier};
use crate::wire::frames;
use crate::wire::request::SendRequest;
use std::time::Duration;

impl<S, N, O> FrameCtx<'_, S, N, O>
where
    S: FrameStore,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    /// Checks a ticket request against the limits, then signs a PUT and a POST for a fresh key.
    pub(super) async fn upload(&self, req: TicketRequest) -> Outcome {
        let limits = &self.deps.config.media;
        if let Err(refusal) = media::check_ticket(&req, limits) {
            return Err(Refusal::Client(refusal.code(), refusal.message(req.kind)));
        }
        self.meter(
            Metered::Uploads,
            self.deps.config.max_uploads_per_minute,
            "upload_rate_limited",
            "upload tickets",
        )
        .await?;
        let media = &self.deps.media;
        let owner = media.owner_key.owner(&self.me.app_sid, &self.me.user);
        let key = media::new_key(req.kind, owner, &req.content_type, req.dims, self.now_ms);
        let upload_key = key.upload_key();
        let ticket = media
            .objects
            .upload_ticket(
                &upload_key,
                &req.content_type,
                req.size,
                Duration::from_secs(limits.ticket_secs),
            )
            .await?;
        self.reply(&frames::upload_frame(
            &req.req_id,
            &upload_key,
            limits.ticket_secs,
            req.size,
            &ticket,
        ))
        .await;
        tracing::info!(key = %upload_key, size = req.size, "upload ticket signed");
        Ok(FrameOutcome::Ticketed)
    }

    /// What a send will store: its text as it is, or for uploaded media the `m/` copy of the
    /// object (and a video's poster) after checking that the sender was issued the keys and
    /// that what was uploaded fits. Ownership first (no request), then both objects checked
    /// in parallel, and only then copied: a refused send leaves nothing behind.
    pub(super) async fn accept_media(
        &self,
        send: SendRequest,
    ) -> std::result::Result<Draft, Refusal> {
        let draft = |content, media, screening| Draft {
            chat_type: send.chat_type,
            content,
            media,
            client_msg_id: send.client_msg_id.clone(),
            screening,
        };
        let Some(r) = &send.media else {
            return Ok(draft(send.content.clone(), None, Screening::Clear));
        };
        let owner = self
            .deps
            .media
            .owner_key
            .owner(&self.me.app_sid, &self.me.user);
        let keys: Vec<&MediaKey> = std::iter::once(&r.key).chain(&r.poster).collect();
        if keys.iter().any(|k| k.owner != owner) {
            return Err(Refusal::Client(
                "bad_media_key",
                "this key was not issued to you in this app".into(),
            ));
        }
        // Under media checks: pending (asked after the posts), unchecked, or refused here,
        // before any request.
        let moderation = &self.deps.moderation;
        let screening = match moderation.media {
            Some(_) => media_screening(
                r.key.kind == MediaKind::Video,
                r.poster.is_some(),
                self.me.openid.is_some(),
                &moderation.policy,
            )
            .map_err(refusal)?,
            None => Screening::Clear,
        };
        let checked =
            futures::future::try_join_all(keys.iter().map(|k| self.check_object(k))).await?;
        let objects = &self.deps.media.objects;
        let copies = keys
            .iter()
            .zip(&checked)
            .filter(|(_, c)| c.1)
            .map(|(k, _)| async move { objects.copy(&k.upload_key(), &k.message_key()).await });
        futures::future::try_join_all(copies).await?;
        let (info, _) = &checked[0]; // the message's own object
        let (width, height) = r.key.dims().unzip();
        let media = MediaInfo {
            content_type: info.content_type.clone(),
            size: info.size,
            width,
            height,
            poster: r.poster.as_ref().map(MediaKey::message_key),
        };
        Ok(draft(r.key.message_key(), Some(media), screening))
    }

    /// After a send's posts: asks for the check of its media when it was stored pending (the
    /// send's acknowledgement and its requests before it stay as they were). Failures are
    /// logged: the message is stored and shown, and the re-check asks when it is due.
    pub(super) async fn ask_media_check(&self, m: &Message) {
        let (Some(moderator), Some(openid)) =
            (&self.deps.moderation.media, self.me.openid.as_deref())
        else {
            return;
        };
        let asked = ask_media_check(
            moderator.as_ref(),
            &self.deps.media.objects,
            &self.deps.store,
            m,
            openid,
            self.now_s(),
        )
        .await;
        match asked {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(message_id = %m.id, "media check not asked; the re-check asks when it is due")
            }
            Err(e) => {
                tracing::error!(message_id = %m.id, error = %e, "media check asked, but not recorded; the re-check asks when it is due")
            }
        }
    }

    /// Checks an uploaded object named by a send: what S3 holds of it, and whether it still
    /// has to be copied to the message prefix (a retried send may have copied it already).
    pub(super) async fn check_object(
        &self,
        key: &MediaKey,
    ) -> std::result::Result<(ObjectInfo, bool), Refusal> {
        let objects = &self.deps.media.objects;
        let (upload, message) = (key.upload_key(), key.message_key());
        // Both places at once. An object already copied to m/ (a retried send, or a second send
        // of the same key) is used as it is and never copied again: re-uploading to a ticket's
        // key within its 300 s cannot replace what a sent message shows.
        let (uploaded, sent) = futures::try_join!(objects.head(&upload), objects.head(&message))?;
        let (info, needs_copy) = match (sent, uploaded) {
            (Some(info), _) => (info, false),
            (None, Some(info)) => (info, true),
            (None, None) => {
                return Err(Refusal::Client(
                    "media_missing",
                    "nothing was uploaded with this key (or the ticket expired)".into(),
                ))
            }
        };
        let limits = &self.deps.config.media;
        if !key.matches_type(&info.content_type)
            || !limits.fits(key.kind, &info.content_type, info.size)
        {
            return Err(Refusal::Client(
                "media_mismatch",
                format!(
                    "the uploaded object is not an allowed {} of at most {} bytes",
                    key.kind.noun(),
                    limits.max_bytes(key.kind)
                ),
            ));
        }
        Ok((info, needs_copy))
    }
}
