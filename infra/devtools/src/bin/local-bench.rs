//! Latency and throughput of the chat through the local stack, on loopback only, bounded in
//! count and time: `local-bench [pairs] [messages-per-pair] [out-file]` (defaults 4, 50,
//! docs/benchmark.md). Each pair is two users in one conversation; one sends, waits for its
//! acknowledgement and for the peer's copy, then sends the next. Pairs run concurrently.
use devtools::runtime::Logs;
use devtools::stack::{Stack, StackOptions};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shared::auth::{mint, Claims};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "bench-secret-bench-secret-bench-secret";
/// The whole run stops after this, finished or not.
const DEADLINE: Duration = Duration::from_secs(300);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(
    stack: &Stack,
    app: &str,
    me: &str,
    friend: &str,
) -> Result<(Ws, Duration), Box<dyn std::error::Error + Send + Sync>> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let claims = Claims {
        sub: me.into(),
        app: app.into(),
        exp,
        name: None,
        avatar: None,
    };
    let token = mint(SECRET.as_bytes(), &claims)?;
    let url = format!(
        "{}?userphone={me}&friendphone={friend}&app_sid={app}&token={token}",
        stack.ws_url
    );
    let started = Instant::now();
    let (ws, _) = tokio_tungstenite::connect_async(url).await?;
    Ok((ws, started.elapsed()))
}

async fn next_json(ws: &mut Ws) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await? {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(_)) => continue,
            other => return Err(format!("socket ended: {other:?}").into()),
        }
    }
}

struct PairResult {
    connect: Vec<Duration>,
    /// Send until both the acknowledgement and the peer's copy arrived.
    round: Vec<Duration>,
}

async fn run_pair(
    stack: &Stack,
    n: usize,
    messages: usize,
) -> Result<PairResult, Box<dyn std::error::Error + Send + Sync>> {
    let app = format!("bench{n}");
    let (mut a, ca) = open(stack, &app, "111", "222").await?;
    let (mut b, cb) = open(stack, &app, "222", "111").await?;
    let mut r = PairResult {
        connect: vec![ca, cb],
        round: Vec::new(),
    };
    for i in 0..messages {
        let cmid = format!("b{n}-{i}");
        let frame = json!({"action":"send","client_msg_id":cmid,"chat_type":0,"chat_content":format!("message {i}")});
        let sent = Instant::now();
        a.send(Message::Text(frame.to_string().into())).await?;
        let (ack, peer) = tokio::join!(next_json(&mut a), next_json(&mut b));
        let elapsed = sent.elapsed();
        let (ack, peer) = (ack?, peer?);
        if ack["client_msg_id"] != cmid.as_str()
            || peer["message"]["client_msg_id"] != cmid.as_str()
        {
            return Err(format!("unexpected frames: {ack} / {peer}").into());
        }
        r.round.push(elapsed);
    }
    Ok(r)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let pairs: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(4)
        .clamp(1, 32);
    let messages: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50)
        .clamp(1, 1000);
    let out = args.next().unwrap_or_else(|| {
        devtools::repo_root()
            .join("docs/benchmark.md")
            .display()
            .to_string()
    });
    let stack = Stack::start(StackOptions {
        jwt_secret: SECRET.into(),
        logs: Logs::Quiet,
        with_s3: false,
        ..Default::default()
    })
    .await?;
    let started = Instant::now();
    let runs = futures::future::join_all((0..pairs).map(|n| run_pair(&stack, n, messages)));
    let results = tokio::time::timeout(DEADLINE, runs)
        .await
        .map_err(|_| "the benchmark ran past its deadline")?;
    let wall = started.elapsed();
    let mut connect = Vec::new();
    let mut round = Vec::new();
    for r in results {
        let r = r?;
        connect.extend(r.connect);
        round.extend(r.round);
    }
    let sends = round.len();
    let report = format!(
        "# Local stack benchmark\n\n\
         Produced by `make bench` (`target/debug/local-bench {pairs} {messages}`): {pairs} conversations, \
         {messages} messages each, sent one after another per conversation (the next after the \
         sender's acknowledgement and the peer's copy have arrived), conversations concurrently. \
         Debug builds of the functions, DynamoDB Local, everything on loopback of a {cores}-core machine; \
         the numbers compare local runs with each other, not with AWS.\n\n\
         | measure | value |\n|---|---|\n\
         | sends | {sends} |\n\
         | wall time | {wall:.2} s |\n\
         | throughput | {tput:.1} messages/s |\n\
         | send → ack and peer copy, p50 | {p50:.1} ms |\n\
         | send → ack and peer copy, p95 | {p95:.1} ms |\n\
         | send → ack and peer copy, max | {max:.1} ms |\n\
         | handshake ($connect), p50 | {c50:.1} ms |\n\
         | handshake ($connect), max (includes cold starts) | {cmax:.1} ms |\n",
        cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        wall = wall.as_secs_f64(),
        tput = sends as f64 / wall.as_secs_f64(),
        p50 = pct(&mut round, 0.5),
        p95 = pct(&mut round, 0.95),
        max = pct(&mut round, 1.0),
        c50 = pct(&mut connect, 0.5),
        cmax = pct(&mut connect, 1.0),
    );
    print!("{report}");
    std::fs::write(&out, &report)?;
    println!("\nwritten to {out}");
    Ok(())
}
