//! The DynamoDB client both tables share, the error mapping, and the batched read.

use super::items::Item;
use crate::error::{Error, Result};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

/// Name of the messages table's sparse index of conversation entries by last activity.
pub const BY_ACTIVITY_INDEX: &str = "by_activity";
/// Attempts at a `BatchGetItem` whose keys come back unprocessed (throttling).
const BATCH_GET_ATTEMPTS: usize = 4;

/// Both tables behind one client, built once per cold start.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    pub(super) client: Client,
    pub(super) messages_table: String,
    pub(super) connections_table: String,
}

impl DynamoStore {
    pub fn new(client: Client, messages_table: &str, connections_table: &str) -> Self {
        DynamoStore {
            client,
            messages_table: messages_table.to_owned(),
            connections_table: connections_table.to_owned(),
        }
    }
}

/// Any SDK error as a storage failure.
pub(super) fn ddb<E, R>(e: SdkError<E, R>) -> Error
where
    aws_sdk_dynamodb::Error: From<SdkError<E, R>>,
{
    Error::from(aws_sdk_dynamodb::Error::from(e))
}

/// Whether an SDK error is a failed condition (an expected outcome, not a fault).
pub(super) fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(e, SdkError::ServiceError(ctx) if ctx.err().code() == Some("ConditionalCheckFailedException"))
}

/// A conditional write's outcome: `true` written, `false` its condition failed, else the fault.
pub(super) fn conditional<T, E, R>(out: std::result::Result<T, SdkError<E, R>>) -> Result<bool>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
    aws_sdk_dynamodb::Error: From<SdkError<E, R>>,
{
    match out {
        Ok(_) => Ok(true),
        Err(e) if condition_failed(&e) => Ok(false),
        Err(e) => Err(ddb(e)),
    }
}

impl From<aws_sdk_dynamodb::Error> for Error {
    fn from(e: aws_sdk_dynamodb::Error) -> Self {
        Error::store(e)
    }
}

impl DynamoStore {
    /// One `BatchGetItem` over both tables, consistent, with unprocessed keys asked again a
    /// bounded number of times (they come back only under throttling).
    pub(super) async fn batch_get(
        &self,
        messages: Vec<Item>,
        connections: Vec<Item>,
    ) -> Result<Vec<Item>> {
        let mut request: HashMap<String, KeysAndAttributes> = HashMap::new();
        for (table, keys) in [
            (&self.messages_table, messages),
            (&self.connections_table, connections),
        ] {
            if !keys.is_empty() {
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(Error::store)?;
                request.insert(table.clone(), ka);
            }
        }
        let mut items = Vec::new();
        for attempt in 0..BATCH_GET_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
            }
            let out = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(ddb)?;
            for (_, table_items) in out.responses.unwrap_or_default() {
                items.extend(table_items);
            }
            request = out.unprocessed_keys.unwrap_or_default();
            if request.is_empty() {
                return Ok(items);
            }
        }
        Err(Error::Contention("batch read"))
    }
}
