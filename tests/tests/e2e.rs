//! End to end: real WebSocket clients → local API Gateway → the real function binaries →
//! DynamoDB Local. Needs `cargo build --workspace --bins` first (`make test` does it).

use devtools::ws_client::{conversation_query, user_query, ChatSocket, Read};
use local_stack::apigw;
use local_stack::runtime::Logs;
use local_stack::stack::{Stack, StackOptions};
use serde_json::{json, Value};
use shared::domain::auth::{mint, Claims};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::net::TcpStream;

const SECRET: &str = "e2e-secret-e2e-secret-e2e-secret-0123";
const WAIT: Duration = Duration::from_secs(15);

fn options() -> StackOptions {
    let opts = StackOptions {
        logs: Logs::Quiet,
        ..devtools::chat::stack_options(SECRET)
    };
    devtools::chat::assert_fresh_binaries(
        &opts.functions_dir,
        &[
            "chat-connect",
            "chat-default",
            "chat-disconnect",
            "chat-thumbnail",
        ],
    );
    opts
}

/// One stack shared by the tests that need no special options, on its own runtime so that it
/// outlives each test's runtime. Tests keep apart by using their own app ids.
fn shared_stack() -> &'static Stack {
    struct Shared {
        _rt: tokio::runtime::Runtime,
        stack: Stack,
    }
    static SHARED: OnceLock<Shared> = OnceLock::new();
    &SHARED
        .get_or_init(|| {
            std::thread::spawn(|| {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                let stack = rt
                    .block_on(Stack::start(options()))
                    .expect("local stack starts");
                Shared { _rt: rt, stack }
            })
            .join()
            .unwrap()
        })
        .stack
}

fn token(sub: &str, app: &str, ttl: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    mint(
        SECRET.as_bytes(),
        &Claims {
            sub: sub.into(),
            app: app.into(),
            exp: (now + ttl) as u64,
            name: Some(format!("name-{sub}")),
            avatar: None,
        },
    )
    .unwrap()
}

/// The end-to-end tests' view of [`ChatSocket`]: every step asserts.
struct Client {
    ws: ChatSocket,
}

impl Client {
    async fn open(stack: &Stack, query: &str) -> Result<Client, u16> {
        match ChatSocket::open(&stack.ws_url, query).await {
            Ok(ws) => Ok(Client { ws }),
            Err(0) => panic!("handshake failed without a status"),
            Err(status) => Err(status),
        }
    }

    async fn connect(stack: &Stack, app: &str, me: &str, friend: &str) -> Client {
        let q = conversation_query(me, friend, app, &token(me, app, 600));
        Client::open(stack, &q).await.expect("handshake accepted")
    }

    /// A user connection: no friendphone, all of the user's conversations.
    async fn user(stack: &Stack, app: &str, me: &str) -> Client {
        let q = user_query(me, app, &token(me, app, 600));
        Client::open(stack, &q).await.expect("handshake accepted")
    }

    /// The next frame, which must be of `kind`.
    async fn expect(&mut self, kind: &str) -> Value {
        let f = self.frame().await;
        assert_eq!(f["type"], kind, "{f}");
        f
    }

    async fn send(&mut self, v: Value) {
        self.ws.send_json(&v).await.unwrap();
    }

    async fn send_raw(&mut self, s: &str) {
        self.ws.send_text(s).await.unwrap();
    }

    /// The next text frame, parsed.
    async fn frame(&mut self) -> Value {
        match self.ws.read(WAIT).await {
            Read::Frame(v) => v,
            other => panic!("expected a frame in time: {other:?}"),
        }
    }

    /// Sends and waits for this connection's own answer of the given type.
    async fn ask(&mut self, v: Value) -> Value {
        self.send(v).await;
        self.frame().await
    }

    /// Sends a message and returns the acknowledgement frame.
    async fn say(&mut self, cmid: &str, text: &str) -> Value {
        let f = self
            .ask(json!({"action":"send","client_msg_id":cmid,"chat_type":0,"chat_content":text}))
            .await;
        assert_eq!(f["client_msg_id"], cmid, "ack: {f}");
        f
    }

    async fn silent_for(&mut self, d: Duration) {
        if let Read::Frame(f) = self.ws.read(d).await {
            panic!("expected silence, got {f}");
        }
    }

    /// The close code the connection ends with; frames still arriving first (a pong to the
    /// last ping, say) are passed over.
    async fn close_code(&mut self) -> u16 {
        loop {
            match self.ws.read(WAIT).await {
                Read::Ended(code) => return code,
                Read::Frame(_) => continue,
                Read::Quiet => panic!("expected the socket to close in time"),
            }
        }
    }
}

fn contents(frame: &Value) -> Vec<String> {
    frame["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn two_users_exchange_messages_and_see_one_order_with_the_seeds_fields() {
    let s = shared_stack();
    let mut ann = Client::connect(s, "e2e1", "111", "222").await;
    let mut bob = Client::connect(s, "e2e1", "222", "111").await;
    assert_eq!(ann.ask(json!({"action":"sync"})).await["data"], json!([]));
    bob.ask(json!({"action":"sync"})).await;

    ann.say("a1", "hello bob").await;
    let at_bob = bob.frame().await;
    assert_eq!(contents(&at_bob), ["hello bob"]);
    assert!(
        at_bob.get("client_msg_id").is_none(),
        "only the sender's frame is an ack"
    );
    bob.say("b1", "hi ann").await;
    let at_ann = ann.frame().await;
    ann.say("a2", "how are you").await;
    let last_at_bob = { bob.frame().await };
    assert_eq!(contents(&at_ann), ["hello bob", "hi ann"]);
    assert_eq!(
        contents(&last_at_bob),
        ["hello bob", "hi ann", "how are you"]
    );

    let row = &last_at_bob["data"][0];
    assert_eq!(row["userphone"], "111");
    assert_eq!(row["username"], "name-111");
    assert_eq!(row["friendphone"], "222");
    assert_eq!(row["friendname"], "name-222");
    assert_eq!(row["app_sid"], "e2e1");
    assert_eq!(row["chat_type"], 0);
    assert!(row["created_date"].as_str().unwrap().len() == 19);
    let sync_a = ann.ask(json!({"action":"sync"})).await;
    let sync_b = bob.ask(json!({"action":"sync"})).await;
    assert_eq!(sync_a["data"], sync_b["data"], "both users see one order");
}

#[tokio::test]
async fn every_device_of_both_users_receives_and_other_conversations_do_not() {
    let s = shared_stack();
    let mut a1 = Client::connect(s, "e2e2", "111", "222").await;
    let mut a2 = Client::connect(s, "e2e2", "111", "222").await;
    let mut b1 = Client::connect(s, "e2e2", "222", "111").await;
    let mut c1 = Client::connect(s, "e2e2", "333", "111").await;
    let mut other_app = Client::connect(s, "e2e2x", "222", "111").await;
    a1.say("m1", "to both devices").await;
    assert_eq!(contents(&a2.frame().await), ["to both devices"]);
    assert_eq!(contents(&b1.frame().await), ["to both devices"]);
    c1.silent_for(Duration::from_millis(800)).await;
    other_app.silent_for(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn refused_handshakes_carry_their_status() {
    let s = shared_stack();
    let good = token("111", "e2e3", 600);
    let cases = [
        (format!("friendphone=222&app_sid=e2e3&token={good}"), 400),
        (
            format!("userphone=111&friendphone=111&app_sid=e2e3&token={good}"),
            400,
        ),
        (
            "userphone=111&friendphone=222&app_sid=e2e3".to_string(),
            401,
        ),
        (
            "userphone=111&friendphone=222&app_sid=e2e3&token=not.a.jwt".to_string(),
            401,
        ),
        (
            format!(
                "userphone=111&friendphone=222&app_sid=e2e3&token={}",
                token("111", "e2e3", -3600)
            ),
            401,
        ),
        (
            format!(
                "userphone=111&friendphone=222&app_sid=e2e3&token={}",
                token("999", "e2e3", 600)
            ),
            403,
        ),
        (
            format!(
                "userphone=111&friendphone=222&app_sid=e2e3&token={}",
                token("111", "other", 600)
            ),
            403,
        ),
    ];
    for (q, status) in cases {
        assert_eq!(Client::open(s, &q).await.err(), Some(status), "{q}");
    }
}

#[tokio::test]
async fn bad_frames_get_error_frames_change_nothing_and_leave_the_socket_usable() {
    let s = shared_stack();
    let mut a = Client::connect(s, "e2e4", "111", "222").await;
    let long = "x".repeat(5000);
    let cases = [
        ("not json".to_string(), "bad_json"),
        (json!({"action":"dance"}).to_string(), "unknown_action"),
        (
            json!({"action":"send","chat_type":5,"chat_content":"x"}).to_string(),
            "bad_chat_type",
        ),
        (
            json!({"action":"send","client_msg_id":"k","chat_type":0,"chat_content":long})
                .to_string(),
            "content_too_long",
        ),
        (
            json!({"action":"history","limit":1000}).to_string(),
            "bad_limit",
        ),
    ];
    for (body, code) in cases {
        a.send_raw(&body).await;
        let f = a.frame().await;
        assert_eq!(
            (f["code"].clone(), f["error"].clone()),
            (json!(0), json!(code)),
            "{body:.40}"
        );
    }
    assert_eq!(
        a.ask(json!({"action":"ping"})).await,
        json!({"code":1,"type":"pong"})
    );
    assert_eq!(
        a.ask(json!({"action":"sync"})).await["data"],
        json!([]),
        "nothing stored"
    );
}

#[tokio::test]
async fn a_retried_client_msg_id_is_stored_once() {
    let s = shared_stack();
    let mut a = Client::connect(s, "e2e5", "111", "222").await;
    let first = a.say("same-id", "once").await;
    let again = a.say("same-id", "once").await;
    assert_eq!(first["message"]["id"], again["message"]["id"]);
    assert_eq!(contents(&a.ask(json!({"action":"sync"})).await), ["once"]);
}

#[tokio::test]
async fn paging_returns_every_row_exactly_once() {
    let s = shared_stack();
    let mut a = Client::connect(s, "e2e6", "111", "222").await;
    for i in 0..25 {
        a.say(&format!("p{i}"), &format!("m{i:02}")).await;
    }
    let mut frame = a.ask(json!({"action":"sync","limit":10})).await;
    let mut all = contents(&frame);
    while frame["has_more"] == json!(true) {
        frame = a
            .ask(json!({"action":"history","before":frame["cursor"],"limit":10}))
            .await;
        let mut older = contents(&frame);
        older.extend(all);
        all = older;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn the_sample_events_run_through_the_real_binaries() {
    let s = shared_stack();
    let connect = std::fs::read_to_string(devtools::repo_root().join("events/connect.json"))
        .unwrap()
        .replace(
            "REPLACE_WITH_A_TOKEN_FROM_mint-token",
            &token("13800000001", "wxdemo", 600),
        );
    let event = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(devtools::repo_root().join("events").join(name)).unwrap(),
        )
        .unwrap()
    };
    let status = |v: Value| v["statusCode"].as_i64().unwrap();
    assert_eq!(
        status(
            s.gateway
                .invoke("ConnectFunction", &serde_json::from_str(&connect).unwrap())
                .await
                .unwrap()
        ),
        200
    );
    // And a user connection (no friendphone)
    let connect_user =
        std::fs::read_to_string(devtools::repo_root().join("events/connect-user.json"))
            .unwrap()
            .replace(
                "REPLACE_WITH_A_TOKEN_FROM_mint-token",
                &token("13800000001", "wxdemo", 600),
            );
    assert_eq!(
        status(
            s.gateway
                .invoke(
                    "ConnectFunction",
                    &serde_json::from_str(&connect_user).unwrap()
                )
                .await
                .unwrap()
        ),
        200
    );
    for name in [
        "default-sync.json",
        "default-send.json",
        "default-seed-chatinfo.json",
        "default-ping.json",
        "default-send-to.json",
        "default-conversations.json",
    ] {
        assert_eq!(
            status(
                s.gateway
                    .invoke("DefaultFunction", &event(name))
                    .await
                    .unwrap()
            ),
            200,
            "{name}"
        );
    }
    assert_eq!(
        status(
            s.gateway
                .invoke("DisconnectFunction", &event("disconnect.json"))
                .await
                .unwrap()
        ),
        200
    );
    // And a refused one: the sample connect event without a token
    assert_eq!(
        status(
            s.gateway
                .invoke("ConnectFunction", &event("connect.json"))
                .await
                .unwrap()
        ),
        401
    );
}

fn dynamodb(stack: &Stack) -> aws_sdk_dynamodb::Client {
    local_stack::clients::dynamodb(&stack.dynamodb_endpoint())
}

/// The live connections in `user`'s registry, oldest first, read straight from DynamoDB Local.
async fn registered(stack: &Stack, app: &str, user: &str) -> Vec<String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let out = dynamodb(stack)
        .get_item()
        .table_name(&devtools::chat::tables(stack).connections)
        .key(
            "connection_id",
            AttributeValue::S(format!("r#{app}#{user}")),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let number = |m: &std::collections::HashMap<String, AttributeValue>, k: &str| -> i64 {
        m[k].as_n().unwrap().parse().unwrap()
    };
    let mut live: Vec<(i64, String)> = match out.item.as_ref().and_then(|i| i.get("conns")) {
        Some(AttributeValue::M(conns)) => conns
            .iter()
            .filter_map(|(id, e)| {
                let e = e.as_m().ok()?;
                (number(e, "exp") > now_s).then(|| (number(e, "at"), id.clone()))
            })
            .collect(),
        _ => Vec::new(),
    };
    live.sort();
    live.into_iter().map(|(_, id)| id).collect()
}

/// How many live connections `user` holds in `app`.
async fn live_connections(stack: &Stack, app: &str, user: &str) -> usize {
    registered(stack, app, user).await.len()
}

#[tokio::test]
async fn a_client_that_vanishes_is_removed_by_the_next_post_410() {
    // GIVEN a gateway that, like AWS at times, delivers no $disconnect for a dropped socket
    let mut opts = options();
    opts.gateway.disconnect_on_abrupt_close = false;
    // A 410 removes records older than this grace period (30 s by default)
    opts.env.insert("GONE_GRACE_SECONDS".into(), "1".into());
    let stack = Stack::start(opts).await.unwrap();
    let mut ann = Client::connect(&stack, "e2e7", "111", "222").await;
    let bob = Client::connect(&stack, "e2e7", "222", "111").await;
    assert_eq!(live_connections(&stack, "e2e7", "222").await, 1);
    // WHEN Bob's socket vanishes without a close frame
    drop(bob);
    for _ in 0..50 {
        if stack.gateway.connection_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        live_connections(&stack, "e2e7", "222").await,
        1,
        "no $disconnect arrived"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await; // past the grace period
                                                           // THEN Ann's next message meets a 410 for Bob, and his record goes
    ann.say("x", "anyone?").await;
    let mut gone = false;
    for _ in 0..50 {
        if live_connections(&stack, "e2e7", "222").await == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the gone connection's record was deleted");
    assert_eq!(
        live_connections(&stack, "e2e7", "111").await,
        1,
        "the sender's stays"
    );
}

#[tokio::test]
async fn a_dynamodb_outage_gives_error_frames_and_recovery_loses_and_duplicates_nothing() {
    let stack = Stack::start(options()).await.unwrap();
    let mut ann = Client::connect(&stack, "e2e8", "111", "222").await;
    let mut bob = Client::connect(&stack, "e2e8", "222", "111").await;
    ann.say("before", "before the outage").await;
    bob.frame().await;
    // WHEN DynamoDB Local goes away
    stack.stop_dynamodb();
    let f = ann
        .ask(
            json!({"action":"send","client_msg_id":"during","chat_type":0,"chat_content":"during"}),
        )
        .await;
    // THEN the sender gets an error frame that says nothing internal, and Bob nothing
    assert_eq!(
        (f["code"].clone(), f["error"].clone()),
        (json!(0), json!("internal")),
        "{f}"
    );
    bob.silent_for(Duration::from_millis(300)).await;
    // WHEN it is back, the client retries the same message
    stack.restart_dynamodb().unwrap();
    ann.say("during", "during").await;
    assert_eq!(
        contents(&bob.frame().await),
        ["before the outage", "during"]
    );
    assert_eq!(
        contents(&ann.ask(json!({"action":"sync"})).await),
        ["before the outage", "during"]
    );
}

#[tokio::test]
async fn api_gateway_limits_close_idle_oversized_and_old_connections() {
    let mut opts = options();
    opts.gateway.limits = apigw::Limits {
        idle_timeout: Duration::from_millis(1500),
        max_lifetime: Duration::from_secs(4),
        max_message_bytes: 2048,
    };
    let stack = Stack::start(opts).await.unwrap();
    // Idle: closed with 1001 after the idle timeout
    let mut idle = Client::connect(&stack, "e2e9", "111", "222").await;
    assert_eq!(idle.close_code().await, 1001);
    // Oversized: a frame over the limit closes with 1009
    let mut big = Client::connect(&stack, "e2e9", "111", "222").await;
    big.send_raw(&"x".repeat(3000)).await;
    assert_eq!(big.close_code().await, 1009);
    // Lifetime: pinging keeps it from idling, but not past the maximum
    let mut old = Client::connect(&stack, "e2e9", "111", "222").await;
    let started = std::time::Instant::now();
    let code = loop {
        tokio::select! {
            code = old.close_code() => break code,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        old.send(json!({"action":"ping"})).await;
    };
    assert_eq!(code, 1001);
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[tokio::test]
async fn the_browser_app_is_served_from_the_gateways_origin() {
    let s = shared_stack();
    let (status, head, page) = http(s, "GET", "/", false, "").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/html"));
    assert!(
        head.contains("content-security-policy: default-src 'self'; script-src 'self';"),
        "{head}"
    );
    assert!(page.contains(r#"<script src="app.js"></script>"#));
    // AND the page carries its own policy, for wherever else it is served
    let meta = page
        .split("<meta http-equiv=\"Content-Security-Policy\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page has a CSP meta tag");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(meta.contains(directive), "{directive}: {meta}");
    }
    assert!(
        !meta.contains("unsafe-inline") && !meta.contains("unsafe-eval"),
        "{meta}"
    );
    // the mini-program's client and views, byte for byte: one implementation for both apps
    let root = devtools::repo_root();
    for file in ["chat.js", "view.js"] {
        let (status, head, body) = http(s, "GET", &format!("/{file}"), false, "").await;
        assert_eq!(status, 200, "{file}");
        assert!(head.contains("text/javascript"), "{head}");
        let original =
            std::fs::read_to_string(root.join("clients/miniprogram").join(file)).unwrap();
        assert_eq!(body, original, "{file}");
    }
    for file in ["app.js", "app.css", "wx-web.js"] {
        assert_eq!(
            http(s, "GET", &format!("/{file}"), false, "").await.0,
            200,
            "{file}"
        );
    }
    assert_eq!(http(s, "GET", "/Cargo.toml", false, "").await.0, 404);
}

/// One HTTP/1.1 request to the gateway; returns (status, head, body).
async fn http(
    stack: &Stack,
    method: &str,
    path: &str,
    signed: bool,
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = stack
        .ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let auth = if signed {
        "Authorization: AWS4-HMAC-SHA256 Credential=local/20261125/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00\r\n"
    } else {
        ""
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    let status = resp[9..12].parse().unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn the_management_api_posts_describes_and_deletes_connections() {
    let s = shared_stack();
    let mut ann = Client::connect(s, "e2e10", "111", "222").await;
    ann.ask(json!({"action":"ping"})).await;
    // The connection id, as the functions know it, from the user's registry
    let id = registered(s, "e2e10", "111").await[0].clone();
    let path = format!("/prod/@connections/{}", id.replace('=', "%3D"));

    assert_eq!(
        http(s, "POST", &path, false, "x").await.0,
        403,
        "unsigned calls are refused"
    );
    let (status, _, body) = http(s, "GET", &path, true, "").await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["Identity"]["SourceIp"], "127.0.0.1");
    assert!(info["ConnectedAt"].as_str().unwrap().starts_with("20"));
    assert_eq!(http(s, "POST", &path, true, r#"{"hello":1}"#).await.0, 200);
    assert_eq!(ann.frame().await, json!({"hello":1}));
    assert_eq!(
        http(s, "POST", &path, true, &"y".repeat(129 * 1024))
            .await
            .0,
        413
    );
    assert_eq!(http(s, "DELETE", &path, true, "").await.0, 204);
    assert_eq!(ann.close_code().await, 1000);
    let mut gone = 0;
    for _ in 0..50 {
        gone = http(s, "GET", &path, true, "").await.0;
        if gone == 410 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gone, 410);
    assert_eq!(http(s, "POST", &path, true, "x").await.0, 410);
}

// ---------------------------------------------------------------- media

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, _| image::Rgb([200, (x % 256) as u8, 10]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn web() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

async fn download(url: &str) -> (u16, Vec<u8>) {
    let r = web().get(url).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

impl Client {
    /// Asks for a ticket and returns the `upload` frame.
    async fn ticket(
        &mut self,
        chat_type: u8,
        content_type: &str,
        size: usize,
        dims: Option<(u32, u32)>,
    ) -> Value {
        let mut f = json!({"action":"upload","req_id":"r1","chat_type":chat_type,
                           "content_type":content_type,"size":size});
        if let Some((w, h)) = dims {
            f["width"] = w.into();
            f["height"] = h.into();
        }
        let t = self.ask(f).await;
        assert_eq!(t["type"], "upload", "{t}");
        t
    }
}

/// Uploads with the ticket's POST form, as `wx.uploadFile` and the browser app do.
async fn post_form(t: &Value, bytes: Vec<u8>) -> u16 {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in t["post"]["fields"].as_object().unwrap() {
        form = form.text(k.clone(), v.as_str().unwrap().to_owned());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("f"),
    );
    let url = t["post"]["url"].as_str().unwrap();
    web()
        .post(url)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Uploads with the ticket's presigned PUT and its signed headers.
async fn put_object(t: &Value, bytes: Vec<u8>) -> u16 {
    let mut req = web().put(t["put"]["url"].as_str().unwrap());
    for (k, v) in t["put"]["headers"].as_object().unwrap() {
        if !k.eq_ignore_ascii_case("content-length") {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
    }
    req.body(bytes).send().await.unwrap().status().as_u16()
}

/// Waits until the thumbnail function has handled the sent copy (`m/…`) of the upload `key`
/// (the send's copy is what gets a thumbnail); returns its outcome.
async fn thumbnail_ran(s: &Stack, key: &str) -> Result<(), String> {
    let key = key.replacen("u/", "m/", 1);
    s.s3_deliveries()
        .expect("the stack runs S3")
        .wait_for(Duration::from_secs(30), |d| {
            d.function == "ThumbnailFunction" && d.key == key
        })
        .await
        .expect("the upload's event reached the thumbnail function")
        .outcome
}

#[tokio::test]
async fn an_image_posted_with_the_form_reaches_both_users_with_its_thumbnail() {
    // GIVEN Ann and Bob in their conversation, and an 800x600 PNG on Ann's phone
    let s = shared_stack();
    let mut ann = Client::connect(s, "e2em1", "111", "222").await;
    let mut bob = Client::connect(s, "e2em1", "222", "111").await;
    ann.ask(json!({"action":"sync"})).await;
    bob.ask(json!({"action":"sync"})).await;
    let bytes = png(800, 600);
    // WHEN Ann gets a ticket, uploads with the POST form and sends the key
    let t = ann
        .ticket(1, "image/png", bytes.len(), Some((800, 600)))
        .await;
    let key = t["key"].as_str().unwrap().to_owned();
    let status = post_form(&t, bytes.clone()).await;
    assert!((200..300).contains(&status), "upload answered {status}");
    let ack = ann
        .ask(json!({"action":"send","client_msg_id":"img1","chat_type":1,"chat_content":key}))
        .await;
    assert_eq!(ack["client_msg_id"], "img1", "{ack}");
    let at_bob = bob.frame().await;
    // THEN both rows download the same bytes, with type, size and dimensions
    for f in [&ack, &at_bob] {
        let row = f["data"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(row["chat_type"], 1);
        assert_eq!(row["media"]["content_type"], "image/png");
        assert_eq!(row["media"]["size"], bytes.len());
        assert_eq!(
            (
                row["media"]["width"].clone(),
                row["media"]["height"].clone()
            ),
            (json!(800), json!(600))
        );
        assert_eq!(
            download(row["content"].as_str().unwrap()).await,
            (200, bytes.clone())
        );
    }
    // AND the thumbnail function wrote a JPEG of at most 320 px where the row points
    assert_eq!(thumbnail_ran(s, &key).await, Ok(()));
    let row = &at_bob["data"].as_array().unwrap().last().unwrap().clone();
    let thumb_url = row["media"]["thumb_url"].as_str().unwrap();
    let (status, thumb) = download(thumb_url).await;
    assert_eq!(status, 200);
    let decoded = image::load_from_memory_with_format(&thumb, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 240));
}

#[tokio::test]
async fn bytes_uploaded_to_a_sent_tickets_key_change_nothing_the_peer_sees() {
    // GIVEN Ann's image, uploaded and sent, and its thumbnail made
    let s = shared_stack();
    let mut ann = Client::connect(s, "e2em5", "111", "222").await;
    let mut bob = Client::connect(s, "e2em5", "222", "111").await;
    bob.ask(json!({"action":"sync"})).await;
    let first = png(800, 600);
    let t = ann
        .ticket(1, "image/png", first.len(), Some((800, 600)))
        .await;
    let key = t["key"].as_str().unwrap().to_owned();
    assert_eq!(put_object(&t, first.clone()).await, 200);
    ann.ask(json!({"action":"send","client_msg_id":"swap1","chat_type":1,"chat_content":key}))
        .await;
    let row = bob.frame().await["data"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(thumbnail_ran(s, &key).await, Ok(()));
    let thumb_url = row["media"]["thumb_url"].as_str().unwrap().to_owned();
    let (status, thumb) = download(&thumb_url).await;
    assert_eq!(status, 200);
    // WHEN, with the ticket still valid, another image goes to the same key (the POST form
    // takes any size up to the ticket's)
    let other = png(400, 300);
    assert!(other.len() <= first.len());
    let status = post_form(&t, other).await;
    assert!((200..300).contains(&status), "upload answered {status}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // THEN the peer's thumbnail and image are still the sent ones: no thumbnail was made from
    // the upload area, and the message points at the copy the send made
    assert_eq!(download(&thumb_url).await, (200, thumb));
    assert_eq!(
        download(row["content"].as_str().unwrap()).await,
        (200, first)
    );
    let runs = s.s3_deliveries().unwrap().all();
    assert!(
        runs.iter().all(|d| d.key != key),
        "the upload area is not subscribed"
    );
}

#[tokio::test]
async fn a_video_put_with_a_poster_reaches_both_users() {
    let s = shared_stack();
    let mut ann = Client::connect(s, "e2em2", "111", "222").await;
    let mut bob = Client::connect(s, "e2em2", "222", "111").await;
    bob.ask(json!({"action":"sync"})).await;
    // GIVEN a "video" and its poster frame, each uploaded with a PUT ticket
    let video: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let poster = jpeg(640, 360);
    let tv = ann.ticket(2, "video/mp4", video.len(), None).await;
    let tp = ann
        .ticket(1, "image/jpeg", poster.len(), Some((640, 360)))
        .await;
    assert_eq!(put_object(&tv, video.clone()).await, 200);
    assert_eq!(put_object(&tp, poster.clone()).await, 200);
    // WHEN Ann sends the video naming the poster
    let ack = ann
        .ask(json!({"action":"send","client_msg_id":"vid1","chat_type":2,
                    "chat_content":tv["key"],"poster":tp["key"]}))
        .await;
    let at_bob = bob.frame().await;
    // THEN both sides can play the video and show the poster
    for f in [&ack, &at_bob] {
        let row = f["data"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(row["chat_type"], 2, "{row}");
        assert_eq!(row["media"]["content_type"], "video/mp4");
        assert_eq!(
            download(row["content"].as_str().unwrap()).await,
            (200, video.clone())
        );
        let poster_url = row["media"]["poster_url"].as_str().unwrap();
        assert_eq!(download(poster_url).await, (200, poster.clone()));
    }
    assert_eq!(thumbnail_ran(s, tp["key"].as_str().unwrap()).await, Ok(()));
}

#[tokio::test]
async fn media_refusals_come_at_ticket_time_or_at_send_and_store_nothing() {
    let s = shared_stack();
    let mut ann = Client::connect(s, "e2em3", "111", "222").await;
    let mut bob = Client::connect(s, "e2em3", "222", "111").await;
    let mut ann_elsewhere = Client::connect(s, "e2em3b", "111", "222").await;
    // Ticket time: too large, wrong type
    for (ct, kind, size, code) in [
        ("image/jpeg", 1, 10_485_761, "media_too_large"),
        ("video/mp4", 2, 26_214_401, "media_too_large"),
        ("text/html", 1, 100, "bad_content_type"),
    ] {
        let f = ann
            .ask(json!({"action":"upload","req_id":"big","chat_type":kind,"content_type":ct,"size":size}))
            .await;
        assert_eq!(
            (f["error"].as_str(), f["req_id"].as_str()),
            (Some(code), Some("big")),
            "{f}"
        );
    }
    // Send time: Bob's key, a key from Ann's other app, a key never uploaded, a wrong type
    let bobs = bob.ticket(1, "image/jpeg", 10, None).await;
    assert_eq!(put_object(&bobs, vec![1; 10]).await, 200);
    let other_app = ann_elsewhere.ticket(1, "image/jpeg", 10, None).await;
    assert_eq!(put_object(&other_app, vec![1; 10]).await, 200);
    let never = ann.ticket(1, "image/jpeg", 10, None).await;
    let video = ann.ticket(2, "video/mp4", 10, None).await;
    assert_eq!(put_object(&video, vec![1; 10]).await, 200);
    for (i, (key, kind, code)) in [
        (&bobs["key"], 1, "bad_media_key"),
        (&other_app["key"], 1, "bad_media_key"),
        (&never["key"], 1, "media_missing"),
        (&video["key"], 1, "media_mismatch"),
    ]
    .into_iter()
    .enumerate()
    {
        let cmid = format!("bad{i}");
        let f = ann
            .ask(json!({"action":"send","client_msg_id":cmid,"chat_type":kind,"chat_content":key}))
            .await;
        assert_eq!(f["error"], code, "{f}");
        assert_eq!(f["client_msg_id"], cmid.as_str());
    }
    // Objects a ticket could never produce, put straight into the local S3 under Ann's owner
    // segment: another type behind a .jpg key, and an image over the 10 MB limit
    let s3 = local_stack::clients::s3(&s.s3_endpoint().unwrap());
    let owner =
        shared::domain::media::OwnerKey::from_secret(devtools::chat::LOCAL_MEDIA_KEY.as_bytes())
            .owner("e2em3", "111");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let kind = shared::domain::media::MediaKind::Image;
    for (i, (ct, size)) in [("text/html", 100usize), ("image/jpeg", 10_485_761)]
        .into_iter()
        .enumerate()
    {
        let key =
            shared::domain::media::new_key(kind, owner.clone(), "image/jpeg", None, now + i as i64)
                .upload_key();
        s3.put_object()
            .bucket(&s.app.buckets[0].name)
            .key(&key)
            .content_type(ct)
            .body(vec![0u8; size].into())
            .send()
            .await
            .unwrap();
        let f = ann
            .ask(json!({"action":"send","client_msg_id":format!("odd{i}"),"chat_type":1,"chat_content":key}))
            .await;
        assert_eq!(f["error"], "media_mismatch", "{ct} {size}: {f}");
    }
    // AND nothing was stored: the conversation is still empty
    assert_eq!(ann.ask(json!({"action":"sync"})).await["data"], json!([]));
}

#[tokio::test]
async fn a_corrupt_image_gets_no_thumbnail_and_its_message_still_works() {
    let s = shared_stack();
    let mut ann = Client::connect(s, "e2em4", "111", "222").await;
    let bytes = b"this is not a PNG at all".to_vec();
    let t = ann.ticket(1, "image/png", bytes.len(), None).await;
    assert_eq!(put_object(&t, bytes.clone()).await, 200);
    let key = t["key"].as_str().unwrap();
    let ack = ann
        .ask(json!({"action":"send","client_msg_id":"bad-img","chat_type":1,"chat_content":key}))
        .await;
    // The thumbnail function handled the sent copy's event without failing, and wrote nothing
    assert_eq!(thumbnail_ran(s, key).await, Ok(()));
    let row = ack["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        download(row["content"].as_str().unwrap()).await,
        (200, bytes)
    );
    let (status, _) = download(row["media"]["thumb_url"].as_str().unwrap()).await;
    assert_eq!(status, 404, "no thumbnail for a corrupt image");
}

#[tokio::test]
async fn the_browser_app_chats_between_two_users_in_chromium() {
    // GIVEN the app (clients/web/) open as Ann and as Bob in headless Chromium, from links
    // like the ones the run command prints (the session in the fragment)
    let s = shared_stack();
    let page = s.ws_url.replace("ws://", "http://").replace("/prod", "/");
    let (ann, bob) = ("13900000001", "13900000002");
    let link = |me: &str, name: &str| {
        format!(
            "{page}#userphone={me}&name={name}&app_sid=e2eweb&token={}",
            token(me, "e2eweb", 600)
        )
    };
    let dir = std::env::temp_dir().join(format!("chat-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("photo.png");
    std::fs::write(&image, png(1000, 500)).unwrap();
    let root = devtools::repo_root();
    let artifacts = root.join("target/test-artifacts/browser");
    // WHEN they chat (the script drives both windows step by step; see tests/browser/)
    let out = tokio::time::timeout(
        Duration::from_secs(150),
        tokio::process::Command::new("node")
            .arg(root.join("tests/browser/web-chat.mjs"))
            .args([link(ann, "Ann"), link(bob, "Bob")])
            .args([ann, bob])
            .arg(&image)
            .arg(&artifacts)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test finishes in time")
    .expect("node runs (infra/install.sh installs Chromium and playwright-core)");
    let _ = std::fs::remove_dir_all(&dir);
    let report = String::from_utf8_lossy(&out.stdout);
    // THEN every step passed: unread counts rise and clear, read marks, typing, the image on
    // the other side, a video, recall, a reconnect that misses nothing, no duplicate, no console error
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(v["steps"].as_array().map(Vec::len), Some(10), "{v}");
    assert!(artifacts.join("bob.png").is_file(), "screenshots saved");
}

// ---------------------------------------------------------------- inbox

fn send_to(to: &str, cmid: &str, text: &str) -> Value {
    json!({"action":"send","to":to,"client_msg_id":cmid,"chat_type":0,"chat_content":text})
}

#[tokio::test]
async fn two_user_connections_and_the_seeds_mode_see_one_consistent_state() {
    let s = shared_stack();
    let app = "e2e11";
    // GIVEN Ann on two user connections (devices) and on the seed's page for Bob; Bob on a
    // user connection; Cid, a third user, on his
    let mut ann1 = Client::user(s, app, "111").await;
    let mut ann2 = Client::user(s, app, "111").await;
    let mut ann_page = Client::connect(s, app, "111", "222").await;
    let mut bob = Client::user(s, app, "222").await;
    let mut cid = Client::user(s, app, "333").await;
    assert_eq!(
        ann_page.ask(json!({"action":"sync"})).await["data"],
        json!([])
    );

    // WHEN Bob sends twice
    let mut ids = Vec::new();
    for (i, text) in ["hi ann", "are you there"].iter().enumerate() {
        let ack = bob.ask(send_to("111", &format!("b{i}"), text)).await;
        assert_eq!(
            (ack["type"].as_str(), ack["unread"].as_i64()),
            (Some("message"), Some(0))
        );
        assert_eq!(ack["client_msg_id"], format!("b{i}"));
        ids.push(ack["message"]["id"].as_str().unwrap().to_owned());
        // THEN both of Ann's devices get it with her unread count, her page the new list
        for ann in [&mut ann1, &mut ann2] {
            let f = ann.expect("message").await;
            assert_eq!(
                (f["peer"].as_str(), f["unread"].as_i64()),
                (Some("222"), Some(i as i64 + 1))
            );
            assert_eq!(f["message"]["content"], *text);
            assert!(f.get("client_msg_id").is_none());
        }
        let page = ann_page.expect("history").await;
        assert_eq!(contents(&page).last().unwrap(), text);
    }
    // AND the list agrees on both devices
    for ann in [&mut ann1, &mut ann2] {
        let list = ann.ask(json!({"action":"conversations"})).await;
        assert_eq!(list["type"], "conversations");
        assert_eq!(list["data"][0]["peer"], "222");
        assert_eq!(list["data"][0]["peername"], "name-222");
        assert_eq!(list["data"][0]["unread"], 2);
        assert_eq!(list["data"][0]["last"]["id"], ids[1].as_str());
    }

    // WHEN Ann reads on one device
    let entry = ann1
        .ask(json!({"action":"read","to":"222","id":ids[1]}))
        .await;
    // THEN both devices show nothing unread, Bob gets the receipt, the seed's page nothing
    assert_eq!(entry["type"], "conversation");
    assert_eq!(entry["data"]["unread"], 0);
    assert_eq!(ann2.expect("conversation").await["data"]["unread"], 0);
    assert_eq!(
        bob.frame().await,
        json!({"code":1,"type":"read","peer":"111","id":ids[1]})
    );
    let list = ann2.ask(json!({"action":"conversations"})).await;
    assert_eq!(list["data"][0]["unread"], 0);
    assert_eq!(
        bob.ask(json!({"action":"conversations"})).await["data"][0]["peer_read_id"],
        ids[1].as_str()
    );

    // WHEN Ann types THEN only Bob hears it
    ann2.send(json!({"action":"typing","to":"222"})).await;
    assert_eq!(
        bob.frame().await,
        json!({"code":1,"type":"typing","peer":"111"})
    );

    // WHEN Ann answers from her second device and recalls it
    let ack = ann2.ask(send_to("222", "a1", "oops")).await;
    let oops = ack["message"]["id"].as_str().unwrap().to_owned();
    assert_eq!(ann1.expect("message").await["message"]["id"], oops.as_str());
    assert_eq!(
        contents(&ann_page.expect("history").await).last().unwrap(),
        "oops"
    );
    assert_eq!(bob.expect("message").await["unread"], 1);
    let recalled = ann2
        .ask(json!({"action":"recall","to":"222","id":oops}))
        .await;
    // THEN the row reads recalled everywhere
    assert_eq!(
        recalled,
        json!({"code":1,"type":"recall","peer":"222","id":oops})
    );
    assert_eq!(ann1.expect("recall").await["id"], oops.as_str());
    assert_eq!(
        bob.frame().await,
        json!({"code":1,"type":"recall","peer":"111","id":oops})
    );
    let page = ann_page.expect("history").await;
    let row = page["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (row["recalled"].as_bool(), row["content"].as_str()),
        (Some(true), Some(""))
    );
    let synced = bob.ask(json!({"action":"sync","to":"111"})).await;
    assert_eq!(synced["peer"], "111");
    assert_eq!(
        synced["data"].as_array().unwrap().last().unwrap()["recalled"],
        true
    );
    let last = &ann1.ask(json!({"action":"conversations"})).await["data"][0]["last"];
    assert_eq!(
        (last["recalled"].as_bool(), last["content"].as_str()),
        (Some(true), Some(""))
    );

    // AND the third user saw none of it, and nothing more reached the seed's page or Ann
    cid.silent_for(Duration::from_millis(500)).await;
    ann_page.silent_for(Duration::from_millis(10)).await;
    ann2.silent_for(Duration::from_millis(10)).await;
    assert_eq!(
        cid.ask(json!({"action":"conversations"})).await["data"],
        json!([])
    );
}

#[tokio::test]
async fn a_connection_made_a_moment_ago_gets_the_very_next_message() {
    let s = shared_stack();
    let mut bob = Client::user(s, "e2e12", "222").await;
    for i in 0..5 {
        // GIVEN Ann's connection, open this instant
        let mut ann = Client::user(s, "e2e12", "111").await;
        // WHEN Bob sends at once THEN it arrives
        bob.ask(send_to("111", &format!("n{i}"), &format!("now {i}")))
            .await;
        let f = ann.expect("message").await;
        assert_eq!(f["message"]["content"], format!("now {i}"));
    }
}

#[tokio::test]
async fn a_user_connection_must_name_its_peer() {
    let s = shared_stack();
    let mut ann = Client::user(s, "e2e13", "111").await;
    for body in [
        json!({"action":"sync"}),
        json!({"action":"send","chat_type":0,"chat_content":"to whom?"}),
        json!({"action":"history","to":"111"}),
        json!({"action":"typing","to":"no#way"}),
    ] {
        let f = ann.ask(body.clone()).await;
        assert_eq!(f["error"], "bad_peer", "{body}");
    }
    let mut page = Client::connect(s, "e2e13", "111", "222").await;
    assert_eq!(
        page.ask(send_to("333", "x", "elsewhere")).await["error"],
        "bad_peer"
    );
}

#[tokio::test]
async fn the_cap_closes_the_oldest_connection_and_an_old_message_cannot_be_recalled() {
    // GIVEN a stack with a cap of 2 connections per user and a 1 s recall window
    let mut opts = options();
    opts.parameters
        .insert("MaxConnectionsPerUser".into(), "2".into());
    opts.parameters
        .insert("RecallWindowSeconds".into(), "1".into());
    let stack = Stack::start(opts).await.unwrap();
    let mut oldest = Client::user(&stack, "e2e14", "111").await;
    let mut page = Client::connect(&stack, "e2e14", "111", "222").await;
    assert_eq!(oldest.ask(json!({"action":"ping"})).await["type"], "pong");
    let first = registered(&stack, "e2e14", "111").await[0].clone();
    // WHEN a third connection is made
    let mut newest = Client::user(&stack, "e2e14", "111").await;
    // THEN the oldest is closed and out of the registry; the other two work
    assert_eq!(oldest.close_code().await, 1000);
    let now = registered(&stack, "e2e14", "111").await;
    assert_eq!(now.len(), 2);
    assert!(!now.contains(&first));
    assert_eq!(page.ask(json!({"action":"ping"})).await["type"], "pong");
    // AND a message recalled after the window is refused and stays
    let ack = newest.ask(send_to("222", "m", "kept")).await;
    page.expect("history").await;
    let id = ack["message"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let f = newest
        .ask(json!({"action":"recall","to":"222","id":id}))
        .await;
    assert_eq!(f["error"], "recall_window_passed", "{f}");
    assert_eq!(
        contents(&page.ask(json!({"action":"sync"})).await),
        ["kept"]
    );
}

// ---------------------------------------------------------------- what the logs hold

#[tokio::test]
async fn the_functions_logs_hold_no_token_secret_body_or_phone_number() {
    // GIVEN a stack that keeps what its functions log (INFO, as deployed)
    let mut opts = options();
    opts.logs = Logs::Capture;
    let stack = Stack::start(opts).await.unwrap();
    let s = &stack;
    let (app, ann, bob) = ("e2elog", "13712345678", "13787654321");
    let body = "the-body-qz7-must-not-be-logged";
    let ann_token = token(ann, app, 600);
    // WHEN a session touches every function and most paths, refusals included
    let forged = format!("{}x", &ann_token[..ann_token.len() - 1]);
    let refused = |q: String| async move { Client::open(s, &q).await.err() };
    assert_eq!(
        refused(format!("userphone={ann}&app_sid={app}&token={forged}")).await,
        Some(401)
    );
    assert_eq!(
        refused(format!("userphone={bob}&app_sid={app}&token={ann_token}")).await,
        Some(403)
    );
    let mut a = Client::open(
        s,
        &format!("userphone={ann}&app_sid={app}&token={ann_token}"),
    )
    .await
    .unwrap();
    let mut b = Client::connect(s, app, bob, ann).await;
    assert_eq!(b.ask(json!({"action":"sync"})).await["type"], "history");
    let sent = a.ask(send_to(bob, "log-1", body)).await;
    assert_eq!(sent["type"], "message", "{sent}");
    let id = sent["message"]["id"].as_str().unwrap().to_owned();
    assert_eq!(b.expect("history").await["data"][0]["content"], body);
    assert_eq!(a.ask(send_to(bob, "log-1", body)).await["type"], "message");
    let other = a.ask(send_to("13700000000", "log-2", body)).await;
    assert_eq!(other["type"], "message", "a new conversation: {other}");
    // (reading one's own message moves no position and answers the entry as the list shows it)
    let read = a.ask(json!({"action":"read","to":bob,"id":id})).await;
    assert_eq!(read["type"], "conversation", "{read}");
    assert_eq!(read["data"]["peer"], bob, "{read}");
    a.send(json!({"action":"typing","to":bob})).await;
    let bad = a
        .ask(json!({"action":"send","to":bob,"client_msg_id":"bad id!","chat_type":0,"chat_content":body}))
        .await;
    assert_eq!(bad["type"], "error", "{bad}");
    a.send_raw(&format!("{{\"action\":\"send\",\"to\":\"{ann}\" {body}"))
        .await;
    assert_eq!(a.frame().await["type"], "error");
    // media: a ticket, the upload, the thumbnail function, the send
    let png = png(64, 48);
    let t = a.ticket(1, "image/png", png.len(), Some((64, 48))).await;
    assert_eq!(post_form(&t, png).await, 204);
    let key = t["key"].as_str().unwrap();
    let pic = a
        .ask(json!({"action":"send","to":bob,"client_msg_id":"log-3","chat_type":1,"chat_content":key}))
        .await;
    assert_eq!(pic["type"], "message", "{pic}");
    assert_eq!(thumbnail_ran(s, key).await, Ok(()));
    b.expect("history").await;
    let recalled = a.ask(json!({"action":"recall","to":bob,"id":id})).await;
    assert_eq!(recalled["type"], "recall", "{recalled}");
    drop(a);
    drop(b);
    // ($disconnect of both, logged)
    let deadline = std::time::Instant::now() + WAIT;
    let logs = loop {
        let logs = stack.function_logs();
        let gone = logs.iter().filter(|l| l.contains("disconnected")).count();
        if gone >= 2 || std::time::Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // THEN every function logged (this test cannot pass on empty logs) ...
    for f in [
        "[ConnectFunction]",
        "[DefaultFunction]",
        "[DisconnectFunction]",
        "[ThumbnailFunction]",
    ] {
        assert!(
            logs.iter()
                .any(|l| l.starts_with(f) && !l.contains("REPORT")),
            "{f} logged nothing:\n{}",
            logs.join("\n")
        );
    }
    // ... and no line holds a token, its signature, the secret, a body or an account
    let signature = ann_token.rsplit('.').next().unwrap();
    let payload = ann_token.split('.').nth(1).unwrap();
    for (what, needle) in [
        ("a token", ann_token.as_str()),
        ("a token's signature", signature),
        ("a token's claims", payload),
        ("the signing secret", SECRET),
        ("a message body", body),
        ("Ann's account", ann),
        ("Bob's account", bob),
        ("a stranger's account", "13700000000"),
    ] {
        let leaks: Vec<_> = logs.iter().filter(|l| l.contains(needle)).collect();
        assert!(leaks.is_empty(), "{what} logged:\n{leaks:#?}");
    }
}

// ---------------------------------------------------------------- other local users

/// Runs `python3 -c <code>` as `nobody` (setpriv) and returns what it printed.
fn as_nobody(code: &str) -> String {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["python3", "-c", code])
        // (the checkout may be in a directory that user cannot enter)
        .current_dir("/")
        .output()
        .expect("setpriv and python3 run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
#[ignore = "needs root"]
async fn another_local_user_cannot_use_the_stacks_inner_endpoints() {
    // GIVEN the stack, started by this user (root in CI, which can act as another one; `make
    // test` runs this with --include-ignored as root)
    assert_eq!(unsafe { libc::geteuid() }, 0, "run as root");
    let s = shared_stack();
    let port = |url: &str| {
        url.rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let mgmt = port(&s.management_url);
    let s3 = port(&s.s3_endpoint().unwrap());
    let ddb = port(&s.dynamodb_endpoint());
    let status = |p: &str, method: &str, path: &str| {
        format!(
            "import http.client; c=http.client.HTTPConnection('127.0.0.1',{p},timeout=10); \
             c.request('{method}','{path}',body=b'{{}}',headers={{'Authorization':'AWS4-HMAC-SHA256 x'}}); \
             print(c.getresponse().status)"
        )
    };
    // WHEN `nobody` calls the management API (signed, as far as the emulator checks), the S3
    // front, and the forwarder into DynamoDB Local's namespace
    let posted = tokio::task::spawn_blocking(move || {
        (
            as_nobody(&status(&mgmt, "POST", "/prod/@connections/AAAA")),
            as_nobody(&status(&s3, "GET", "/")),
            as_nobody(&format!(
                "import socket; c=socket.create_connection(('127.0.0.1',{ddb}),timeout=10); \
                 c.sendall(b'POST / HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 2\\r\\n\\r\\n{{}}'); \
                 n=0\n\
                 try: n=len(c.recv(100))\n\
                 except ConnectionResetError: pass\n\
                 print(n)"
            )),
        )
    })
    .await
    .unwrap();
    // THEN it is turned away (403; the forwarder closes without a byte) ...
    assert_eq!(posted, ("403".into(), "403".into(), "0".into()));
    // ... while this user's own calls get through (410: no such connection)
    let (code, _, _) = http(s, "POST", "/prod/@connections/AAAA", true, "{}").await;
    assert_eq!(code, 410);
}

#[tokio::test]
async fn messages_sent_back_to_back_are_stored_in_the_order_they_were_sent() {
    // GIVEN a user connection
    let s = shared_stack();
    let mut ann = Client::user(s, "e2e20", "111").await;
    // WHEN it sends 30 messages back to back, without waiting for acknowledgements (the
    // gateway hands them to concurrent function instances)
    let n = 30;
    for i in 0..n {
        ann.send(send_to("222", &format!("o{i:02}"), &format!("t{i:02}")))
            .await;
    }
    // THEN every one is acknowledged (a send that lost too many races is retried, as a client
    // does, with its client_msg_id; it then arrives later than its neighbours)
    let mut acked = std::collections::HashSet::new();
    let mut retried = std::collections::HashSet::new();
    while acked.len() < n {
        let f = ann.frame().await;
        let cmid = f["client_msg_id"].as_str().unwrap_or_default().to_owned();
        match f["type"].as_str() {
            Some("message") => {
                acked.insert(cmid);
            }
            Some("error") if f["error"] == "internal" && !cmid.is_empty() => {
                let i: usize = cmid[1..].parse().unwrap();
                ann.send(send_to("222", &cmid, &format!("t{i:02}"))).await;
                retried.insert(cmid);
            }
            _ => panic!("unexpected frame {f}"),
        }
    }
    // AND each is stored once, in the order of arrival: the order they were sent
    let page = ann
        .ask(json!({"action":"sync","to":"222","limit":100}))
        .await;
    let rows: Vec<(String, i64)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["client_msg_id"].as_str().unwrap().to_owned(),
                r["created_at"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), n, "stored once each: {rows:?}");
    assert!(
        rows.windows(2).all(|w| w[0].1 <= w[1].1),
        "by arrival: {rows:?}"
    );
    // Frames arrive in the order sent, so apart from retried ones (and ties within one
    // millisecond, which may fall either way) the stored order is the send order.
    let sent_order: Vec<&(String, i64)> = rows.iter().filter(|r| !retried.contains(&r.0)).collect();
    for w in sent_order.windows(2) {
        assert!(
            w[0].0 < w[1].0 || w[0].1 == w[1].1,
            "{} stored before {} but sent after it: {rows:?}",
            w[0].0,
            w[1].0
        );
    }
}

/// Waits, when less than 10 s of this calendar minute are left, for the next one: the send
/// rate window is the calendar minute, so sends straddling its end count in two.
async fn early_in_a_minute() {
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into_minute > 50 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
}

#[tokio::test]
async fn a_user_over_max_sends_per_minute_is_refused_and_nothing_is_stored() {
    // GIVEN a stack allowing 3 messages a minute per user, and enough of this minute
    // left for the test (the window is the calendar minute)
    let mut opts = options();
    opts.parameters
        .insert("MaxSendsPerMinute".into(), "3".into());
    let stack = Stack::start(opts).await.unwrap();
    let mut ann = Client::user(&stack, "e2e21", "111").await;
    let mut other = Client::user(&stack, "e2e21", "111").await;
    early_in_a_minute().await;
    // WHEN one connection sends four
    for i in 0..3 {
        let f = ann.ask(send_to("222", &format!("r{i}"), "ok")).await;
        assert_eq!(f["type"], "message", "{f}");
        other.expect("message").await;
    }
    let f = ann.ask(send_to("222", "r3", "too many")).await;
    // THEN the fourth is refused by name, with its id, and not stored or told to anyone
    assert_eq!(f["error"], "rate_limited", "{f}");
    assert_eq!(f["client_msg_id"], "r3");
    other.silent_for(Duration::from_millis(300)).await;
    let page = ann
        .ask(json!({"action":"sync","to":"222","limit":10}))
        .await;
    assert_eq!(contents(&page), ["ok", "ok", "ok"]);
    // AND the limit is the user's: their other connection, and a new one (a reconnect), are
    // refused too
    let f = other.ask(send_to("333", "r4", "other device")).await;
    assert_eq!(f["error"], "rate_limited", "{f}");
    let mut again = Client::user(&stack, "e2e21", "111").await;
    let f = again.ask(send_to("333", "r5", "reconnected")).await;
    assert_eq!(f["error"], "rate_limited", "{f}");
}

// ---------------------------------------------------------------- make dev PARAMS=...

/// `target/debug/local-stack`, as `make dev` runs it (infra/dev.sh passes
/// `PARAMS` as `--parameter-overrides`), with its output read line by line.
struct DevStack {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl DevStack {
    fn start(params: &str) -> DevStack {
        use std::io::BufRead;
        let bin = local_stack::project_root().join("target/debug/local-stack");
        let mut child = std::process::Command::new(bin)
            .args(["--port", "0", "--parameter-overrides", params])
            .env("JWT_SECRET", SECRET)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("target/debug/local-stack runs (cargo build --workspace --bins)");
        let (tx, lines) = std::sync::mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        DevStack { child, lines }
    }

    /// The first line containing `needle`, waiting at most a minute; `None` if the process
    /// ended first.
    fn line_with(&self, needle: &str) -> Option<String> {
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for DevStack {
    fn drop(&mut self) {
        // SIGTERM: the stack stops its servers and functions on the way out.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn make_dev_params_change_a_limit_that_a_client_then_observes() {
    // GIVEN the stack as `make dev PARAMS="MaxSendsPerMinute=2"` runs it
    let dev = DevStack::start("MaxSendsPerMinute=2");
    let said = dev.line_with("Parameters:").expect("the stack came up");
    assert!(said.contains("MaxSendsPerMinute=2"), "{said}");
    let line = dev.line_with("WebSocket:").expect("the stack came up");
    let ws_url = line.split_whitespace().last().unwrap().to_owned();
    // WHEN a user connection sends three messages within the minute
    let q = user_query("111", "devp", &token("111", "devp", 600));
    let mut ws = ChatSocket::open(&ws_url, &q)
        .await
        .expect("handshake accepted");
    // (The window is the calendar minute: three sends straddling its end would count in two
    // minutes, and the third would pass. Start early enough in one.)
    early_in_a_minute().await;
    let mut answers = Vec::new();
    for i in 0..3 {
        ws.send_json(&send_to("222", &format!("p{i}"), "hi"))
            .await
            .unwrap();
        let v = ws.frame(WAIT).await.unwrap();
        answers.push(v["type"].as_str().unwrap_or_default().to_owned());
        if v["type"] == "error" {
            answers.push(v["error"].as_str().unwrap_or_default().to_owned());
        }
    }
    // THEN the limit the parameter set is the one enforced
    assert_eq!(answers, ["message", "message", "error", "rate_limited"]);
}

#[test]
fn make_dev_stops_on_a_parameter_the_template_does_not_declare() {
    // GIVEN `make dev PARAMS="MaxSendsPerMinut=2"` (a typo) and one out of range
    for (params, names) in [
        ("MaxSendsPerMinut=2", "MaxSendsPerMinut"),
        ("MaxConnectionsPerUser=1000", "MaxValue"),
    ] {
        let mut dev = DevStack::start(params);
        // THEN it stops with a message naming it, and no stack comes up
        let status = dev.child.wait().unwrap();
        // (everything it wrote: its pipes are closed, so the readers end and the channel with
        // them; `try_iter` would race them)
        let said: Vec<String> = dev.lines.iter().collect();
        assert!(!status.success(), "{params}: {said:?}");
        assert!(said.iter().any(|l| l.contains(names)), "{params}: {said:?}");
        assert!(!said.iter().any(|l| l.contains("WebSocket:")), "{said:?}");
    }
}
