//! docs/reliability-figures.md from a run's figures.

use super::Figures;

pub(super) fn render(
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
         Delivery to the peer is counted {} s after a pair's last acknowledgement (the quiet period), \
         apart for the two kinds of connection (even pairs: a user connection; odd pairs: a \
         conversation connection). **User connections**: in frames / after the gap fetches \
         (`chat.js`: a `seq` gap open {} ms fetches the latest page) / after one more catch-up at \
         the end of the quiet period (`chat.js` does it after `quietResyncMs`, 60 s) / stored. \
         **Conversation connections** (the seed's client, which cannot notice a gap): in frames / \
         stored.\n\n\
         | phase | fault | connections | sent | stored | duplicated | acknowledged | delivered, user connections | delivered, conversation connections | missing | order violations | frames sent (resends) | error frames | gateway errors | crashed invocations | time |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        if release { " --release" } else { "" },
        if quick { " --quick" } else { "" },
        dir.display(),
        local_stack::runtime::MAX_INSTANCES,
        super::peer::QUIET.as_secs(),
        super::peer::GAP_WAIT.as_millis(),
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
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {:.1} s |\n",
            f.name,
            f.what,
            f.connections,
            f.sent,
            f.stored,
            f.duplicated,
            f.acked,
            f.to_users.cell(true),
            f.to_conversations.cell(false),
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
