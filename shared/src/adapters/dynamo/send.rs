//! A send's one `TransactWriteItems`: the message, its idempotency marker, the sending
//! user's rate counter, both conversation entries (versioned) and stale profiles; and what
//! a cancelled transaction means.

use super::client::{ddb, DynamoStore};
use super::items::{
    dedup_key, entry_key, get_n, inbox_key, message_attributes, message_from, message_item, n, nu,
    rate_counter_id, s, sends_attribute, Item, MARKER_TTL_ATTRIBUTE,
};
use crate::domain::connection::{count_expires_at, RateClaim};
use crate::domain::inbox::Entry;
use crate::domain::message::Message;
use crate::domain::send::{Committed, SendCommit};
use crate::error::{Error, Result};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

/// Where the conditional items whose failure means something other than a conflict sit in a
/// send's transaction.
struct Positions {
    marker: Option<usize>,
    rate: Option<usize>,
}

impl DynamoStore {
    /// Writes a send atomically (the [`crate::ports::MessageStore::commit_send`] of this
    /// adapter).
    pub(super) async fn transact_send(&self, c: &SendCommit) -> Result<Committed> {
        let (items, at) = self.send_items(c)?;
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
        match self.cancelled(c, tc.cancellation_reasons(), &at).await? {
            Some(outcome) => Ok(outcome),
            None => Err(ddb(SdkError::ServiceError(ctx))),
        }
    }

    /// The transaction's items, in order, and where the marker and the rate claim are.
    fn send_items(&self, c: &SendCommit) -> Result<(Vec<TransactWriteItem>, Positions)> {
        let m = &c.message;
        let put = |item: Item, condition: Option<&str>| {
            Put::builder()
                .table_name(&self.messages_table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_owned))
        };
        let message = put(message_item(m), Some("attribute_not_exists(pk)"));
        let mut items = vec![transact_put(message)?];
        let mut at = Positions {
            marker: None,
            rate: None,
        };
        if let Some(client_msg_id) = &m.client_msg_id {
            let mut marker = message_attributes(m);
            marker.insert("pk".into(), s(dedup_key(m, client_msg_id)));
            marker.insert("sk".into(), s("d"));
            marker.insert(MARKER_TTL_ATTRIBUTE.into(), n(c.marker_expires_at));
            // TTL deletes lazily: an expired marker still there counts as absent. Markers
            // from before the TTL have no `expires_at` and never expire.
            let marker = put(marker, Some("attribute_not_exists(pk) OR #exp <= :now"))
                .expression_attribute_names("#exp", MARKER_TTL_ATTRIBUTE)
                .expression_attribute_values(":now", n(c.now_s))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            items.push(transact_put(marker)?);
            at.marker = Some(items.len() - 1);
        }
        if let Some(claim) = &c.rate {
            items.push(self.rate_update(claim)?);
            at.rate = Some(items.len() - 1);
        }
        items.push(self.entry_update(&c.sender, c.sender_was, true)?);
        items.push(self.entry_update(&c.receiver, c.receiver_was, false)?);
        let conversation = m.conversation();
        for (user, p) in &c.profiles {
            items.push(transact_put(put(
                self.profile_put(&conversation, user, p),
                None,
            ))?);
        }
        Ok((items, at))
    }

    /// What a cancelled send means: a duplicate (the marker's condition), the rate limit, or a
    /// conflict to retry; `None` for anything else (a fault).
    async fn cancelled(
        &self,
        c: &SendCommit,
        reasons: &[CancellationReason],
        at: &Positions,
    ) -> Result<Option<Committed>> {
        let failed =
            |i: &usize| reasons.get(*i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
        if let Some(i) = at.marker.filter(failed) {
            let m = &c.message;
            let client_msg_id = m.client_msg_id.as_deref().unwrap_or_default();
            return match reasons[i].item() {
                Some(old) => Ok(Some(Committed::Duplicate(Box::new(message_from(old)?)))),
                None => self.read_marker(m, client_msg_id).await.map(Some),
            };
        }
        if let (Some(i), Some(claim)) = (at.rate.filter(failed), &c.rate) {
            // Over the limit (the condition fails only then; the count is read to be sure).
            let count = reasons[i]
                .item()
                .and_then(|old| get_n(old, &sends_attribute(claim.window)).ok());
            if count.is_some_and(|n| n >= claim.max as i64) {
                return Ok(Some(Committed::RateLimited));
            }
        }
        // An entry's version moved, a concurrent transaction holds an item, or a concurrent
        // send made the same next id: nothing was written; read again.
        let conflict = reasons.iter().any(|r| {
            matches!(
                r.code(),
                Some("ConditionalCheckFailed" | "TransactionConflict")
            )
        });
        Ok(conflict.then_some(Committed::Conflict))
    }

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

    /// The rate limit inside a send's transaction: this window's count on the sender's rate
    /// counter goes up by one if it is below the limit (the counter is made on first use),
    /// older windows' counts go, and the counter expires (TTL) a window after this one.
    fn rate_update(&self, claim: &RateClaim) -> Result<TransactWriteItem> {
        let expires_at = count_expires_at(claim.window);
        let mut update = Update::builder()
            .table_name(&self.connections_table)
            .key(
                "connection_id",
                s(rate_counter_id(&claim.app_sid, &claim.user)),
            )
            .condition_expression("attribute_not_exists(#cur) OR #cur < :max")
            .expression_attribute_names("#cur", sends_attribute(claim.window))
            .expression_attribute_names("#exp", "expires_at")
            .expression_attribute_values(":max", nu(claim.max))
            .expression_attribute_values(":zero", nu(0))
            .expression_attribute_values(":one", nu(1))
            .expression_attribute_values(":exp", n(expires_at))
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
                "SET #cur = if_not_exists(#cur, :zero) + :one, #exp = :exp{remove}"
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

fn transact_put(put: aws_sdk_dynamodb::types::builders::PutBuilder) -> Result<TransactWriteItem> {
    Ok(TransactWriteItem::builder()
        .put(put.build().map_err(Error::store)?)
        .build())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(cmid: Option<&str>) -> Message {
        super::super::items::sample_message(cmid)
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
}
