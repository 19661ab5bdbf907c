//! Offline notices in the connections table: a user's grants of the template and their last
//! connect live on their registry item (`grants#<template>`, `last_conn`); each conversation a
//! user was notified about has a marker `n#<app>#<user>#<peer>` (`at` ms, `expires_at`).

use super::client::{conditional, ddb, DynamoStore};
use super::items::{get_opt_n, message_from, message_key, n, registry_from, registry_id, s};
use crate::domain::ids::Conversation;
use crate::domain::message::Message;
use crate::domain::notice::{NoticeClaim, Recipient, NOTIFIED_TTL_SECS};
use crate::error::{Error, Result};
use crate::ports::{NoticeGrants, NoticeStore};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem, Update};

/// The registry attribute counting `template`'s grants.
fn grants_attribute(template: &str) -> String {
    format!("grants#{template}")
}

/// The registry attribute holding the user's last connect (ms), set by `$connect`'s enroll.
const LAST_CONNECT: &str = "last_conn";

fn notified_id(app_sid: &str, user: &str, peer: &str) -> String {
    format!("n#{app_sid}#{user}#{peer}")
}

impl NoticeGrants for DynamoStore {
    async fn grant(&self, app_sid: &str, user: &str, template: &str, max: u64) -> Result<u64> {
        let out = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(app_sid, user)))
            .update_expression("ADD #g :one")
            // Only an existing registry (the user is connected), and never past the cap.
            .condition_expression(
                "attribute_exists(conns) AND (attribute_not_exists(#g) OR #g < :max)",
            )
            .expression_attribute_names("#g", grants_attribute(template))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max as i64))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(count(out.attributes.as_ref(), template)?),
            Err(e) if super::client::condition_failed(&e) => {
                self.grants(app_sid, user, template).await
            }
            Err(e) => Err(ddb(e)),
        }
    }

    async fn grants(&self, app_sid: &str, user: &str, template: &str) -> Result<u64> {
        let out = self
            .client
            .get_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(app_sid, user)))
            .projection_expression("#g")
            .expression_attribute_names("#g", grants_attribute(template))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        count(out.item.as_ref(), template)
    }
}

fn count(
    item: Option<&std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
    template: &str,
) -> Result<u64> {
    let Some(item) = item else { return Ok(0) };
    let n = get_opt_n(item, &grants_attribute(template))?.unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

impl NoticeStore for DynamoStore {
    async fn message(&self, conversation: &Conversation, id: &str) -> Result<Option<Message>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.messages_table)
            .set_key(Some(message_key(conversation, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        out.item.as_ref().map(message_from).transpose()
    }

    async fn recipient(
        &self,
        app_sid: &str,
        user: &str,
        template: &str,
    ) -> Result<Option<Recipient>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(app_sid, user)))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        Ok(Some(Recipient {
            registry: registry_from(&item)?,
            last_connect_ms: get_opt_n(&item, LAST_CONNECT)?.unwrap_or(0),
            grants: count(Some(&item), template)?,
        }))
    }

    async fn claim_notice(&self, c: &NoticeClaim<'_>) -> Result<bool> {
        let take = Update::builder()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(c.app_sid, c.user)))
            .update_expression("ADD #g :minus")
            .condition_expression("#g > :zero")
            .expression_attribute_names("#g", grants_attribute(c.template))
            .expression_attribute_values(":minus", n(-1))
            .expression_attribute_values(":zero", n(0))
            .build()
            .map_err(Error::store)?;
        let mark = Put::builder()
            .table_name(&self.connections_table)
            .item("connection_id", s(notified_id(c.app_sid, c.user, c.peer)))
            .item("at", n(c.now_ms))
            .item("expires_at", n(c.now_ms / 1000 + NOTIFIED_TTL_SECS))
            // `at` is one of DynamoDB's reserved words.
            .condition_expression("attribute_not_exists(connection_id) OR #at < :last")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":last", n(c.last_connect_ms))
            .build()
            .map_err(Error::store)?;
        // A conflict with a concurrent claim of the same notice: the next try sees its outcome.
        for _ in 0..3 {
            let out = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(take.clone()).build())
                .transact_items(TransactWriteItem::builder().put(mark.clone()).build())
                .send()
                .await;
            let e = match out {
                Ok(_) => return Ok(true),
                Err(e) => e,
            };
            let SdkError::ServiceError(ctx) = &e else {
                return Err(ddb(e));
            };
            let TransactWriteItemsError::TransactionCanceledException(tc) = ctx.err() else {
                return Err(ddb(e));
            };
            let codes: Vec<&str> = tc
                .cancellation_reasons()
                .iter()
                .filter_map(|r| r.code())
                .collect();
            if codes.contains(&"ConditionalCheckFailed") {
                return Ok(false);
            }
            if !codes.contains(&"TransactionConflict") {
                return Err(ddb(e));
            }
        }
        Err(Error::Contention("notice claim"))
    }

    async fn clear_grants(&self, app_sid: &str, user: &str, template: &str) -> Result<()> {
        self.change_grants(app_sid, user, template, "SET #g = :v", 0)
            .await
    }

    async fn return_grant(&self, app_sid: &str, user: &str, template: &str) -> Result<()> {
        self.change_grants(app_sid, user, template, "ADD #g :v", 1)
            .await
    }
}

impl DynamoStore {
    /// Applies `expression` (`#g` the grants attribute, `:v` = `value`) to an existing registry.
    async fn change_grants(
        &self,
        app_sid: &str,
        user: &str,
        template: &str,
        expression: &str,
        value: i64,
    ) -> Result<()> {
        let out = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(app_sid, user)))
            .update_expression(expression)
            .condition_expression("attribute_exists(conns)")
            .expression_attribute_names("#g", grants_attribute(template))
            .expression_attribute_values(":v", n(value))
            .send()
            .await;
        conditional(out).map(|_| ())
    }
}
