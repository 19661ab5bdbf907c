//! Each app's WeChat access token ([`TokenStore`]): one item per appid in the connections table
//! (short-lived data without backups, like the connections): `connection_id` =
//! `wxtoken#<appid>` (API Gateway's ids never contain `#`), `token`, `expires_at` (epoch s,
//! the table's TTL attribute, so an expired token goes by itself), `forced_at` (epoch s, the
//! last forced refresh claimed for the app), `refresh_until` (epoch ms, the lease of the one
//! caller asking WeChat for a token while the others wait for it). The functions' IAM policies reach these items
//! only (`dynamodb:LeadingKeys` `wxtoken#*`).

use super::client::{conditional, ddb, DynamoStore};
use super::items::{get_opt_n, get_opt_s, n, s, Item};
use crate::domain::wechat::{AccessToken, StoredToken};
use crate::error::Result;
use crate::ports::TokenStore;

fn token_key(appid: &str) -> Item {
    Item::from([("connection_id".to_owned(), s(format!("wxtoken#{appid}")))])
}

impl TokenStore for DynamoStore {
    async fn stored_token(&self, appid: &str) -> Result<StoredToken> {
        let out = self
            .client
            .get_item()
            .table_name(&self.connections_table)
            .set_key(Some(token_key(appid)))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        let Some(item) = out.item else {
            return Ok(StoredToken::default());
        };
        let token = match (get_opt_s(&item, "token"), get_opt_n(&item, "expires_at")?) {
            (Some(token), Some(expires_at)) => Some(AccessToken { token, expires_at }),
            _ => None,
        };
        Ok(StoredToken {
            token,
            forced_at: get_opt_n(&item, "forced_at")?,
            refresh_until_ms: get_opt_n(&item, "refresh_until")?,
        })
    }

    async fn store_token(&self, appid: &str, token: &AccessToken) -> Result<bool> {
        conditional(
            self.client
                .update_item()
                .table_name(&self.connections_table)
                .set_key(Some(token_key(appid)))
                .update_expression("SET #t = :t, expires_at = :e")
                .condition_expression(
                    "attribute_not_exists(#t) OR #t = :t OR attribute_not_exists(expires_at) OR expires_at <= :e",
                )
                .expression_attribute_names("#t", "token")
                .expression_attribute_values(":t", s(&token.token))
                .expression_attribute_values(":e", n(token.expires_at))
                .send()
                .await,
        )
    }

    async fn claim_refresh(&self, appid: &str, now_ms: i64, lease_ms: i64) -> Result<bool> {
        conditional(
            self.client
                .update_item()
                .table_name(&self.connections_table)
                .set_key(Some(token_key(appid)))
                .update_expression("SET refresh_until = :until")
                .condition_expression(
                    "attribute_not_exists(refresh_until) OR refresh_until <= :now",
                )
                .expression_attribute_values(":until", n(now_ms + lease_ms))
                .expression_attribute_values(":now", n(now_ms))
                .send()
                .await,
        )
    }

    async fn claim_forced_refresh(&self, appid: &str, now: i64, every: i64) -> Result<bool> {
        conditional(
            self.client
                .update_item()
                .table_name(&self.connections_table)
                .set_key(Some(token_key(appid)))
                .update_expression("SET forced_at = :now")
                .condition_expression("attribute_not_exists(forced_at) OR forced_at <= :cutoff")
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":cutoff", n(now - every))
                .send()
                .await,
        )
    }
}
