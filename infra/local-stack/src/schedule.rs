//! The functions' schedules, run as EventBridge runs them: each `rate(…)` fires first one
//! period after the stack starts, then every period, invoking the function asynchronously
//! with EventBridge's scheduled event (or the schedule's `Input`). A run is recorded with its
//! outcome (not retried). Tests shorten every period (`StackOptions::schedule_every`) or fire a
//! schedule at once ([`Scheduler::run_now`], as `aws lambda invoke` would).

use crate::app::ScheduleSpec;
use crate::resolve::{LOCAL_ACCOUNT, LOCAL_REGION, LOCAL_STACK_NAME};
use crate::runtime::{InvokeError, Invoker};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One run of a schedule.
#[derive(Debug, Clone)]
pub struct ScheduleRun {
    pub function: String,
    pub event_id: String,
    /// The function's answer, or why it gave none.
    pub outcome: Result<Value, String>,
}

/// Running schedules; dropping it stops them.
pub struct Scheduler {
    specs: Vec<ScheduleSpec>,
    invoker: Arc<Invoker>,
    runs: Arc<Mutex<Vec<ScheduleRun>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How many runs are remembered.
const RUNS_CAP: usize = 10_000;

impl Scheduler {
    /// Starts every schedule; `every` replaces each one's period (tests).
    pub fn start(specs: Vec<ScheduleSpec>, invoker: Arc<Invoker>, every: Option<Duration>) -> Self {
        let runs: Arc<Mutex<Vec<ScheduleRun>>> = Arc::default();
        let tasks = specs
            .iter()
            .map(|spec| {
                let (spec, invoker, runs) = (spec.clone(), invoker.clone(), runs.clone());
                let period = every.unwrap_or(spec.every);
                tokio::spawn(async move {
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let outcome = fire(&invoker, &spec).await;
                        if let Err(e) = &outcome {
                            eprintln!("[schedule] {} {} failed: {e}", spec.function, spec.event_id);
                        }
                        record(&runs, &spec, outcome.map_err(|e| e.to_string()));
                    }
                })
            })
            .collect();
        Scheduler {
            specs,
            invoker,
            runs,
            tasks,
        }
    }

    /// Every run so far (at most the first 10,000).
    pub fn runs(&self) -> Vec<ScheduleRun> {
        self.runs.lock().expect("runs lock").clone()
    }

    /// Runs `function`'s (first) schedule now, with the event the schedule would send, and
    /// records the run.
    pub async fn run_now(&self, function: &str) -> Result<Value, InvokeError> {
        let spec = self
            .specs
            .iter()
            .find(|s| s.function == function)
            .ok_or_else(|| InvokeError::UnknownFunction(format!("{function} (no schedule)")))?;
        let outcome = fire(&self.invoker, spec).await;
        record(&self.runs, spec, outcome.clone().map_err(|e| e.to_string()));
        outcome
    }
}

impl Scheduler {
    /// Stops every schedule (a run under way is abandoned).
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

fn record(runs: &Mutex<Vec<ScheduleRun>>, spec: &ScheduleSpec, outcome: Result<Value, String>) {
    let mut runs = runs.lock().expect("runs lock");
    if runs.len() < RUNS_CAP {
        runs.push(ScheduleRun {
            function: spec.function.clone(),
            event_id: spec.event_id.clone(),
            outcome,
        });
    }
}

async fn fire(invoker: &Invoker, spec: &ScheduleSpec) -> Result<Value, InvokeError> {
    let event = spec.input.clone().unwrap_or_else(|| scheduled_event(spec));
    invoker
        .invoke(
            &spec.function,
            &event,
            &format!("schedule {}", spec.event_id),
        )
        .await
}

/// EventBridge's "Scheduled Event".
fn scheduled_event(spec: &ScheduleSpec) -> Value {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let time = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let u = ulid::Ulid::new().to_string().to_lowercase();
    json!({
        "version": "0",
        "id": format!("{}-{}-4{}-8{}-{}", &u[..8], &u[8..12], &u[12..15], &u[15..18], &u[18..26]),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT,
        "time": time,
        "region": LOCAL_REGION,
        "resources": [format!(
            "arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT}:rule/{LOCAL_STACK_NAME}-{}{}",
            spec.function, spec.event_id
        )],
        "detail": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::FunctionSpec;
    use crate::runtime::{fake, Logs};
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn schedules_fire_every_period_with_eventbridges_event_and_on_demand() {
        // GIVEN a function that answers what it was sent, on a schedule shortened to 300 ms
        let dir = fake::TempDir::new("schedule");
        fake::function(&dir.0, "tick", "result = {'type': event.get('detail-type'), 'source': event.get('source'), 'input': event.get('hello')}");
        let invoker = Arc::new(Invoker::new(
            BTreeMap::from([(
                "Tick".to_string(),
                FunctionSpec {
                    logical_id: "Tick".into(),
                    binary: "tick".into(),
                    timeout: Duration::from_secs(10),
                    memory_mb: 128,
                    env: BTreeMap::new(),
                },
            )]),
            dir.0.clone(),
            BTreeMap::new(),
            Logs::Quiet,
        ));
        let spec = |id: &str, input: Option<Value>| ScheduleSpec {
            function: "Tick".into(),
            event_id: id.into(),
            expression: "rate(10 minutes)".into(),
            every: Duration::from_secs(600),
            input,
        };
        let s = Scheduler::start(
            vec![
                spec("Every", None),
                spec("WithInput", Some(json!({"hello": "there"}))),
            ],
            invoker.clone(),
            Some(Duration::from_millis(300)),
        );
        // THEN nothing runs before the first period
        assert!(s.runs().is_empty());
        // AND both schedules run, again and again, each with its event
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while s.runs().iter().filter(|r| r.event_id == "Every").count() < 2
            || s.runs()
                .iter()
                .filter(|r| r.event_id == "WithInput")
                .count()
                < 2
        {
            assert!(std::time::Instant::now() < deadline, "{:?}", s.runs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let runs = s.runs();
        let every = runs.iter().find(|r| r.event_id == "Every").unwrap();
        assert_eq!(
            every.outcome,
            Ok(json!({"type": "Scheduled Event", "source": "aws.events", "input": null}))
        );
        let input = runs.iter().find(|r| r.event_id == "WithInput").unwrap();
        assert_eq!(
            input.outcome,
            Ok(json!({"type": null, "source": null, "input": "there"}))
        );
        // AND a schedule can be fired at once
        let now = s.run_now("Tick").await.unwrap();
        assert_eq!(now["type"], "Scheduled Event");
        assert!(s.run_now("Nope").await.is_err());
        drop(s);
        invoker.shutdown();
    }
}
