//! The load and fault phases: pairs of user connections (Ann sends to Bob), faults injected
//! beside them.

use super::audit::figures;
use super::client::{accounts, ask, open, open_peer, post_form};
use super::peer::{spawn_peer, PeerKind, QUIET};
use super::{
    Counters, Fault, Figures, PairSeen, Phase, Res, ACK_TIMEOUT, APP, MEDIA_PAUSE,
    RATE_LIMITED_RETRY_AFTER, RETRY_AFTER,
};
use crate::ws_client::{ChatSocket, Read};
use futures::StreamExt;
use local_stack::stack::Stack;
use serde_json::json;
use shared::adapters::dynamo::DynamoStore;
use shared::domain::ids::Conversation;
use shared::ports::MessageStore;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How one pair behaves in a phase.
pub(super) struct PairPlan<'a> {
    pub(super) phase: &'a str,
    pub(super) p: usize,
    pub(super) n: usize,
    pub(super) in_flight: usize,
    pub(super) tripled: bool,
    pub(super) until: Instant,
}

/// One pair: Ann sends `n` messages to Bob, `in_flight` at a time, resending what is not
/// acknowledged; Bob reads. Returns what they saw.
pub(super) async fn run_pair(
    stack: &Stack,
    plan: PairPlan<'_>,
    counters: &Counters,
) -> Res<PairSeen> {
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
    let kind = PeerKind::of_pair(p);
    let b = open_peer(stack, kind, &bob, &ann).await?;
    let seen = Arc::new(Mutex::new(PairSeen::default()));
    let (stop_tx, bob_reader) = spawn_peer(b, kind, ann.clone(), seen.clone());
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
                a.send_text(&text).await?;
                counters.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
            pending.insert(cmid(next), (next, Instant::now(), 1));
            if tripled {
                seen.lock().unwrap().resent.insert(next);
            }
            next += 1;
        }
        match a.read(Duration::from_millis(250)).await {
            Read::Frame(f) => {
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
                        // retry soon (a refused rate: once the minute may have turned, as the
                        // mini-program does): make it look overdue after that
                        let after = match code.as_str() {
                            "rate_limited" => RATE_LIMITED_RETRY_AFTER,
                            _ => RETRY_AFTER,
                        };
                        e.1 = Instant::now() - ACK_TIMEOUT + after;
                    }
                } else if f
                    .get("message")
                    .is_some_and(|m| m == "Internal server error")
                {
                    counters.gateway_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Read::Quiet => {}
            Read::Ended(_) => {
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
            a.send_text(&frame(i)).await?;
            counters.frames_sent.fetch_add(1, Ordering::Relaxed);
            counters.resends.fetch_add(1, Ordering::Relaxed);
            seen.lock().unwrap().resent.insert(i);
            pending.insert(k, (i, Instant::now(), tries + 1));
        }
    }
    Ok(finish_pair(p, a, stop_tx, bob_reader, &seen).await)
}

/// One pair of the media phase: Ann sends `n` images to Bob one after the other, each as a
/// mini-program does (ticket, POST upload, send naming the key), retrying whatever fails
/// after `RETRY_AFTER`: a failed upload with a new ticket, a refused or unanswered send with
/// the same `client_msg_id`.
pub(super) async fn run_media_pair(
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
    let kind = PeerKind::of_pair(p);
    let b = open_peer(stack, kind, &bob, &ann).await?;
    let seen = Arc::new(Mutex::new(PairSeen::default()));
    let (stop_tx, bob_reader) = spawn_peer(b, kind, ann.clone(), seen.clone());
    let image = crate::bench::png();
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

/// Ends a pair: waits the quiet period for Bob's copies and his gap handling, stops him (he
/// catches up once more), closes Ann's socket and returns what they saw.
pub(super) async fn finish_pair(
    p: usize,
    mut a: ChatSocket,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    bob_reader: tokio::task::JoinHandle<()>,
    seen: &Mutex<PairSeen>,
) -> PairSeen {
    tokio::time::sleep(QUIET).await;
    let _ = stop_tx.send(());
    let _ = bob_reader.await;
    a.close().await;
    let mut out = std::mem::take(&mut *seen.lock().unwrap());
    out.pair = p;
    out
}

pub(super) async fn run_phase(stack: &Stack, store: &DynamoStore, phase: &Phase) -> Res<Figures> {
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
pub(super) async fn media_objects(
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
pub(super) async fn outage(
    what: &str,
    stop: impl FnOnce(),
    start: impl FnOnce() -> Result<(), crate::DevError>,
) -> Result<(), crate::DevError> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(stop);
    eprintln!("[reliability]   {what} stopped");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = tokio::task::block_in_place(start);
    eprintln!("[reliability]   {what} restarted");
    r
}
