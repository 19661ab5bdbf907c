//! Object keys: which uploads get a thumbnail, and where it goes.
//!
//! The rule mirrors `shared::media::thumbnail_key` (restricted to uploads, `u/i/`), which this
//! crate deliberately does not depend on; an end-to-end test checks that the two agree.
//! An uploaded image is `u/i/<owner>/<name>.<ext>`: `owner` 32 lowercase hex characters, `name`
//! a canonical ULID optionally followed by `_<w>x<h>`, `ext` 1 to 8 lowercase letters or digits.
//! Its thumbnail is `t/<owner>/<name>.jpg`.

/// Longest key the chat hands out or accepts.
pub const MAX_KEY_LEN: usize = 128;
/// Largest width or height an upload ticket may declare in a name.
pub const MAX_DIMENSION: u32 = 100_000;

/// The thumbnail key of an uploaded image, or `None` when `key` is not one (a video, a sent
/// copy, a thumbnail, anything malformed). Never `Some` for a key this function writes.
pub fn thumbnail_key(key: &str) -> Option<String> {
    if key.len() > MAX_KEY_LEN {
        return None;
    }
    let mut parts = key.split('/');
    let (place, kind, owner, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || place != "u" || kind != "i" {
        return None;
    }
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
    if !is_canonical_ulid(id) {
        return None;
    }
    if let Some(d) = dims {
        parse_dims(d)?;
    }
    let ext_ok = !ext.is_empty()
        && ext.len() <= 8
        && ext
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ext_ok.then(|| format!("t/{owner}/{name}.jpg"))
}

/// A ULID exactly as the chat writes it (26 upper-case Crockford characters).
fn is_canonical_ulid(s: &str) -> bool {
    ulid::Ulid::from_string(s).is_ok_and(|u| u.to_string() == s)
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

/// Decodes an object key as S3 event notifications carry it (form-encoded: `+` for a space,
/// `%xx` for other bytes). `None` for a broken escape or a key that is not UTF-8.
pub fn decode_event_key(raw: &str) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_digit(bytes.next()?)?;
                let lo = hex_digit(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "0123456789abcdef0123456789abcdef";
    const ULID: &str = "01JABCDEFGHJKMNPQRSTVWXYZ0";

    #[test]
    fn an_uploaded_image_maps_to_its_thumbnail() {
        // GIVEN upload keys with and without declared dimensions
        // WHEN their thumbnail keys are derived
        // THEN owner and name are kept and the extension becomes .jpg
        assert_eq!(
            thumbnail_key(&format!("u/i/{OWNER}/{ULID}.png")),
            Some(format!("t/{OWNER}/{ULID}.jpg"))
        );
        assert_eq!(
            thumbnail_key(&format!("u/i/{OWNER}/{ULID}_640x480.webp")),
            Some(format!("t/{OWNER}/{ULID}_640x480.jpg"))
        );
    }

    #[test]
    fn anything_but_an_uploaded_image_is_refused() {
        // GIVEN a good key and variations of it that are not uploaded images
        let good = format!("u/i/{OWNER}/{ULID}_1x2.jpg");
        assert!(thumbnail_key(&good).is_some());
        let bad = [
            String::new(),
            format!("t/{OWNER}/{ULID}.jpg"),
            format!("t/i/{OWNER}/{ULID}.jpg"),
            good.replacen("u/i/", "u/v/", 1),
            good.replacen("u/i/", "m/i/", 1),
            good.replacen("u/", "u//", 1),
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
            format!("u/i/{OWNER}/{ULID}_1x2.{}", "a".repeat(MAX_KEY_LEN)),
            "u/i/../../etc/passwd".into(),
        ];
        // WHEN their thumbnail keys are derived
        // THEN every one is refused
        for b in &bad {
            assert_eq!(thumbnail_key(b), None, "{b:?} must be refused");
        }
    }

    #[test]
    fn event_keys_are_form_decoded() {
        // GIVEN keys as S3 notifications encode them
        // WHEN they are decoded
        // THEN `+` is a space, `%xx` a byte, and broken escapes or non-UTF-8 are refused
        assert_eq!(
            decode_event_key("u/i/a+b%2Bc%2fd").as_deref(),
            Some("u/i/a b+c/d")
        );
        assert_eq!(decode_event_key("%E4%B8%AD").as_deref(), Some("中"));
        assert_eq!(
            decode_event_key("plain/key.jpg").as_deref(),
            Some("plain/key.jpg")
        );
        assert_eq!(decode_event_key("bad%2"), None);
        assert_eq!(decode_event_key("bad%zz"), None);
        assert_eq!(decode_event_key("%FF"), None);
    }
}
