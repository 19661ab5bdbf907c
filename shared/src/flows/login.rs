//! `POST /login`: a `wx.login` code (and, for phone identity, the phone button's code) in, a
//! chat token out. Steps: parse → the app → WeChat's session for the code → the account
//! (the openid, or the verified number: from the phone code, else the one remembered for this
//! openid) → bind the identity → sign the token `$connect` accepts.
//!
//! Nothing is stored on a refusal. No log line holds a code, openid, unionid, session key,
//! phone number or token: lines name the app and the outcome only.

use crate::domain::auth::{Claims, TokenSigner};
use crate::domain::ids::valid_ident;
use crate::domain::login::{parse_login, AccountIdentity, LoginRefusal};
use crate::domain::moderation::{label_name, Judgement, Refused};
use crate::domain::wechat::{WeChatApp, WeChatError};
use crate::flows::moderation::Moderation;
use crate::ports::{AccessTokens, AppDirectory, Authored, IdentityStore, WeChat, Written};
use std::collections::HashMap;

/// What a login needs, built once per instance.
pub struct LoginDeps<W, I, T, A = HashMap<String, WeChatApp>> {
    pub wechat: W,
    pub identities: I,
    pub tokens: T,
    /// app_sid → its mini-program's credentials.
    pub apps: A,
    pub identity: AccountIdentity,
    /// Lifetime of the tokens minted (`LoginTokenSeconds`).
    pub token_secs: u64,
    pub signer: TokenSigner,
    /// Checks the display name (scene 1, profile) before it goes into the token.
    pub moderation: Moderation,
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    pub token: String,
    pub expires_at: u64,
    pub account: String,
    /// Why the display name given was left out of the token (content security's label name,
    /// or `unchecked` when it could not be checked and the policy refuses that).
    pub name_refused: Option<&'static str>,
}

/// Logs a WeChat user in at `now_s`.
pub async fn login<W, I, T, A>(
    deps: &LoginDeps<W, I, T, A>,
    body: &[u8],
    now_s: u64,
) -> Result<LoggedIn, LoginRefusal>
where
    W: WeChat,
    I: IdentityStore,
    T: AccessTokens,
    A: AppDirectory,
{
    let req = parse_login(body)?;
    let apps = deps.apps.apps().await;
    let app = apps.get(&req.app_sid).ok_or(LoginRefusal::UnknownApp)?;
    let outcome = async {
        let session = deps.wechat.code_to_session(app, &req.code).await?;
        let (known, (name, name_refused)) = futures::join!(
            deps.identities.account_of(&req.app_sid, &session.openid),
            screened_name(deps, &req.app_sid, &session.openid, req.name.as_deref())
        );
        let known = known.map_err(storage)?;
        let account = match (deps.identity, &req.phone_code) {
            (AccountIdentity::OpenId, _) => session.openid.clone(),
            (AccountIdentity::Phone, Some(code)) => verified_number(deps, app, code).await?,
            (AccountIdentity::Phone, None) => known.clone().ok_or(LoginRefusal::PhoneRequired)?,
        };
        if !valid_ident(&account) {
            // An openid or number outside the account alphabet: WeChat's are not.
            tracing::error!(app_sid = %req.app_sid, "WeChat gave an account the chat cannot use");
            return Err(LoginRefusal::WeChatError(0));
        }
        if known.as_deref() != Some(account.as_str()) {
            deps.identities
                .bind(&req.app_sid, &session.openid, &account)
                .await
                .map_err(storage)?;
        }
        let expires_at = now_s + deps.token_secs;
        let claims = Claims {
            sub: account.clone(),
            app: req.app_sid.clone(),
            exp: expires_at,
            name,
            avatar: None,
        };
        let token = deps
            .signer
            .sign(&claims)
            .map_err(|e| {
                tracing::error!(app_sid = %req.app_sid, error = %e, "cannot sign the token");
                LoginRefusal::Unavailable
            })?
            .ok_or(LoginRefusal::UnknownApp)?;
        Ok(LoggedIn {
            token,
            expires_at,
            account,
            name_refused,
        })
    }
    .await;
    match &outcome {
        Ok(_) => tracing::info!(app_sid = %req.app_sid, "login"),
        Err(r) => tracing::info!(app_sid = %req.app_sid, refusal = r.code(), "login refused"),
    }
    outcome
}

/// The display name as content security leaves it (scene 1, profile): kept (or replaced), or
/// left out with the reason.
async fn screened_name<W, I, T, A>(
    deps: &LoginDeps<W, I, T, A>,
    app_sid: &str,
    openid: &str,
    name: Option<&str>,
) -> (Option<String>, Option<&'static str>) {
    let Some(name) = name.filter(|_| deps.moderation.enabled()) else {
        return (name.map(str::to_owned), None);
    };
    let authored = Authored {
        app_sid,
        sender: "",
        openid: Some(openid),
        written: Written::DisplayName,
        text: name,
    };
    match deps.moderation.judge(authored).await {
        Judgement::Store { replacement, .. } => {
            (Some(replacement.unwrap_or_else(|| name.to_owned())), None)
        }
        Judgement::Refuse(Refused::Blocked { label }) => (None, Some(label_name(label))),
        Judgement::Refuse(_) => (None, Some("unchecked")),
    }
}

/// The number behind a phone code, asking once more with a replaced access token when WeChat
/// refuses the first.
async fn verified_number<W, I, T, A>(
    deps: &LoginDeps<W, I, T, A>,
    app: &WeChatApp,
    code: &str,
) -> Result<String, LoginRefusal>
where
    W: WeChat,
    T: AccessTokens,
{
    let token = deps.tokens.current(app).await?;
    match deps.wechat.phone_number(&token, code).await {
        Err(WeChatError::InvalidToken(_)) => {
            let token = deps.tokens.replace(app, &token).await?;
            Ok(deps.wechat.phone_number(&token, code).await?)
        }
        other => Ok(other?),
    }
}

fn storage(e: crate::error::Error) -> LoginRefusal {
    tracing::error!(error = %e, "identity storage failed");
    LoginRefusal::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::auth::TokenVerifier;
    use crate::fakes::{FakeStore, FakeWeChatApi};
    use crate::flows::access_token::SharedTokens;
    use std::sync::Arc;

    const SECRET: &[u8] = b"login-test-secret-login-test-secret!";
    const NOW: u64 = 1_800_000_000;

    type Deps =
        LoginDeps<Arc<FakeWeChatApi>, FakeStore, SharedTokens<Arc<FakeWeChatApi>, FakeStore>>;

    fn deps(identity: AccountIdentity) -> (Deps, Arc<FakeWeChatApi>) {
        let wechat = Arc::new(FakeWeChatApi::default());
        *wechat.token.lock().unwrap() = "AT-1".into();
        wechat.valid_tokens.lock().unwrap().insert("AT-1".into());
        let app = WeChatApp {
            appid: "wx1".into(),
            secret: "s".into(),
            ..Default::default()
        };
        let deps = LoginDeps {
            wechat: wechat.clone(),
            identities: FakeStore::default(),
            tokens: SharedTokens::new(wechat.clone(), FakeStore::default()),
            apps: HashMap::from([("app".to_owned(), app)]),
            identity,
            token_secs: 7200,
            signer: TokenSigner::new(SECRET).unwrap(),
            moderation: Default::default(),
        };
        (deps, wechat)
    }

    fn code(w: &FakeWeChatApi, code: &str, openid: &str) {
        w.sessions
            .lock()
            .unwrap()
            .insert(code.into(), openid.into());
    }

    fn phone(w: &FakeWeChatApi, code: &str, number: &str) {
        w.phones.lock().unwrap().insert(code.into(), number.into());
    }

    fn body(code: &str, phone_code: Option<&str>) -> Vec<u8> {
        serde_json::json!({"app_sid":"app","code":code,"phone_code":phone_code,"name":"Ann"})
            .to_string()
            .into_bytes()
    }

    #[tokio::test]
    async fn phone_identity_asks_for_the_number_once_and_remembers_it() {
        let (d, w) = deps(AccountIdentity::Phone);
        // GIVEN a first login without a phone code THEN 409 and nothing stored
        code(&w, "c1", "o-ann");
        assert_eq!(
            login(&d, &body("c1", None), NOW).await,
            Err(LoginRefusal::PhoneRequired)
        );
        assert!(d.identities.state.lock().unwrap().accounts.is_empty());
        // WHEN it comes with one THEN the token is for the verified number, and `$connect`'s
        // verifier accepts it
        code(&w, "c2", "o-ann");
        phone(&w, "p1", "13800000001");
        let ok = login(&d, &body("c2", Some("p1")), NOW).await.unwrap();
        assert_eq!(
            (ok.account.as_str(), ok.expires_at),
            ("13800000001", NOW + 7200)
        );
        let claims = TokenVerifier::new(SECRET)
            .unwrap()
            .with_max_lifetime(u64::MAX / 4)
            .verify(&ok.token, "app");
        // (the verifier reads the real clock; the token's exp is in 2027, so it is valid)
        let claims = claims.unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.name.as_deref()),
            ("13800000001", Some("Ann"))
        );
        // AND a later login without a phone code gets the same account
        code(&w, "c3", "o-ann");
        assert_eq!(
            login(&d, &body("c3", None), NOW).await.unwrap().account,
            "13800000001"
        );
        assert_eq!(w.token_calls.lock().unwrap().0, 1, "one stable_token call");
    }

    #[tokio::test]
    async fn openid_identity_needs_no_phone() {
        let (d, w) = deps(AccountIdentity::OpenId);
        code(&w, "c1", "oAbc_123-x");
        let ok = login(&d, &body("c1", Some("ignored")), NOW).await.unwrap();
        assert_eq!(ok.account, "oAbc_123-x");
        assert_eq!(w.token_calls.lock().unwrap().0, 0, "no access token needed");
    }

    #[tokio::test]
    async fn refused_logins_store_nothing() {
        let (d, w) = deps(AccountIdentity::Phone);
        let unknown_app = br#"{"app_sid":"nope","code":"c"}"#;
        assert_eq!(
            login(&d, unknown_app, NOW).await,
            Err(LoginRefusal::UnknownApp)
        );
        assert_eq!(
            login(&d, &body("never-issued", None), NOW).await,
            Err(LoginRefusal::BadCode)
        );
        for (e, refusal) in [
            (WeChatError::UserBlocked, LoginRefusal::UserBlocked),
            (WeChatError::RateLimited, LoginRefusal::RateLimited),
            (
                WeChatError::Unavailable("busy".into()),
                LoginRefusal::Unavailable,
            ),
            (
                WeChatError::Other(61024, "x".into()),
                LoginRefusal::WeChatError(61024),
            ),
        ] {
            code(&w, "c", "o-ann");
            phone(&w, "p", "13800000001");
            w.next_errors.lock().unwrap().push(e);
            assert_eq!(login(&d, &body("c", Some("p")), NOW).await, Err(refusal));
        }
        assert!(d.identities.state.lock().unwrap().accounts.is_empty());
        // AND the store failing is 503, not a stack trace
        d.identities.state.lock().unwrap().down = true;
        code(&w, "c9", "o-ann");
        assert_eq!(
            login(&d, &body("c9", None), NOW).await,
            Err(LoginRefusal::Unavailable)
        );
    }

    #[tokio::test]
    async fn a_refused_access_token_is_replaced_once_and_forced_at_most_once_an_hour() {
        let (d, w) = deps(AccountIdentity::Phone);
        // GIVEN WeChat refuses the token it still hands out in normal mode
        w.valid_tokens.lock().unwrap().clear();
        code(&w, "c1", "o-ann");
        phone(&w, "p1", "13800000001");
        // WHEN a login needs a number THEN a normal call gives the same token, one forced
        // refresh gives a new one, and the retry with it succeeds
        let ok = login(&d, &body("c1", Some("p1")), NOW).await.unwrap();
        assert_eq!(ok.account, "13800000001");
        assert_eq!(
            *w.token_calls.lock().unwrap(),
            (2, 1),
            "(normal, forced) calls"
        );
        // AND when WeChat refuses the new one too within the hour, it is not forced again:
        // the login fails with WeChat's errcode, and nothing is stored for it
        w.valid_tokens.lock().unwrap().clear();
        code(&w, "c2", "o-bob");
        phone(&w, "p2", "13800000002");
        assert_eq!(
            login(&d, &body("c2", Some("p2")), NOW).await,
            Err(LoginRefusal::WeChatError(40001))
        );
        assert_eq!(*w.token_calls.lock().unwrap(), (3, 1));
        assert_eq!(d.identities.state.lock().unwrap().accounts.len(), 1);
    }

    #[tokio::test]
    async fn concurrent_logins_share_one_token_call() {
        let (d, w) = deps(AccountIdentity::Phone);
        for i in 0..50 {
            code(&w, &format!("c{i}"), &format!("o-{i}"));
            phone(&w, &format!("p{i}"), &format!("1380000{i:04}"));
        }
        let bodies: Vec<Vec<u8>> = (0..50)
            .map(|i| body(&format!("c{i}"), Some(&format!("p{i}"))))
            .collect();
        let all = futures::future::join_all(bodies.iter().map(|b| login(&d, b, NOW))).await;
        assert!(all.iter().all(Result::is_ok));
        assert_eq!(*w.token_calls.lock().unwrap(), (1, 0));
    }
}
