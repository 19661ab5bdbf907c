//! The inbox: a user's conversation list (the `by_activity` index) and read positions on the
//! entries.

use super::client::{condition_failed, ddb, DynamoStore, BY_ACTIVITY_INDEX};
use super::items::{entry_from, entry_key, inbox_key, nu, s};
use crate::domain::ids::ListCursor;
use crate::domain::inbox::{Entry, ListPage};
use crate::domain::message::Message;
use crate::error::Result;
use crate::ports::Inbox;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

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
}
