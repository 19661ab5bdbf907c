//! Media messages (images and videos) without a byte passing through a Lambda: object keys,
//! the limits a ticket and a send enforce, and the presigned POST policy. Plain Rust; the S3
//! adapter lives in [`crate::s3`].
//!
//! Key layout in the media bucket (see docs/protocol.md):
//! - `u/<kind>/<owner>/<name>.<ext>`: where a ticket lets a client upload. Expired after a day
//!   by the bucket's lifecycle rule unless a send copies it.
//! - `m/<kind>/<owner>/<name>.<ext>`: the copy an accepted send makes; what rows point at.
//! - `t/<owner>/<name>.jpg`: the thumbnail of an image, derived from either key above.
//!
//! `kind` is `i` (image) or `v` (video). `owner` is 32 hex characters of an HMAC of the app and
//! the account, so a key names its uploader without showing a phone number, and a send can tell
//! "issued to this sender in this app" without any storage. `name` is a ULID (80 random bits),
//! optionally followed by `_<width>x<height>` as the ticket request gave them.

use crate::model::{new_message_id, ChatType};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// Largest width or height a ticket may declare.
pub const MAX_DIMENSION: u32 = 100_000;
/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_MAX_SIDE: u32 = 320;
/// Longest key this server hands out or accepts.
pub const MAX_KEY_LEN: usize = 128;

/// What kind of media a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
}

impl MediaKind {
    /// The kind a message type carries, if it carries media.
    pub fn for_chat_type(t: ChatType) -> Option<Self> {
        match t {
            ChatType::Text => None,
            ChatType::Image => Some(MediaKind::Image),
            ChatType::Video => Some(MediaKind::Video),
        }
    }
    fn letter(self) -> &'static str {
        match self {
            MediaKind::Image => "i",
            MediaKind::Video => "v",
        }
    }
    pub fn noun(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
        }
    }
}

/// The file extension a key gets for a content type (keys then open correctly when saved).
fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "video/webm" => "webm",
        _ => "bin",
    }
}

/// Which content types and sizes each kind accepts (template parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLimits {
    pub image_types: Vec<String>,
    pub max_image_bytes: u64,
    pub video_types: Vec<String>,
    pub max_video_bytes: u64,
    /// How long an upload ticket is valid.
    pub ticket_secs: u64,
    /// How long a download URL in a frame is valid.
    pub download_secs: u64,
}

impl Default for MediaLimits {
    fn default() -> Self {
        MediaLimits {
            image_types: ["image/jpeg", "image/png", "image/gif", "image/webp"]
                .map(String::from)
                .to_vec(),
            max_image_bytes: 10 * 1024 * 1024,
            video_types: ["video/mp4", "video/quicktime"].map(String::from).to_vec(),
            max_video_bytes: 25 * 1024 * 1024,
            ticket_secs: 300,
            download_secs: 3600,
        }
    }
}

impl MediaLimits {
    pub fn types(&self, kind: MediaKind) -> &[String] {
        match kind {
            MediaKind::Image => &self.image_types,
            MediaKind::Video => &self.video_types,
        }
    }
    pub fn max_bytes(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Image => self.max_image_bytes,
            MediaKind::Video => self.max_video_bytes,
        }
    }
    /// Whether an object of `content_type` and `size` may be sent as `kind`.
    pub fn fits(&self, kind: MediaKind, content_type: &str, size: u64) -> bool {
        self.types(kind).iter().any(|t| t == content_type)
            && size >= 1
            && size <= self.max_bytes(kind)
    }
}

/// Derives owner segments. Built once per cold start from the signing secret.
#[derive(Clone)]
pub struct OwnerKey([u8; 32]);

impl fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerKey(<redacted>)")
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any size");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl OwnerKey {
    /// A key of its own, derived from the service's signing secret (never the secret itself).
    pub fn from_secret(secret: &[u8]) -> Self {
        OwnerKey(hmac(secret, b"chat-media-owner-v1"))
    }
    /// The owner segment of (app, account): 32 hex characters.
    pub fn owner(&self, app_sid: &str, user: &str) -> String {
        let mac = hmac(&self.0, format!("{app_sid}\n{user}").as_bytes());
        hex::encode(&mac[..16])
    }
}

/// A parsed media key (any of its three places share owner and name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaKey {
    pub kind: MediaKind,
    pub owner: String,
    /// ULID, plus `_<w>x<h>` when the ticket gave dimensions.
    name: String,
    ext: String,
}

impl MediaKey {
    /// A fresh key for an upload of `content_type` by `owner`.
    pub fn new(
        kind: MediaKind,
        owner: String,
        content_type: &str,
        dims: Option<(u32, u32)>,
        now_ms: i64,
    ) -> Self {
        let id = new_message_id(now_ms);
        let name = match dims {
            Some((w, h)) => format!("{id}_{w}x{h}"),
            None => id,
        };
        MediaKey {
            kind,
            owner,
            name,
            ext: extension(content_type).to_owned(),
        }
    }

    /// Parses an upload key (`u/…`) or a message key (`m/…`). `None` for anything else.
    pub fn parse(key: &str) -> Option<Self> {
        if key.len() > MAX_KEY_LEN {
            return None;
        }
        let mut parts = key.split('/');
        let (place, kind, owner, file) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !matches!(place, "u" | "m") {
            return None;
        }
        let kind = match kind {
            "i" => MediaKind::Image,
            "v" => MediaKind::Video,
            _ => return None,
        };
        if owner.len() != 32
            || !owner
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let (name, ext) = file.split_once('.')?;
        let (id, dims) = match name.split_once('_') {
            Some((id, dims)) => (id, Some(dims)),
            None => (name, None),
        };
        crate::model::Cursor::parse(id)?;
        if let Some(d) = dims {
            parse_dims(d)?;
        }
        let ext_ok = !ext.is_empty()
            && ext.len() <= 8
            && ext
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        ext_ok.then(|| MediaKey {
            kind,
            owner: owner.to_owned(),
            name: name.to_owned(),
            ext: ext.to_owned(),
        })
    }

    /// Width and height, as the ticket request declared them.
    pub fn dims(&self) -> Option<(u32, u32)> {
        self.name.split_once('_').and_then(|(_, d)| parse_dims(d))
    }

    /// Whether `content_type` is what this key's extension says.
    pub fn matches_type(&self, content_type: &str) -> bool {
        extension(content_type) == self.ext
    }

    fn at(&self, place: &str) -> String {
        format!(
            "{place}/{}/{}/{}.{}",
            self.kind.letter(),
            self.owner,
            self.name,
            self.ext
        )
    }
    /// Where the client uploads it.
    pub fn upload_key(&self) -> String {
        self.at("u")
    }
    /// Where an accepted send keeps it.
    pub fn message_key(&self) -> String {
        self.at("m")
    }
    /// Where the thumbnail function writes its thumbnail (images only, but derivable for all).
    pub fn thumbnail_key(&self) -> String {
        format!("t/{}/{}.jpg", self.owner, self.name)
    }
}

fn parse_dims(d: &str) -> Option<(u32, u32)> {
    let (w, h) = d.split_once('x')?;
    let num = |s: &str| -> Option<u32> {
        if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|n| (1..=MAX_DIMENSION).contains(n))
    };
    Some((num(w)?, num(h)?))
}

/// The thumbnail key of an uploaded or sent image, or `None` when `key` is not one.
pub fn thumbnail_key(key: &str) -> Option<String> {
    MediaKey::parse(key)
        .filter(|k| k.kind == MediaKind::Image)
        .map(|k| k.thumbnail_key())
}

/// What S3 reports about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub content_type: String,
    pub size: u64,
}

/// Media details stored with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    pub content_type: String,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The message key of a video's poster image.
    pub poster: Option<String>,
}

/// A presigned upload: a PUT and a POST form for the same key, type and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTicket {
    pub put_url: String,
    /// Headers the PUT must carry exactly (they are signed).
    pub put_headers: Vec<(String, String)>,
    pub post_url: String,
    /// Form fields to send before the file field `file`.
    pub post_fields: Vec<(String, String)>,
}

/// Temporary or long-term credentials, as a POST policy signature needs them.
#[derive(Clone)]
pub struct SigningCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for SigningCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningCredentials({}, <redacted>)", self.access_key_id)
    }
}

/// What a POST policy is for.
#[derive(Debug, Clone)]
pub struct PostPolicyRequest<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub content_type: &'a str,
    pub max_bytes: u64,
    pub region: &'a str,
    pub now: std::time::SystemTime,
    pub expires_in: std::time::Duration,
}

/// Builds a SigV4-signed POST policy (S3's browser-based upload) pinning the exact key,
/// Content-Type and a `content-length-range` of 1 to `max_bytes`. Returns the form fields, in
/// the order S3 wants them before the file. The Rust SDK has no presigned POST
/// (aws-sdk-rust #863); the signing key and signature come from `aws-sigv4`'s primitives.
pub fn post_policy_fields(
    req: &PostPolicyRequest<'_>,
    creds: &SigningCredentials,
) -> Vec<(String, String)> {
    use base64::Engine as _;
    let now = time::OffsetDateTime::from(req.now);
    let amz_date = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let credential = format!(
        "{}/{}/{}/s3/aws4_request",
        creds.access_key_id,
        &amz_date[..8],
        req.region
    );
    let expiration = now + req.expires_in;
    let expiration = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        expiration.year(),
        expiration.month() as u8,
        expiration.day(),
        expiration.hour(),
        expiration.minute(),
        expiration.second()
    );
    let mut conditions = vec![
        serde_json::json!({"bucket": req.bucket}),
        serde_json::json!({"key": req.key}),
        serde_json::json!({"Content-Type": req.content_type}),
        serde_json::json!(["content-length-range", 1, req.max_bytes]),
        serde_json::json!({"x-amz-algorithm": "AWS4-HMAC-SHA256"}),
        serde_json::json!({"x-amz-credential": credential}),
        serde_json::json!({"x-amz-date": amz_date}),
    ];
    if let Some(token) = &creds.session_token {
        conditions.push(serde_json::json!({"x-amz-security-token": token}));
    }
    let policy = serde_json::json!({"expiration": expiration, "conditions": conditions});
    let policy_b64 = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
    let signature = sign_policy(&policy_b64, &creds.secret_access_key, req.now, req.region);
    let mut fields = vec![
        ("key".to_owned(), req.key.to_owned()),
        ("Content-Type".to_owned(), req.content_type.to_owned()),
        ("x-amz-algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
        ("x-amz-credential".to_owned(), credential),
        ("x-amz-date".to_owned(), amz_date),
    ];
    if let Some(token) = &creds.session_token {
        fields.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    fields.push(("policy".to_owned(), policy_b64));
    fields.push(("x-amz-signature".to_owned(), signature));
    fields
}

/// The SigV4 signature of a base64 POST policy: HMAC-SHA256 with the date/region/s3 signing key.
pub fn sign_policy(
    policy_b64: &str,
    secret_access_key: &str,
    date: std::time::SystemTime,
    region: &str,
) -> String {
    let key = aws_sigv4::sign::v4::generate_signing_key(secret_access_key, date, region, "s3");
    aws_sigv4::sign::v4::calculate_signature(key, policy_b64.as_bytes())
}

/// An `upload` frame's request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRequest {
    pub req_id: String,
    pub kind: MediaKind,
    pub content_type: String,
    pub size: u64,
    pub dims: Option<(u32, u32)>,
}

/// Why a ticket is refused (before anything is signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketRefusal {
    BadContentType(String),
    TooLarge(u64),
}

impl TicketRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            TicketRefusal::BadContentType(_) => "bad_content_type",
            TicketRefusal::TooLarge(_) => "media_too_large",
        }
    }
    pub fn message(&self, kind: MediaKind) -> String {
        match self {
            TicketRefusal::BadContentType(allowed) => {
                format!("{} uploads must be one of: {allowed}", kind.noun())
            }
            TicketRefusal::TooLarge(max) => {
                format!("{}s are limited to {max} bytes", kind.noun())
            }
        }
    }
}

/// Checks a ticket request against the limits.
pub fn check_ticket(req: &TicketRequest, limits: &MediaLimits) -> Result<(), TicketRefusal> {
    let types = limits.types(req.kind);
    if !types.contains(&req.content_type) {
        return Err(TicketRefusal::BadContentType(types.join(", ")));
    }
    let max = limits.max_bytes(req.kind);
    if req.size > max {
        return Err(TicketRefusal::TooLarge(max));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: MediaKind, ct: &str, dims: Option<(u32, u32)>) -> MediaKey {
        let owner = OwnerKey::from_secret(b"s").owner("app", "13800000001");
        MediaKey::new(kind, owner, ct, dims, 1_700_000_000_000)
    }

    #[test]
    fn keys_round_trip_between_their_three_places() {
        // GIVEN a fresh image key with dimensions
        let k = key(MediaKind::Image, "image/png", Some((640, 480)));
        let up = k.upload_key();
        // THEN upload and message keys parse back to the same key, thumbnails derive from both
        assert!(
            up.starts_with("u/i/") && up.ends_with("_640x480.png"),
            "{up}"
        );
        assert_eq!(MediaKey::parse(&up), Some(k.clone()));
        assert_eq!(MediaKey::parse(&k.message_key()), Some(k.clone()));
        assert_eq!(k.dims(), Some((640, 480)));
        assert_eq!(thumbnail_key(&up), thumbnail_key(&k.message_key()));
        assert!(thumbnail_key(&up).unwrap().starts_with("t/"));
        assert!(thumbnail_key(&up).unwrap().ends_with("_640x480.jpg"));
        // AND a video has no thumbnail of its own
        let v = key(MediaKind::Video, "video/mp4", None);
        assert_eq!(thumbnail_key(&v.upload_key()), None);
        assert!(v.upload_key().ends_with(".mp4") && v.dims().is_none());
    }

    #[test]
    fn keys_carry_no_phone_number_and_owners_differ_by_app_and_account() {
        let ok = OwnerKey::from_secret(b"secret");
        let a = ok.owner("app1", "13800000001");
        assert_eq!(a.len(), 32);
        assert!(!a.contains("13800000001"));
        assert_ne!(a, ok.owner("app2", "13800000001"));
        assert_ne!(a, ok.owner("app1", "13800000002"));
        assert_ne!(
            a,
            OwnerKey::from_secret(b"other").owner("app1", "13800000001")
        );
        assert!(!key(MediaKind::Image, "image/jpeg", None)
            .upload_key()
            .contains("13800000001"));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = key(MediaKind::Image, "image/jpeg", Some((1, 2))).upload_key();
        assert!(MediaKey::parse(&good).is_some());
        let bad = [
            "".to_string(),
            "https://x/y.jpg".into(),
            good.replacen("u/", "t/", 1),
            good.replacen("u/i/", "u/x/", 1),
            good.replacen("u/", "u//", 1),
            format!("{good}/x"),
            good.replace(".jpg", ""),
            good.replace(".jpg", ".JPG"),
            good.replace("_1x2", "_0x2"),
            good.replace("_1x2", "_1x"),
            good.replace("_1x2", "_1x200001"),
            "u/i/../../etc/passwd".into(),
            format!(
                "u/i/{}/{}.jpg",
                "A".repeat(32),
                crate::model::new_message_id(1)
            ),
        ];
        for b in &bad {
            assert_eq!(MediaKey::parse(b), None, "{b:?} must be refused");
        }
    }

    #[test]
    fn tickets_are_checked_against_type_and_size() {
        let limits = MediaLimits::default();
        let req = |kind, ct: &str, size| TicketRequest {
            req_id: "r".into(),
            kind,
            content_type: ct.into(),
            size,
            dims: None,
        };
        assert_eq!(
            check_ticket(&req(MediaKind::Image, "image/jpeg", 10 << 20), &limits),
            Ok(())
        );
        assert_eq!(
            check_ticket(
                &req(MediaKind::Image, "image/jpeg", (10 << 20) + 1),
                &limits
            ),
            Err(TicketRefusal::TooLarge(10 << 20))
        );
        assert_eq!(
            check_ticket(&req(MediaKind::Video, "video/mp4", (25 << 20) + 1), &limits),
            Err(TicketRefusal::TooLarge(25 << 20))
        );
        let e = check_ticket(&req(MediaKind::Image, "text/html", 10), &limits).unwrap_err();
        assert_eq!(e.code(), "bad_content_type");
        // a video type is not an image type
        assert!(check_ticket(&req(MediaKind::Image, "video/mp4", 10), &limits).is_err());
        assert!(TicketRefusal::TooLarge(5)
            .message(MediaKind::Video)
            .contains('5'));
    }

    /// AWS's published example: "Example: Browser-Based Upload using HTTP POST (Using AWS
    /// Signature Version 4)" in the Amazon S3 API Reference. The policy text there, base64
    /// encoded, signed with the example credentials on 2015-12-29 in us-east-1.
    #[test]
    fn the_policy_signer_reproduces_aws_published_post_example() {
        const POLICY_B64: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
        let date = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_451_347_200); // 2015-12-29
        assert_eq!(
            sign_policy(
                POLICY_B64,
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                date,
                "us-east-1"
            ),
            "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
        );
    }

    #[test]
    fn post_fields_pin_key_type_size_and_carry_the_session_token() {
        use base64::Engine as _;
        // GIVEN session credentials (as every Lambda has)
        let creds = SigningCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: Some("TOKEN/with+chars=".into()),
        };
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let fields = post_policy_fields(
            &PostPolicyRequest {
                bucket: "b",
                key: "u/i/k.jpg",
                content_type: "image/jpeg",
                max_bytes: 1234,
                region: "us-east-1",
                now,
                expires_in: std::time::Duration::from_secs(300),
            },
            &creds,
        );
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        // THEN the policy names exactly that key, type, size range and token, and expires in 300 s
        let policy: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(get("policy").unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(policy["expiration"], "2023-11-14T22:18:20.000Z");
        let conds = policy["conditions"].as_array().unwrap();
        assert!(conds.contains(&serde_json::json!({"key": "u/i/k.jpg"})));
        assert!(conds.contains(&serde_json::json!({"Content-Type": "image/jpeg"})));
        assert!(conds.contains(&serde_json::json!(["content-length-range", 1, 1234])));
        assert!(conds.contains(&serde_json::json!({"x-amz-security-token": "TOKEN/with+chars="})));
        assert_eq!(
            get("x-amz-security-token").as_deref(),
            Some("TOKEN/with+chars=")
        );
        assert_eq!(
            get("x-amz-credential").as_deref(),
            Some("ASIAEXAMPLE/20231114/us-east-1/s3/aws4_request")
        );
        assert_eq!(get("x-amz-date").as_deref(), Some("20231114T221320Z"));
        // AND the signature is that of the policy it carries
        assert_eq!(
            get("x-amz-signature").unwrap(),
            sign_policy(&get("policy").unwrap(), "secret", now, "us-east-1")
        );
        assert_eq!(fields.last().unwrap().0, "x-amz-signature");
    }
}
