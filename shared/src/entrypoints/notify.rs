//! `chat-notify`: a batch of the messages table's stream records in (Lambda's DynamoDB event),
//! a partial batch response out: `{"batchItemFailures":[{"itemIdentifier":<sequence number>}]}`
//! names the records that failed (storage, or a record that is not what the filter lets
//! through), which Lambda retries and finally sends to the on-failure queue.

use crate::flows::notify::{notify as run, NotifyDeps, StreamKey};
use crate::ports::{
    AccessTokens, AppDirectory, ConnectionLookup, IdentityStore, NoticeStore, WeChat,
};
use lambda_runtime::LambdaEvent;
use serde_json::{json, Value};

#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id))]
pub async fn notify<S, W, T, A>(
    deps: &NotifyDeps<S, W, T, A>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error>
where
    S: NoticeStore + IdentityStore + ConnectionLookup,
    W: WeChat,
    T: AccessTokens,
    A: AppDirectory,
{
    Ok(handle(deps, &event.payload).await)
}

/// The batch's answer.
pub async fn handle<S, W, T, A>(deps: &NotifyDeps<S, W, T, A>, event: &Value) -> Value
where
    S: NoticeStore + IdentityStore + ConnectionLookup,
    W: WeChat,
    T: AccessTokens,
    A: AppDirectory,
{
    let records = event["Records"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (keys, mut failed) = read_records(records);
    let done = run(deps, &keys).await;
    failed.extend(done.failed.iter().cloned());
    tracing::info!(
        records = records.len(),
        sent = done.sent,
        skipped = done.skipped,
        no_grant = done.no_grant,
        dropped = done.dropped,
        failed = failed.len(),
        "notices"
    );
    json!({
        "batchItemFailures": failed
            .iter()
            .map(|s| json!({"itemIdentifier": s}))
            .collect::<Vec<_>>()
    })
}

/// The key of each record; the sequence numbers of records without one (failed: what the
/// filter passes always has it).
pub fn read_records(records: &[Value]) -> (Vec<StreamKey>, Vec<String>) {
    let mut keys = Vec::new();
    let mut failed = Vec::new();
    for r in records {
        let d = &r["dynamodb"];
        let Some(sequence) = d["SequenceNumber"].as_str() else {
            tracing::error!("a stream record without a sequence number");
            continue;
        };
        match (d["Keys"]["pk"]["S"].as_str(), d["Keys"]["sk"]["S"].as_str()) {
            (Some(pk), Some(sk)) => keys.push(StreamKey {
                sequence: sequence.to_owned(),
                pk: pk.to_owned(),
                sk: sk.to_owned(),
            }),
            _ => {
                tracing::error!(sequence, "a stream record without the messages table's key");
                failed.push(sequence.to_owned());
            }
        }
    }
    (keys, failed)
}
