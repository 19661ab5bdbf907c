//! Functions' `Events` of `Type: Schedule` (EventBridge rules) and `Type: ScheduleV2`
//! (EventBridge Scheduler): how often, and with what event. `rate(…)` expressions only: a
//! `cron(…)` schedule stops the stack with a message naming the event (when it would fire is
//! a calendar question the local stack does not answer).

use super::{props, ScheduleSpec};
use crate::resolve::{err, Resolver};
use crate::DevError;
use serde_yaml::Value;
use std::time::Duration;

/// One schedule event of function `function`; `None` when it is disabled.
pub(super) fn event(
    r: &Resolver,
    function: &str,
    event_id: &str,
    kind: &str,
    e: &Value,
) -> Result<Option<ScheduleSpec>, DevError> {
    let what = format!("{function}.Events.{event_id}");
    let p = props(e);
    let key = if kind == "Schedule" {
        "Schedule"
    } else {
        "ScheduleExpression"
    };
    let expression = r.require(
        p.get(key)
            .ok_or_else(|| err(format!("{what} has no {key}")))?,
        &format!("{what}.{key}"),
    )?;
    let enabled = match (p.get("Enabled"), p.get("State")) {
        (Some(v), _) => r.require(v, &format!("{what}.Enabled"))? != "false",
        (None, Some(v)) => r.require(v, &format!("{what}.State"))? == "ENABLED",
        (None, None) => true,
    };
    if !enabled {
        return Ok(None);
    }
    let every = rate(&expression).map_err(|why| err(format!("{what}.{key}: {why}")))?;
    let input = match p.get("Input") {
        Some(v) => {
            let text = r.require(v, &format!("{what}.Input"))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|_| err(format!("{what}.Input is not JSON")))?,
            )
        }
        None => None,
    };
    Ok(Some(ScheduleSpec {
        function: function.to_owned(),
        event_id: event_id.to_owned(),
        expression,
        every,
        input,
    }))
}

/// `rate(5 minutes)`, `rate(1 hour)`, `rate(2 days)` as a period (EventBridge: a positive
/// whole number, the unit singular for 1 and plural otherwise).
pub(crate) fn rate(expression: &str) -> Result<Duration, String> {
    if expression.starts_with("cron(") || expression.starts_with("at(") {
        return Err(format!(
            "{expression}: only rate(...) schedules are run locally"
        ));
    }
    let inner = expression
        .strip_prefix("rate(")
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| format!("{expression:?} is not rate(value unit)"))?;
    let (value, unit) = inner
        .split_once(' ')
        .ok_or_else(|| format!("{expression:?} is not rate(value unit)"))?;
    let n: u64 = value
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{expression:?}: the value must be a positive whole number"))?;
    let secs = match (unit, n == 1) {
        ("minute", true) | ("minutes", false) => 60,
        ("hour", true) | ("hours", false) => 3600,
        ("day", true) | ("days", false) => 86_400,
        _ => {
            return Err(format!(
                "{expression:?}: the unit must be minute(s), hour(s) or day(s), singular for 1"
            ))
        }
    };
    Ok(Duration::from_secs(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_eventbridge_writes_them() {
        assert_eq!(rate("rate(10 minutes)"), Ok(Duration::from_secs(600)));
        assert_eq!(rate("rate(1 hour)"), Ok(Duration::from_secs(3600)));
        assert_eq!(rate("rate(2 days)"), Ok(Duration::from_secs(172_800)));
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 minutes)",
            "rate(5)",
            "every 5 minutes",
        ] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert!(rate("cron(0 12 * * ? *)")
            .unwrap_err()
            .contains("only rate"));
    }
}
