//! The WeChat platform as the chat sees it, free of HTTP: an app's credentials, what a login
//! code turns into, the app's access token, and what WeChat's `errcode`s mean for a caller.
//! The calls themselves are the [`crate::ports::WeChat`] port (adapter:
//! `adapters/wechat.rs`). Facts followed: WeChat's server API pages for `jscode2session`,
//! `getuserphonenumber` and `stable_token` (docs/wechat.md lists them).

use crate::domain::ids::valid_ident;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// One mini-program's credentials (from the `WeChatApps` secret).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct WeChatApp {
    pub appid: String,
    pub secret: String,
    /// The message push "Token" set in the admin console (push signatures); `None`: pushes
    /// to this app are refused.
    pub push_token: Option<String>,
    /// The message push "EncodingAESKey" (43 characters): set, only the secure (encrypted)
    /// mode is accepted.
    pub push_aes_key: Option<String>,
}

impl fmt::Debug for WeChatApp {
    /// Never a secret, wherever a value is logged or printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeChatApp")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .field(
                "push_token",
                &self.push_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "push_aes_key",
                &self.push_aes_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One entry of the `WeChatApps` secret (`push_token` and `push_aes_key`: WeChat's message
/// push, optional).
#[derive(Deserialize)]
struct AppEntry {
    appid: String,
    secret: String,
    #[serde(default)]
    push_token: Option<String>,
    #[serde(default)]
    push_aes_key: Option<String>,
}

/// The `WeChatApps` secret: `{"<app_sid>":{"appid":"wx…","secret":"…",…}}` → app_sid → app.
/// Fails (at cold start) with a message naming the entry at fault, never a secret.
pub fn parse_apps(json: &[u8]) -> Result<HashMap<String, WeChatApp>, String> {
    let entries: HashMap<String, serde_json::Value> = serde_json::from_slice(json)
        .map_err(|_| "the WeChat apps secret is not a JSON object of apps".to_owned())?;
    let mut apps = HashMap::new();
    for (app_sid, v) in entries {
        if !valid_ident(&app_sid) {
            return Err(format!(
                "WeChat apps: {app_sid:?} is not an app_sid (1-64 of A-Z a-z 0-9 _ . @ + -)"
            ));
        }
        let e: AppEntry = serde_json::from_value(v).map_err(|_| {
            format!("WeChat apps: {app_sid} needs \"appid\" and \"secret\" strings")
        })?;
        if e.appid.trim().is_empty() || e.secret.trim().is_empty() {
            return Err(format!(
                "WeChat apps: {app_sid} has an empty appid or secret"
            ));
        }
        // WeChat's console takes a Token of 3 to 32 letters and digits, and an EncodingAESKey
        // of 43 letters and digits.
        let alnum = |s: &str| s.bytes().all(|c| c.is_ascii_alphanumeric());
        if let Some(t) = &e.push_token {
            if !(3..=32).contains(&t.len()) || !alnum(t) {
                return Err(format!(
                    "WeChat apps: {app_sid}'s push_token must be 3 to 32 letters and digits"
                ));
            }
        }
        if let Some(k) = &e.push_aes_key {
            if k.len() != 43 || !alnum(k) || e.push_token.is_none() {
                return Err(format!(
                    "WeChat apps: {app_sid}'s push_aes_key must be 43 letters and digits, beside a push_token"
                ));
            }
        }
        apps.insert(
            app_sid,
            WeChatApp {
                appid: e.appid,
                secret: e.secret,
                push_token: e.push_token,
                push_aes_key: e.push_aes_key,
            },
        );
    }
    Ok(apps)
}

/// What `jscode2session` says about a login code. WeChat's `session_key` is dropped where the
/// answer is read: the chat never needs it (it decrypts user data the chat does not use), so it
/// is never held, stored, returned or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct WeChatSession {
    pub openid: String,
    /// Only when the app is bound to an Open Platform account.
    pub unionid: Option<String>,
}

impl fmt::Debug for WeChatSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeChatSession(<redacted>)")
    }
}

/// An app's access token and when it stops working (epoch seconds).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub expires_at: i64,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The durable copy of an app's access token that every instance shares, and when a forced
/// refresh was last claimed for the app (epoch s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredToken {
    pub token: Option<AccessToken>,
    pub forced_at: Option<i64>,
    /// Until when (epoch ms) a caller holds the lease to refresh it.
    pub refresh_until_ms: Option<i64>,
}

/// Why a WeChat call did not give an answer, by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeChatError {
    /// 40029 (invalid code) or 40163 (code already used): the user must log in again.
    BadCode(i64),
    /// 40226: WeChat blocked this user as high-risk.
    UserBlocked,
    /// 45011: too frequent; try again later.
    RateLimited,
    /// 45009: the app's quota for this API is used up (content security: 4,000 a minute).
    Quota,
    /// 40001 (invalid credential) or 42001 (expired): the access token wants refreshing.
    InvalidToken(i64),
    /// 43101: the user refused the subscribe message template or has no grant left.
    NoGrant,
    /// −1 (system busy), a timeout, no connection, or an HTTP 5xx: try again later.
    Unavailable(String),
    /// Any other errcode, or an answer that is not WeChat's shape (the text is for logs only;
    /// it never carries WeChat's `errmsg`, which may quote the request).
    Other(i64, String),
}

impl WeChatError {
    /// The error an `errcode` other than 0 stands for.
    pub fn from_errcode(errcode: i64) -> Self {
        match errcode {
            40029 | 40163 => WeChatError::BadCode(errcode),
            40226 => WeChatError::UserBlocked,
            45011 => WeChatError::RateLimited,
            45009 => WeChatError::Quota,
            43101 => WeChatError::NoGrant,
            40001 | 42001 => WeChatError::InvalidToken(errcode),
            -1 => WeChatError::Unavailable("errcode -1 (system busy)".into()),
            _ => WeChatError::Other(errcode, format!("errcode {errcode}")),
        }
    }
}

impl fmt::Display for WeChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeChatError::BadCode(c) => write!(f, "wechat: bad code (errcode {c})"),
            WeChatError::UserBlocked => f.write_str("wechat: user blocked (errcode 40226)"),
            WeChatError::RateLimited => f.write_str("wechat: rate limited (errcode 45011)"),
            WeChatError::Quota => f.write_str("wechat: quota used up (errcode 45009)"),
            WeChatError::NoGrant => f.write_str("wechat: no subscribe grant (errcode 43101)"),
            WeChatError::InvalidToken(c) => write!(f, "wechat: access token refused (errcode {c})"),
            WeChatError::Unavailable(why) => write!(f, "wechat unavailable: {why}"),
            WeChatError::Other(_, why) => write!(f, "wechat: {why}"),
        }
    }
}

impl std::error::Error for WeChatError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_map_to_what_the_caller_does() {
        assert_eq!(
            WeChatError::from_errcode(40029),
            WeChatError::BadCode(40029)
        );
        assert_eq!(
            WeChatError::from_errcode(40163),
            WeChatError::BadCode(40163)
        );
        assert_eq!(WeChatError::from_errcode(40226), WeChatError::UserBlocked);
        assert_eq!(WeChatError::from_errcode(45011), WeChatError::RateLimited);
        assert_eq!(WeChatError::from_errcode(45009), WeChatError::Quota);
        assert_eq!(WeChatError::from_errcode(43101), WeChatError::NoGrant);
        assert_eq!(
            WeChatError::from_errcode(42001),
            WeChatError::InvalidToken(42001)
        );
        assert!(matches!(
            WeChatError::from_errcode(-1),
            WeChatError::Unavailable(_)
        ));
        assert!(matches!(
            WeChatError::from_errcode(61024),
            WeChatError::Other(61024, _)
        ));
    }

    #[test]
    fn the_apps_secret_is_read_and_bad_entries_are_named_without_their_secret() {
        let apps = parse_apps(
            br#"{"shop":{"appid":"wx1","secret":"s1","push_token":"tok1"},"blog":{"appid":"wx2","secret":"s2"}}"#,
        )
        .unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps["shop"].push_token.as_deref(), Some("tok1"));
        assert_eq!(apps["blog"].push_token, None);
        assert_eq!(apps["shop"].appid, "wx1");
        assert_eq!(apps["blog"].secret, "s2");
        assert!(parse_apps(b"{}").unwrap().is_empty());
        for (bad, names) in [
            (&br#"[1]"#[..], "not a JSON object"),
            (br#"{"a#b":{"appid":"wx","secret":"s"}}"#, "a#b"),
            (br#"{"shop":{"appid":"wx1"}}"#, "shop needs"),
            (
                br#"{"shop":{"appid":"wx1","secret":" "}}"#,
                "shop has an empty",
            ),
            // WeChat's console: a Token of 3-32 letters and digits, a 43-character AES key
            // beside one
            (
                br#"{"shop":{"appid":"wx1","secret":"s","push_token":"t!"}}"#,
                "push_token must be",
            ),
            (
                br#"{"shop":{"appid":"wx1","secret":"s","push_token":"tok1","push_aes_key":"short"}}"#,
                "push_aes_key must be",
            ),
        ] {
            let e = parse_apps(bad).unwrap_err();
            assert!(e.contains(names), "{e}");
        }
        let e = parse_apps(br#"{"shop":{"appid":1,"secret":"hunter2"}}"#).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let app = WeChatApp {
            appid: "wx1".into(),
            secret: "s3cr3t".into(),
            ..Default::default()
        };
        let session = WeChatSession {
            openid: "o-123".into(),
            unionid: Some("u-9".into()),
        };
        let token = AccessToken {
            token: "tok".into(),
            expires_at: 1,
        };
        let all = format!("{app:?} {session:?} {token:?}");
        for secret in ["s3cr3t", "o-123", "u-9", "tok\""] {
            assert!(!all.contains(secret), "{all}");
        }
    }
}
