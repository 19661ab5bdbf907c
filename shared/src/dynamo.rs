//! DynamoDB adapters for the storage ports. Item layouts (see also docs/architecture.md):
//!
//! Connections table, key `connection_id`:
//!   `conversation` (key of the `by_conversation` index), `app_sid`, `user`, `friend`, `name`,
//!   `avatar`, `connected_at` (ms), `expires_at` (s, the table's TTL attribute).
//!
//! Messages table, key (`pk`, `sk`):
//! - message: `pk` = conversation key, `sk` = `m#<ulid>`; `sender`, `receiver`, `app_sid`,
//!   `chat_type`, `content`, `created_at`, `client_msg_id`?; for uploaded media also
//!   `media_type`, `media_size`, `media_w`?, `media_h`?, `poster`? (`content` is then the key).
//! - profile: `pk` = conversation key, `sk` = `p#<account>`; `name`, `avatar`.
//! - idempotency marker: `pk` = `d#<conversation key>#<sender>#<client_msg_id>`, `sk` = `d`;
//!   a copy of the message it guards, so a duplicate is answered without another read.
//!
//! Inside a conversation partition `m#…` sorts before `p#…` and nothing sorts before `m#`, so
//! "latest page plus profiles" is one descending Query over `[m#, p$]`, and "older than
//! cursor" is `sk < m#<cursor>`.

use crate::error::{Error, Result};
use crate::media::MediaInfo;
use crate::model::{
    Appended, ChatType, ConnectionRecord, Conversation, Cursor, Message, Page, Peer, Profile,
};
use crate::ports::{
    ConnectionLookup, ConnectionRegister, ConnectionRemove, MessageStore, ProfileWrite,
};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, Select, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

/// Name of the connections table's index by conversation (declared in template.yaml).
pub const BY_CONVERSATION_INDEX: &str = "by_conversation";

type Item = HashMap<String, AttributeValue>;

/// Both tables behind one client, built once per cold start.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    messages_table: String,
    connections_table: String,
}

impl DynamoStore {
    pub fn new(client: Client, messages_table: &str, connections_table: &str) -> Self {
        DynamoStore {
            client,
            messages_table: messages_table.to_owned(),
            connections_table: connections_table.to_owned(),
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, k: &str) -> Result<String> {
    match item.get(k) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(Error::Corrupt(format!(
            "attribute {k} missing or not a string"
        ))),
    }
}

fn get_s_or_empty(item: &Item, k: &str) -> String {
    match item.get(k) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    }
}

fn get_n(item: &Item, k: &str) -> Result<i64> {
    match item.get(k) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| Error::Corrupt(format!("attribute {k} is not an integer"))),
        _ => Err(Error::Corrupt(format!(
            "attribute {k} missing or not a number"
        ))),
    }
}

const MESSAGE_PREFIX: &str = "m#";
const PROFILE_PREFIX: &str = "p#";
/// Upper bound of the "messages and profiles" range (`$` sorts just after `#`).
const PROFILE_RANGE_END: &str = "p$";

fn message_item(m: &Message) -> Item {
    let mut item = message_attributes(m);
    item.insert("pk".into(), s(m.conversation().key()));
    item.insert("sk".into(), s(format!("{MESSAGE_PREFIX}{}", m.id)));
    item
}

fn message_attributes(m: &Message) -> Item {
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
fn media_from(item: &Item) -> Result<Option<MediaInfo>> {
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
        poster: item.get("poster").and_then(|v| v.as_s().ok()).cloned(),
    }))
}

fn message_from(item: &Item) -> Result<Message> {
    Ok(Message {
        id: get_s(item, "id")?,
        app_sid: get_s(item, "app_sid")?,
        sender: get_s(item, "sender")?,
        receiver: get_s(item, "receiver")?,
        chat_type: ChatType::from_i64(get_n(item, "chat_type")?)
            .ok_or_else(|| Error::Corrupt("unknown chat_type".into()))?,
        content: get_s(item, "content")?,
        created_at_ms: get_n(item, "created_at")?,
        client_msg_id: item
            .get("client_msg_id")
            .and_then(|v| v.as_s().ok())
            .cloned(),
        media: media_from(item)?,
    })
}

fn dedup_key(m: &Message, client_msg_id: &str) -> String {
    format!(
        "d#{}#{}#{}",
        m.conversation().key(),
        m.sender,
        client_msg_id
    )
}

fn profile_entry(item: &Item) -> Option<(String, Profile)> {
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

fn is_message(item: &Item) -> bool {
    matches!(item.get("sk"), Some(AttributeValue::S(sk)) if sk.starts_with(MESSAGE_PREFIX))
}

/// Newest-first items → oldest-first page of at most `limit`.
fn page_from(newest_first: Vec<Message>, limit: usize, profiles: HashMap<String, Profile>) -> Page {
    let has_more = newest_first.len() > limit;
    let mut messages: Vec<Message> = newest_first.into_iter().take(limit).collect();
    messages.reverse();
    Page {
        messages,
        has_more,
        profiles,
    }
}

impl ConnectionRegister for DynamoStore {
    async fn register(&self, r: &ConnectionRecord) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.connections_table)
            .item("connection_id", s(&r.connection_id))
            .item("conversation", s(r.conversation().key()))
            .item("app_sid", s(&r.app_sid))
            .item("user", s(&r.user))
            .item("friend", s(&r.friend))
            .item("name", s(&r.profile.name))
            .item("avatar", s(&r.profile.avatar))
            .item("connected_at", n(r.connected_at_ms))
            .item("expires_at", n(r.expires_at))
            .send()
            .await
            .map_err(|e| Error::from(aws_sdk_dynamodb::Error::from(e)))?;
        Ok(())
    }
}

impl ConnectionRemove for DynamoStore {
    async fn remove(&self, connection_id: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(connection_id))
            .send()
            .await
            .map_err(|e| Error::from(aws_sdk_dynamodb::Error::from(e)))?;
        Ok(())
    }

    async fn remove_gone(&self, connection_id: &str, connected_before_ms: i64) -> Result<bool> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(connection_id))
            .condition_expression("connected_at < :cutoff")
            .expression_attribute_values(":cutoff", n(connected_before_ms))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // Absent, or too young to be judged gone.
            Err(SdkError::ServiceError(ctx))
                if ctx.err().is_conditional_check_failed_exception() =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::from(aws_sdk_dynamodb::Error::from(e))),
        }
    }
}

impl ConnectionLookup for DynamoStore {
    async fn get(&self, connection_id: &str, now_s: i64) -> Result<Option<ConnectionRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(connection_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::from(aws_sdk_dynamodb::Error::from(e)))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let record = ConnectionRecord {
            connection_id: get_s(&item, "connection_id")?,
            app_sid: get_s(&item, "app_sid")?,
            user: get_s(&item, "user")?,
            friend: get_s(&item, "friend")?,
            profile: Profile {
                name: get_s_or_empty(&item, "name"),
                avatar: get_s_or_empty(&item, "avatar"),
            },
            connected_at_ms: get_n(&item, "connected_at")?,
            expires_at: get_n(&item, "expires_at")?,
        };
        // TTL deletion lags by up to days: an expired record is already dead.
        Ok((record.expires_at > now_s).then_some(record))
    }

    async fn in_conversation(&self, conversation: &Conversation, now_s: i64) -> Result<Vec<Peer>> {
        let out = self
            .client
            .query()
            .table_name(&self.connections_table)
            .index_name(BY_CONVERSATION_INDEX)
            .key_condition_expression("conversation = :c")
            .filter_expression("expires_at > :now")
            .expression_attribute_values(":c", s(conversation.key()))
            .expression_attribute_values(":now", n(now_s))
            .send()
            .await
            .map_err(|e| Error::from(aws_sdk_dynamodb::Error::from(e)))?;
        if out.last_evaluated_key.is_some() {
            // 1 MB of index entries is thousands of connections for two people.
            tracing::warn!(conversation = %conversation.key(), "connection list truncated at 1 MB");
        }
        out.items
            .unwrap_or_default()
            .iter()
            .map(|item| {
                Ok(Peer {
                    connection_id: get_s(item, "connection_id")?,
                    user: get_s(item, "user")?,
                })
            })
            .collect()
    }
}

impl ProfileWrite for DynamoStore {
    async fn put_profile(
        &self,
        conversation: &Conversation,
        user: &str,
        p: &Profile,
    ) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.messages_table)
            .item("pk", s(conversation.key()))
            .item("sk", s(format!("{PROFILE_PREFIX}{user}")))
            .item("name", s(&p.name))
            .item("avatar", s(&p.avatar))
            .send()
            .await
            .map_err(|e| Error::from(aws_sdk_dynamodb::Error::from(e)))?;
        Ok(())
    }
}

impl MessageStore for DynamoStore {
    async fn append(&self, m: &Message) -> Result<Appended> {
        let put_message = Put::builder()
            .table_name(&self.messages_table)
            .set_item(Some(message_item(m)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(Error::store)?;
        let Some(client_msg_id) = &m.client_msg_id else {
            // Without a client_msg_id (the seed's client) there is nothing to deduplicate on.
            let put = self
                .client
                .put_item()
                .table_name(&self.messages_table)
                .set_item(Some(message_item(m)))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            return match put {
                Ok(_) => Ok(Appended::Stored(m.clone())),
                // The id is fresh from this invocation: the item can only exist because an
                // SDK retry follows an attempt that succeeded but whose answer was lost.
                Err(SdkError::ServiceError(ctx))
                    if ctx.err().is_conditional_check_failed_exception() =>
                {
                    Ok(Appended::Stored(m.clone()))
                }
                Err(e) => Err(Error::from(aws_sdk_dynamodb::Error::from(e))),
            };
        };
        let mut marker = message_attributes(m);
        marker.insert("pk".into(), s(dedup_key(m, client_msg_id)));
        marker.insert("sk".into(), s("d"));
        let put_marker = Put::builder()
            .table_name(&self.messages_table)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(Error::store)?;
        let result = self
            .client
            .transact_write_items()
            // SDK retries of this very call are idempotent for 10 minutes.
            .client_request_token(&m.id)
            .transact_items(TransactWriteItem::builder().put(put_message).build())
            .transact_items(TransactWriteItem::builder().put(put_marker).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Appended::Stored(m.clone())),
            Err(SdkError::ServiceError(ctx)) => match ctx.err() {
                TransactWriteItemsError::TransactionCanceledException(tc) => {
                    let reasons = tc.cancellation_reasons();
                    let marker_reason = reasons.get(1);
                    if marker_reason.and_then(|r| r.code()) != Some("ConditionalCheckFailed") {
                        return Err(Error::store(aws_sdk_dynamodb::Error::from(
                            SdkError::ServiceError(ctx),
                        )));
                    }
                    match marker_reason.and_then(|r| r.item()) {
                        Some(old) => Ok(Appended::Duplicate(message_from(old)?)),
                        None => self.read_marker(m, client_msg_id).await,
                    }
                }
                _ => Err(Error::store(aws_sdk_dynamodb::Error::from(
                    SdkError::ServiceError(ctx),
                ))),
            },
            Err(e) => Err(Error::from(aws_sdk_dynamodb::Error::from(e))),
        }
    }

    async fn latest(&self, conversation: &Conversation, limit: usize) -> Result<Page> {
        // One request: profiles (`p#`, at most two) come first in descending order, then the
        // newest messages. One extra message tells whether older ones exist.
        let out = self
            .client
            .query()
            .table_name(&self.messages_table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(conversation.key()))
            .expression_attribute_values(":lo", s(MESSAGE_PREFIX))
            .expression_attribute_values(":hi", s(PROFILE_RANGE_END))
            .scan_index_forward(false)
            .consistent_read(true)
            .select(Select::AllAttributes)
            .limit(i32::try_from(limit + 3).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| Error::from(aws_sdk_dynamodb::Error::from(e)))?;
        let mut profiles = HashMap::new();
        let mut newest_first = Vec::new();
        for item in out.items.unwrap_or_default() {
            if is_message(&item) {
                newest_first.push(message_from(&item)?);
            } else if let Some((user, p)) = profile_entry(&item) {
                profiles.insert(user, p);
            }
        }
        Ok(page_from(newest_first, limit, profiles))
    }

    async fn before(
        &self,
        conversation: &Conversation,
        before: &Cursor,
        limit: usize,
    ) -> Result<Page> {
        let query = self
            .client
            .query()
            .table_name(&self.messages_table)
            .key_condition_expression("pk = :pk AND sk < :before")
            .expression_attribute_values(":pk", s(conversation.key()))
            .expression_attribute_values(":before", s(format!("{MESSAGE_PREFIX}{before}")))
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .send();
        let profiles = self
            .client
            .query()
            .table_name(&self.messages_table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", s(conversation.key()))
            .expression_attribute_values(":p", s(PROFILE_PREFIX))
            .send();
        let (out, profiles) = futures::join!(query, profiles);
        let out = out.map_err(|e| Error::from(aws_sdk_dynamodb::Error::from(e)))?;
        let profiles = profiles
            .map_err(|e| Error::from(aws_sdk_dynamodb::Error::from(e)))?
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(profile_entry)
            .collect();
        let newest_first = out
            .items
            .unwrap_or_default()
            .iter()
            .filter(|i| is_message(i))
            .map(message_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_from(newest_first, limit, profiles))
    }
}

impl DynamoStore {
    /// Fallback for a duplicate whose cancellation reason carried no item.
    async fn read_marker(&self, m: &Message, client_msg_id: &str) -> Result<Appended> {
        let out = self
            .client
            .get_item()
            .table_name(&self.messages_table)
            .key("pk", s(dedup_key(m, client_msg_id)))
            .key("sk", s("d"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::from(aws_sdk_dynamodb::Error::from(e)))?;
        let item = out
            .item
            .ok_or_else(|| Error::Corrupt("duplicate marker vanished".into()))?;
        Ok(Appended::Duplicate(message_from(&item)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(cmid: Option<&str>) -> Message {
        Message {
            id: crate::model::new_message_id(1_700_000_000_000),
            app_sid: "app".into(),
            sender: "b".into(),
            receiver: "a".into(),
            chat_type: ChatType::Video,
            content: "https://v/1.mp4".into(),
            created_at_ms: 1_700_000_000_000,
            client_msg_id: cmid.map(str::to_owned),
            media: None,
        }
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
        for m in [message(Some("k1")), message(None), uploaded] {
            let item = message_item(&m);
            assert_eq!(message_from(&item).unwrap(), m);
            assert_eq!(item["pk"].as_s().unwrap(), "c#app#a#b");
            assert!(is_message(&item));
        }
    }

    #[test]
    fn key_ranges_keep_item_kinds_apart() {
        // Messages sort below profiles, profiles below the range end, nothing below "m#".
        let m = format!(
            "{MESSAGE_PREFIX}{}",
            crate::model::new_message_id(i64::MAX / 2)
        );
        let p = format!("{PROFILE_PREFIX}zzzzzzzz");
        assert!(MESSAGE_PREFIX < m.as_str() && m.as_str() < p.as_str());
        assert!(p.as_str() < PROFILE_RANGE_END);
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
                id: crate::model::new_message_id(1_700_000_000_000 - i),
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
