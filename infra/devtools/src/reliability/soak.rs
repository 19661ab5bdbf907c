//! The soak: a stack of its own with the limits shortened to seconds, pairs chatting through
//! connections that end every way, then an audit of what the gateway was asked to post and of
//! the connection records left behind.

use super::audit::{figures, soak_notes};
use super::client::{accounts, open};
use super::{Counters, Fault, Figures, PairSeen, Phase, Res, SECRET};
use crate::ws_client::Read;
use local_stack::runtime::Logs;
use local_stack::stack::{Stack, StackOptions};
use serde_json::{json, Value};
use shared::adapters::dynamo::DynamoStore;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The soak's limits, shortened from API Gateway's 10 minutes idle and 2 hours of life and the
/// record's 7,500 s (`ConnectionTtlSeconds`) to seconds, keeping their order: a live connection
/// is never older than its record's lifetime.
const SOAK_IDLE: Duration = Duration::from_secs(2);
const SOAK_LIFETIME: Duration = Duration::from_secs(6);
const SOAK_TTL_SECS: i64 = 8;
const SOAK_SEND_EVERY: Duration = Duration::from_millis(400);

/// How a session of a soak client ends; clients go through them in turn.
#[derive(Clone, Copy, Debug)]
pub(super) enum Ending {
    /// Keeps the connection busy until the gateway closes it at its maximum lifetime.
    LivesOut,
    /// Goes quiet after a second; the gateway closes it for idleness.
    GoesQuiet,
    /// Vanishes after two seconds without a close frame: no `$disconnect` (the gateway of the
    /// soak drops it, as AWS may), so its record stays until it expires.
    Vanishes,
}

pub(super) const ENDINGS: [Ending; 3] = [Ending::LivesOut, Ending::GoesQuiet, Ending::Vanishes];

/// One soak session of `user` (Ann when `to_send` is given): opens, behaves as `ending` says
/// and returns when the connection is over. Ann resends everything unacknowledged when she
/// opens, then sends the next message every `SOAK_SEND_EVERY`; Bob asks for the latest page
/// when he opens (as the mini-program does after every reconnect) and reads.
pub(super) async fn soak_session(
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
                ws.send_text(&frame(&cmid, i)).await?;
                counters.frames_sent.fetch_add(1, Ordering::Relaxed);
                counters.resends.fetch_add(1, Ordering::Relaxed);
                seen.lock().unwrap().resent.insert(i);
            }
        }
        None => {
            let sync = json!({"action":"sync","to":peer,"limit":100}).to_string();
            ws.send_text(&sync).await?;
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
                if ws.send_text(&text).await.is_err() {
                    return Ok(());
                }
                counters.frames_sent.fetch_add(u64::from(next.is_some()), Ordering::Relaxed);
            }
            r = ws.read(Duration::from_secs(3600)) => {
                let f = match r {
                    Read::Frame(f) => f,
                    Read::Quiet => continue,
                    Read::Ended(_) => return Ok(()),
                };
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
pub(super) struct SoakSender {
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
pub(super) async fn soak_pair(
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
pub(super) async fn run_soak(dir: &std::path::Path, quick: bool) -> Res<Figures> {
    let mut opts = StackOptions {
        logs: Logs::Quiet,
        functions_dir: dir.to_owned(),
        with_s3: false,
        ..crate::chat::stack_options(SECRET)
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
        local_stack::clients::dynamodb(&stack.dynamodb_endpoint()),
        &crate::chat::tables(&stack).messages,
        &crate::chat::tables(&stack).connections,
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
    f.notes = soak_notes(&stack, SOAK_TTL_SECS).await?;
    drop(stack);
    Ok(f)
}
