//! What the local stack needs from `template.yaml`, one file per resource kind: the WebSocket
//! API ([`api`]: route selection expression, stage, routes → integrations → functions), the
//! HTTP API ([`http_api`]: its stage and the routes of the functions' `HttpApi` events), the
//! functions' schedules ([`schedules`]), each
//! function ([`functions`]: binary, timeout, memory, environment resolved), each bucket
//! ([`buckets`]: resolved name, CORS rules, the functions its S3 events go to) and each table
//! ([`tables`]). Every value it uses resolves exactly or is refused ([`crate::resolve`]);
//! resources whose `Condition` is false do not exist.

mod api;
mod buckets;
mod functions;
mod http_api;
mod schedules;
mod streams;
mod tables;
#[cfg(test)]
mod tests;

pub use tables::{IndexSpec, TableSpec};

use crate::resolve::{err, Resolver};
use crate::template::Template;
use crate::DevError;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the Cargo binary that is this function.
    pub binary: String,
    pub timeout: Duration,
    pub memory_mb: u32,
    /// Globals and the function's own variables, intrinsics resolved.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiSpec {
    pub logical_id: String,
    pub route_selection_expression: String,
    pub stage: String,
    /// Route key (`$connect`, `$default`, `sendmessage`, …) → function logical id.
    pub routes: BTreeMap<String, String>,
}

/// One route of the HTTP API: `Events` of `Type: HttpApi` on a function.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// `GET`, `POST`, … or `ANY`.
    pub method: String,
    /// `/login`, `/wechat/push/{app_sid}`, `/files/{rest+}`, or `$default`.
    pub path: String,
    /// Logical id of the function (payload format 2.0).
    pub function: String,
}

/// A function run on a schedule: one `Events` entry of `Type: Schedule` or `ScheduleV2`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    /// Logical id of the function.
    pub function: String,
    /// The entry's name under `Events`.
    pub event_id: String,
    /// `rate(10 minutes)`, as written.
    pub expression: String,
    pub every: std::time::Duration,
    /// `Input`: the event the function gets instead of EventBridge's scheduled event.
    pub input: Option<serde_json::Value>,
}

/// A function fed by a table's stream: one `Events` entry of `Type: DynamoDB` (Lambda's event
/// source mapping).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSourceSpec {
    /// Logical id of the function.
    pub function: String,
    /// The entry's name under `Events`.
    pub event_id: String,
    /// Logical id of the table whose stream it reads.
    pub table: String,
    /// `TRIM_HORIZON` or `LATEST` (the same locally: the stack's tables start empty).
    pub starting_position: String,
    /// `BatchSize` (default 100).
    pub batch_size: usize,
    /// `FilterCriteria.Filters[].Pattern`, parsed and checked; a record passes if any matches.
    pub filters: Vec<serde_json::Value>,
    /// `BisectBatchOnFunctionError`.
    pub bisect: bool,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_item_failures: bool,
    /// `MaximumRetryAttempts`; `None` (the default, or -1) retries until the records expire.
    pub max_retries: Option<u32>,
    /// `DestinationConfig.OnFailure.Destination`, resolved (an SQS queue's or SNS topic's ARN).
    pub on_failure: Option<String>,
}

/// The template's HTTP API (`AWS::Serverless::HttpApi`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpApiSpec {
    pub logical_id: String,
    /// A named stage (a path segment before every route); `None` for `$default`.
    pub stage: Option<String>,
    pub routes: Vec<HttpRoute>,
}

/// One rule of a bucket's `CorsConfiguration.CorsRules`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CorsRule {
    pub allowed_methods: Vec<String>,
    /// Each may hold one `*` wildcard (`*`, `https://*.example.com`).
    pub allowed_origins: Vec<String>,
    /// Each may hold one `*` wildcard; compared case-insensitively.
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub max_age_seconds: Option<u32>,
}

/// A function that a bucket notifies: one `Events` entry of `Type: S3` of an
/// `AWS::Serverless::Function`.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Subscription {
    /// Logical id of the function.
    pub function: String,
    /// The entry's name under `Events` (`ImageUploaded`); locally the `configurationId`.
    pub event_id: String,
    /// Patterns such as `s3:ObjectCreated:*` or `s3:ObjectCreated:Put`.
    pub events: Vec<String>,
    /// `Filter.S3Key.Rules`: the key must start with `prefix` and end with `suffix`.
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

impl S3Subscription {
    /// Whether an event named like `ObjectCreated:Put` for `key` (not URL-encoded) goes to
    /// this function.
    pub fn matches(&self, event_name: &str, key: &str) -> bool {
        let event = format!("s3:{event_name}");
        let named = self.events.iter().any(|p| match p.strip_suffix('*') {
            Some(head) => event.starts_with(head),
            None => *p == event,
        });
        named
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| key.ends_with(s))
    }
}

/// One `AWS::S3::Bucket`.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketSpec {
    /// The bucket's name: its `BucketName` resolved, else its logical id in lowercase.
    pub name: String,
    pub logical_id: String,
    pub cors: Vec<CorsRule>,
    pub notifications: Vec<S3Subscription>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamApp {
    pub api: ApiSpec,
    /// The HTTP API, if the template has one.
    pub http_api: Option<HttpApiSpec>,
    /// The functions' schedules.
    pub schedules: Vec<ScheduleSpec>,
    /// The functions' DynamoDB stream event sources.
    pub streams: Vec<StreamSourceSpec>,
    pub functions: BTreeMap<String, FunctionSpec>,
    pub buckets: Vec<BucketSpec>,
    pub tables: Vec<TableSpec>,
}

impl SamApp {
    /// The bucket named `name` (its resolved name).
    pub fn bucket(&self, name: &str) -> Option<&BucketSpec> {
        self.buckets.iter().find(|b| b.name == name)
    }
}

/// Environment variables whose values the stack supplies itself instead of resolving the
/// template's (for example a secret's ARN, which names a Secrets Manager secret the stack
/// does not emulate): name → value, for every function that declares the variable.
pub type Supplied = BTreeMap<String, String>;

/// Reads the application from a parsed template, with parameter overrides and the values the
/// stack supplies.
pub fn read(
    template: &Template,
    overrides: &HashMap<String, String>,
    supplied: &Supplied,
) -> Result<SamApp, DevError> {
    let doc = template.doc();
    let r = Resolver::new(doc, overrides)?;
    let resources = Resources::of(doc, &r)?;
    let api = api::read(&r, &resources)?;
    let functions::Read {
        functions,
        subscriptions,
        http_events,
        schedules,
        streams,
    } = functions::read(&r, &resources, doc, supplied)?;
    let http_api = http_api::read(&r, &resources, http_events)?;
    for (key, f) in &api.routes {
        if !functions.contains_key(f) {
            return Err(err(format!(
                "route {key} invokes {f}, which is not an AWS::Serverless::Function"
            )));
        }
    }
    let buckets = buckets::read(&r, &resources, &subscriptions)?;
    let tables = tables::read(&r, &resources)?;
    for s in &streams {
        if tables
            .iter()
            .all(|t| t.logical_id != s.table || t.stream_view_type.is_none())
        {
            return Err(err(format!(
                "{}.Events.{} reads the stream of {}, which has no StreamSpecification",
                s.function, s.event_id, s.table
            )));
        }
    }
    Ok(SamApp {
        api,
        http_api,
        schedules,
        streams,
        functions,
        buckets,
        tables,
    })
}

/// The template's resources, and which of them exist (a false `Condition` removes one).
pub(crate) struct Resources<'a> {
    all: &'a Mapping,
    absent: HashSet<String>,
}

impl<'a> Resources<'a> {
    fn of(doc: &'a Value, r: &Resolver) -> Result<Self, DevError> {
        let all = doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| err("no Resources"))?;
        let mut absent = HashSet::new();
        for (k, v) in all {
            if let (Some(id), Some(c)) = (k.as_str(), v.get("Condition")) {
                let c = c
                    .as_str()
                    .ok_or_else(|| err(format!("{id}.Condition is not a name")))?;
                let holds = r
                    .condition(c)
                    .map_err(|e| err(format!("{id}.Condition: {e}")))?;
                if !holds {
                    absent.insert(id.to_owned());
                }
            }
        }
        Ok(Resources { all, absent })
    }

    /// The existing resources of type `t`: (logical id, resource).
    fn of_type(&self, t: &'static str) -> impl Iterator<Item = (String, &'a Value)> + '_ {
        self.all
            .iter()
            .filter(move |(_, v)| v.get("Type").and_then(Value::as_str) == Some(t))
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v)))
            .filter(|(k, _)| !self.absent.contains(k))
    }

    /// A resource by logical id, existing or not.
    fn get(&self, id: &str) -> Option<&'a Value> {
        self.all.get(id)
    }
}

/// A resource's `Properties` (null when it has none).
fn props(v: &Value) -> Value {
    v.get("Properties").cloned().unwrap_or(Value::Null)
}
