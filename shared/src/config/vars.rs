//! Every environment variable the chat functions read, in one table: its default, the range the
//! loader accepts, the template parameter that sets it on AWS, and what it means. The loader
//! ([`super::Config::from_lookup`]) takes its defaults and ranges from here, a test holds the
//! template's parameter defaults against it, and `docs/configuration.md` is generated from it.

use crate::domain::auth::DEFAULT_MAX_TOKEN_LIFETIME_SECS;
use crate::domain::send::DEFAULT_MARKER_TTL_SECS;

/// What a variable holds, with its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Must be set (the template sets it from a resource).
    Required,
    /// Needed only by the functions that use it; they refuse to start without it.
    Optional,
    /// A whole number from `min` to `max`.
    Number { default: u64, min: u64, max: u64 },
    /// Text in a format the loader checks.
    Text { default: &'static str },
    /// `true` or `false`.
    Flag { default: bool },
}

impl Kind {
    /// The default as the template would write it (`None`: no default).
    pub fn default_text(&self) -> Option<String> {
        match self {
            Kind::Required | Kind::Optional => None,
            Kind::Number { default, .. } => Some(default.to_string()),
            Kind::Text { default } => Some((*default).to_owned()),
            Kind::Flag { default } => Some(default.to_string()),
        }
    }
}

/// One environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// The template parameter that sets it on AWS; `None` when only the environment does
    /// (the template sets it from a resource, or leaves it at its default).
    pub parameter: Option<&'static str>,
    pub kind: Kind,
    /// Which functions read it.
    pub read_by: &'static str,
    pub doc: &'static str,
}

const fn num(default: u64, min: u64, max: u64) -> Kind {
    Kind::Number { default, min, max }
}

/// The variables of `chat-shared`'s [`super::Config`] (the thumbnail function reads its own
/// three, `functions/thumbnail`).
#[rustfmt::skip]
pub const VARS: &[Var] = &[
    Var { name: "MESSAGES_TABLE", parameter: None, kind: Kind::Required, read_by: "all", doc: "The messages table (messages, profiles, idempotency markers, conversation entries)." },
    Var { name: "CONNECTIONS_TABLE", parameter: None, kind: Kind::Required, read_by: "all", doc: "The connections table (connection records and per-user registries)." },
    Var { name: "MANAGEMENT_ENDPOINT", parameter: None, kind: Kind::Optional, read_by: "$connect, $default, re-check, push", doc: "`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`, from the API id (never the event's domain name)." },
    Var { name: "JWT_SECRET_ARN", parameter: None, kind: Kind::Optional, read_by: "$connect, login", doc: "Secrets Manager secret holding the HS256 signing secret (one key, or a key per app): parameter `JwtSecretArn`, or the secret the stack creates when that is empty." },
    Var { name: "JWT_SECRET", parameter: None, kind: Kind::Optional, read_by: "$connect, login", doc: "The signing secret itself, for local runs only (`JWT_SECRET_ARN` wins when both are set)." },
    Var { name: "MEDIA_KEY_SECRET_ARN", parameter: None, kind: Kind::Optional, read_by: "$default", doc: "Secrets Manager secret holding the key that upload owner segments are derived from (the stack creates it): `$default` never reads the token signing secret." },
    Var { name: "MEDIA_KEY_SECRET", parameter: None, kind: Kind::Optional, read_by: "$default", doc: "The media owner key itself, for local runs only (`MEDIA_KEY_SECRET_ARN` wins when both are set)." },
    Var { name: "MEDIA_BUCKET", parameter: None, kind: Kind::Optional, read_by: "$default, re-check, push", doc: "The private media bucket." },
    Var { name: "S3_FORCE_PATH_STYLE", parameter: None, kind: Kind::Flag { default: false }, read_by: "$default", doc: "Path-style S3 URLs, for a local S3 on 127.0.0.1." },
    Var { name: "DISPLAY_UTC_OFFSET", parameter: Some("DisplayUtcOffset"), kind: Kind::Text { default: "+08:00" }, read_by: "all", doc: "UTC offset of rows' `created_date` (the seed's clients expect +08:00)." },
    Var { name: "PAGE_SIZE_DEFAULT", parameter: Some("PageSizeDefault"), kind: num(20, 1, 500), read_by: "all", doc: "Rows in a page when a frame names no limit (and after every send); at most `PAGE_SIZE_MAX`." },
    Var { name: "PAGE_SIZE_MAX", parameter: Some("PageSizeMax"), kind: num(100, 1, 500), read_by: "all", doc: "Largest `limit` a frame may ask for." },
    Var { name: "MAX_CONTENT_BYTES", parameter: Some("MaxContentBytes"), kind: num(4096, 1, 16384), read_by: "all", doc: "Largest text message, in UTF-8 bytes." },
    Var { name: "EXTERNAL_MEDIA_HOSTS", parameter: Some("ExternalMediaHosts"), kind: Kind::Text { default: "" }, read_by: "all", doc: "Hosts an off-site image or video URL (the seed's own upload server's) may name, comma-separated, exact (`cdn.example.com`); empty: any host. Such URLs are `https` only either way." },
    Var { name: "MAX_FRAME_BYTES", parameter: None, kind: num(127_000, 16 * 1024, 128_000), read_by: "all", doc: "Largest frame posted; below API Gateway's 128 KB either way it is counted. At least 6 × `MAX_CONTENT_BYTES` + 16384." },
    Var { name: "CONNECTION_TTL_SECONDS", parameter: Some("ConnectionTtlSeconds"), kind: num(7500, 5, 86_400), read_by: "all", doc: "Lifetime of a connection record without `$disconnect` (API Gateway's 2 h plus slack)." },
    Var { name: "GONE_GRACE_SECONDS", parameter: None, kind: num(30, 0, 600), read_by: "$default", doc: "A connection younger than this is not removed on a 410 (it may still be in `$connect`)." },
    Var { name: "MAX_CONNECTIONS_PER_USER", parameter: Some("MaxConnectionsPerUser"), kind: num(20, 1, 100), read_by: "$connect", doc: "Live connections one user may hold; `$connect` closes the oldest over it." },
    Var { name: "RECALL_WINDOW_SECONDS", parameter: Some("RecallWindowSeconds"), kind: num(120, 1, 86_400), read_by: "$default", doc: "How long after sending a message its sender may recall it." },
    Var { name: "IDEMPOTENCY_TTL_SECONDS", parameter: Some("IdempotencyTtlSeconds"), kind: num(DEFAULT_MARKER_TTL_SECS as u64, 3600, 365 * 86_400), read_by: "$default", doc: "How long a send's idempotency marker (`client_msg_id`) lives." },
    Var { name: "MAX_SENDS_PER_MINUTE", parameter: Some("MaxSendsPerMinute"), kind: num(60, 1, 100_000), read_by: "$default", doc: "Messages one user (app and account, all connections together) may send per minute; more are refused with `rate_limited`." },
    Var { name: "MAX_UPLOADS_PER_MINUTE", parameter: Some("MaxUploadsPerMinute"), kind: num(20, 1, 10_000), read_by: "$default", doc: "Upload tickets one user may take per minute (each may bring an upload and a thumbnail run); more are refused with `upload_rate_limited`." },
    Var { name: "MAX_RECALLS_PER_MINUTE", parameter: Some("MaxRecallsPerMinute"), kind: num(20, 1, 10_000), read_by: "$default", doc: "Recalls one user may make per minute (an already recalled message's too); more are refused with `recall_rate_limited`." },
    Var { name: "CONNECTION_CACHE_SECONDS", parameter: None, kind: num(5, 0, 60), read_by: "$default", doc: "How long a warm instance trusts a connection record it read (0: read it on every frame)." },
    Var { name: "IMAGE_CONTENT_TYPES", parameter: Some("ImageContentTypes"), kind: Kind::Text { default: "image/jpeg,image/png,image/gif,image/webp" }, read_by: "all", doc: "Content types an image upload ticket may name (comma-separated; `image/…` only, none a browser would run: SVG, XML, HTML are refused)." },
    Var { name: "MAX_IMAGE_BYTES", parameter: Some("MaxImageBytes"), kind: num(10 << 20, 1, 100 << 20), read_by: "all", doc: "Largest image upload, in bytes." },
    Var { name: "VIDEO_CONTENT_TYPES", parameter: Some("VideoContentTypes"), kind: Kind::Text { default: "video/mp4,video/quicktime" }, read_by: "all", doc: "Content types a video upload ticket may name (comma-separated; `video/…` only, none a browser would run)." },
    Var { name: "MAX_VIDEO_BYTES", parameter: Some("MaxVideoBytes"), kind: num(25 << 20, 1, 1 << 30), read_by: "all", doc: "Largest video upload, in bytes." },
    Var { name: "UPLOAD_TICKET_SECONDS", parameter: Some("UploadTicketSeconds"), kind: num(300, 30, 3600), read_by: "$default", doc: "How long an upload ticket (presigned PUT and POST) stays valid." },
    Var { name: "DOWNLOAD_URL_SECONDS", parameter: Some("DownloadUrlSeconds"), kind: num(3600, 60, 43_200), read_by: "$default, re-check, push", doc: "How long the presigned GET URLs in a frame stay valid (the URL a media check gives WeChat is valid an hour, whatever this says)." },
    Var { name: "MAX_TOKEN_LIFETIME_SECONDS", parameter: Some("MaxTokenLifetimeSeconds"), kind: num(DEFAULT_MAX_TOKEN_LIFETIME_SECS, 60, 30 * 86_400), read_by: "$connect, login", doc: "Tokens whose expiry is further away are refused." },
    Var { name: "SECRET_MAX_AGE_SECONDS", parameter: Some("SecretCacheSeconds"), kind: num(300, 0, 86_400), read_by: "$connect, login, token keeper", doc: "`$connect` fetches the signing secret again once its copy is this old; the login function and the token keeper read the WeChat apps again as often." },
    Var { name: "WECHAT_APPS_SECRET_ARN", parameter: None, kind: Kind::Optional, read_by: "login, token keeper, push, $default, re-check (`Moderation=wechat`)", doc: "Secrets Manager secret holding the WeChat apps, JSON `{\"<app_sid>\":{\"appid\":\"wx…\",\"secret\":\"…\",\"push_token\":\"…\"?,\"push_aes_key\":\"…\"?}}` (the push fields: the admin console's message push Token and EncodingAESKey): parameter `WeChatAppsSecretArn`, or the secret the stack creates (holding `{}`) when that is empty." },
    Var { name: "WECHAT_APPS", parameter: None, kind: Kind::Optional, read_by: "login, token keeper, push, $default, re-check", doc: "The WeChat apps JSON itself, for local runs only (`WECHAT_APPS_SECRET_ARN` wins when both are set)." },
    Var { name: "WECHAT_API_BASE", parameter: None, kind: Kind::Text { default: "https://api.weixin.qq.com" }, read_by: "login, token keeper, $default, re-check", doc: "WeChat's server API (locally the fake WeChat API on 127.0.0.1)." },
    Var { name: "WECHAT_TIMEOUT_MS", parameter: None, kind: num(3000, 100, 10_000), read_by: "login, token keeper, $default, re-check", doc: "How long one call to WeChat may take before it counts as unavailable." },
    Var { name: "LOGIN_TOKEN_SECONDS", parameter: Some("LoginTokenSeconds"), kind: num(7200, 60, 30 * 86_400), read_by: "login", doc: "Lifetime of the tokens `POST /login` mints; at most `MAX_TOKEN_LIFETIME_SECONDS`." },
    Var { name: "ACCOUNT_IDENTITY", parameter: Some("AccountIdentity"), kind: Kind::Text { default: "phone" }, read_by: "login", doc: "What a WeChat user's account is: `phone` (the number WeChat verifies through the phone button, the seed's `userphone`) or `openid`." },
    Var { name: "MODERATION", parameter: Some("Moderation"), kind: Kind::Text { default: "none" }, read_by: "$connect, $default, re-check, login", doc: "Who checks the text of messages (and display names at login) before they are stored: `wechat` (WeChat's msgSecCheck, with the sender's openid from `/login`; images and video posters too, with mediaCheckAsync after the send: a risky verdict, pushed to `/wechat/push/{app_sid}`, takes the message down), `webhook` (texts only) (the operator's HTTPS endpoint, `MODERATION_WEBHOOK_URL`) or `none`. WeChat's review of a mini-program with user content needs one of the first two." },
    Var { name: "MODERATION_SCENE", parameter: Some("ModerationScene"), kind: num(2, 1, 4), read_by: "$default, re-check", doc: "WeChat's scene for messages, texts and media alike: 1 profile, 2 comment, 3 forum, 4 social log (display names are always checked as 1)." },
    Var { name: "MODERATION_REVIEW", parameter: Some("ModerationReview"), kind: Kind::Text { default: "allow" }, read_by: "$default, re-check, login", doc: "A `review` verdict (doubtful): `allow` stores the message with the label recorded on its item for the operator; `block` refuses it as `content_blocked`." },
    Var { name: "MODERATION_UNAVAILABLE", parameter: Some("ModerationUnavailable"), kind: Kind::Text { default: "allow" }, read_by: "$default, login", doc: "When the checker cannot answer (busy, timeout, WeChat's quota): `allow` stores the message marked unchecked, to be checked again later and taken down if it fails (a display name is kept); `block` refuses it with `moderation_unavailable` (a display name is left out of the token)." },
    Var { name: "MODERATION_WITHOUT_OPENID", parameter: Some("ModerationWithoutOpenid"), kind: Kind::Text { default: "skip" }, read_by: "$default", doc: "A sender without an openid (a token minted by the operator, not through `/login`) under `Moderation=wechat`: `skip` stores the message marked unchecked; `refuse` answers `login_required`." },
    Var { name: "MODERATION_VIDEO_WITHOUT_POSTER", parameter: Some("ModerationVideoWithoutPoster"), kind: Kind::Text { default: "allow" }, read_by: "$default", doc: "A video sent without a poster under `Moderation=wechat` (WeChat checks images, and a video is checked by its poster): `allow` stores it marked unchecked; `refuse` answers `poster_required`." },
    Var { name: "MODERATION_WEBHOOK_URL", parameter: Some("ModerationWebhookUrl"), kind: Kind::Text { default: "" }, read_by: "$default, re-check, login", doc: "`Moderation=webhook`: the operator's endpoint, `https://…` (locally `http://127.0.0.1:…` too). Each text is POSTed to it signed; it answers allow, deny or replace within 2 s (docs/protocol.md, \"Content security\")." },
    Var { name: "MODERATION_WEBHOOK_SECRET_ARN", parameter: None, kind: Kind::Optional, read_by: "$default, re-check, login", doc: "`Moderation=webhook`: the Secrets Manager secret holding the key webhook requests are signed with (the stack creates it; output `ModerationWebhookSecretArn`)." },
    Var { name: "MODERATION_WEBHOOK_SECRET", parameter: None, kind: Kind::Optional, read_by: "$default, re-check, login", doc: "The webhook signing key itself, for local runs only (`MODERATION_WEBHOOK_SECRET_ARN` wins when both are set)." },
    Var { name: "NOTICE_TEMPLATE_ID", parameter: Some("NoticeTemplateId"), kind: Kind::Text { default: "" }, read_by: "$default, notify", doc: "The subscribe message template of offline notices (chosen in the mini-program admin console, 订阅消息): `subscribe` frames grant it and `chat-notify` sends it. Empty: no notices, `subscribe` is refused with `notices_off`, and `chat-notify` is not deployed." },
    Var { name: "NOTICE_TEMPLATE_FIELDS", parameter: Some("NoticeTemplateFields"), kind: Kind::Text { default: "{\"thing1\":\"sender_name\",\"thing2\":\"preview\",\"time3\":\"sent_at\"}" }, read_by: "notify", doc: "JSON from each key of the template (`thing1`, `time3`: a type and a number) to what it carries: `sender_name`, `preview` (the text, `[图片]`, `[视频]`, or `[新消息]` while moderation has not passed it) or `sent_at`. Each value is cut or formatted to its key type: `thing` ≤ 20 characters, `phrase` ≤ 5, `name` ≤ 10, `character_string` ≤ 32 letters, digits and symbols, `time` `2026-12-06 16:30`, `date` `2026-12-06` (in `DISPLAY_UTC_OFFSET`)." },
    Var { name: "NOTICE_PAGE", parameter: Some("NoticePage"), kind: Kind::Text { default: "pages/chat/index?peer={sender}" }, read_by: "notify", doc: "The mini-program page a tapped notice opens; `{sender}` becomes the sender's account." },
    Var { name: "NOTICE_STATE", parameter: Some("NoticeState"), kind: Kind::Text { default: "formal" }, read_by: "notify", doc: "Which version of the mini-program the notice opens: `formal`, `trial` or `developer`." },
    Var { name: "MAX_NOTICE_GRANTS", parameter: Some("MaxNoticeGrants"), kind: num(crate::domain::notice::DEFAULT_MAX_NOTICE_GRANTS, 1, 1000), read_by: "$default", doc: "Grants of the template one user may hold; a `subscribe` beyond it is answered with the count and stores nothing." },
    Var { name: "RECHECK_BATCH", parameter: None, kind: num(100, 1, 1000), read_by: "re-check", doc: "Texts one run of the re-check (every 5 minutes) checks again at most, and as many overdue media checks it asks again: far under WeChat's 4,000 text and 2,000 media checks a minute per app, which the sends share." },
];

/// The variable named `name`. Every name the loader reads is in [`VARS`] (its tests read them
/// all), so a miss is a programming error caught there.
pub fn var(name: &str) -> &'static Var {
    VARS.iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is not in config::vars::VARS"))
}
