//! Media messages (images and videos) without a byte passing through a Lambda: the limits a
//! ticket and a send enforce, the owner segment of a key, and what a ticket and a stored
//! object look like. Plain Rust; the key rule itself is the `chat-media-key` crate (shared
//! with the thumbnail function), the S3 adapter and its POST-policy signing live in
//! [`crate::adapters::s3`].
//!
//! `owner` (in a key) is 32 hex characters of an HMAC of the app and the account, so a key
//! names its uploader without showing a phone number, and a send can tell "issued to this
//! sender in this app" without any storage.

use crate::domain::ids::new_message_id;
use hmac::{Hmac, Mac};
pub use media_key::{
    content_type_of, sent_thumbnail_key, thumbnail_key, MediaKey, MediaKind, Place, MAX_DIMENSION,
    MAX_KEY_LEN,
};

/// The bucket's objects a sent message owns: its `m/` copy, a video's poster, and their
/// thumbnails (which may not exist yet). None for text or an off-site URL.
pub fn sent_objects(m: &crate::domain::message::Message) -> Vec<String> {
    let Some(info) = &m.media else {
        return Vec::new();
    };
    let sent = |key: &str| {
        matches!(MediaKey::parse_at(key), Some((Place::Message, _))).then(|| key.to_owned())
    };
    let mut keys = Vec::new();
    for key in std::iter::once(m.content.as_str()).chain(info.poster.as_deref()) {
        if let Some(key) = sent(key) {
            keys.extend(sent_thumbnail_key(&key));
            keys.push(key);
        }
    }
    keys
}
use sha2::Sha256;
use std::fmt;

/// Which content types and sizes each kind accepts (template parameters; the defaults are
/// those of `config::vars`).
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

/// A fresh key for an upload of `content_type` by `owner`, named by a ULID of `now_ms`.
pub fn new_key(
    kind: MediaKind,
    owner: String,
    content_type: &str,
    dims: Option<(u32, u32)>,
    now_ms: i64,
) -> MediaKey {
    MediaKey::new(kind, owner, &new_message_id(now_ms), content_type, dims)
}

/// What S3 reports about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub content_type: String,
    pub size: u64,
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
        new_key(kind, owner, ct, dims, 1_700_000_000_000)
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

    #[test]
    fn a_sent_message_owns_its_copy_its_poster_and_their_thumbnails_and_nothing_else() {
        use crate::domain::message::{ChatType, MediaInfo, Message};
        let owner = "0123456789abcdef0123456789abcdef".to_owned();
        let video = new_key(MediaKind::Video, owner.clone(), "video/mp4", None, 1).message_key();
        let poster = new_key(MediaKind::Image, owner, "image/jpeg", None, 2).message_key();
        let info = MediaInfo {
            content_type: "video/mp4".into(),
            size: 1,
            width: None,
            height: None,
            poster: Some(poster.clone()),
        };
        let message = |content: &str, media: Option<MediaInfo>| Message {
            id: "01J00000000000000000000000".into(),
            app_sid: "app".into(),
            sender: "111".into(),
            receiver: "222".into(),
            chat_type: ChatType::Video,
            content: content.into(),
            created_at_ms: 1,
            client_msg_id: None,
            media,
            seq: None,
            conv_seq: None,
            recalled: false,
            screening: Default::default(),
        };
        // a video: its copy (no thumbnail of its own), the poster and the poster's thumbnail
        let keys = sent_objects(&message(&video, Some(info.clone())));
        assert_eq!(
            keys,
            [video.clone(), thumbnail_key(&poster).unwrap(), poster]
        );
        // an off-site URL, an upload-area key, and text own nothing
        let no_poster = MediaInfo {
            poster: None,
            ..info
        };
        let url = message("https://x/y.mp4", Some(no_poster.clone()));
        assert!(sent_objects(&url).is_empty());
        let upload = video.replacen("m/", "u/", 1);
        assert!(sent_objects(&message(&upload, Some(no_poster))).is_empty());
        assert!(sent_objects(&message("hello", None)).is_empty());
    }
}
