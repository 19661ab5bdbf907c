//! Functions' `Events` of `Type: DynamoDB`: Lambda's event source mappings on a table's stream.
//! What the local poller ([`crate::streams`]) needs: the table, where to start, the batch size
//! and window, the filters (checked here, so a pattern the local stack cannot evaluate stops it
//! at start, naming the event), bisecting, partial batch responses, retries and the on-failure
//! destination. `MaximumRecordAgeInSeconds`, `ParallelizationFactor` and `TumblingWindowInSeconds`
//! are refused rather than ignored.

use super::{props, Resources, StreamSourceSpec};
use crate::resolve::{err, Resolver};
use crate::streams::pattern;
use crate::DevError;
use serde_yaml::Value;

const KNOWN: [&str; 11] = [
    "Stream",
    "StartingPosition",
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "FilterCriteria",
    "BisectBatchOnFunctionError",
    "FunctionResponseTypes",
    "MaximumRetryAttempts",
    "DestinationConfig",
    "Enabled",
    "StartingPositionTimestamp",
];

/// One stream event of function `function`; `None` when it is disabled.
pub(super) fn event(
    r: &Resolver,
    resources: &Resources,
    function: &str,
    event_id: &str,
    e: &Value,
) -> Result<Option<StreamSourceSpec>, DevError> {
    let what = format!("{function}.Events.{event_id}");
    let p = props(e);
    if let Some(map) = p.as_mapping() {
        for k in map.keys().filter_map(Value::as_str) {
            if !KNOWN.contains(&k) {
                return Err(err(format!(
                    "{what}.{k} is not emulated by the local stack"
                )));
            }
        }
    }
    let get = |k: &str| -> Result<Option<String>, DevError> {
        match p.get(k) {
            Some(v) => r.resolve(v, &format!("{what}.{k}")),
            None => Ok(None),
        }
    };
    let stream_arn = get("Stream")?.ok_or_else(|| err(format!("{what} has no Stream")))?;
    let table = resources
        .of_type("AWS::DynamoDB::Table")
        .find(|(id, _)| {
            r.table_name(id, 0).is_ok_and(|name| {
                stream_arn.starts_with("arn:aws:dynamodb:")
                    && stream_arn.contains(&format!(":table/{name}/stream/"))
            })
        })
        .map(|(id, _)| id)
        .ok_or_else(|| {
            err(format!(
                "{what}.Stream: {stream_arn} is not the stream of a table of this template (use !GetAtt Table.StreamArn)"
            ))
        })?;
    if get("Enabled")?.is_some_and(|v| v == "false") {
        return Ok(None);
    }
    let starting_position =
        get("StartingPosition")?.ok_or_else(|| err(format!("{what} has no StartingPosition")))?;
    if !["TRIM_HORIZON", "LATEST"].contains(&starting_position.as_str()) {
        return Err(err(format!(
            "{what}.StartingPosition: {starting_position} (TRIM_HORIZON or LATEST)"
        )));
    }
    let number = |k: &str, default: u64, max: u64| -> Result<u64, DevError> {
        match get(k)? {
            None => Ok(default),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| err(format!("{what}.{k}: {s:?} is not a whole number ≤ {max}"))),
        }
    };
    let batch_size = number("BatchSize", 100, 10_000)?.max(1) as usize;
    if number("MaximumBatchingWindowInSeconds", 0, 300)? != 0 {
        return Err(err(format!(
            "{what}.MaximumBatchingWindowInSeconds: only 0 is emulated (records go as soon as they are read)"
        )));
    }
    let bisect = get("BisectBatchOnFunctionError")?.is_some_and(|v| v == "true");
    let max_retries = match get("MaximumRetryAttempts")? {
        None => None,
        Some(s) if s == "-1" => None,
        Some(s) => Some(
            s.parse::<u32>()
                .ok()
                .filter(|n| *n <= 10_000)
                .ok_or_else(|| {
                    err(format!(
                        "{what}.MaximumRetryAttempts: {s:?} (-1 or 0 to 10000)"
                    ))
                })?,
        ),
    };
    let report_item_failures = match p.get("FunctionResponseTypes") {
        None => false,
        Some(v) => {
            let types = r.resolve_list(v, &format!("{what}.FunctionResponseTypes"))?;
            if let Some(t) = types.iter().find(|t| *t != "ReportBatchItemFailures") {
                return Err(err(format!("{what}.FunctionResponseTypes: unknown {t}")));
            }
            !types.is_empty()
        }
    };
    let filters = match p.get("FilterCriteria") {
        None => Vec::new(),
        Some(fc) => {
            let list = fc
                .get("Filters")
                .and_then(Value::as_sequence)
                .ok_or_else(|| err(format!("{what}.FilterCriteria has no Filters list")))?;
            if list.len() > 5 {
                return Err(err(format!(
                    "{what}.FilterCriteria: at most 5 filters (Lambda's limit)"
                )));
            }
            list.iter()
                .enumerate()
                .map(|(i, f)| {
                    let at = format!("{what}.FilterCriteria.Filters[{i}].Pattern");
                    let text = r.require(
                        f.get("Pattern")
                            .ok_or_else(|| err(format!("{at} is missing")))?,
                        &at,
                    )?;
                    let json: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| err(format!("{at} is not JSON: {e}")))?;
                    pattern::check(&json).map_err(|why| err(format!("{at}: {why}")))?;
                    Ok(json)
                })
                .collect::<Result<_, DevError>>()?
        }
    };
    let on_failure = match p.get("DestinationConfig") {
        None => None,
        Some(d) => {
            let at = format!("{what}.DestinationConfig.OnFailure");
            let on = d
                .get("OnFailure")
                .ok_or_else(|| err(format!("{at} is missing")))?;
            let destination = r.require(
                on.get("Destination")
                    .ok_or_else(|| err(format!("{at}.Destination is missing")))?,
                &format!("{at}.Destination"),
            )?;
            Some(destination)
        }
    };
    Ok(Some(StreamSourceSpec {
        function: function.to_owned(),
        event_id: event_id.to_owned(),
        table,
        starting_position,
        batch_size,
        filters,
        bisect,
        report_item_failures,
        max_retries,
        on_failure,
    }))
}
