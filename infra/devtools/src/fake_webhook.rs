//! A fake of an operator's moderation webhook (`Moderation=webhook`) on 127.0.0.1, for the
//! tests and `make dev` runs that use that provider. It verifies each request's signature on its
//! own (HMAC-SHA256 of `<X-Chat-Timestamp>.<body>` with the key it was given, here, not with
//! the chat's code) and records every request with what it found, then answers by word lists:
//!
//! - a text containing a `deny` word → `{"action":"deny","label":<its label>}`;
//! - a `replace` word → `{"action":"replace","text":<its replacement>}`;
//! - [`SLOW_WORD`] → answers after 3 s (past the chat's 2 s deadline);
//! - anything else → `{"action":"allow"}`.
//!
//! A request whose signature does not verify gets 401, as a real endpoint should answer it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Default words: [`DENY_WORD`] is denied as `fraud`; [`REPLACE_WORD`] is replaced by `***`.
pub const DENY_WORD: &str = "deny-word";
pub const REPLACE_WORD: &str = "replace-word";
/// A text holding it is answered too late.
pub const SLOW_WORD: &str = "slow-word";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    /// The signature verified with the fake's key.
    pub signed: bool,
    /// `X-Chat-Timestamp` within 5 minutes of the fake's clock.
    pub fresh: bool,
    /// The `X-Chat-Signature` header as sent.
    pub signature: String,
}

#[derive(Default)]
struct Inner {
    key: Vec<u8>,
    deny: Vec<(String, String)>,
    replace: Vec<(String, String)>,
    received: Vec<Received>,
}

type Shared = Arc<Mutex<Inner>>;

/// The running fake; stops when dropped.
pub struct FakeWebhook {
    /// `http://127.0.0.1:<port>/moderate`
    pub url: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn verify(key: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn moderate(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (timestamp, signature) = (header("x-chat-timestamp"), header("x-chat-signature"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (now - t).abs() <= 300);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = parsed["text"].as_str().unwrap_or_default().to_owned();
    let answer = {
        let mut st = s.lock().unwrap();
        let signed = verify(&st.key, &timestamp, &body, &signature);
        st.received.push(Received {
            body: parsed,
            signed,
            fresh,
            signature,
        });
        if !signed || !fresh {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "bad signature"})),
            );
        }
        if let Some((_, label)) = st.deny.iter().find(|(w, _)| text.contains(w.as_str())) {
            json!({"action": "deny", "label": label})
        } else if let Some((_, with)) = st.replace.iter().find(|(w, _)| text.contains(w.as_str())) {
            json!({"action": "replace", "text": with})
        } else {
            json!({"action": "allow"})
        }
    };
    if text.contains(SLOW_WORD) {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    (StatusCode::OK, Json(answer))
}

impl FakeWebhook {
    /// Starts it on a free port of 127.0.0.1, verifying signatures with `key`.
    pub async fn start(key: &[u8]) -> std::io::Result<Self> {
        let state: Shared = Arc::default();
        {
            let mut st = state.lock().unwrap();
            st.key = key.to_vec();
            st.deny = vec![(DENY_WORD.to_owned(), "fraud".to_owned())];
            st.replace = vec![(REPLACE_WORD.to_owned(), "***".to_owned())];
        }
        let app = Router::new()
            .route("/moderate", post(moderate))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}/moderate", listener.local_addr()?);
        let task = local_stack::peer::serve(listener, app);
        Ok(FakeWebhook { url, state, task })
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}
