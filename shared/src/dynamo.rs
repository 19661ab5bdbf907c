//! DynamoDB adapters for the storage ports. Item layouts (see also docs/architecture.md):
//!
//! Connections table, key `connection_id`:
//! - connection record: `app_sid`, `user`, `friend` (conversation connections only), `name`,
//!   `avatar`, `connected_at` (ms), `expires_at` (s, the table's TTL attribute), `reg` (true
//!   once it is in its user's registry), `typing_at` (ms, the typing throttle), `sends_<window>`
//!   (messages sent in that minute, `window` = epoch s / 60; a send's transaction counts one and
//!   removes older windows' counts: the rate limit). Records written
//!   before the registry existed also carry `conversation`, the key of the `by_conversation`
//!   index, which nothing reads any more.
//! - registry: `connection_id` = `r#<app>#<user>` (API Gateway's ids never contain `#`);
//!   `conns` = map of connection id → `{kind: "user"|"conversation", friend?, at, exp}`;
//!   `name`, `avatar` (the profile of the user's latest handshake), `user`, `app_sid`. No TTL:
//!   expired entries are ignored and pruned at the user's next `$connect`.
//!
//! Messages table, key (`pk`, `sk`):
//! - message: `pk` = conversation key, `sk` = `m#<ulid>`; `sender`, `receiver`, `app_sid`,
//!   `chat_type`, `content`, `created_at`, `client_msg_id`?, `seq`? (the sender's count; absent
//!   on messages from before conversation entries), `recalled`?; for uploaded media also
//!   `media_type`, `media_size`, `media_w`?, `media_h`?, `poster`? (`content` is then the key).
//! - profile: `pk` = conversation key, `sk` = `p#<account>`; `name`, `avatar`.
//! - idempotency marker: `pk` = `d#<conversation key>#<sender>#<client_msg_id>`, `sk` = `d`;
//!   a copy of the message it guards, so a duplicate is answered without another read, and
//!   `expires_at` (s, the table's TTL attribute; `IDEMPOTENCY_TTL_SECONDS` after the send).
//!   Writes treat a marker whose `expires_at` has passed as absent.
//! - conversation entry: `pk` = `i#<app>#<user>`, `sk` = `c#<peer>`; `last` (a map with the
//!   last message's attributes), `updated_at`, `sent`, `peer_sent`, `read_seq`,
//!   `peer_read_id`?, `peer_read_seq`?, `ver`, `peer_name`, `peer_avatar`, `user`, `peer`, and
//!   the keys of the sparse `by_activity` index: `inbox` (= `pk`) and `activity`
//!   (`<updated_at, 15 digits>#<peer>`).
//!
//! Inside a conversation partition `m#…` sorts before `p#…` and nothing sorts before `m#`, so
//! "latest page plus profiles" is one descending Query over `[m#, p$]`, and "older than
//! cursor" is `sk < m#<cursor>`.

use crate::error::{Error, Result};
use crate::media::MediaInfo;
use crate::model::{
    ChatType, Committed, ConnectionRecord, Conversation, Cursor, Entry, ListCursor, ListPage,
    Message, Page, Peer, Profile, RateClaim, Registry, RegistryEntry, SendCommit, Snapshot,
};
use crate::ports::{
    ConnectionLookup, ConnectionRegister, ConnectionRemove, Inbox, MessageStore, ProfileWrite,
    TypingThrottle,
};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    Select, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

/// Name of the connections table's index by conversation (declared in template.yaml; no longer
/// written or read: receivers come from the registries).
pub const BY_CONVERSATION_INDEX: &str = "by_conversation";
/// Name of the messages table's sparse index of conversation entries by last activity.
pub const BY_ACTIVITY_INDEX: &str = "by_activity";
/// Attempts at a `BatchGetItem` whose keys come back unprocessed (throttling).
const BATCH_GET_ATTEMPTS: usize = 4;

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

/// Any SDK error as a storage failure.
fn ddb<E, R>(e: SdkError<E, R>) -> Error
where
    aws_sdk_dynamodb::Error: From<SdkError<E, R>>,
{
    Error::from(aws_sdk_dynamodb::Error::from(e))
}

/// Whether an SDK error is a failed condition (an expected outcome, not a fault).
fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(e, SdkError::ServiceError(ctx) if ctx.err().code() == Some("ConditionalCheckFailedException"))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn nu(v: u64) -> AttributeValue {
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

fn get_opt_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
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

fn get_u_or_zero(item: &Item, k: &str) -> Result<u64> {
    match item.get(k) {
        None => Ok(0),
        Some(_) => u64::try_from(get_n(item, k)?)
            .map_err(|_| Error::Corrupt(format!("attribute {k} is negative"))),
    }
}

const MESSAGE_PREFIX: &str = "m#";
const PROFILE_PREFIX: &str = "p#";
/// Upper bound of the "messages and profiles" range (`$` sorts just after `#`).
const PROFILE_RANGE_END: &str = "p$";
/// Media attributes a recall removes (from a message and from an entry's `last`).
const MEDIA_ATTRIBUTES: [&str; 5] = ["media_type", "media_size", "media_w", "media_h", "poster"];

fn message_sk(id: &str) -> String {
    format!("{MESSAGE_PREFIX}{id}")
}

fn profile_sk(user: &str) -> String {
    format!("{PROFILE_PREFIX}{user}")
}

/// Key of `user`'s entry for the conversation with `peer`.
fn entry_key(app_sid: &str, user: &str, peer: &str) -> Item {
    Item::from([
        ("pk".into(), s(inbox_key(app_sid, user))),
        ("sk".into(), s(format!("c#{peer}"))),
    ])
}

fn inbox_key(app_sid: &str, user: &str) -> String {
    format!("i#{app_sid}#{user}")
}

/// Key of `user`'s registry in the connections table.
fn registry_id(app_sid: &str, user: &str) -> String {
    format!("r#{app_sid}#{user}")
}

fn message_item(m: &Message) -> Item {
    let mut item = message_attributes(m);
    item.insert("pk".into(), s(m.conversation().key()));
    item.insert("sk".into(), s(message_sk(&m.id)));
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
    if let Some(seq) = m.seq {
        item.insert("seq".into(), nu(seq));
    }
    if m.recalled {
        item.insert("recalled".into(), AttributeValue::Bool(true));
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
        poster: get_opt_s(item, "poster"),
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
        client_msg_id: get_opt_s(item, "client_msg_id"),
        media: media_from(item)?,
        seq: match item.get("seq") {
            None => None,
            Some(_) => Some(get_u_or_zero(item, "seq")?),
        },
        recalled: matches!(item.get("recalled"), Some(AttributeValue::Bool(true))),
    })
}

fn dedup_key(m: &Message, client_msg_id: &str) -> String {
    marker_key(&m.conversation(), &m.sender, client_msg_id)
}

/// The messages table's TTL attribute (epoch s). Only idempotency markers carry it.
pub const MARKER_TTL_ATTRIBUTE: &str = "expires_at";

/// The `ClientRequestToken` of a send's transaction: 32 hex digits of two FNV-1a hashes of
/// everything the commit writes and checks (its `Debug` form, streamed into the hashes: no
/// string is built), so that retries of one call share it and two different calls never do.
fn request_token(c: &SendCommit) -> String {
    use std::fmt::Write;
    struct Fnv([u64; 2]);
    impl Write for Fnv {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for h in &mut self.0 {
                *h = s.bytes().fold(*h, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
                });
            }
            Ok(())
        }
    }
    let mut fnv = Fnv([0xcbf2_9ce4_8422_2325, 0x8422_2325_cbf2_9ce4]);
    let _ = write!(fnv, "{c:?}"); // writing into a hash cannot fail
    format!("{:016x}{:016x}", fnv.0[0], fnv.0[1])
}

/// `d#<conversation key>#<sender>#<client_msg_id>`: the partition of an idempotency marker.
fn marker_key(conversation: &Conversation, sender: &str, client_msg_id: &str) -> String {
    format!("d#{}#{sender}#{client_msg_id}", conversation.key())
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

fn entry_from(item: &Item) -> Result<Entry> {
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

fn record_from(item: &Item) -> Result<ConnectionRecord> {
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
        sends: item
            .iter()
            .filter_map(|(k, v)| {
                let window = k.strip_prefix(SENDS_PREFIX)?.parse().ok()?;
                Some((window, v.as_n().ok()?.parse().ok()?))
            })
            .collect(),
    })
}

/// Attributes of a connection record counting its sends per rate window: `sends_<window>`.
const SENDS_PREFIX: &str = "sends_";

fn sends_attribute(window: i64) -> String {
    format!("{SENDS_PREFIX}{window}")
}

fn registry_entry_value(e: &RegistryEntry) -> AttributeValue {
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

fn registry_from(item: &Item) -> Result<Registry> {
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
        let mut put = self
            .client
            .put_item()
            .table_name(&self.connections_table)
            .item("connection_id", s(&r.connection_id))
            .item("app_sid", s(&r.app_sid))
            .item("user", s(&r.user))
            .item("name", s(&r.profile.name))
            .item("avatar", s(&r.profile.avatar))
            .item("connected_at", n(r.connected_at_ms))
            .item("expires_at", n(r.expires_at))
            .item("reg", AttributeValue::Bool(r.registered));
        if let Some(friend) = &r.friend {
            put = put.item("friend", s(friend));
        }
        put.send().await.map_err(ddb)?;
        Ok(())
    }

    async fn enroll(&self, r: &ConnectionRecord) -> Result<Registry> {
        // `SET conns.#c` needs the map to exist and cannot be combined with creating it, so a
        // user's very first connection takes a second write; a lost race just goes round again.
        for _ in 0..3 {
            let update = self
                .client
                .update_item()
                .table_name(&self.connections_table)
                .key("connection_id", s(registry_id(&r.app_sid, &r.user)))
                .expression_attribute_names("#name", "name")
                .expression_attribute_names("#user", "user")
                .expression_attribute_values(":name", s(&r.profile.name))
                .expression_attribute_values(":avatar", s(&r.profile.avatar))
                .expression_attribute_values(":user", s(&r.user))
                .expression_attribute_values(":app", s(&r.app_sid))
                .return_values(ReturnValue::AllNew);
            let added = update
                .clone()
                .update_expression(
                    "SET conns.#c = :e, #name = :name, avatar = :avatar, #user = :user, app_sid = :app",
                )
                .condition_expression("attribute_exists(conns)")
                .expression_attribute_names("#c", &r.connection_id)
                .expression_attribute_values(":e", registry_entry_value(&r.registry_entry()))
                .send()
                .await;
            match added {
                Ok(out) => return registry_from(&out.attributes.unwrap_or_default()),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(ddb(e)),
            }
            let conns = AttributeValue::M(Item::from([(
                r.connection_id.clone(),
                registry_entry_value(&r.registry_entry()),
            )]));
            let created = update
                .update_expression(
                    "SET conns = :conns, #name = :name, avatar = :avatar, #user = :user, app_sid = :app",
                )
                .condition_expression("attribute_not_exists(conns)")
                .expression_attribute_values(":conns", conns)
                .send()
                .await;
            match created {
                Ok(out) => return registry_from(&out.attributes.unwrap_or_default()),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(ddb(e)),
            }
        }
        Err(Error::Contention("registry"))
    }

    async fn prune(&self, app_sid: &str, user: &str, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(app_sid, user)))
            .condition_expression("attribute_exists(conns)");
        let mut paths = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            update = update.expression_attribute_names(format!("#c{i}"), id);
            paths.push(format!("conns.#c{i}"));
        }
        match update
            .update_expression(format!("REMOVE {}", paths.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(ddb(e)),
        }
    }
}

impl DynamoStore {
    /// Takes one connection out of a registry if the entry is still the one made at
    /// `connected_at_ms` (and, with `before_ms`, older than that). Whether it was there.
    async fn unregister(
        &self,
        app_sid: &str,
        user: &str,
        connection_id: &str,
        connected_at_ms: i64,
        before_ms: Option<i64>,
    ) -> Result<bool> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(app_sid, user)))
            .update_expression("REMOVE conns.#c")
            .expression_attribute_names("#c", connection_id)
            // `at` is one of DynamoDB's reserved words.
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":at", n(connected_at_ms));
        update = match before_ms {
            Some(cutoff) => update
                .condition_expression("conns.#c.#at = :at AND conns.#c.#at < :cutoff")
                .expression_attribute_values(":cutoff", n(cutoff)),
            None => update.condition_expression("conns.#c.#at = :at"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(ddb(e)),
        }
    }
}

impl ConnectionRemove for DynamoStore {
    async fn remove(&self, connection_id: &str) -> Result<()> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(connection_id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(ddb)?;
        if let Some(old) = out.attributes.filter(|a| a.contains_key("user")) {
            let r = record_from(&old)?;
            if r.registered {
                self.unregister(&r.app_sid, &r.user, connection_id, r.connected_at_ms, None)
                    .await?;
            }
        }
        Ok(())
    }

    async fn remove_gone(&self, app_sid: &str, peer: &Peer, before_ms: i64) -> Result<bool> {
        let id = peer.connection_id();
        let record = self
            .client
            .delete_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(id))
            .condition_expression("connected_at < :cutoff")
            .expression_attribute_values(":cutoff", n(before_ms))
            .send();
        let entry = self.unregister(
            app_sid,
            &peer.user,
            id,
            peer.connection.connected_at_ms,
            Some(before_ms),
        );
        let (record, entry) = futures::join!(record, entry);
        let record = match record {
            Ok(_) => true,
            // Absent, or too young to be judged gone.
            Err(e) if condition_failed(&e) => false,
            Err(e) => return Err(ddb(e)),
        };
        Ok(record || entry?)
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
            .map_err(ddb)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let record = record_from(&item)?;
        // TTL deletion lags by up to days: an expired record is already dead.
        Ok((record.expires_at > now_s).then_some(record))
    }

    async fn registry(&self, app_sid: &str, user: &str) -> Result<Option<Registry>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(app_sid, user)))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        out.item.as_ref().map(registry_from).transpose()
    }
}

impl TypingThrottle for DynamoStore {
    async fn claim_typing(&self, connection_id: &str, now_ms: i64, gap_ms: i64) -> Result<bool> {
        let out = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(connection_id))
            .update_expression("SET typing_at = :now")
            .condition_expression(
                "attribute_exists(connection_id) AND \
                 (attribute_not_exists(typing_at) OR typing_at <= :cutoff)",
            )
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":cutoff", n(now_ms - gap_ms))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(ddb(e)),
        }
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
            .set_item(Some(self.profile_put(conversation, user, p)))
            .table_name(&self.messages_table)
            .send()
            .await
            .map_err(ddb)?;
        Ok(())
    }
}

impl DynamoStore {
    fn profile_put(&self, conversation: &Conversation, user: &str, p: &Profile) -> Item {
        Item::from([
            ("pk".into(), s(conversation.key())),
            ("sk".into(), s(profile_sk(user))),
            ("name".into(), s(&p.name)),
            ("avatar".into(), s(&p.avatar)),
        ])
    }

    /// One `BatchGetItem` over both tables, consistent, with unprocessed keys asked again a
    /// bounded number of times (they come back only under throttling).
    async fn batch_get(&self, messages: Vec<Item>, connections: Vec<Item>) -> Result<Vec<Item>> {
        let mut request: HashMap<String, KeysAndAttributes> = HashMap::new();
        for (table, keys) in [
            (&self.messages_table, messages),
            (&self.connections_table, connections),
        ] {
            if !keys.is_empty() {
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(Error::store)?;
                request.insert(table.clone(), ka);
            }
        }
        let mut items = Vec::new();
        for attempt in 0..BATCH_GET_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
            }
            let out = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(ddb)?;
            for (_, table_items) in out.responses.unwrap_or_default() {
                items.extend(table_items);
            }
            request = out.unprocessed_keys.unwrap_or_default();
            if request.is_empty() {
                return Ok(items);
            }
        }
        Err(Error::Contention("batch read"))
    }
}

impl MessageStore for DynamoStore {
    async fn snapshot(
        &self,
        conversation: &Conversation,
        me: &str,
        message_id: Option<&str>,
    ) -> Result<Snapshot> {
        let app = &conversation.app_sid;
        let [a, b] = conversation.members();
        let peer = if a == me { b } else { a };
        let key = |pk: String, sk: String| Item::from([("pk".into(), s(pk)), ("sk".into(), s(sk))]);
        let mut messages = vec![
            entry_key(app, me, peer),
            entry_key(app, peer, me),
            key(conversation.key(), profile_sk(me)),
            key(conversation.key(), profile_sk(peer)),
        ];
        if let Some(id) = message_id {
            messages.push(key(conversation.key(), message_sk(id)));
        }
        let connections = [me, peer]
            .iter()
            .map(|u| Item::from([("connection_id".into(), s(registry_id(app, u)))]))
            .collect();
        let items = self.batch_get(messages, connections).await?;
        let mut snap = Snapshot::default();
        let mine_pk = inbox_key(app, me);
        for item in &items {
            if item.contains_key("connection_id") {
                snap.registries.push(registry_from(item)?);
            } else if is_message(item) {
                snap.message = Some(message_from(item)?);
            } else if let Some((user, p)) = profile_entry(item) {
                snap.profiles.insert(user, p);
            } else if item.get("pk").and_then(|v| v.as_s().ok()) == Some(&mine_pk) {
                snap.mine = Some(entry_from(item)?);
            } else {
                snap.theirs = Some(entry_from(item)?);
            }
        }
        Ok(snap)
    }

    async fn commit_send(&self, c: &SendCommit) -> Result<Committed> {
        let m = &c.message;
        let put_message = Put::builder()
            .table_name(&self.messages_table)
            .set_item(Some(message_item(m)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(Error::store)?;
        let mut items = vec![TransactWriteItem::builder().put(put_message).build()];
        let marker_at = match &m.client_msg_id {
            None => None,
            Some(client_msg_id) => {
                let mut marker = message_attributes(m);
                marker.insert("pk".into(), s(dedup_key(m, client_msg_id)));
                marker.insert("sk".into(), s("d"));
                marker.insert(MARKER_TTL_ATTRIBUTE.into(), n(c.marker_expires_at));
                // TTL deletes lazily: an expired marker still there counts as absent. Markers
                // from before the TTL have no `expires_at` and never expire.
                let put_marker = Put::builder()
                    .table_name(&self.messages_table)
                    .set_item(Some(marker))
                    .condition_expression("attribute_not_exists(pk) OR #exp <= :now")
                    .expression_attribute_names("#exp", MARKER_TTL_ATTRIBUTE)
                    .expression_attribute_values(":now", n(c.now_s))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map_err(Error::store)?;
                items.push(TransactWriteItem::builder().put(put_marker).build());
                Some(items.len() - 1)
            }
        };
        let rate_at = match &c.rate {
            None => None,
            Some(claim) => {
                items.push(self.rate_update(claim)?);
                Some(items.len() - 1)
            }
        };
        items.push(self.entry_update(&c.sender, c.sender_was, true)?);
        items.push(self.entry_update(&c.receiver, c.receiver_was, false)?);
        let conversation = m.conversation();
        for (user, p) in &c.profiles {
            let put = Put::builder()
                .table_name(&self.messages_table)
                .set_item(Some(self.profile_put(&conversation, user, p)))
                .build()
                .map_err(Error::store)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let result = self
            .client
            .transact_write_items()
            // SDK retries of this very call are idempotent for 10 minutes; a new attempt after
            // a lost race is another call (other versions, maybe another id or clock), so the
            // token covers everything written, not just the id (DynamoDB refuses a token
            // reused with other parameters: IdempotentParameterMismatch).
            .client_request_token(request_token(c))
            .set_transact_items(Some(items))
            .send()
            .await;
        let ctx = match result {
            Ok(_) => return Ok(Committed::Stored),
            Err(SdkError::ServiceError(ctx)) => ctx,
            Err(e) => return Err(ddb(e)),
        };
        let TransactWriteItemsError::TransactionCanceledException(tc) = ctx.err() else {
            return Err(ddb(SdkError::ServiceError(ctx)));
        };
        let reasons = tc.cancellation_reasons();
        let code = |i: usize| reasons.get(i).and_then(|r| r.code());
        if let Some(i) = marker_at.filter(|i| code(*i) == Some("ConditionalCheckFailed")) {
            let client_msg_id = m.client_msg_id.as_deref().unwrap_or_default();
            return match reasons[i].item() {
                Some(old) => Ok(Committed::Duplicate(Box::new(message_from(old)?))),
                None => self.read_marker(m, client_msg_id).await,
            };
        }
        if let Some(i) = rate_at.filter(|i| code(*i) == Some("ConditionalCheckFailed")) {
            // Over the limit; without the old record the connection is gone since it was read,
            // and the send goes round again (and fails as it would have without the limit).
            let claim = c.rate.as_ref().expect("a rate item was written");
            let count = reasons[i]
                .item()
                .and_then(|old| get_n(old, &sends_attribute(claim.window)).ok());
            if count.is_some_and(|n| n >= claim.max as i64) {
                return Ok(Committed::RateLimited);
            }
        }
        // An entry's version moved, a concurrent transaction holds an item, or a concurrent
        // send made the same next id: nothing was written; read again.
        if reasons.iter().any(|r| {
            matches!(
                r.code(),
                Some("ConditionalCheckFailed" | "TransactionConflict")
            )
        }) {
            return Ok(Committed::Conflict);
        }
        Err(ddb(SdkError::ServiceError(ctx)))
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
            .map_err(ddb)?;
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

    async fn latest_through(
        &self,
        conversation: &Conversation,
        through: &str,
        limit: usize,
    ) -> Result<Page> {
        let out = self
            .client
            .query()
            .table_name(&self.messages_table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(conversation.key()))
            .expression_attribute_values(":lo", s(MESSAGE_PREFIX))
            .expression_attribute_values(":hi", s(message_sk(through)))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(ddb)?;
        let newest_first = out
            .items
            .unwrap_or_default()
            .iter()
            .map(message_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_from(newest_first, limit, HashMap::new()))
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
            .expression_attribute_values(":before", s(message_sk(before.as_str())))
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
        let out = out.map_err(ddb)?;
        let profiles = profiles
            .map_err(ddb)?
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
    /// The update of one entry inside a send's transaction. Each side writes only what the
    /// send decides, so a concurrent `read` (which moves `read_seq` / `peer_read_id` without
    /// touching `ver`) is never overwritten with an older value.
    fn entry_update(&self, e: &Entry, was: Option<u64>, sender: bool) -> Result<TransactWriteItem> {
        let last = e.last.as_ref().ok_or_else(|| {
            Error::Corrupt("an entry written by a send has a last message".into())
        })?;
        let app = &last.app_sid;
        let mut set = vec![
            "ver = :ver",
            "#last = :last",
            "updated_at = :updated",
            "inbox = :inbox",
            "activity = :activity",
            "peer_name = :pname",
            "peer_avatar = :pavatar",
            "#user = :user",
            "peer = :peer",
        ];
        let mut values = Item::from([
            (":ver".into(), nu(e.ver)),
            (":last".into(), AttributeValue::M(message_attributes(last))),
            (":updated".into(), n(e.updated_at_ms)),
            (":inbox".into(), s(inbox_key(app, &e.user))),
            (":activity".into(), s(e.activity())),
            (":pname".into(), s(&e.peer_profile.name)),
            (":pavatar".into(), s(&e.peer_profile.avatar)),
            (":user".into(), s(&e.user)),
            (":peer".into(), s(&e.peer)),
            (":zero".into(), nu(0)),
        ]);
        if sender {
            set.extend([
                "sent = :sent",
                "read_seq = :read",
                "peer_sent = if_not_exists(peer_sent, :zero)",
            ]);
            values.insert(":sent".into(), nu(e.sent));
            values.insert(":read".into(), nu(e.read_seq));
        } else {
            set.extend([
                "peer_sent = :psent",
                "sent = if_not_exists(sent, :zero)",
                "read_seq = if_not_exists(read_seq, :zero)",
            ]);
            values.insert(":psent".into(), nu(e.peer_sent));
        }
        let condition = match was {
            Some(v) => {
                values.insert(":was".into(), nu(v));
                "ver = :was"
            }
            None => "attribute_not_exists(pk)",
        };
        let update = Update::builder()
            .table_name(&self.messages_table)
            .set_key(Some(entry_key(app, &e.user, &e.peer)))
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression(condition)
            .expression_attribute_names("#last", "last")
            .expression_attribute_names("#user", "user")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(Error::store)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The rate limit inside a send's transaction: this window's count on the connection's
    /// record goes up by one if it is below the limit (and the record exists), older windows'
    /// counts go.
    fn rate_update(&self, claim: &RateClaim) -> Result<TransactWriteItem> {
        let mut update = Update::builder()
            .table_name(&self.connections_table)
            .key("connection_id", s(&claim.connection_id))
            .condition_expression(
                "attribute_exists(connection_id) AND (attribute_not_exists(#cur) OR #cur < :max)",
            )
            .expression_attribute_names("#cur", sends_attribute(claim.window))
            .expression_attribute_values(":max", nu(claim.max))
            .expression_attribute_values(":zero", nu(0))
            .expression_attribute_values(":one", nu(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut stale = Vec::new();
        for (i, w) in claim.stale.iter().enumerate() {
            update = update.expression_attribute_names(format!("#s{i}"), sends_attribute(*w));
            stale.push(format!("#s{i}"));
        }
        let remove = match stale.is_empty() {
            true => String::new(),
            false => format!(" REMOVE {}", stale.join(", ")),
        };
        let update = update
            .update_expression(format!(
                "SET #cur = if_not_exists(#cur, :zero) + :one{remove}"
            ))
            .build()
            .map_err(Error::store)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Fallback for a duplicate whose cancellation reason carried no item.
    async fn read_marker(&self, m: &Message, client_msg_id: &str) -> Result<Committed> {
        let out = self
            .client
            .get_item()
            .table_name(&self.messages_table)
            .key("pk", s(dedup_key(m, client_msg_id)))
            .key("sk", s("d"))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        // Gone since (its TTL ran out and it was swept): nothing was written; go again.
        match out.item {
            Some(item) => Ok(Committed::Duplicate(Box::new(message_from(&item)?))),
            None => Ok(Committed::Conflict),
        }
    }
}

impl Inbox for DynamoStore {
    async fn list(
        &self,
        app_sid: &str,
        user: &str,
        before: Option<&ListCursor>,
        limit: usize,
    ) -> Result<ListPage> {
        let mut query = self
            .client
            .query()
            .table_name(&self.messages_table)
            .index_name(BY_ACTIVITY_INDEX)
            .expression_attribute_values(":inbox", s(inbox_key(app_sid, user)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        query = match before {
            Some(c) => query
                .key_condition_expression("inbox = :inbox AND activity < :before")
                .expression_attribute_values(":before", s(c.as_str())),
            None => query.key_condition_expression("inbox = :inbox"),
        };
        let out = query.send().await.map_err(ddb)?;
        let mut entries = out
            .items
            .unwrap_or_default()
            .iter()
            .map(entry_from)
            .collect::<Result<Vec<_>>>()?;
        let has_more = entries.len() > limit;
        entries.truncate(limit);
        Ok(ListPage { entries, has_more })
    }

    async fn mark_read(&self, user: &str, m: &Message) -> Result<(Option<Entry>, bool)> {
        let (app, peer) = (&m.app_sid, &m.sender);
        let seq = m.seq.unwrap_or(0);
        let mine = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .set_key(Some(entry_key(app, user, peer)))
            .update_expression("SET read_seq = :seq")
            .condition_expression("attribute_exists(ver) AND read_seq < :seq")
            .expression_attribute_values(":seq", nu(seq))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send();
        let theirs = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .set_key(Some(entry_key(app, peer, user)))
            .update_expression("SET peer_read_id = :id, peer_read_seq = :seq")
            .condition_expression(
                "attribute_exists(ver) AND \
                 (attribute_not_exists(peer_read_seq) OR peer_read_seq < :seq)",
            )
            .expression_attribute_values(":seq", nu(seq))
            .expression_attribute_values(":id", s(&m.id))
            .send();
        let (mine, theirs) = futures::join!(mine, theirs);
        match theirs {
            Ok(_) => {}
            Err(e) if condition_failed(&e) => {}
            Err(e) => return Err(ddb(e)),
        }
        match mine {
            Ok(out) => Ok((out.attributes.as_ref().map(entry_from).transpose()?, true)),
            Err(SdkError::ServiceError(ctx))
                if ctx.err().is_conditional_check_failed_exception() =>
            {
                let old = match ctx.err() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item(),
                    _ => None,
                };
                Ok((old.map(entry_from).transpose()?, false))
            }
            Err(e) => Err(ddb(e)),
        }
    }

    async fn recall(
        &self,
        conversation: &Conversation,
        id: &str,
        sender: &str,
        client_msg_id: Option<&str>,
        not_before_ms: i64,
        entry_users: &[String],
    ) -> Result<bool> {
        let remove_media = |prefix: &str| {
            MEDIA_ATTRIBUTES
                .iter()
                .map(|a| format!("{prefix}{a}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let message = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .key("pk", s(conversation.key()))
            .key("sk", s(message_sk(id)))
            .update_expression(format!(
                "SET recalled = :t, content = :empty REMOVE {}",
                remove_media("")
            ))
            .condition_expression("sender = :sender AND created_at >= :nb")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":empty", s(""))
            .expression_attribute_values(":sender", s(sender))
            .expression_attribute_values(":nb", n(not_before_ms))
            .send();
        let [a, b] = conversation.members();
        let entries = entry_users.iter().map(|user| {
            let peer = if user == a { b } else { a };
            self.client
                .update_item()
                .table_name(&self.messages_table)
                .set_key(Some(entry_key(&conversation.app_sid, user, peer)))
                .update_expression(format!(
                    "SET #last.recalled = :t, #last.content = :empty REMOVE {}",
                    remove_media("#last.")
                ))
                .condition_expression(
                    "#last.id = :id AND #last.sender = :sender AND #last.created_at >= :nb",
                )
                .expression_attribute_names("#last", "last")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":empty", s(""))
                .expression_attribute_values(":id", s(id))
                .expression_attribute_values(":sender", s(sender))
                .expression_attribute_values(":nb", n(not_before_ms))
                .send()
        });
        // The idempotency marker holds a copy of the message: recall it too, or a retried send
        // would answer (and post) the original.
        let marker = client_msg_id.map(|cmid| {
            self.client
                .update_item()
                .table_name(&self.messages_table)
                .key("pk", s(marker_key(conversation, sender, cmid)))
                .key("sk", s("d"))
                .update_expression(format!(
                    "SET recalled = :t, content = :empty REMOVE {}",
                    remove_media("")
                ))
                .condition_expression("id = :id AND sender = :sender AND created_at >= :nb")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":empty", s(""))
                .expression_attribute_values(":id", s(id))
                .expression_attribute_values(":sender", s(sender))
                .expression_attribute_values(":nb", n(not_before_ms))
                .send()
        });
        let (message, entries, marker) =
            futures::join!(message, futures::future::join_all(entries), async {
                match marker {
                    Some(m) => Some(m.await),
                    None => None,
                }
            });
        match marker {
            None | Some(Ok(_)) => {}
            Some(Err(e)) if condition_failed(&e) => {}
            Some(Err(e)) => return Err(ddb(e)),
        }
        for e in entries {
            match e {
                Ok(_) => {}
                // The entry has moved on to a newer message: nothing of it to recall.
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(ddb(e)),
            }
        }
        match message {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(ddb(e)),
        }
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
            seq: Some(3),
            recalled: false,
        }
    }

    #[test]
    fn the_request_token_covers_the_whole_commit_without_building_it_as_text() {
        let commit = SendCommit {
            message: message(Some("k1")),
            sender: Entry::empty("b", "a"),
            receiver: Entry::empty("a", "b"),
            sender_was: Some(4),
            receiver_was: Some(4),
            profiles: vec![],
            now_s: 1_700_000_000,
            marker_expires_at: 1_700_086_400,
            rate: None,
        };
        let token = request_token(&commit);
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        // a retry of the same call shares it ...
        assert_eq!(request_token(&commit.clone()), token);
        // ... a call re-planned after a lost race (same id, other versions) does not
        let raced = SendCommit {
            receiver_was: Some(5),
            ..commit.clone()
        };
        assert_ne!(request_token(&raced), token);
        // and it is the FNV-1a of the commit's Debug form, as when that text was built first
        let text = format!("{commit:?}");
        let fnv = |seed: u64| {
            text.bytes().fold(seed, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        };
        assert_eq!(
            token,
            format!(
                "{:016x}{:016x}",
                fnv(0xcbf2_9ce4_8422_2325),
                fnv(0x8422_2325_cbf2_9ce4)
            )
        );
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
            ..message(None)
        };
        let recalled = Message {
            recalled: true,
            content: String::new(),
            ..message(Some("k3"))
        };
        for m in [message(Some("k1")), message(None), uploaded, old, recalled] {
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
