//! The WeChat platform as the chat sees it, free of HTTP: an app's credentials, what a login
//! code turns into, the app's access token, and what WeChat's `errcode`s mean for a caller.
//! The calls themselves are the [`crate::ports::WeChat`] port (adapter:
//! `adapters/wechat.rs`). Facts followed: WeChat's server API pages for `jscode2session`,
//! `getuserphonenumber` and `stable_token` (docs/wechat.md lists them).

use std::fmt;

/// One mini-program's credentials (from the `WeChatApps` secret).
#[derive(Clone, PartialEq, Eq)]
pub struct WeChatApp {
    pub appid: String,
    pub secret: String,
}

impl fmt::Debug for WeChatApp {
    /// Never the secret, wherever a value is logged or printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeChatApp")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .finish()
    }
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

/// Why a WeChat call did not give an answer, by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeChatError {
    /// 40029 (invalid code) or 40163 (code already used): the user must log in again.
    BadCode(i64),
    /// 40226: WeChat blocked this user as high-risk.
    UserBlocked,
    /// 45011: too frequent; try again later.
    RateLimited,
    /// 40001 (invalid credential) or 42001 (expired): the access token wants refreshing.
    InvalidToken(i64),
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
    fn secrets_never_show_in_debug_output() {
        let app = WeChatApp {
            appid: "wx1".into(),
            secret: "s3cr3t".into(),
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
