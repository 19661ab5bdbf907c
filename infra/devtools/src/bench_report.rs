//! `docs/benchmark.md` and its plots from the figures `local-bench` measured, with the
//! targets of issue 10 beside each and the price per million messages on AWS.

use crate::bench::{median, percentile_ms, ReferenceCost, Report, SendCost, ECHO};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Public prices (us-east-1) from `../shared/reference/aws-facts.md`, "as published in 2025".
pub mod prices {
    pub const DATE: &str = "us-east-1, as published in 2025 (aws-facts.md)";
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    pub const LAMBDA_REQUEST: f64 = 0.20e-6;
    pub const APIGW_MESSAGE: f64 = 1.00e-6;
    pub const DDB_WRITE_UNIT: f64 = 0.625e-6;
    pub const DDB_READ_UNIT: f64 = 0.125e-6;
}

/// Targets of issue 10.
pub mod targets {
    pub const P50_RATIO: f64 = 1.5;
    pub const P99_RATIO: f64 = 3.0;
    pub const ROUND_TRIPS: usize = 2;
    pub const INIT_RATIO: f64 = 2.0;
    pub const RSS_MB: u64 = 40;
    pub const BOOTSTRAP_BYTES: u64 = 8 * 1024 * 1024;
}

pub struct LatencyRow {
    pub pairs: usize,
    pub stack: Vec<Duration>,
    pub floor: Vec<Duration>,
    /// `Duration` of the `$default` invocations (REPORT lines) of the sends through the stack.
    pub function_ms: Vec<f64>,
    /// What the sends' "message sent" log lines say of their parts.
    pub parts: Vec<crate::bench::SendParts>,
}

pub struct UsersRow {
    pub users: usize,
    pub ours: Vec<SendCost>,
    pub reference: Vec<ReferenceCost>,
}

pub struct HistoryRow {
    pub stored: usize,
    pub users: usize,
    pub ours: Vec<SendCost>,
}

/// One kind of login, measured one at a time through the HTTP API.
#[derive(Debug, Clone)]
pub struct LoginRow {
    pub kind: &'static str,
    /// Each login's time from the request to the answer.
    pub times: Vec<Duration>,
    /// `LoginFunction`'s durations (REPORT lines).
    pub function_ms: Vec<f64>,
    /// Calls the fake WeChat API got during these logins.
    pub wechat_calls: u64,
}

/// Text sends checked by the (fake) WeChat text check answering after `delay_ms`.
#[derive(Debug, Clone)]
pub struct ModerationRow {
    pub delay_ms: u64,
    /// Each send's time from the frame to its acknowledgement.
    pub acks: Vec<Duration>,
    /// Each send's logged parts (`$default`'s "message sent" line).
    pub parts: Vec<crate::bench::SendParts>,
    /// Checks the fake WeChat API got during these sends.
    pub wechat_calls: u64,
}

#[derive(Default)]
pub struct Results {
    pub command: String,
    pub machine: String,
    pub date: String,
    pub commit: String,
    pub wall: Duration,
    pub instance_cap: usize,
    pub latency: Vec<LatencyRow>,
    pub users: Vec<UsersRow>,
    pub history: Vec<HistoryRow>,
    /// The reference at the history phase's number of users.
    pub history_reference: Vec<ReferenceCost>,
    /// Image sends (in-process, warm), their S3 requests counted with DynamoDB's.
    pub media: Vec<SendCost>,
    /// The same with media checks on (the ask answered at once, in-process).
    pub media_checked: Vec<SendCost>,
    /// `POST /login` through the HTTP API, by kind.
    pub login: Vec<LoginRow>,
    /// Round trips to the fake WeChat API alone, one at a time.
    pub wechat_rt: Vec<Duration>,
    /// Checked text sends (`Moderation=wechat`), by the check's delay.
    pub moderation: Vec<ModerationRow>,
    /// Offline notices: from each message's time to its notice at the fake WeChat API.
    pub notices: Vec<Duration>,
    /// The warm text sends of the notice phase: their acknowledgements.
    pub notice_acks: Vec<Duration>,
    pub cold: Vec<Report>,
    /// Every REPORT line of the stack during the run.
    pub load: Vec<Report>,
    pub bootstraps: Vec<(String, u64)>,
    /// `MemorySize` of `$default` in the template.
    pub default_memory_mb: u32,
    /// Single posts to the local gateway's management API, one at a time.
    pub post_ms: Vec<Duration>,
    /// The `MaxSendsPerMinute` the stack ran with.
    pub sends_per_minute: u64,
    pub missing: Vec<String>,
}

fn holds(ok: bool) -> &'static str {
    if ok {
        "holds"
    } else {
        "**does not hold**"
    }
}

fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v {
        s += x;
        n += 1;
    }
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// The S3 operations a media send may make.
const S3_OPS: [&str; 3] = ["HeadObject", "CopyObject", "GetObject"];

fn ops_summary(c: &[SendCost]) -> String {
    // The most common request sequence, e.g. "GetItem, BatchGetItem, TransactWriteItems".
    let mut seqs: Vec<(String, usize)> = Vec::new();
    for s in c {
        let k = s.requests.join(", ");
        match seqs.iter_mut().find(|(x, _)| *x == k) {
            Some((_, n)) => *n += 1,
            None => seqs.push((k, 1)),
        }
    }
    seqs.sort_by_key(|s| std::cmp::Reverse(s.1));
    seqs.first().map(|s| s.0.clone()).unwrap_or_default()
}

fn requests_of(c: &[SendCost]) -> f64 {
    median(
        &c.iter()
            .map(|s| s.requests.len() as f64)
            .collect::<Vec<_>>(),
    )
}
fn trips_of(c: &[SendCost]) -> f64 {
    median(&c.iter().map(|s| s.round_trips as f64).collect::<Vec<_>>())
}
/// The most round trips of any send: the first of a run reads the connection's record.
fn max_trips(c: &[SendCost]) -> usize {
    c.iter().map(|s| s.round_trips).max().unwrap_or(0)
}
fn posts_of(c: &[SendCost]) -> f64 {
    median(&c.iter().map(|s| s.posts as f64).collect::<Vec<_>>())
}
fn ref_requests(r: &[ReferenceCost]) -> f64 {
    median(
        &r.iter()
            .map(|x| (x.scans + x.posts) as f64)
            .collect::<Vec<_>>(),
    )
}

/// Price of one message on AWS, in dollars, from measured units.
pub struct Price {
    pub invocations: f64,
    pub gb_seconds: f64,
    pub apigw_messages: f64,
    pub read_units: f64,
    pub write_units: f64,
}

impl Price {
    pub fn dollars(&self) -> f64 {
        self.invocations * prices::LAMBDA_REQUEST
            + self.gb_seconds * prices::LAMBDA_GB_SECOND
            + self.apigw_messages * prices::APIGW_MESSAGE
            + self.read_units * prices::DDB_READ_UNIT
            + self.write_units * prices::DDB_WRITE_UNIT
    }
}

/// The prose of `docs/benchmark.md`, with `{{name}}` where a figure or a table goes.
const TEMPLATE: &str = include_str!("bench_report.md");

/// Writes `docs/benchmark.md` (the template filled with this run's figures) and its plots.
pub fn write(r: &Results, docs: &Path) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let md = render(TEMPLATE, &values(r)?)?;
    plot_latency(r, &docs.join("latency.svg"))?;
    plot_users(r, &docs.join("requests-users.svg"))?;
    plot_history(r, &docs.join("requests-history.svg"))?;
    std::fs::write(docs.join("benchmark.md"), &md)?;
    Ok(md)
}

type Values = Vec<(&'static str, String)>;
type Res<T> = Result<T, std::fmt::Error>;

/// Every placeholder of the template with its text for this run.
fn values(r: &Results) -> Res<Values> {
    let (price_table, ours) = price_table(r)?;
    Ok(vec![
        ("command", r.command.clone()),
        ("wall_secs", format!("{:.0}", r.wall.as_secs_f64())),
        ("machine", r.machine.clone()),
        ("date", r.date.clone()),
        ("commit", r.commit.clone()),
        ("instance_cap", r.instance_cap.to_string()),
        ("sends_per_minute", r.sends_per_minute.to_string()),
        ("latency_table", latency_table(r)?),
        ("post_note", post_note(r)),
        ("parts_table", parts_table(r)?),
        (
            "reference_in_flight",
            crate::bench::REFERENCE_POSTS_IN_FLIGHT.to_string(),
        ),
        ("users_table", users_table(r)?),
        ("history_table", history_table(r)?),
        ("flat_note", flat_note(r)),
        ("media_note", media_note(r)),
        ("login_table", login_table(r)?),
        ("moderation_table", moderation_table(r)?),
        ("notice_table", notice_table(r)?),
        ("footprint_table", footprint_table(r)?),
        ("bootstraps", bootstraps(r)?),
        ("price_date", prices::DATE.to_owned()),
        ("price_table", price_table),
        ("reference_prices", reference_prices(r, &ours)?),
        ("missing", missing(r)),
    ])
}

/// `template` with each `{{name}}` replaced by its value; a placeholder without a value, or a
/// value without a placeholder, is an error (the template and the code disagree).
fn render(template: &str, values: &[(&str, String)]) -> Result<String, String> {
    let mut out = template.to_owned();
    for (name, value) in values {
        let key = format!("{{{{{name}}}}}");
        if !out.contains(&key) {
            return Err(format!("bench_report.md has no {key}"));
        }
        out = out.replace(&key, value.trim_end());
    }
    match out.find("{{") {
        Some(i) => Err(format!(
            "bench_report.md: no value for {}",
            &out[i..out[i..].find("}}").map_or(out.len(), |e| i + e + 2)]
        )),
        None => Ok(out),
    }
}

fn login_table(r: &Results) -> Res<String> {
    let mut w = String::new();
    let rt = percentile_ms(&r.wechat_rt, 0.5);
    writeln!(w, "| login | logins | p50 | p99 | `chat-login` duration p50 | WeChat calls per login | of p50, WeChat (calls × {rt:.1} ms) | of p50, ours |")?;
    writeln!(w, "|---|---|---|---|---|---|---|---|")?;
    for l in &r.login {
        let calls = l.wechat_calls as f64 / l.times.len().max(1) as f64;
        let p50 = percentile_ms(&l.times, 0.5);
        writeln!(
            w,
            "| {} | {} | {p50:.1} ms | {:.1} ms | {:.1} ms | {calls:.2} | {:.1} ms | {:.1} ms |",
            l.kind,
            l.times.len(),
            percentile_ms(&l.times, 0.99),
            median(&l.function_ms),
            calls * rt,
            p50 - calls * rt
        )?;
    }
    writeln!(
        w,
        "\nThe fake WeChat API alone: {} round trips (`jscode2session`) one at a time, p50 {rt:.1} ms, p99 {:.1} ms.",
        r.wechat_rt.len(),
        percentile_ms(&r.wechat_rt, 0.99)
    )?;
    Ok(w)
}

fn moderation_table(r: &Results) -> Res<String> {
    let mut w = String::new();
    if r.moderation.is_empty() {
        return Ok("(not measured in this run)".into());
    }
    writeln!(w, "| the check answered after | sends | send → ack p50 | p99 | `$default` storage part p50 | the check p50 | the read beside it p50 | the write after both p50 | storage − check p50 | WeChat requests per send |")?;
    writeln!(w, "|---|---|---|---|---|---|---|---|---|---|")?;
    let col = |row: &ModerationRow, f: &dyn Fn(&crate::bench::SendParts) -> Option<f64>| {
        median(&row.parts.iter().filter_map(f).collect::<Vec<_>>())
    };
    for m in &r.moderation {
        let storage = col(m, &|p| Some(p.storage_ms));
        let check = col(m, &|p| p.check_ms);
        writeln!(
            w,
            "| {} ms | {} | {:.1} ms | {:.1} ms | {storage:.1} ms | {check:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} |",
            m.delay_ms,
            m.acks.len(),
            percentile_ms(&m.acks, 0.5),
            percentile_ms(&m.acks, 0.99),
            col(m, &|p| p.read_ms),
            col(m, &|p| p.write_ms),
            col(m, &|p| Some(p.storage_ms - p.check_ms?)),
            m.wechat_calls as f64 / m.acks.len().max(1) as f64,
        )?;
    }
    // Per send, what the storage part holds beyond the longer of the check and the read, and
    // the write after them: were the read not hidden behind the check, it would be about the
    // read's own time.
    let slow = &r.moderation[r.moderation.len() - 1];
    let left = col(slow, &|p| {
        Some(p.storage_ms - p.check_ms?.max(p.read_ms?) - p.write_ms?)
    });
    let read = col(slow, &|p| p.read_ms);
    writeln!(
        w,
        "\nWith the check {} ms late, each send's storage part less the longer of the check and the read and less the write after them leaves {left:.1} ms (p50); were the read ({read:.1} ms) not hidden behind the check, that would be about the read's time. Less than half of it: {}.",
        slow.delay_ms,
        holds(left < read / 2.0)
    )?;
    Ok(w)
}

fn notice_table(r: &Results) -> Res<String> {
    if r.notices.is_empty() {
        return Ok("(not measured in this run)".into());
    }
    let mut w = String::new();
    writeln!(w, "| notices | message → notice at WeChat p50 | p99 | max | the same senders' send → ack p50 | p99 |")?;
    writeln!(w, "|---|---|---|---|---|---|")?;
    let max = r
        .notices
        .iter()
        .max()
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    writeln!(
        w,
        "| {} | {:.1} ms | {:.1} ms | {max:.1} ms | {:.1} ms | {:.1} ms |",
        r.notices.len(),
        percentile_ms(&r.notices, 0.5),
        percentile_ms(&r.notices, 0.99),
        percentile_ms(&r.notice_acks, 0.5),
        percentile_ms(&r.notice_acks, 0.99),
    )?;
    Ok(w)
}

fn latency_table(r: &Results) -> Res<String> {
    let mut w = String::new();
    writeln!(w, "| pairs | sends | p50 | p95 | p99 | `$default` duration p50 | floor p50 | floor p95 | floor p99 | p50/floor (≤ {}) | p99/floor (≤ {}) |", targets::P50_RATIO, targets::P99_RATIO)?;
    writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for l in &r.latency {
        let p = |v: &[Duration], q| percentile_ms(v, q);
        let (s50, s95, s99) = (p(&l.stack, 0.5), p(&l.stack, 0.95), p(&l.stack, 0.99));
        let (f50, f95, f99) = (p(&l.floor, 0.5), p(&l.floor, 0.95), p(&l.floor, 0.99));
        let (r50, r99) = (s50 / f50, s99 / f99);
        writeln!(
            w,
            "| {} | {} | {s50:.1} ms | {s95:.1} ms | {s99:.1} ms | {:.1} ms | {f50:.1} ms | {f95:.1} ms | {f99:.1} ms | {r50:.2}× {} | {r99:.2}× {} |",
            l.pairs,
            l.stack.len(),
            median(&l.function_ms),
            holds(r50 <= targets::P50_RATIO),
            holds(r99 <= targets::P99_RATIO)
        )?;
    }
    Ok(w)
}

fn post_note(r: &Results) -> String {
    if r.post_ms.is_empty() {
        return String::new();
    }
    format!(
        "\nOne `POST @connections/{{id}}` to the local gateway from outside the functions, \
         one at a time, {} times: p50 {:.1} ms, p99 {:.1} ms (a text send makes two, the \
         acknowledgement and the peer's copy).\n",
        r.post_ms.len(),
        percentile_ms(&r.post_ms, 0.5),
        percentile_ms(&r.post_ms, 0.99)
    )
}

fn parts_table(r: &Results) -> Res<String> {
    let mut w = String::new();
    writeln!(
        w,
        "| pairs | send → peer | floor | `$default` | storage | frames | posts | rest of the invocation | outside |\n|---|---|---|---|---|---|---|---|---|"
    )?;
    for l in &r.latency {
        let med = |f: fn(&crate::bench::SendParts) -> f64| {
            median(&l.parts.iter().map(f).collect::<Vec<_>>())
        };
        let (storage, frames, posts) = (
            med(|p| p.storage_ms),
            med(|p| p.frames_ms),
            med(|p| p.posts_ms),
        );
        let (s50, f50, d50) = (
            percentile_ms(&l.stack, 0.5),
            percentile_ms(&l.floor, 0.5),
            median(&l.function_ms),
        );
        writeln!(
            w,
            "| {} | {s50:.1} | {f50:.1} | {d50:.1} | {storage:.1} | {frames:.2} | {posts:.1} | {:.1} | {:.1} |",
            l.pairs,
            d50 - storage - frames - posts,
            s50 - d50
        )?;
    }
    Ok(w)
}

fn users_table(r: &Results) -> Res<String> {
    let mut w = String::new();
    writeln!(w, "| connected users | sends | DynamoDB requests | sequential round trips (≤ {}) | read units | write units | posts | requests incl. posts | reference: Scan pages | reference: read units | reference: posts | reference: requests incl. posts | reference latency per message |", targets::ROUND_TRIPS)?;
    writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    let med = |v: Vec<f64>| median(&v);
    for u in &r.users {
        let (req, trips, posts) = (requests_of(&u.ours), trips_of(&u.ours), posts_of(&u.ours));
        let rf = &u.reference;
        writeln!(
            w,
            "| {} | {} | {req} | {trips} (max {}) {} | {:.1} | {:.1} | {posts} | {} | {} | {:.1} | {} | {} | {:.1} ms |",
            u.users,
            u.ours.len(),
            max_trips(&u.ours),
            holds(trips <= targets::ROUND_TRIPS as f64),
            mean(u.ours.iter().map(|s| s.read_units)),
            mean(u.ours.iter().map(|s| s.write_units)),
            req + posts,
            med(rf.iter().map(|x| x.scans as f64).collect()),
            mean(rf.iter().map(|x| x.read_units)),
            med(rf.iter().map(|x| x.posts as f64).collect()),
            ref_requests(rf),
            med(rf.iter().map(|x| x.elapsed.as_secs_f64() * 1000.0).collect()),
        )?;
    }
    let failed: usize = r
        .users
        .iter()
        .flat_map(|u| &u.reference)
        .map(|x| x.failed_posts)
        .sum();
    if failed > 0 {
        writeln!(w, "\n{failed} reference posts were not answered 200.")?;
    }
    Ok(w)
}

fn history_table(r: &Results) -> Res<String> {
    let mut w = String::new();
    writeln!(w, "| stored messages in the conversation | connected users | sends | DynamoDB requests | sequential round trips (≤ {}) | read units | write units | posts | in-process send |", targets::ROUND_TRIPS)?;
    writeln!(w, "|---|---|---|---|---|---|---|---|---|")?;
    for h in &r.history {
        let trips = trips_of(&h.ours);
        let ms: Vec<f64> = h
            .ours
            .iter()
            .map(|s| s.elapsed.as_secs_f64() * 1000.0)
            .collect();
        writeln!(
            w,
            "| {} | {} | {} | {} | {trips} (max {}) {} | {:.1} | {:.1} | {} | {:.1} ms |",
            h.stored,
            h.users,
            h.ours.len(),
            requests_of(&h.ours),
            max_trips(&h.ours),
            holds(trips <= targets::ROUND_TRIPS as f64),
            mean(h.ours.iter().map(|s| s.read_units)),
            mean(h.ours.iter().map(|s| s.write_units)),
            posts_of(&h.ours),
            median(&ms),
        )?;
    }
    Ok(w)
}

/// Whether the requests per send stay the same across users and history.
fn flat_note(r: &Results) -> String {
    let all: Vec<SendCost> = r
        .users
        .iter()
        .flat_map(|u| &u.ours)
        .chain(r.history.iter().flat_map(|h| &h.ours))
        .cloned()
        .collect();
    let per_row: Vec<f64> = r
        .users
        .iter()
        .map(|u| requests_of(&u.ours))
        .chain(r.history.iter().map(|h| requests_of(&h.ours)))
        .collect();
    let flat = per_row.windows(2).all(|p| p[0] == p[1]);
    format!(
        "DynamoDB requests per send flat from {} to {} users and from {} to {} stored \
         messages: {} (most common sequence: {}).",
        r.users.first().map_or(0, |u| u.users),
        r.users.last().map_or(0, |u| u.users),
        r.history.first().map_or(0, |h| h.stored),
        r.history.last().map_or(0, |h| h.stored),
        holds(flat && !per_row.is_empty()),
        ops_summary(&all)
    )
}

fn media_note(r: &Results) -> String {
    let m = &r.media;
    if m.is_empty() {
        return String::new();
    }
    let s3 = |c: &SendCost| {
        c.requests
            .iter()
            .filter(|op| S3_OPS.contains(&op.as_str()))
            .count() as f64
    };
    let ms: Vec<f64> = m.iter().map(|c| c.elapsed.as_secs_f64() * 1000.0).collect();
    format!(
        "**A media send** (an image, reported separately): {} sends by the same warm \
         sender, each naming an object put into the stack's S3 beforehand (not counted), \
         its S3 requests counted on the wire with its DynamoDB requests. Median: {:.0} \
         requests, of them {:.0} to S3; {:.0} sequential round trips (max {}); {:.1} read \
         and {:.1} write units; {:.0} posts; {:.1} ms in-process. Most common sequence: \
         {}. The S3 requests come before the text send's: the object is looked for in the \
         upload area and among sent objects at once (two `HeadObject`s in parallel: a \
         retried send finds it already copied), then copied out of the upload area \
         (`CopyObject`). Signing the frames' download URLs sends nothing.\n",
        m.len(),
        requests_of(m),
        median(&m.iter().map(s3).collect::<Vec<_>>()),
        trips_of(m),
        max_trips(m),
        mean(m.iter().map(|c| c.read_units)),
        mean(m.iter().map(|c| c.write_units)),
        posts_of(m),
        median(&ms),
        ops_summary(m)
    ) + &media_checked_note(r)
}

/// Media sends with media checks beside those without: what comes before the acknowledgement.
fn media_checked_note(r: &Results) -> String {
    let (m, c) = (&r.media, &r.media_checked);
    if m.is_empty() || c.is_empty() {
        return String::new();
    }
    let before = |v: &[SendCost]| {
        median(
            &v.iter()
                .map(|s| s.before_ack.len() as f64)
                .collect::<Vec<_>>(),
        )
    };
    let trips = |v: &[SendCost]| {
        median(
            &v.iter()
                .map(|s| s.round_trips_before_ack as f64)
                .collect::<Vec<_>>(),
        )
    };
    let seq = |v: &[SendCost]| {
        ops_summary(
            &v.iter()
                .map(|s| SendCost {
                    requests: s.before_ack.clone(),
                    ..s.clone()
                })
                .collect::<Vec<_>>(),
        )
    };
    let same = before(m) == before(c) && trips(m) == trips(c) && seq(m) == seq(c);
    format!(
        "\n**With media checks** (`Moderation=wechat`; `mediaCheckAsync` answered at once \
         in-process, WeChat's own time comes after the posts): {} image sends. Before the \
         acknowledgement (requests answered before the first post): median {:.0} requests in \
         {:.0} round trips, against {:.0} in {:.0} without checks; sequence `{}`. Unchanged: \
         {}. After the posts the ask adds its requests: {:.0} in all (the trace id's \
         `PutItem` beside the message's `UpdateItem`), against {:.0} without checks.\n",
        c.len(),
        before(c),
        trips(c),
        before(m),
        trips(m),
        seq(c),
        holds(same),
        requests_of(c),
        requests_of(m),
    )
}

fn footprint_table(r: &Results) -> Res<String> {
    let mut w = String::new();
    let init_of = |f: &str| -> Vec<f64> {
        r.cold
            .iter()
            .filter(|c| c.function == f)
            .filter_map(|c| c.init_ms)
            .collect()
    };
    let peak = |reports: &[Report], f: &str| {
        reports
            .iter()
            .filter(|c| c.function == f)
            .filter_map(|c| c.max_memory_mb)
            .max()
    };
    let echo_init = median(&init_of(ECHO));
    writeln!(w, "| binary | cold starts | init p50 | init / echo (≤ {}) | peak RSS cold | peak RSS under load (≤ {} MB) |", targets::INIT_RATIO, targets::RSS_MB)?;
    writeln!(w, "|---|---|---|---|---|---|")?;
    let mut names: Vec<&str> = r.cold.iter().map(|c| c.function.as_str()).collect();
    names.sort();
    names.dedup();
    for f in names {
        let inits = init_of(f);
        let init = median(&inits);
        let (cold_rss, load_rss) = (peak(&r.cold, f), peak(&r.load, f));
        let (ratio, rss) = if f == ECHO {
            ("1 (baseline)".to_string(), "—".to_string())
        } else {
            let ratio = init / echo_init;
            let top = cold_rss.max(load_rss).unwrap_or(0);
            let load = load_rss.map_or("—".into(), |m| m.to_string());
            (
                format!("{ratio:.2}× {}", holds(ratio <= targets::INIT_RATIO)),
                format!("{load} MB {}", holds(top <= targets::RSS_MB)),
            )
        };
        writeln!(
            w,
            "| {f} | {} | {init:.2} ms | {ratio} | {} MB | {rss} |",
            inits.len(),
            cold_rss.map_or("?".into(), |m| m.to_string()),
        )?;
    }
    Ok(w)
}

fn bootstraps(r: &Results) -> Res<String> {
    let mut w = String::new();
    if r.bootstraps.is_empty() {
        writeln!(
            w,
            "arm64 `bootstrap` sizes (≤ 8 MB each): no `.aws-sam/build/*/bootstrap` here; run \
             `sam build` (see the README's Deploy section), then `make bench` again."
        )?;
        return Ok(w);
    }
    writeln!(
        w,
        "| arm64 `bootstrap` (`.aws-sam/build`) | size | ≤ 8 MB |\n|---|---|---|"
    )?;
    for (f, size) in &r.bootstraps {
        writeln!(
            w,
            "| {f} | {:.1} MB | {} |",
            *size as f64 / 1048576.0,
            holds(*size <= targets::BOOTSTRAP_BYTES)
        )?;
    }
    writeln!(
        w,
        "\nWhat was tried to get there, lever by lever: [bootstrap-size.md](bootstrap-size.md)."
    )?;
    Ok(w)
}

/// The price table of one message, and that price.
fn price_table(r: &Results) -> Res<(String, Price)> {
    // Durations at the lowest load: on Lambda every instance has its own CPU, here the
    // higher loads share two cores with DynamoDB Local.
    let quiet = r.latency.first();
    let billed_ms = quiet.map_or(f64::NAN, |l| mean(l.function_ms.iter().map(|d| d.ceil())));
    let (durations, quiet_pairs) = quiet.map_or((0, 0), |l| (l.function_ms.len(), l.pairs));
    let (rru, wru, posts) = r.users.first().map_or((f64::NAN, f64::NAN, f64::NAN), |u| {
        (
            mean(u.ours.iter().map(|s| s.read_units)),
            mean(u.ours.iter().map(|s| s.write_units)),
            posts_of(&u.ours),
        )
    });
    let ours = Price {
        invocations: 1.0,
        gb_seconds: billed_ms / 1000.0 * f64::from(r.default_memory_mb) / 1024.0,
        apigw_messages: 1.0 + posts,
        read_units: rru,
        write_units: wru,
    };
    let mut w = String::new();
    let per_million = |units: f64, price: f64| units * price * 1e6;
    writeln!(
        w,
        "| item | units per message | $ per million messages |\n|---|---|---|"
    )?;
    writeln!(
        w,
        "| Lambda requests (`$default`) | {} | {:.2} |",
        ours.invocations,
        per_million(ours.invocations, prices::LAMBDA_REQUEST)
    )?;
    writeln!(
        w,
        "| Lambda GB-s: mean billed {billed_ms:.1} ms over the {durations} `$default` invocations at {quiet_pairs} pair(s), at {} MB | {:.7} | {:.2} |",
        r.default_memory_mb,
        ours.gb_seconds,
        per_million(ours.gb_seconds, prices::LAMBDA_GB_SECOND)
    )?;
    writeln!(
        w,
        "| API Gateway messages (1 in + posts) | {} | {:.2} |",
        ours.apigw_messages,
        per_million(ours.apigw_messages, prices::APIGW_MESSAGE)
    )?;
    writeln!(
        w,
        "| DynamoDB read units (consumed capacity) | {rru:.1} | {:.2} |",
        per_million(rru, prices::DDB_READ_UNIT)
    )?;
    writeln!(
        w,
        "| DynamoDB write units (consumed capacity) | {wru:.1} | {:.2} |",
        per_million(wru, prices::DDB_WRITE_UNIT)
    )?;
    write!(w, "| **total** | | **{:.2}** |", ours.dollars() * 1e6)?;
    Ok((w, ours))
}

/// The reference's price per message at each number of users, beside ours.
fn reference_prices(r: &Results, ours: &Price) -> Res<String> {
    let mut w = String::new();
    if r.users.is_empty() {
        return Ok(w);
    }
    writeln!(
        w,
        "The reference fan-out per message (API Gateway and DynamoDB only, plus one \
         invocation billed for its measured duration at the same memory size):\n"
    )?;
    writeln!(w, "| connected users | API Gateway messages | read units | $ per million messages | ours |\n|---|---|---|---|---|")?;
    for u in &r.users {
        let rf = &u.reference;
        let ms = median(
            &rf.iter()
                .map(|x| x.elapsed.as_secs_f64() * 1000.0)
                .collect::<Vec<_>>(),
        );
        let p = Price {
            invocations: 1.0,
            gb_seconds: ms.ceil() / 1000.0 * f64::from(r.default_memory_mb) / 1024.0,
            apigw_messages: 1.0 + median(&rf.iter().map(|x| x.posts as f64).collect::<Vec<_>>()),
            read_units: mean(rf.iter().map(|x| x.read_units)),
            write_units: 0.0,
        };
        writeln!(
            w,
            "| {} | {} | {:.1} | {:.2} | {:.2} |",
            u.users,
            p.apigw_messages,
            p.read_units,
            p.dollars() * 1e6,
            ours.dollars() * 1e6
        )?;
    }
    Ok(w)
}

fn missing(r: &Results) -> String {
    if r.missing.is_empty() {
        return String::new();
    }
    let items: Vec<String> = r.missing.iter().map(|m| format!("- {m}")).collect();
    format!("\n## Not measured in this run\n\n{}\n", items.join("\n"))
}

type PlotResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn plot_err<E: std::fmt::Display>(e: E) -> Box<dyn std::error::Error + Send + Sync> {
    e.to_string().into()
}

/// A named line: legend text, colour, points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// A chart with a logarithmic x axis and lines named in a legend.
fn lines(
    path: &Path,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    y_log: bool,
    series: &[Series],
) -> PlotResult {
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let xs = series.iter().flat_map(|s| s.2.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let y1 = ys.clone().fold(f64::MIN, f64::max).max(1.0) * 1.3;
    let y0 = ys.fold(f64::MAX, f64::min).max(0.1);
    let (x0, x1) = if x0 >= x1 {
        (x0 * 0.5, x1 * 2.0)
    } else {
        (x0, x1)
    };
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .draw()
                .map_err(plot_err)?;
            for (name, color, points) in series {
                let color = *color;
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(plot_err)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }};
    }
    if y_log {
        draw!(builder
            .build_cartesian_2d((x0..x1).log_scale(), (y0 * 0.7..y1).log_scale())
            .map_err(plot_err)?);
    } else {
        draw!(builder
            .build_cartesian_2d((x0..x1).log_scale(), 0f64..y1)
            .map_err(plot_err)?);
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

const RED: RGBColor = RGBColor(200, 40, 40);
const ORANGE: RGBColor = RGBColor(230, 140, 20);
const PURPLE: RGBColor = RGBColor(130, 60, 170);
const BLUE: RGBColor = RGBColor(30, 90, 200);
const TEAL: RGBColor = RGBColor(20, 150, 140);
const GREY: RGBColor = RGBColor(110, 110, 110);

fn plot_latency(r: &Results, path: &Path) -> PlotResult {
    let at = |p: f64, floor: bool| -> Vec<(f64, f64)> {
        r.latency
            .iter()
            .map(|l| {
                let v = if floor { &l.floor } else { &l.stack };
                (l.pairs as f64, percentile_ms(v, p))
            })
            .collect()
    };
    lines(
        path,
        "Send → peer's copy through the local stack, and the storage floor",
        "concurrently chatting pairs",
        "ms",
        false,
        &[
            ("p50", BLUE, at(0.5, false)),
            ("p95", PURPLE, at(0.95, false)),
            ("p99", RED, at(0.99, false)),
            ("floor p50", TEAL, at(0.5, true)),
            ("floor p99", GREY, at(0.99, true)),
        ],
    )
}

fn plot_users(r: &Results, path: &Path) -> PlotResult {
    let ours: Vec<(f64, f64)> = r
        .users
        .iter()
        .map(|u| (u.users as f64, requests_of(&u.ours)))
        .collect();
    let ours_posts: Vec<(f64, f64)> = r
        .users
        .iter()
        .map(|u| (u.users as f64, requests_of(&u.ours) + posts_of(&u.ours)))
        .collect();
    let reference: Vec<(f64, f64)> = r
        .users
        .iter()
        .map(|u| (u.users as f64, ref_requests(&u.reference)))
        .collect();
    lines(
        path,
        "Requests per message against connected users",
        "connected users",
        "requests per message",
        true,
        &[
            ("this project: DynamoDB requests", BLUE, ours),
            ("this project: DynamoDB requests + posts", TEAL, ours_posts),
            ("scan-and-broadcast: Scan pages + posts", RED, reference),
        ],
    )
}

fn plot_history(r: &Results, path: &Path) -> PlotResult {
    let ours: Vec<(f64, f64)> = r
        .history
        .iter()
        .map(|h| (h.stored as f64, requests_of(&h.ours)))
        .collect();
    let ours_posts: Vec<(f64, f64)> = r
        .history
        .iter()
        .map(|h| (h.stored as f64, requests_of(&h.ours) + posts_of(&h.ours)))
        .collect();
    let reference = ref_requests(&r.history_reference);
    let reference: Vec<(f64, f64)> = r
        .history
        .iter()
        .map(|h| (h.stored as f64, reference))
        .collect();
    let users = r.history.first().map_or(0, |h| h.users);
    lines(
        path,
        &format!("Requests per message against stored messages ({users} connected users)"),
        "stored messages in the conversation",
        "requests per message",
        true,
        &[
            ("this project: DynamoDB requests", BLUE, ours),
            ("this project: DynamoDB requests + posts", TEAL, ours_posts),
            ("scan-and-broadcast: Scan pages + posts", ORANGE, reference),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_and_the_figures_fill_each_other() {
        // GIVEN a run with no rows at all
        let r = Results {
            command: "local-bench --quick".into(),
            missing: vec!["the arm64 sizes".into()],
            ..Results::default()
        };
        // WHEN the report is rendered
        let md = render(TEMPLATE, &values(&r).unwrap()).unwrap();
        // THEN every placeholder was filled, the prose kept and the figures put in
        assert!(!md.contains("{{"), "{md}");
        assert!(md.contains("## Running it") && md.contains("## Price per million messages"));
        assert!(md.contains("(`local-bench --quick`)"));
        assert!(md.contains("## Not measured in this run\n\n- the arm64 sizes"));
    }

    #[test]
    fn a_placeholder_without_a_value_and_a_value_without_a_placeholder_are_errors() {
        let v = |k: &'static str| vec![(k, "x".to_string())];
        assert_eq!(render("a {{b}} c", &v("b")).unwrap(), "a x c");
        assert!(render("a {{b}} {{c}}", &v("b"))
            .unwrap_err()
            .contains("{{c}}"));
        assert!(render("a {{b}}", &v("z")).unwrap_err().contains("{{z}}"));
    }
}
