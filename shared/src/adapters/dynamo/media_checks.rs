//! Media checks ([`MediaCheckStore`]): a pending check lives on its message item (`mod` =
//! `pending`, `mc_shard`/`mc_due` in the sparse `media_checks` index, `mc_trace`, `mc_asks`),
//! and each ask's trace id has an item of its own in the messages table, `pk` =
//! `mc#<trace_id>`, `sk` = `mc`, naming the message (`msg_pk`, `msg_sk`) until `expires_at`
//! (the table's TTL), so a verdict finds its message with two reads and no scan.

use super::client::{conditional, ddb, DynamoStore};
use super::items::{
    get_opt_u, get_s, media_check_shard_key, message_from, message_key, message_sk, n, nu, s, Item,
    MEDIA_CHECK_DUE, MEDIA_CHECK_SHARD,
};
use crate::domain::message::Message;
use crate::domain::moderation::Screening;
use crate::error::{Error, Result};
use crate::ports::{MediaCheckStore, PendingCheck};

/// Name of the messages table's sparse index of pending media checks (template.yaml).
pub const MEDIA_CHECKS_INDEX: &str = "media_checks";

fn trace_key(trace_id: &str) -> Item {
    Item::from([
        ("pk".into(), s(format!("mc#{trace_id}"))),
        ("sk".into(), s("mc")),
    ])
}

fn key_of(m: &Message) -> Item {
    message_key(&m.conversation(), &m.id)
}

impl MediaCheckStore for DynamoStore {
    async fn asked(
        &self,
        message: &Message,
        trace_id: &str,
        due_s: i64,
        keep_until_s: i64,
    ) -> Result<()> {
        let mut pointer = trace_key(trace_id);
        pointer.insert("msg_pk".into(), s(message.conversation().key()));
        pointer.insert("msg_sk".into(), s(message_sk(&message.id)));
        pointer.insert("expires_at".into(), n(keep_until_s));
        let put = self
            .client
            .put_item()
            .table_name(&self.messages_table)
            .set_item(Some(pointer))
            .send();
        let update = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .set_key(Some(key_of(message)))
            .update_expression(
                "SET mc_trace = :trace, #due = :due, mc_asks = if_not_exists(mc_asks, :zero) + :one",
            )
            .condition_expression("#m = :pending")
            .expression_attribute_names("#m", "mod")
            .expression_attribute_names("#due", MEDIA_CHECK_DUE)
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":trace", s(trace_id))
            .expression_attribute_values(":due", n(due_s))
            .expression_attribute_values(":zero", nu(0))
            .expression_attribute_values(":one", nu(1))
            .send();
        let (put, update) = futures::join!(put, update);
        put.map_err(ddb)?;
        // (A message no longer pending, recalled or decided meanwhile, keeps what it has.)
        conditional(update)?;
        Ok(())
    }

    async fn traced(&self, trace_id: &str) -> Result<Option<Message>> {
        let pointer = self
            .client
            .get_item()
            .table_name(&self.messages_table)
            .set_key(Some(trace_key(trace_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        let Some(pointer) = pointer.item() else {
            return Ok(None);
        };
        let key = Item::from([
            ("pk".into(), s(get_s(pointer, "msg_pk")?)),
            ("sk".into(), s(get_s(pointer, "msg_sk")?)),
        ]);
        let out = self
            .client
            .get_item()
            .table_name(&self.messages_table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        out.item().map(message_from).transpose()
    }

    async fn settle_media(&self, message: &Message, screening: &Screening) -> Result<bool> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.messages_table)
            .set_key(Some(key_of(message)))
            .condition_expression("#m = :pending")
            .expression_attribute_names("#m", "mod")
            .expression_attribute_names("#shard", MEDIA_CHECK_SHARD)
            .expression_attribute_names("#due", MEDIA_CHECK_DUE)
            .expression_attribute_values(":pending", s("pending"));
        update = match screening {
            Screening::Clear => update.update_expression("REMOVE #m, #shard, #due"),
            Screening::Review { label } => update
                .update_expression("SET #m = :review, mod_label = :label REMOVE #shard, #due")
                .expression_attribute_values(":review", s("review"))
                .expression_attribute_values(":label", nu((*label).into())),
            Screening::Unchecked => update
                .update_expression("SET #m = :unchecked REMOVE #shard, #due")
                .expression_attribute_values(":unchecked", s("unchecked")),
            _ => {
                return Err(Error::Corrupt(
                    "a media verdict settles as clear, review or unchecked only".into(),
                ))
            }
        };
        conditional(update.send().await)
    }

    async fn overdue(&self, shard: u8, now_s: i64, limit: usize) -> Result<Vec<PendingCheck>> {
        let out = self
            .client
            .query()
            .table_name(&self.messages_table)
            .index_name(MEDIA_CHECKS_INDEX)
            .key_condition_expression("#shard = :shard AND #due <= :now")
            .expression_attribute_names("#shard", MEDIA_CHECK_SHARD)
            .expression_attribute_names("#due", MEDIA_CHECK_DUE)
            .expression_attribute_values(":shard", s(media_check_shard_key(shard)))
            .expression_attribute_values(":now", n(now_s))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(ddb)?;
        out.items()
            .iter()
            .map(|item| {
                Ok(PendingCheck {
                    message: message_from(item)?,
                    asks: u32::try_from(get_opt_u(item, "mc_asks")?.unwrap_or(0))
                        .unwrap_or(u32::MAX),
                })
            })
            .collect()
    }
}
