//! Bob, the peer of a pair: on a user connection he handles gaps as `clients/miniprogram/chat.js`
//! does; on a conversation connection (the seed's client) he only reads the pages he is sent.
//!
//! User connection, as `chat.js`: each `message` frame's `seq` is noted; a `seq` more than one
//! past the highest held without a hole opens a gap, and a gap still open after [`GAP_WAIT`]
//! (frames of concurrent sends overtake each other) fetches the latest page (`history`). When
//! the pair is done he waits [`QUIET`] without a frame and catches the conversation up once
//! more, as `chat.js` does after `quietResyncMs` (60 s there, shortened here). What came in
//! frames, what the gap fetches added and what the last catch-up added are kept apart, so the
//! report shows what the server delivered by itself and what the client had to fetch.

use super::PairSeen;
use crate::ws_client::{ChatSocket, Read};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// `chat.js`'s `gapWaitMs`.
pub(super) const GAP_WAIT: Duration = Duration::from_millis(1500);
/// The quiet period after a pair's last acknowledgement before Bob's frames are counted (and,
/// on a user connection, before his last catch-up): `chat.js` waits `quietResyncMs` (60 s)
/// without a frame; the run waits this.
pub(super) const QUIET: Duration = Duration::from_secs(3);
/// The page Bob fetches: the run's conversations hold at most 80 messages, so one page of the
/// largest size holds every one (`chat.js` pages back when a gap is longer than a page).
const PAGE: u64 = 100;

/// The kind of connection Bob holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum PeerKind {
    /// A user connection: `message` frames, and `chat.js`'s gap handling.
    #[default]
    User,
    /// A conversation connection (`friendphone`): `history` frames with the latest page, and
    /// nothing the client could notice a gap with.
    Conversation,
}

impl PeerKind {
    /// Odd pairs hold a conversation connection, even ones a user connection: every phase
    /// measures both.
    pub(super) fn of_pair(p: usize) -> Self {
        if p % 2 == 1 {
            PeerKind::Conversation
        } else {
            PeerKind::User
        }
    }
}

/// `chat.js`'s sequence bookkeeping for one conversation.
#[derive(Default)]
struct Seqs {
    /// Highest `seq` up to which every message was seen (0: the conversation starts empty).
    top: u64,
    /// Numbers seen beyond a hole.
    ahead: BTreeSet<u64>,
}

impl Seqs {
    /// Notes `seq`; whether a hole is open afterwards.
    fn note(&mut self, seq: u64) -> bool {
        if seq > self.top {
            self.ahead.insert(seq);
        }
        while self.ahead.remove(&(self.top + 1)) {
            self.top += 1;
        }
        !self.ahead.is_empty()
    }

    /// After a page that holds every message up to its highest `seq`.
    fn caught_up(&mut self, highest: u64) {
        self.top = self.top.max(highest);
        self.ahead.retain(|s| *s > self.top);
    }
}

fn row_ids(f: &Value) -> impl Iterator<Item = String> + '_ {
    f["data"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(f.get("message"))
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
}

/// Reads Bob's socket until told to stop, then (user connection) catches up once more and
/// closes it.
pub(super) fn spawn_peer(
    b: ChatSocket,
    kind: PeerKind,
    ann: String,
    seen: Arc<Mutex<PairSeen>>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    seen.lock().unwrap().peer_kind = kind;
    let task = tokio::spawn(async move {
        let mut b = b;
        let mut seqs = Seqs::default();
        let mut gap_check: Option<Instant> = None;
        let far = Duration::from_secs(3600);
        let fetch = json!({"action":"history","to":ann,"limit":PAGE});
        loop {
            let gap_at = gap_check.unwrap_or_else(|| Instant::now() + far);
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = tokio::time::sleep_until(gap_at), if gap_check.is_some() => {
                    gap_check = None;
                    if !seqs.ahead.is_empty() && b.send_json(&fetch).await.is_err() {
                        break;
                    }
                }
                r = b.read(far) => match r {
                    Read::Frame(f) => {
                        if seen_frame(&f, kind, &mut seqs, &seen, false) && gap_check.is_none() {
                            gap_check = Some(Instant::now() + GAP_WAIT);
                        }
                    }
                    Read::Quiet => {}
                    Read::Ended(_) => return,
                }
            }
        }
        if kind == PeerKind::User && b.send_json(&fetch).await.is_ok() {
            let until = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let left = until.saturating_duration_since(std::time::Instant::now());
                match b.read(left).await {
                    Read::Frame(f) => {
                        let answer = f["type"] == "history";
                        seen_frame(&f, kind, &mut seqs, &seen, true);
                        if answer {
                            break;
                        }
                    }
                    Read::Quiet | Read::Ended(_) => break,
                }
            }
        }
        b.close().await;
    });
    (stop_tx, task)
}

/// Notes one frame Bob read; whether a `seq` gap is open. On a user connection `history`
/// frames are the answers to his fetches: `last` says whether it is the final catch-up's.
fn seen_frame(
    f: &Value,
    kind: PeerKind,
    seqs: &mut Seqs,
    seen: &Mutex<PairSeen>,
    last: bool,
) -> bool {
    let mut seen = seen.lock().unwrap();
    match (kind, f["type"].as_str()) {
        (PeerKind::Conversation, Some("history")) => {
            seen.bob_got.extend(row_ids(f));
            false
        }
        (PeerKind::User, Some("message")) => {
            seen.bob_got.extend(row_ids(f));
            f["message"]["seq"].as_u64().is_some_and(|s| seqs.note(s))
        }
        (PeerKind::User, Some("history")) => {
            let new: Vec<String> = row_ids(f).filter(|id| !seen.bob_got.contains(id)).collect();
            if last {
                seen.bob_caught_up.extend(new);
            } else {
                seen.bob_fetched.extend(new);
            }
            let highest = f["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["seq"].as_u64())
                .max();
            seqs.caught_up(highest.unwrap_or(0));
            !seqs.ahead.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hole_stays_open_until_the_missing_number_comes_or_a_page_covers_it() {
        let mut s = Seqs::default();
        assert!(!s.note(1));
        assert!(s.note(3), "2 is missing");
        assert!(!s.note(2), "2 came late: no gap");
        assert_eq!(s.top, 3);
        assert!(s.note(6));
        s.caught_up(6);
        assert!(s.ahead.is_empty());
        assert_eq!(s.top, 6);
        assert!(!s.note(5), "an old number changes nothing");
    }
}
