//! The nonces of WeChat's pushes ([`NonceStore`]): one item per (appid, nonce) in the
//! connections table, `connection_id` = `wxnonce#<appid>#<nonce>`, `expires_at` (the table's
//! TTL attribute) when the push window has passed. The push function's IAM policy reaches these
//! items only (`dynamodb:LeadingKeys` `wxnonce#*`).

use super::client::{conditional, DynamoStore};
use super::items::{n, s};
use crate::error::Result;
use crate::ports::NonceStore;

impl NonceStore for DynamoStore {
    async fn claim_nonce(
        &self,
        appid: &str,
        nonce: &str,
        now_s: i64,
        until_s: i64,
    ) -> Result<bool> {
        let put = self
            .client
            .put_item()
            .table_name(&self.connections_table)
            .item("connection_id", s(format!("wxnonce#{appid}#{nonce}")))
            .item("expires_at", n(until_s))
            // An item TTL has not swept yet is no claim once its window has passed.
            .condition_expression("attribute_not_exists(connection_id) OR expires_at < :now")
            .expression_attribute_values(":now", n(now_s))
            .send()
            .await;
        conditional(put)
    }
}
