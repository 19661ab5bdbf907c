//! A recall: the message, the entries that show it as their last message, and its idempotency
//! marker, each conditioned on the sender and the recall window, side by side.

use super::client::{condition_failed, ddb, DynamoStore};
use super::items::{entry_key, marker_key, message_key, n, s, Item, MEDIA_ATTRIBUTES};
use crate::domain::ids::Conversation;
use crate::error::Result;
use crate::ports::MessageRecall;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;

type Updated = std::result::Result<UpdateItemOutput, SdkError<UpdateItemError>>;

/// What every update of a recall checks: who sent it and that it is inside the window.
struct Guard<'a> {
    id: &'a str,
    sender: &'a str,
    not_before_ms: i64,
}

/// `a, b, …` of the media attributes, under `prefix` (`""` or `#last.`); a take-down removes
/// them too (`screening.rs`).
pub(super) fn media_paths(prefix: &str) -> String {
    MEDIA_ATTRIBUTES
        .iter()
        .map(|a| format!("{prefix}{a}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl DynamoStore {
    /// An update of a recalled copy (the message, or its marker): content emptied, media
    /// removed, conditioned on `condition` over the guard's values.
    fn recall_update(&self, key: Item, condition: &str, g: &Guard<'_>) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.messages_table)
            .set_key(Some(key))
            .update_expression(format!(
                "SET recalled = :t, content = :empty REMOVE {}",
                media_paths("")
            ))
            .condition_expression(condition)
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":empty", s(""))
            .expression_attribute_values(":sender", s(g.sender))
            .expression_attribute_values(":nb", n(g.not_before_ms))
    }

    /// The update of one entry whose last message is the recalled one.
    fn recall_entry(&self, key: Item, g: &Guard<'_>) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.messages_table)
            .set_key(Some(key))
            .update_expression(format!(
                "SET #last.recalled = :t, #last.content = :empty REMOVE {}",
                media_paths("#last.")
            ))
            .condition_expression(
                "#last.id = :id AND #last.sender = :sender AND #last.created_at >= :nb",
            )
            .expression_attribute_names("#last", "last")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":empty", s(""))
            .expression_attribute_values(":id", s(g.id))
            .expression_attribute_values(":sender", s(g.sender))
            .expression_attribute_values(":nb", n(g.not_before_ms))
    }
}

/// A failed condition is an expected outcome (`Ok(false)`), anything else a fault.
fn applied(result: Updated) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if condition_failed(&e) => Ok(false),
        Err(e) => Err(ddb(e)),
    }
}

impl MessageRecall for DynamoStore {
    async fn recall(
        &self,
        conversation: &Conversation,
        id: &str,
        sender: &str,
        client_msg_id: Option<&str>,
        not_before_ms: i64,
        entry_users: &[String],
    ) -> Result<bool> {
        let g = Guard {
            id,
            sender,
            not_before_ms,
        };
        let message = self
            .recall_update(
                message_key(conversation, id),
                "sender = :sender AND created_at >= :nb",
                &g,
            )
            .send();
        let [a, b] = conversation.members();
        let entries = entry_users.iter().map(|user| {
            let peer = if user == a { b } else { a };
            let key = entry_key(&conversation.app_sid, user, peer);
            self.recall_entry(key, &g).send()
        });
        // The idempotency marker holds a copy of the message: recall it too, or a retried send
        // would answer (and post) the original.
        let marker = async {
            let Some(cmid) = client_msg_id else {
                return Ok(false);
            };
            let key = Item::from([
                ("pk".into(), s(marker_key(conversation, sender, cmid))),
                ("sk".into(), s("d")),
            ]);
            let condition = "id = :id AND sender = :sender AND created_at >= :nb";
            let update = self.recall_update(key, condition, &g);
            applied(
                update
                    .expression_attribute_values(":id", s(id))
                    .send()
                    .await,
            )
        };
        let (message, entries, marker) =
            futures::join!(message, futures::future::join_all(entries), marker);
        marker?;
        // An entry that has moved on to a newer message has nothing of it to recall.
        for entry in entries {
            applied(entry)?;
        }
        applied(message)
    }
}
