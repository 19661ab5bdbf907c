//! The media bucket's key rule, in one place for the chat (`chat-shared`, which hands keys out
//! and checks them on a send) and the thumbnail function (which derives where a thumbnail
//! goes). No dependencies, so the thumbnail function links nothing of the chat.
//!
//! Key layout (see docs/protocol.md):
//! - `u/<kind>/<owner>/<name>.<ext>`: where a ticket lets a client upload.
//! - `m/<kind>/<owner>/<name>.<ext>`: the copy an accepted send makes; what rows point at.
//! - `t/<owner>/<name>.jpg`: the thumbnail of an image.
//!
//! `kind` is `i` (image) or `v` (video); `owner` 32 lowercase hex characters; `name` a
//! canonical ULID optionally followed by `_<width>x<height>`; `ext` 1 to 8 lowercase letters or
//! digits.

/// Longest key handed out or accepted.
pub const MAX_KEY_LEN: usize = 128;
/// Largest width or height a name may declare.
pub const MAX_DIMENSION: u32 = 100_000;

/// What kind of media a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
}

impl MediaKind {
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

/// Where in the bucket a key points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `u/`: the upload area (a ticket's key).
    Upload,
    /// `m/`: a sent message's copy.
    Message,
}

/// The file extension a key gets for a content type (keys then open correctly when saved).
pub fn extension(content_type: &str) -> &'static str {
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

/// The content type a key's file extension stands for (the inverse of [`extension`]);
/// `application/octet-stream` for any other. Download URLs serve objects as this type, never
/// as what the uploader declared.
pub fn content_type_of(key: &str) -> &'static str {
    let ext = key.rsplit_once('.').map_or("", |(_, ext)| ext);
    match ext {
        "jpg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// A parsed media key (its upload and message places share owner and name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaKey {
    pub kind: MediaKind,
    pub owner: String,
    /// ULID, plus `_<w>x<h>` when the ticket gave dimensions.
    name: String,
    ext: String,
}

impl MediaKey {
    /// The key of an upload of `content_type` by `owner`, named `id` (a fresh ULID).
    pub fn new(
        kind: MediaKind,
        owner: String,
        id: &str,
        content_type: &str,
        dims: Option<(u32, u32)>,
    ) -> Self {
        let name = match dims {
            Some((w, h)) => format!("{id}_{w}x{h}"),
            None => id.to_owned(),
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
        Self::parse_at(key).map(|(_, k)| k)
    }

    /// [`MediaKey::parse`], telling which place the key points at.
    pub fn parse_at(key: &str) -> Option<(Place, Self)> {
        if key.len() > MAX_KEY_LEN {
            return None;
        }
        let mut parts = key.split('/');
        let (place, kind, owner, file) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let place = match place {
            "u" => Place::Upload,
            "m" => Place::Message,
            _ => return None,
        };
        let kind = match kind {
            "i" => MediaKind::Image,
            "v" => MediaKind::Video,
            _ => return None,
        };
        let (name, ext) = file.split_once('.')?;
        let valid = valid_owner(owner) && valid_name(name) && valid_ext(ext);
        valid.then(|| {
            let key = MediaKey {
                kind,
                owner: owner.to_owned(),
                name: name.to_owned(),
                ext: ext.to_owned(),
            };
            (place, key)
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

/// The thumbnail key of an uploaded or sent image, or `None` when `key` is not one.
pub fn thumbnail_key(key: &str) -> Option<String> {
    MediaKey::parse(key)
        .filter(|k| k.kind == MediaKind::Image)
        .map(|k| k.thumbnail_key())
}

/// The thumbnail key of a sent image (`m/i/…`, the copy a send makes once) only: what the
/// thumbnail function renders, so that nothing uploaded after the send (a ticket's key stays
/// writable for its lifetime) changes the thumbnail a message shows. `None` for an upload, a
/// video, a thumbnail (its own output), anything malformed.
pub fn sent_thumbnail_key(key: &str) -> Option<String> {
    match MediaKey::parse_at(key)? {
        (Place::Message, k) if k.kind == MediaKind::Image => Some(k.thumbnail_key()),
        _ => None,
    }
}

fn valid_owner(owner: &str) -> bool {
    owner.len() == 32
        && owner
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A canonical ULID, optionally followed by `_<w>x<h>`.
fn valid_name(name: &str) -> bool {
    let (id, dims) = match name.split_once('_') {
        Some((id, dims)) => (id, Some(dims)),
        None => (name, None),
    };
    is_canonical_ulid(id) && dims.is_none_or(|d| parse_dims(d).is_some())
}

fn valid_ext(ext: &str) -> bool {
    !ext.is_empty()
        && ext.len() <= 8
        && ext
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A ULID exactly as it is written out: 26 upper-case Crockford base-32 characters, the first
/// at most `7` (128 bits).
pub fn is_canonical_ulid(s: &str) -> bool {
    const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    s.len() == 26 && s.as_bytes()[0] <= b'7' && s.bytes().all(|b| CROCKFORD.contains(&b))
}

/// `<w>x<h>`, each from 1 to [`MAX_DIMENSION`] without leading zeros.
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

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "0123456789abcdef0123456789abcdef";
    const ULID: &str = "01JABCDEFGHJKMNPQRSTVWXYZ0";

    fn key(kind: MediaKind, ct: &str, dims: Option<(u32, u32)>) -> MediaKey {
        MediaKey::new(kind, OWNER.into(), ULID, ct, dims)
    }

    #[test]
    fn keys_round_trip_between_their_three_places() {
        // GIVEN a fresh image key with dimensions
        let k = key(MediaKind::Image, "image/png", Some((640, 480)));
        let up = k.upload_key();
        // THEN upload and message keys parse back to the same key, thumbnails derive from both
        assert_eq!(up, format!("u/i/{OWNER}/{ULID}_640x480.png"));
        assert_eq!(MediaKey::parse_at(&up), Some((Place::Upload, k.clone())));
        assert_eq!(
            MediaKey::parse_at(&k.message_key()),
            Some((Place::Message, k.clone()))
        );
        assert_eq!(k.dims(), Some((640, 480)));
        assert_eq!(thumbnail_key(&up), thumbnail_key(&k.message_key()));
        assert_eq!(
            thumbnail_key(&up),
            Some(format!("t/{OWNER}/{ULID}_640x480.jpg"))
        );
        // AND a video has no thumbnail of its own
        let v = key(MediaKind::Video, "video/mp4", None);
        assert_eq!(thumbnail_key(&v.upload_key()), None);
        assert!(v.upload_key().ends_with(".mp4") && v.dims().is_none());
    }

    #[test]
    fn a_sent_image_maps_to_its_thumbnail() {
        // GIVEN sent keys with and without declared dimensions
        // WHEN their thumbnail keys are derived
        // THEN owner and name are kept and the extension becomes .jpg
        assert_eq!(
            sent_thumbnail_key(&format!("m/i/{OWNER}/{ULID}.png")),
            Some(format!("t/{OWNER}/{ULID}.jpg"))
        );
        assert_eq!(
            sent_thumbnail_key(&format!("m/i/{OWNER}/{ULID}_640x480.webp")),
            Some(format!("t/{OWNER}/{ULID}_640x480.jpg"))
        );
    }

    #[test]
    fn anything_but_a_sent_image_is_refused() {
        // GIVEN a good key and variations of it that are not sent images
        let good = format!("m/i/{OWNER}/{ULID}_1x2.jpg");
        assert!(sent_thumbnail_key(&good).is_some());
        let bad = [
            String::new(),
            format!("t/{OWNER}/{ULID}.jpg"),
            format!("t/i/{OWNER}/{ULID}.jpg"),
            good.replacen("m/i/", "m/v/", 1),
            good.replacen("m/i/", "u/i/", 1),
            good.replacen("m/", "m//", 1),
            format!("{good}/x"),
            good.replace(".jpg", ""),
            good.replace(".jpg", "."),
            good.replace(".jpg", ".JPG"),
            good.replace(".jpg", ".jpeg20000"),
            good.replace(".jpg", ".tar.gz"),
            good.replace("_1x2", "_0x2"),
            good.replace("_1x2", "_1x"),
            good.replace("_1x2", "_01x2"),
            good.replace("_1x2", "_1x100001"),
            good.replace("_1x2", "_"),
            good.replace(ULID, &ULID.to_lowercase()),
            good.replace(ULID, &ULID[..25]),
            good.replace(ULID, "81JABCDEFGHJKMNPQRSTVWXYZ0"),
            good.replace(OWNER, &OWNER.to_uppercase()),
            good.replace(OWNER, &OWNER[..31]),
            format!("m/i/{OWNER}/{ULID}_1x2.{}", "a".repeat(MAX_KEY_LEN)),
            "m/i/../../etc/passwd".into(),
        ];
        // WHEN their thumbnail keys are derived
        // THEN every one is refused
        for b in &bad {
            assert_eq!(sent_thumbnail_key(b), None, "{b:?} must be refused");
        }
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
            good.replace(ULID, "01JABCDEFGHJKMNPQRSTVWXYZI"),
            good.replace(ULID, "01JABCDEFGHJKMNPQRSTVWXYZU"),
            "u/i/../../etc/passwd".into(),
            format!("u/i/{}/{ULID}.jpg", "A".repeat(32)),
        ];
        for b in &bad {
            assert_eq!(MediaKey::parse(b), None, "{b:?} must be refused");
        }
    }

    #[test]
    fn canonical_ulids_are_exactly_what_ulids_print() {
        assert!(is_canonical_ulid(ULID));
        assert!(
            is_canonical_ulid("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"),
            "the largest"
        );
        assert!(is_canonical_ulid("00000000000000000000000000"));
        for bad in [
            "",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "01jabcdefghjkmnpqrstvwxyz0",
            "01JABCDEFGHJKMNPQRSTVWXYZL",
            "01JABCDEFGHJKMNPQRSTVWXYZO",
            "01JABCDEFGHJKMNPQRSTVWXYZ",
            "01JABCDEFGHJKMNPQRSTVWXYZ00",
        ] {
            assert!(!is_canonical_ulid(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod ulid_agreement {
    use super::is_canonical_ulid;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_ulid_check_agrees_with_the_ulid_crate(s in "[0-9A-Za-z]{24,27}", n in any::<u128>()) {
            let crate_says = |s: &str| ulid::Ulid::from_string(s).is_ok_and(|u| u.to_string() == s);
            prop_assert_eq!(is_canonical_ulid(&s), crate_says(&s));
            let printed = ulid::Ulid(n).to_string();
            prop_assert!(is_canonical_ulid(&printed));
        }
    }

    #[test]
    fn every_extension_maps_back_to_its_content_type_and_nothing_else_is_runnable() {
        for ct in [
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "image/heic",
            "video/mp4",
            "video/quicktime",
            "video/webm",
        ] {
            let key = format!("m/i/o/x.{}", super::extension(ct));
            assert_eq!(super::content_type_of(&key), ct);
        }
        for key in [
            "m/i/o/x.svg",
            "m/i/o/x.html",
            "m/i/o/x.bin",
            "m/i/o/x",
            "m/i/o.jpg/x",
        ] {
            assert_eq!(
                super::content_type_of(key),
                "application/octet-stream",
                "{key}"
            );
        }
    }
}
