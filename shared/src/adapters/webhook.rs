//! The operator's moderation webhook ([`TextModerator`] for `Moderation=webhook`): each text is
//! `POST`ed as JSON `{"app_sid","kind","sender"?,"peer"?,"text"}` to `ModerationWebhookUrl`,
//! signed, and the answer is `{"action":"allow"}`, `{"action":"deny","label":..}` or
//! `{"action":"replace","text":..}` ([`webhook_decision`]).
//!
//! The signature: header `X-Chat-Timestamp` (epoch seconds) and `X-Chat-Signature:
//! sha256=<hex>`, the HMAC-SHA256 with the `ModerationWebhookSecret` key of
//! `<timestamp>.<body>` (the timestamp inside, so a captured request cannot be replayed later;
//! the receiver should refuse one older than a few minutes). The answer is trusted because it
//! is the answer of the TLS connection to the operator's URL.
//!
//! One deadline per call ([`WEBHOOK_TIMEOUT`]); a timeout, a refused connection, a status
//! other than 2xx or an answer of another shape is "no answer" (`ModerationUnavailable`
//! decides). Same HTTP stack as the WeChat client (hyper, rustls on ring).

use crate::domain::moderation::{webhook_decision, Decision, Undecided};
use crate::ports::{Authored, TextModerator, Written};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// How long the webhook may take before its text counts as unchecked.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest answer read (a replacement is at most `MaxContentBytes` anyway).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// `sha256=<hex>`: the signature of `body` sent at `timestamp` under `key`.
pub fn signature(key: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The webhook client, built once per instance.
pub struct WebhookModerator {
    url: hyper::Uri,
    key: Vec<u8>,
    client: Client<Https, Full<Bytes>>,
    timeout: Duration,
    /// The longest replacement taken (`MaxContentBytes`).
    max_text_bytes: usize,
}

impl WebhookModerator {
    pub fn new(
        url: &str,
        key: Vec<u8>,
        timeout: Duration,
        max_text_bytes: usize,
    ) -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .build();
        let url = url
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(WebhookModerator {
            url,
            key,
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
            max_text_bytes,
        })
    }

    async fn decide(&self, text: Authored<'_>) -> Result<Decision, Undecided> {
        let mut body = serde_json::json!({"app_sid": text.app_sid, "text": text.text});
        match text.written {
            Written::Message { peer } => {
                body["kind"] = "message".into();
                body["sender"] = text.sender.into();
                body["peer"] = peer.into();
            }
            // (checked before the account is known: no sender)
            Written::DisplayName => body["kind"] = "display_name".into(),
        }
        let body = body.to_string();
        let timestamp = crate::clock::now_s();
        let request = hyper::Request::post(self.url.clone())
            .header("content-type", "application/json")
            .header("x-chat-timestamp", timestamp.to_string())
            .header("x-chat-signature", signature(&self.key, timestamp, &body))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unanswered(&format!("the request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{e}"))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unanswered(&format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unanswered(&e))?;
        if !status.is_success() {
            return Err(unanswered(&format!("HTTP {status}")));
        }
        serde_json::from_slice(&bytes)
            .ok()
            .and_then(|v| webhook_decision(&v, self.max_text_bytes))
            .ok_or_else(|| unanswered("an answer that is not allow, deny or replace"))
    }
}

/// "No answer", logged with why (never the text, the answer or the key).
fn unanswered(why: &str) -> Undecided {
    tracing::warn!(why, "the moderation webhook did not answer");
    Undecided::Unavailable
}

impl TextModerator for WebhookModerator {
    fn check<'a>(
        &'a self,
        text: Authored<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Decision, Undecided>> {
        Box::pin(self.decide(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let s = signature(b"key", 1_700_000_000, r#"{"text":"hi"}"#);
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64, "{s}");
        assert_ne!(s, signature(b"key", 1_700_000_001, r#"{"text":"hi"}"#));
        assert_ne!(s, signature(b"key", 1_700_000_000, r#"{"text":"hI"}"#));
        assert_ne!(s, signature(b"other", 1_700_000_000, r#"{"text":"hi"}"#));
    }
}
