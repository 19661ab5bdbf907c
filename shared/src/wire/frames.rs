//! Server frames out (`docs/protocol.md`): rows in the seed's field names, pages trimmed to
//! the frame budget, and every other frame a client receives.

use crate::domain::ids::ListCursor;
use crate::domain::inbox::Entry;
use crate::domain::media::{thumbnail_key, UploadTicket};
use crate::domain::message::{Message, Page, Profile};
use crate::wire::request::Echo;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use time::{OffsetDateTime, UtcOffset};

/// One history row, with the seed's field names (`userphone` is the sender).
#[derive(Debug, Serialize)]
pub struct Row<'a> {
    pub id: &'a str,
    pub friendphone: &'a str,
    pub friendname: &'a str,
    pub friendavatar: &'a str,
    pub app_sid: &'a str,
    pub created_date: String,
    pub userphone: &'a str,
    pub username: &'a str,
    pub useravatar: &'a str,
    pub content: &'a str,
    pub chat_type: u8,
    pub created_at: i64,
    /// The conversation's sequence number (see `Message::conv_seq`); absent on rows stored
    /// before it was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub client_msg_id: Option<&'a str>,
    /// Only on messages whose media were uploaded here; `content` is then a download URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaRow<'a>>,
    /// Only on recalled messages (then `content` is empty and `media` absent).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recalled: bool,
    /// Only on messages taken down by moderation (then `content` is empty and `media` absent).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
}

/// What a client needs to show an uploaded image or video.
#[derive(Debug, Serialize)]
pub struct MediaRow<'a> {
    pub content_type: &'a str,
    pub size: u64,
    /// When the URLs of this row stop working (epoch ms); sync again for fresh ones.
    pub expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A JPEG of at most 320 px; may not exist yet for a moment after the upload (fall back to
    /// `content`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumb_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<&'a str>,
}

/// Presigned download URLs for the media keys of the messages in a frame, signed when the
/// frame is built (a stored URL would die with the credentials that signed it).
#[derive(Debug, Clone, Default)]
pub struct MediaUrls {
    pub urls: HashMap<String, String>,
    pub expires_at_ms: i64,
}

impl MediaUrls {
    fn get(&self, key: &str) -> Option<&str> {
        self.urls.get(key).map(String::as_str)
    }
}

/// The keys a frame with `messages` needs signed: each media message's object, its thumbnail
/// (images) or its poster and the poster's thumbnail (videos).
pub fn keys_to_sign<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Vec<String> {
    let mut keys = Vec::new();
    for m in messages {
        let Some(media) = m.media.as_ref().filter(|_| !m.recalled && !m.blocked()) else {
            continue;
        };
        keys.push(m.content.clone());
        keys.extend(thumbnail_key(&m.content));
        if let Some(p) = &media.poster {
            keys.push(p.clone());
            keys.extend(thumbnail_key(p));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Formats epoch ms as the seed's `YYYY-MM-DD HH:MM:SS` in `offset`.
pub fn created_date(ms: i64, offset: UtcOffset) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset);
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.format(&fmt).unwrap_or_default()
}

/// The row for `m`, with names and avatars from the participants' current profiles and, for
/// uploaded media, download URLs from `urls`.
pub fn row<'a>(
    m: &'a Message,
    profiles: &'a HashMap<String, Profile>,
    offset: UtcOffset,
    urls: &'a MediaUrls,
) -> Row<'a> {
    static NONE: Profile = Profile {
        name: String::new(),
        avatar: String::new(),
    };
    let sender = profiles.get(&m.sender).unwrap_or(&NONE);
    let receiver = profiles.get(&m.receiver).unwrap_or(&NONE);
    Row {
        id: &m.id,
        friendphone: &m.receiver,
        friendname: &receiver.name,
        friendavatar: &receiver.avatar,
        app_sid: &m.app_sid,
        created_date: created_date(m.created_at_ms, offset),
        userphone: &m.sender,
        username: &sender.name,
        useravatar: &sender.avatar,
        content: match &m.media {
            _ if m.recalled || m.blocked() => "",
            Some(_) => urls.get(&m.content).unwrap_or_default(),
            None => &m.content,
        },
        chat_type: m.chat_type.as_u8(),
        created_at: m.created_at_ms,
        seq: m.conv_seq,
        client_msg_id: m.client_msg_id.as_deref(),
        recalled: m.recalled,
        blocked: m.blocked(),
        media: m
            .media
            .as_ref()
            .filter(|_| !m.recalled && !m.blocked())
            .map(|media| {
                let thumb_of = |k: &str| thumbnail_key(k).and_then(|t| urls.get(&t));
                MediaRow {
                    content_type: &media.content_type,
                    size: media.size,
                    expires_at: urls.expires_at_ms,
                    width: media.width,
                    height: media.height,
                    thumb_url: thumb_of(&m.content)
                        .or_else(|| media.poster.as_deref().and_then(thumb_of)),
                    poster_url: media.poster.as_deref().and_then(|p| urls.get(p)),
                }
            }),
    }
}

#[derive(Serialize)]
struct HistoryFrame<'a> {
    code: u8,
    #[serde(rename = "type")]
    kind: &'static str,
    data: &'a [&'a RawValue],
    cursor: Option<&'a str>,
    has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_msg_id: Option<&'a str>,
}

/// What goes with a page besides its rows.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageExtras<'a> {
    /// The conversation's other party, seen from the receiving connection.
    pub peer: Option<&'a str>,
    /// The cursor the client paged from (older pages only).
    pub before: Option<&'a str>,
    /// The message just sent, for clients that append instead of replace.
    pub message: Option<&'a Message>,
    /// Acknowledgement for the sender's connection.
    pub client_msg_id: Option<&'a str>,
    /// Signed URLs for the media rows.
    pub urls: Option<&'a MediaUrls>,
}

/// Serializes a history frame no larger than `max_bytes`. When the page does not fit, the
/// oldest rows are left out and `cursor` / `has_more` point at them, so paging still returns
/// every row exactly once.
pub fn history_frame(
    page: &Page,
    extras: PageExtras<'_>,
    offset: UtcOffset,
    max_bytes: usize,
) -> String {
    static NO_URLS: std::sync::OnceLock<MediaUrls> = std::sync::OnceLock::new();
    let urls = extras
        .urls
        .unwrap_or_else(|| NO_URLS.get_or_init(MediaUrls::default));
    let to_raw = |m: &Message| -> Box<RawValue> {
        serde_json::value::to_raw_value(&row(m, &page.profiles, offset, urls))
            .expect("a row of strings and numbers always serializes")
    };
    let rows: Vec<Box<RawValue>> = page.messages.iter().map(to_raw).collect();
    let message = extras.message.map(to_raw);
    let frame_with = |first: usize, message: Option<&RawValue>| -> String {
        let data: Vec<&RawValue> = rows[first..].iter().map(AsRef::as_ref).collect();
        let has_more = page.has_more || first > 0;
        let frame = HistoryFrame {
            code: 1,
            kind: "history",
            data: &data,
            cursor: if has_more {
                page.messages.get(first).map(|m| m.id.as_str())
            } else {
                None
            },
            has_more,
            peer: extras.peer,
            before: extras.before,
            message,
            client_msg_id: extras.client_msg_id,
        };
        serde_json::to_string(&frame).expect("a history frame always serializes")
    };
    // The newest rows that fit; each row's size is known, so skip straight to a candidate.
    let fit = |message: Option<&RawValue>| -> (usize, String) {
        let mut first = rows.len();
        let mut total = frame_with(rows.len(), message).len() + 64; // room for the cursor
        while first > 0 && total + rows[first - 1].get().len() < max_bytes {
            first -= 1;
            total += rows[first].get().len() + 1;
        }
        let mut out = frame_with(first, message);
        while out.len() > max_bytes && first < rows.len() {
            first += 1;
            out = frame_with(first, message);
        }
        (first, out)
    };
    let (first, out) = fit(message.as_deref());
    if first == rows.len() && !rows.is_empty() {
        // Not even the newest row fits beside its copy in `message`: drop the copy (it is the
        // newest row anyway) so that the page always carries a row and a usable cursor.
        return fit(None).1;
    }
    out
}

/// `{"code":0,"type":"error",...}`, echoing the request's `client_msg_id` / `req_id`.
pub fn error_frame(error: &str, msg: &str, echo: &Echo) -> String {
    let mut v = serde_json::json!({"code": 0, "type": "error", "error": error, "msg": msg});
    if let Some(id) = &echo.client_msg_id {
        v["client_msg_id"] = Value::String(id.clone());
    }
    if let Some(id) = &echo.req_id {
        v["req_id"] = Value::String(id.clone());
    }
    v.to_string()
}

/// The answer to a text that content security refused (nothing was stored): the label's name
/// (`docs/protocol.md` lists them), and the `client_msg_id`, which may be sent again with other
/// text.
pub fn content_blocked_frame(label: &str, echo: &Echo) -> String {
    let msg = "this message was not sent: it breaks the content rules; edit it and send again";
    let mut v: Value = serde_json::from_str(&error_frame("content_blocked", msg, echo))
        .expect("error frames are JSON");
    v["label"] = Value::String(label.to_owned());
    v.to_string()
}

/// What the sender gets when its message was stored but its own answer could not be built (a
/// read or signing failed after the write): not `internal`, which invites a retry that would
/// store the message twice for a client without `client_msg_id`. Carries the message's `id`.
pub fn not_delivered_frame(message_id: &str, client_msg_id: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "code": 0,
        "type": "error",
        "error": "not_delivered",
        "msg": "your message was stored but could not be shown yet; sync to see it, do not send it again",
        "id": message_id,
    });
    if let Some(id) = client_msg_id {
        v["client_msg_id"] = Value::String(id.to_owned());
    }
    v.to_string()
}

/// The answer to an `upload` frame.
pub fn upload_frame(
    req_id: &str,
    key: &str,
    expires_in: u64,
    max_bytes: u64,
    t: &UploadTicket,
) -> String {
    let object = |pairs: &[(String, String)]| -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    };
    serde_json::json!({
        "code": 1,
        "type": "upload",
        "req_id": req_id,
        "key": key,
        "expires_in": expires_in,
        "max_bytes": max_bytes,
        "put": {"url": t.put_url, "headers": object(&t.put_headers)},
        "post": {"url": t.post_url, "fields": object(&t.post_fields)},
    })
    .to_string()
}

/// `{"code":1,"type":"pong"}`
pub fn pong_frame() -> String {
    r#"{"code":1,"type":"pong"}"#.to_owned()
}

/// A row on its own, for the frames that carry one (`message`, list entries).
pub fn row_value(
    m: &Message,
    profiles: &HashMap<String, Profile>,
    offset: UtcOffset,
    urls: &MediaUrls,
) -> Box<RawValue> {
    serde_json::value::to_raw_value(&row(m, profiles, offset, urls))
        .expect("a row of strings and numbers always serializes")
}

/// `{"code":1,"type":"message","peer":..,"message":row,"unread":n}` for a user connection,
/// with `client_msg_id` on the sending connection's (its acknowledgement).
pub fn message_frame(
    peer: &str,
    row: &RawValue,
    unread: u64,
    client_msg_id: Option<&str>,
) -> String {
    #[derive(Serialize)]
    struct MessageFrame<'a> {
        code: u8,
        #[serde(rename = "type")]
        kind: &'static str,
        peer: &'a str,
        message: &'a RawValue,
        unread: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<&'a str>,
    }
    serde_json::to_string(&MessageFrame {
        code: 1,
        kind: "message",
        peer,
        message: row,
        unread,
        client_msg_id,
    })
    .expect("a message frame always serializes")
}

/// One conversation as the list shows it, seen by `entry.user` (whose profile is `mine`).
pub fn list_item(
    entry: &Entry,
    mine: &Profile,
    offset: UtcOffset,
    urls: &MediaUrls,
) -> Box<RawValue> {
    let profiles = HashMap::from([
        (entry.user.clone(), mine.clone()),
        (entry.peer.clone(), entry.peer_profile.clone()),
    ]);
    let last = entry
        .last
        .as_ref()
        .map(|m| row_value(m, &profiles, offset, urls));
    #[derive(Serialize)]
    struct Item<'a> {
        peer: &'a str,
        peername: &'a str,
        peeravatar: &'a str,
        last: Option<&'a RawValue>,
        unread: u64,
        updated_at: i64,
        peer_read_id: Option<&'a str>,
    }
    serde_json::value::to_raw_value(&Item {
        peer: &entry.peer,
        peername: &entry.peer_profile.name,
        peeravatar: &entry.peer_profile.avatar,
        last: last.as_deref(),
        unread: entry.unread(),
        updated_at: entry.updated_at_ms,
        peer_read_id: entry.peer_read_id.as_deref(),
    })
    .expect("a list item always serializes")
}

/// `{"code":1,"type":"conversations","data":[item,…],"cursor":..,"has_more":..}`, no larger
/// than `max_bytes`: when the items do not fit, the oldest are left out and the cursor points
/// at the last one sent, so paging still returns every conversation once. `items` come newest
/// first, each with its list position.
pub fn conversations_frame(
    items: &[(Box<RawValue>, ListCursor)],
    has_more: bool,
    max_bytes: usize,
) -> String {
    #[derive(Serialize)]
    struct ListFrame<'a> {
        code: u8,
        #[serde(rename = "type")]
        kind: &'static str,
        data: &'a [&'a RawValue],
        cursor: Option<&'a str>,
        has_more: bool,
    }
    let frame = |n: usize| {
        let data: Vec<&RawValue> = items[..n].iter().map(|(i, _)| i.as_ref()).collect();
        let more = has_more || n < items.len();
        serde_json::to_string(&ListFrame {
            code: 1,
            kind: "conversations",
            data: &data,
            cursor: if more && n > 0 {
                Some(items[n - 1].1.as_str())
            } else {
                None
            },
            has_more: more,
        })
        .expect("a list frame always serializes")
    };
    let mut n = 0;
    let mut total = frame(0).len() + 64; // room for the cursor
    while n < items.len() && total + items[n].0.get().len() < max_bytes {
        total += items[n].0.get().len() + 1;
        n += 1;
    }
    frame(n.max(1).min(items.len()))
}

/// `{"code":1,"type":"conversation","data":item}`: one entry changed (after `read`).
pub fn conversation_frame(item: &RawValue) -> String {
    format!(
        r#"{{"code":1,"type":"conversation","data":{}}}"#,
        item.get()
    )
}

/// `{"code":1,"type":"read","peer":..,"id":..}`: `peer` has read up to your message `id`.
pub fn read_frame(peer: &str, id: &str) -> String {
    serde_json::json!({"code": 1, "type": "read", "peer": peer, "id": id}).to_string()
}

/// `{"code":1,"type":"typing","peer":..}`
pub fn typing_frame(peer: &str) -> String {
    serde_json::json!({"code": 1, "type": "typing", "peer": peer}).to_string()
}

/// `{"code":1,"type":"recall","peer":..,"id":..}`: message `id` in the conversation with
/// `peer` was recalled.
pub fn recall_frame(peer: &str, id: &str) -> String {
    serde_json::json!({"code": 1, "type": "recall", "peer": peer, "id": id}).to_string()
}

/// `{"code":1,"type":"subscribed","req_id":..,"template_id":..,"grants":n}`: the user now
/// holds `grants` grants of the notice template.
pub fn subscribed_frame(req_id: &str, template_id: &str, grants: u64) -> String {
    serde_json::json!({"code": 1, "type": "subscribed", "req_id": req_id, "template_id": template_id, "grants": grants})
        .to_string()
}

/// What a user connection gets when content security took a stored message down.
pub fn blocked_frame(peer: &str, id: &str) -> String {
    serde_json::json!({"code": 1, "type": "blocked", "peer": peer, "id": id}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::domain::ids::new_message_id;
    use crate::domain::message::ChatType;

    fn message(i: i64, sender: &str, content: &str) -> Message {
        Message {
            id: new_message_id(1_700_000_000_000 + i),
            app_sid: "app".into(),
            sender: sender.into(),
            receiver: if sender == "a" {
                "b".into()
            } else {
                "a".into()
            },
            chat_type: ChatType::Text,
            content: content.into(),
            created_at_ms: 1_700_000_000_000 + i,
            client_msg_id: None,
            media: None,
            seq: Some(1),
            conv_seq: None,
            recalled: false,
            screening: Default::default(),
        }
    }

    #[test]
    fn rows_carry_the_seeds_fields_with_current_profiles() {
        // GIVEN a message from a to b and both profiles
        let m = message(0, "a", "hello");
        let mut profiles = HashMap::new();
        profiles.insert(
            "a".to_string(),
            Profile {
                name: "Ann".into(),
                avatar: "https://a".into(),
            },
        );
        profiles.insert(
            "b".to_string(),
            Profile {
                name: "Bob".into(),
                avatar: "https://b".into(),
            },
        );
        // WHEN the row is serialized
        let v = serde_json::to_value(row(
            &m,
            &profiles,
            UtcOffset::from_hms(8, 0, 0).unwrap(),
            &MediaUrls::default(),
        ))
        .unwrap();
        // THEN userphone is the sender and friend* the receiver, date in +08:00
        assert_eq!(v["userphone"], "a");
        assert_eq!(v["username"], "Ann");
        assert_eq!(v["friendphone"], "b");
        assert_eq!(v["friendname"], "Bob");
        assert_eq!(v["friendavatar"], "https://b");
        assert_eq!(v["created_date"], "2023-11-15 06:13:20");
        assert_eq!(v["chat_type"], 0);
        assert_eq!(v["created_at"], 1_700_000_000_000i64);
        for f in ["id", "app_sid", "useravatar", "content", "client_msg_id"] {
            assert!(v.get(f).is_some(), "{f} missing");
        }
    }

    #[test]
    fn an_oversized_page_is_trimmed_from_the_oldest_end_and_the_cursor_follows() {
        // GIVEN 100 rows of 4 KB each (about 420 KB), more than one frame can carry
        let page = Page {
            messages: (0..100)
                .map(|i| message(i, "a", &"x".repeat(4096)))
                .collect(),
            has_more: false,
            profiles: HashMap::new(),
        };
        let last = page.messages.last().unwrap().clone();
        let extras = PageExtras {
            message: Some(&last),
            client_msg_id: Some("k"),
            ..PageExtras::default()
        };
        // WHEN the frame is built with API Gateway's 128 KB limit
        let s = history_frame(&page, extras, UtcOffset::UTC, 128 * 1024);
        // THEN it fits, keeps the newest rows, and its cursor is the oldest row it carries
        assert!(s.len() <= 128 * 1024, "{} bytes", s.len());
        let v: Value = serde_json::from_str(&s).unwrap();
        let data = v["data"].as_array().unwrap();
        assert!(data.len() > 10 && data.len() < 100);
        assert_eq!(data.last().unwrap()["id"], last.id.as_str());
        assert_eq!(v["cursor"], data[0]["id"]);
        assert_eq!(v["has_more"], true);
        assert_eq!(v["message"]["id"], last.id.as_str());
        assert_eq!(v["client_msg_id"], "k");
    }

    #[test]
    fn a_page_of_huge_escaped_rows_still_carries_a_row_and_a_cursor() {
        // GIVEN the largest allowed content made of control characters (6 bytes each in JSON)
        let limits = Limits {
            max_content_bytes: 16384,
            ..Limits::default()
        };
        let page = Page {
            messages: (0..3)
                .map(|i| message(i, "a", &"\u{1}".repeat(limits.max_content_bytes)))
                .collect(),
            has_more: false,
            profiles: HashMap::new(),
        };
        let newest = page.messages[2].clone();
        let extras = PageExtras {
            message: Some(&newest),
            client_msg_id: Some("k"),
            ..PageExtras::default()
        };
        // WHEN a send's frame is built
        let s = history_frame(&page, extras, UtcOffset::UTC, limits.max_frame_bytes);
        // THEN it fits, carries the newest row, and points at the older ones
        assert!(s.len() <= limits.max_frame_bytes, "{} bytes", s.len());
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        assert_eq!(v["data"][0]["id"], newest.id.as_str());
        assert_eq!(v["has_more"], true);
        assert_eq!(v["cursor"], newest.id.as_str());
        assert_eq!(v["client_msg_id"], "k");
    }

    #[test]
    fn a_page_that_fits_is_sent_whole() {
        let page = Page {
            messages: (0..3).map(|i| message(i, "b", "hi")).collect(),
            has_more: false,
            profiles: HashMap::new(),
        };
        let v: Value = serde_json::from_str(&history_frame(
            &page,
            PageExtras::default(),
            UtcOffset::UTC,
            128 * 1024,
        ))
        .unwrap();
        assert_eq!(v["code"], 1);
        assert_eq!(v["type"], "history");
        assert_eq!(v["data"].as_array().unwrap().len(), 3);
        assert_eq!(v["cursor"], Value::Null);
        assert_eq!(v["has_more"], false);
        assert!(v.get("message").is_none() && v.get("client_msg_id").is_none());
    }

    #[test]
    fn a_list_too_big_for_one_frame_is_cut_and_the_cursor_follows() {
        // GIVEN 60 conversations whose last messages are 4 KB each
        let items: Vec<(Box<RawValue>, ListCursor)> = (0..60)
            .map(|i| {
                let entry = Entry {
                    last: Some(message(i, "a", &"x".repeat(4096))),
                    updated_at_ms: 2_000_000 - i,
                    ..Entry::empty("a", &format!("p{i}"))
                };
                let item = list_item(
                    &entry,
                    &Profile::default(),
                    UtcOffset::UTC,
                    &MediaUrls::default(),
                );
                (item, ListCursor::of(entry.updated_at_ms, &entry.peer))
            })
            .collect();
        // WHEN the frame is built
        let s = conversations_frame(&items, false, 128 * 1024);
        // THEN it fits, starts with the newest, and its cursor is the last item it carries
        assert!(s.len() <= 128 * 1024);
        let v: Value = serde_json::from_str(&s).unwrap();
        let data = v["data"].as_array().unwrap();
        assert!(data.len() > 10 && data.len() < 60, "{}", data.len());
        assert_eq!(data[0]["peer"], "p0");
        assert_eq!(v["has_more"], true);
        assert_eq!(v["cursor"], items[data.len() - 1].1.as_str());
        // AND a list that fits has no cursor
        let v: Value =
            serde_json::from_str(&conversations_frame(&items[..2], false, 128 * 1024)).unwrap();
        assert_eq!(
            (v["cursor"].is_null(), v["has_more"].as_bool()),
            (true, Some(false))
        );
    }

    #[test]
    fn error_frames_echo_the_client_msg_id() {
        let v: Value = serde_json::from_str(&error_frame(
            "bad_limit",
            "nope",
            &Echo {
                client_msg_id: Some("k".into()),
                req_id: None,
            },
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code":0,"type":"error","error":"bad_limit","msg":"nope","client_msg_id":"k"})
        );
    }
}
