//! Load and fault runs through the local stack: `local-reliability [--release] [--quick]
//! [--only PHASE,...] [out-file]` (`make reliability`; see `devtools::reliability`). Bounded:
//! the whole run stops after 20 minutes.

const USAGE: &str =
    "usage: local-reliability [--release] [--quick] [--only PHASE[,PHASE...]] [out-file]";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (mut release, mut quick, mut only) = (false, false, None);
    let mut out = devtools::repo_root().join("docs/reliability-figures.md");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--release" => release = true,
            "--quick" => quick = true,
            "--only" => only = args.next(),
            other if !other.starts_with("--") => out = other.into(),
            _ => return Err(USAGE.into()),
        }
    }
    let deadline = devtools::reliability::RUN_DEADLINE;
    let run = devtools::reliability::run(release, quick, only, out);
    match tokio::time::timeout(deadline, run).await {
        Ok(r) => r,
        Err(_) => Err("the run took over 20 minutes; stopped".into()),
    }
}
