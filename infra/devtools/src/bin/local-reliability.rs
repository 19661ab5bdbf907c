//! Load and fault runs through the local stack: `local-reliability [--release] [--quick]
//! [out-file]` (default docs/reliability-figures.md; `make reliability`). Loopback only,
//! bounded in count and time (each phase has a deadline; the whole run stops after 20
//! minutes), leaves no process behind (the stack's children die with it).
//!
//! Each phase opens its own pairs of user connections (Ann sends to Bob, a few messages in
//! flight at once, as a client with a send queue would) and then checks, from DynamoDB,
//! every conversation: each message the clients meant to send is stored exactly once, each
//! sender's messages in the order sent wherever their arrival times differ, and each reached
//! both users (Ann's acknowledgement, Bob's copy). Clients behave as `clients/miniprogram`
//! does: a send without an acknowledgement is sent again with the same `client_msg_id`.
//!
//! Phases: `load` (500 connections, 20,000 messages), `dynamodb-restart` (DynamoDB Local
//! killed and restarted mid-load), `posts-fail` (every 5th post of the management API answers
//! 500), `function-killed` (a busy `$default` process killed every 300 ms), `sends-tripled`
//! (every send frame sent three times at once).
use devtools::runtime::Logs;
use devtools::stack::{Stack, StackOptions};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shared::auth::{mint, Claims};
use shared::dynamo::DynamoStore;
use shared::model::Conversation;
use shared::ports::MessageStore;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SECRET: &str = "reliability-secret-reliability-secret";
const APP: &str = "rel";
/// The whole run stops after this, finished or not.
const RUN_DEADLINE: Duration = Duration::from_secs(20 * 60);
/// A send not acknowledged after this is sent again (same client_msg_id), as the
/// mini-program client does (`ackTimeoutMs`). Shorter floods an overloaded stack with resends,
/// each a full invocation: a first run with 4 s stored a fifth of the load in 10 minutes.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);
/// After an error frame, the client waits this long before sending again.
const RETRY_AFTER: Duration = Duration::from_millis(700);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Clone, Copy)]
enum Fault {
    None,
    DynamoRestart,
    PostsFail,
    FunctionKilled,
    SendsTripled,
}

struct Phase {
    name: &'static str,
    what: &'static str,
    pairs: usize,
    per_pair: usize,
    in_flight: usize,
    fault: Fault,
    deadline: Duration,
}

#[derive(Default)]
struct Counters {
    frames_sent: AtomicU64,
    resends: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    gateway_errors: AtomicU64,
}

impl Counters {
    fn error(&self, code: &str) {
        *self.errors.lock().unwrap().entry(code.into()).or_default() += 1;
    }
}

/// What one pair saw.
#[derive(Default)]
struct PairSeen {
    /// Which pair (results come back in the order pairs finish).
    pair: usize,
    /// client_msg_id → message id, from Ann's acknowledgements.
    acked: HashMap<String, String>,
    /// Message ids Bob received.
    bob_got: HashSet<String>,
    /// Indexes of the messages whose frame went out more than once (resent or tripled):
    /// their stored arrival is whichever attempt stored them, so they are left out of the
    /// order check.
    resent: HashSet<usize>,
    gave_up: usize,
}

struct Figures {
    name: &'static str,
    what: &'static str,
    connections: usize,
    sent: usize,
    stored: usize,
    duplicated: usize,
    acked: usize,
    delivered: usize,
    missing: usize,
    order_violations: usize,
    frames_sent: u64,
    resends: u64,
    errors: BTreeMap<String, u64>,
    gateway_errors: u64,
    crashes: u64,
    elapsed: Duration,
    rss_mb_after: u64,
}

fn token(user: &str) -> Res<String> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    Ok(mint(
        SECRET.as_bytes(),
        &Claims {
            sub: user.into(),
            app: APP.into(),
            exp,
            name: None,
            avatar: None,
        },
    )?)
}

async fn open(stack: &Stack, user: &str) -> Res<Ws> {
    let url = format!(
        "{}?userphone={user}&app_sid={APP}&token={}",
        stack.ws_url,
        token(user)?
    );
    for attempt in 0..5 {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => return Ok(ws),
            Err(_) if attempt < 4 => tokio::time::sleep(Duration::from_millis(300)).await,
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!()
}

fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// How one pair behaves in a phase.
struct PairPlan<'a> {
    phase: &'a str,
    p: usize,
    n: usize,
    in_flight: usize,
    tripled: bool,
    until: Instant,
}

/// One pair: Ann sends `n` messages to Bob, `in_flight` at a time, resending what is not
/// acknowledged; Bob reads. Returns what they saw.
async fn run_pair(stack: &Stack, plan: PairPlan<'_>, counters: &Counters) -> Res<PairSeen> {
    let PairPlan {
        phase,
        p,
        n,
        in_flight,
        tripled,
        until,
    } = plan;
    let (ann, bob) = accounts(phase, p);
    let mut a = open(stack, &ann).await?;
    let b = open(stack, &bob).await?;
    let seen = Arc::new(Mutex::new(PairSeen::default()));
    // Bob reads until told to stop.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let bob_seen = seen.clone();
    let bob_reader = tokio::spawn(async move {
        let mut b = b;
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                m = b.next() => match m {
                    Some(Ok(WsMessage::Text(t))) => {
                        if let Ok(f) = serde_json::from_str::<Value>(&t) {
                            if f["type"] == "message" {
                                if let Some(id) = f["message"]["id"].as_str() {
                                    bob_seen.lock().unwrap().bob_got.insert(id.to_owned());
                                }
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
        }
        let _ = b.close(None).await;
    });
    let cmid = |i: usize| format!("{phase}-{p}-{i}");
    let frame = |i: usize| {
        json!({"action":"send","to":bob,"client_msg_id":cmid(i),"chat_type":0,
               "chat_content":format!("{phase} {p} message {i}")})
        .to_string()
    };
    let mut next = 0usize;
    // client_msg_id → (index, last sent, tries)
    let mut pending: HashMap<String, (usize, Instant, u32)> = HashMap::new();
    let mut done = 0usize;
    while done < n && Instant::now() < until {
        while pending.len() < in_flight && next < n {
            let text = frame(next);
            for _ in 0..if tripled { 3 } else { 1 } {
                a.send(WsMessage::Text(text.clone().into())).await?;
                counters.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
            pending.insert(cmid(next), (next, Instant::now(), 1));
            if tripled {
                seen.lock().unwrap().resent.insert(next);
            }
            next += 1;
        }
        match tokio::time::timeout(Duration::from_millis(250), a.next()).await {
            Ok(Some(Ok(WsMessage::Text(t)))) => {
                let f: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                let id = f["client_msg_id"].as_str().unwrap_or_default().to_owned();
                if f["type"] == "message" && f["message"]["userphone"] == ann.as_str() {
                    if let (Some(_), Some(mid)) = (pending.remove(&id), f["message"]["id"].as_str())
                    {
                        seen.lock().unwrap().acked.insert(id, mid.to_owned());
                        done += 1;
                    }
                } else if f["type"] == "error" {
                    let code = f["error"].as_str().unwrap_or("?").to_owned();
                    counters.error(&code);
                    if code == "not_delivered" {
                        // stored: count it as acknowledged by id (the page would show it)
                        if let (Some(_), Some(mid)) = (pending.remove(&id), f["id"].as_str()) {
                            seen.lock().unwrap().acked.insert(id, mid.to_owned());
                            done += 1;
                        }
                    } else if let Some(e) = pending.get_mut(&id) {
                        // retry soon: make it look overdue after RETRY_AFTER
                        e.1 = Instant::now() - ACK_TIMEOUT + RETRY_AFTER;
                    }
                } else if f
                    .get("message")
                    .is_some_and(|m| m == "Internal server error")
                {
                    counters.gateway_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(_) => {
                // our socket is gone: reconnect and resend everything pending
                a = open(stack, &ann).await?;
                for e in pending.values_mut() {
                    e.1 = Instant::now() - ACK_TIMEOUT;
                }
            }
        }
        let now = Instant::now();
        let overdue: Vec<(String, usize)> = pending
            .iter()
            .filter(|(_, (_, at, _))| now.duration_since(*at) >= ACK_TIMEOUT)
            .map(|(k, (i, _, _))| (k.clone(), *i))
            .collect();
        for (k, i) in overdue {
            let tries = pending.get(&k).map_or(0, |e| e.2);
            if tries >= 12 {
                pending.remove(&k);
                seen.lock().unwrap().gave_up += 1;
                done += 1;
                continue;
            }
            a.send(WsMessage::Text(frame(i).into())).await?;
            counters.frames_sent.fetch_add(1, Ordering::Relaxed);
            counters.resends.fetch_add(1, Ordering::Relaxed);
            seen.lock().unwrap().resent.insert(i);
            pending.insert(k, (i, Instant::now(), tries + 1));
        }
    }
    // Give Bob's copies a moment to land, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop_tx.send(());
    let _ = bob_reader.await;
    let _ = a.close(None).await;
    let mut out = std::mem::take(&mut *seen.lock().unwrap());
    out.pair = p;
    Ok(out)
}

fn accounts(phase: &str, p: usize) -> (String, String) {
    let tag: u32 = phase.bytes().map(u32::from).sum::<u32>() % 90 + 10;
    (format!("13{tag}0{p:05}"), format!("13{tag}1{p:05}"))
}

async fn run_phase(stack: &Stack, store: &DynamoStore, phase: &Phase) -> Res<Figures> {
    eprintln!(
        "[reliability] {}: {} pairs × {} messages ({})",
        phase.name, phase.pairs, phase.per_pair, phase.what
    );
    let started = Instant::now();
    let until = started + phase.deadline;
    let counters = Arc::new(Counters::default());
    let crashes_before = stack.invoker().crashes();
    let tripled = matches!(phase.fault, Fault::SendsTripled);
    if matches!(phase.fault, Fault::PostsFail) {
        stack.gateway.fail_posts_every(5);
    }
    let results = {
        let stack_ref = stack;
        let work = futures::stream::iter(0..phase.pairs)
            .map(|p| {
                let counters = counters.clone();
                async move {
                    let plan = PairPlan {
                        phase: phase.name,
                        p,
                        n: phase.per_pair,
                        in_flight: phase.in_flight,
                        tripled,
                        until,
                    };
                    run_pair(stack_ref, plan, &counters).await
                }
            })
            .buffer_unordered(phase.pairs);
        let faults = async {
            match phase.fault {
                Fault::FunctionKilled => {
                    let mut killed = 0;
                    let stop = Instant::now() + Duration::from_secs(8);
                    while Instant::now() < stop {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if stack_ref.invoker().kill_one_busy("DefaultFunction") {
                            killed += 1;
                        }
                    }
                    eprintln!("[reliability]   killed {killed} busy $default processes");
                    Ok(())
                }
                Fault::DynamoRestart => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    // (blocking: DynamoDB Local stops and starts on this worker)
                    tokio::task::block_in_place(|| stack_ref.stop_dynamodb());
                    eprintln!("[reliability]   DynamoDB Local stopped");
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    let r = tokio::task::block_in_place(|| stack_ref.restart_dynamodb());
                    eprintln!("[reliability]   DynamoDB Local restarted");
                    r
                }
                _ => Ok(()),
            }
        };
        let (results, fault) = futures::join!(work.collect::<Vec<_>>(), faults);
        fault?;
        results
    };
    stack.gateway.fail_posts_every(0);
    let mut seen = Vec::new();
    for r in results {
        seen.push(r?);
    }
    figures(
        stack,
        store,
        phase,
        &seen,
        &counters,
        started,
        crashes_before,
    )
    .await
}

async fn figures(
    stack: &Stack,
    store: &DynamoStore,
    phase: &Phase,
    seen: &[PairSeen],
    counters: &Counters,
    started: Instant,
    crashes_before: u64,
) -> Res<Figures> {
    let mut f = Figures {
        name: phase.name,
        what: phase.what,
        connections: phase.pairs * 2,
        sent: phase.pairs * phase.per_pair,
        stored: 0,
        duplicated: 0,
        acked: 0,
        delivered: 0,
        missing: 0,
        order_violations: 0,
        frames_sent: counters.frames_sent.load(Ordering::Relaxed),
        resends: counters.resends.load(Ordering::Relaxed),
        errors: counters.errors.lock().unwrap().clone(),
        gateway_errors: counters.gateway_errors.load(Ordering::Relaxed),
        crashes: stack.invoker().crashes() - crashes_before,
        elapsed: started.elapsed(),
        rss_mb_after: rss_mb(),
    };
    for s in seen {
        let p = s.pair;
        let (ann, bob) = accounts(phase.name, p);
        let page = store
            .latest_through(&Conversation::new(APP, &ann, &bob), "~", 1000)
            .await?;
        let mut by_cmid: HashMap<String, usize> = HashMap::new();
        let mut stored_order = Vec::new();
        for m in &page.messages {
            if let Some(c) = &m.client_msg_id {
                *by_cmid.entry(c.clone()).or_default() += 1;
                let index: usize = c
                    .rsplit('-')
                    .next()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0);
                if !s.resent.contains(&index) {
                    stored_order.push((index, m.created_at_ms));
                }
            }
        }
        f.stored += by_cmid.len();
        f.duplicated += by_cmid.values().map(|n| n - 1).sum::<usize>();
        f.missing += phase.per_pair.saturating_sub(by_cmid.len());
        // Sender order, among messages whose frame went out once: a later-sent message stored
        // before an earlier one whose arrival time differs (equal times may go either way).
        for (i, (a_idx, a_at)) in stored_order.iter().enumerate() {
            for (b_idx, b_at) in &stored_order[i + 1..] {
                if b_idx < a_idx && b_at != a_at {
                    f.order_violations += 1;
                }
            }
        }
        if std::env::var_os("RELIABILITY_DEBUG").is_some() {
            eprintln!(
                "pair {p}: acked {} bob_got {} stored {}",
                s.acked.len(),
                s.bob_got.len(),
                page.messages.len()
            );
        }
        f.acked += s.acked.len();
        let stored_ids: HashSet<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
        f.delivered += s
            .bob_got
            .iter()
            .filter(|id| stored_ids.contains(id.as_str()))
            .count();
    }
    Ok(f)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let mut release = false;
    let mut quick = false;
    let mut only = None;
    let mut out = devtools::repo_root().join("docs/reliability-figures.md");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--release" => release = true,
            "--quick" => quick = true,
            "--only" => only = args.next(),
            other if !other.starts_with("--") => out = other.into(),
            _ => {
                return Err(
                    "usage: local-reliability [--release] [--quick] [--only PHASE] [out-file]"
                        .into(),
                )
            }
        }
    }
    let whole = tokio::time::timeout(RUN_DEADLINE, run(release, quick, only, out)).await;
    match whole {
        Ok(r) => r,
        Err(_) => Err("the run took over 20 minutes; stopped".into()),
    }
}

async fn run(release: bool, quick: bool, only: Option<String>, out: std::path::PathBuf) -> Res<()> {
    let dir = devtools::repo_root().join(if release {
        "target/release"
    } else {
        "target/debug"
    });
    let mut opts = StackOptions {
        jwt_secret: SECRET.into(),
        logs: Logs::Quiet,
        functions_dir: dir.clone(),
        with_s3: false,
        ..Default::default()
    };
    // Load, not abuse: the per-connection rate limit is not what is measured here.
    opts.parameters
        .insert("MaxSendsPerMinute".into(), "100000".into());
    let stack = Stack::start(opts).await?;
    let store = DynamoStore::new(
        dynamo_client(&stack.dynamodb_endpoint()),
        &stack.tables.messages,
        &stack.tables.connections,
    );
    let scale = |n: usize| if quick { (n / 10).max(2) } else { n };
    let phases = [
        Phase {
            name: "load",
            what: "no fault",
            pairs: scale(250),
            per_pair: 80,
            in_flight: 2,
            fault: Fault::None,
            deadline: Duration::from_secs(600),
        },
        Phase {
            name: "dynamodb-restart",
            what: "DynamoDB Local killed 2 s in, restarted 4 s later",
            pairs: scale(20),
            per_pair: 40,
            in_flight: 2,
            fault: Fault::DynamoRestart,
            deadline: Duration::from_secs(120),
        },
        Phase {
            name: "posts-fail",
            what: "every 5th POST @connections answers 500",
            pairs: scale(20),
            per_pair: 40,
            in_flight: 2,
            fault: Fault::PostsFail,
            deadline: Duration::from_secs(120),
        },
        Phase {
            name: "function-killed",
            what: "a busy $default process SIGKILLed every 300 ms for 8 s",
            pairs: scale(20),
            per_pair: 40,
            in_flight: 2,
            fault: Fault::FunctionKilled,
            deadline: Duration::from_secs(120),
        },
        Phase {
            name: "sends-tripled",
            what: "every send frame sent 3 times at once (same client_msg_id)",
            pairs: scale(20),
            per_pair: 40,
            in_flight: 2,
            fault: Fault::SendsTripled,
            deadline: Duration::from_secs(120),
        },
    ];
    let rss_start = rss_mb();
    let mut all = Vec::new();
    for phase in phases
        .iter()
        .filter(|p| only.as_deref().is_none_or(|o| o == p.name))
    {
        let f = run_phase(&stack, &store, phase).await?;
        eprintln!(
            "[reliability]   sent {} stored {} duplicated {} delivered {} missing {} order violations {} ({:.1} s)",
            f.sent, f.stored, f.duplicated, f.delivered, f.missing, f.order_violations,
            f.elapsed.as_secs_f64()
        );
        all.push(f);
    }
    let report = render(&all, release, quick, rss_start, &dir);
    std::fs::write(&out, &report)?;
    println!("{report}");
    eprintln!("[reliability] wrote {}", out.display());
    drop(stack);
    Ok(())
}

fn dynamo_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "reliability",
        ))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

fn render(
    all: &[Figures],
    release: bool,
    quick: bool,
    rss_start: u64,
    dir: &std::path::Path,
) -> String {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = format!(
        "<!-- written by local-reliability; see docs/reliability.md -->\n\
         Run of `local-reliability{}{}` at commit `{commit}` on {cpus} CPUs, functions from `{}`, \
         the local runtime's cap of {} instances per function, DynamoDB Local, loopback only.\n\n\
         | phase | fault | connections | sent | stored | duplicated | acknowledged | delivered to the peer | missing | order violations | frames sent (resends) | error frames | gateway errors | crashed invocations | time |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        if release { " --release" } else { "" },
        if quick { " --quick" } else { "" },
        dir.display(),
        devtools::runtime::MAX_INSTANCES,
    );
    for f in all {
        let errors = if f.errors.is_empty() {
            "none".to_owned()
        } else {
            f.errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {:.1} s |\n",
            f.name,
            f.what,
            f.connections,
            f.sent,
            f.stored,
            f.duplicated,
            f.acked,
            f.delivered,
            f.missing,
            f.order_violations,
            f.frames_sent,
            f.resends,
            errors,
            f.gateway_errors,
            f.crashes,
            f.elapsed.as_secs_f64(),
        ));
    }
    let peak = all.iter().map(|f| f.rss_mb_after).max().unwrap_or(0);
    s.push_str(&format!(
        "\nMemory of the process running the gateway, the runtime and the clients: {rss_start} MB at the start, at most {peak} MB after a phase.\n"
    ));
    s
}
