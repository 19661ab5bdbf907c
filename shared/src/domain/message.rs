//! Messages and what a page of them carries. Plain Rust.

use crate::domain::ids::Conversation;
use crate::domain::moderation::Screening;
use media_key::MediaKind;
use std::collections::HashMap;

/// Message kinds, numbered as in the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatType {
    Text = 0,
    Image = 1,
    Video = 2,
}

impl ChatType {
    pub fn from_i64(n: i64) -> Option<Self> {
        match n {
            0 => Some(ChatType::Text),
            1 => Some(ChatType::Image),
            2 => Some(ChatType::Video),
            _ => None,
        }
    }
    pub fn as_u8(self) -> u8 {
        self as u8
    }
    /// The kind of media a message of this type carries, if any.
    pub fn media_kind(self) -> Option<MediaKind> {
        match self {
            ChatType::Text => None,
            ChatType::Image => Some(MediaKind::Image),
            ChatType::Video => Some(MediaKind::Video),
        }
    }
}

/// Media details stored with a message whose content is an uploaded object's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    pub content_type: String,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The message key of a video's poster image.
    pub poster: Option<String>,
}

/// Display name and avatar URL of an account, from its token's `name` / `avatar` claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub avatar: String,
}

/// A stored chat message. `id` is a ULID: its text sorts by creation time, then randomly, which
/// gives every conversation one total order that both participants read identically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub app_sid: String,
    pub sender: String,
    pub receiver: String,
    pub chat_type: ChatType,
    pub content: String,
    pub created_at_ms: i64,
    pub client_msg_id: Option<String>,
    /// Set when `content` is a key in the media bucket (an uploaded image or video); `None`
    /// for text and for media sent as an off-site URL.
    pub media: Option<MediaInfo>,
    /// The sender's count of messages in this conversation, this one included (1, 2, …).
    /// `None` on messages stored before conversation entries existed.
    pub seq: Option<u64>,
    /// The conversation's sequence number: 1 for its first message, one more for each send
    /// after it, in commit order (the conversation entries' `ver`; a recall leaves it). Sent to
    /// clients as `seq`, so they can see a gap. `None` on messages stored before it was kept.
    pub conv_seq: Option<u64>,
    /// Recalled by its sender: `content` is empty and `media` gone.
    pub recalled: bool,
    /// How it stands with moderation (taken down: [`Screening::Blocked`]).
    pub screening: Screening,
}

impl Message {
    /// Taken down by moderation after it was stored: shown with no content.
    pub fn blocked(&self) -> bool {
        matches!(self.screening, Screening::Blocked { .. })
    }
}

impl Message {
    pub fn conversation(&self) -> Conversation {
        Conversation::new(&self.app_sid, &self.sender, &self.receiver)
    }
}

/// One page of a conversation, oldest message first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<Message>,
    /// Whether older messages exist before `messages[0]`.
    pub has_more: bool,
    /// Profiles of the participants known so far (a participant who never connected has none).
    pub profiles: HashMap<String, Profile>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_types_are_the_seeds_numbers() {
        assert_eq!(ChatType::from_i64(0), Some(ChatType::Text));
        assert_eq!(ChatType::from_i64(2).map(ChatType::as_u8), Some(2));
        assert_eq!(ChatType::from_i64(3), None);
        assert_eq!(ChatType::from_i64(-1), None);
    }
}
