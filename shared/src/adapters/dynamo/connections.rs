//! The connections table: records, registries, the typing throttle, the usage meters.

use super::client::{condition_failed, conditional, ddb, DynamoStore};
use super::items::{
    meter_id, n, nu, record_from, registry_entry_value, registry_from, registry_id, s, Item,
};
use crate::domain::connection::{count_expires_at, ConnectionRecord, Metered, Registry, Target};
use crate::error::{Error, Result};
use crate::ports::{
    ConnectionLookup, ConnectionRegister, ConnectionRemove, TypingThrottle, UsageMeter,
};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

impl ConnectionRegister for DynamoStore {
    async fn register(&self, r: &ConnectionRecord) -> Result<()> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.connections_table)
            .item("connection_id", s(&r.connection_id))
            .item("app_sid", s(&r.app_sid))
            .item("user", s(&r.user))
            .item("name", s(&r.profile.name))
            .item("avatar", s(&r.profile.avatar))
            .item("connected_at", n(r.connected_at_ms))
            .item("expires_at", n(r.expires_at))
            .item("reg", AttributeValue::Bool(r.registered));
        if let Some(friend) = &r.friend {
            put = put.item("friend", s(friend));
        }
        if let Some(exp) = r.token_expires_at {
            put = put.item("token_exp", n(exp));
        }
        if let Some(openid) = &r.openid {
            put = put.item("openid", s(openid));
        }
        put.send().await.map_err(ddb)?;
        Ok(())
    }

    async fn enroll(&self, r: &ConnectionRecord) -> Result<Registry> {
        // `SET conns.#c` needs the map to exist and cannot be combined with creating it, so a
        // user's very first connection takes a second write; a lost race just goes round again.
        for _ in 0..3 {
            let update = self
                .client
                .update_item()
                .table_name(&self.connections_table)
                .key("connection_id", s(registry_id(&r.app_sid, &r.user)))
                .expression_attribute_names("#name", "name")
                .expression_attribute_names("#user", "user")
                .expression_attribute_values(":name", s(&r.profile.name))
                .expression_attribute_values(":avatar", s(&r.profile.avatar))
                .expression_attribute_values(":user", s(&r.user))
                .expression_attribute_values(":app", s(&r.app_sid))
                // When the user last connected: a notice claim compares it with `n#` markers.
                .expression_attribute_values(":at", n(r.connected_at_ms))
                .return_values(ReturnValue::AllNew);
            let added = update
                .clone()
                .update_expression(
                    "SET conns.#c = :e, #name = :name, avatar = :avatar, #user = :user, app_sid = :app, last_conn = :at",
                )
                .condition_expression("attribute_exists(conns)")
                .expression_attribute_names("#c", &r.connection_id)
                .expression_attribute_values(":e", registry_entry_value(&r.registry_entry()))
                .send()
                .await;
            match added {
                Ok(out) => return registry_from(&out.attributes.unwrap_or_default()),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(ddb(e)),
            }
            let conns = AttributeValue::M(Item::from([(
                r.connection_id.clone(),
                registry_entry_value(&r.registry_entry()),
            )]));
            let created = update
                .update_expression(
                    "SET conns = :conns, #name = :name, avatar = :avatar, #user = :user, app_sid = :app, last_conn = :at",
                )
                .condition_expression("attribute_not_exists(conns)")
                .expression_attribute_values(":conns", conns)
                .send()
                .await;
            match created {
                Ok(out) => return registry_from(&out.attributes.unwrap_or_default()),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(ddb(e)),
            }
        }
        Err(Error::Contention("registry"))
    }

    async fn prune(&self, app_sid: &str, user: &str, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(app_sid, user)))
            .condition_expression("attribute_exists(conns)");
        let mut paths = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            update = update.expression_attribute_names(format!("#c{i}"), id);
            paths.push(format!("conns.#c{i}"));
        }
        match update
            .update_expression(format!("REMOVE {}", paths.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(ddb(e)),
        }
    }
}

impl DynamoStore {
    /// Takes one connection out of a registry if the entry is still the one made at
    /// `connected_at_ms` (and, with `before_ms`, older than that). Whether it was there.
    async fn unregister(
        &self,
        app_sid: &str,
        user: &str,
        connection_id: &str,
        connected_at_ms: i64,
        before_ms: Option<i64>,
    ) -> Result<bool> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(app_sid, user)))
            .update_expression("REMOVE conns.#c")
            .expression_attribute_names("#c", connection_id)
            // `at` is one of DynamoDB's reserved words.
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":at", n(connected_at_ms));
        update = match before_ms {
            Some(cutoff) => update
                .condition_expression("conns.#c.#at = :at AND conns.#c.#at < :cutoff")
                .expression_attribute_values(":cutoff", n(cutoff)),
            None => update.condition_expression("conns.#c.#at = :at"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(ddb(e)),
        }
    }
}

impl ConnectionRemove for DynamoStore {
    async fn remove(&self, connection_id: &str) -> Result<()> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(connection_id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(ddb)?;
        if let Some(old) = out.attributes.filter(|a| a.contains_key("user")) {
            let r = record_from(&old)?;
            if r.registered {
                self.unregister(&r.app_sid, &r.user, connection_id, r.connected_at_ms, None)
                    .await?;
            }
        }
        Ok(())
    }

    async fn remove_gone(&self, app_sid: &str, target: &Target, before_ms: i64) -> Result<bool> {
        let id = target.connection_id();
        let record = self
            .client
            .delete_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(id))
            .condition_expression("connected_at < :cutoff")
            .expression_attribute_values(":cutoff", n(before_ms))
            .send();
        let entry = self.unregister(
            app_sid,
            &target.user,
            id,
            target.connection.connected_at_ms,
            Some(before_ms),
        );
        let (record, entry) = futures::join!(record, entry);
        let record = match record {
            Ok(_) => true,
            // Absent, or too young to be judged gone.
            Err(e) if condition_failed(&e) => false,
            Err(e) => return Err(ddb(e)),
        };
        Ok(record || entry?)
    }
}

impl ConnectionLookup for DynamoStore {
    async fn get(&self, connection_id: &str, now_s: i64) -> Result<Option<ConnectionRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(connection_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let record = record_from(&item)?;
        // TTL deletion lags by up to days: an expired record is already dead.
        Ok((record.expires_at > now_s).then_some(record))
    }

    async fn registry(&self, app_sid: &str, user: &str) -> Result<Option<Registry>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(registry_id(app_sid, user)))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb)?;
        out.item.as_ref().map(registry_from).transpose()
    }
}

impl TypingThrottle for DynamoStore {
    async fn claim_typing(&self, connection_id: &str, now_ms: i64, gap_ms: i64) -> Result<bool> {
        let out = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(connection_id))
            .update_expression("SET typing_at = :now")
            .condition_expression(
                "attribute_exists(connection_id) AND \
                 (attribute_not_exists(typing_at) OR typing_at <= :cutoff)",
            )
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":cutoff", n(now_ms - gap_ms))
            .send()
            .await;
        conditional(out)
    }
}

impl UsageMeter for DynamoStore {
    async fn claim(
        &self,
        app_sid: &str,
        user: &str,
        what: Metered,
        window: i64,
        max: u64,
    ) -> Result<bool> {
        // One small item per user, kind and window, gone (TTL) a window after it: no count
        // of an older window needs removing, and the item never grows.
        let out = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .key("connection_id", s(meter_id(app_sid, user, what, window)))
            .update_expression("SET #n = if_not_exists(#n, :zero) + :one, expires_at = :exp")
            .condition_expression("attribute_not_exists(#n) OR #n < :max")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":zero", nu(0))
            .expression_attribute_values(":one", nu(1))
            .expression_attribute_values(":max", nu(max))
            .expression_attribute_values(":exp", n(count_expires_at(window)))
            .send()
            .await;
        conditional(out)
    }
}
