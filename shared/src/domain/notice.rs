//! Offline notices (WeChat subscribe messages): the configured template, what each of its keys
//! carries, the rules WeChat holds each key type's value to, and what a notice previews. Plain
//! Rust; `flows/notify.rs` decides when one goes.

use crate::domain::connection::Registry;
use crate::domain::message::{ChatType, Message};
use crate::domain::moderation::Screening;
use time::{OffsetDateTime, UtcOffset};

/// Grants one user may hold of the template (`MaxNoticeGrants`).
pub const DEFAULT_MAX_NOTICE_GRANTS: u64 = 50;
/// How long a conversation stays marked as notified (then the next message notifies again,
/// even if its receiver never came back).
pub const NOTIFIED_TTL_SECS: i64 = 30 * 86_400;
/// Tries of `subscribeMessage.send` per notice (failures other than 43101 and a refused token).
pub const SEND_TRIES: u32 = 3;
/// The first wait before trying again; it doubles.
pub const SEND_BACKOFF_MS: u64 = 200;

/// A user's standing for notices, as `chat-notify` reads it from their registry item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub registry: Registry,
    /// When they last connected (epoch ms; 0 if before this was recorded).
    pub last_connect_ms: i64,
    /// Their grants of the template.
    pub grants: u64,
}

impl Recipient {
    /// Whether a message from `sender` reaches them now: a live user connection, or a live
    /// conversation connection with `sender`.
    pub fn online_for(&self, sender: &str, now_s: i64) -> bool {
        self.registry
            .live(now_s)
            .any(|e| e.is_user_connection() || e.is_conversation_with(sender))
    }
}

/// A notice to claim: `user` is told about the conversation with `peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticeClaim<'a> {
    pub app_sid: &'a str,
    pub user: &'a str,
    pub peer: &'a str,
    pub template: &'a str,
    /// The last connect the claim saw: a conversation notified after it is not notified again.
    pub last_connect_ms: i64,
    pub now_ms: i64,
}

/// What one key of the template carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeValue {
    /// The sender's display name (their account when they have none).
    SenderName,
    /// The message: its text, `[图片]`, `[视频]`, or `[新消息]` while moderation has not passed it.
    Preview,
    /// When it was sent.
    SentAt,
}

impl NoticeValue {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "sender_name" => Some(NoticeValue::SenderName),
            "preview" => Some(NoticeValue::Preview),
            "sent_at" => Some(NoticeValue::SentAt),
            _ => None,
        }
    }
}

/// A template key's type (the letters before its number: `thing1` is a `thing`) and WeChat's
/// rule for its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// At most 20 characters.
    Thing,
    /// At most 5 characters.
    Phrase,
    /// At most 10 characters.
    Name,
    /// At most 32 letters, digits and symbols.
    CharacterString,
    /// A date and time, `2026-12-06 16:30`.
    Time,
    /// A date, `2026-12-06`.
    Date,
}

impl KeyType {
    fn of_key(key: &str) -> Option<Self> {
        let kind = key.trim_end_matches(|c: char| c.is_ascii_digit());
        if kind.len() == key.len() || kind.is_empty() {
            return None;
        }
        Some(match kind {
            "thing" => KeyType::Thing,
            "phrase" => KeyType::Phrase,
            "name" => KeyType::Name,
            "character_string" => KeyType::CharacterString,
            "time" => KeyType::Time,
            "date" => KeyType::Date,
            _ => return None,
        })
    }

    fn is_moment(self) -> bool {
        matches!(self, KeyType::Time | KeyType::Date)
    }

    /// `text` cut to this type's length (a cut text ends in `…`, within the limit).
    fn cut(self, text: &str) -> String {
        let max = match self {
            KeyType::Thing => 20,
            KeyType::Phrase => 5,
            KeyType::Name => 10,
            KeyType::CharacterString => 32,
            KeyType::Time | KeyType::Date => return text.to_owned(),
        };
        let text: String = match self {
            // Letters, digits and symbols only.
            KeyType::CharacterString => text.chars().filter(|c| c.is_ascii_graphic()).collect(),
            _ => text.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        if text.chars().count() <= max {
            return text;
        }
        match self {
            KeyType::Thing | KeyType::Name => {
                let mut cut: String = text.chars().take(max - 1).collect();
                cut.push('…');
                cut
            }
            _ => text.chars().take(max).collect(),
        }
    }
}

/// `miniprogram_state`: which version of the mini-program a tapped notice opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeState {
    Formal,
    Trial,
    Developer,
}

impl NoticeState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "formal" => Some(NoticeState::Formal),
            "trial" => Some(NoticeState::Trial),
            "developer" => Some(NoticeState::Developer),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Formal => "formal",
            NoticeState::Trial => "trial",
            NoticeState::Developer => "developer",
        }
    }
}

/// The configured subscribe message template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeTemplate {
    pub id: String,
    /// Each key of the template, its type, and what it carries.
    pub fields: Vec<(String, KeyType, NoticeValue)>,
    /// The page a tapped notice opens; `{sender}` stands for the sender's account.
    pub page: String,
    pub state: NoticeState,
}

impl NoticeTemplate {
    /// Reads `NOTICE_TEMPLATE_FIELDS`: a JSON object from each template key (`thing1`) to what
    /// it carries (`sender_name`, `preview`, `sent_at`). `sent_at` goes only to a `time` or
    /// `date` key, the others only to the text types.
    pub fn parse_fields(json: &str) -> Result<Vec<(String, KeyType, NoticeValue)>, String> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
            .map_err(|_| "must be a JSON object such as {\"thing1\":\"sender_name\"}".to_owned())?;
        if map.is_empty() || map.len() > 20 {
            return Err("must map 1 to 20 template keys".into());
        }
        map.iter()
            .map(|(key, v)| {
                let kind = KeyType::of_key(key).ok_or_else(|| {
                    format!("{key}: a key is a type (thing, phrase, name, character_string, time, date) and a number")
                })?;
                let value = v.as_str().and_then(NoticeValue::parse).ok_or_else(|| {
                    format!("{key}: the value must be sender_name, preview or sent_at")
                })?;
                if kind.is_moment() != (value == NoticeValue::SentAt) {
                    return Err(format!(
                        "{key}: sent_at goes to a time or date key, sender_name and preview to the others"
                    ));
                }
                Ok((key.clone(), kind, value))
            })
            .collect()
    }

    /// The notice of `m`, sent by `sender_name`, shown in `offset`; `None` when nothing may be
    /// said about it (blocked or recalled).
    pub fn render(&self, m: &Message, sender_name: &str, offset: UtcOffset) -> Option<Rendered> {
        let preview = preview(m)?;
        let name = match sender_name.trim() {
            "" => m.sender.as_str(),
            n => n,
        };
        let data = self
            .fields
            .iter()
            .map(|(key, kind, value)| {
                let text = match value {
                    NoticeValue::SenderName => kind.cut(name),
                    NoticeValue::Preview => kind.cut(preview),
                    NoticeValue::SentAt => moment(m.created_at_ms, offset, *kind),
                };
                (key.clone(), text)
            })
            .collect();
        Some(Rendered {
            template_id: self.id.clone(),
            page: self.page.replace("{sender}", &m.sender),
            state: self.state,
            data,
        })
    }
}

/// A notice ready for `subscribeMessage.send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub template_id: String,
    pub page: String,
    pub state: NoticeState,
    /// Key → value, each within its type's rule.
    pub data: Vec<(String, String)>,
}

/// What a notice may say about `m`: `None` when it is recalled or blocked.
pub fn preview(m: &Message) -> Option<&str> {
    if m.recalled {
        return None;
    }
    match (&m.screening, m.chat_type) {
        (Screening::Blocked { .. }, _) => None,
        (_, ChatType::Image) => Some("[图片]"),
        (_, ChatType::Video) => Some("[视频]"),
        (Screening::Unchecked | Screening::Pending, _) => Some("[新消息]"),
        _ => Some(m.content.as_str()),
    }
}

fn moment(ms: i64, offset: UtcOffset, kind: KeyType) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset);
    let out = match kind {
        KeyType::Date => t.format(time::macros::format_description!("[year]-[month]-[day]")),
        _ => t.format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]"
        )),
    };
    out.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(chat_type: ChatType, content: &str, screening: Screening) -> Message {
        Message {
            id: "01JB0000000000000000000000".into(),
            app_sid: "demo".into(),
            sender: "ann".into(),
            receiver: "bob".into(),
            chat_type,
            content: content.into(),
            created_at_ms: 1_764_995_400_000, // 2025-12-06 04:30 UTC
            client_msg_id: None,
            media: None,
            seq: None,
            conv_seq: None,
            recalled: false,
            screening,
        }
    }

    fn template(fields: &str) -> NoticeTemplate {
        NoticeTemplate {
            id: "tpl".into(),
            fields: NoticeTemplate::parse_fields(fields).unwrap(),
            page: "pages/chat/index?peer={sender}".into(),
            state: NoticeState::Formal,
        }
    }

    fn cst() -> UtcOffset {
        UtcOffset::from_hms(8, 0, 0).unwrap()
    }

    #[test]
    fn every_value_is_cut_or_formatted_to_its_key_type() {
        let t = template(
            r#"{"thing1":"sender_name","thing2":"preview","time3":"sent_at","phrase4":"preview","name5":"sender_name","character_string6":"preview","date7":"sent_at"}"#,
        );
        let long = "今天晚上七点在老地方见面吧，别忘了带上那本书和雨伞";
        let r = t
            .render(
                &message(ChatType::Text, long, Screening::Clear),
                "一个很长很长很长的名字啊",
                cst(),
            )
            .unwrap();
        let get = |k: &str| r.data.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("thing2").chars().count(), 20);
        assert!(get("thing2").ends_with('…'));
        assert!(get("thing2").starts_with("今天晚上七点在老地方"));
        assert_eq!(get("phrase4"), "今天晚上七");
        assert_eq!(get("name5").chars().count(), 10);
        assert_eq!(get("thing1"), "一个很长很长很长的名字啊");
        assert_eq!(get("time3"), "2025-12-06 12:30");
        assert_eq!(get("date7"), "2025-12-06");
        // (a character_string holds letters, digits and symbols only)
        assert_eq!(get("character_string6"), "");
        assert_eq!(r.page, "pages/chat/index?peer=ann");
        assert_eq!(r.template_id, "tpl");
        let ascii = t
            .render(
                &message(ChatType::Text, "see you at 7, ok?", Screening::Clear),
                "",
                cst(),
            )
            .unwrap();
        let thing1 = ascii.data.iter().find(|(k, _)| k == "thing1").unwrap();
        assert_eq!(thing1.1, "ann", "no name: the account");
        let cs = ascii
            .data
            .iter()
            .find(|(k, _)| k == "character_string6")
            .unwrap();
        assert_eq!(cs.1, "seeyouat7,ok?");
    }

    #[test]
    fn previews_hide_what_moderation_has_not_passed_and_say_nothing_of_blocked_or_recalled() {
        let p = |m: &Message| preview(m).map(str::to_owned);
        assert_eq!(
            p(&message(ChatType::Text, "hi", Screening::Clear)).as_deref(),
            Some("hi")
        );
        assert_eq!(
            p(&message(
                ChatType::Text,
                "hi",
                Screening::Review { label: 20001 }
            ))
            .as_deref(),
            Some("hi")
        );
        assert_eq!(
            p(&message(ChatType::Text, "hi", Screening::Unchecked)).as_deref(),
            Some("[新消息]")
        );
        assert_eq!(
            p(&message(ChatType::Image, "m/i/x", Screening::Pending)).as_deref(),
            Some("[图片]")
        );
        assert_eq!(
            p(&message(ChatType::Video, "m/v/x", Screening::Clear)).as_deref(),
            Some("[视频]")
        );
        assert_eq!(
            p(&message(
                ChatType::Text,
                "bad",
                Screening::Blocked { label: 20001 }
            )),
            None
        );
        let mut recalled = message(ChatType::Text, "oops", Screening::Clear);
        recalled.recalled = true;
        assert_eq!(p(&recalled), None);
    }

    #[test]
    fn field_mappings_that_wechat_would_refuse_are_refused_at_start() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"thing":"preview"}"#,
            r#"{"amount1":"preview"}"#,
            r#"{"thing1":"body"}"#,
            r#"{"time1":"preview"}"#,
            r#"{"thing1":"sent_at"}"#,
        ] {
            assert!(NoticeTemplate::parse_fields(bad).is_err(), "{bad}");
        }
        assert_eq!(
            NoticeTemplate::parse_fields(r#"{"thing12":"preview"}"#).unwrap(),
            vec![("thing12".to_owned(), KeyType::Thing, NoticeValue::Preview)]
        );
    }
}
