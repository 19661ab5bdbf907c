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
    /// The secure mode's signature over the body.
    pub msg_signature: Option<String>,
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
            msg_signature: q.get("msg_signature").cloned(),
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
    /// The app asks for the secure (encrypted) mode and this push is plain, or the other way
    /// round.
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

/// `POST` (an event): signed, within the window at `now_s`, and in the app's mode; the event's
/// JSON (the body in plain mode, decrypted in the secure mode). The caller then claims the
/// nonce (a replay is refused there).
///
/// The secure mode (an app with `push_aes_key`, and only then): the body is
/// `{"ToUserName","Encrypt"}`, `msg_signature` is the SHA-1 of the sorted token, timestamp,
/// nonce and `Encrypt`, and `Encrypt` opens with the app's key ([`decrypt_push`]) to the event
/// followed by the app's appid. (`signature` is not needed there: `msg_signature` covers the
/// same three values and the body.)
pub fn open_push(
    app: Option<&WeChatApp>,
    q: &PushQuery,
    body: &[u8],
    now_s: i64,
) -> Result<Vec<u8>, PushRefusal> {
    let app = app.ok_or(PushRefusal::UnknownApp)?;
    let token = app.push_token.as_deref().ok_or(PushRefusal::UnknownApp)?;
    let secure = q.encrypt_type.as_deref() == Some("aes");
    let event = match (app.push_aes_key.as_deref(), secure) {
        (None, false) => {
            signed(Some(app), q)?;
            body.to_vec()
        }
        (Some(encoding_key), true) => {
            let envelope: serde_json::Value =
                serde_json::from_slice(body).map_err(|_| PushRefusal::BadSignature)?;
            let encrypt = envelope["Encrypt"]
                .as_str()
                .ok_or(PushRefusal::BadSignature)?;
            let expected = msg_signature(token, &q.timestamp, &q.nonce, encrypt);
            let given = q.msg_signature.as_deref().unwrap_or_default();
            if q.nonce.is_empty() || !given.eq_ignore_ascii_case(&expected) {
                return Err(PushRefusal::BadSignature);
            }
            let key = aes_key(encoding_key).ok_or(PushRefusal::ModeRefused)?;
            decrypt_push(&key, &app.appid, encrypt).ok_or(PushRefusal::BadSignature)?
        }
        // An app with an EncodingAESKey takes only the secure mode; one without it, only plain.
        _ => return Err(PushRefusal::ModeRefused),
    };
    let at: i64 = q.timestamp.parse().map_err(|_| PushRefusal::Stale)?;
    if (now_s - at).abs() > PUSH_WINDOW_SECS {
        return Err(PushRefusal::Stale);
    }
    Ok(event)
}

/// The secure mode's body signature: the SHA-1 (hex) of the token, timestamp, nonce and the
/// `Encrypt` field, sorted as strings and joined.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    use sha1::Digest;
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    hex::encode(sha1::Sha1::digest(parts.concat().as_bytes()))
}

/// The secure mode's AES key: `Base64_Decode(EncodingAESKey + "=")`, 32 bytes. (WeChat's
/// keys are 43 random letters and digits, so the last one may leave trailing bits set, which
/// WeChat's own libraries ignore.)
pub fn aes_key(encoding_aes_key: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let key = engine
        .decode(format!("{encoding_aes_key}="))
        .ok()?
        .try_into()
        .ok()?;
    Some(key)
}

/// WeChat's block for its PKCS#7 padding: the key's length, 32 (not AES's 16).
const PAD_BLOCK: usize = 32;

/// Opens a secure-mode `Encrypt` field: base64 of AES-256-CBC (IV: the key's first 16 bytes,
/// PKCS#7 padding to 32 bytes) of 16 random bytes, the event's length (4 bytes, network
/// order), the event, and the appid, which must be `appid`. `None` for anything else.
pub fn decrypt_push(key: &[u8; 32], appid: &str, encrypt: &str) -> Option<Vec<u8>> {
    use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
    use base64::Engine;
    let mut buf = base64::engine::general_purpose::STANDARD
        .decode(encrypt)
        .ok()?;
    let iv: [u8; 16] = key[..16].try_into().ok()?;
    let plain = cbc::Decryptor::<aes::Aes256>::new(key.into(), &iv.into())
        .decrypt_padded_mut::<NoPadding>(&mut buf)
        .ok()?;
    let pad = usize::from(*plain.last()?);
    if !(1..=PAD_BLOCK).contains(&pad) || pad > plain.len() {
        return None;
    }
    let plain = &plain[..plain.len() - pad];
    let len = u32::from_be_bytes(plain.get(16..20)?.try_into().ok()?) as usize;
    let event = plain.get(20..20usize.checked_add(len)?)?;
    match &plain[20 + len..] == appid.as_bytes() {
        true => Some(event.to_vec()),
        false => None,
    }
}

/// What WeChat sends in the secure mode: `event` of `appid` sealed with `key` (`random`: its 16
/// random bytes). For the fake WeChat API and tests; the chat only opens.
pub fn encrypt_push(key: &[u8; 32], appid: &str, random: [u8; 16], event: &[u8]) -> String {
    use aes::cipher::{block_padding::NoPadding, BlockEncryptMut, KeyIvInit};
    use base64::Engine;
    let mut buf = random.to_vec();
    buf.extend_from_slice(&(event.len() as u32).to_be_bytes());
    buf.extend_from_slice(event);
    buf.extend_from_slice(appid.as_bytes());
    let pad = PAD_BLOCK - buf.len() % PAD_BLOCK;
    buf.extend(std::iter::repeat_n(pad as u8, pad));
    let len = buf.len();
    let iv: [u8; 16] = key[..16].try_into().expect("a 32-byte key");
    let sealed = cbc::Encryptor::<aes::Aes256>::new(key.into(), &iv.into())
        .encrypt_padded_mut::<NoPadding>(&mut buf, len)
        .expect("the buffer is padded to whole blocks");
    base64::engine::general_purpose::STANDARD.encode(sealed)
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
            ..PushQuery::default()
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
    fn a_plain_push_must_be_fresh_signed_and_in_the_apps_mode() {
        let now = 1_700_000_000;
        let plain = app(false);
        let body = b"{}";
        assert_eq!(
            open_push(Some(&plain), &query(now - 10, "n"), body, now),
            Ok(body.to_vec())
        );
        assert_eq!(
            open_push(
                Some(&plain),
                &query(now - PUSH_WINDOW_SECS - 1, "n"),
                body,
                now
            ),
            Err(PushRefusal::Stale)
        );
        let mut tampered = query(now, "n");
        tampered.timestamp = (now + 1).to_string();
        assert_eq!(
            open_push(Some(&plain), &tampered, body, now),
            Err(PushRefusal::BadSignature)
        );
        // an app with an EncodingAESKey refuses plain pushes
        assert_eq!(
            open_push(Some(&app(true)), &query(now, "n"), body, now),
            Err(PushRefusal::ModeRefused)
        );
        assert_eq!(
            open_push(None, &query(now, "n"), body, now),
            Err(PushRefusal::UnknownApp)
        );
    }

    /// A sealed event made by another implementation of WeChat's scheme (Python's
    /// `cryptography`: AES-256-CBC, IV = key[..16], PKCS#7 to 32 bytes, random(16) + length +
    /// event + appid).
    const KEY43: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const SEALED: &str = "Q3stYC6hdFzMh9T8HCvyDIFjrLBfmKfDxTsOZOpoUkbaw+SzSV0lpPtKiM9n8vT3d6pO7wKLAZbkA9wksJ1eIafLX5NfFF+GDmZj1veBddZ+mZbESu1Zy+77u+dL44ta9a/BCp8Vg+GZP/MgkmJrbqm8rzRL4oYXm/q09KkGvuA=";
    const EVENT: &[u8] =
        br#"{"Event":"wxa_media_check","trace_id":"t-9","result":{"suggest":"pass","label":100}}"#;

    #[test]
    fn the_secure_mode_opens_what_wechats_scheme_seals() {
        let key = aes_key(KEY43).unwrap();
        assert_eq!(decrypt_push(&key, "wx1", SEALED), Some(EVENT.to_vec()));
        // the appid inside must be this app's
        assert_eq!(decrypt_push(&key, "wx2", SEALED), None);
        // sealing is the same scheme (random bytes as in the vector)
        assert_eq!(
            encrypt_push(&key, "wx1", *b"0123456789abcdef", EVENT),
            SEALED
        );
        // another key, a cut or garbled body: nothing
        let other = aes_key(&"b".repeat(43)).unwrap();
        assert_eq!(decrypt_push(&other, "wx1", SEALED), None);
        assert_eq!(decrypt_push(&key, "wx1", &SEALED[..40]), None);
        assert_eq!(decrypt_push(&key, "wx1", "not base64!"), None);
        assert_eq!(aes_key("short"), None);
    }

    #[test]
    fn a_secure_push_must_carry_its_body_signature() {
        let now = 1_700_000_000;
        let secure = WeChatApp {
            push_aes_key: Some(KEY43.into()),
            ..app(false)
        };
        let secure = WeChatApp {
            appid: "wx1".into(),
            ..secure
        };
        let key = aes_key(KEY43).unwrap();
        let sealed = encrypt_push(&key, "wx1", [7; 16], EVENT);
        let body = serde_json::json!({"ToUserName": "gh_1", "Encrypt": sealed}).to_string();
        let q = |ts: i64, sig: String| PushQuery {
            timestamp: ts.to_string(),
            nonce: "n5".into(),
            encrypt_type: Some("aes".into()),
            msg_signature: Some(sig),
            ..PushQuery::default()
        };
        let sig = |ts: i64, enc: &str| msg_signature("pushtoken123", &ts.to_string(), "n5", enc);
        assert_eq!(
            open_push(
                Some(&secure),
                &q(now, sig(now, &sealed)),
                body.as_bytes(),
                now
            ),
            Ok(EVENT.to_vec())
        );
        // a body signature over another body, or none
        let other = encrypt_push(&key, "wx1", [8; 16], b"{}");
        assert_eq!(
            open_push(
                Some(&secure),
                &q(now, sig(now, &other)),
                body.as_bytes(),
                now
            ),
            Err(PushRefusal::BadSignature)
        );
        let mut unsigned = q(now, String::new());
        unsigned.msg_signature = None;
        assert_eq!(
            open_push(Some(&secure), &unsigned, body.as_bytes(), now),
            Err(PushRefusal::BadSignature)
        );
        // stale, even when signed
        let old = now - PUSH_WINDOW_SECS - 5;
        assert_eq!(
            open_push(
                Some(&secure),
                &q(old, sig(old, &sealed)),
                body.as_bytes(),
                now
            ),
            Err(PushRefusal::Stale)
        );
        // the secure mode for an app without a key
        assert_eq!(
            open_push(
                Some(&app(false)),
                &q(now, sig(now, &sealed)),
                body.as_bytes(),
                now
            ),
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
