//! A record of the DynamoDB requests a client puts on the wire: operation (`x-amz-target`),
//! when each was sent and answered, and optionally the capacity DynamoDB says it consumed.
//! The adapter tests count requests and round trips with it; `local-bench` counts them per
//! send and prices them.

use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeDeserializationInterceptorContextRef,
    BeforeSerializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records the DynamoDB requests of the clients it is installed on (see [`client`]).
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    requests: Arc<Mutex<Vec<Request>>>,
    /// Ask DynamoDB for `ReturnConsumedCapacity=TOTAL` on every request that takes it.
    capacity: bool,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub op: String,
    pub sent: Instant,
    pub answered: Option<Instant>,
    /// Read and write capacity units DynamoDB reported (with [`RequestLog::with_capacity`]).
    pub read_units: f64,
    pub write_units: f64,
}

/// Which entry of the log an attempt is (kept in the attempt's config bag).
#[derive(Debug, Clone)]
struct LogIndex(usize);
impl Storable for LogIndex {
    type Storer = StoreReplace<Self>;
}

impl RequestLog {
    /// A log that also asks for, and records, the consumed capacity of every request. The
    /// requests then carry one more parameter than the adapter sends; use a plain log where
    /// timing must match the functions' requests exactly.
    pub fn with_capacity() -> Self {
        RequestLog {
            capacity: true,
            ..Default::default()
        }
    }
    /// The operations since the last take, in the order they were sent.
    pub fn take(&self) -> Vec<String> {
        self.take_timed().into_iter().map(|r| r.op).collect()
    }
    pub fn take_timed(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// Sequential round trips among `requests`: the longest chain of requests each sent after
/// the previous one's answer came back. Requests sent together (in parallel) count once.
pub fn round_trips(requests: &[Request]) -> usize {
    let mut depth = vec![0usize; requests.len()];
    for (i, r) in requests.iter().enumerate() {
        depth[i] = 1 + requests[..i]
            .iter()
            .zip(&depth)
            .filter(|(p, _)| p.answered.is_some_and(|a| a <= r.sent))
            .map(|(_, d)| *d)
            .max()
            .unwrap_or(0);
    }
    depth.into_iter().max().unwrap_or(0)
}

/// Sets `return_consumed_capacity` on the inputs of these operations, if the input is one.
macro_rules! ask_capacity {
    ($input:expr, $($op:ident :: $ty:ident),*) => {
        $(if let Some(i) = $input.downcast_mut::<aws_sdk_dynamodb::operation::$op::$ty>() {
            i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
        })*
    };
}

/// The consumed capacity in an output of these operations, if the output is one.
macro_rules! reported_capacity {
    ($output:expr, $($op:ident :: $ty:ident),*) => {{
        let mut found: Option<Vec<ConsumedCapacity>> = None;
        $(if let Some(o) = $output.downcast_ref::<aws_sdk_dynamodb::operation::$op::$ty>() {
            found = Some(o.consumed_capacity.clone().into_iter().collect());
        })*
        found
    }};
}

macro_rules! reported_capacities {
    ($output:expr, $($op:ident :: $ty:ident),*) => {{
        let mut found: Option<Vec<ConsumedCapacity>> = None;
        $(if let Some(o) = $output.downcast_ref::<aws_sdk_dynamodb::operation::$op::$ty>() {
            found = Some(o.consumed_capacity.clone().unwrap_or_default());
        })*
        found
    }};
}

fn is_read(op: &str) -> bool {
    matches!(
        op,
        "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems"
    )
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }
    fn modify_before_serialization(
        &self,
        ctx: &mut BeforeSerializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.capacity {
            let input = ctx.input_mut();
            ask_capacity!(
                input,
                get_item::GetItemInput,
                batch_get_item::BatchGetItemInput,
                query::QueryInput,
                scan::ScanInput,
                put_item::PutItemInput,
                update_item::UpdateItemInput,
                delete_item::DeleteItemInput,
                batch_write_item::BatchWriteItemInput,
                transact_write_items::TransactWriteItemsInput,
                transact_get_items::TransactGetItemsInput
            );
        }
        Ok(())
    }
    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // DynamoDB names its operation in a header; other services (S3) only in the
        // operation's metadata.
        let op = match ctx.request().headers().get("x-amz-target") {
            Some(target) => target.rsplit('.').next().unwrap_or(target).to_owned(),
            None => cfg
                .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
                .map_or("?".to_owned(), |m| m.name().to_owned()),
        };
        let mut log = self.requests.lock().unwrap();
        cfg.interceptor_state().store_put(LogIndex(log.len()));
        log.push(Request {
            op,
            sent: Instant::now(),
            answered: None,
            read_units: 0.0,
            write_units: 0.0,
        });
        Ok(())
    }
    fn read_after_transmit(
        &self,
        _ctx: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(LogIndex(i)) = cfg.load::<LogIndex>() {
            if let Some(r) = self.requests.lock().unwrap().get_mut(*i) {
                r.answered = Some(Instant::now());
            }
        }
        Ok(())
    }
    fn read_after_deserialization(
        &self,
        ctx: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !self.capacity {
            return Ok(());
        }
        let Ok(output) = ctx.output_or_error() else {
            return Ok(());
        };
        let capacities = reported_capacity!(
            output,
            get_item::GetItemOutput,
            query::QueryOutput,
            scan::ScanOutput,
            put_item::PutItemOutput,
            update_item::UpdateItemOutput,
            delete_item::DeleteItemOutput
        )
        .or_else(|| {
            reported_capacities!(
                output,
                batch_get_item::BatchGetItemOutput,
                batch_write_item::BatchWriteItemOutput,
                transact_write_items::TransactWriteItemsOutput,
                transact_get_items::TransactGetItemsOutput
            )
        })
        .unwrap_or_default();
        if let Some(LogIndex(i)) = cfg.load::<LogIndex>() {
            if let Some(r) = self.requests.lock().unwrap().get_mut(*i) {
                for c in &capacities {
                    let total = c.capacity_units.unwrap_or(0.0);
                    match (c.read_capacity_units, c.write_capacity_units) {
                        (None, None) if is_read(&r.op) => r.read_units += total,
                        (None, None) => r.write_units += total,
                        (read, write) => {
                            r.read_units += read.unwrap_or(0.0);
                            r.write_units += write.unwrap_or(0.0);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A DynamoDB client for `endpoint` (DynamoDB Local) with dummy credentials, short timeouts
/// and `log` installed.
pub fn client(endpoint: &str, log: &RequestLog) -> aws_sdk_dynamodb::Client {
    let config = local_stack::clients::dynamodb_config(endpoint)
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(5))
                .connect_timeout(Duration::from_secs(1))
                .build(),
        )
        .interceptor(log.clone())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
