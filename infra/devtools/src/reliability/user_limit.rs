//! The per-user limit phase, on a stack of its own with a low `MaxSendsPerMinute`: one user on
//! 10 connections, each sending to a peer of its own at once, refused sends tried again as the
//! mini-program does. Then, from DynamoDB: every message stored once (the usual audit) and no
//! calendar minute holding more of the user's messages than the limit, whichever connections
//! they came from.

use super::client::accounts;
use super::phases::run_phase;
use super::{Fault, Figures, Phase, Res, APP, SECRET};
use local_stack::runtime::Logs;
use local_stack::stack::{Stack, StackOptions};
use shared::adapters::dynamo::DynamoStore;
use shared::domain::ids::Conversation;
use shared::ports::MessageStore;
use std::collections::BTreeMap;
use std::time::Duration;

/// The phase's name; [`accounts`] gives all its pairs the same sender.
pub(super) const ONE_USER: &str = "one-user-limit";
const CONNECTIONS: usize = 10;

pub(super) async fn run_user_limit(dir: &std::path::Path, quick: bool) -> Res<Figures> {
    let limit: u64 = if quick { 15 } else { 20 };
    let mut opts = StackOptions {
        logs: Logs::Quiet,
        functions_dir: dir.to_owned(),
        with_s3: false,
        ..crate::chat::stack_options(SECRET)
    };
    opts.parameters
        .insert("MaxSendsPerMinute".into(), limit.to_string());
    let stack = Stack::start(opts).await?;
    let store = DynamoStore::new(
        local_stack::clients::dynamodb(&stack.dynamodb_endpoint()),
        &crate::chat::tables(&stack).messages,
        &crate::chat::tables(&stack).connections,
    );
    let what = if quick {
        "one user on 10 connections, each to a peer of its own, MaxSendsPerMinute=15"
    } else {
        "one user on 10 connections, each to a peer of its own, MaxSendsPerMinute=20"
    };
    let phase = Phase {
        name: ONE_USER,
        what,
        pairs: CONNECTIONS,
        // 2 to 3 minutes' worth of the limit: the refused ones must wait for the next minute
        per_pair: if quick { 3 } else { 5 },
        in_flight: 1,
        fault: Fault::None,
        deadline: Duration::from_secs(if quick { 150 } else { 240 }),
    };
    let mut f = run_phase(&stack, &store, &phase).await?;
    f.notes.push(per_minute(&store, limit).await?);
    drop(stack);
    Ok(f)
}

/// The user's stored messages per calendar minute of their `created_at`, over all the
/// phase's conversations, and whether the limit held.
async fn per_minute(store: &DynamoStore, limit: u64) -> Res<String> {
    let mut minutes: BTreeMap<i64, u64> = BTreeMap::new();
    for p in 0..CONNECTIONS {
        let (ann, bob) = accounts(ONE_USER, p);
        let page = store
            .latest_through(&Conversation::new(APP, &ann, &bob), "~", 1000)
            .await?;
        for m in page.messages.iter().filter(|m| m.sender == ann) {
            *minutes
                .entry(m.created_at_ms.div_euclid(60_000))
                .or_default() += 1;
        }
    }
    let counts: Vec<String> = minutes.values().map(u64::to_string).collect();
    let busiest = minutes.values().max().copied().unwrap_or(0);
    let verdict = match busiest <= limit {
        true => "the limit held across connections".to_owned(),
        false => format!("**the limit was broken: {busiest} in one minute**"),
    };
    Ok(format!(
        "the user's stored messages per calendar minute: {} (limit {limit}); {verdict}",
        counts.join(", ")
    ))
}
