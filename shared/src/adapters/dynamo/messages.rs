//! The messages table read side: a conversation's snapshot (one `BatchGetItem`, the sender's
//! rate counter included), its pages
//! (one page query, three ranges) and the profiles stored in its partition.

use super::client::{ddb, DynamoStore};
use super::items::{
    entry_from, entry_key, inbox_key, is_message, message_from, message_sk, page_from,
    profile_entry, profile_sk, rate_counter_id, registry_from, registry_id, s, sends_from, Item,
    MESSAGE_PREFIX, PROFILE_PREFIX, PROFILE_RANGE_END,
};
use crate::domain::ids::{Conversation, Cursor};
use crate::domain::message::{Page, Profile};
use crate::domain::send::{Committed, SendCommit, Snapshot};
use crate::error::Result;
use crate::ports::{MessageStore, ProfileWrite};
use std::collections::HashMap;

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
    pub(super) fn profile_put(&self, conversation: &Conversation, user: &str, p: &Profile) -> Item {
        Item::from([
            ("pk".into(), s(conversation.key())),
            ("sk".into(), s(profile_sk(user))),
            ("name".into(), s(&p.name)),
            ("avatar".into(), s(&p.avatar)),
        ])
    }
}

/// Which part of a conversation's partition a page query reads, newest first.
#[derive(Debug, Clone, Copy)]
enum Range<'a> {
    /// The newest messages and, ahead of them in descending order, the profiles (`p#`, at
    /// most two): `[m#, p$]`.
    LatestWithProfiles,
    /// The newest messages up to and including this id: `[m#, m#<id>]`.
    Through(&'a str),
    /// The messages before this cursor: `sk < m#<cursor>`. Old messages change only by a
    /// recall, so this one reads eventually consistently (half the cost).
    Before(&'a Cursor),
}

impl DynamoStore {
    /// One `Query` of a conversation's messages, newest first, at most `limit` + 1 of them (one
    /// more tells whether older ones exist), plus the profiles the range holds.
    async fn page_query(
        &self,
        conversation: &Conversation,
        range: Range<'_>,
        limit: usize,
    ) -> Result<Page> {
        let query = self
            .client
            .query()
            .table_name(&self.messages_table)
            .expression_attribute_values(":pk", s(conversation.key()))
            .scan_index_forward(false);
        let (query, extra) = match range {
            Range::LatestWithProfiles => (
                query
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", s(MESSAGE_PREFIX))
                    .expression_attribute_values(":hi", s(PROFILE_RANGE_END))
                    .consistent_read(true),
                2, // the profiles come first
            ),
            Range::Through(id) => (
                query
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", s(MESSAGE_PREFIX))
                    .expression_attribute_values(":hi", s(message_sk(id)))
                    .consistent_read(true),
                0,
            ),
            Range::Before(cursor) => (
                query
                    .key_condition_expression("pk = :pk AND sk < :before")
                    .expression_attribute_values(":before", s(message_sk(cursor.as_str()))),
                0,
            ),
        };
        let out = query
            .limit(i32::try_from(limit + 1 + extra).unwrap_or(i32::MAX))
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

    /// The profiles stored in a conversation's partition (`p#…`, at most two). One `Query`.
    async fn profiles(&self, conversation: &Conversation) -> Result<HashMap<String, Profile>> {
        let out = self
            .client
            .query()
            .table_name(&self.messages_table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", s(conversation.key()))
            .expression_attribute_values(":p", s(PROFILE_PREFIX))
            .send()
            .await
            .map_err(ddb)?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(profile_entry)
            .collect())
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
        let counter = rate_counter_id(app, me);
        let connections = [
            registry_id(app, me),
            registry_id(app, peer),
            counter.clone(),
        ]
        .into_iter()
        .map(|id| Item::from([("connection_id".into(), s(id))]))
        .collect();
        let items = self.batch_get(messages, connections).await?;
        let mut snap = Snapshot::default();
        let mine_pk = inbox_key(app, me);
        for item in &items {
            let connections_id = item.get("connection_id").and_then(|v| v.as_s().ok());
            if connections_id == Some(&counter) {
                snap.sender_sends = sends_from(item);
            } else if connections_id.is_some() {
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
        self.transact_send(c).await
    }

    async fn latest(&self, conversation: &Conversation, limit: usize) -> Result<Page> {
        self.page_query(conversation, Range::LatestWithProfiles, limit)
            .await
    }

    async fn latest_through(
        &self,
        conversation: &Conversation,
        through: &str,
        limit: usize,
    ) -> Result<Page> {
        self.page_query(conversation, Range::Through(through), limit)
            .await
    }

    async fn before(
        &self,
        conversation: &Conversation,
        before: &Cursor,
        limit: usize,
    ) -> Result<Page> {
        let (page, profiles) = futures::join!(
            self.page_query(conversation, Range::Before(before), limit),
            self.profiles(conversation)
        );
        Ok(Page {
            profiles: profiles?,
            ..page?
        })
    }
}
