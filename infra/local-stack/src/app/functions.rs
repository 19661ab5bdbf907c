//! Each `AWS::Serverless::Function`: its binary, timeout, memory and environment (Globals and
//! its own, resolved), and the S3, HTTP API and schedule events it subscribes to.

use super::http_api::{self, HttpEvent};
use super::{
    buckets, props, schedules, streams, FunctionSpec, Resources, S3Subscription, ScheduleSpec,
    StreamSourceSpec, Supplied,
};
use crate::resolve::{err, Resolver};
use crate::DevError;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The functions, each S3 subscription with the logical id of its bucket, each HTTP API event,
/// each schedule and each stream event source.
pub(super) struct Read {
    pub functions: BTreeMap<String, FunctionSpec>,
    pub subscriptions: Vec<(String, S3Subscription)>,
    pub http_events: Vec<HttpEvent>,
    pub schedules: Vec<ScheduleSpec>,
    pub streams: Vec<StreamSourceSpec>,
}

pub(super) fn read(
    r: &Resolver,
    resources: &Resources,
    doc: &Value,
    supplied: &Supplied,
) -> Result<Read, DevError> {
    let globals = doc
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut functions = BTreeMap::new();
    let mut subscriptions = Vec::new();
    let mut http_events = Vec::new();
    let mut schedule_list = Vec::new();
    let mut streams = Vec::new();
    for (id, v) in resources.of_type("AWS::Serverless::Function") {
        let p = props(v);
        let number = |k: &str, default: u64| number(r, &id, &p, &globals, k, default);
        let binary = v
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{id} has no Metadata.BuildProperties.Binary")))?;
        let memory_mb = number("MemorySize", 128)?;
        let spec = FunctionSpec {
            logical_id: id.clone(),
            binary: binary.to_owned(),
            timeout: Duration::from_secs(number("Timeout", 3)?),
            memory_mb: u32::try_from(memory_mb)
                .map_err(|_| err(format!("{id}.MemorySize is too large")))?,
            env: environment(r, &id, &p, &globals, supplied)?,
        };
        functions.insert(id.clone(), spec);
        if let Some(events) = p.get("Events").and_then(Value::as_mapping) {
            for (event_id, e) in events {
                let event_id = event_id.as_str().unwrap_or_default();
                match e.get("Type").and_then(Value::as_str) {
                    Some("S3") => {
                        subscriptions.push(buckets::subscription(r, resources, &id, event_id, e)?)
                    }
                    Some("HttpApi") => http_events.push(http_api::event(r, &id, event_id, e)?),
                    Some(kind @ ("Schedule" | "ScheduleV2")) => {
                        schedule_list.extend(schedules::event(r, &id, event_id, kind, e)?)
                    }
                    Some("DynamoDB") => {
                        streams.extend(streams::event(r, resources, &id, event_id, e)?)
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(Read {
        functions,
        subscriptions,
        http_events,
        schedules: schedule_list,
        streams,
    })
}

/// The function's own value of `k`, else Globals'; `AWS::NoValue` counts as absent.
fn number(
    r: &Resolver,
    id: &str,
    p: &Value,
    globals: &Value,
    k: &str,
    default: u64,
) -> Result<u64, DevError> {
    for (source, name) in [(p, id), (globals, "Globals.Function")] {
        if let Some(v) = source.get(k) {
            let what = format!("{name}.{k}");
            if let Some(s) = r.resolve(v, &what)? {
                return s
                    .parse()
                    .map_err(|_| err(format!("{what}: {s:?} is not a whole number")));
            }
        }
    }
    Ok(default)
}

/// Globals' variables, then the function's own, resolved; `AWS::NoValue` removes one. A
/// variable the stack supplies takes the supplied value and is not resolved.
fn environment(
    r: &Resolver,
    id: &str,
    p: &Value,
    globals: &Value,
    supplied: &Supplied,
) -> Result<BTreeMap<String, String>, DevError> {
    let mut env = BTreeMap::new();
    for (source, name) in [(globals, "Globals.Function"), (p, id)] {
        let Some(vars) = source.get("Environment").and_then(|e| e.get("Variables")) else {
            continue;
        };
        let vars = vars
            .as_mapping()
            .ok_or_else(|| err(format!("{name}.Environment.Variables is not a mapping")))?;
        for (k, v) in vars {
            let k = k.as_str().ok_or_else(|| {
                err(format!(
                    "{name}.Environment.Variables: a name is not a string"
                ))
            })?;
            if let Some(value) = supplied.get(k) {
                env.insert(k.to_owned(), value.clone());
                continue;
            }
            let what = if name == id {
                format!("{id}.Environment.Variables.{k}")
            } else {
                format!("{id} (from {name}.Environment.Variables.{k})")
            };
            match r.resolve(v, &what)? {
                Some(v) => env.insert(k.to_owned(), v),
                None => env.remove(k),
            };
        }
    }
    Ok(env)
}
