//! The functions' DynamoDB stream event sources, run from DynamoDB Local's Streams API as
//! Lambda's event source mapping runs them: every shard is read in order (one batch at a time,
//! `ParallelizationFactor` 1), about four times a second while it is quiet; records that no
//! filter of `FilterCriteria` matches are dropped; the rest go in batches of at most
//! `BatchSize`, as Lambda's `{"Records": [...]}` event.
//!
//! A batch fails when the function errs (an error, a crash, a timeout) or, with
//! `ReportBatchItemFailures`, answers `batchItemFailures` (an identifier that is no sequence
//! number of the batch fails all of it). The records before the first failed one are done;
//! the rest is retried, split in two first when `BisectBatchOnFunctionError` is on and the
//! failure is at its start (a split does not count as a retry). After `MaximumRetryAttempts`
//! retries the records are skipped and the on-failure destination gets Lambda's invocation
//! record (`DDBStreamBatchInfo`: shard, first and last sequence numbers, size; no data), kept
//! in memory for tests ([`StreamPollers::failures`]). Retries wait 100 ms, doubling to 2 s.

pub mod pattern;

use crate::app::StreamSourceSpec;
use crate::clients;
use crate::resolve::{LOCAL_ACCOUNT, LOCAL_REGION};
use crate::runtime::Invoker;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use aws_sdk_dynamodbstreams::Client;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a quiet shard is read (Lambda: four times a second).
const POLL_EVERY: Duration = Duration::from_millis(250);
/// How many invocations and failures are remembered.
const SEEN_CAP: usize = 10_000;

/// One invocation of a function with a batch of stream records.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    pub function: String,
    pub event_id: String,
    /// `event.Records`, as delivered.
    pub records: Vec<Value>,
    /// The function's answer, or why it gave none.
    pub outcome: Result<Value, String>,
}

/// What an on-failure destination received: Lambda's invocation record.
#[derive(Debug, Clone)]
pub struct FailureRecord {
    /// The destination's ARN, as the template resolves it.
    pub destination: String,
    pub body: Value,
}

#[derive(Default)]
struct Seen {
    batches: Vec<StreamBatch>,
    failures: Vec<FailureRecord>,
}

/// The running event source mappings; dropping it stops them.
pub struct StreamPollers {
    seen: Arc<Mutex<Seen>>,
    enabled: BTreeMap<String, Arc<AtomicBool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl StreamPollers {
    /// Starts one poller per source; `tables` maps each table's logical id to its name in
    /// DynamoDB Local at `endpoint`.
    pub fn start(
        specs: &[StreamSourceSpec],
        tables: &BTreeMap<String, String>,
        endpoint: &str,
        invoker: Arc<Invoker>,
    ) -> Self {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let client = Client::from_conf(
            aws_sdk_dynamodbstreams::config::Builder::from(&clients::sdk_config(endpoint)).build(),
        );
        let mut enabled = BTreeMap::new();
        let tasks = specs
            .iter()
            .map(|spec| {
                let on = Arc::new(AtomicBool::new(true));
                enabled.insert(spec.function.clone(), on.clone());
                let source = Source {
                    spec: spec.clone(),
                    table: tables.get(&spec.table).cloned().unwrap_or_default(),
                    client: client.clone(),
                    invoker: invoker.clone(),
                    seen: seen.clone(),
                    enabled: on,
                };
                tokio::spawn(source.run())
            })
            .collect();
        StreamPollers {
            seen,
            enabled,
            tasks,
        }
    }

    /// Every invocation so far (at most the first 10,000).
    pub fn batches(&self) -> Vec<StreamBatch> {
        self.seen.lock().expect("seen lock").batches.clone()
    }

    /// Every invocation record sent to an on-failure destination so far.
    pub fn failures(&self) -> Vec<FailureRecord> {
        self.seen.lock().expect("seen lock").failures.clone()
    }

    /// Pauses or resumes `function`'s mappings (`aws lambda update-event-source-mapping
    /// --enabled`): while paused, records wait in the stream. Whether it has one.
    pub fn set_enabled(&self, function: &str, on: bool) -> bool {
        match self.enabled.get(function) {
            Some(flag) => {
                flag.store(on, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for StreamPollers {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Source {
    spec: StreamSourceSpec,
    table: String,
    client: Client,
    invoker: Arc<Invoker>,
    seen: Arc<Mutex<Seen>>,
    enabled: Arc<AtomicBool>,
}

#[derive(Default)]
struct Shard {
    iterator: Option<String>,
    /// The last sequence number read: where a new iterator starts.
    last: Option<String>,
    closed: bool,
}

impl Source {
    async fn run(self) {
        let mut arn = None;
        let mut shards = BTreeMap::new();
        let mut complained = false;
        loop {
            if !self.enabled.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            match self.poll(&mut arn, &mut shards).await {
                Ok(true) => complained = false,
                Ok(false) => {
                    complained = false;
                    tokio::time::sleep(POLL_EVERY).await;
                }
                Err(e) => {
                    if !complained {
                        eprintln!(
                            "[stream] {}.{}: cannot read the stream of {}: {e}",
                            self.spec.function, self.spec.event_id, self.table
                        );
                        complained = true;
                    }
                    // A restarted DynamoDB Local: new iterators, after what was read.
                    arn = None;
                    for s in shards.values_mut() {
                        s.iterator = None;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Reads every open shard once and delivers what passed the filters. Whether any record
    /// was read.
    async fn poll(
        &self,
        arn: &mut Option<String>,
        shards: &mut BTreeMap<String, Shard>,
    ) -> Result<bool, String> {
        let stream = match arn {
            Some(a) => a.clone(),
            None => {
                let out = self
                    .client
                    .list_streams()
                    .table_name(&self.table)
                    .send()
                    .await
                    .map_err(|e| {
                        format!("ListStreams: {}", aws_sdk_dynamodbstreams::Error::from(e))
                    })?;
                let a = out
                    .streams()
                    .first()
                    .and_then(|s| s.stream_arn())
                    .ok_or("the table has no stream")?
                    .to_owned();
                *arn = Some(a.clone());
                a
            }
        };
        let described = self
            .client
            .describe_stream()
            .stream_arn(&stream)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "DescribeStream: {}",
                    aws_sdk_dynamodbstreams::Error::from(e)
                )
            })?;
        for s in described
            .stream_description()
            .map(|d| d.shards())
            .unwrap_or_default()
        {
            if let Some(id) = s.shard_id() {
                shards.entry(id.to_owned()).or_default();
            }
        }
        let mut read_any = false;
        for (id, shard) in shards.iter_mut().filter(|(_, s)| !s.closed) {
            let iterator = match &shard.iterator {
                Some(i) => i.clone(),
                None => {
                    let req = self
                        .client
                        .get_shard_iterator()
                        .stream_arn(&stream)
                        .shard_id(id);
                    let req = match &shard.last {
                        Some(seq) => req
                            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                            .sequence_number(seq),
                        None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
                    };
                    req.send()
                        .await
                        .map_err(|e| {
                            format!(
                                "GetShardIterator: {}",
                                aws_sdk_dynamodbstreams::Error::from(e)
                            )
                        })?
                        .shard_iterator()
                        .ok_or("no shard iterator")?
                        .to_owned()
                }
            };
            let out = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(1000)
                .send()
                .await
                .map_err(|e| format!("GetRecords: {}", aws_sdk_dynamodbstreams::Error::from(e)))?;
            shard.iterator = out.next_shard_iterator().map(str::to_owned);
            shard.closed = shard.iterator.is_none();
            let records = out.records();
            if let Some(last) = records.last().and_then(|r| r.dynamodb()?.sequence_number()) {
                shard.last = Some(last.to_owned());
            }
            if records.is_empty() {
                continue;
            }
            read_any = true;
            let passed: Vec<Value> = records
                .iter()
                .map(|r| record_json(r, &stream))
                .filter(|r| {
                    self.spec.filters.is_empty()
                        || self.spec.filters.iter().any(|p| pattern::matches(p, r))
                })
                .collect();
            for batch in passed.chunks(self.spec.batch_size) {
                self.deliver(id, &stream, batch.to_vec()).await;
            }
        }
        Ok(read_any)
    }

    /// Invokes the function with `records` until they are done or given up.
    async fn deliver(&self, shard: &str, stream: &str, records: Vec<Value>) {
        let spec = &self.spec;
        let mut queue = VecDeque::from([(records, 0u32)]);
        while let Some((batch, retries)) = queue.pop_front() {
            let event = json!({ "Records": batch });
            let outcome = self
                .invoker
                .invoke(&spec.function, &event, &format!("stream {}", spec.event_id))
                .await
                .map_err(|e| e.to_string());
            let failed_from = match &outcome {
                Err(_) => Some(0),
                Ok(answer) if spec.report_item_failures => first_failed(answer, &batch),
                Ok(_) => None,
            };
            self.remember(StreamBatch {
                function: spec.function.clone(),
                event_id: spec.event_id.clone(),
                records: batch.clone(),
                outcome: outcome.clone(),
            });
            let Some(from) = failed_from else { continue };
            let rest = batch[from..].to_vec();
            if spec.bisect && rest.len() > 1 && from == 0 {
                let half = rest.len() / 2;
                queue.push_front((rest[half..].to_vec(), 0));
                queue.push_front((rest[..half].to_vec(), 0));
                continue;
            }
            if spec.max_retries.is_none_or(|max| retries < max) {
                let wait = Duration::from_millis(100 << retries.min(5)).min(Duration::from_secs(2));
                tokio::time::sleep(wait).await;
                queue.push_front((rest, retries + 1));
                continue;
            }
            self.give_up(shard, stream, &rest, retries + 1, outcome.is_err());
        }
    }

    fn give_up(&self, shard: &str, stream: &str, records: &[Value], invokes: u32, errored: bool) {
        let spec = &self.spec;
        eprintln!(
            "[stream] {}.{}: {} record(s) skipped after {invokes} invocation(s)",
            spec.function,
            spec.event_id,
            records.len()
        );
        let Some(destination) = &spec.on_failure else {
            return;
        };
        let seq = |r: Option<&Value>| {
            r.and_then(|r| r["dynamodb"]["SequenceNumber"].as_str())
                .map(str::to_owned)
        };
        let arrival = |r: Option<&Value>| {
            r.and_then(|r| r["dynamodb"]["ApproximateCreationDateTime"].as_f64())
                .map(rfc3339)
        };
        let mut response = json!({"statusCode": 200, "executedVersion": "$LATEST"});
        if errored {
            response["functionError"] = json!("Unhandled");
        }
        let body = json!({
            "requestContext": {
                "requestId": ulid::Ulid::new().to_string().to_lowercase(),
                "functionArn": format!("arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{}", spec.function),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invokes,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": rfc3339(now_secs()),
            "DDBStreamBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": seq(records.first()),
                "endSequenceNumber": seq(records.last()),
                "approximateArrivalOfFirstRecord": arrival(records.first()),
                "approximateArrivalOfLastRecord": arrival(records.last()),
                "batchSize": records.len(),
                "streamArn": stream,
            },
        });
        let mut seen = self.seen.lock().expect("seen lock");
        if seen.failures.len() < SEEN_CAP {
            seen.failures.push(FailureRecord {
                destination: destination.clone(),
                body,
            });
        }
    }

    fn remember(&self, batch: StreamBatch) {
        let mut seen = self.seen.lock().expect("seen lock");
        if seen.batches.len() < SEEN_CAP {
            seen.batches.push(batch);
        }
    }
}

/// Where a partial batch response says the batch failed: the index of its first failed record,
/// 0 when an identifier is missing or names no record of the batch (all of it failed), `None`
/// when nothing failed.
fn first_failed(answer: &Value, batch: &[Value]) -> Option<usize> {
    let failures = match answer.get("batchItemFailures") {
        None | Some(Value::Null) => return None,
        Some(Value::Array(f)) if f.is_empty() => return None,
        Some(Value::Array(f)) => f,
        Some(_) => return Some(0),
    };
    let mut first = usize::MAX;
    for f in failures {
        let id = f.get("itemIdentifier").and_then(Value::as_str);
        let at = id.and_then(|id| {
            batch
                .iter()
                .position(|r| r["dynamodb"]["SequenceNumber"].as_str() == Some(id))
        });
        match at {
            Some(i) => first = first.min(i),
            None => return Some(0),
        }
    }
    Some(first)
}

/// A stream record as Lambda delivers it.
fn record_json(r: &Record, stream: &str) -> Value {
    let mut dynamodb = Map::new();
    if let Some(d) = r.dynamodb() {
        if let Some(t) = d.approximate_creation_date_time() {
            dynamodb.insert("ApproximateCreationDateTime".into(), json!(t.secs()));
        }
        for (k, image) in [
            ("Keys", d.keys()),
            ("NewImage", d.new_image()),
            ("OldImage", d.old_image()),
        ] {
            if let Some(image) = image {
                dynamodb.insert(k.into(), item_json(image));
            }
        }
        dynamodb.insert("SequenceNumber".into(), json!(d.sequence_number()));
        dynamodb.insert("SizeBytes".into(), json!(d.size_bytes()));
        if let Some(v) = d.stream_view_type() {
            dynamodb.insert("StreamViewType".into(), json!(v.as_str()));
        }
    }
    json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|n| n.as_str()),
        "eventVersion": r.event_version().unwrap_or("1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": LOCAL_REGION,
        "dynamodb": dynamodb,
        "eventSourceARN": stream,
    })
}

fn item_json(item: &std::collections::HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect(),
    )
}

fn value_json(v: &AttributeValue) -> Value {
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Ss(l) => json!({ "SS": l }),
        AttributeValue::Ns(l) => json!({ "NS": l }),
        AttributeValue::Bs(l) => json!({ "BS": l.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": item_json(m) }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(value_json).collect::<Vec<_>>() }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        _ => Value::Null,
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn rfc3339(secs: f64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
