//! Narrow capabilities the domain needs, one trait each, so that every function depends on
//! exactly what it uses (`$disconnect` needs only [`ConnectionRemove`]). The DynamoDB and API
//! Gateway adapters implement them; unit tests use in-memory fakes.

use crate::domain::connection::{ConnectionRecord, Metered, Registry, Target};
use crate::domain::ids::{Conversation, Cursor, ListCursor};
use crate::domain::inbox::{Entry, ListPage};
use crate::domain::media::{ObjectInfo, UploadTicket};
use crate::domain::message::{Message, Page, Profile};
use crate::domain::moderation::{Decision, Screening, Undecided, Verdict};
use crate::domain::notice::{NoticeClaim, Recipient, Rendered};
use crate::domain::send::{Committed, SendCommit, Snapshot};
use crate::domain::wechat::{AccessToken, StoredToken, WeChatApp, WeChatError, WeChatSession};
use crate::error::Result;
use std::collections::HashMap;
use std::future::Future;

/// Records a new connection (at `$connect`).
pub trait ConnectionRegister: Send + Sync {
    /// Stores the connection's record.
    fn register(&self, record: &ConnectionRecord) -> impl Future<Output = Result<()>> + Send;
    /// Adds the connection to its user's registry (one conditional write) and keeps the user's
    /// profile there. Returns the registry after the add, expired entries included.
    fn enroll(&self, record: &ConnectionRecord) -> impl Future<Output = Result<Registry>> + Send;
    /// Takes entries out of a user's registry (evicted over the cap, or expired). Idempotent.
    fn prune(
        &self,
        app_sid: &str,
        user: &str,
        connection_ids: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Forgets connections. Both calls are idempotent.
pub trait ConnectionRemove: Send + Sync {
    /// At `$disconnect`: the record and its registry entry.
    fn remove(&self, connection_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// When a post answered 410 Gone: removes the record and the registry entry only if the
    /// connection was made before `connected_before_ms`. Returns whether the record was removed.
    fn remove_gone(
        &self,
        app_sid: &str,
        target: &Target,
        connected_before_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Finds connections.
pub trait ConnectionLookup: Send + Sync {
    /// The record of one connection, if it is registered and not expired.
    fn get(
        &self,
        connection_id: &str,
        now_s: i64,
    ) -> impl Future<Output = Result<Option<ConnectionRecord>>> + Send;
    /// One user's registry, strongly consistent. One request.
    fn registry(
        &self,
        app_sid: &str,
        user: &str,
    ) -> impl Future<Output = Result<Option<Registry>>> + Send;
}

/// A user's grants of the offline notice template (`subscribe` frames), kept on their registry
/// item.
pub trait NoticeGrants: Send + Sync {
    /// Adds one grant of `template` for `user` unless they hold `max` already (one conditional
    /// write). The count after.
    fn grant(
        &self,
        app_sid: &str,
        user: &str,
        template: &str,
        max: u64,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// The count of grants `user` holds of `template`.
    fn grants(
        &self,
        app_sid: &str,
        user: &str,
        template: &str,
    ) -> impl Future<Output = Result<u64>> + Send;
}

/// What `chat-notify` reads and writes: the message, its receiver's standing, the claim.
pub trait NoticeStore: Send + Sync {
    /// Message `id` of `conversation`, strongly consistent.
    fn message(
        &self,
        conversation: &Conversation,
        id: &str,
    ) -> impl Future<Output = Result<Option<Message>>> + Send;
    /// `user`'s registry, last connect and grants of `template`, strongly consistent (one
    /// request); `None` when they never connected.
    fn recipient(
        &self,
        app_sid: &str,
        user: &str,
        template: &str,
    ) -> impl Future<Output = Result<Option<Recipient>>> + Send;
    /// Claims the notice `claim` describes (one transaction): takes a grant and marks the
    /// conversation notified, only if the user holds a grant and the conversation was not
    /// notified since the connect the claim saw. Whether it was claimed.
    fn claim_notice(&self, claim: &NoticeClaim<'_>) -> impl Future<Output = Result<bool>> + Send;
    /// WeChat answered 43101: the user holds no grant.
    fn clear_grants(
        &self,
        app_sid: &str,
        user: &str,
        template: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Gives back the grant of a claimed notice that could not be sent.
    fn return_grant(
        &self,
        app_sid: &str,
        user: &str,
        template: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// A rate limit per connection whose state every function instance shares.
pub trait TypingThrottle: Send + Sync {
    /// Takes the connection's typing slot at `now_ms` if the previous one was taken at least
    /// `gap_ms` earlier. One conditional write; `false` when throttled or the record is gone.
    fn claim_typing(
        &self,
        connection_id: &str,
        now_ms: i64,
        gap_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Limits per user on work other than sends, shared by every function instance.
pub trait UsageMeter: Send + Sync {
    /// Counts one `what` for `user` in rate window `window` if fewer than `max` were counted
    /// there. One conditional write; `false` (nothing counted) at the limit.
    fn claim(
        &self,
        app_sid: &str,
        user: &str,
        what: Metered,
        window: i64,
        max: u64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Keeps the participants' display profiles per conversation.
pub trait ProfileWrite: Send + Sync {
    fn put_profile(
        &self,
        conversation: &Conversation,
        user: &str,
        profile: &Profile,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Stores messages with the conversation entries, and reads pages of them.
pub trait MessageStore: Send + Sync {
    /// Both users' entries, both registries and the conversation's profiles, plus the message
    /// `message_id` when given: one strongly consistent read (one request).
    fn snapshot(
        &self,
        conversation: &Conversation,
        me: &str,
        message_id: Option<&str>,
    ) -> impl Future<Output = Result<Snapshot>> + Send;
    /// Writes a send atomically (one request), unless its sender already stored a message
    /// with the same `client_msg_id` here or an entry's version moved.
    fn commit_send(&self, send: &SendCommit) -> impl Future<Output = Result<Committed>> + Send;
    /// The newest `limit` messages (oldest first) plus the participants' profiles.
    fn latest(
        &self,
        conversation: &Conversation,
        limit: usize,
    ) -> impl Future<Output = Result<Page>> + Send;
    /// The newest `limit` messages up to and including `through` (oldest first), strongly
    /// consistent; no profiles.
    fn latest_through(
        &self,
        conversation: &Conversation,
        through: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Page>> + Send;
    /// The `limit` messages just before `before` (oldest first) plus the profiles.
    fn before(
        &self,
        conversation: &Conversation,
        before: &Cursor,
        limit: usize,
    ) -> impl Future<Output = Result<Page>> + Send;
}

/// A user's inbox (the conversation list) and what changes its entries besides sends.
pub trait Inbox: Send + Sync {
    /// `user`'s conversations by last activity, newest first, after `before`. One request;
    /// eventually consistent.
    fn list(
        &self,
        app_sid: &str,
        user: &str,
        before: Option<&ListCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<ListPage>> + Send;
    /// Moves `user`'s read position with `message`'s sender (the peer) up to `message` (never
    /// back) and records on the peer's entry that `user` read it. Returns `user`'s entry (if
    /// the conversation has entries) and whether the position moved.
    fn mark_read(
        &self,
        user: &str,
        message: &Message,
    ) -> impl Future<Output = Result<(Option<Entry>, bool)>> + Send;
}

/// Takes back a sent message.
pub trait MessageRecall: Send + Sync {
    /// Recalls message `id` of `conversation` if `sender` sent it at or after `not_before_ms`,
    /// and the copies of it that the entries of `entry_users` hold as their last message.
    /// Returns whether the message was recalled (false: gone, not the sender's, or too old).
    /// The idempotency marker of its `client_msg_id` is recalled too, so a retried send
    /// answers with the recalled message instead of bringing the original back.
    fn recall(
        &self,
        conversation: &Conversation,
        id: &str,
        sender: &str,
        client_msg_id: Option<&str>,
        not_before_ms: i64,
        entry_users: &[String],
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Reads and copies objects in the media bucket.
pub trait MediaObjects: Send + Sync {
    /// Type and size of `key`, or `None` when there is no such object.
    fn head(&self, key: &str) -> impl Future<Output = Result<Option<ObjectInfo>>> + Send;
    /// Copies `from` to `to` inside the bucket (server side; no bytes pass through here).
    fn copy(&self, from: &str, to: &str) -> impl Future<Output = Result<()>> + Send;
    /// Deletes `keys` (those already gone are no error). One request per key, in parallel.
    fn delete(&self, keys: &[String]) -> impl Future<Output = Result<()>> + Send;
}

/// Signs URLs for the media bucket. Signing is local work: no request is made.
pub trait MediaSigner: Send + Sync {
    /// A presigned PUT (type and length signed) and POST form (exact key and type, a length
    /// range up to `size`) for one upload.
    fn upload_ticket(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        expires: std::time::Duration,
    ) -> impl Future<Output = Result<UploadTicket>> + Send;
    /// Presigned GET URLs, one per key, in order.
    fn download_urls(
        &self,
        keys: &[String],
        expires: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
}

/// Why a post to a connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// 410: the connection no longer exists; its record must go.
    #[error("connection gone")]
    Gone,
    /// Anything else (throttling, 5xx, network). Logged; the message stays stored.
    #[error("post failed: {0}")]
    Other(String),
}

/// Posts frames to connected clients (API Gateway's `@connections` API).
pub trait Notifier: Send + Sync {
    fn post(
        &self,
        connection_id: &str,
        frame: &str,
    ) -> impl Future<Output = std::result::Result<(), PostError>> + Send;
}

/// Closes connections (`DELETE @connections/{id}`): the user's oldest one over the cap.
pub trait ConnectionCloser: Send + Sync {
    /// `Gone` when the connection no longer exists.
    fn close(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = std::result::Result<(), PostError>> + Send;
}

/// WeChat's server API, the calls the chat makes (adapter: `adapters/wechat.rs`; locally a fake
/// WeChat API among the chat's tools). Each answer is WeChat's, or why there is none.
pub trait WeChat: Send + Sync {
    /// `sns/jscode2session`: the user behind a `wx.login` code (valid once, for 5 minutes).
    fn code_to_session(
        &self,
        app: &WeChatApp,
        code: &str,
    ) -> impl Future<Output = std::result::Result<WeChatSession, WeChatError>> + Send;
    /// `wxa/business/getuserphonenumber`: the verified number (`purePhoneNumber`, without the
    /// country code) behind a phone button's code.
    fn phone_number(
        &self,
        access_token: &str,
        code: &str,
    ) -> impl Future<Output = std::result::Result<String, WeChatError>> + Send;
    /// `cgi-bin/stable_token`: the app's access token; `force_refresh` makes a new one (WeChat
    /// allows 20 a day, 30 s apart).
    fn stable_token(
        &self,
        app: &WeChatApp,
        force_refresh: bool,
    ) -> impl Future<Output = std::result::Result<AccessToken, WeChatError>> + Send;
    /// `wxa/msg_sec_check` (version 2): WeChat's verdict on `content` written by `openid` (a
    /// user of the mini-program in the last 2 hours) in `scene`.
    fn msg_sec_check(
        &self,
        access_token: &str,
        openid: &str,
        scene: u8,
        content: &str,
    ) -> impl Future<Output = std::result::Result<Verdict, WeChatError>> + Send;
    /// `wxa/media_check_async` (version 2, `media_type` 2, an image): asks WeChat to check the
    /// image at `media_url` (which WeChat downloads) sent by `openid` in `scene`; the trace id
    /// its verdict (a `wxa_media_check` push, within 30 minutes) will name.
    fn media_check_async(
        &self,
        access_token: &str,
        openid: &str,
        scene: u8,
        media_url: &str,
    ) -> impl Future<Output = std::result::Result<String, WeChatError>> + Send;
    /// `cgi-bin/message/subscribe/send`: sends `notice` to `openid` (43101: no grant left).
    fn subscribe_send(
        &self,
        access_token: &str,
        openid: &str,
        notice: &Rendered,
    ) -> impl Future<Output = std::result::Result<(), WeChatError>> + Send;
}

/// A shared WeChat client (the login flow and the token cache hold the same one).
impl<T: WeChat> WeChat for std::sync::Arc<T> {
    async fn code_to_session(
        &self,
        app: &WeChatApp,
        code: &str,
    ) -> std::result::Result<WeChatSession, WeChatError> {
        self.as_ref().code_to_session(app, code).await
    }
    async fn phone_number(
        &self,
        access_token: &str,
        code: &str,
    ) -> std::result::Result<String, WeChatError> {
        self.as_ref().phone_number(access_token, code).await
    }
    async fn stable_token(
        &self,
        app: &WeChatApp,
        force_refresh: bool,
    ) -> std::result::Result<AccessToken, WeChatError> {
        self.as_ref().stable_token(app, force_refresh).await
    }
    async fn msg_sec_check(
        &self,
        access_token: &str,
        openid: &str,
        scene: u8,
        content: &str,
    ) -> std::result::Result<Verdict, WeChatError> {
        self.as_ref()
            .msg_sec_check(access_token, openid, scene, content)
            .await
    }
    async fn media_check_async(
        &self,
        access_token: &str,
        openid: &str,
        scene: u8,
        media_url: &str,
    ) -> std::result::Result<String, WeChatError> {
        self.as_ref()
            .media_check_async(access_token, openid, scene, media_url)
            .await
    }
    async fn subscribe_send(
        &self,
        access_token: &str,
        openid: &str,
        notice: &Rendered,
    ) -> std::result::Result<(), WeChatError> {
        self.as_ref()
            .subscribe_send(access_token, openid, notice)
            .await
    }
}

/// Who a WeChat user is in the chat: an app's openid ↔ the account it logs in as (the seed's
/// phone number, or the openid itself). Both directions are kept: a login reads the account
/// of an openid; content security and notices need the openid of an account.
pub trait IdentityStore: Send + Sync {
    /// The account `openid` logs in as, if it was bound.
    fn account_of(
        &self,
        app_sid: &str,
        openid: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    /// The openid that holds `account`, if any.
    fn openid_of(
        &self,
        app_sid: &str,
        account: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Binds `openid` ↔ `account` in one transaction. An openid that held `account` before
    /// loses it (a recycled phone number belongs to its newest verified owner), and an account
    /// `openid` held before is released.
    fn bind(
        &self,
        app_sid: &str,
        openid: &str,
        account: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The WeChat apps (app_sid → appid and secret) as a function instance knows them now: a
/// deployed one re-reads their secret from time to time, so an app added to it is served
/// without a redeploy.
pub trait AppDirectory: Send + Sync {
    fn apps(&self) -> impl Future<Output = std::sync::Arc<HashMap<String, WeChatApp>>> + Send;
}

/// Apps that never change (tests, fixed configurations).
impl AppDirectory for HashMap<String, WeChatApp> {
    async fn apps(&self) -> std::sync::Arc<HashMap<String, WeChatApp>> {
        std::sync::Arc::new(self.clone())
    }
}

/// A directory shared by several users in one function (login and its name check).
impl<T: AppDirectory> AppDirectory for std::sync::Arc<T> {
    async fn apps(&self) -> std::sync::Arc<HashMap<String, WeChatApp>> {
        self.as_ref().apps().await
    }
}

/// The durable copy of each app's access token (one item per appid), which the token keeper
/// writes and every instance reads, so WeChat is asked once for all of them.
pub trait TokenStore: Send + Sync {
    /// The stored token of `appid` (none when never stored) and the last forced refresh.
    fn stored_token(&self, appid: &str) -> impl Future<Output = Result<StoredToken>> + Send;
    /// Stores `token` for `appid`, unless a different token that lives longer is there
    /// already (a slower writer never puts back an older token). `true` when written.
    fn store_token(
        &self,
        appid: &str,
        token: &AccessToken,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Claims the refresh of `appid`'s token for `lease_ms` from `now_ms`: `true` for the one
    /// caller that should ask WeChat; the others wait for the token it stores.
    fn claim_refresh(
        &self,
        appid: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Claims `appid`'s forced refresh at `now` (epoch s): `true` when none was claimed in the
    /// `every` seconds before, for whichever instance asks first.
    fn claim_forced_refresh(
        &self,
        appid: &str,
        now: i64,
        every: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// One store shared by several users of it (tests: two instances over one fake).
impl<T: TokenStore> TokenStore for std::sync::Arc<T> {
    async fn stored_token(&self, appid: &str) -> Result<StoredToken> {
        self.as_ref().stored_token(appid).await
    }
    async fn store_token(&self, appid: &str, token: &AccessToken) -> Result<bool> {
        self.as_ref().store_token(appid, token).await
    }
    async fn claim_refresh(&self, appid: &str, now_ms: i64, lease_ms: i64) -> Result<bool> {
        self.as_ref().claim_refresh(appid, now_ms, lease_ms).await
    }
    async fn claim_forced_refresh(&self, appid: &str, now: i64, every: i64) -> Result<bool> {
        self.as_ref().claim_forced_refresh(appid, now, every).await
    }
}

/// An app's WeChat access token, as callers use it: one believed valid, and a replacement for
/// one WeChat refused (40001 / 42001).
pub trait AccessTokens: Send + Sync {
    fn current(
        &self,
        app: &WeChatApp,
    ) -> impl Future<Output = std::result::Result<String, WeChatError>> + Send;
    /// A token other than `refused`, refreshing as little as WeChat allows.
    fn replace(
        &self,
        app: &WeChatApp,
        refused: &str,
    ) -> impl Future<Output = std::result::Result<String, WeChatError>> + Send;
}

/// One token cache shared by several users in one function (login and its name check).
impl<T: AccessTokens> AccessTokens for std::sync::Arc<T> {
    async fn current(&self, app: &WeChatApp) -> std::result::Result<String, WeChatError> {
        self.as_ref().current(app).await
    }
    async fn replace(
        &self,
        app: &WeChatApp,
        refused: &str,
    ) -> std::result::Result<String, WeChatError> {
        self.as_ref().replace(app, refused).await
    }
}

/// What a text is written as: a message to someone, or the writer's display name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written<'a> {
    /// A message to `peer`.
    Message { peer: &'a str },
    /// A display name given at login.
    DisplayName,
}

/// A text to check, and who wrote it.
#[derive(Debug, Clone, Copy)]
pub struct Authored<'a> {
    pub app_sid: &'a str,
    /// The writer's account.
    pub sender: &'a str,
    /// The writer's openid, when known (WeChat checks only texts of its app's users).
    pub openid: Option<&'a str>,
    pub written: Written<'a>,
    pub text: &'a str,
}

/// Checks what users write (`Moderation`: WeChat's text check, or the operator's webhook).
/// Used as a trait object (`Arc<dyn TextModerator>`): the provider is chosen by configuration
/// at cold start, so the boxed future (one allocation per check) is the price of not carrying
/// a type parameter for it through every flow.
pub trait TextModerator: Send + Sync {
    fn check<'a>(
        &'a self,
        text: Authored<'a>,
    ) -> futures::future::BoxFuture<'a, std::result::Result<Decision, Undecided>>;
}

/// Asks for media checks whose verdict comes later (`Moderation=wechat`: WeChat's
/// `mediaCheckAsync`, the verdict pushed to `/wechat/push/{app_sid}`). A trait object, as
/// [`TextModerator`] is.
pub trait MediaModerator: Send + Sync {
    /// Asks for a check of the image at `url` (downloadable from outside for
    /// [`crate::domain::moderation::MEDIA_CHECK_URL_SECS`]) sent by `openid` of `app_sid`; the
    /// trace id the verdict will name.
    fn ask<'a>(
        &'a self,
        app_sid: &'a str,
        openid: &'a str,
        url: &'a str,
    ) -> futures::future::BoxFuture<'a, std::result::Result<String, Undecided>>;
}

/// A media message whose check has no verdict yet, and how many times it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCheck {
    pub message: Message,
    pub asks: u32,
}

/// Media checks asked and their verdicts, kept with the messages.
pub trait MediaCheckStore: Send + Sync {
    /// Records that `message`'s check was asked as `trace_id`: the trace id findable (an item
    /// of its own, kept until `keep_until_s`) and, on the message if it is still pending, the
    /// trace id, one more ask, and when it is overdue (`due_s`).
    fn asked(
        &self,
        message: &Message,
        trace_id: &str,
        due_s: i64,
        keep_until_s: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The message a trace id names (none: unknown, or forgotten).
    fn traced(&self, trace_id: &str) -> impl Future<Output = Result<Option<Message>>> + Send;
    /// Records `screening` (clear, review, or unchecked for good) on a message whose check is
    /// still pending, and takes it out of the overdue index. `false` when it no longer is.
    fn settle_media(
        &self,
        message: &Message,
        screening: &Screening,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Up to `limit` pending checks of shard `shard` overdue at `now_s`, longest overdue first.
    /// One query.
    fn overdue(
        &self,
        shard: u8,
        now_s: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingCheck>>> + Send;
}

/// Messages stored without a moderation decision, and what a later decision does to them.
pub trait ScreeningStore: Send + Sync {
    /// Up to `limit` messages of shard `shard` (of [`crate::domain::moderation::UNCHECKED_SHARDS`])
    /// of the sparse index of unchecked messages, oldest first. One query.
    fn unchecked(
        &self,
        shard: u8,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Message>>> + Send;
    /// Records `screening` (clear, review, or unchecked for good) on a message that is still
    /// unchecked, and takes it out of the index. `false` when it no longer is (recalled,
    /// decided meanwhile).
    fn settle(
        &self,
        message: &Message,
        screening: &Screening,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Takes message `message` down: `blocked` with `label`, content emptied, media removed,
    /// out of the index; so are the copies its idempotency marker and the entries of
    /// `entry_users` hold. `false` when it was recalled or taken down already.
    fn block(
        &self,
        message: &Message,
        label: u32,
        entry_users: &[String],
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// The nonces of WeChat's pushes seen lately, shared by every instance.
pub trait NonceStore: Send + Sync {
    /// Claims `nonce` of `appid` until `until_s` (epoch s): `true` for the first claim, `false`
    /// when it was claimed before and is still held at `now_s` (a replay). One conditional
    /// write.
    fn claim_nonce(
        &self,
        appid: &str,
        nonce: &str,
        now_s: i64,
        until_s: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
}
