//! Typed configuration, read once at cold start. A missing or malformed value stops the
//! function there, with a message naming the variable, instead of failing per request.

use crate::error::{Error, Result};
use crate::media::MediaLimits;
use time::UtcOffset;

/// Where the JWT signing secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A Secrets Manager secret (ARN or name) holding the secret string. Used when deployed.
    SecretsManager(String),
    /// The secret itself, from `JWT_SECRET`. For local runs only.
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

/// How long an idempotency marker lives by default (`IDEMPOTENCY_TTL_SECONDS`): 7 days.
pub const DEFAULT_MARKER_TTL_SECS: i64 = 7 * 86_400;

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            page_default: 20,
            page_max: 100,
            max_content_bytes: 4096,
            max_frame_bytes: 127_000,
        }
    }
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
    /// Messages one connection may send per minute (`MAX_SENDS_PER_MINUTE`); more are refused
    /// with `rate_limited`.
    pub max_sends_per_minute: u64,
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
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let required = |k: &str| match get(k) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(Error::Config(format!("{k} must be set"))),
        };
        let number = |k: &str, default: usize, min: usize, max: usize| -> Result<usize> {
            match get(k) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(Error::Config(format!(
                        "{k} must be a whole number from {min} to {max}"
                    ))),
                },
            }
        };
        let defaults = Limits::default();
        let page_max = number("PAGE_SIZE_MAX", defaults.page_max, 1, 500)?;
        let limits = Limits {
            page_default: number("PAGE_SIZE_DEFAULT", defaults.page_default, 1, page_max)?,
            page_max,
            max_content_bytes: number("MAX_CONTENT_BYTES", defaults.max_content_bytes, 1, 16384)?,
            max_frame_bytes: number(
                "MAX_FRAME_BYTES",
                defaults.max_frame_bytes,
                16 * 1024,
                128_000,
            )?,
        };
        // A row is at most ~6 bytes per content byte (JSON escapes) plus names and URLs: one
        // must always fit in a frame.
        if limits.max_frame_bytes < 6 * limits.max_content_bytes + 16 * 1024 {
            return Err(Error::Config(
                "MAX_FRAME_BYTES must be at least 6 × MAX_CONTENT_BYTES + 16384".into(),
            ));
        }
        let jwt_secret = match (get("JWT_SECRET_ARN"), get("JWT_SECRET")) {
            (Some(arn), _) if !arn.trim().is_empty() => Some(SecretSource::SecretsManager(arn)),
            (_, Some(s)) if !s.is_empty() => Some(SecretSource::Inline(s.into_bytes())),
            _ => None,
        };
        let display_offset = match get("DISPLAY_UTC_OFFSET") {
            None => UtcOffset::from_hms(8, 0, 0).expect("+08:00 is a valid offset"),
            Some(v) => parse_offset(&v).ok_or_else(|| {
                Error::Config("DISPLAY_UTC_OFFSET must look like +08:00 or -05:30".into())
            })?,
        };
        let media_defaults = MediaLimits::default();
        let types = |k: &str, default: &[String]| -> Result<Vec<String>> {
            let Some(v) = get(k) else {
                return Ok(default.to_vec());
            };
            let list: Vec<String> = v.split(',').map(|t| t.trim().to_owned()).collect();
            let valid = |t: &String| {
                t.split_once('/').is_some_and(|(a, b)| {
                    let ok = |s: &str| {
                        !s.is_empty()
                            && s.bytes().all(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || b".+-".contains(&c)
                            })
                    };
                    ok(a) && ok(b)
                })
            };
            if list.iter().all(valid) {
                Ok(list)
            } else {
                Err(Error::Config(format!(
                    "{k} must be a comma-separated list of content types like image/jpeg"
                )))
            }
        };
        let media = MediaLimits {
            image_types: types("IMAGE_CONTENT_TYPES", &media_defaults.image_types)?,
            max_image_bytes: number(
                "MAX_IMAGE_BYTES",
                media_defaults.max_image_bytes as usize,
                1,
                100 << 20,
            )? as u64,
            video_types: types("VIDEO_CONTENT_TYPES", &media_defaults.video_types)?,
            max_video_bytes: number(
                "MAX_VIDEO_BYTES",
                media_defaults.max_video_bytes as usize,
                1,
                1 << 30,
            )? as u64,
            ticket_secs: number(
                "UPLOAD_TICKET_SECONDS",
                media_defaults.ticket_secs as usize,
                30,
                3600,
            )? as u64,
            download_secs: number(
                "DOWNLOAD_URL_SECONDS",
                media_defaults.download_secs as usize,
                60,
                43200,
            )? as u64,
        };
        let s3_force_path_style = match get("S3_FORCE_PATH_STYLE").as_deref().map(str::trim) {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(Error::Config(
                    "S3_FORCE_PATH_STYLE must be true or false".into(),
                ))
            }
        };
        Ok(Config {
            messages_table: required("MESSAGES_TABLE")?,
            connections_table: required("CONNECTIONS_TABLE")?,
            management_endpoint: get("MANAGEMENT_ENDPOINT").filter(|v| !v.trim().is_empty()),
            jwt_secret,
            display_offset,
            connection_ttl_secs: number("CONNECTION_TTL_SECONDS", 7500, 5, 86400)? as i64,
            gone_grace_secs: number("GONE_GRACE_SECONDS", 30, 0, 600)? as i64,
            max_connections_per_user: number("MAX_CONNECTIONS_PER_USER", 20, 1, 100)?,
            recall_window_secs: number("RECALL_WINDOW_SECONDS", 120, 1, 86400)? as i64,
            marker_ttl_secs: number(
                "IDEMPOTENCY_TTL_SECONDS",
                DEFAULT_MARKER_TTL_SECS as usize,
                3600,
                365 * 86_400,
            )? as i64,
            max_sends_per_minute: number("MAX_SENDS_PER_MINUTE", 60, 1, 100_000)? as u64,
            connection_cache_secs: number("CONNECTION_CACHE_SECONDS", 5, 0, 60)? as i64,
            limits,
            media,
            media_bucket: get("MEDIA_BUCKET").filter(|v| !v.trim().is_empty()),
            s3_force_path_style,
            max_token_lifetime_secs: number(
                "MAX_TOKEN_LIFETIME_SECONDS",
                crate::auth::DEFAULT_MAX_TOKEN_LIFETIME_SECS as usize,
                60,
                30 * 86_400,
            )? as u64,
            secret_max_age_secs: number("SECRET_MAX_AGE_SECONDS", 300, 0, 86_400)? as u64,
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
        assert!(c.require_media_bucket().is_err());
        assert_eq!(c.media, MediaLimits::default());
        assert!(!c.s3_force_path_style);
        assert_eq!(c.max_connections_per_user, 20);
        assert_eq!(c.recall_window_secs, 120);
        assert_eq!(c.marker_ttl_secs, 7 * 86_400);
        assert_eq!(c.max_sends_per_minute, 60);
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
    fn offsets_parse_both_signs() {
        assert_eq!(parse_offset("-05:30"), UtcOffset::from_hms(-5, -30, 0).ok());
        assert_eq!(parse_offset("Z"), Some(UtcOffset::UTC));
    }
}
