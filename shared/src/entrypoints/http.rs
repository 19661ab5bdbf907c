//! HTTP API entry points (payload format 2.0): `POST /login`, and WeChat's message push
//! ([`wechat_push`]). The body in, a JSON answer out:
//! `200 {"token","expires_at","account","name_refused"?}` or a refusal `{"error","message"}` with its status
//! (and `Retry-After` when it means "later"). An `Err` is an invocation error, never used for a
//! client's mistake.

use crate::domain::login::LoginRefusal;
use crate::flows::login::{login as login_flow, LoginDeps};
use crate::flows::push::{push as push_flow, PushAnswer, PushDeps};
use crate::ports::{
    AccessTokens, AppDirectory, ConnectionRemove, IdentityStore, MediaCheckStore, MediaObjects,
    MediaSigner, MessageStore, NonceStore, Notifier, ScreeningStore, WeChat,
};
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{header, HeaderValue};
use base64::Engine;
use lambda_runtime::LambdaEvent;
use std::collections::HashMap;

/// The event type of an HTTP API route.
pub type HttpEvent = LambdaEvent<ApiGatewayV2httpRequest>;
/// What an HTTP API function answers.
pub type HttpResult = Result<ApiGatewayV2httpResponse, lambda_runtime::Error>;

/// Largest body `POST /login` reads (a login is about 200 bytes).
pub const MAX_LOGIN_BODY_BYTES: usize = 4096;

/// A JSON answer with `status`; never cached (it may hold a token).
pub fn json_response(status: u16, body: &serde_json::Value) -> ApiGatewayV2httpResponse {
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = status.into();
    r.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.body = Some(Body::Text(body.to_string()));
    r
}

/// A refusal as the client sees it: its status, code and our text, `Retry-After` when it
/// means "later".
pub fn refusal_response(r: &LoginRefusal) -> ApiGatewayV2httpResponse {
    let mut resp = json_response(
        r.status(),
        &serde_json::json!({"error": r.code(), "message": r.message()}),
    );
    if let Some(secs) = r.retry_after() {
        resp.headers.insert(header::RETRY_AFTER, secs.into());
    }
    resp
}

/// The request body's bytes (API Gateway base64-encodes bodies it takes for binary), or the
/// refusal for one that is too long or not decodable.
fn body_bytes(event: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, LoginRefusal> {
    let text = event.body.as_deref().unwrap_or_default();
    let bytes = if event.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| LoginRefusal::BadRequest("the body is not valid base64"))?
    } else {
        text.as_bytes().to_vec()
    };
    if bytes.len() > MAX_LOGIN_BODY_BYTES {
        return Err(LoginRefusal::BadRequest("the body is too long"));
    }
    Ok(bytes)
}

/// `POST /login`.
#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id))]
pub async fn login<W, I, T, A>(deps: &LoginDeps<W, I, T, A>, event: HttpEvent) -> HttpResult
where
    W: WeChat,
    I: IdentityStore,
    T: AccessTokens,
    A: AppDirectory,
{
    let outcome = match body_bytes(&event.payload) {
        Ok(body) => login_flow(deps, &body, crate::clock::now_s() as u64).await,
        Err(r) => Err(r),
    };
    Ok(match outcome {
        Ok(done) => {
            let mut answer = serde_json::json!({
                "token": done.token,
                "expires_at": done.expires_at,
                "account": done.account,
            });
            if let Some(why) = done.name_refused {
                answer["name_refused"] = why.into();
            }
            json_response(200, &answer)
        }
        Err(r) => refusal_response(&r),
    })
}

/// Largest push body read (WeChat's events are a few hundred bytes).
pub const MAX_PUSH_BODY_BYTES: usize = 64 * 1024;

/// `GET|POST /wechat/push/{app_sid}`: WeChat's message push (`flows::push`). Plain text
/// answers, as WeChat reads them (`echostr`, `success`).
#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id))]
pub async fn wechat_push<S, A, N, O>(deps: &PushDeps<S, A, N, O>, event: HttpEvent) -> HttpResult
where
    S: NonceStore + MediaCheckStore + ScreeningStore + MessageStore + ConnectionRemove,
    A: AppDirectory,
    N: Notifier,
    O: MediaObjects + MediaSigner,
{
    let ev = &event.payload;
    let method = ev.request_context.http.method.as_str().to_owned();
    let app_sid = ev
        .path_parameters
        .get("app_sid")
        .cloned()
        .unwrap_or_default();
    let query: HashMap<String, String> = form_urlencoded::parse(
        ev.raw_query_string
            .as_deref()
            .unwrap_or_default()
            .as_bytes(),
    )
    .into_owned()
    .collect();
    let text = ev.body.as_deref().unwrap_or_default();
    let body = match ev.is_base64_encoded {
        true => base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default(),
        false => text.as_bytes().to_vec(),
    };
    let answer = match body.len() > MAX_PUSH_BODY_BYTES {
        true => PushAnswer {
            status: 413,
            body: "too long".into(),
        },
        false => {
            push_flow(
                deps,
                &method,
                &app_sid,
                &query,
                &body,
                crate::clock::now_s(),
            )
            .await?
        }
    };
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = answer.status.into();
    r.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.body = Some(Body::Text(answer.body));
    Ok(r)
}

#[cfg(test)]
mod tests {
    //! The handler on the sample event `events/login.json` (what `sam local invoke` would use).
    use super::*;
    use crate::domain::auth::{TokenSigner, TokenVerifier};
    use crate::domain::login::AccountIdentity;
    use crate::domain::wechat::WeChatApp;
    use crate::fakes::{FakeStore, FakeWeChatApi};
    use crate::flows::access_token::SharedTokens;
    use std::collections::HashMap;
    use std::sync::Arc;

    const SECRET: &[u8] = b"http-test-secret-http-test-secret!!!";

    fn sample() -> ApiGatewayV2httpRequest {
        serde_json::from_str(include_str!("../../../events/login.json")).unwrap()
    }

    fn deps(
    ) -> LoginDeps<Arc<FakeWeChatApi>, FakeStore, SharedTokens<Arc<FakeWeChatApi>, FakeStore>> {
        let wechat = Arc::new(FakeWeChatApi::default());
        *wechat.token.lock().unwrap() = "AT-1".into();
        wechat.valid_tokens.lock().unwrap().insert("AT-1".into());
        let app = WeChatApp {
            appid: "wx00000000000demo".into(),
            secret: "s".into(),
            ..Default::default()
        };
        LoginDeps {
            wechat: wechat.clone(),
            identities: FakeStore::default(),
            tokens: SharedTokens::new(wechat, FakeStore::default()),
            apps: HashMap::from([("wxdemo".to_owned(), app)]),
            identity: AccountIdentity::Phone,
            token_secs: 7200,
            signer: TokenSigner::new(SECRET).unwrap(),
            moderation: Default::default(),
        }
    }

    fn answer(r: &ApiGatewayV2httpResponse) -> serde_json::Value {
        match &r.body {
            Some(Body::Text(t)) => serde_json::from_str(t).unwrap(),
            other => panic!("not a text body: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_sample_login_event_gets_a_token_that_connect_accepts() {
        // GIVEN WeChat knows the sample's two codes
        let d = deps();
        d.wechat
            .sessions
            .lock()
            .unwrap()
            .insert("lc-demo-1".into(), "o-demo".into());
        d.wechat
            .phones
            .lock()
            .unwrap()
            .insert("pc-demo-1".into(), "13800000001".into());
        // WHEN the sample event arrives
        let ctx = lambda_runtime::Context::default();
        let r = login(&d, LambdaEvent::new(sample(), ctx)).await.unwrap();
        // THEN 200 with a JSON token for the verified number, not cached
        assert_eq!(r.status_code, 200);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        let v = answer(&r);
        assert_eq!(v["account"], "13800000001");
        let token = v["token"].as_str().unwrap();
        let claims = TokenVerifier::new(SECRET).unwrap().verify(token, "wxdemo");
        assert_eq!(claims.unwrap().sub, "13800000001");
        // AND the same event again (both codes used) is refused as bad_code
        let r = login(
            &d,
            LambdaEvent::new(sample(), lambda_runtime::Context::default()),
        )
        .await
        .unwrap();
        assert_eq!(
            (r.status_code, answer(&r)["error"].clone()),
            (401, "bad_code".into())
        );
    }

    fn event(body: &str, base64: bool) -> ApiGatewayV2httpRequest {
        let mut e = ApiGatewayV2httpRequest::default();
        e.body = Some(body.to_owned());
        e.is_base64_encoded = base64;
        e
    }

    #[test]
    fn bodies_are_read_plain_or_base64_and_bounded() {
        assert_eq!(body_bytes(&event("{}", false)).unwrap(), b"{}");
        assert_eq!(body_bytes(&event("e30=", true)).unwrap(), b"{}");
        assert_eq!(
            body_bytes(&event("%%%", true)),
            Err(LoginRefusal::BadRequest("the body is not valid base64"))
        );
        let long = "x".repeat(MAX_LOGIN_BODY_BYTES + 1);
        assert_eq!(
            body_bytes(&event(&long, false)),
            Err(LoginRefusal::BadRequest("the body is too long"))
        );
    }

    #[test]
    fn a_refusal_carries_its_status_code_and_retry_after() {
        let r = refusal_response(&LoginRefusal::Unavailable);
        assert_eq!(r.status_code, 503);
        assert_eq!(r.headers[header::RETRY_AFTER], "2");
        let Some(Body::Text(text)) = &r.body else {
            panic!("no text body")
        };
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["error"], "wechat_unavailable");
        let r = refusal_response(&LoginRefusal::PhoneRequired);
        assert_eq!(r.status_code, 409);
        assert!(!r.headers.contains_key(header::RETRY_AFTER));
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    }
}
