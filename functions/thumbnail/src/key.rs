//! Object keys: which uploads get a thumbnail, and where it goes — the `chat-media-key` crate's
//! rule, which the chat uses too — and how S3 events encode keys.

pub use media_key::sent_thumbnail_key as thumbnail_key;

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
