//! WeChat's server API over HTTPS ([`crate::ports::WeChat`]): `sns/jscode2session`,
//! `wxa/business/getuserphonenumber`, `cgi-bin/stable_token` and `wxa/msg_sec_check` at
//! `WECHAT_API_BASE`
//! (default `https://api.weixin.qq.com`; locally the fake WeChat API on loopback).
//!
//! The client is hyper's, with rustls on ring and the system's roots: the same TLS stack the
//! AWS SDK clients of the functions already link (`aws-smithy-http-client`, `rustls-ring`),
//! so WeChat adds no second TLS library to a bootstrap. Each call has one deadline; a
//! timeout, a refused connection and an HTTP 5xx are [`WeChatError::Unavailable`], and an
//! answer's `errmsg` is never kept (it may quote the request).

use crate::domain::moderation::{Suggest, Verdict};
use crate::domain::notice::Rendered;
use crate::domain::wechat::{AccessToken, WeChatApp, WeChatError, WeChatSession};
use crate::ports::WeChat;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// WeChat's API base of production.
pub const WECHAT_API_BASE: &str = "https://api.weixin.qq.com";

/// The HTTP client of WeChat's API, built once per instance.
#[derive(Clone)]
pub struct HttpWeChat {
    base: String,
    client: Client<Https, Full<Bytes>>,
    timeout: Duration,
}

impl HttpWeChat {
    /// A client of `base` (no trailing slash needed) whose calls give up after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpWeChat {
            base: base.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }

    /// One call: `GET path?query` without a body, `POST` with one. The parsed answer when
    /// WeChat said `errcode` 0 (or none), else why not.
    async fn call(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, WeChatError> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let uri = match query.as_str() {
            "" => format!("{}{path}", self.base),
            q => format!("{}{path}?{q}", self.base),
        };
        let builder = hyper::Request::builder().uri(uri);
        let request = match &body {
            None => builder.method("GET").body(Full::new(Bytes::new())),
            Some(b) => builder
                .method("POST")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(b.to_string()))),
        }
        .map_err(|e| WeChatError::Other(0, format!("request for {path}: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| WeChatError::Unavailable(format!("{path}: {e}")))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| WeChatError::Unavailable(format!("{path}: reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, WeChatError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                WeChatError::Unavailable(format!("{path}: no answer within {:?}", self.timeout))
            })??;
        if status.is_server_error() {
            return Err(WeChatError::Unavailable(format!("{path}: HTTP {status}")));
        }
        // WeChat answers JSON, sometimes labelled text/plain: the body decides.
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            WeChatError::Other(0, format!("{path}: HTTP {status}, not a JSON answer"))
        })?;
        match v.get("errcode").and_then(Value::as_i64).unwrap_or(0) {
            0 => Ok(v),
            code => Err(WeChatError::from_errcode(code)),
        }
    }
}

fn field<'a>(v: &'a Value, pointer: &str, call: &str) -> Result<&'a str, WeChatError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WeChatError::Other(0, format!("{call}: answer without {pointer}")))
}

impl WeChat for HttpWeChat {
    async fn code_to_session(
        &self,
        app: &WeChatApp,
        code: &str,
    ) -> Result<WeChatSession, WeChatError> {
        let query = [
            ("appid", app.appid.as_str()),
            ("secret", app.secret.as_str()),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ];
        let v = self.call("/sns/jscode2session", &query, None).await?;
        Ok(WeChatSession {
            openid: field(&v, "/openid", "jscode2session")?.to_owned(),
            unionid: v["unionid"].as_str().map(str::to_owned),
        })
    }

    async fn phone_number(&self, access_token: &str, code: &str) -> Result<String, WeChatError> {
        let v = self
            .call(
                "/wxa/business/getuserphonenumber",
                &[("access_token", access_token)],
                Some(serde_json::json!({ "code": code })),
            )
            .await?;
        Ok(field(&v, "/phone_info/purePhoneNumber", "getuserphonenumber")?.to_owned())
    }

    async fn stable_token(
        &self,
        app: &WeChatApp,
        force_refresh: bool,
    ) -> Result<AccessToken, WeChatError> {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": app.appid,
            "secret": app.secret,
            "force_refresh": force_refresh,
        });
        let v = self.call("/cgi-bin/stable_token", &[], Some(body)).await?;
        let token = field(&v, "/access_token", "stable_token")?.to_owned();
        let expires_in = v["expires_in"].as_i64().unwrap_or(0);
        Ok(AccessToken {
            token,
            expires_at: crate::clock::now_s() + expires_in,
        })
    }

    async fn msg_sec_check(
        &self,
        access_token: &str,
        openid: &str,
        scene: u8,
        content: &str,
    ) -> Result<Verdict, WeChatError> {
        let body = serde_json::json!({
            "version": 2,
            "openid": openid,
            "scene": scene,
            "content": content,
        });
        let v = self
            .call(
                "/wxa/msg_sec_check",
                &[("access_token", access_token)],
                Some(body),
            )
            .await?;
        let suggest = Suggest::parse(field(&v, "/result/suggest", "msg_sec_check")?)
            .ok_or_else(|| WeChatError::Other(0, "msg_sec_check: unknown suggest".into()))?;
        let label = v
            .pointer("/result/label")
            .and_then(Value::as_u64)
            .and_then(|l| u32::try_from(l).ok())
            .ok_or_else(|| WeChatError::Other(0, "msg_sec_check: answer without a label".into()))?;
        Ok(Verdict {
            suggest,
            label,
            trace_id: v["trace_id"].as_str().map(str::to_owned),
        })
    }

    async fn media_check_async(
        &self,
        access_token: &str,
        openid: &str,
        scene: u8,
        media_url: &str,
    ) -> Result<String, WeChatError> {
        let body = serde_json::json!({
            "media_url": media_url,
            "media_type": 2,
            "version": 2,
            "openid": openid,
            "scene": scene,
        });
        let v = self
            .call(
                "/wxa/media_check_async",
                &[("access_token", access_token)],
                Some(body),
            )
            .await?;
        Ok(field(&v, "/trace_id", "media_check_async")?.to_owned())
    }

    async fn subscribe_send(
        &self,
        access_token: &str,
        openid: &str,
        notice: &Rendered,
    ) -> Result<(), WeChatError> {
        let data: serde_json::Map<String, Value> = notice
            .data
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!({ "value": v })))
            .collect();
        let body = serde_json::json!({
            "touser": openid,
            "template_id": notice.template_id,
            "page": notice.page,
            "data": data,
            "miniprogram_state": notice.state.as_str(),
            "lang": "zh_CN",
        });
        self.call(
            "/cgi-bin/message/subscribe/send",
            &[("access_token", access_token)],
            Some(body),
        )
        .await?;
        Ok(())
    }
}
