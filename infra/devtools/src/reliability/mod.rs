//! Load and fault runs through the local stack (`local-reliability [--release] [--quick]
//! [out-file]`, default docs/reliability-figures.md; `make reliability`): [`client`] (a
//! client as `clients/miniprogram` behaves), [`phases`] (the load and fault phases), [`soak`],
//! [`audit`] (what was stored and delivered), [`report`]. Loopback only,
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
//! posted to), and `one-user-limit`, on a stack of its own with `MaxSendsPerMinute` at 20: one
//! user sending over 10 connections at once, every message stored once and no calendar minute
//! over the limit. `--only load,soak` runs some of them.

mod audit;
mod client;
mod peer;
mod phases;
mod report;
mod soak;
mod user_limit;

use local_stack::runtime::Logs;
use local_stack::stack::{Stack, StackOptions};
use shared::adapters::dynamo::DynamoStore;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

pub(super) const SECRET: &str = "reliability-secret-reliability-secret";
pub(super) const APP: &str = "rel";
/// The whole run stops after this, finished or not.
pub const RUN_DEADLINE: Duration = Duration::from_secs(20 * 60);
/// A send not acknowledged after this is sent again (same client_msg_id), as the
/// mini-program client does (`ackTimeoutMs`). Shorter floods an overloaded stack with resends,
/// each a full invocation: a first run with 4 s stored a fifth of the load in 10 minutes.
pub(super) const ACK_TIMEOUT: Duration = Duration::from_secs(15);
/// Between two image sends of one pair in the media phase.
pub(super) const MEDIA_PAUSE: Duration = Duration::from_millis(300);
/// After an error frame, the client waits this long before sending again.
pub(super) const RETRY_AFTER: Duration = Duration::from_millis(700);
/// After `rate_limited`, as `clients/miniprogram` does (`rateLimitedRetryMs`).
pub(super) const RATE_LIMITED_RETRY_AFTER: Duration = Duration::from_secs(20);

pub(super) type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Clone, Copy)]
pub(super) enum Fault {
    None,
    DynamoRestart,
    PostsFail,
    FunctionKilled,
    SendsTripled,
    /// Image sends (ticket, upload, send) while the local S3 is stopped and started again.
    S3Stopped,
}

pub(super) struct Phase {
    pub(super) name: &'static str,
    pub(super) what: &'static str,
    pub(super) pairs: usize,
    pub(super) per_pair: usize,
    pub(super) in_flight: usize,
    pub(super) fault: Fault,
    pub(super) deadline: Duration,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) frames_sent: AtomicU64,
    pub(super) resends: AtomicU64,
    pub(super) errors: Mutex<BTreeMap<String, u64>>,
    pub(super) gateway_errors: AtomicU64,
}

impl Counters {
    fn error(&self, code: &str) {
        *self.errors.lock().unwrap().entry(code.into()).or_default() += 1;
    }
}

/// What one pair saw.
#[derive(Default)]
pub(super) struct PairSeen {
    /// Which pair (results come back in the order pairs finish).
    pub(super) pair: usize,
    /// client_msg_id → message id, from Ann's acknowledgements.
    pub(super) acked: HashMap<String, String>,
    /// The kind of connection Bob held.
    pub(super) peer_kind: peer::PeerKind,
    /// Message ids Bob received in frames the server sent him unasked.
    pub(super) bob_got: HashSet<String>,
    /// Ids that only his gap fetches brought (user connections, as `chat.js`).
    pub(super) bob_fetched: HashSet<String>,
    /// Ids that only his catch-up after the quiet period brought.
    pub(super) bob_caught_up: HashSet<String>,
    /// Indexes of the messages whose frame went out more than once (resent or tripled):
    /// their stored arrival is whichever attempt stored them, so they are left out of the
    /// order check.
    pub(super) resent: HashSet<usize>,
    pub(super) gave_up: usize,
}

pub(super) struct Figures {
    pub(super) name: &'static str,
    pub(super) what: &'static str,
    pub(super) connections: usize,
    pub(super) sent: usize,
    pub(super) stored: usize,
    pub(super) duplicated: usize,
    pub(super) acked: usize,
    /// Delivery to Bob's user connections, and to his conversation connections.
    pub(super) to_users: Delivery,
    pub(super) to_conversations: Delivery,
    pub(super) missing: usize,
    pub(super) order_violations: usize,
    pub(super) frames_sent: u64,
    pub(super) resends: u64,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) gateway_errors: u64,
    pub(super) crashes: u64,
    pub(super) elapsed: Duration,
    pub(super) rss_mb_after: u64,
    /// Figures particular to the phase, printed under the table.
    pub(super) notes: Vec<String>,
}

/// Messages stored in the conversations of one kind of peer connection, and how many reached
/// the peer: in frames the server sent, after the gap fetches, after the last catch-up.
#[derive(Default, Clone, Copy)]
pub(super) struct Delivery {
    pub(super) stored: usize,
    pub(super) in_frames: usize,
    pub(super) after_gaps: usize,
    pub(super) after_catch_up: usize,
}

impl Delivery {
    /// `in frames / after gaps / after catch-up / stored` (user connections) or `in frames /
    /// stored`, or "–" when no pair had this kind.
    pub(super) fn cell(&self, gap_handling: bool) -> String {
        match (self.stored, gap_handling) {
            (0, _) => "–".into(),
            (_, true) => format!(
                "{} / {} / {} / {}",
                self.in_frames, self.after_gaps, self.after_catch_up, self.stored
            ),
            (_, false) => format!("{} / {}", self.in_frames, self.stored),
        }
    }
}

pub(super) fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Runs the phases `only` names (all without it), then writes the figures to `out`.
pub async fn run(
    release: bool,
    quick: bool,
    only: Option<String>,
    out: std::path::PathBuf,
) -> Res<()> {
    let dir = crate::repo_root().join(if release {
        "target/release"
    } else {
        "target/debug"
    });
    let mut opts = StackOptions {
        logs: Logs::Quiet,
        functions_dir: dir.clone(),
        with_s3: true,
        ..crate::chat::stack_options(SECRET)
    };
    // Load, not abuse: the per-user rate limits are not what is measured here (but in
    // `one-user-limit`).
    for limit in [
        "MaxSendsPerMinute",
        "MaxUploadsPerMinute",
        "MaxRecallsPerMinute",
    ] {
        opts.parameters.insert(limit.into(), "10000".into());
    }
    let stack = Stack::start(opts).await?;
    let store = DynamoStore::new(
        local_stack::clients::dynamodb(&stack.dynamodb_endpoint()),
        &crate::chat::tables(&stack).messages,
        &crate::chat::tables(&stack).connections,
    );
    let phases = phase_list(quick);
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == name))
    };
    let rss_start = rss_mb();
    let mut all = Vec::new();
    let progress = |f: &Figures| {
        eprintln!(
            "[reliability]   sent {} stored {} duplicated {} delivered to user connections {} (frames / after gaps / after catch-up / stored), to conversation connections {} (frames / stored) missing {} order violations {} ({:.1} s)",
            f.sent, f.stored, f.duplicated, f.to_users.cell(true), f.to_conversations.cell(false),
            f.missing, f.order_violations,
            f.elapsed.as_secs_f64()
        );
        for n in &f.notes {
            eprintln!("[reliability]   {n}");
        }
    };
    for phase in phases.iter().filter(|p| wanted(p.name)) {
        let f = phases::run_phase(&stack, &store, phase).await?;
        progress(&f);
        all.push(f);
    }
    drop(stack);
    if wanted(user_limit::ONE_USER) {
        let f = user_limit::run_user_limit(&dir, quick).await?;
        progress(&f);
        all.push(f);
    }
    if wanted("soak") {
        let f = soak::run_soak(&dir, quick).await?;
        progress(&f);
        all.push(f);
    }
    let report = report::render(&all, release, quick, rss_start, &dir);
    std::fs::write(&out, &report)?;
    println!("{report}");
    eprintln!("[reliability] wrote {}", out.display());
    Ok(())
}

/// The load and fault phases, smaller with `quick`.
fn phase_list(quick: bool) -> [Phase; 6] {
    let scale = |n: usize| if quick { (n / 10).max(2) } else { n };
    [
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
            what: "DynamoDB Local stopped 2 s in, restarted 4 s later",
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
    ]
}
