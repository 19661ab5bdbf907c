//! Each `AWS::S3::Bucket`: its resolved name, CORS rules, and the functions its S3 events go to.

use super::api::ref_target;
use super::{props, BucketSpec, CorsRule, Resources, S3Subscription};
use crate::resolve::{err, Resolver};
use crate::DevError;
use serde_yaml::Value;

pub(super) fn read(
    r: &Resolver,
    resources: &Resources,
    subscriptions: &[(String, S3Subscription)],
) -> Result<Vec<BucketSpec>, DevError> {
    let mut buckets = Vec::new();
    for (id, v) in resources.of_type("AWS::S3::Bucket") {
        let p = props(v);
        if p.get("NotificationConfiguration")
            .and_then(|n| n.get("LambdaConfigurations"))
            .is_some()
        {
            return Err(err(format!(
                "{id}.NotificationConfiguration.LambdaConfigurations is not emulated locally; \
                 give the function an Events entry of Type: S3 instead"
            )));
        }
        let name = r
            .bucket_name(&id, 0)
            .map_err(|e| err(format!("{id}.BucketName: {e}")))?;
        let cors = match p.get("CorsConfiguration").and_then(|c| c.get("CorsRules")) {
            None => Vec::new(),
            Some(rules) => rules
                .as_sequence()
                .ok_or_else(|| err(format!("{id}.CorsConfiguration.CorsRules is not a list")))?
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    cors_rule(r, &format!("{id}.CorsConfiguration.CorsRules[{i}]"), rule)
                })
                .collect::<Result<_, _>>()?,
        };
        let notifications = subscriptions
            .iter()
            .filter(|(bucket, _)| *bucket == id)
            .map(|(_, s)| s.clone())
            .collect();
        buckets.push(BucketSpec {
            name,
            logical_id: id,
            cors,
            notifications,
        });
    }
    for (bucket, s) in subscriptions {
        if !buckets.iter().any(|b| b.logical_id == *bucket) {
            return Err(err(format!(
                "{}.Events.{}.Bucket: bucket {bucket} does not exist (its Condition is false)",
                s.function, s.event_id
            )));
        }
    }
    Ok(buckets)
}

fn cors_rule(r: &Resolver, what: &str, rule: &Value) -> Result<CorsRule, DevError> {
    let list = |k: &str, required: bool| -> Result<Vec<String>, DevError> {
        match rule.get(k) {
            Some(v) => r.resolve_list(v, &format!("{what}.{k}")),
            None if required => Err(err(format!("{what} has no {k}"))),
            None => Ok(Vec::new()),
        }
    };
    let max_age_seconds = match rule.get("MaxAge") {
        None => None,
        Some(v) => match r.resolve(v, &format!("{what}.MaxAge"))? {
            None => None,
            Some(s) => Some(
                s.parse()
                    .map_err(|_| err(format!("{what}.MaxAge: {s:?} is not a whole number")))?,
            ),
        },
    };
    Ok(CorsRule {
        allowed_methods: list("AllowedMethods", true)?
            .into_iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
        allowed_origins: list("AllowedOrigins", true)?,
        allowed_headers: list("AllowedHeaders", false)?,
        exposed_headers: list("ExposedHeaders", false)?,
        max_age_seconds,
    })
}

/// One `Events` entry of `Type: S3`, with the logical id of the bucket it names.
pub(super) fn subscription(
    r: &Resolver,
    resources: &Resources,
    function: &str,
    event_id: &str,
    e: &Value,
) -> Result<(String, S3Subscription), DevError> {
    let what = format!("{function}.Events.{event_id}");
    let p = e
        .get("Properties")
        .ok_or_else(|| err(format!("{what} has no Properties")))?;
    let bucket = p
        .get("Bucket")
        .and_then(ref_target)
        .filter(|b| {
            resources
                .get(b)
                .and_then(|res| res.get("Type"))
                .and_then(Value::as_str)
                == Some("AWS::S3::Bucket")
        })
        .ok_or_else(|| {
            err(format!(
                "{what}.Bucket must be !Ref of an AWS::S3::Bucket of this template"
            ))
        })?;
    let events = r.resolve_list(
        p.get("Events")
            .ok_or_else(|| err(format!("{what} has no Events")))?,
        &format!("{what}.Events"),
    )?;
    if events.is_empty() || events.iter().any(|e| !e.starts_with("s3:")) {
        return Err(err(format!(
            "{what}.Events: expected S3 event types such as s3:ObjectCreated:*, got {events:?}"
        )));
    }
    let mut sub = S3Subscription {
        function: function.to_owned(),
        event_id: event_id.to_owned(),
        events,
        prefix: None,
        suffix: None,
    };
    if let Some(rules) = p.get("Filter") {
        let rules = rules
            .get("S3Key")
            .and_then(|k| k.get("Rules"))
            .and_then(Value::as_sequence)
            .ok_or_else(|| err(format!("{what}.Filter: expected S3Key.Rules, a list")))?;
        for (i, rule) in rules.iter().enumerate() {
            let at = format!("{what}.Filter.S3Key.Rules[{i}]");
            let name = r.require(
                rule.get("Name")
                    .ok_or_else(|| err(format!("{at} has no Name")))?,
                &format!("{at}.Name"),
            )?;
            let value = r.require(
                rule.get("Value")
                    .ok_or_else(|| err(format!("{at} has no Value")))?,
                &format!("{at}.Value"),
            )?;
            match name.to_ascii_lowercase().as_str() {
                "prefix" => sub.prefix = Some(value),
                "suffix" => sub.suffix = Some(value),
                _ => return Err(err(format!("{at}.Name: {name:?} is not prefix or suffix"))),
            }
        }
    }
    Ok((bucket.to_owned(), sub))
}
