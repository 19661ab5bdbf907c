//! The benchmark of issue 10, through the local stack on loopback with release builds:
//! `local-bench [--quick] [--pairs 1,10,100] [--messages 200,50,20] [--users 10,100,1000]
//! [--history 10,1000,100000] [--sends 20] [--rounds 10] [--logins 200] [--out docs]`.
//!
//! 1. Send → the peer's copy at each number of concurrently chatting pairs, beside the storage
//!    floor (the same sends in-process on the same DynamoDB Local, posting nothing).
//! 2. DynamoDB requests, round trips and capacity per send against connected users and stored
//!    messages, beside a scan-and-broadcast reference fan-out.
//! 3. Init and peak memory of the WebSocket functions beside a bare `lambda_runtime` echo, and
//!    `POST /login` against the fake WeChat API (first logins with the phone button,
//!    returning users), and text sends checked by WeChat's (fake) text check answering at once
//!    and 50 ms late (`Moderation=wechat`: the check overlaps the send's first read).
//! 4. Rewrites `docs/benchmark.md` and its SVG plots.
//!
//! Run it from a built `target/release` (`make bench`); it stops after 15 minutes whatever
//! happens, and every process it started stops with it.
use devtools::bench::{self, Crowd, Error, Pair};
use devtools::bench_report::{
    self, HistoryRow, LatencyRow, LoginRow, ModerationRow, Results, UsersRow,
};
use devtools::ddb_log::RequestLog;
use devtools::fake_wechat::FakeWeChat;
use futures::StreamExt;
use local_stack::runtime::{Logs, MAX_INSTANCES};
use local_stack::stack::{Stack, StackOptions};
use shared::domain::ids::Conversation;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(15 * 60);
/// The template's per-connection send limit, raised for the run: a pair sends as fast as its
/// acknowledgements come back, far above a person's 60 a minute.
const SENDS_PER_MINUTE: u64 = 100_000;

struct Args {
    pairs: Vec<usize>,
    messages: Vec<usize>,
    users: Vec<usize>,
    history: Vec<usize>,
    sends: usize,
    reference_messages: usize,
    rounds: usize,
    /// Logins of each kind in the login phase.
    logins: usize,
    out: PathBuf,
    command: String,
}

fn list(v: &str) -> Result<Vec<usize>, Error> {
    v.split(',')
        .map(|x| {
            x.trim()
                .replace('_', "")
                .parse::<usize>()
                .map_err(Error::from)
        })
        .collect()
}

fn parse_args() -> Result<Args, Error> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut a = Args {
        pairs: vec![1, 10, 100],
        messages: vec![500, 100, 30],
        users: vec![10, 100, 1000],
        history: vec![10, 1000, 100_000],
        sends: 20,
        reference_messages: 5,
        rounds: 20,
        logins: 200,
        out: devtools::repo_root().join("docs"),
        command: format!("local-bench {}", argv.join(" ")).trim().to_owned(),
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => {
                a.pairs = vec![1, 4];
                a.messages = vec![20, 5];
                a.users = vec![10, 50];
                a.history = vec![10, 200];
                a.sends = 5;
                a.reference_messages = 2;
                a.rounds = 3;
                a.logins = 20;
            }
            "--pairs" => a.pairs = list(&value()?)?,
            "--messages" => a.messages = list(&value()?)?,
            "--users" => a.users = list(&value()?)?,
            "--history" => a.history = list(&value()?)?,
            "--sends" => a.sends = value()?.parse()?,
            "--rounds" => a.rounds = value()?.parse()?,
            "--logins" => a.logins = value()?.parse()?,
            "--out" => a.out = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if a.messages.len() != a.pairs.len() {
        return Err("--messages needs one count per --pairs level".into());
    }
    if !(1..=100_000).contains(&a.logins) {
        return Err("--logins must be from 1 to 100000".into());
    }
    if a.users.iter().any(|&u| u < 2) || a.history.iter().any(|&h| h < 1) {
        return Err("--users levels need at least 2 users, --history at least 1 message".into());
    }
    Ok(a)
}

fn progress(msg: impl std::fmt::Display) {
    eprintln!(
        "[local-bench {:>5.0} s] {msg}",
        started().elapsed().as_secs_f64()
    );
}

fn started() -> Instant {
    static T: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T.get_or_init(Instant::now)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let model = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Other work on the machine skews every figure: say how busy it was at the start.
    let load = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{cpus} cores ({model}), {:.1} GB memory, {} {}; load average at the start {load}",
        mem_kb as f64 / 1048576.0,
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(devtools::repo_root())
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty {
        format!("{head} (with uncommitted changes in the working tree)")
    } else {
        head
    }
}

/// Waits until the gateway holds at most `left` connections and no function has reported for
/// a second (the `$disconnect`s of dropped sockets have run), so that the next phase does not
/// share the machine with them.
async fn quiet(stack: &Stack, left: usize) {
    let until = Instant::now() + Duration::from_secs(60);
    while stack.gateway.connection_count() > left && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen = stack.function_logs().len();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = stack.function_logs().len();
        if now == seen {
            break;
        }
        seen = now;
    }
}

/// The stack and the three clients of its DynamoDB Local the phases count with.
struct Bench {
    stack: Stack,
    /// The WeChat API of the logins (its demo app).
    wechat: FakeWeChat,
    binaries: PathBuf,
    /// The floor's sends (in-process, posting nothing).
    floor_log: RequestLog,
    floor: bench::BenchDeps,
    /// Counted sends (with consumed capacity).
    count_log: RequestLog,
    counting: bench::BenchDeps,
    /// Setting up (tables, history): not counted.
    setup_log: RequestLog,
    setup: aws_sdk_dynamodb::Client,
}

/// Starts the stack on the release binaries beside this one.
async fn start() -> Result<Bench, Error> {
    let binaries = std::env::current_exe()?
        .parent()
        .ok_or("no folder for this binary")?
        .to_path_buf();
    for b in [
        "chat-connect",
        "chat-default",
        "chat-disconnect",
        "chat-login",
        "bench-echo",
    ] {
        if !binaries.join(b).is_file() {
            return Err(format!(
                "{} not found: run `cargo build --release --workspace --bins` (or `make bench`)",
                binaries.join(b).display()
            )
            .into());
        }
    }
    progress(format!(
        "starting the local stack on {}",
        binaries.display()
    ));
    let wechat =
        FakeWeChat::start(&[(devtools::chat::DEMO_APPID, devtools::chat::DEMO_APP_SECRET)]).await?;
    let mut opts = StackOptions {
        functions_dir: binaries.clone(),
        logs: Logs::Capture,
        // (for the media sends of phase 2)
        with_s3: true,
        parameters: HashMap::from([(
            "MaxSendsPerMinute".to_string(),
            SENDS_PER_MINUTE.to_string(),
        )]),
        ..devtools::chat::stack_options(bench::SECRET)
    };
    devtools::chat::use_wechat(&mut opts, &wechat.base, &devtools::chat::demo_apps());
    let stack = Stack::start(opts).await?;
    let floor_log = RequestLog::default();
    let floor = bench::deps(&stack, bench::logged_client(&stack, &floor_log), None)?;
    let count_log = RequestLog::with_capacity();
    let counting = bench::deps(
        &stack,
        bench::logged_client(&stack, &count_log),
        Some(&count_log),
    )?;
    let setup_log = RequestLog::default();
    let setup = bench::logged_client(&stack, &setup_log);
    Ok(Bench {
        stack,
        wechat,
        binaries,
        floor_log,
        floor,
        count_log,
        counting,
        setup_log,
        setup,
    })
}

async fn run(args: Args, machine: String) -> Result<(), Error> {
    let b = start().await?;
    let mut missing: Vec<String> = Vec::new();
    let latency = latency_phase(&b, &args).await?;
    let (users, post_ms) = users_phase(&b, &args).await?;
    let (history, media, media_checked) = history_phase(&b, &args).await?;
    let history_users = HISTORY_USERS;
    let history_reference = users
        .iter()
        .find(|u| u.users == history_users)
        .map(|u| u.reference.clone())
        .unwrap_or_default();
    if history_reference.is_empty() {
        missing.push(format!(
            "the reference line of the history plot: no users level of {history_users}"
        ));
    }
    let (login, wechat_rt) = login_phase(&b, &args).await?;
    let moderation = moderation_phase(&b, &args).await?;
    let (notices, notice_acks) = notice_phase(&b).await?;
    let (cold, bootstraps, load, default_memory_mb) = footprint_phase(&b, &args).await?;
    if bootstraps.is_empty() {
        missing.push("arm64 `bootstrap` sizes: run `sam build` first".into());
    }
    progress("phase 4/4: writing docs/benchmark.md and the plots");
    let date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default();
    let results = Results {
        command: args.command.clone(),
        machine,
        date,
        commit: commit(),
        wall: started().elapsed(),
        instance_cap: MAX_INSTANCES,
        latency,
        users,
        history,
        history_reference,
        media,
        media_checked,
        login,
        wechat_rt,
        moderation,
        notices,
        notice_acks,
        cold,
        load,
        bootstraps,
        default_memory_mb,
        sends_per_minute: SENDS_PER_MINUTE,
        post_ms,
        missing,
    };
    std::fs::create_dir_all(&args.out)?;
    let md = bench_report::write(&results, &args.out)?;
    print!("{md}");
    progress(format!(
        "written to {}",
        args.out.join("benchmark.md").display()
    ));
    Ok(())
}

/// 3a. `POST /login` through the HTTP API, one at a time: first logins with the phone button,
/// then the same users returning.
async fn login_phase(b: &Bench, args: &Args) -> Result<(Vec<LoginRow>, Vec<Duration>), Error> {
    let mut rows = Vec::new();
    progress(format!(
        "phase 3/4: {} round trips to the fake WeChat API alone",
        args.logins
    ));
    let wechat_rt = bench::wechat_round_trips(&b.wechat, args.logins).await?;
    for (kind, label) in [
        (
            bench::LoginKind::FirstWithPhone,
            "first login, phone button",
        ),
        (bench::LoginKind::Returning, "returning user"),
    ] {
        progress(format!("phase 3/4: {} logins: {label}", args.logins));
        let logs_before = b.stack.function_logs().len();
        let (times, wechat_calls) = bench::logins(
            &b.stack,
            &b.wechat,
            kind,
            args.logins,
            std::process::id() as u16,
        )
        .await?;
        let function_ms: Vec<f64> = b.stack.function_logs()[logs_before..]
            .iter()
            .filter_map(|l| bench::parse_report(l))
            .filter(|r| r.function == "LoginFunction")
            .map(|r| r.duration_ms)
            .collect();
        progress(format!(
            "phase 3/4: {label}: p50 {:.1} ms, p99 {:.1} ms, {:.2} WeChat calls per login",
            bench::percentile_ms(&times, 0.5),
            bench::percentile_ms(&times, 0.99),
            wechat_calls as f64 / times.len().max(1) as f64
        ));
        rows.push(LoginRow {
            kind: label,
            times,
            function_ms,
            wechat_calls,
        });
    }
    Ok((rows, wechat_rt))
}

/// Delays of the fake WeChat API's answers the checked sends run with (ms).
const CHECK_DELAYS_MS: [u64; 2] = [0, 50];
/// Checked sends before the measured ones.
const WARM_SENDS: usize = 100;

/// 3b. Text sends on a stack of their own that checks texts (`Moderation=wechat`, the fake
/// WeChat API), one at a time from a user who logged in through `POST /login`, with the
/// check answered at once and late: each send's time to its acknowledgement, and its logged
/// parts (the check, the read beside it, the storage part in all).
async fn moderation_phase(b: &Bench, args: &Args) -> Result<Vec<ModerationRow>, Error> {
    use devtools::chat::{DEMO_APPID, DEMO_APP_SECRET, DEMO_APP_SID};
    progress("phase 3/4: checked text sends: starting a stack with Moderation=wechat");
    let wechat = FakeWeChat::start(&[(DEMO_APPID, DEMO_APP_SECRET)]).await?;
    let mut opts = StackOptions {
        functions_dir: b.binaries.clone(),
        logs: Logs::Capture,
        parameters: HashMap::from([
            ("Moderation".to_string(), "wechat".to_string()),
            ("AccountIdentity".to_string(), "openid".to_string()),
            (
                "MaxSendsPerMinute".to_string(),
                SENDS_PER_MINUTE.to_string(),
            ),
        ]),
        ..devtools::chat::stack_options(bench::SECRET)
    };
    devtools::chat::use_wechat(&mut opts, &wechat.base, &devtools::chat::demo_apps());
    let stack = Stack::start(opts).await?;
    let me = "o-bench-checked";
    let token = bench::wechat_login(&stack, &wechat, me).await?;
    let query = devtools::ws_client::user_query(me, DEMO_APP_SID, &token);
    let mut sender = devtools::ws_client::ChatSocket::open(&stack.ws_url, &query)
        .await
        .map_err(|status| format!("the checked sender's handshake answered {status}"))?;
    // Warm: the instance started, the app's access token fetched, and DynamoDB Local's JVM
    // (a new one, with this stack) past its first compilations: the first sends of a fresh
    // DynamoDB Local take several times as long as later ones.
    bench::checked_sends(&mut sender, "o-bench-peer", WARM_SENDS, "warm").await?;
    let mut rows = Vec::new();
    for delay_ms in CHECK_DELAYS_MS {
        progress(format!(
            "phase 3/4: {} checked text sends, the check answered after {delay_ms} ms",
            args.sends
        ));
        wechat.slow(delay_ms);
        let calls_before = wechat.calls("/wxa/msg_sec_check");
        let logs_before = stack.function_logs().len();
        let acks = bench::checked_sends(
            &mut sender,
            "o-bench-peer",
            args.sends,
            &format!("d{delay_ms}"),
        )
        .await?;
        let parts = stack.function_logs()[logs_before..]
            .iter()
            .filter_map(|l| bench::parse_send_parts(l))
            .collect();
        rows.push(ModerationRow {
            delay_ms,
            acks,
            parts,
            wechat_calls: wechat.calls("/wxa/msg_sec_check") - calls_before,
        });
    }
    wechat.slow(0);
    Ok(rows)
}

/// Notices measured in the notice phase (each from a sender of its own).
const NOTICES: usize = 40;

/// 3c. Offline notices on a stack of their own with a notice template: Bob grants it
/// [`NOTICES`] times and leaves; then one sender after another writes him one message (each a
/// conversation of its own, so each is due a notice), the next after the notice arrived. Each
/// message's time from its send to its `subscribe/send` at the fake, and the sends' acks.
async fn notice_phase(b: &Bench) -> Result<(Vec<Duration>, Vec<Duration>), Error> {
    use devtools::chat::{DEMO_APPID, DEMO_APP_SECRET, DEMO_APP_SID};
    progress("phase 3/4: offline notices: starting a stack with a notice template");
    let wechat = FakeWeChat::start(&[(DEMO_APPID, DEMO_APP_SECRET)]).await?;
    let mut opts = StackOptions {
        functions_dir: b.binaries.clone(),
        logs: Logs::Capture,
        parameters: HashMap::from([
            ("AccountIdentity".to_string(), "openid".to_string()),
            ("NoticeTemplateId".to_string(), "bench-notice".to_string()),
            ("MaxNoticeGrants".to_string(), NOTICES.to_string()),
        ]),
        ..devtools::chat::stack_options(bench::SECRET)
    };
    devtools::chat::use_wechat(&mut opts, &wechat.base, &devtools::chat::demo_apps());
    let stack = Stack::start(opts).await?;
    let bob = "o-bench-bob";
    let token = bench::wechat_login(&stack, &wechat, bob).await?;
    let query = devtools::ws_client::user_query(bob, DEMO_APP_SID, &token);
    let mut socket = devtools::ws_client::ChatSocket::open(&stack.ws_url, &query)
        .await
        .map_err(|status| format!("Bob's handshake answered {status}"))?;
    for i in 0..NOTICES {
        let req = format!("g{i}");
        socket
            .send_json(&serde_json::json!({"action":"subscribe","req_id":req,"template_id":"bench-notice","result":"accept"}))
            .await?;
        loop {
            let f = socket.frame(Duration::from_secs(15)).await?;
            if f["req_id"] == req.as_str() {
                if f["type"] != "subscribed" {
                    return Err(format!("subscribe answered {f}").into());
                }
                break;
            }
        }
    }
    drop(socket);
    // Offline once `$disconnect` emptied his registry.
    let ddb = local_stack::clients::dynamodb(&stack.dynamodb_endpoint());
    let table = devtools::chat::tables(&stack).connections;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let item = ddb
            .get_item()
            .table_name(&table)
            .key(
                "connection_id",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("r#{DEMO_APP_SID}#{bob}")),
            )
            .consistent_read(true)
            .send()
            .await?
            .item;
        let live = item
            .and_then(|i| i.get("conns").and_then(|c| c.as_m().ok()).map(|m| m.len()))
            .unwrap_or(0);
        if live == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err("Bob's connection stayed registered".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress(format!(
        "phase 3/4: {NOTICES} messages to an offline user, one notice each"
    ));
    let (mut notices, mut acks) = (Vec::new(), Vec::new());
    for i in 0..NOTICES {
        let mut sender =
            bench::open_user(&stack, DEMO_APP_SID, &format!("bench-sender-{i}")).await?;
        // Spread the sends over the poll's period (a quiet shard is read every 250 ms): one
        // right after the last notice would always wait a whole period.
        tokio::time::sleep(Duration::from_millis((i as u64 * 97) % 250)).await;
        let before = wechat.notices().len();
        let sent_ms = bench::now_ms();
        acks.extend(bench::checked_sends(&mut sender, bob, 1, &format!("n{i}")).await?);
        let deadline = Instant::now() + Duration::from_secs(20);
        let at_ms = loop {
            if let Some(n) = wechat.notices().get(before) {
                if n.errcode != 0 {
                    return Err(format!("the notice was answered {}", n.errcode).into());
                }
                break n.at_ms;
            }
            if Instant::now() > deadline {
                return Err(format!("no notice for message {i}").into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        notices.push(Duration::from_millis((at_ms - sent_ms).max(0) as u64));
    }
    Ok((notices, acks))
}

/// Users connected in the history phase (and the users level its reference line is read at).
const HISTORY_USERS: usize = 10;

/// 1. Latency against the floor, at each number of pairs.
async fn latency_phase(b: &Bench, args: &Args) -> Result<Vec<LatencyRow>, Error> {
    let (stack, floor, floor_log) = (&b.stack, &b.floor, &b.floor_log);
    let most = args.pairs.iter().copied().max().unwrap_or(0);
    progress(format!(
        "phase 1/4: latency; opening {most} pairs of user connections"
    ));
    let opened: Vec<Result<Pair, Error>> = futures::stream::iter(0..most)
        .map(|n| bench::open_pair(stack, &floor.store, "lat", n))
        .buffered(16)
        .collect()
        .await;
    let mut pairs = opened.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut latency = Vec::new();
    for (&p, &m) in args.pairs.iter().zip(&args.messages) {
        progress(format!(
            "phase 1/4: {p} pairs × {m} messages through the stack, then the floor"
        ));
        let logs_before = stack.function_logs().len();
        let l = bench::latency(&mut pairs[..p], floor, m).await?;
        let logs = stack.function_logs();
        let function_ms: Vec<f64> = logs[logs_before..]
            .iter()
            .filter_map(|l| bench::parse_report(l))
            .filter(|r| r.function == "DefaultFunction")
            .map(|r| r.duration_ms)
            .collect();
        let parts: Vec<bench::SendParts> = logs[logs_before..]
            .iter()
            .filter_map(|l| bench::parse_send_parts(l))
            .collect();
        floor_log.take();
        progress(format!(
            "phase 1/4: {p} pairs: p50 {:.1} ms (floor {:.1} ms, $default itself {:.1} ms), p99 {:.1} ms (floor {:.1} ms)",
            bench::percentile_ms(&l.stack, 0.5),
            bench::percentile_ms(&l.floor, 0.5),
            bench::median(&function_ms),
            bench::percentile_ms(&l.stack, 0.99),
            bench::percentile_ms(&l.floor, 0.99)
        ));
        latency.push(LatencyRow {
            pairs: p,
            stack: l.stack,
            floor: l.floor,
            function_ms,
            parts,
        });
    }
    drop(pairs);
    quiet(stack, 0).await;

    Ok(latency)
}

/// 2a. Requests against connected users, beside the reference; and single posts' latency.
async fn users_phase(b: &Bench, args: &Args) -> Result<(Vec<UsersRow>, Vec<Duration>), Error> {
    let (stack, floor, setup, setup_log) = (&b.stack, &b.floor, &b.setup, &b.setup_log);
    let (counting, count_log) = (&b.counting, &b.count_log);
    bench::create_reference_table(setup).await?;
    let http = reqwest::Client::new();
    let reference_log = RequestLog::with_capacity();
    let reference_client = bench::logged_client(stack, &reference_log);
    let mut crowd = Crowd::default();
    let mut users = Vec::new();
    let mut post_ms = Vec::new();
    for &n in &args.users {
        progress(format!("phase 2/4: {n} connected users: connecting"));
        let before = crowd.users.len();
        crowd.grow_to(stack, "fan", "u", n).await?;
        bench::reference_register(setup, &floor.store, "fan", &crowd.users[before..]).await?;
        setup_log.take();
        let sender = bench::connection_id(&floor.store, "fan", "u0").await?;
        progress(format!(
            "phase 2/4: {n} connected users: {} counted sends, {} reference messages",
            args.sends, args.reference_messages
        ));
        let mut ours = Vec::new();
        for i in 0..args.sends {
            ours.push(
                bench::counted_send(counting, count_log, &sender, "u1", &format!("u{n}-{i}"))
                    .await?,
            );
        }
        let mut reference = Vec::new();
        let body = serde_json::json!({"message": "benchmark message from the reference", "n": n})
            .to_string();
        for _ in 0..args.reference_messages {
            reference.push(
                bench::scan_and_broadcast(
                    &reference_client,
                    &reference_log,
                    &http,
                    &stack.management_url,
                    &body,
                )
                .await?,
            );
        }
        if post_ms.is_empty() {
            let peer = bench::connection_id(&floor.store, "fan", "u1").await?;
            post_ms = bench::post_latency(&http, &stack.management_url, &peer, 100).await?;
        }
        users.push(UsersRow {
            users: n,
            ours,
            reference,
        });
    }
    drop(crowd);
    quiet(stack, 0).await;

    Ok((users, post_ms))
}

/// 2b. Requests against stored messages; 2c. media sends.
/// The history rows, image sends, and image sends with media checks.
type HistoryCosts = (Vec<HistoryRow>, Vec<bench::SendCost>, Vec<bench::SendCost>);

async fn history_phase(b: &Bench, args: &Args) -> Result<HistoryCosts, Error> {
    let (stack, floor, setup, setup_log) = (&b.stack, &b.floor, &b.setup, &b.setup_log);
    let (counting, count_log) = (&b.counting, &b.count_log);
    let history_users = HISTORY_USERS;
    let mut crowd = Crowd::default();
    progress(format!(
        "phase 2/4: history: {history_users} connected users"
    ));
    crowd.grow_to(stack, "hist", "h", history_users).await?;
    let sender = bench::connection_id(&floor.store, "hist", "h0").await?;
    let conversation = Conversation::new("hist", "h0", "h1");
    let mut stored = 0usize;
    let mut history = Vec::new();
    for &h in &args.history {
        if stored == 0 {
            bench::counted_send(counting, count_log, &sender, "h1", "seed").await?;
            stored = 1;
        }
        if h > stored {
            progress(format!(
                "phase 2/4: history: storing {} messages",
                h - stored
            ));
            let t = Instant::now();
            bench::add_history(
                setup,
                &devtools::chat::tables(stack).messages,
                &conversation,
                h - stored,
            )
            .await?;
            setup_log.take();
            progress(format!(
                "phase 2/4: history: stored {} messages in {:.1} s",
                h - stored,
                t.elapsed().as_secs_f64()
            ));
            stored = h;
        }
        progress(format!(
            "phase 2/4: history {h}: {} counted sends",
            args.sends
        ));
        let mut ours = Vec::new();
        for i in 0..args.sends {
            ours.push(
                bench::counted_send(counting, count_log, &sender, "h1", &format!("h{h}-{i}"))
                    .await?,
            );
        }
        stored += args.sends;
        history.push(HistoryRow {
            stored: h,
            users: history_users,
            ours,
        });
    }
    // 2c. Media sends: the same sender, an image each, its S3 requests counted with the rest.
    progress(format!("phase 2/4: {} counted image sends", args.sends));
    let image = bench::png();
    let mut media = Vec::new();
    for i in 0..args.sends {
        media.push(
            bench::media_send(
                stack,
                counting,
                count_log,
                ("hist", "h0", &sender),
                "h1",
                &format!("img-{i}"),
                &image,
            )
            .await?,
        );
    }
    // 2d. The same with media checks on (Moderation=wechat's mediaCheckAsync, answered at once
    // in-process): the sender's record carries an openid, as `$connect` writes it under wechat.
    progress(format!(
        "phase 2/4: {} counted image sends with media checks",
        args.sends
    ));
    local_stack::clients::dynamodb(&stack.dynamodb_endpoint())
        .update_item()
        .table_name(&devtools::chat::tables(stack).connections)
        .key(
            "connection_id",
            aws_sdk_dynamodb::types::AttributeValue::S(sender.clone()),
        )
        .update_expression("SET openid = :o")
        .expression_attribute_values(
            ":o",
            aws_sdk_dynamodb::types::AttributeValue::S("o-bench-h0".into()),
        )
        .send()
        .await?;
    let mut checked = bench::deps(
        stack,
        bench::logged_client(stack, count_log),
        Some(count_log),
    )?;
    checked.moderation.media = Some(std::sync::Arc::new(bench::InstantAsk::default()));
    let mut media_checked = Vec::new();
    for i in 0..args.sends {
        media_checked.push(
            bench::media_send(
                stack,
                &checked,
                count_log,
                ("hist", "h0", &sender),
                "h1",
                &format!("imgc-{i}"),
                &image,
            )
            .await?,
        );
    }
    drop(crowd);
    quiet(stack, 0).await;
    Ok((history, media, media_checked))
}

/// What phase 3 measures and the run read off the stack: cold starts, bootstrap sizes, every
/// REPORT line, `$default`'s memory size.
type Footprint = (
    Vec<bench::Report>,
    Vec<(String, u64)>,
    Vec<bench::Report>,
    u32,
);

/// 3. Init and memory.
async fn footprint_phase(b: &Bench, args: &Args) -> Result<Footprint, Error> {
    let (stack, binaries) = (&b.stack, &b.binaries);
    progress(format!(
        "phase 3/4: {} cold starts of each WebSocket function and of bench-echo",
        args.rounds
    ));
    let cold = bench::cold_starts(stack, binaries, args.rounds).await?;
    let bootstraps = bench::bootstrap_sizes();
    let load: Vec<_> = stack
        .function_logs()
        .iter()
        .filter_map(|l| bench::parse_report(l))
        .collect();
    let default_memory_mb = stack
        .app
        .functions
        .get("DefaultFunction")
        .map_or(0, |f| f.memory_mb);

    Ok((cold, bootstraps, load, default_memory_mb))
}

fn main() -> Result<(), Error> {
    started();
    let machine = machine();
    let args = parse_args()?;
    // The stack keeps DynamoDB Local's SQLite files in the temporary folder; on a disk, its
    // fsyncs dominate every write (and a 100,000-message history takes minutes to store). On
    // tmpfs the store is as fast as DynamoDB Local's in-memory mode. Set before any thread.
    if std::env::var_os("TMPDIR").is_none() && Path::new("/dev/shm").is_dir() {
        std::env::set_var("TMPDIR", "/dev/shm");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            tokio::time::timeout(DEADLINE, run(args, machine))
                .await
                .map_err(|_| "the benchmark ran past its 15-minute deadline")?
        })
}
