//! WeChat's message push (issue 21) as values: the URL check, the signature of a push, what
//! makes one acceptable (fresh, signed, in the mode the app asks for), and the one event the
//! chat reads. Facts: WeChat's "消息推送" (message push) page; docs/wechat.md.

use crate::domain::wechat::WeChatApp;
use std::collections::HashMap;

/// A push older (or newer) than this, by its `timestamp`, is refused; its nonce is remembered
/// as long, so a captured push cannot be replayed.
pub const PUSH_WINDOW_SECS: i64 = 300;

/// WeChat's push signature: the SHA-1 (hex) of the token, timestamp and nonce, sorted as
/// strings and joined.
pub fn push_signature(token: &str, timestamp: &str, nonce: &str) -> String {
    use sha1::Digest;
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    hex::encode(sha1::Sha1::digest(parts.concat().as_bytes()))
}

/// The query parameters of a push (or of the URL check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushQuery {
    pub signature: String,
    pub timestamp: String,
    pub nonce: String,
    /// The URL check's challenge, answered as it is.
    pub echostr: Option<String>,
    /// `aes` in the secure mode.
    pub encrypt_type: Option<String>,
}

impl PushQuery {
    pub fn from_map(q: &HashMap<String, String>) -> Self {
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        PushQuery {
            signature: get("signature"),
            timestamp: get("timestamp"),
            nonce: get("nonce"),
            echostr: q.get("echostr").cloned(),
            encrypt_type: q.get("encrypt_type").cloned(),
        }
    }
}

/// Why a push is refused (401; nothing changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushRefusal {
    /// No such app, or it has no `push_token`.
    UnknownApp,
    /// The signature does not match.
    BadSignature,
    /// The timestamp is outside [`PUSH_WINDOW_SECS`] of now.
    Stale,
    /// The app asks for the secure (encrypted) mode, and this push is plain, or secure pushes
    /// are not read yet.
    ModeRefused,
    /// This nonce was seen in the window: a replay.
    Replayed,
}

impl PushRefusal {
    /// For the log line (never the signature or the token).
    pub fn reason(self) -> &'static str {
        match self {
            PushRefusal::UnknownApp => "no push_token for this app",
            PushRefusal::BadSignature => "bad signature",
            PushRefusal::Stale => "stale timestamp",
            PushRefusal::ModeRefused => "mode refused",
            PushRefusal::Replayed => "replayed nonce",
        }
    }
}

/// The signature check shared by the URL check and the pushes; the app's push token.
fn signed<'a>(app: Option<&'a WeChatApp>, q: &PushQuery) -> Result<&'a str, PushRefusal> {
    let token = app
        .and_then(|a| a.push_token.as_deref())
        .ok_or(PushRefusal::UnknownApp)?;
    let expected = push_signature(token, &q.timestamp, &q.nonce);
    // (the comparison of two public hex digests of a public challenge: no secret leaks by time)
    match q.signature.eq_ignore_ascii_case(&expected) && !q.nonce.is_empty() {
        true => Ok(token),
        false => Err(PushRefusal::BadSignature),
    }
}

/// `GET` (the URL check when the push URL is saved in the admin console): the `echostr` to
/// answer, when signed.
pub fn verify_url(app: Option<&WeChatApp>, q: &PushQuery) -> Result<String, PushRefusal> {
    signed(app, q)?;
    q.echostr.clone().ok_or(PushRefusal::BadSignature)
}

/// `POST` (an event): signed, within the window at `now_s`, and in the app's mode. The
/// caller then claims the nonce (a replay is refused there).
pub fn verify_push(app: Option<&WeChatApp>, q: &PushQuery, now_s: i64) -> Result<(), PushRefusal> {
    signed(app, q)?;
    let at: i64 = q.timestamp.parse().map_err(|_| PushRefusal::Stale)?;
    if (now_s - at).abs() > PUSH_WINDOW_SECS {
        return Err(PushRefusal::Stale);
    }
    let secure = q.encrypt_type.as_deref() == Some("aes");
    match (app.and_then(|a| a.push_aes_key.as_ref()), secure) {
        (None, false) => Ok(()),
        // An app with an EncodingAESKey takes only the secure mode; reading it (AES-CBC,
        // `msg_signature`) comes with the media checks (issue 21, still open).
        _ => Err(PushRefusal::ModeRefused),
    }
}

/// The push events the chat reads (JSON data format): `wxa_media_check`'s verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    MediaCheck {
        trace_id: String,
        suggest: String,
        label: u32,
    },
    /// Anything else WeChat pushes (answered, and ignored).
    Other,
}

/// A push body (JSON). Unreadable JSON is `None` (answered 400: WeChat sent something else).
pub fn parse_event(body: &[u8]) -> Option<PushEvent> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if !v.is_object() {
        return None;
    }
    if v["Event"] != "wxa_media_check" {
        return Some(PushEvent::Other);
    }
    Some(PushEvent::MediaCheck {
        trace_id: v["trace_id"].as_str()?.to_owned(),
        suggest: v.pointer("/result/suggest")?.as_str()?.to_owned(),
        label: u32::try_from(v.pointer("/result/label")?.as_u64()?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(aes: bool) -> WeChatApp {
        WeChatApp {
            appid: "wx1".into(),
            secret: "s".into(),
            push_token: Some("pushtoken123".into()),
            push_aes_key: aes.then(|| "a".repeat(43)),
        }
    }

    fn query(ts: i64, nonce: &str) -> PushQuery {
        let timestamp = ts.to_string();
        PushQuery {
            signature: push_signature("pushtoken123", &timestamp, nonce),
            timestamp,
            nonce: nonce.into(),
            echostr: Some("challenge-42".into()),
            encrypt_type: None,
        }
    }

    #[test]
    fn the_signature_is_sha1_of_the_sorted_parts() {
        // sha1("1700000000" + "nonce1" + "tok"), the parts in byte order (Python hashlib)
        assert_eq!(
            push_signature("tok", "1700000000", "nonce1"),
            "cb1280606383b6651d19b1fe525f375d316683d5"
        );
        assert_eq!(
            push_signature("nonce1", "tok", "1700000000"),
            push_signature("tok", "1700000000", "nonce1")
        );
    }

    #[test]
    fn the_url_check_answers_the_challenge_only_when_signed() {
        let q = query(1_700_000_000, "n1");
        assert_eq!(verify_url(Some(&app(false)), &q), Ok("challenge-42".into()));
        let forged = PushQuery {
            signature: "0".repeat(40),
            ..q.clone()
        };
        assert_eq!(
            verify_url(Some(&app(false)), &forged),
            Err(PushRefusal::BadSignature)
        );
        assert_eq!(verify_url(None, &q), Err(PushRefusal::UnknownApp));
        let no_token = WeChatApp {
            push_token: None,
            ..app(false)
        };
        assert_eq!(
            verify_url(Some(&no_token), &q),
            Err(PushRefusal::UnknownApp)
        );
    }

    #[test]
    fn a_push_must_be_fresh_signed_and_in_the_apps_mode() {
        let now = 1_700_000_000;
        let plain = app(false);
        assert_eq!(
            verify_push(Some(&plain), &query(now - 10, "n"), now),
            Ok(())
        );
        assert_eq!(
            verify_push(Some(&plain), &query(now - PUSH_WINDOW_SECS - 1, "n"), now),
            Err(PushRefusal::Stale)
        );
        let mut tampered = query(now, "n");
        tampered.timestamp = (now + 1).to_string();
        assert_eq!(
            verify_push(Some(&plain), &tampered, now),
            Err(PushRefusal::BadSignature)
        );
        // an app with an EncodingAESKey refuses plain pushes
        assert_eq!(
            verify_push(Some(&app(true)), &query(now, "n"), now),
            Err(PushRefusal::ModeRefused)
        );
    }

    #[test]
    fn media_check_events_are_read_and_others_ignored() {
        let body = br#"{"ToUserName":"gh_1","FromUserName":"o","CreateTime":1,"MsgType":"event","Event":"wxa_media_check","appid":"wx1","trace_id":"t-1","version":2,"result":{"suggest":"risky","label":20002},"detail":[]}"#;
        assert_eq!(
            parse_event(body),
            Some(PushEvent::MediaCheck {
                trace_id: "t-1".into(),
                suggest: "risky".into(),
                label: 20002
            })
        );
        assert_eq!(
            parse_event(br#"{"MsgType":"event","Event":"other"}"#),
            Some(PushEvent::Other)
        );
        assert_eq!(parse_event(b"<xml></xml>"), None);
    }
}
