//! Typed configuration, read once at cold start. A missing or malformed value stops the
//! function there, with a message naming the variable, instead of failing per request. Names,
//! defaults and ranges come from one table, [`vars::VARS`].

pub mod vars;

use crate::domain::login::AccountIdentity;
use crate::domain::media::MediaLimits;
use crate::domain::moderation::{OnReview, OnUnavailable, Policy, PosterlessVideo, WithoutOpenid};
use crate::domain::notice::{NoticeState, NoticeTemplate};
use crate::error::{Error, Result};
use time::UtcOffset;
use vars::{var, Kind};

/// Where a secret (the JWT signing secret, the media owner key) comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A Secrets Manager secret (ARN or name) holding the secret string. Used when deployed.
    SecretsManager(String),
    /// The secret itself, from `JWT_SECRET` / `MEDIA_KEY_SECRET`. For local runs only.
    Inline(Vec<u8>),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::SecretsManager(id) => write!(f, "SecretsManager({id})"),
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
        }
    }
}

/// Tunables of the chat protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Page size when a frame gives no `limit`.
    pub page_default: usize,
    /// Largest `limit` a frame may ask for.
    pub page_max: usize,
    /// Largest `chat_content`, in UTF-8 bytes.
    pub max_content_bytes: usize,
    /// Largest frame the server posts. API Gateway's limit is "128 KB"; 127,000 bytes stays
    /// below it whether that means 128,000 or 131,072 bytes.
    pub max_frame_bytes: usize,
    /// Hosts an off-site media URL may name (`EXTERNAL_MEDIA_HOSTS`, lowercase); empty: any.
    pub external_media_hosts: Vec<String>,
}

impl Default for Limits {
    /// The defaults of [`vars::VARS`].
    fn default() -> Self {
        Limits {
            page_default: default_number("PAGE_SIZE_DEFAULT") as usize,
            page_max: default_number("PAGE_SIZE_MAX") as usize,
            max_content_bytes: default_number("MAX_CONTENT_BYTES") as usize,
            max_frame_bytes: default_number("MAX_FRAME_BYTES") as usize,
            external_media_hosts: hosts(default_text("EXTERNAL_MEDIA_HOSTS")),
        }
    }
}

impl Default for MediaLimits {
    /// The defaults of [`vars::VARS`].
    fn default() -> Self {
        MediaLimits {
            image_types: content_types(default_text("IMAGE_CONTENT_TYPES")),
            max_image_bytes: default_number("MAX_IMAGE_BYTES"),
            video_types: content_types(default_text("VIDEO_CONTENT_TYPES")),
            max_video_bytes: default_number("MAX_VIDEO_BYTES"),
            ticket_secs: default_number("UPLOAD_TICKET_SECONDS"),
            download_secs: default_number("DOWNLOAD_URL_SECONDS"),
        }
    }
}

fn default_number(name: &str) -> u64 {
    match var(name).kind {
        Kind::Number { default, .. } => default,
        _ => panic!("{name} is not a number in config::vars::VARS"),
    }
}

fn default_text(name: &str) -> &'static str {
    match var(name).kind {
        Kind::Text { default } => default,
        _ => panic!("{name} is not text in config::vars::VARS"),
    }
}

/// `image/jpeg,image/png` as a list.
/// A comma-separated host list, lowercased, blanks dropped.
fn hosts(v: &str) -> Vec<String> {
    v.split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

fn content_types(v: &str) -> Vec<String> {
    v.split(',').map(|t| t.trim().to_owned()).collect()
}

/// Everything the functions read from their environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub messages_table: String,
    pub connections_table: String,
    /// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`; required by `$default`.
    pub management_endpoint: Option<String>,
    /// Required by `$connect`.
    pub jwt_secret: Option<SecretSource>,
    /// The key upload owner segments are derived from (`$default`), a secret of its own so
    /// that `$default` never holds the token signing keys.
    pub media_key_secret: Option<SecretSource>,
    /// Offset in which `created_date` is written (the seed's clients expect +08:00).
    pub display_offset: UtcOffset,
    /// How long a connection record lives without a `$disconnect` (API Gateway's 2 h cap plus
    /// slack).
    pub connection_ttl_secs: i64,
    /// A connection younger than this is not removed on a 410 (it may still be in
    /// `$connect`, which API Gateway also answers with 410). The integration timeout is 29 s.
    pub gone_grace_secs: i64,
    /// Live connections one user may hold; `$connect` closes the oldest over it.
    pub max_connections_per_user: usize,
    /// How long after sending a message its sender may recall it.
    pub recall_window_secs: i64,
    /// How long a send's idempotency marker lives (`IDEMPOTENCY_TTL_SECONDS`): a retry with
    /// the same `client_msg_id` within it is answered with the first message, after it the
    /// id may be used again.
    pub marker_ttl_secs: i64,
    /// Messages one user may send per minute (`MAX_SENDS_PER_MINUTE`); more are refused with
    /// `rate_limited`.
    pub max_sends_per_minute: u64,
    /// Upload tickets one user may take per minute (`MAX_UPLOADS_PER_MINUTE`); more are
    /// refused with `upload_rate_limited`.
    pub max_uploads_per_minute: u64,
    /// Recalls one user may make per minute (`MAX_RECALLS_PER_MINUTE`); more are refused with
    /// `recall_rate_limited`.
    pub max_recalls_per_minute: u64,
    /// How long a warm `$default` instance trusts a connection record it read
    /// (`CONNECTION_CACHE_SECONDS`, 0 = read it on every frame): a removed connection is
    /// refused by every instance at most this long after its removal.
    pub connection_cache_secs: i64,
    pub limits: Limits,
    /// Media types, sizes and URL lifetimes.
    pub media: MediaLimits,
    /// The private media bucket; required by `$default`.
    pub media_bucket: Option<String>,
    /// Path-style S3 URLs (`S3_FORCE_PATH_STYLE=true`), for a local S3 on 127.0.0.1.
    pub s3_force_path_style: bool,
    /// Tokens whose expiry is further away are refused (`MAX_TOKEN_LIFETIME_SECONDS`).
    pub max_token_lifetime_secs: u64,
    /// A signing secret from Secrets Manager is fetched again once older than this
    /// (`SECRET_MAX_AGE_SECONDS`), so a rotation reaches warm `$connect` instances in time.
    pub secret_max_age_secs: u64,
    /// The WeChat apps (`app_sid` → appid and secret); required by the login function.
    pub wechat_apps: Option<SecretSource>,
    /// WeChat's server API (`WECHAT_API_BASE`, no trailing slash).
    pub wechat_api_base: String,
    /// How long one WeChat call may take.
    pub wechat_timeout: std::time::Duration,
    /// Lifetime of the tokens `POST /login` mints (at most `max_token_lifetime_secs`).
    pub login_token_secs: u64,
    /// What a WeChat user's account is.
    pub account_identity: AccountIdentity,
    /// Who checks texts (`MODERATION`).
    pub moderation: Checker,
    /// WeChat's scene for messages (`MODERATION_SCENE`).
    pub moderation_scene: u8,
    /// What to do where the checker decides nothing.
    pub moderation_policy: Policy,
    /// Messages one re-check run checks at most (`RECHECK_BATCH`).
    pub recheck_batch: usize,
    /// The operator's moderation webhook (`MODERATION_WEBHOOK_URL`); required by `webhook`.
    pub moderation_webhook_url: Option<String>,
    /// The key webhook requests are signed with; required by `webhook`.
    pub moderation_webhook_key: Option<SecretSource>,
    /// The offline notices' template; `None` when `NOTICE_TEMPLATE_ID` is empty (no notices).
    pub notices: Option<NoticeTemplate>,
    /// Grants of the template one user may hold.
    pub max_notice_grants: u64,
}

/// Who checks the text of messages (`MODERATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checker {
    #[default]
    None,
    WeChat,
    Webhook,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (the environment, or a map in tests). A flat table:
    /// every name, default and range comes from [`vars::VARS`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env = Env(&get);
        let page_max = env.number("PAGE_SIZE_MAX")?;
        let limits = Limits {
            page_default: env.number_up_to("PAGE_SIZE_DEFAULT", page_max)? as usize,
            page_max: page_max as usize,
            max_content_bytes: env.number("MAX_CONTENT_BYTES")? as usize,
            max_frame_bytes: env.number("MAX_FRAME_BYTES")? as usize,
            external_media_hosts: env.hosts("EXTERNAL_MEDIA_HOSTS")?,
        };
        // A row is at most ~6 bytes per content byte (JSON escapes) plus names and URLs: one
        // must always fit in a frame.
        if limits.max_frame_bytes < 6 * limits.max_content_bytes + 16 * 1024 {
            return Err(Error::Config(
                "MAX_FRAME_BYTES must be at least 6 × MAX_CONTENT_BYTES + 16384".into(),
            ));
        }
        let secret = |arn: &str, inline: &str| match (get(arn), get(inline)) {
            (Some(arn), _) if !arn.trim().is_empty() => Some(SecretSource::SecretsManager(arn)),
            (_, Some(s)) if !s.is_empty() => Some(SecretSource::Inline(s.into_bytes())),
            _ => None,
        };
        let jwt_secret = secret("JWT_SECRET_ARN", "JWT_SECRET");
        let media_key_secret = secret("MEDIA_KEY_SECRET_ARN", "MEDIA_KEY_SECRET");
        let wechat_apps = secret("WECHAT_APPS_SECRET_ARN", "WECHAT_APPS");
        let max_token_lifetime_secs = env.number("MAX_TOKEN_LIFETIME_SECONDS")?;
        let account_identity = AccountIdentity::parse(env.text("ACCOUNT_IDENTITY").trim())
            .ok_or_else(|| Error::Config("ACCOUNT_IDENTITY must be phone or openid".into()))?;
        let wechat_api_base = env
            .text("WECHAT_API_BASE")
            .trim()
            .trim_end_matches('/')
            .to_owned();
        if !(wechat_api_base.starts_with("https://") || wechat_api_base.starts_with("http://")) {
            return Err(Error::Config(
                "WECHAT_API_BASE must be an http(s) URL such as https://api.weixin.qq.com".into(),
            ));
        }
        let moderation = match env.text("MODERATION").trim() {
            "none" => Checker::None,
            "wechat" => Checker::WeChat,
            "webhook" => Checker::Webhook,
            _ => {
                return Err(Error::Config(
                    "MODERATION must be wechat, webhook or none".into(),
                ))
            }
        };
        let moderation_webhook_url = env
            .optional("MODERATION_WEBHOOK_URL")
            .map(|u| u.trim().to_owned());
        if let Some(url) = &moderation_webhook_url {
            let loopback = [
                "http://127.0.0.1:",
                "http://127.0.0.1/",
                "http://localhost:",
            ];
            if !(url.starts_with("https://") || loopback.iter().any(|p| url.starts_with(p))) {
                return Err(Error::Config(
                    "MODERATION_WEBHOOK_URL must be https://… (http only on 127.0.0.1, for local runs)".into(),
                ));
            }
        }
        if moderation == Checker::Webhook && moderation_webhook_url.is_none() {
            return Err(Error::Config(
                "MODERATION=webhook needs MODERATION_WEBHOOK_URL".into(),
            ));
        }
        let choice = |k: &str, yes: &str, no: &str| match env.text(k).trim() {
            v if v == yes => Ok(true),
            v if v == no => Ok(false),
            _ => Err(Error::Config(format!("{k} must be {yes} or {no}"))),
        };
        let moderation_policy = Policy {
            review: match choice("MODERATION_REVIEW", "allow", "block")? {
                true => OnReview::Allow,
                false => OnReview::Block,
            },
            unavailable: match choice("MODERATION_UNAVAILABLE", "allow", "block")? {
                true => OnUnavailable::Allow,
                false => OnUnavailable::Block,
            },
            without_openid: match choice("MODERATION_WITHOUT_OPENID", "skip", "refuse")? {
                true => WithoutOpenid::Skip,
                false => WithoutOpenid::Refuse,
            },
            posterless_video: match choice("MODERATION_VIDEO_WITHOUT_POSTER", "allow", "refuse")? {
                true => PosterlessVideo::Allow,
                false => PosterlessVideo::Refuse,
            },
        };
        let display_offset = parse_offset(&env.text("DISPLAY_UTC_OFFSET")).ok_or_else(|| {
            Error::Config("DISPLAY_UTC_OFFSET must look like +08:00 or -05:30".into())
        })?;
        let media = MediaLimits {
            image_types: env.content_types("IMAGE_CONTENT_TYPES", "image")?,
            max_image_bytes: env.number("MAX_IMAGE_BYTES")?,
            video_types: env.content_types("VIDEO_CONTENT_TYPES", "video")?,
            max_video_bytes: env.number("MAX_VIDEO_BYTES")?,
            ticket_secs: env.number("UPLOAD_TICKET_SECONDS")?,
            download_secs: env.number("DOWNLOAD_URL_SECONDS")?,
        };
        let notices = match env.text("NOTICE_TEMPLATE_ID").trim() {
            "" => None,
            id if id.len() > 128
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                return Err(Error::Config(
                    "NOTICE_TEMPLATE_ID must be a template id (letters, digits, - and _)".into(),
                ))
            }
            id => Some(NoticeTemplate {
                id: id.to_owned(),
                fields: NoticeTemplate::parse_fields(&env.text("NOTICE_TEMPLATE_FIELDS"))
                    .map_err(|e| Error::Config(format!("NOTICE_TEMPLATE_FIELDS {e}")))?,
                page: env.text("NOTICE_PAGE").trim().to_owned(),
                state: NoticeState::parse(env.text("NOTICE_STATE").trim()).ok_or_else(|| {
                    Error::Config("NOTICE_STATE must be formal, trial or developer".into())
                })?,
            }),
        };
        Ok(Config {
            notices,
            max_notice_grants: env.number("MAX_NOTICE_GRANTS")?,
            messages_table: env.required("MESSAGES_TABLE")?,
            connections_table: env.required("CONNECTIONS_TABLE")?,
            management_endpoint: env.optional("MANAGEMENT_ENDPOINT"),
            jwt_secret,
            media_key_secret,
            display_offset,
            connection_ttl_secs: env.number("CONNECTION_TTL_SECONDS")? as i64,
            gone_grace_secs: env.number("GONE_GRACE_SECONDS")? as i64,
            max_connections_per_user: env.number("MAX_CONNECTIONS_PER_USER")? as usize,
            recall_window_secs: env.number("RECALL_WINDOW_SECONDS")? as i64,
            marker_ttl_secs: env.number("IDEMPOTENCY_TTL_SECONDS")? as i64,
            max_sends_per_minute: env.number("MAX_SENDS_PER_MINUTE")?,
            max_uploads_per_minute: env.number("MAX_UPLOADS_PER_MINUTE")?,
            max_recalls_per_minute: env.number("MAX_RECALLS_PER_MINUTE")?,
            connection_cache_secs: env.number("CONNECTION_CACHE_SECONDS")? as i64,
            limits,
            media,
            media_bucket: env.optional("MEDIA_BUCKET"),
            s3_force_path_style: env.flag("S3_FORCE_PATH_STYLE")?,
            max_token_lifetime_secs,
            secret_max_age_secs: env.number("SECRET_MAX_AGE_SECONDS")?,
            wechat_apps,
            wechat_api_base,
            wechat_timeout: std::time::Duration::from_millis(env.number("WECHAT_TIMEOUT_MS")?),
            login_token_secs: env.number_up_to("LOGIN_TOKEN_SECONDS", max_token_lifetime_secs)?,
            account_identity,
            moderation,
            moderation_scene: env.number("MODERATION_SCENE")? as u8,
            moderation_policy,
            recheck_batch: env.number("RECHECK_BATCH")? as usize,
            moderation_webhook_url,
            moderation_webhook_key: secret(
                "MODERATION_WEBHOOK_SECRET_ARN",
                "MODERATION_WEBHOOK_SECRET",
            ),
        })
    }

    /// The media bucket, or a start-up error for the function that needs it.
    pub fn require_media_bucket(&self) -> Result<&str> {
        self.media_bucket
            .as_deref()
            .ok_or_else(|| Error::Config("MEDIA_BUCKET must be set".into()))
    }

    /// The management endpoint, or a start-up error for the function that needs it.
    pub fn require_management_endpoint(&self) -> Result<&str> {
        self.management_endpoint
            .as_deref()
            .ok_or_else(|| Error::Config("MANAGEMENT_ENDPOINT must be set".into()))
    }

    /// The secret source, or a start-up error for the function that needs it.
    pub fn require_jwt_secret(&self) -> Result<&SecretSource> {
        self.jwt_secret.as_ref().ok_or_else(|| {
            Error::Config("JWT_SECRET_ARN (or JWT_SECRET locally) must be set".into())
        })
    }

    /// The WeChat apps' source, or a start-up error for the login function.
    pub fn require_wechat_apps(&self) -> Result<&SecretSource> {
        self.wechat_apps.as_ref().ok_or_else(|| {
            Error::Config("WECHAT_APPS_SECRET_ARN (or WECHAT_APPS locally) must be set".into())
        })
    }

    /// The webhook's URL and key source, or a start-up error for `Moderation=webhook`.
    pub fn require_webhook(&self) -> Result<(&str, &SecretSource)> {
        match (&self.moderation_webhook_url, &self.moderation_webhook_key) {
            (Some(url), Some(key)) => Ok((url, key)),
            _ => Err(Error::Config(
                "MODERATION=webhook needs MODERATION_WEBHOOK_URL and MODERATION_WEBHOOK_SECRET_ARN (or MODERATION_WEBHOOK_SECRET locally)".into(),
            )),
        }
    }

    /// The media owner key's source, or a start-up error for `$default`.
    pub fn require_media_key_secret(&self) -> Result<&SecretSource> {
        self.media_key_secret.as_ref().ok_or_else(|| {
            Error::Config("MEDIA_KEY_SECRET_ARN (or MEDIA_KEY_SECRET locally) must be set".into())
        })
    }
}

/// The environment as the loader reads it: each value checked against its [`vars::VARS`] row.
struct Env<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    fn required(&self, k: &str) -> Result<String> {
        match (self.0)(k) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(Error::Config(format!("{k} must be set"))),
        }
    }

    fn optional(&self, k: &str) -> Option<String> {
        (self.0)(k).filter(|v| !v.trim().is_empty())
    }

    fn number(&self, k: &str) -> Result<u64> {
        match var(k).kind {
            Kind::Number { max, .. } => self.number_up_to(k, max),
            _ => Err(Error::Config(format!("{k} is not a number"))),
        }
    }

    /// A number within its row's range, and at most `cap`.
    fn number_up_to(&self, k: &str, cap: u64) -> Result<u64> {
        let Kind::Number { default, min, max } = var(k).kind else {
            return Err(Error::Config(format!("{k} is not a number")));
        };
        let max = max.min(cap);
        match (self.0)(k) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(Error::Config(format!(
                    "{k} must be a whole number from {min} to {max}"
                ))),
            },
        }
    }

    fn text(&self, k: &str) -> String {
        (self.0)(k).unwrap_or_else(|| var(k).kind.default_text().unwrap_or_default())
    }

    fn flag(&self, k: &str) -> Result<bool> {
        let Kind::Flag { default } = var(k).kind else {
            return Err(Error::Config(format!("{k} is not a flag")));
        };
        match (self.0)(k).as_deref().map(str::trim) {
            None | Some("") => Ok(default),
            Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(Error::Config(format!("{k} must be true or false"))),
        }
    }

    /// A comma-separated list of host names (letters, digits, `.` and `-`; no scheme, port or
    /// path).
    fn hosts(&self, k: &str) -> Result<Vec<String>> {
        let list = hosts(&self.text(k));
        let valid = |h: &String| {
            h.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
                && !h.starts_with('.')
                && !h.ends_with('.')
        };
        match list.iter().find(|h| !valid(h)) {
            Some(h) => Err(Error::Config(format!(
                "{k}: {h} is not a host name (a list like cdn.example.com,img.example.com)"
            ))),
            None => Ok(list),
        }
    }

    /// A comma-separated list of content types of one `kind` (`image/…`, `video/…`), none of
    /// which a browser would run if an object's URL were opened as a page: an uploaded SVG or
    /// HTML would be script on the bucket's origin.
    fn content_types(&self, k: &str, kind: &str) -> Result<Vec<String>> {
        let list = content_types(&self.text(k));
        let part = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".+-".contains(&c))
        };
        let valid = |t: &String| t.split_once('/').is_some_and(|(a, b)| part(a) && part(b));
        if !list.iter().all(valid) {
            return Err(Error::Config(format!(
                "{k} must be a comma-separated list of content types like image/jpeg"
            )));
        }
        if let Some(t) = list.iter().find(|t| !t.starts_with(&format!("{kind}/"))) {
            return Err(Error::Config(format!("{k}: {t} is not {kind}/…")));
        }
        if let Some(t) = list.iter().find(|t| runs_in_a_browser(t)) {
            return Err(Error::Config(format!(
                "{k}: {t} is refused: a browser may run it (script on the media bucket's origin)"
            )));
        }
        Ok(list)
    }
}

/// Content types a browser renders as a document that can carry script (SVG, XML, HTML).
fn runs_in_a_browser(content_type: &str) -> bool {
    let subtype = content_type.split_once('/').map_or("", |(_, s)| s);
    ["svg", "xml", "html", "javascript", "ecmascript"]
        .iter()
        .any(|word| subtype.contains(word))
}

/// `+HH:MM` / `-HH:MM` (also `Z`).
fn parse_offset(v: &str) -> Option<UtcOffset> {
    let v = v.trim();
    if v == "Z" || v == "+00:00" {
        return Some(UtcOffset::UTC);
    }
    let (sign, rest) = match v.as_bytes().first()? {
        b'+' => (1i8, &v[1..]),
        b'-' => (-1i8, &v[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 {
        return None; // real offsets run from -12:00 to +14:00
    }
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const TABLES: [(&str, &str); 2] = [("MESSAGES_TABLE", "m"), ("CONNECTIONS_TABLE", "c")];

    #[test]
    fn defaults_apply_when_only_tables_are_set() {
        let c = load(&TABLES).unwrap();
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.display_offset, UtcOffset::from_hms(8, 0, 0).unwrap());
        assert!(c.require_management_endpoint().is_err());
        assert!(c.require_jwt_secret().is_err());
        assert!(c.require_media_key_secret().is_err());
        assert!(c.require_media_bucket().is_err());
        assert_eq!(c.media, MediaLimits::default());
        assert!(!c.s3_force_path_style);
        assert_eq!(c.max_connections_per_user, 20);
        assert_eq!(c.recall_window_secs, 120);
        assert_eq!(c.marker_ttl_secs, 7 * 86_400);
        assert_eq!(c.max_sends_per_minute, 60);
        assert_eq!(c.max_uploads_per_minute, 20);
        assert_eq!(c.max_recalls_per_minute, 20);
    }

    #[test]
    fn moderation_settings_are_checked_when_loaded() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = TABLES.to_vec();
            pairs.extend_from_slice(extra);
            load(&pairs)
        };
        let c = with(&[]).unwrap();
        assert_eq!(
            (c.moderation, c.moderation_policy),
            (Checker::None, Policy::default())
        );
        let c = with(&[
            ("MODERATION", "wechat"),
            ("MODERATION_REVIEW", "block"),
            ("MODERATION_WITHOUT_OPENID", "refuse"),
        ])
        .unwrap();
        assert_eq!(c.moderation, Checker::WeChat);
        assert_eq!(
            (
                c.moderation_policy.review,
                c.moderation_policy.without_openid
            ),
            (OnReview::Block, WithoutOpenid::Refuse)
        );
        for bad in [
            [("MODERATION", "WeChat"), ("MODERATION_SCENE", "2")],
            [("MODERATION", "wechat"), ("MODERATION_REVIEW", "maybe")],
            [("MODERATION", "wechat"), ("MODERATION_SCENE", "5")],
            // webhook: a URL is required, https (http only on loopback)
            [("MODERATION", "webhook"), ("MODERATION_SCENE", "2")],
            [
                ("MODERATION", "webhook"),
                ("MODERATION_WEBHOOK_URL", "http://example.com/m"),
            ],
        ] {
            assert!(with(&bad).is_err(), "{bad:?}");
        }
        let c = with(&[
            ("MODERATION", "webhook"),
            ("MODERATION_WEBHOOK_URL", "http://127.0.0.1:9/m"),
            ("MODERATION_WEBHOOK_SECRET", "k"),
        ])
        .unwrap();
        assert_eq!(c.require_webhook().unwrap().0, "http://127.0.0.1:9/m");
        let c = with(&[
            ("MODERATION", "webhook"),
            ("MODERATION_WEBHOOK_URL", "https://x.example/m"),
        ]);
        assert!(c.unwrap().require_webhook().is_err(), "no key");
    }

    #[test]
    fn media_limits_come_from_the_template_variables() {
        let mut pairs = TABLES.to_vec();
        pairs.extend([
            ("IMAGE_CONTENT_TYPES", "image/png, image/webp"),
            ("MAX_VIDEO_BYTES", "1000"),
            ("MEDIA_BUCKET", "b"),
            ("S3_FORCE_PATH_STYLE", "true"),
        ]);
        let c = load(&pairs).unwrap();
        assert_eq!(c.media.image_types, vec!["image/png", "image/webp"]);
        assert_eq!(c.media.max_video_bytes, 1000);
        assert_eq!(c.require_media_bucket().unwrap(), "b");
        assert!(c.s3_force_path_style);
    }

    #[test]
    fn missing_or_empty_table_fails_loudly() {
        let e = load(&[("MESSAGES_TABLE", "m"), ("CONNECTIONS_TABLE", " ")]).unwrap_err();
        assert!(e.to_string().contains("CONNECTIONS_TABLE"));
    }

    #[test]
    fn content_types_a_browser_may_run_are_refused_at_start() {
        // GIVEN media types that a browser opening the object's URL would run as a page
        for (k, v, says) in [
            (
                "IMAGE_CONTENT_TYPES",
                "image/png,image/svg+xml",
                "image/svg+xml",
            ),
            (
                "IMAGE_CONTENT_TYPES",
                "image/x-xbitmap,image/xhtml",
                "image/xhtml",
            ),
            ("VIDEO_CONTENT_TYPES", "video/mp4,video/xml", "video/xml"),
            ("IMAGE_CONTENT_TYPES", "text/html", "is not image/"),
            ("IMAGE_CONTENT_TYPES", "video/mp4", "is not image/"),
        ] {
            let mut pairs = TABLES.to_vec();
            pairs.push((k, v));
            // THEN the function refuses to start, naming the variable and the type
            let e = load(&pairs).unwrap_err().to_string();
            assert!(e.contains(k) && e.contains(says), "{k}={v}: {e}");
        }
        // AND the defaults and ordinary types load
        let mut pairs = TABLES.to_vec();
        pairs.push(("IMAGE_CONTENT_TYPES", "image/jpeg,image/heic"));
        assert!(load(&pairs).is_ok());
    }

    #[test]
    fn bad_numbers_and_offsets_are_refused() {
        for (k, v) in [
            ("PAGE_SIZE_MAX", "0"),
            ("PAGE_SIZE_MAX", "ten"),
            ("MAX_FRAME_BYTES", "200000"),
            ("DISPLAY_UTC_OFFSET", "8"),
            ("DISPLAY_UTC_OFFSET", "+25:00"),
            ("IMAGE_CONTENT_TYPES", "image/jpeg,,"),
            ("VIDEO_CONTENT_TYPES", "Video/MP4"),
            ("MAX_IMAGE_BYTES", "0"),
            ("UPLOAD_TICKET_SECONDS", "5"),
            ("S3_FORCE_PATH_STYLE", "yes"),
            ("MAX_CONNECTIONS_PER_USER", "0"),
            ("MAX_CONNECTIONS_PER_USER", "101"),
            ("RECALL_WINDOW_SECONDS", "0"),
            ("IDEMPOTENCY_TTL_SECONDS", "60"),
            ("MAX_SENDS_PER_MINUTE", "0"),
        ] {
            let mut pairs = TABLES.to_vec();
            pairs.push((k, v));
            assert!(load(&pairs).is_err(), "{k}={v} must be refused");
        }
    }

    #[test]
    fn secret_arn_wins_and_inline_secret_is_never_printed() {
        let mut pairs = TABLES.to_vec();
        pairs.push(("JWT_SECRET", "super-secret-value"));
        let c = load(&pairs).unwrap();
        assert!(!format!("{c:?}").contains("super-secret-value"));
        pairs.push(("JWT_SECRET_ARN", "arn:aws:secretsmanager:x"));
        let c = load(&pairs).unwrap();
        assert!(matches!(
            c.require_jwt_secret().unwrap(),
            SecretSource::SecretsManager(_)
        ));
    }

    #[test]
    fn the_media_owner_key_is_a_secret_of_its_own() {
        // GIVEN only the signing secret
        let mut pairs = TABLES.to_vec();
        pairs.push(("JWT_SECRET", "signing-secret-value"));
        let c = load(&pairs).unwrap();
        // THEN there is no media key: $default cannot fall back on the signing secret
        assert!(c.require_media_key_secret().is_err());
        // GIVEN a media key too THEN it is read from its own variables, never printed
        pairs.push(("MEDIA_KEY_SECRET", "media-key-value"));
        let c = load(&pairs).unwrap();
        assert_eq!(
            c.require_media_key_secret().unwrap(),
            &SecretSource::Inline(b"media-key-value".to_vec())
        );
        assert!(!format!("{c:?}").contains("media-key-value"));
        pairs.push(("MEDIA_KEY_SECRET_ARN", "arn:aws:secretsmanager:m"));
        let c = load(&pairs).unwrap();
        assert_eq!(
            c.require_media_key_secret().unwrap(),
            &SecretSource::SecretsManager("arn:aws:secretsmanager:m".into())
        );
    }

    #[test]
    fn offsets_parse_both_signs() {
        assert_eq!(parse_offset("-05:30"), UtcOffset::from_hms(-5, -30, 0).ok());
        assert_eq!(parse_offset("Z"), Some(UtcOffset::UTC));
    }
}
