//! Item encoding: domain values to DynamoDB items and back, the keys of every item kind, and
//! the attribute helpers. No requests are made here.

use crate::domain::connection::{ConnectionRecord, Metered, Registry, RegistryEntry};
use crate::domain::ids::Conversation;
use crate::domain::inbox::Entry;
use crate::domain::message::{ChatType, MediaInfo, Message, Page, Profile};
use crate::domain::moderation::{unchecked_shard, Screening, MEDIA_CHECK_DUE_SECS};
use crate::error::{Error, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn nu(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn get_s(item: &Item, k: &str) -> Result<String> {
    match item.get(k) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(Error::Corrupt(format!(
            "attribute {k} missing or not a string"
        ))),
    }
}

pub(super) fn get_s_or_empty(item: &Item, k: &str) -> String {
    match item.get(k) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    }
}

pub(super) fn get_opt_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

/// A number attribute that may be absent (`None`); present but not an integer is corrupt.
pub(super) fn get_opt_n(item: &Item, k: &str) -> Result<Option<i64>> {
    item.contains_key(k).then(|| get_n(item, k)).transpose()
}

pub(super) fn get_n(item: &Item, k: &str) -> Result<i64> {
    match item.get(k) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| Error::Corrupt(format!("attribute {k} is not an integer"))),
        _ => Err(Error::Corrupt(format!(
            "attribute {k} missing or not a number"
        ))),
    }
}

/// An unsigned number attribute that may be absent (`None`).
pub(super) fn get_opt_u(item: &Item, k: &str) -> Result<Option<u64>> {
    item.contains_key(k)
        .then(|| get_u_or_zero(item, k))
        .transpose()
}

pub(super) fn get_u_or_zero(item: &Item, k: &str) -> Result<u64> {
    match item.get(k) {
        None => Ok(0),
        Some(_) => u64::try_from(get_n(item, k)?)
            .map_err(|_| Error::Corrupt(format!("attribute {k} is negative"))),
    }
}

pub(super) const MESSAGE_PREFIX: &str = "m#";
pub(super) const PROFILE_PREFIX: &str = "p#";
/// Upper bound of the "messages and profiles" range (`$` sorts just after `#`).
pub(super) const PROFILE_RANGE_END: &str = "p$";
/// Media attributes a recall removes (from a message and from an entry's `last`).
pub(super) const MEDIA_ATTRIBUTES: [&str; 5] =
    ["media_type", "media_size", "media_w", "media_h", "poster"];

pub(super) fn message_sk(id: &str) -> String {
    format!("{MESSAGE_PREFIX}{id}")
}

/// Key of message `id` of `conversation`.
pub(super) fn message_key(conversation: &Conversation, id: &str) -> Item {
    Item::from([
        ("pk".into(), s(conversation.key())),
        ("sk".into(), s(message_sk(id))),
    ])
}

pub(super) fn profile_sk(user: &str) -> String {
    format!("{PROFILE_PREFIX}{user}")
}

/// Key of `user`'s entry for the conversation with `peer`.
pub(super) fn entry_key(app_sid: &str, user: &str, peer: &str) -> Item {
    Item::from([
        ("pk".into(), s(inbox_key(app_sid, user))),
        ("sk".into(), s(format!("c#{peer}"))),
    ])
}

pub(super) fn inbox_key(app_sid: &str, user: &str) -> String {
    format!("i#{app_sid}#{user}")
}

/// Key of `user`'s send rate counter in the connections table: `sends_<window>` attributes
/// and `expires_at` (the table's TTL) a window after its newest count.
pub(super) fn rate_counter_id(app_sid: &str, user: &str) -> String {
    format!("q#{app_sid}#{user}")
}

/// Key of the meter of `what` for `user` in rate window `window`, in the connections table.
pub(super) fn meter_id(app_sid: &str, user: &str, what: Metered, window: i64) -> String {
    format!("q#{app_sid}#{user}#{}#{window}", what.name())
}

/// The (window, count) pairs of an item's `sends_<window>` attributes.
pub(super) fn sends_from(item: &Item) -> Vec<(i64, u64)> {
    item.iter()
        .filter_map(|(k, v)| {
            let window = k.strip_prefix(SENDS_PREFIX)?.parse().ok()?;
            Some((window, v.as_n().ok()?.parse().ok()?))
        })
        .collect()
}

/// Key of `user`'s registry in the connections table.
pub(super) fn registry_id(app_sid: &str, user: &str) -> String {
    format!("r#{app_sid}#{user}")
}

pub(super) fn message_item(m: &Message) -> Item {
    let mut item = message_attributes(m);
    item.insert("pk".into(), s(m.conversation().key()));
    item.insert("sk".into(), s(message_sk(&m.id)));
    // Only the message itself (not a marker's or an entry's copy) enters the sparse indexes
    // the re-check schedule reads: an unchecked text, or media whose check is pending (due an
    // hour after the send; the ask after the send moves that).
    match m.screening {
        Screening::Unchecked if m.chat_type == ChatType::Text => {
            item.insert(
                UNCHECKED_ATTRIBUTE.into(),
                s(unchecked_key(unchecked_shard(&m.id))),
            );
        }
        Screening::Pending => {
            item.insert(
                MEDIA_CHECK_SHARD.into(),
                s(media_check_shard_key(unchecked_shard(&m.id))),
            );
            item.insert(
                MEDIA_CHECK_DUE.into(),
                n(m.created_at_ms.div_euclid(1000) + MEDIA_CHECK_DUE_SECS),
            );
        }
        _ => {}
    }
    item
}

/// The key of the sparse `media_checks` index (`mc_shard` = `p<shard>`, `mc_due` the time a
/// check with no verdict is overdue): only message items whose media check is pending carry
/// them. `mc_trace` (the newest ask's trace id) and `mc_asks` sit beside them.
pub(super) const MEDIA_CHECK_SHARD: &str = "mc_shard";
pub(super) const MEDIA_CHECK_DUE: &str = "mc_due";

pub(super) fn media_check_shard_key(shard: u8) -> String {
    format!("p{shard}")
}

/// The key of the sparse `unchecked` index (`s<shard>`): only message items stored without a
/// moderation decision carry it.
pub(super) const UNCHECKED_ATTRIBUTE: &str = "unchecked";

pub(super) fn unchecked_key(shard: u8) -> String {
    format!("s{shard}")
}

/// `mod` (what moderation made of a message: `review`, `unchecked`, `blocked`; absent when
/// clear) and `mod_label` (WeChat's label number, for the operator).
fn screening_attributes(screening: &Screening, item: &mut Item) {
    let (word, label) = match screening {
        Screening::Clear => return,
        Screening::Review { label } => ("review", Some(*label)),
        Screening::Unchecked => ("unchecked", None),
        Screening::Pending => ("pending", None),
        Screening::Blocked { label } => ("blocked", Some(*label)),
        Screening::Replaced { submitted } => {
            item.insert("mod_sub".into(), s(submitted));
            ("replaced", None)
        }
    };
    item.insert("mod".into(), s(word));
    if let Some(label) = label {
        item.insert("mod_label".into(), nu(label.into()));
    }
}

fn screening_from(item: &Item) -> Result<Screening> {
    let label = || -> Result<u32> {
        u32::try_from(get_n(item, "mod_label")?)
            .map_err(|_| Error::Corrupt("attribute mod_label out of range".into()))
    };
    Ok(match get_opt_s(item, "mod").as_deref() {
        None => Screening::Clear,
        Some("review") => Screening::Review { label: label()? },
        Some("unchecked") => Screening::Unchecked,
        Some("pending") => Screening::Pending,
        Some("blocked") => Screening::Blocked { label: label()? },
        Some("replaced") => Screening::Replaced {
            submitted: get_s(item, "mod_sub")?,
        },
        Some(_) => return Err(Error::Corrupt("unknown mod".into())),
    })
}

pub(super) fn message_attributes(m: &Message) -> Item {
    let mut item = Item::from([
        ("id".into(), s(&m.id)),
        ("app_sid".into(), s(&m.app_sid)),
        ("sender".into(), s(&m.sender)),
        ("receiver".into(), s(&m.receiver)),
        ("chat_type".into(), n(m.chat_type.as_u8().into())),
        ("content".into(), s(&m.content)),
        ("created_at".into(), n(m.created_at_ms)),
    ]);
    if let Some(c) = &m.client_msg_id {
        item.insert("client_msg_id".into(), s(c));
    }
    if let Some(seq) = m.seq {
        item.insert("seq".into(), nu(seq));
    }
    if let Some(cseq) = m.conv_seq {
        item.insert("cseq".into(), nu(cseq));
    }
    if m.recalled {
        item.insert("recalled".into(), AttributeValue::Bool(true));
    }
    screening_attributes(&m.screening, &mut item);
    if let Some(media) = &m.media {
        item.insert("media_type".into(), s(&media.content_type));
        item.insert("media_size".into(), n(media.size as i64));
        if let (Some(w), Some(h)) = (media.width, media.height) {
            item.insert("media_w".into(), n(w.into()));
            item.insert("media_h".into(), n(h.into()));
        }
        if let Some(p) = &media.poster {
            item.insert("poster".into(), s(p));
        }
    }
    item
}

/// Media attributes, present only on messages whose content is an uploaded object's key.
pub(super) fn media_from(item: &Item) -> Result<Option<MediaInfo>> {
    if !item.contains_key("media_type") {
        return Ok(None);
    }
    let dim = |k: &str| -> Result<Option<u32>> {
        match item.get(k) {
            None => Ok(None),
            Some(_) => u32::try_from(get_n(item, k)?)
                .map(Some)
                .map_err(|_| Error::Corrupt(format!("attribute {k} out of range"))),
        }
    };
    Ok(Some(MediaInfo {
        content_type: get_s(item, "media_type")?,
        size: u64::try_from(get_n(item, "media_size")?)
            .map_err(|_| Error::Corrupt("attribute media_size is negative".into()))?,
        width: dim("media_w")?,
        height: dim("media_h")?,
        poster: get_opt_s(item, "poster"),
    }))
}

pub(super) fn message_from(item: &Item) -> Result<Message> {
    Ok(Message {
        id: get_s(item, "id")?,
        app_sid: get_s(item, "app_sid")?,
        sender: get_s(item, "sender")?,
        receiver: get_s(item, "receiver")?,
        chat_type: ChatType::from_i64(get_n(item, "chat_type")?)
            .ok_or_else(|| Error::Corrupt("unknown chat_type".into()))?,
        content: get_s(item, "content")?,
        created_at_ms: get_n(item, "created_at")?,
        client_msg_id: get_opt_s(item, "client_msg_id"),
        media: media_from(item)?,
        seq: get_opt_u(item, "seq")?,
        conv_seq: get_opt_u(item, "cseq")?,
        recalled: matches!(item.get("recalled"), Some(AttributeValue::Bool(true))),
        screening: screening_from(item)?,
    })
}

pub(super) fn dedup_key(m: &Message, client_msg_id: &str) -> String {
    marker_key(&m.conversation(), &m.sender, client_msg_id)
}

/// The messages table's TTL attribute (epoch s). Only idempotency markers carry it.
pub const MARKER_TTL_ATTRIBUTE: &str = "expires_at";

/// `d#<conversation key>#<sender>#<client_msg_id>`: the partition of an idempotency marker.
pub(super) fn marker_key(conversation: &Conversation, sender: &str, client_msg_id: &str) -> String {
    format!("d#{}#{sender}#{client_msg_id}", conversation.key())
}

pub(super) fn profile_entry(item: &Item) -> Option<(String, Profile)> {
    let sk = item.get("sk")?.as_s().ok()?;
    let user = sk.strip_prefix(PROFILE_PREFIX)?;
    Some((
        user.to_owned(),
        Profile {
            name: get_s_or_empty(item, "name"),
            avatar: get_s_or_empty(item, "avatar"),
        },
    ))
}

pub(super) fn is_message(item: &Item) -> bool {
    matches!(item.get("sk"), Some(AttributeValue::S(sk)) if sk.starts_with(MESSAGE_PREFIX))
}

pub(super) fn entry_from(item: &Item) -> Result<Entry> {
    let last = match item.get("last") {
        Some(AttributeValue::M(m)) => Some(message_from(m)?),
        _ => None,
    };
    Ok(Entry {
        user: get_s(item, "user")?,
        peer: get_s(item, "peer")?,
        last,
        updated_at_ms: get_n(item, "updated_at")?,
        sent: get_u_or_zero(item, "sent")?,
        peer_sent: get_u_or_zero(item, "peer_sent")?,
        read_seq: get_u_or_zero(item, "read_seq")?,
        peer_read_id: get_opt_s(item, "peer_read_id"),
        peer_profile: Profile {
            name: get_s_or_empty(item, "peer_name"),
            avatar: get_s_or_empty(item, "peer_avatar"),
        },
        ver: get_u_or_zero(item, "ver")?,
    })
}

pub(super) fn record_from(item: &Item) -> Result<ConnectionRecord> {
    Ok(ConnectionRecord {
        connection_id: get_s(item, "connection_id")?,
        app_sid: get_s(item, "app_sid")?,
        user: get_s(item, "user")?,
        friend: get_opt_s(item, "friend"),
        profile: Profile {
            name: get_s_or_empty(item, "name"),
            avatar: get_s_or_empty(item, "avatar"),
        },
        connected_at_ms: get_n(item, "connected_at")?,
        expires_at: get_n(item, "expires_at")?,
        registered: matches!(item.get("reg"), Some(AttributeValue::Bool(true))),
        sends: sends_from(item),
        token_expires_at: get_opt_n(item, "token_exp")?,
        openid: get_opt_s(item, "openid"),
    })
}

/// Attributes counting sends per rate window, `sends_<window>`: on a user's rate counter (and
/// on connection records written before the limit counted per user).
pub(super) const SENDS_PREFIX: &str = "sends_";

pub(super) fn sends_attribute(window: i64) -> String {
    format!("{SENDS_PREFIX}{window}")
}

pub(super) fn registry_entry_value(e: &RegistryEntry) -> AttributeValue {
    let mut m = Item::from([
        (
            "kind".into(),
            s(if e.friend.is_some() {
                "conversation"
            } else {
                "user"
            }),
        ),
        ("at".into(), n(e.connected_at_ms)),
        ("exp".into(), n(e.expires_at)),
    ]);
    if let Some(f) = &e.friend {
        m.insert("friend".into(), s(f));
    }
    AttributeValue::M(m)
}

pub(super) fn registry_from(item: &Item) -> Result<Registry> {
    let mut entries = Vec::new();
    if let Some(AttributeValue::M(conns)) = item.get("conns") {
        for (cid, v) in conns {
            let AttributeValue::M(e) = v else {
                return Err(Error::Corrupt("registry entry is not a map".into()));
            };
            entries.push(RegistryEntry {
                connection_id: cid.clone(),
                friend: get_opt_s(e, "friend"),
                connected_at_ms: get_n(e, "at")?,
                expires_at: get_n(e, "exp")?,
            });
        }
    }
    entries.sort_by(|a, b| {
        (a.connected_at_ms, &a.connection_id).cmp(&(b.connected_at_ms, &b.connection_id))
    });
    let profile = item.contains_key("name").then(|| Profile {
        name: get_s_or_empty(item, "name"),
        avatar: get_s_or_empty(item, "avatar"),
    });
    Ok(Registry {
        user: get_s(item, "user")?,
        profile,
        entries,
    })
}

/// Newest-first items → oldest-first page of at most `limit`.
pub(super) fn page_from(
    newest_first: Vec<Message>,
    limit: usize,
    profiles: HashMap<String, Profile>,
) -> Page {
    let has_more = newest_first.len() > limit;
    let mut messages: Vec<Message> = newest_first.into_iter().take(limit).collect();
    messages.reverse();
    Page {
        messages,
        has_more,
        profiles,
    }
}

/// A stored video message, as the adapter's unit tests use it.
#[cfg(test)]
pub(super) fn sample_message(cmid: Option<&str>) -> Message {
    Message {
        id: crate::domain::ids::new_message_id(1_700_000_000_000),
        app_sid: "app".into(),
        sender: "b".into(),
        receiver: "a".into(),
        chat_type: ChatType::Video,
        content: "https://v/1.mp4".into(),
        created_at_ms: 1_700_000_000_000,
        client_msg_id: cmid.map(str::to_owned),
        media: None,
        seq: Some(3),
        conv_seq: None,
        recalled: false,
        screening: Screening::Clear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(cmid: Option<&str>) -> Message {
        sample_message(cmid)
    }

    #[test]
    fn a_message_survives_its_item_round_trip() {
        let mut uploaded = message(Some("k2"));
        uploaded.content =
            "m/v/0123456789abcdef0123456789abcdef/01HZ0000000000000000000000.mp4".into();
        uploaded.media = Some(MediaInfo {
            content_type: "video/mp4".into(),
            size: 1234,
            width: Some(640),
            height: Some(360),
            poster: Some(
                "m/i/0123456789abcdef0123456789abcdef/01HZ0000000000000000000001.jpg".into(),
            ),
        });
        let old = Message {
            seq: None,
            conv_seq: None,
            ..message(None)
        };
        let recalled = Message {
            recalled: true,
            content: String::new(),
            ..message(Some("k3"))
        };
        let screened = |screening| Message {
            screening,
            ..message(Some("k4"))
        };
        let (review, unchecked, blocked, pending) = (
            screened(Screening::Review { label: 21000 }),
            Message {
                chat_type: ChatType::Text,
                ..screened(Screening::Unchecked)
            },
            screened(Screening::Blocked { label: 20002 }),
            screened(Screening::Pending),
        );
        let replaced = screened(Screening::Replaced {
            submitted: "ab12".into(),
        });
        assert_eq!(message_from(&message_item(&replaced)).unwrap(), replaced);
        for m in [message(Some("k1")), message(None), uploaded, old, recalled] {
            let item = message_item(&m);
            assert_eq!(message_from(&item).unwrap(), m);
            assert_eq!(item["pk"].as_s().unwrap(), "c#app#a#b");
            assert!(is_message(&item));
            assert!(!item.contains_key("mod"));
        }
        for m in [review, unchecked.clone(), blocked] {
            assert_eq!(message_from(&message_item(&m)).unwrap(), m);
        }
        // Only an unchecked message (not its marker's or an entry's copy) is in the sparse
        // index the re-check reads, under its shard.
        assert_eq!(
            message_item(&unchecked)[UNCHECKED_ATTRIBUTE]
                .as_s()
                .unwrap(),
            &unchecked_key(unchecked_shard(&unchecked.id))
        );
        assert!(!message_attributes(&unchecked).contains_key(UNCHECKED_ATTRIBUTE));
        // Media stored unchecked (a video without a poster) are never checked: not indexed.
        let unchecked_video = screened(Screening::Unchecked);
        assert!(!message_item(&unchecked_video).contains_key(UNCHECKED_ATTRIBUTE));
        // Media whose check is pending are in the media checks index, due an hour after the
        // send, and come back pending.
        let item = message_item(&pending);
        assert_eq!(message_from(&item).unwrap(), pending);
        assert_eq!(
            item[MEDIA_CHECK_SHARD].as_s().unwrap(),
            &media_check_shard_key(unchecked_shard(&pending.id))
        );
        assert_eq!(
            item[MEDIA_CHECK_DUE].as_n().unwrap(),
            &(pending.created_at_ms / 1000 + MEDIA_CHECK_DUE_SECS).to_string()
        );
        assert!(!message_attributes(&pending).contains_key(MEDIA_CHECK_SHARD));
        assert!(!message_item(&message(None)).contains_key(UNCHECKED_ATTRIBUTE));
    }

    #[test]
    fn key_ranges_keep_item_kinds_apart() {
        // Messages sort below profiles, profiles below the range end, nothing below "m#".
        let m = format!(
            "{MESSAGE_PREFIX}{}",
            crate::domain::ids::new_message_id(i64::MAX / 2)
        );
        let p = format!("{PROFILE_PREFIX}zzzzzzzz");
        assert!(MESSAGE_PREFIX < m.as_str() && m.as_str() < p.as_str());
        assert!(p.as_str() < PROFILE_RANGE_END);
    }

    #[test]
    fn an_entry_and_a_registry_survive_their_item_round_trips() {
        // GIVEN an entry as a send writes it, and a registry with both kinds of connection
        let e = Entry {
            last: Some(message(Some("k"))),
            updated_at_ms: 1_700_000_000_000,
            sent: 3,
            peer_sent: 9,
            read_seq: 4,
            peer_read_id: Some("01HZ0000000000000000000000".into()),
            peer_profile: Profile {
                name: "A".into(),
                avatar: "https://a".into(),
            },
            ver: 12,
            ..Entry::empty("b", "a")
        };
        let mut item = entry_key("app", "b", "a");
        item.insert("user".into(), s("b"));
        item.insert("peer".into(), s("a"));
        item.insert(
            "last".into(),
            AttributeValue::M(message_attributes(e.last.as_ref().unwrap())),
        );
        for (k, v) in [
            ("updated_at", 1_700_000_000_000i64),
            ("sent", 3),
            ("peer_sent", 9),
            ("read_seq", 4),
            ("ver", 12),
        ] {
            item.insert(k.into(), n(v));
        }
        item.insert("peer_read_id".into(), s("01HZ0000000000000000000000"));
        item.insert("peer_name".into(), s("A"));
        item.insert("peer_avatar".into(), s("https://a"));
        assert_eq!(entry_from(&item).unwrap(), e);
        let user = RegistryEntry {
            connection_id: "L0SM9cOFvHcCIhw=".into(),
            friend: None,
            connected_at_ms: 1,
            expires_at: 10,
        };
        let conv = RegistryEntry {
            connection_id: "Zm9vYmFyYmF6cXV4=".into(),
            friend: Some("a".into()),
            connected_at_ms: 2,
            expires_at: 20,
        };
        let registry = Item::from([
            ("connection_id".into(), s(registry_id("app", "b"))),
            ("user".into(), s("b")),
            (
                "conns".into(),
                AttributeValue::M(Item::from([
                    (conv.connection_id.clone(), registry_entry_value(&conv)),
                    (user.connection_id.clone(), registry_entry_value(&user)),
                ])),
            ),
        ]);
        let r = registry_from(&registry).unwrap();
        assert_eq!(r.entries, vec![user, conv], "oldest first");
        assert_eq!(r.profile, None);
        assert!(
            registry_id("app", "b").contains('#'),
            "never an API Gateway id"
        );
    }

    #[test]
    fn corrupt_items_are_errors_not_panics() {
        let mut item = message_item(&message(None));
        item.insert("chat_type".into(), n(9));
        assert!(matches!(message_from(&item), Err(Error::Corrupt(_))));
        item.remove("content");
        assert!(message_from(&item).is_err());
    }

    #[test]
    fn pages_are_oldest_first_and_know_if_more_exist() {
        let ms: Vec<Message> = (0..4)
            .map(|i| Message {
                id: crate::domain::ids::new_message_id(1_700_000_000_000 - i),
                ..message(None)
            })
            .collect(); // newest first
        let page = page_from(ms.clone(), 3, HashMap::new());
        assert!(page.has_more);
        assert_eq!(page.messages.len(), 3);
        assert_eq!(page.messages[2], ms[0]);
        assert!(!page_from(ms, 4, HashMap::new()).has_more);
    }
}
