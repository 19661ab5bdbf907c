//! `POST /login` as values: the request, which account a WeChat user logs in as, and every
//! refusal with its HTTP status and code (issue 19; docs/wechat.md). No HTTP here: the entry
//! point turns a [`LoginRefusal`] into a response.

use crate::domain::ids::valid_ident;
use crate::domain::wechat::WeChatError;
use serde::Deserialize;

/// Longest display name a login may carry (the protocol cuts names to 64 characters).
pub const MAX_NAME_CHARS: usize = 64;
/// Longest WeChat code accepted (WeChat's are about 32 characters).
pub const MAX_CODE_BYTES: usize = 256;
/// Seconds a client waits after a refusal that says "later" (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 2;

/// What an account is, for an app's WeChat users (`AccountIdentity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountIdentity {
    /// The seed's `userphone`: the number WeChat verified (`purePhoneNumber`).
    Phone,
    /// The user's openid in this mini-program.
    OpenId,
}

impl AccountIdentity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "phone" => Some(AccountIdentity::Phone),
            "openid" => Some(AccountIdentity::OpenId),
            _ => None,
        }
    }
}

/// The body of `POST /login`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub app_sid: String,
    /// The `wx.login` code.
    pub code: String,
    /// The phone button's code, when the user just tapped it.
    #[serde(default)]
    pub phone_code: Option<String>,
    /// A display name for the token.
    #[serde(default)]
    pub name: Option<String>,
}

/// Why a login was refused. Nothing is stored for any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// The body is not the request's shape; the text says which part.
    BadRequest(&'static str),
    UnknownApp,
    /// WeChat 40029 / 40163.
    BadCode,
    /// WeChat 40226.
    UserBlocked,
    /// WeChat 45011.
    RateLimited,
    /// Phone identity, no `phone_code`, and no number known for this openid.
    PhoneRequired,
    /// WeChat busy (−1), a timeout, no connection, a 5xx, or our storage failing.
    Unavailable,
    /// Any other errcode of WeChat's.
    WeChatError(i64),
}

impl LoginRefusal {
    pub fn status(&self) -> u16 {
        match self {
            LoginRefusal::BadRequest(_) | LoginRefusal::UnknownApp => 400,
            LoginRefusal::BadCode => 401,
            LoginRefusal::UserBlocked => 403,
            LoginRefusal::PhoneRequired => 409,
            LoginRefusal::RateLimited => 429,
            LoginRefusal::WeChatError(_) => 502,
            LoginRefusal::Unavailable => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            LoginRefusal::BadRequest(_) => "bad_request",
            LoginRefusal::UnknownApp => "unknown_app",
            LoginRefusal::BadCode => "bad_code",
            LoginRefusal::UserBlocked => "user_blocked",
            LoginRefusal::RateLimited => "rate_limited",
            LoginRefusal::PhoneRequired => "phone_required",
            LoginRefusal::Unavailable => "wechat_unavailable",
            LoginRefusal::WeChatError(_) => "wechat_error",
        }
    }

    /// The text a client sees: ours, never WeChat's `errmsg` or an internal error's.
    pub fn message(&self) -> String {
        match self {
            LoginRefusal::BadRequest(what) => format!("bad request: {what}"),
            LoginRefusal::UnknownApp => "no such app_sid".into(),
            LoginRefusal::BadCode => "the login code is invalid or was used; call wx.login again".into(),
            LoginRefusal::UserBlocked => "WeChat blocked this user".into(),
            LoginRefusal::RateLimited => "too many logins; try again shortly".into(),
            LoginRefusal::PhoneRequired => "this app needs the user's phone number: send phone_code from the getPhoneNumber button".into(),
            LoginRefusal::Unavailable => "WeChat or the service is unavailable; try again shortly".into(),
            LoginRefusal::WeChatError(code) => format!("WeChat answered errcode {code}"),
        }
    }

    /// `Retry-After` seconds, for the refusals that mean "later".
    pub fn retry_after(&self) -> Option<u64> {
        matches!(self, LoginRefusal::RateLimited | LoginRefusal::Unavailable)
            .then_some(RETRY_AFTER_SECS)
    }
}

impl From<WeChatError> for LoginRefusal {
    fn from(e: WeChatError) -> Self {
        match e {
            WeChatError::BadCode(_) => LoginRefusal::BadCode,
            WeChatError::UserBlocked => LoginRefusal::UserBlocked,
            WeChatError::RateLimited | WeChatError::Quota => LoginRefusal::RateLimited,
            WeChatError::Unavailable(_) => LoginRefusal::Unavailable,
            // A token WeChat refuses after its one refresh is WeChat's trouble, not the user's.
            WeChatError::InvalidToken(code) | WeChatError::Other(code, _) => {
                LoginRefusal::WeChatError(code)
            }
            WeChatError::NoGrant => LoginRefusal::WeChatError(43101),
        }
    }
}

fn code_ok(c: &str) -> bool {
    !c.is_empty() && c.len() <= MAX_CODE_BYTES && c.bytes().all(|b| b.is_ascii_graphic())
}

/// Parses and checks a login body.
pub fn parse_login(body: &[u8]) -> Result<LoginRequest, LoginRefusal> {
    let req: LoginRequest = serde_json::from_slice(body).map_err(|_| {
        LoginRefusal::BadRequest(
            "the body must be JSON {\"app_sid\",\"code\",\"phone_code\"?,\"name\"?} of strings",
        )
    })?;
    if !valid_ident(&req.app_sid) {
        return Err(LoginRefusal::BadRequest(
            "app_sid: 1 to 64 of A-Z a-z 0-9 _ . @ + -",
        ));
    }
    if !code_ok(&req.code) {
        return Err(LoginRefusal::BadRequest(
            "code: 1 to 256 printable ASCII characters",
        ));
    }
    if req.phone_code.as_deref().is_some_and(|c| !code_ok(c)) {
        return Err(LoginRefusal::BadRequest(
            "phone_code: 1 to 256 printable ASCII characters",
        ));
    }
    if req
        .name
        .as_deref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(LoginRefusal::BadRequest("name: at most 64 characters"));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_body_is_checked_field_by_field() {
        let ok = parse_login(br#"{"app_sid":"app","code":"abc","name":"Ann"}"#).unwrap();
        assert_eq!((ok.app_sid.as_str(), ok.phone_code), ("app", None));
        for (body, why) in [
            (&b"not json"[..], "JSON"),
            (br#"{"app_sid":"app"}"#, "JSON"),
            (br#"{"app_sid":"app","code":5}"#, "JSON"),
            (br#"{"app_sid":"app","code":"c","extra":1}"#, "JSON"),
            (br#"{"app_sid":"a b","code":"c"}"#, "app_sid"),
            (br#"{"app_sid":"app","code":""}"#, "code"),
            (
                br#"{"app_sid":"app","code":"c","phone_code":"a b"}"#,
                "phone_code",
            ),
        ] {
            match parse_login(body) {
                Err(LoginRefusal::BadRequest(what)) => assert!(what.contains(why), "{what}"),
                other => panic!("{other:?}"),
            }
        }
        let long = format!(
            r#"{{"app_sid":"app","code":"c","name":"{}"}}"#,
            "名".repeat(65)
        );
        assert_eq!(
            parse_login(long.as_bytes()),
            Err(LoginRefusal::BadRequest("name: at most 64 characters"))
        );
    }

    #[test]
    fn refusals_carry_the_issues_statuses_and_never_wechats_text() {
        let all = [
            (LoginRefusal::UnknownApp, 400, "unknown_app"),
            (WeChatError::BadCode(40163).into(), 401, "bad_code"),
            (WeChatError::UserBlocked.into(), 403, "user_blocked"),
            (WeChatError::RateLimited.into(), 429, "rate_limited"),
            (LoginRefusal::PhoneRequired, 409, "phone_required"),
            (
                WeChatError::Unavailable("timeout".into()).into(),
                503,
                "wechat_unavailable",
            ),
            (
                WeChatError::Other(61024, "errmsg text".into()).into(),
                502,
                "wechat_error",
            ),
        ];
        for (r, status, code) in all {
            assert_eq!((r.status(), r.code()), (status, code));
            assert!(!r.message().contains("errmsg") && !r.message().contains("timeout"));
        }
        assert_eq!(
            LoginRefusal::RateLimited.retry_after(),
            Some(RETRY_AFTER_SECS)
        );
        assert_eq!(LoginRefusal::BadCode.retry_after(), None);
        assert!(LoginRefusal::WeChatError(61024).message().contains("61024"));
    }
}
