//! What a run left behind, checked: every message stored exactly once and delivered, each
//! sender's order, and after the soak, posts to expired connections and records still live.

use super::client::accounts;
use super::peer::PeerKind;
use super::{rss_mb, Counters, Figures, PairSeen, Phase, Res, APP};
use local_stack::stack::Stack;
use shared::adapters::dynamo::DynamoStore;
use shared::domain::ids::Conversation;
use shared::ports::MessageStore;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(super) async fn figures(
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
        to_users: Default::default(),
        to_conversations: Default::default(),
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
        // An acknowledged send that is not stored: what DynamoDB holds of it, read strongly
        // consistently (its row by the acknowledged id, its idempotency marker).
        let conversation = Conversation::new(APP, &ann, &bob);
        for (cmid, id) in &s.acked {
            if !by_cmid.contains_key(cmid) {
                let got = s.bob_got.contains(id);
                f.notes
                    .push(lost_note(stack, store, &conversation, &ann, cmid, id, got).await?);
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
        let count = |sets: &[&HashSet<String>]| {
            stored_ids
                .iter()
                .filter(|id| sets.iter().any(|s| s.contains(**id)))
                .count()
        };
        let d = match s.peer_kind {
            PeerKind::User => &mut f.to_users,
            PeerKind::Conversation => &mut f.to_conversations,
        };
        d.stored += stored_ids.len();
        d.in_frames += count(&[&s.bob_got]);
        d.after_gaps += count(&[&s.bob_got, &s.bob_fetched]);
        d.after_catch_up += count(&[&s.bob_got, &s.bob_fetched, &s.bob_caught_up]);
    }
    Ok(f)
}

/// After the soak, once every record has had time to expire (`ttl_secs`): how the
/// connections ended, whether any post went to a connection whose record had expired, and
/// which records are left.
pub(super) async fn soak_notes(stack: &Stack, ttl_secs: i64) -> Res<Vec<String>> {
    let ended = stack.gateway.ended_connections();
    let gone = stack.gateway.gone_posts();
    let ttl_ms = ttl_secs * 1000;
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
    let client = local_stack::clients::dynamodb(&stack.dynamodb_endpoint());
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let (mut deleted, mut expired, mut live) = (0, 0, 0);
    for e in &ended {
        let item = client
            .get_item()
            .table_name(&crate::chat::tables(stack).connections)
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
    Ok(vec![
        format!(
            "{} connections ended: {} closed by the gateway (1001: idle or lifetime), {} vanished without $disconnect, {} others",
            ended.len(),
            by_code(1001),
            vanished,
            ended.len() - by_code(1001) - vanished
        ),
        format!(
            "posts to gone connections (410): {}; to a connection whose record had expired (older than {ttl_secs} s): **{after_expiry}**; the oldest gone connection posted to was {:.1} s old",
            gone.len(),
            oldest as f64 / 1000.0
        ),
        format!(
            "records of the ended connections {ttl_secs} s after the last ended: {deleted} deleted by $disconnect, {expired} expired (left to the table's TTL, ignored by every read), **{live} still live**"
        ),
    ])
}

/// What is left of an acknowledged message that the audit did not find stored.
async fn lost_note(
    stack: &Stack,
    store: &DynamoStore,
    conversation: &Conversation,
    sender: &str,
    client_msg_id: &str,
    id: &str,
    bob_got: bool,
) -> Res<String> {
    let row = store
        .snapshot(conversation, sender, Some(id))
        .await?
        .message
        .is_some();
    let marker = local_stack::clients::dynamodb(&stack.dynamodb_endpoint())
        .get_item()
        .table_name(&crate::chat::tables(stack).messages)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!(
                "d#{}#{sender}#{client_msg_id}",
                conversation.key()
            )),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("d".into()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .is_some();
    let yes = |b: bool| if b { "present" } else { "absent" };
    Ok(format!(
        "**acknowledged but not stored**: `{client_msg_id}` (id `{id}`): row {}, idempotency marker {}, the peer {} it",
        yes(row),
        yes(marker),
        if bob_got { "received" } else { "did not receive" }
    ))
}
