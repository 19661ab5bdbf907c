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
//! (every send frame sent three times at once), `s3-stopped` (image sends while the local S3
//! is stopped and started again), and `soak`, on a stack of its own whose limits are
//! shortened to seconds (connections expire, records disappear, expired records are never
//! posted to). `--only load,soak` runs some of them.
use futures::{SinkExt, StreamExt};
use local_stack::runtime::Logs;
use local_stack::stack::{Stack, StackOptions};
use serde_json::{json, Value};
use shared::adapters::dynamo::DynamoStore;
use shared::domain::auth::{mint, Claims};
use shared::domain::ids::Conversation;
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
/// Between two image sends of one pair in the media phase.
const MEDIA_PAUSE: Duration = Duration::from_millis(300);
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
    /// Image sends (ticket, upload, send) while the local S3 is stopped and started again.
    S3Stopped,
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
    /// Figures particular to the phase, printed under the table.
    notes: Vec<String>,
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
    let (stop_tx, bob_reader) = spawn_reader(b, seen.clone());
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
    Ok(finish_pair(p, a, stop_tx, bob_reader, &seen).await)
}

/// Sends `frame` on `ws` and reads until a frame `matches`, an "Internal server error" frame
/// (API Gateway's, when the invocation failed) or `ACK_TIMEOUT` passes (`None`).
async fn ask(
    ws: &mut Ws,
    frame: &Value,
    counters: &Counters,
    matches: impl Fn(&Value) -> bool,
) -> Res<Option<Value>> {
    ws.send(WsMessage::Text(frame.to_string().into())).await?;
    counters.frames_sent.fetch_add(1, Ordering::Relaxed);
    let until = tokio::time::Instant::now() + ACK_TIMEOUT;
    loop {
        let Ok(next) = tokio::time::timeout_at(until, ws.next()).await else {
            return Ok(None);
        };
        let Some(Ok(WsMessage::Text(t))) = next else {
            if next.is_none() || matches!(next, Some(Err(_))) {
                return Err("the socket closed".into());
            }
            continue;
        };
        let f: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
        if f.get("message")
            .is_some_and(|m| m == "Internal server error")
        {
            counters.gateway_errors.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        if matches(&f) {
            return Ok(Some(f));
        }
    }
}

/// Uploads `body` with a ticket's POST form (what `wx.uploadFile` sends); the HTTP status, or
/// 0 when nothing answered.
async fn post_form(http: &reqwest::Client, ticket: &Value, body: Vec<u8>) -> u16 {
    let mut form = reqwest::multipart::Form::new();
    if let Some(fields) = ticket["post"]["fields"].as_object() {
        for (k, v) in fields {
            form = form.text(k.clone(), v.as_str().unwrap_or_default().to_owned());
        }
    }
    let part = reqwest::multipart::Part::bytes(body)
        .file_name("photo.png")
        .mime_str("image/png")
        .expect("a valid mime type");
    let url = ticket["post"]["url"].as_str().unwrap_or_default();
    match http
        .post(url)
        .multipart(form.part("file", part))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// One pair of the media phase: Ann sends `n` images to Bob one after the other, each as a
/// mini-program does (ticket, POST upload, send naming the key), retrying whatever fails
/// after `RETRY_AFTER`: a failed upload with a new ticket, a refused or unanswered send with
/// the same `client_msg_id`.
async fn run_media_pair(
    stack: &Stack,
    plan: PairPlan<'_>,
    counters: &Counters,
    http: &reqwest::Client,
) -> Res<PairSeen> {
    let PairPlan {
        phase, p, n, until, ..
    } = plan;
    let (ann, bob) = accounts(phase, p);
    let mut a = open(stack, &ann).await?;
    let b = open(stack, &bob).await?;
    let seen = Arc::new(Mutex::new(PairSeen::default()));
    let (stop_tx, bob_reader) = spawn_reader(b, seen.clone());
    let image = devtools::bench::png();
    let retry = |what: &str| {
        counters.error(what);
        tokio::time::sleep(RETRY_AFTER)
    };
    'messages: for i in 0..n {
        if i > 0 {
            // A person picks the next photo: the phase spans the outage instead of finishing
            // before it.
            tokio::time::sleep(MEDIA_PAUSE).await;
        }
        let cmid = format!("{phase}-{p}-{i}");
        // 1. a ticket and an upload that S3 stored
        let mut tries = 0;
        let key = loop {
            tries += 1;
            if Instant::now() >= until || tries > 60 {
                seen.lock().unwrap().gave_up += 1;
                continue 'messages;
            }
            let req_id = format!("r{i}-{tries}");
            let ticket = json!({"action":"upload","req_id":req_id,"chat_type":1,
                                "content_type":"image/png","size":image.len()});
            let t = ask(&mut a, &ticket, counters, |f| {
                f["req_id"] == req_id.as_str()
            })
            .await?;
            let Some(t) = t.filter(|t| t["type"] == "upload") else {
                retry("ticket refused").await;
                continue;
            };
            match post_form(http, &t, image.clone()).await {
                200..=299 => break t["key"].as_str().unwrap_or_default().to_owned(),
                0 => retry("upload: no answer").await,
                status => retry(&format!("upload: HTTP {status}")).await,
            }
        };
        // 2. the send, until it is acknowledged (or known stored: not_delivered)
        let frame = json!({"action":"send","to":bob,"client_msg_id":cmid,"chat_type":1,
                           "chat_content":key});
        for attempt in 0..60 {
            if attempt > 0 {
                seen.lock().unwrap().resent.insert(i);
                counters.resends.fetch_add(1, Ordering::Relaxed);
            }
            let f = ask(&mut a, &frame, counters, |f| {
                f["client_msg_id"] == cmid.as_str()
                    && (f["type"] == "error" || f["message"]["userphone"] == ann.as_str())
            })
            .await?;
            match f {
                Some(f) if f["type"] == "message" => {
                    let id = f["message"]["id"].as_str().unwrap_or_default().to_owned();
                    seen.lock().unwrap().acked.insert(cmid.clone(), id);
                    continue 'messages;
                }
                Some(f) if f["error"] == "not_delivered" => {
                    counters.error("not_delivered");
                    let id = f["id"].as_str().unwrap_or_default().to_owned();
                    seen.lock().unwrap().acked.insert(cmid.clone(), id);
                    continue 'messages;
                }
                Some(f) => retry(f["error"].as_str().unwrap_or("?")).await,
                None => tokio::time::sleep(RETRY_AFTER).await,
            }
            if Instant::now() >= until {
                break;
            }
        }
        seen.lock().unwrap().gave_up += 1;
    }
    Ok(finish_pair(p, a, stop_tx, bob_reader, &seen).await)
}

/// Ends a pair: gives Bob's copies a moment to land, stops his reader, closes Ann's socket and
/// returns what they saw.
async fn finish_pair(
    p: usize,
    mut a: Ws,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    bob_reader: tokio::task::JoinHandle<()>,
    seen: &Mutex<PairSeen>,
) -> PairSeen {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop_tx.send(());
    let _ = bob_reader.await;
    let _ = a.close(None).await;
    let mut out = std::mem::take(&mut *seen.lock().unwrap());
    out.pair = p;
    out
}

/// Bob: reads message frames (the ids he received) until told to stop.
fn spawn_reader(
    b: Ws,
    bob_seen: Arc<Mutex<PairSeen>>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
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
    (stop_tx, bob_reader)
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
    let media = matches!(phase.fault, Fault::S3Stopped);
    let http = reqwest::Client::new();
    if matches!(phase.fault, Fault::PostsFail) {
        stack.gateway.fail_posts_every(5);
    }
    let results = {
        let stack_ref = stack;
        let work = futures::stream::iter(0..phase.pairs)
            .map(|p| {
                let counters = counters.clone();
                let http = http.clone();
                async move {
                    let plan = PairPlan {
                        phase: phase.name,
                        p,
                        n: phase.per_pair,
                        in_flight: phase.in_flight,
                        tripled,
                        until,
                    };
                    if media {
                        run_media_pair(stack_ref, plan, &counters, &http).await
                    } else {
                        run_pair(stack_ref, plan, &counters).await
                    }
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
                    outage(
                        "DynamoDB Local",
                        || stack_ref.stop_dynamodb(),
                        || stack_ref.restart_dynamodb(),
                    )
                    .await
                }
                Fault::S3Stopped => {
                    outage("S3", || stack_ref.stop_s3(), || stack_ref.restart_s3()).await
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
    let mut f = figures(
        stack,
        store,
        phase,
        &seen,
        &counters,
        started,
        crashes_before,
    )
    .await?;
    if media {
        f.notes
            .push(media_objects(stack, store, phase, &seen).await?);
    }
    Ok(f)
}

/// Whether every stored image message's object is in the bucket (no message names a lost
/// upload; no half-written send).
async fn media_objects(
    stack: &Stack,
    store: &DynamoStore,
    phase: &Phase,
    seen: &[PairSeen],
) -> Res<String> {
    let s3 = local_stack::clients::s3(&stack.s3_endpoint().ok_or("the stack has no S3")?);
    let (mut present, mut missing) = (0, 0);
    for s in seen {
        let (ann, bob) = accounts(phase.name, s.pair);
        let page = store
            .latest_through(&Conversation::new(APP, &ann, &bob), "~", 1000)
            .await?;
        for m in &page.messages {
            let head = s3
                .head_object()
                .bucket(&stack.app.buckets[0].name)
                .key(&m.content)
                .send()
                .await;
            if head.is_ok() {
                present += 1;
            } else {
                missing += 1;
            }
        }
    }
    Ok(format!(
        "stored image messages whose object is in the bucket: {present}; whose object is missing: **{missing}**"
    ))
}

/// A dependency's outage: stopped 2 s into the phase, started again 4 s later on the same
/// data. (Both are blocking: they stop and start a process on this worker.)
async fn outage(
    what: &str,
    stop: impl FnOnce(),
    start: impl FnOnce() -> Result<(), devtools::DevError>,
) -> Result<(), devtools::DevError> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(stop);
    eprintln!("[reliability]   {what} stopped");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = tokio::task::block_in_place(start);
    eprintln!("[reliability]   {what} restarted");
    r
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
        notes: Vec::new(),
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
                    "usage: local-reliability [--release] [--quick] [--only PHASE[,PHASE...]] [out-file]"
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
        logs: Logs::Quiet,
        functions_dir: dir.clone(),
        with_s3: true,
        ..devtools::chat::stack_options(SECRET)
    };
    // Load, not abuse: the per-connection rate limit is not what is measured here.
    opts.parameters
        .insert("MaxSendsPerMinute".into(), "100000".into());
    let stack = Stack::start(opts).await?;
    let store = DynamoStore::new(
        dynamo_client(&stack.dynamodb_endpoint()),
        &devtools::chat::tables(&stack).messages,
        &devtools::chat::tables(&stack).connections,
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
        Phase {
            name: "s3-stopped",
            what: "image sends (ticket, POST upload, send); S3 stopped 2 s in, restarted 4 s later",
            pairs: scale(10),
            per_pair: 30,
            in_flight: 1,
            fault: Fault::S3Stopped,
            deadline: Duration::from_secs(120),
        },
    ];
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == name))
    };
    let rss_start = rss_mb();
    let mut all = Vec::new();
    let progress = |f: &Figures| {
        eprintln!(
            "[reliability]   sent {} stored {} duplicated {} delivered {} missing {} order violations {} ({:.1} s)",
            f.sent, f.stored, f.duplicated, f.delivered, f.missing, f.order_violations,
            f.elapsed.as_secs_f64()
        );
        for n in &f.notes {
            eprintln!("[reliability]   {n}");
        }
    };
    for phase in phases.iter().filter(|p| wanted(p.name)) {
        let f = run_phase(&stack, &store, phase).await?;
        progress(&f);
        all.push(f);
    }
    drop(stack);
    if wanted("soak") {
        let f = run_soak(&dir, quick).await?;
        progress(&f);
        all.push(f);
    }
    let report = render(&all, release, quick, rss_start, &dir);
    std::fs::write(&out, &report)?;
    println!("{report}");
    eprintln!("[reliability] wrote {}", out.display());
    Ok(())
}

// ------------------------------------------------------------------------------- soak

/// The soak's limits, shortened from API Gateway's 10 minutes idle and 2 hours of life and the
/// record's 7,500 s (`ConnectionTtlSeconds`) to seconds, keeping their order: a live connection
/// is never older than its record's lifetime.
const SOAK_IDLE: Duration = Duration::from_secs(2);
const SOAK_LIFETIME: Duration = Duration::from_secs(6);
const SOAK_TTL_SECS: i64 = 8;
const SOAK_SEND_EVERY: Duration = Duration::from_millis(400);

/// How a session of a soak client ends; clients go through them in turn.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Keeps the connection busy until the gateway closes it at its maximum lifetime.
    LivesOut,
    /// Goes quiet after a second; the gateway closes it for idleness.
    GoesQuiet,
    /// Vanishes after two seconds without a close frame: no `$disconnect` (the gateway of the
    /// soak drops it, as AWS may), so its record stays until it expires.
    Vanishes,
}

const ENDINGS: [Ending; 3] = [Ending::LivesOut, Ending::GoesQuiet, Ending::Vanishes];

/// One soak session of `user` (Ann when `to_send` is given): opens, behaves as `ending` says
/// and returns when the connection is over. Ann resends everything unacknowledged when she
/// opens, then sends the next message every `SOAK_SEND_EVERY`; Bob asks for the latest page
/// when he opens (as the mini-program does after every reconnect) and reads.
async fn soak_session(
    stack: &Stack,
    user: &str,
    peer: &str,
    ending: Ending,
    mut to_send: Option<&mut SoakSender>,
    seen: &Mutex<PairSeen>,
    counters: &Counters,
) -> Res<()> {
    let mut ws = open(stack, user).await?;
    let opened = Instant::now();
    let frame = |cmid: &str, i: usize| {
        json!({"action":"send","to":peer,"client_msg_id":cmid,"chat_type":0,
               "chat_content":format!("soak message {i}")})
        .to_string()
    };
    match to_send.as_deref_mut() {
        Some(sender) => {
            for (cmid, i) in sender.pending.clone() {
                ws.send(WsMessage::Text(frame(&cmid, i).into())).await?;
                counters.frames_sent.fetch_add(1, Ordering::Relaxed);
                counters.resends.fetch_add(1, Ordering::Relaxed);
                seen.lock().unwrap().resent.insert(i);
            }
        }
        None => {
            let sync = json!({"action":"sync","to":peer,"limit":100}).to_string();
            ws.send(WsMessage::Text(sync.into())).await?;
        }
    }
    let mut tick = tokio::time::interval(SOAK_SEND_EVERY);
    loop {
        let age = opened.elapsed();
        let quiet = matches!(ending, Ending::GoesQuiet) && age >= Duration::from_secs(1);
        if matches!(ending, Ending::Vanishes) && age >= Duration::from_secs(2) {
            drop(ws); // no close frame: the TCP connection just ends
            return Ok(());
        }
        tokio::select! {
            _ = tick.tick() => {
                if quiet {
                    continue;
                }
                let next = to_send.as_deref_mut().and_then(SoakSender::next);
                let text = match &next {
                    Some((i, cmid)) => frame(cmid, *i),
                    None => json!({"action":"ping"}).to_string(),
                };
                if ws.send(WsMessage::Text(text.into())).await.is_err() {
                    return Ok(());
                }
                counters.frames_sent.fetch_add(u64::from(next.is_some()), Ordering::Relaxed);
            }
            m = ws.next() => {
                let Some(Ok(m)) = m else { return Ok(()) };
                let WsMessage::Text(t) = m else {
                    if matches!(m, WsMessage::Close(_)) {
                        return Ok(());
                    }
                    continue;
                };
                let f: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                let ids = |f: &Value| -> Vec<String> {
                    let mut ids: Vec<String> = f["data"].as_array().map(|rows| {
                        rows.iter().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect()
                    }).unwrap_or_default();
                    ids.extend(f["message"]["id"].as_str().map(str::to_owned));
                    ids
                };
                match to_send.as_deref_mut() {
                    Some(sender) => {
                        let cmid = f["client_msg_id"].as_str().unwrap_or_default();
                        let stored = (f["type"] == "message" && f["message"]["userphone"] == user)
                            .then(|| f["message"]["id"].as_str())
                            .or_else(|| (f["error"] == "not_delivered").then(|| f["id"].as_str()))
                            .flatten();
                        if let Some(id) = stored {
                            if sender.pending.remove(cmid).is_some() {
                                seen.lock().unwrap().acked.insert(cmid.to_owned(), id.to_owned());
                            }
                        } else if f["type"] == "error" {
                            counters.error(f["error"].as_str().unwrap_or("?"));
                        }
                    }
                    None => {
                        if f["type"] == "message" || f["type"] == "history" {
                            seen.lock().unwrap().bob_got.extend(ids(&f));
                        }
                    }
                }
            }
        }
    }
}

/// Ann's messages: the next to send and those sent but not acknowledged (client_msg_id →
/// index, resent on every new connection).
struct SoakSender {
    prefix: String,
    next: usize,
    n: usize,
    pending: BTreeMap<String, usize>,
}

impl SoakSender {
    fn next(&mut self) -> Option<(usize, String)> {
        (self.next < self.n).then(|| {
            let i = self.next;
            self.next += 1;
            let cmid = format!("{}-{i}", self.prefix);
            self.pending.insert(cmid.clone(), i);
            (i, cmid)
        })
    }
}

/// One soak pair: Ann sends `n` messages to Bob; both go through sessions ending every way
/// in turn until Ann's messages are all acknowledged or `until`; Bob then syncs once more.
async fn soak_pair(
    stack: &Stack,
    p: usize,
    n: usize,
    until: Instant,
    counters: &Counters,
) -> Res<PairSeen> {
    let (ann, bob) = accounts("soak", p);
    let seen = Mutex::new(PairSeen::default());
    let mut sender = SoakSender {
        prefix: format!("soak-{p}"),
        next: 0,
        n,
        pending: BTreeMap::new(),
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let ann_side = async {
        let mut c = p; // pairs start at different points of the cycle
        while (sender.next < n || !sender.pending.is_empty()) && Instant::now() < until {
            let ending = ENDINGS[c % 3];
            c += 1;
            soak_session(
                stack,
                &ann,
                &bob,
                ending,
                Some(&mut sender),
                &seen,
                counters,
            )
            .await?;
        }
        seen.lock().unwrap().gave_up += sender.pending.len() + (n - sender.next);
        done.store(true, Ordering::SeqCst);
        Res::Ok(())
    };
    let bob_side = async {
        let mut c = p + 1;
        while !done.load(Ordering::SeqCst) {
            let ending = ENDINGS[c % 3];
            c += 1;
            soak_session(stack, &bob, &ann, ending, None, &seen, counters).await?;
        }
        // What a client sees when it comes back: the latest page.
        soak_session(stack, &bob, &ann, Ending::GoesQuiet, None, &seen, counters).await
    };
    let (a, b) = futures::join!(ann_side, bob_side);
    a?;
    b?;
    let mut out = seen.into_inner().unwrap();
    out.pair = p;
    Ok(out)
}

/// The soak: its own stack with the limits shortened to seconds, pairs chatting through
/// connections that end every way, then an audit of what the gateway was asked to post and of
/// the connection records left behind.
async fn run_soak(dir: &std::path::Path, quick: bool) -> Res<Figures> {
    let mut opts = StackOptions {
        logs: Logs::Quiet,
        functions_dir: dir.to_owned(),
        with_s3: false,
        ..devtools::chat::stack_options(SECRET)
    };
    opts.gateway.limits = local_stack::apigw::Limits {
        idle_timeout: SOAK_IDLE,
        max_lifetime: SOAK_LIFETIME,
        ..Default::default()
    };
    opts.gateway.disconnect_on_abrupt_close = false;
    opts.parameters
        .insert("MaxSendsPerMinute".into(), "100000".into());
    opts.env
        .insert("CONNECTION_TTL_SECONDS".into(), SOAK_TTL_SECS.to_string());
    // Only expiry, not a 410, may end a vanished connection's record here.
    opts.env.insert("GONE_GRACE_SECONDS".into(), "600".into());
    let stack = Stack::start(opts).await?;
    let store = DynamoStore::new(
        dynamo_client(&stack.dynamodb_endpoint()),
        &devtools::chat::tables(&stack).messages,
        &devtools::chat::tables(&stack).connections,
    );
    let phase = Phase {
        name: "soak",
        what: "idle 2 s, lifetime 6 s, records live 8 s; every session ends by lifetime, idleness or vanishing (no $disconnect) in turn",
        pairs: if quick { 3 } else { 10 },
        per_pair: if quick { 40 } else { 90 },
        in_flight: 0,
        fault: Fault::None,
        deadline: Duration::from_secs(if quick { 90 } else { 150 }),
    };
    eprintln!(
        "[reliability] {}: {} pairs × {} messages ({})",
        phase.name, phase.pairs, phase.per_pair, phase.what
    );
    let started = Instant::now();
    let until = started + phase.deadline;
    let counters = Counters::default();
    let crashes_before = stack.invoker().crashes();
    let results = futures::future::join_all(
        (0..phase.pairs).map(|p| soak_pair(&stack, p, phase.per_pair, until, &counters)),
    )
    .await;
    let mut seen = Vec::new();
    for r in results {
        seen.push(r?);
    }
    let mut f = figures(
        &stack,
        &store,
        &phase,
        &seen,
        &counters,
        started,
        crashes_before,
    )
    .await?;
    // Every record has expired once its lifetime has passed since the last connection ended.
    tokio::time::sleep(Duration::from_secs(SOAK_TTL_SECS as u64 + 2)).await;
    let ended = stack.gateway.ended_connections();
    let gone = stack.gateway.gone_posts();
    let ttl_ms = SOAK_TTL_SECS * 1000;
    let after_expiry = gone
        .iter()
        .filter(|g| g.connected_at_ms.is_none_or(|c| g.at_ms > c + ttl_ms))
        .count();
    let oldest = gone
        .iter()
        .filter_map(|g| Some(g.at_ms - g.connected_at_ms?))
        .max()
        .unwrap_or(0);
    let by_code = |code: u16| ended.iter().filter(|e| e.code == code).count();
    let vanished = ended.iter().filter(|e| !e.disconnect_sent).count();
    let client = dynamo_client(&stack.dynamodb_endpoint());
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let (mut deleted, mut expired, mut live) = (0, 0, 0);
    for e in &ended {
        let item = client
            .get_item()
            .table_name(&devtools::chat::tables(&stack).connections)
            .key(
                "connection_id",
                aws_sdk_dynamodb::types::AttributeValue::S(e.id.clone()),
            )
            .consistent_read(true)
            .send()
            .await?;
        match item
            .item()
            .and_then(|i| i.get("expires_at")?.as_n().ok()?.parse::<i64>().ok())
        {
            None if item.item().is_none() => deleted += 1,
            Some(exp) if exp <= now_s => expired += 1,
            _ => live += 1,
        }
    }
    f.notes = vec![
        format!(
            "{} connections ended: {} closed by the gateway (1001: idle or lifetime), {} vanished without $disconnect, {} others",
            ended.len(),
            by_code(1001),
            vanished,
            ended.len() - by_code(1001) - vanished
        ),
        format!(
            "posts to gone connections (410): {}; to a connection whose record had expired (older than {SOAK_TTL_SECS} s): **{after_expiry}**; the oldest gone connection posted to was {:.1} s old",
            gone.len(),
            oldest as f64 / 1000.0
        ),
        format!(
            "records of the ended connections {SOAK_TTL_SECS} s after the last ended: {deleted} deleted by $disconnect, {expired} expired (left to the table's TTL, ignored by every read), **{live} still live**"
        ),
    ];
    drop(stack);
    Ok(f)
}

fn dynamo_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    local_stack::clients::dynamodb(endpoint)
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
        local_stack::runtime::MAX_INSTANCES,
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
    for f in all.iter().filter(|f| !f.notes.is_empty()) {
        s.push_str(&format!("\n`{}`:\n", f.name));
        for n in &f.notes {
            s.push_str(&format!("- {n}\n"));
        }
    }
    let peak = all.iter().map(|f| f.rss_mb_after).max().unwrap_or(0);
    s.push_str(&format!(
        "\nMemory of the process running the gateway, the runtime and the clients: {rss_start} MB at the start, at most {peak} MB after a phase.\n"
    ));
    s
}
