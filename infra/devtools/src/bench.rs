//! The measurements of `local-bench` (issue 10): latency through the local stack beside the
//! storage floor, requests per send against users and history beside a scan-and-broadcast
//! reference, and the functions' init and memory beside a bare `lambda_runtime` echo.
//! Everything runs on loopback against one [`Stack`].

use crate::ddb_log::{self, round_trips, RequestLog};
use crate::ws_client::{user_query, ChatSocket, Read};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ReturnConsumedCapacity, ScalarAttributeType, WriteRequest,
};
use futures::StreamExt;
use local_stack::app::FunctionSpec;
use local_stack::runtime::{Invoker, Logs};
use local_stack::stack::Stack;
use serde_json::{json, Value};
use shared::adapters::dynamo::DynamoStore;
use shared::adapters::s3::S3Media;
use shared::domain::auth::{mint, Claims};
use shared::domain::ids::Conversation;
use shared::domain::media::OwnerKey;
use shared::flows::{on_frame, Deps, FrameOutcome, Media};
use shared::ports::{ConnectionCloser, ConnectionLookup, Notifier, PostError};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The stack's `JWT_SECRET` during a benchmark.
pub const SECRET: &str = "bench-secret-bench-secret-bench-secret";
/// How long any one frame may take to arrive before the run fails.
const FRAME_WAIT: Duration = Duration::from_secs(30);
/// Posts in flight at once in the reference fan-out: the default `maxSockets` (50) of the
/// AWS SDK for JavaScript v3's HTTP handler, which that sample's `Promise.all` runs into.
pub const REFERENCE_POSTS_IN_FLIGHT: usize = 50;
/// The reference's table of connection ids, as simple-websockets-chat-app keeps them.
pub const REFERENCE_TABLE: &str = "ScanBroadcastConnections";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A notifier that posts nothing and counts what it was asked to post (and when): with it, a
/// send makes exactly its DynamoDB requests.
#[derive(Default)]
pub struct Silent(AtomicUsize, std::sync::Mutex<Vec<Instant>>);

impl Silent {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    /// When the first post at or after `since` was made (the acknowledgement goes out with
    /// the posts).
    pub fn first_post_since(&self, since: Instant) -> Option<Instant> {
        let posted = self.1.lock().unwrap();
        posted.iter().copied().filter(|t| *t >= since).min()
    }
}

impl Notifier for Silent {
    async fn post(&self, _connection_id: &str, _frame: &str) -> Result<(), PostError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        self.1.lock().unwrap().push(Instant::now());
        Ok(())
    }
}

/// A media checker that answers every ask at once, in-process, with a fresh trace id: with it a
/// media send makes exactly the chat's own requests of a checked send (WeChat's time comes
/// after the posts, so it cannot move the acknowledgement).
#[derive(Default)]
pub struct InstantAsk(AtomicUsize);

impl shared::ports::MediaModerator for InstantAsk {
    fn ask<'a>(
        &'a self,
        _app_sid: &'a str,
        _openid: &'a str,
        _url: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<String, shared::domain::moderation::Undecided>> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { Ok(format!("bench-trace-{n}-{}", now_ms())) })
    }
}

/// The bench's tokens outlive its runs: nothing is closed.
impl ConnectionCloser for Silent {
    async fn close(&self, _connection_id: &str) -> Result<(), PostError> {
        Ok(())
    }
}

pub type BenchDeps = Deps<DynamoStore, Silent, Media<S3Media>>;

/// The media owner key of the in-process sends ([`deps`]); keys of their uploads are made
/// with it ([`media_send`]).
pub const OWNER_SECRET: &[u8] = b"bench";

/// `$default`'s dependencies in-process, on the stack's tables through `client`, with the
/// function's own configuration from the template and a [`Silent`] notifier. With `s3_log`
/// and a stack with S3, the media adapter uses the stack's bucket through a client whose
/// requests go into that log; otherwise it points at a port nothing listens on (text sends).
pub fn deps(
    stack: &Stack,
    client: aws_sdk_dynamodb::Client,
    s3_log: Option<&RequestLog>,
) -> Result<BenchDeps, Error> {
    let env = stack
        .app
        .functions
        .get("DefaultFunction")
        .map(|f| f.env.clone())
        .ok_or("no DefaultFunction in the template")?;
    let config = shared::Config::from_lookup(|k| env.get(k).cloned())?;
    let aws = local_stack::clients::sdk_config("http://127.0.0.1:9");
    let objects = match (s3_log, stack.s3_endpoint(), stack.app.buckets.first()) {
        (Some(log), Some(endpoint), Some(bucket)) => {
            let counted = local_stack::clients::s3_config(&endpoint)
                .interceptor(log.clone())
                .build();
            S3Media::new(&aws, &bucket.name, true)
                .with_client(aws_sdk_s3::Client::from_conf(counted))
        }
        _ => S3Media::new(&aws, "unused", true),
    };
    Ok(Deps {
        store: DynamoStore::new(
            client,
            &crate::chat::tables(stack).messages,
            &crate::chat::tables(stack).connections,
        ),
        notifier: Silent::default(),
        media: Media {
            objects,
            owner_key: OwnerKey::from_secret(OWNER_SECRET),
        },
        config,
        records: Default::default(),
        moderation: Default::default(),
    })
}

/// Opens a user connection (no friendphone) through the stack's gateway.
pub async fn open_user(stack: &Stack, app: &str, user: &str) -> Result<ChatSocket, Error> {
    let exp = (now_ms() / 1000) as u64 + 3 * 3600;
    let claims = Claims {
        sub: user.into(),
        app: app.into(),
        exp,
        name: None,
        avatar: None,
    };
    let token = mint(SECRET.as_bytes(), &claims)?;
    ChatSocket::open(&stack.ws_url, &user_query(user, app, &token))
        .await
        .map_err(|status| format!("{user}'s handshake answered {status}").into())
}

/// The connection id of `user`'s newest connection, from its registry (one `GetItem`).
pub async fn connection_id(store: &DynamoStore, app: &str, user: &str) -> Result<String, Error> {
    let registry = store
        .registry(app, user)
        .await?
        .ok_or_else(|| format!("{user} has no registry"))?;
    registry
        .entries
        .last()
        .map(|e| e.connection_id.clone())
        .ok_or_else(|| format!("{user} has no connection").into())
}

/// Waits for the `message` frame of `client_msg_id`, skipping any other frame.
async fn wait_message(ws: &mut ChatSocket, client_msg_id: &str) -> Result<(), Error> {
    loop {
        let v = ws.frame(FRAME_WAIT).await?;
        if v["type"] == "message" && v["message"]["client_msg_id"] == client_msg_id {
            return Ok(());
        }
        if v["type"] == "error" {
            return Err(format!("error frame: {v}").into());
        }
    }
}

fn send_frame(to: &str, client_msg_id: &str, i: usize) -> String {
    json!({"action":"send","to":to,"client_msg_id":client_msg_id,"chat_type":0,
           "chat_content":format!("benchmark message {i}")})
    .to_string()
}

/// Two users on user connections through the stack; `a` sends to `b`.
pub struct Pair {
    pub a: ChatSocket,
    pub b: ChatSocket,
    pub a_user: String,
    pub b_user: String,
    pub a_id: String,
    sent: usize,
}

pub async fn open_pair(
    stack: &Stack,
    store: &DynamoStore,
    app: &str,
    n: usize,
) -> Result<Pair, Error> {
    let (a_user, b_user) = (format!("a{n}"), format!("b{n}"));
    let a = open_user(stack, app, &a_user).await?;
    let b = open_user(stack, app, &b_user).await?;
    let a_id = connection_id(store, app, &a_user).await?;
    Ok(Pair {
        a,
        b,
        a_user,
        b_user,
        a_id,
        sent: 0,
    })
}

impl Pair {
    /// One send through the stack: the time until the peer's copy arrived (the sender's
    /// acknowledgement is awaited too before the next send).
    pub async fn through_stack(&mut self) -> Result<Duration, Error> {
        self.sent += 1;
        let cmid = format!("s-{}-{}", self.a_user, self.sent);
        let frame = send_frame(&self.b_user, &cmid, self.sent);
        let started = Instant::now();
        self.a.send_text(&frame).await?;
        // Both at once, so that an error frame to the sender ends the wait at once.
        let (latency, ()) = tokio::try_join!(
            async {
                wait_message(&mut self.b, &cmid).await?;
                Ok::<_, Error>(started.elapsed())
            },
            wait_message(&mut self.a, &cmid)
        )?;
        Ok(latency)
    }

    /// The same send in-process (`on_frame` with `deps`, whose notifier posts nothing): the
    /// storage floor of one send.
    pub async fn floor(&mut self, deps: &BenchDeps) -> Result<Duration, Error> {
        self.sent += 1;
        let cmid = format!("f-{}-{}", self.a_user, self.sent);
        let frame = send_frame(&self.b_user, &cmid, self.sent);
        let started = Instant::now();
        let out = on_frame(deps, &self.a_id, &frame, now_ms()).await?;
        let took = started.elapsed();
        expect_sent(&out)?;
        Ok(took)
    }
}

fn expect_sent(out: &FrameOutcome) -> Result<(), Error> {
    match out {
        FrameOutcome::Sent { .. } => Ok(()),
        other => Err(format!("the send was not stored: {other:?}").into()),
    }
}

/// Latency samples of one load level.
pub struct Latency {
    pub stack: Vec<Duration>,
    pub floor: Vec<Duration>,
}

/// `pairs.len()` pairs concurrently, each sending `messages` one at a time, first through
/// the stack, then in-process; one unmeasured warm-up send per pair each way first (cold
/// starts, connection pools).
pub async fn latency(
    pairs: &mut [Pair],
    deps: &BenchDeps,
    messages: usize,
) -> Result<Latency, Error> {
    // Rounds: every pair sends through the stack at once, then every pair makes the same send
    // in-process at once. Both kinds meet DynamoDB Local in the same state (its JIT warming
    // up, its tables growing, this machine's other load) at the same concurrency, instead of
    // the floor always coming second.
    let (mut stack, mut floor) = (Vec::new(), Vec::new());
    for round in 0..LATENCY_WARMUP + messages {
        let s = futures::future::try_join_all(pairs.iter_mut().map(Pair::through_stack)).await?;
        let f = futures::future::try_join_all(pairs.iter_mut().map(|p| p.floor(deps))).await?;
        if round >= LATENCY_WARMUP {
            stack.extend(s);
            floor.extend(f);
        }
    }
    Ok(Latency { stack, floor })
}

/// Untimed rounds before the timed ones.
const LATENCY_WARMUP: usize = 5;

/// What one send cost, counted on the wire.
#[derive(Debug, Clone)]
pub struct SendCost {
    pub requests: Vec<String>,
    pub round_trips: usize,
    /// The requests answered before the first post (the acknowledgement goes out with the
    /// posts), and their round trips.
    pub before_ack: Vec<String>,
    pub round_trips_before_ack: usize,
    pub read_units: f64,
    pub write_units: f64,
    pub posts: usize,
    pub elapsed: Duration,
}

/// One send from `from_id` to `to` in-process through a store whose client carries `log`
/// (with consumed capacity), counting its requests, round trips, capacity and posts.
pub async fn counted_send(
    deps: &BenchDeps,
    log: &RequestLog,
    from_id: &str,
    to: &str,
    client_msg_id: &str,
) -> Result<SendCost, Error> {
    counted_frame(deps, log, from_id, &send_frame(to, client_msg_id, 0)).await
}

/// One image send from `from_id` (`user` of `app`) to `to` in-process, as [`counted_send`]:
/// the image is first put into the stack's bucket under a key issued to `user` (not
/// counted), then the send names it and its requests are counted, S3's with DynamoDB's when
/// `deps` came from [`deps`] with the same log.
pub async fn media_send(
    stack: &Stack,
    deps: &BenchDeps,
    log: &RequestLog,
    (app, user, from_id): (&str, &str, &str),
    to: &str,
    client_msg_id: &str,
    image: &[u8],
) -> Result<SendCost, Error> {
    let owner = OwnerKey::from_secret(OWNER_SECRET).owner(app, user);
    let key = shared::domain::media::new_key(
        shared::domain::media::MediaKind::Image,
        owner,
        "image/png",
        None,
        now_ms(),
    )
    .upload_key();
    let endpoint = stack.s3_endpoint().ok_or("the stack has no S3")?;
    let bucket = &stack.app.buckets.first().ok_or("no bucket")?.name;
    local_stack::clients::s3(&endpoint)
        .put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("image/png")
        .body(image.to_vec().into())
        .send()
        .await?;
    let frame = json!({"action":"send","to":to,"client_msg_id":client_msg_id,"chat_type":1,
                       "chat_content":key})
    .to_string();
    counted_frame(deps, log, from_id, &frame).await
}

async fn counted_frame(
    deps: &BenchDeps,
    log: &RequestLog,
    from_id: &str,
    frame: &str,
) -> Result<SendCost, Error> {
    log.take();
    let posts = deps.notifier.count();
    let started = Instant::now();
    let out = on_frame(deps, from_id, frame, now_ms()).await?;
    let elapsed = started.elapsed();
    expect_sent(&out)?;
    // Presigning a URL runs the SDK's request pipeline up to signing, so the log sees it, but
    // it is never sent: only answered requests count.
    let requests: Vec<_> = log
        .take_timed()
        .into_iter()
        .filter(|r| r.answered.is_some())
        .collect();
    let first_post = deps.notifier.first_post_since(started);
    let before: Vec<_> = requests
        .iter()
        .filter(|r| first_post.is_none_or(|p| r.answered.is_some_and(|a| a <= p)))
        .cloned()
        .collect();
    Ok(SendCost {
        round_trips: round_trips(&requests),
        round_trips_before_ack: round_trips(&before),
        before_ack: before.into_iter().map(|r| r.op).collect(),
        read_units: requests.iter().map(|r| r.read_units).sum(),
        write_units: requests.iter().map(|r| r.write_units).sum(),
        requests: requests.into_iter().map(|r| r.op).collect(),
        posts: deps.notifier.count() - posts,
        elapsed,
    })
}

/// Idle user connections that read and drop whatever they get (the other users).
#[derive(Default)]
pub struct Crowd {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub users: Vec<String>,
}

impl Crowd {
    /// Connects users `{prefix}{len}..{prefix}{n-1}` of `app`, 16 handshakes at a time.
    pub async fn grow_to(
        &mut self,
        stack: &Stack,
        app: &str,
        prefix: &str,
        n: usize,
    ) -> Result<(), Error> {
        let names: Vec<String> = (self.users.len()..n)
            .map(|i| format!("{prefix}{i}"))
            .collect();
        let opened: Vec<Result<ChatSocket, Error>> = futures::stream::iter(names.iter())
            .map(|u| open_user(stack, app, u))
            .buffered(16)
            .collect()
            .await;
        for ws in opened {
            let mut ws = ws?;
            self.tasks.push(tokio::spawn(async move {
                while !matches!(ws.read(Duration::from_secs(3600)).await, Read::Ended(_)) {}
            }));
        }
        self.users.extend(names);
        Ok(())
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Creates the reference's connections table (key `connectionId`, on demand).
pub async fn create_reference_table(client: &aws_sdk_dynamodb::Client) -> Result<(), Error> {
    client
        .create_table()
        .table_name(REFERENCE_TABLE)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("connectionId")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("connectionId")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    Ok(())
}

/// Writes `items` with `BatchWriteItem` (25 per request, 8 requests in flight), retrying
/// unprocessed items.
pub async fn batch_put(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<HashMap<String, AttributeValue>>,
) -> Result<(), Error> {
    let chunks: Vec<Vec<HashMap<String, AttributeValue>>> =
        items.chunks(25).map(|c| c.to_vec()).collect();
    let results: Vec<Result<(), Error>> = futures::stream::iter(chunks)
        .map(|chunk| async move {
            let mut writes: Vec<WriteRequest> = chunk
                .into_iter()
                .map(|item| {
                    Ok::<_, Error>(
                        WriteRequest::builder()
                            .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                            .build(),
                    )
                })
                .collect::<Result<_, _>>()?;
            for _ in 0..10 {
                if writes.is_empty() {
                    return Ok(());
                }
                let out = client
                    .batch_write_item()
                    .request_items(table, writes)
                    .send()
                    .await?;
                writes = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default();
            }
            Err(format!("{table}: items still unprocessed after 10 attempts").into())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The reference's connection ids: looked up from each user's registry (setup only).
pub async fn reference_register(
    client: &aws_sdk_dynamodb::Client,
    store: &DynamoStore,
    app: &str,
    users: &[String],
) -> Result<(), Error> {
    let ids: Vec<Result<String, Error>> = futures::stream::iter(users)
        .map(|u| connection_id(store, app, u))
        .buffered(32)
        .collect()
        .await;
    let items = ids
        .into_iter()
        .map(|id| {
            Ok(HashMap::from([(
                "connectionId".to_string(),
                AttributeValue::S(id?),
            )]))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    batch_put(client, REFERENCE_TABLE, items).await
}

/// One message of the reference fan-out.
#[derive(Debug, Clone)]
pub struct ReferenceCost {
    /// `Scan` pages.
    pub scans: usize,
    pub read_units: f64,
    pub posts: usize,
    /// Posts not answered 200.
    pub failed_posts: usize,
    pub elapsed: Duration,
}

/// What simple-websockets-chat-app's `sendmessage` does for one message: a (paginated) Scan
/// of every connection id, then a post of the message to each through the management API.
pub async fn scan_and_broadcast(
    client: &aws_sdk_dynamodb::Client,
    log: &RequestLog,
    http: &reqwest::Client,
    management_url: &str,
    body: &str,
) -> Result<ReferenceCost, Error> {
    log.take();
    let started = Instant::now();
    let mut ids = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(REFERENCE_TABLE)
            .projection_expression("connectionId")
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        for item in page.items() {
            if let Some(AttributeValue::S(id)) = item.get("connectionId") {
                ids.push(id.clone());
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    let auth = REFERENCE_AUTH;
    let statuses: Vec<Result<u16, reqwest::Error>> = futures::stream::iter(&ids)
        .map(|id| async move {
            let r = http
                .post(format!("{management_url}/@connections/{id}"))
                .header("Authorization", auth)
                .header("X-Amz-Date", "20260101T000000Z")
                .body(body.to_owned())
                .send()
                .await?;
            Ok(r.status().as_u16())
        })
        .buffer_unordered(REFERENCE_POSTS_IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let requests = log.take_timed();
    Ok(ReferenceCost {
        scans: requests.iter().filter(|r| r.op == "Scan").count(),
        read_units: requests.iter().map(|r| r.read_units).sum(),
        posts: ids.len(),
        failed_posts: statuses.iter().filter(|s| !matches!(s, Ok(200))).count(),
        elapsed,
    })
}

/// `count` posts to one connection through the local gateway's management API, one at a time:
/// what each of a send's posts costs here.
pub async fn post_latency(
    http: &reqwest::Client,
    management_url: &str,
    connection_id: &str,
    count: usize,
) -> Result<Vec<Duration>, Error> {
    let mut took = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let r = http
            .post(format!("{management_url}/@connections/{connection_id}"))
            .header("Authorization", REFERENCE_AUTH)
            .header("X-Amz-Date", "20260101T000000Z")
            .body(json!({"type": "bench", "n": i}).to_string())
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("a post answered {}", r.status()).into());
        }
        took.push(started.elapsed());
    }
    Ok(took)
}

/// The local gateway accepts any SigV4 signature; the header says what AWS would check.
const REFERENCE_AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/execute-api/aws4_request, \
                SignedHeaders=host;x-amz-date, Signature=0000";

/// Fills the conversation of `app`/`a`/`b` with `count` more messages older than its newest,
/// each a copy of the newest message item as the adapter wrote it (new id and sort key):
/// `BatchWriteItem`s, no commit per message.
pub async fn add_history(
    client: &aws_sdk_dynamodb::Client,
    messages_table: &str,
    conversation: &Conversation,
    count: usize,
) -> Result<(), Error> {
    let newest = client
        .query()
        .table_name(messages_table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :m)")
        .expression_attribute_values(":pk", AttributeValue::S(conversation.key()))
        .expression_attribute_values(":m", AttributeValue::S("m#".into()))
        .scan_index_forward(false)
        .limit(1)
        .send()
        .await?
        .items
        .and_then(|mut v| v.pop())
        .ok_or("the conversation has no message to copy")?;
    // Older than every message so far: from a day before now, 1 ms apart, with a random
    // per-call offset so that successive calls do not collide.
    let base = now_ms() - 86_400_000 - (count as i64) - i64::from(rand_u16()) * 1_000_000;
    let items = (0..count)
        .map(|i| {
            let at = base + i as i64;
            let t = std::time::UNIX_EPOCH + Duration::from_millis(at as u64);
            let id = ulid::Ulid::from_datetime(t).to_string();
            let mut item = newest.clone();
            item.remove("client_msg_id");
            item.remove("seq");
            item.insert("id".into(), AttributeValue::S(id.clone()));
            item.insert("sk".into(), AttributeValue::S(format!("m#{id}")));
            item.insert("created_at".into(), AttributeValue::N(at.to_string()));
            item
        })
        .collect();
    batch_put(client, messages_table, items).await
}

fn rand_u16() -> u16 {
    (ulid::Ulid::new().random() & 0xff) as u16
}

/// One `REPORT` line of the local runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub function: String,
    pub route: String,
    pub duration_ms: f64,
    pub max_memory_mb: Option<u64>,
    pub init_ms: Option<f64>,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = &line[line.find(name)? + name.len()..];
    rest.split_whitespace().next()
}

/// A small PNG (16 × 16): the image of the benchmark's and the reliability run's media sends.
pub fn png() -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 16, y as u8 * 16, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("a PNG encodes in memory");
    out.into_inner()
}

/// The parts of one send, from `$default`'s "message sent" log line (JSON, as the local
/// runtime captures it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendParts {
    pub storage_ms: f64,
    pub frames_ms: f64,
    pub posts_ms: f64,
    /// The content check (none when nothing was checked) and the first read it overlapped.
    pub check_ms: Option<f64>,
    pub read_ms: Option<f64>,
    /// From the end of both to the end of the commit.
    pub write_ms: Option<f64>,
}

pub fn parse_send_parts(line: &str) -> Option<SendParts> {
    if !line.contains("\"message sent\"") {
        return None;
    }
    // (captured lines start with the function's name: `[DefaultFunction] {...}`)
    let v: Value = serde_json::from_str(&line[line.find('{')?..]).ok()?;
    let f = &v["fields"];
    let ms = |k: &str| Some(f[k].as_u64()? as f64 / 1000.0);
    Some(SendParts {
        storage_ms: ms("storage_us")?,
        frames_ms: ms("frames_us")?,
        posts_ms: ms("posts_us")?,
        check_ms: ms("check_us"),
        read_ms: ms("read_us"),
        write_ms: ms("write_us"),
    })
}

pub fn parse_report(line: &str) -> Option<Report> {
    if !line.starts_with("REPORT ") {
        return None;
    }
    Some(Report {
        function: field(line, " Function: ")?.to_owned(),
        route: field(line, " Route: ")?.to_owned(),
        duration_ms: field(line, " Duration: ")?.parse().ok()?,
        max_memory_mb: field(line, " Max Memory Used: ").and_then(|v| v.parse().ok()),
        init_ms: field(line, " Init Duration: ").and_then(|v| v.parse().ok()),
    })
}

/// The echo baseline's logical id in [`cold_starts`].
pub const ECHO: &str = "EchoFunction";

/// `rounds` cold starts of each WebSocket function and of the echo binary (`bench-echo`),
/// one at a time, each through a fresh [`Invoker`] of the local runtime on the binaries in
/// `binaries`: the REPORT lines (init duration and peak memory of one invocation).
pub async fn cold_starts(
    stack: &Stack,
    binaries: &Path,
    rounds: usize,
) -> Result<Vec<Report>, Error> {
    let root = crate::repo_root();
    let event = |f: &str| -> Result<Value, Error> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            root.join("events").join(f),
        )?)?)
    };
    let payloads = [
        (ECHO, json!({"echo": true})),
        ("ConnectFunction", event("connect-user.json")?),
        ("DefaultFunction", event("default-ping.json")?),
        ("DisconnectFunction", event("disconnect.json")?),
    ];
    let mut functions: BTreeMap<String, FunctionSpec> = BTreeMap::new();
    for (id, _) in &payloads[1..] {
        let spec = stack
            .app
            .functions
            .get(*id)
            .ok_or_else(|| format!("no {id} in the template"))?;
        functions.insert((*id).to_owned(), spec.clone());
    }
    functions.insert(
        ECHO.into(),
        FunctionSpec {
            logical_id: ECHO.into(),
            binary: "bench-echo".into(),
            timeout: Duration::from_secs(10),
            memory_mb: 128,
            env: BTreeMap::new(),
        },
    );
    let env = BTreeMap::from([
        (
            "AWS_ENDPOINT_URL_DYNAMODB".to_string(),
            stack.dynamodb_endpoint(),
        ),
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            local_stack::clients::access_key().to_string(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            local_stack::clients::secret_key().to_string(),
        ),
        ("JWT_SECRET".to_string(), SECRET.to_string()),
        ("JWT_SECRET_ARN".to_string(), String::new()),
        (
            "MEDIA_KEY_SECRET".to_string(),
            String::from_utf8_lossy(OWNER_SECRET).into_owned(),
        ),
        ("MEDIA_KEY_SECRET_ARN".to_string(), String::new()),
    ]);
    let mut reports = Vec::new();
    for round in 0..rounds {
        let invoker = Invoker::new(
            functions.clone(),
            binaries.to_path_buf(),
            env.clone(),
            Logs::Capture,
        );
        // A different order each round, so no binary always runs right after another.
        for k in 0..payloads.len() {
            let (id, payload) = &payloads[(k + round) % payloads.len()];
            // Answers do not matter (a bad token, an unknown connection): only init does.
            let _ = invoker.invoke(id, payload, "bench").await;
        }
        reports.extend(
            invoker
                .captured_logs()
                .iter()
                .filter_map(|l| parse_report(l)),
        );
        invoker.shutdown();
    }
    Ok(reports)
}

/// Sizes of `.aws-sam/build/<Function>/bootstrap`, if `sam build` ran.
pub fn bootstrap_sizes() -> Vec<(String, u64)> {
    let dir = crate::repo_root().join(".aws-sam/build");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut sizes: Vec<(String, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let meta = std::fs::metadata(e.path().join("bootstrap")).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), meta.len()))
        })
        .collect();
    sizes.sort();
    sizes
}

/// Percentile `p` (0..=1) of `v`, in milliseconds (nearest rank).
pub fn percentile_ms(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort();
    let i = ((s.len() as f64 * p).ceil() as usize).clamp(1, s.len()) - 1;
    s[i].as_secs_f64() * 1000.0
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// A plain client on the stack's DynamoDB Local with its own request log.
pub fn logged_client(stack: &Stack, log: &RequestLog) -> aws_sdk_dynamodb::Client {
    ddb_log::client(&stack.dynamodb_endpoint(), log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_line_gives_function_duration_memory_and_init() {
        // GIVEN a cold start's REPORT line of the local runtime
        let line = "REPORT RequestId: 1 Function: DefaultFunction Route: $default Duration: 3.25 ms Billed Duration: 4 ms Memory Size: 256 MB Max Memory Used: 21 MB Init Duration: 7.50 ms";
        // WHEN it is parsed THEN every figure comes out
        assert_eq!(
            parse_report(line),
            Some(Report {
                function: "DefaultFunction".into(),
                route: "$default".into(),
                duration_ms: 3.25,
                max_memory_mb: Some(21),
                init_ms: Some(7.5),
            })
        );
        // AND a function's own output is not a report
        assert_eq!(parse_report("[DefaultFunction] {\"level\":\"INFO\"}"), None);
    }

    #[test]
    fn a_message_sent_line_gives_the_parts_of_a_send() {
        let line = r#"[DefaultFunction] {"timestamp":"2026-11-26T13:00:00Z","level":"INFO","fields":{"message":"message sent","delivered":2,"storage_us":10250,"frames_us":310,"posts_us":3020},"target":"shared::chat"}"#;
        assert_eq!(
            parse_send_parts(line),
            Some(SendParts {
                storage_ms: 10.25,
                frames_ms: 0.31,
                posts_ms: 3.02,
                check_ms: None,
                read_ms: None,
                write_ms: None,
            })
        );
        // a checked send's line carries the check and the read beside it, and the write
        let checked = line.replace(
            "\"storage_us\"",
            "\"check_us\":50100,\"read_us\":2500,\"write_us\":7000,\"storage_us\"",
        );
        let parts = parse_send_parts(&checked).unwrap();
        assert_eq!(
            (parts.check_ms, parts.read_ms, parts.write_ms),
            (Some(50.1), Some(2.5), Some(7.0))
        );
        // other lines, and a "message sent" line without the parts, are not
        assert_eq!(parse_send_parts(&line.replace("message sent", "x")), None);
        assert_eq!(parse_send_parts(&line.replace("storage_us", "s")), None);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&v, 0.5), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&v[..1], 0.99), 1.0);
    }
}

/// The logins measured (`make bench`, "Login").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    /// A new WeChat user with the phone button's code: `jscode2session`,
    /// `getuserphonenumber`, the identity bound.
    FirstWithPhone,
    /// A returning user with `wx.login`'s code alone: `jscode2session`, the remembered number.
    Returning,
}

/// `n` (at most 100,000) logins of one kind through the stack's HTTP API, one at a time, as
/// the users `o-bench-<run>-<i>`: each one's time from the request to the answer, and the
/// WeChat calls they made in all. Returning users are the first logins of the same `run`.
pub async fn logins(
    stack: &Stack,
    wechat: &crate::fake_wechat::FakeWeChat,
    kind: LoginKind,
    n: usize,
    run: u16,
) -> Result<(Vec<Duration>, u64), Error> {
    use crate::chat::{DEMO_APPID, DEMO_APP_SID};
    let url = format!(
        "{}/login",
        stack
            .http_url
            .as_deref()
            .ok_or("the stack has no HTTP API")?
    );
    let client = reqwest::Client::new();
    let paths = [
        "/sns/jscode2session",
        "/wxa/business/getuserphonenumber",
        "/cgi-bin/stable_token",
    ];
    let calls = || paths.iter().map(|p| wechat.calls(p)).sum::<u64>();
    let before = calls();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let openid = format!("o-bench-{run}-{i}");
        let mut body = json!({
            "app_sid": DEMO_APP_SID,
            "code": wechat.login_code(DEMO_APPID, &openid),
        });
        if kind == LoginKind::FirstWithPhone {
            let phone = format!("1{run:05}{i:05}");
            body["phone_code"] = json!(wechat.phone_code(DEMO_APPID, &phone));
        }
        let started = Instant::now();
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = r.status();
        let answer = r.text().await?;
        times.push(started.elapsed());
        if status != 200 {
            return Err(format!("login {i} ({kind:?}) answered {status}: {answer}").into());
        }
    }
    Ok((times, calls() - before))
}

/// `n` round trips to the fake WeChat API alone (`jscode2session` with a fresh code each), one
/// at a time: what a login's WeChat calls cost before the chat's own work.
pub async fn wechat_round_trips(
    wechat: &crate::fake_wechat::FakeWeChat,
    n: usize,
) -> Result<Vec<Duration>, Error> {
    use crate::chat::{DEMO_APPID, DEMO_APP_SECRET};
    let client = reqwest::Client::new();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let code = wechat.login_code(DEMO_APPID, &format!("o-bench-rt-{i}"));
        let url = format!(
            "{}/sns/jscode2session?appid={DEMO_APPID}&secret={DEMO_APP_SECRET}&js_code={code}&grant_type=authorization_code",
            wechat.base
        );
        let started = Instant::now();
        let text = client.get(&url).send().await?.text().await?;
        times.push(started.elapsed());
        let answer: Value = serde_json::from_str(&text)?;
        if answer.get("openid").is_none() {
            return Err(format!("the fake WeChat API answered {answer}").into());
        }
    }
    Ok(times)
}

/// Logs `openid` of the demo app in through the stack's `POST /login` (accounts are openids):
/// the token.
pub async fn wechat_login(
    stack: &Stack,
    wechat: &crate::fake_wechat::FakeWeChat,
    openid: &str,
) -> Result<String, Error> {
    use crate::chat::{DEMO_APPID, DEMO_APP_SID};
    let body = json!({"app_sid": DEMO_APP_SID, "code": wechat.login_code(DEMO_APPID, openid)});
    let url = format!("{}/login", stack.http_url.as_deref().ok_or("no HTTP API")?);
    let answer: serde_json::Value = serde_json::from_str(
        &reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?
            .text()
            .await?,
    )?;
    Ok(answer["token"]
        .as_str()
        .ok_or("the login gave no token")?
        .to_owned())
}

/// `n` text sends, one at a time, from `sender`'s user connection to `peer` on a stack that
/// checks texts (`Moderation=wechat`): each one's time from the frame to its acknowledgement.
pub async fn checked_sends(
    sender: &mut ChatSocket,
    peer: &str,
    n: usize,
    tag: &str,
) -> Result<Vec<Duration>, Error> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let cmid = format!("{tag}-{i}");
        let started = Instant::now();
        sender
            .send_json(&json!({"action":"send","to":peer,"client_msg_id":cmid,"chat_type":0,"chat_content":format!("checked text {i}")}))
            .await?;
        loop {
            let f = sender.frame(Duration::from_secs(15)).await?;
            if f["client_msg_id"] == cmid.as_str() {
                if f["type"] != "message" {
                    return Err(format!("send {i} answered {f}").into());
                }
                break;
            }
        }
        times.push(started.elapsed());
    }
    Ok(times)
}
