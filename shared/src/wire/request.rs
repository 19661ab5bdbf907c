//! Client frames in (`docs/protocol.md`): parsing and validation. A refused frame becomes a
//! [`Rejection`] with a machine code; parser text never reaches a client.

use crate::config::Limits;
use crate::domain::ids::{valid_ident, Cursor, ListCursor};
use crate::domain::media::{MediaKey, MediaKind, TicketRequest, MAX_DIMENSION};
use crate::domain::message::ChatType;
use serde_json::{Map, Value};

/// Longest `client_msg_id` accepted.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 64;
/// Longest media URL accepted for image and video messages.
pub const MAX_MEDIA_URL_BYTES: usize = 2048;

/// A valid client request. `to` names the conversation's peer: required on a user
/// connection, optional on a conversation connection (where it can only be its friend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Latest page, for this connection only.
    Sync {
        to: Option<String>,
        limit: usize,
    },
    /// The page before `before` (or the latest page without a cursor).
    History {
        to: Option<String>,
        before: Option<Cursor>,
        limit: usize,
    },
    Send(SendRequest),
    /// An upload ticket for one image or video.
    Upload(TicketRequest),
    Ping,
    /// A page of the user's conversation list.
    Conversations {
        before: Option<ListCursor>,
        limit: usize,
    },
    /// Everything from `to` up to message `id` is read.
    Read {
        to: Option<String>,
        id: String,
    },
    /// Tell `to` that the user is typing.
    Typing {
        to: Option<String>,
    },
    /// Take back one's own message `id`.
    Recall {
        to: Option<String>,
        id: String,
    },
    /// What `wx.requestSubscribeMessage` reported for the offline notice template.
    Subscribe {
        req_id: String,
        template_id: String,
        accepted: bool,
    },
}

impl Request {
    /// What an error frame answering this request echoes.
    pub fn echo(&self) -> Echo {
        match self {
            Request::Send(s) => Echo {
                client_msg_id: s.client_msg_id.clone(),
                req_id: None,
            },
            Request::Upload(u) => Echo {
                client_msg_id: None,
                req_id: Some(u.req_id.clone()),
            },
            Request::Subscribe { req_id, .. } => Echo {
                client_msg_id: None,
                req_id: Some(req_id.clone()),
            },
            _ => Echo::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    pub to: Option<String>,
    pub client_msg_id: Option<String>,
    pub chat_type: ChatType,
    /// Text, an off-site media URL, or (with `media`) the uploaded object's key.
    pub content: String,
    /// Set when `content` is a key issued by an upload ticket.
    pub media: Option<MediaRef>,
}

/// The uploaded objects a media send names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    pub key: MediaKey,
    /// A video's poster image (uploaded with an image ticket).
    pub poster: Option<MediaKey>,
}

/// The request ids an error frame echoes, so a client can match it to what it sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Echo {
    pub client_msg_id: Option<String>,
    pub req_id: Option<String>,
}

/// A refused frame: machine code plus human text, sent back as an error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub error: &'static str,
    pub msg: String,
    pub echo: Echo,
}

impl Rejection {
    pub fn new(error: &'static str, msg: impl Into<String>) -> Self {
        Rejection {
            error,
            msg: msg.into(),
            echo: Echo::default(),
        }
    }
}

/// Parses and validates one client frame. Never echoes parser text: a client learns what was
/// wrong from the code and message, not from serde internals.
pub fn parse_request(body: &str, limits: &Limits) -> Result<Request, Rejection> {
    let obj: Map<String, Value> = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(o)) => o,
        _ => return Err(Rejection::new("bad_json", "a frame must be a JSON object")),
    };
    // Echo a well-formed client_msg_id / req_id on any rejection of the frame that carried it.
    let id = |field: &'static str, code: &'static str| match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if valid_client_msg_id(s) => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::new(
            code,
            format!("{field} must be 1 to {MAX_CLIENT_MSG_ID_LEN} of A-Z a-z 0-9 _ - . :"),
        )),
    };
    let echo = Echo {
        client_msg_id: id("client_msg_id", "bad_client_msg_id")?,
        req_id: id("req_id", "bad_req_id")?,
    };
    parse_object(&obj, &echo, limits).map_err(|mut r| {
        r.echo = echo.clone();
        r
    })
}

fn parse_object(
    obj: &Map<String, Value>,
    echo: &Echo,
    limits: &Limits,
) -> Result<Request, Rejection> {
    let client_msg_id = echo.client_msg_id.clone();
    let action = match obj.get("action") {
        Some(Value::String(a)) => Some(a.as_str()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(Rejection::new("unknown_action", "action must be a string")),
    };
    match action {
        Some("sync") => Ok(Request::Sync {
            to: parse_to(obj)?,
            limit: parse_limit(obj, limits)?,
        }),
        Some("history") => {
            let before = match obj.get("before") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(
                    Cursor::parse(s)
                        .ok_or_else(|| Rejection::new("bad_cursor", "before is not a cursor"))?,
                ),
                Some(_) => return Err(Rejection::new("bad_cursor", "before is not a cursor")),
            };
            Ok(Request::History {
                to: parse_to(obj)?,
                before,
                limit: parse_limit(obj, limits)?,
            })
        }
        Some("send") => parse_send(obj, client_msg_id, limits),
        // The seed client's `chatInfo` has no action but carries chat_type and chat_content.
        None if obj.contains_key("chat_type") && obj.contains_key("chat_content") => {
            parse_send(obj, client_msg_id, limits)
        }
        Some("upload") => parse_upload(obj, echo.req_id.clone()),
        Some("ping") => Ok(Request::Ping),
        Some("conversations") => {
            let before = match obj.get("before") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(
                    ListCursor::parse(s)
                        .ok_or_else(|| Rejection::new("bad_cursor", "before is not a cursor"))?,
                ),
                Some(_) => return Err(Rejection::new("bad_cursor", "before is not a cursor")),
            };
            Ok(Request::Conversations {
                before,
                limit: parse_limit(obj, limits)?,
            })
        }
        Some("read") => Ok(Request::Read {
            to: parse_to(obj)?,
            id: parse_id(obj)?,
        }),
        Some("typing") => Ok(Request::Typing { to: parse_to(obj)? }),
        Some("recall") => Ok(Request::Recall {
            to: parse_to(obj)?,
            id: parse_id(obj)?,
        }),
        Some("subscribe") => parse_subscribe(obj, echo.req_id.clone()),
        _ => Err(Rejection::new(
            "unknown_action",
            "action must be one of sync, history, send, upload, ping, conversations, read, \
             typing, recall, subscribe",
        )),
    }
}

/// `to`: an account (absent is fine here; the connection's kind decides whether it is needed).
fn parse_to(obj: &Map<String, Value>) -> Result<Option<String>, Rejection> {
    match obj.get("to") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if valid_ident(s) => Ok(Some(s.clone())),
        Some(_) => Err(bad_peer()),
    }
}

/// The error for a missing, malformed or foreign `to`.
pub fn bad_peer() -> Rejection {
    Rejection::new(
        "bad_peer",
        "to must name the account you chat with (1-64 of A-Z a-z 0-9 _ . @ + -); on a \
         conversation connection only its friendphone",
    )
}

/// A message id (`read`, `recall`).
fn parse_id(obj: &Map<String, Value>) -> Result<String, Rejection> {
    match obj.get("id") {
        Some(Value::String(s)) if Cursor::parse(s).is_some() => Ok(s.clone()),
        _ => Err(Rejection::new("bad_id", "id must be a message id")),
    }
}

/// `subscribe`: `req_id`, `template_id` and `result` (`accept`, `reject`, `ban` or `filter`,
/// as `wx.requestSubscribeMessage` reported it).
fn parse_subscribe(obj: &Map<String, Value>, req_id: Option<String>) -> Result<Request, Rejection> {
    let req_id = req_id.ok_or_else(|| {
        Rejection::new(
            "bad_req_id",
            format!(
                "subscribe needs a req_id: 1 to {MAX_CLIENT_MSG_ID_LEN} of A-Z a-z 0-9 _ - . :"
            ),
        )
    })?;
    let template_id = match obj.get("template_id") {
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            s.clone()
        }
        _ => {
            return Err(Rejection::new(
                "bad_template",
                "template_id must be the notice template's id",
            ))
        }
    };
    let accepted = match obj.get("result").and_then(Value::as_str) {
        Some("accept") => true,
        Some("reject" | "ban" | "filter") => false,
        _ => {
            return Err(Rejection::new(
                "bad_result",
                "result must be accept, reject, ban or filter (what wx.requestSubscribeMessage reported)",
            ))
        }
    };
    Ok(Request::Subscribe {
        req_id,
        template_id,
        accepted,
    })
}

fn parse_upload(obj: &Map<String, Value>, req_id: Option<String>) -> Result<Request, Rejection> {
    let req_id = req_id.ok_or_else(|| {
        Rejection::new(
            "bad_req_id",
            format!("req_id must be 1 to {MAX_CLIENT_MSG_ID_LEN} of A-Z a-z 0-9 _ - . :"),
        )
    })?;
    let kind = obj
        .get("chat_type")
        .and_then(Value::as_i64)
        .and_then(ChatType::from_i64)
        .and_then(ChatType::media_kind)
        .ok_or_else(|| {
            Rejection::new("bad_chat_type", "chat_type must be 1 (image) or 2 (video)")
        })?;
    let content_type = match obj.get("content_type") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => s.clone(),
        _ => {
            return Err(Rejection::new(
                "bad_content_type",
                "content_type must be a media type such as image/jpeg",
            ))
        }
    };
    let size = obj
        .get("size")
        .and_then(Value::as_u64)
        .filter(|s| *s >= 1)
        .ok_or_else(|| Rejection::new("bad_size", "size must be the file's size in bytes"))?;
    let dim = |k: &str| match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_DIMENSION as u64).contains(n))
            .map(|n| Some(n as u32))
            .ok_or(()),
    };
    let dims = match (dim("width"), dim("height")) {
        (Ok(None), Ok(None)) => None,
        (Ok(Some(w)), Ok(Some(h))) => Some((w, h)),
        _ => {
            return Err(Rejection::new(
                "bad_dimensions",
                format!(
                    "width and height go together, each a whole number from 1 to {MAX_DIMENSION}"
                ),
            ))
        }
    };
    Ok(Request::Upload(TicketRequest {
        req_id,
        kind,
        content_type,
        size,
        dims,
    }))
}

/// A media send's `chat_content` (and `poster`): an issued key of the right kind.
fn parse_media_ref(
    obj: &Map<String, Value>,
    kind: MediaKind,
    content: &str,
) -> Result<MediaRef, Rejection> {
    let bad = |what: &str| {
        Rejection::new(
            "bad_media_key",
            format!("{what} is not a key from an upload ticket"),
        )
    };
    let key = MediaKey::parse(content).ok_or_else(|| bad("chat_content"))?;
    if key.kind != kind {
        return Err(Rejection::new(
            "media_mismatch",
            format!(
                "chat_content was uploaded with a ticket for another kind than {}",
                kind.noun()
            ),
        ));
    }
    let poster = match obj.get("poster") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if kind == MediaKind::Video => {
            let p = MediaKey::parse(p).ok_or_else(|| bad("poster"))?;
            if p.kind != MediaKind::Image {
                return Err(Rejection::new(
                    "media_mismatch",
                    "poster must be uploaded with an image ticket",
                ));
            }
            Some(p)
        }
        Some(_) => {
            return Err(Rejection::new(
                "bad_media_key",
                "poster is an image key, and only for videos",
            ))
        }
    };
    Ok(MediaRef { key, poster })
}

fn parse_limit(obj: &Map<String, Value>, limits: &Limits) -> Result<usize, Rejection> {
    let bad = || {
        Rejection::new(
            "bad_limit",
            format!("limit must be a whole number from 1 to {}", limits.page_max),
        )
    };
    match obj.get("limit") {
        None | Some(Value::Null) => Ok(limits.page_default),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) if n >= 1 && n <= limits.page_max as u64 => Ok(n as usize),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

fn parse_send(
    obj: &Map<String, Value>,
    client_msg_id: Option<String>,
    limits: &Limits,
) -> Result<Request, Rejection> {
    let to = parse_to(obj)?;
    // userInfo / friendInfo (the seed's self-declared identity) are ignored on purpose: the
    // sender is the authenticated connection's account, the receiver its peer.
    let chat_type = obj
        .get("chat_type")
        .and_then(Value::as_i64)
        .and_then(ChatType::from_i64)
        .ok_or_else(|| {
            Rejection::new(
                "bad_chat_type",
                "chat_type must be 0 (text), 1 (image) or 2 (video)",
            )
        })?;
    let content = match obj.get("chat_content") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(Rejection::new(
                "empty_content",
                "chat_content must be a string",
            ))
        }
    };
    if content.trim().is_empty() {
        return Err(Rejection::new("empty_content", "chat_content is empty"));
    }
    match chat_type {
        ChatType::Text if content.len() > limits.max_content_bytes => Err(Rejection::new(
            "content_too_long",
            format!("text is limited to {} bytes", limits.max_content_bytes),
        )),
        ChatType::Image | ChatType::Video if looks_like_url(&content) => {
            if !valid_media_url(&content, &limits.external_media_hosts) {
                let hosts = match limits.external_media_hosts.is_empty() {
                    true => String::new(),
                    false => format!(" on {}", limits.external_media_hosts.join(", ")),
                };
                return Err(Rejection::new(
                    "bad_media_url",
                    format!("image and video URLs are https URLs of at most {MAX_MEDIA_URL_BYTES} bytes{hosts}"),
                ));
            }
            if !matches!(obj.get("poster"), None | Some(Value::Null)) {
                return Err(Rejection::new(
                    "bad_media_key",
                    "poster goes with an uploaded video key, not a URL",
                ));
            }
            Ok(Request::Send(SendRequest {
                to,
                client_msg_id,
                chat_type,
                content,
                media: None,
            }))
        }
        ChatType::Image | ChatType::Video => {
            let kind = chat_type.media_kind().expect("a media chat type");
            let media = parse_media_ref(obj, kind, &content)?;
            Ok(Request::Send(SendRequest {
                to,
                client_msg_id,
                chat_type,
                content,
                media: Some(media),
            }))
        }
        ChatType::Text => Ok(Request::Send(SendRequest {
            to,
            client_msg_id,
            chat_type,
            content,
            media: None,
        })),
    }
}

/// Media sends name either an off-site URL (as the seed did) or an uploaded key.
/// (Keys never contain a colon.)
fn looks_like_url(s: &str) -> bool {
    s.contains(':')
}

fn valid_client_msg_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLIENT_MSG_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// An off-site media URL: `https`, short, no blanks, no user info, and on one of `hosts` (any
/// host when it is empty).
fn valid_media_url(s: &str, hosts: &[String]) -> bool {
    let Some(rest) = s.strip_prefix("https://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _port)| host)
        .to_ascii_lowercase();
    s.len() <= MAX_MEDIA_URL_BYTES
        && !s.chars().any(char::is_whitespace)
        && !authority.contains('@')
        && !host.is_empty()
        && (hosts.is_empty() || hosts.contains(&host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::new_message_id;

    fn limits() -> Limits {
        Limits::default()
    }

    fn parse(s: &str) -> Result<Request, Rejection> {
        parse_request(s, &limits())
    }

    fn code(s: &str) -> &'static str {
        parse(s).unwrap_err().error
    }

    #[test]
    fn actions_parse_with_defaults() {
        assert_eq!(
            parse(r#"{"action":"sync"}"#),
            Ok(Request::Sync {
                to: None,
                limit: 20
            })
        );
        assert_eq!(
            parse(r#"{"action":"sync","limit":5,"to":"222"}"#),
            Ok(Request::Sync {
                to: Some("222".into()),
                limit: 5
            })
        );
        assert_eq!(parse(r#"{"action":"ping"}"#), Ok(Request::Ping));
        let id = new_message_id(1_700_000_000_000);
        assert_eq!(
            parse(&format!(
                r#"{{"action":"history","before":"{id}","limit":3}}"#
            )),
            Ok(Request::History {
                to: None,
                before: Cursor::parse(&id),
                limit: 3
            })
        );
        assert_eq!(
            parse(r#"{"action":"send","client_msg_id":"c-1","chat_type":0,"chat_content":"hi"}"#),
            Ok(Request::Send(SendRequest {
                to: None,
                client_msg_id: Some("c-1".into()),
                chat_type: ChatType::Text,
                content: "hi".into(),
                media: None,
            }))
        );
    }

    #[test]
    fn the_seed_clients_chat_info_is_a_send_and_its_identity_claims_are_ignored() {
        // GIVEN the seed client's chatInfo, claiming to be someone else
        let frame = r#"{"friendInfo":{"account":"x"},"userInfo":{"account":"victim"},
                        "chat_content":"https://x/y.png","chat_type":1}"#;
        // THEN it is a send whose only inputs are type and content
        assert_eq!(
            parse(frame),
            Ok(Request::Send(SendRequest {
                to: None,
                client_msg_id: None,
                chat_type: ChatType::Image,
                content: "https://x/y.png".into(),
                media: None,
            }))
        );
    }

    #[test]
    fn bad_frames_get_specific_codes() {
        assert_eq!(code("not json"), "bad_json");
        assert_eq!(code("[1,2]"), "bad_json");
        assert_eq!(code(r#""sync""#), "bad_json");
        assert_eq!(code(r#"{"action":"dance"}"#), "unknown_action");
        assert_eq!(code(r#"{"action":7}"#), "unknown_action");
        assert_eq!(code(r#"{}"#), "unknown_action");
        assert_eq!(
            code(r#"{"action":"send","chat_type":3,"chat_content":"x"}"#),
            "bad_chat_type"
        );
        assert_eq!(
            code(r#"{"action":"send","chat_type":"0","chat_content":"x"}"#),
            "bad_chat_type"
        );
        assert_eq!(
            code(r#"{"action":"send","chat_type":0,"chat_content":"  "}"#),
            "empty_content"
        );
        assert_eq!(code(r#"{"action":"send","chat_type":0}"#), "empty_content");
        assert_eq!(
            code(r#"{"action":"send","chat_type":1,"chat_content":"javascript:x"}"#),
            "bad_media_url"
        );
        assert_eq!(
            code(r#"{"action":"send","chat_type":1,"chat_content":"http://x/y.png"}"#),
            "bad_media_url",
            "https only"
        );
        assert_eq!(
            code(r#"{"action":"send","chat_type":1,"chat_content":"https://a@x/y.png"}"#),
            "bad_media_url",
            "no user info"
        );
        assert_eq!(code(r#"{"action":"sync","limit":0}"#), "bad_limit");
        assert_eq!(code(r#"{"action":"sync","limit":101}"#), "bad_limit");
        assert_eq!(code(r#"{"action":"sync","limit":2.5}"#), "bad_limit");
        assert_eq!(code(r#"{"action":"history","before":"zzz"}"#), "bad_cursor");
        assert_eq!(
            code(r#"{"action":"send","client_msg_id":"a b","chat_type":0,"chat_content":"x"}"#),
            "bad_client_msg_id"
        );
    }

    #[test]
    fn content_limit_counts_utf8_bytes_and_rejections_echo_the_client_msg_id() {
        let max = limits().max_content_bytes;
        let ok = "字".repeat(max / 3);
        let over = "字".repeat(max / 3 + 1);
        let frame = |c: &str| {
            format!(
                r#"{{"action":"send","client_msg_id":"k1","chat_type":0,"chat_content":"{c}"}}"#
            )
        };
        assert!(parse(&frame(&ok)).is_ok());
        let r = parse(&frame(&over)).unwrap_err();
        assert_eq!(r.error, "content_too_long");
        assert_eq!(r.echo.client_msg_id.as_deref(), Some("k1"));
    }

    #[test]
    fn parser_text_never_reaches_the_client() {
        let r = parse(r#"{"action": "#).unwrap_err();
        assert!(!r.msg.contains("EOF") && !r.msg.contains("line"));
    }
    #[test]
    fn inbox_actions_parse_and_name_their_errors() {
        let id = new_message_id(1_700_000_000_000);
        assert_eq!(
            parse(&format!(r#"{{"action":"read","to":"222","id":"{id}"}}"#)),
            Ok(Request::Read {
                to: Some("222".into()),
                id: id.clone()
            })
        );
        assert_eq!(
            parse(&format!(r#"{{"action":"recall","id":"{id}"}}"#)),
            Ok(Request::Recall {
                to: None,
                id: id.clone()
            })
        );
        assert_eq!(
            parse(r#"{"action":"typing","to":"222"}"#),
            Ok(Request::Typing {
                to: Some("222".into())
            })
        );
        let cursor = ListCursor::of(1_700_000_000_000, "222");
        assert_eq!(
            parse(&format!(
                r#"{{"action":"conversations","limit":5,"before":"{}"}}"#,
                cursor.as_str()
            )),
            Ok(Request::Conversations {
                before: Some(cursor),
                limit: 5
            })
        );
        assert_eq!(code(r#"{"action":"read","to":"222"}"#), "bad_id");
        assert_eq!(
            code(r#"{"action":"recall","to":"222","id":"m1"}"#),
            "bad_id"
        );
        assert_eq!(code(r#"{"action":"typing","to":"a b"}"#), "bad_peer");
        assert_eq!(code(r#"{"action":"sync","to":222}"#), "bad_peer");
        assert_eq!(
            code(r#"{"action":"send","to":"","chat_type":0,"chat_content":"x"}"#),
            "bad_peer"
        );
        assert_eq!(
            code(r#"{"action":"conversations","before":"x"}"#),
            "bad_cursor"
        );
        assert_eq!(code(r#"{"action":"conversations","limit":0}"#), "bad_limit");
    }

    #[test]
    fn off_site_media_urls_are_held_to_the_host_list_when_one_is_set() {
        let limits = Limits {
            external_media_hosts: vec!["cdn.example.com".into()],
            ..Limits::default()
        };
        let send = |url: &str| {
            let body =
                serde_json::json!({"action":"send","to":"222","chat_type":1,"chat_content":url});
            parse_request(&body.to_string(), &limits)
        };
        assert!(send("https://cdn.example.com/a.jpg").is_ok());
        assert!(send("https://CDN.example.com:8443/a.jpg?x=1").is_ok());
        for refused in [
            "https://evil.example.com/a.jpg",
            "https://cdn.example.com.evil.net/a.jpg",
            "https://cdn.example.com@evil.net/a.jpg",
            "http://cdn.example.com/a.jpg",
        ] {
            let rej = send(refused).unwrap_err();
            assert_eq!(rej.error, "bad_media_url", "{refused}");
            assert!(rej.msg.contains("cdn.example.com"), "{}", rej.msg);
        }
        // without a list, any https host
        assert!(parse(
            r#"{"action":"send","to":"222","chat_type":1,"chat_content":"https://any.host/a.jpg"}"#
        )
        .is_ok());
    }
}
