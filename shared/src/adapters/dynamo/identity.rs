//! WeChat identities ([`IdentityStore`]): two small items in the messages table (which is
//! retained and backed up, like the messages), `w#<app>#<openid>` → `account` and
//! `u#<app>#<account>` → `openid`, both `sk` = `w`, no TTL. A bind reads both sides strongly
//! consistently and writes them in one transaction, each write conditioned on what was read,
//! so two logins racing for one number leave one owner, never two.

use super::client::{ddb, DynamoStore};
use super::items::{get_opt_s, s, Item};
use crate::error::{Error, Result};
use crate::ports::IdentityStore;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

/// Times a bind reads and writes, losing races to other binds of the same openid or account
/// in between (a random pause of up to 50 ms before each retry).
const BIND_TRIES: usize = 8;

fn openid_key(app_sid: &str, openid: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("w#{app_sid}#{openid}"))),
        ("sk".to_owned(), s("w")),
    ])
}

fn account_key(app_sid: &str, account: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("u#{app_sid}#{account}"))),
        ("sk".to_owned(), s("w")),
    ])
}

/// `attribute_not_exists(pk)` when `was` is `None`, else `#a = :was`.
fn unchanged(was: &Option<String>) -> (String, Option<String>) {
    match was {
        None => ("attribute_not_exists(pk)".into(), None),
        Some(v) => ("#a = :was".into(), Some(v.clone())),
    }
}

impl DynamoStore {
    async fn read_one(&self, key: Item, attribute: &str) -> Result<Option<String>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.messages_table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        Ok(out.item.as_ref().and_then(|i| get_opt_s(i, attribute)))
    }

    /// A put of `key` → `attribute` = `value`, on condition that it still holds `was`.
    fn put_if(
        &self,
        key: Item,
        attribute: &str,
        value: &str,
        was: &Option<String>,
    ) -> Result<TransactWriteItem> {
        let (condition, old) = unchanged(was);
        let mut item = key;
        item.insert(attribute.to_owned(), s(value));
        let put = Put::builder()
            .table_name(&self.messages_table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(
                old.as_ref()
                    .map(|_| [("#a".to_owned(), attribute.to_owned())].into()),
            )
            .set_expression_attribute_values(old.map(|v| [(":was".to_owned(), s(v))].into()))
            .build()
            .map_err(|e| Error::Store(Box::new(e)))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A delete of `key`, on condition that its `attribute` is still `value`.
    fn delete_if(&self, key: Item, attribute: &str, value: &str) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.messages_table)
            .set_key(Some(key))
            .condition_expression("#a = :was")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":was", s(value))
            .build()
            .map_err(|e| Error::Store(Box::new(e)))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

impl IdentityStore for DynamoStore {
    async fn account_of(&self, app_sid: &str, openid: &str) -> Result<Option<String>> {
        self.read_one(openid_key(app_sid, openid), "account").await
    }

    async fn openid_of(&self, app_sid: &str, account: &str) -> Result<Option<String>> {
        self.read_one(account_key(app_sid, account), "openid").await
    }

    async fn bind(&self, app_sid: &str, openid: &str, account: &str) -> Result<()> {
        for attempt in 0..BIND_TRIES {
            if attempt > 0 {
                tokio::time::sleep(crate::flows::jitter(5, 50)).await;
            }
            let (held, owner) = futures::try_join!(
                self.account_of(app_sid, openid),
                self.openid_of(app_sid, account)
            )?;
            if held.as_deref() == Some(account) && owner.as_deref() == Some(openid) {
                return Ok(());
            }
            let mut writes = vec![
                self.put_if(openid_key(app_sid, openid), "account", account, &held)?,
                self.put_if(account_key(app_sid, account), "openid", openid, &owner)?,
            ];
            // The openid that held this account before loses it.
            if let Some(previous) = owner.as_deref().filter(|o| *o != openid) {
                writes.push(self.delete_if(openid_key(app_sid, previous), "account", account)?);
            }
            // The account this openid held before is released.
            if let Some(old) = held.as_deref().filter(|a| *a != account) {
                writes.push(self.delete_if(account_key(app_sid, old), "openid", openid)?);
            }
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes))
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                // Another bind changed one of the items since they were read: read again.
                Err(SdkError::ServiceError(ctx))
                    if matches!(
                        ctx.err(),
                        TransactWriteItemsError::TransactionCanceledException(_)
                    ) => {}
                Err(e) => return Err(ddb(e)),
            }
        }
        Err(Error::Contention("identity bind"))
    }
}
