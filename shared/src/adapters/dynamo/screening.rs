//! Moderation's later decisions ([`ScreeningStore`]): the sparse `unchecked` index of
//! messages stored without a decision, a decision recorded on one, and a take-down (the
//! message, its idempotency marker's copy and the entries that show it, side by side, each
//! conditioned on not being recalled or taken down already).

use super::client::{conditional, ddb, DynamoStore};
use super::items::{
    entry_key, marker_key, message_from, message_key, nu, s, unchecked_key, Item, MEDIA_CHECK_DUE,
    MEDIA_CHECK_SHARD, UNCHECKED_ATTRIBUTE,
};
use super::recall::media_paths;
use crate::domain::message::Message;
use crate::domain::moderation::Screening;
use crate::error::{Error, Result};
use crate::ports::ScreeningStore;

/// Name of the messages table's sparse index of unchecked messages (template.yaml).
pub const UNCHECKED_INDEX: &str = "unchecked";

fn key_of(m: &Message) -> Item {
    message_key(&m.conversation(), &m.id)
}

impl ScreeningStore for DynamoStore {
    async fn unchecked(&self, shard: u8, limit: usize) -> Result<Vec<Message>> {
        let out = self
            .client
            .query()
            .table_name(&self.messages_table)
            .index_name(UNCHECKED_INDEX)
            .key_condition_expression("#u = :shard")
            .expression_attribute_names("#u", UNCHECKED_ATTRIBUTE)
            .expression_attribute_values(":shard", s(unchecked_key(shard)))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(ddb)?;
        out.items().iter().map(message_from).collect()
    }

    async fn settle(&self, message: &Message, screening: &Screening) -> Result<bool> {
        let (word, label) = match screening {
            Screening::Clear => (None, None),
            Screening::Review { label } => (Some("review"), Some(*label)),
            Screening::Unchecked => (Some("unchecked"), None),
            Screening::Blocked { .. } | Screening::Replaced { .. } | Screening::Pending => {
                return Err(Error::Corrupt(
                    "a re-check settles as clear, review or unchecked only".into(),
                ))
            }
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .set_key(Some(key_of(message)))
            .condition_expression("#m = :unchecked AND attribute_not_exists(recalled)")
            .expression_attribute_names("#m", "mod")
            .expression_attribute_names("#u", UNCHECKED_ATTRIBUTE)
            .expression_attribute_values(":unchecked", s("unchecked"));
        update = match (word, label) {
            (None, _) => update.update_expression("REMOVE #m, #u"),
            (Some(word), None) => update
                .update_expression("SET #m = :word REMOVE #u")
                .expression_attribute_values(":word", s(word)),
            (Some(word), Some(label)) => update
                .update_expression("SET #m = :word, mod_label = :label REMOVE #u")
                .expression_attribute_values(":word", s(word))
                .expression_attribute_values(":label", nu(label.into())),
        };
        conditional(update.send().await)
    }

    async fn block(&self, message: &Message, label: u32, entry_users: &[String]) -> Result<bool> {
        let conversation = message.conversation();
        let values = [
            (":blocked", s("blocked")),
            (":label", nu(label.into())),
            (":empty", s("")),
            (":id", s(&message.id)),
        ];
        // The message and a copy of it (its marker's): content emptied, media removed, out of
        // the index; never one already recalled or taken down.
        let copy = |key: Item| {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.messages_table)
                .set_key(Some(key))
                .update_expression(format!(
                    "SET #m = :blocked, mod_label = :label, content = :empty REMOVE #u, {MEDIA_CHECK_SHARD}, {MEDIA_CHECK_DUE}, {}",
                    media_paths("")
                ))
                .condition_expression(
                    "id = :id AND attribute_not_exists(recalled) AND (attribute_not_exists(#m) OR #m <> :blocked)",
                )
                .expression_attribute_names("#m", "mod")
                .expression_attribute_names("#u", UNCHECKED_ATTRIBUTE);
            for (k, v) in &values {
                update = update.expression_attribute_values(*k, v.clone());
            }
            update.send()
        };
        let marker = async {
            let Some(cmid) = &message.client_msg_id else {
                return Ok(false);
            };
            let key = Item::from([
                (
                    "pk".into(),
                    s(marker_key(&conversation, &message.sender, cmid)),
                ),
                ("sk".into(), s("d")),
            ]);
            conditional(copy(key).await)
        };
        let [a, b] = conversation.members();
        let entries = entry_users.iter().map(|user| {
            let peer = if user == a { b } else { a };
            let mut update = self
                .client
                .update_item()
                .table_name(&self.messages_table)
                .set_key(Some(entry_key(&conversation.app_sid, user, peer)))
                .update_expression(format!(
                    "SET #last.#m = :blocked, #last.mod_label = :label, #last.content = :empty REMOVE {}",
                    media_paths("#last.")
                ))
                .condition_expression("#last.id = :id")
                .expression_attribute_names("#last", "last")
                .expression_attribute_names("#m", "mod");
            for (k, v) in &values {
                update = update.expression_attribute_values(*k, v.clone());
            }
            update.send()
        });
        let (blocked, marker, entries) = futures::join!(
            copy(key_of(message)),
            marker,
            futures::future::join_all(entries)
        );
        marker?;
        // An entry that has moved on to a newer message holds nothing of it.
        for entry in entries {
            conditional(entry)?;
        }
        conditional(blocked)
    }
}
