//! A local API Gateway WebSocket API: `ws://127.0.0.1:<port>/<stage>` for clients and
//! `POST|GET|DELETE /<stage>/@connections/{id}` for the functions, driven by the routes of
//! `template.yaml` and running the real function binaries through [`crate::runtime`].
//!
//! Emulated: handshake refused with `$connect`'s status; API Gateway's event shapes; route
//! selection on `$request.body.<field>`; `$disconnect` when a socket goes away; 410 for gone
//! connections; the message size limit (close 1009 inbound, 413 on posts); idle timeout and
//! maximum connection lifetime (close 1001). Not emulated: see README.md, "How it differs from AWS".

use crate::app::ApiSpec;
use crate::resolve::{LOCAL_ACCOUNT, LOCAL_API_ID};
use crate::runtime::{InvokeError, Invoker};
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// API Gateway's limits, configurable so tests can reach them quickly.
#[derive(Debug, Clone)]
pub struct Limits {
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(7200),
            max_message_bytes: 128 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub limits: Limits,
    /// `$disconnect` is best effort on AWS. `false` drops it when a client vanishes without a
    /// close frame, to exercise the 410 and TTL paths.
    pub disconnect_on_abrupt_close: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            disconnect_on_abrupt_close: true,
        }
    }
}

enum Outbound {
    Text(String),
    Binary(Vec<u8>),
    Close(u16, String),
}

struct Conn {
    id: String,
    tx: mpsc::UnboundedSender<Outbound>,
    connected_at_ms: i64,
    last_active_ms: AtomicI64,
    source_ip: String,
    user_agent: String,
    /// Set by `DELETE @connections/{id}`: the connection ends without waiting for the client.
    deleted: tokio::sync::Notify,
}

impl Conn {
    fn touch(&self) {
        self.last_active_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// The gateway's state, shared by its handlers.
pub struct Gateway {
    api: ApiSpec,
    invoker: Arc<Invoker>,
    options: Options,
    domain: String,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    seq: AtomicU64,
    /// Fault tests: every `post_fault_every`-th POST to @connections answers 500 and delivers
    /// nothing (0 = never).
    post_fault_every: AtomicU64,
    posts: AtomicU64,
    /// Connections that ended (for soak audits), and POSTs to connections that were gone.
    /// Bounded: each keeps its first `AUDIT_CAP` entries.
    ended: Mutex<HashMap<String, Ended>>,
    gone_posts: Mutex<Vec<GonePost>>,
}

/// How many ended connections and gone posts the gateway remembers.
const AUDIT_CAP: usize = 100_000;

/// A connection that ended, as the gateway saw it.
#[derive(Debug, Clone)]
pub struct Ended {
    pub id: String,
    pub connected_at_ms: i64,
    pub closed_at_ms: i64,
    /// The close code (1001 idle or lifetime, 1006 vanished without a close frame, ...).
    pub code: u16,
    /// Whether the gateway invoked `$disconnect` for it.
    pub disconnect_sent: bool,
}

/// A `POST @connections/{id}` answered 410 because the connection was gone.
#[derive(Debug, Clone)]
pub struct GonePost {
    pub id: String,
    pub at_ms: i64,
    /// When the connection had opened, if the gateway remembers it (it ended here).
    pub connected_at_ms: Option<i64>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// API Gateway's `requestTime` (`05/Dec/2026:23:59:00 +0000`), of both API kinds.
pub(crate) fn request_time(ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

impl Gateway {
    /// Binds nothing; [`Gateway::serve`] does. `domain` is what events report (`127.0.0.1:port`).
    pub fn new(api: ApiSpec, invoker: Arc<Invoker>, options: Options, domain: String) -> Arc<Self> {
        Arc::new(Gateway {
            api,
            invoker,
            options,
            domain,
            conns: Mutex::default(),
            seq: AtomicU64::new(0),
            post_fault_every: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            ended: Mutex::default(),
            gone_posts: Mutex::default(),
        })
    }

    /// Every connection that ended so far (at most the first 100,000).
    pub fn ended_connections(&self) -> Vec<Ended> {
        self.ended.lock().expect("lock").values().cloned().collect()
    }

    /// Every POST to a connection that was gone (410) so far (at most the first 100,000).
    pub fn gone_posts(&self) -> Vec<GonePost> {
        self.gone_posts.lock().expect("lock").clone()
    }

    fn note_gone_post(&self, id: &str) {
        let connected_at_ms = self
            .ended
            .lock()
            .expect("lock")
            .get(id)
            .map(|e| e.connected_at_ms);
        let mut posts = self.gone_posts.lock().expect("lock");
        if posts.len() < AUDIT_CAP {
            posts.push(GonePost {
                id: id.to_owned(),
                at_ms: now_ms(),
                connected_at_ms,
            });
        }
    }

    fn note_ended(&self, conn: &Conn, code: u16, disconnect_sent: bool) {
        let mut ended = self.ended.lock().expect("lock");
        if ended.len() < AUDIT_CAP {
            ended.insert(
                conn.id.clone(),
                Ended {
                    id: conn.id.clone(),
                    connected_at_ms: conn.connected_at_ms,
                    closed_at_ms: now_ms(),
                    code,
                    disconnect_sent,
                },
            );
        }
    }

    /// Fault tests: from now on every `every`-th POST to @connections answers 500 and
    /// delivers nothing; 0 turns that off.
    pub fn fail_posts_every(&self, every: u64) {
        self.post_fault_every.store(every, Ordering::SeqCst);
    }

    /// Serves clients and the management API on `listener` until the task is aborted.
    pub fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> tokio::task::JoinHandle<()> {
        let stage = &self.api.stage;
        let app = Router::new()
            .route("/", get(|| async { web_file("index.html") }))
            .route(
                "/{file}",
                get(|Path(file): Path<String>| async move { web_file(&file) }),
            )
            .route(&format!("/{stage}"), get(handshake))
            .route(
                &format!("/{stage}/@connections/{{id}}"),
                get(get_connection)
                    .post(post_to_connection)
                    .delete(delete_connection)
                    // IAM-signed on AWS; locally: only the stack's own user's processes
                    .route_layer(axum::middleware::from_fn(crate::peer::same_user_only)),
            )
            .with_state(self.clone());
        crate::peer::serve(listener, app)
    }

    /// Invokes a function of the template directly, as `sam local invoke` would.
    pub async fn invoke(&self, function: &str, event: &Value) -> Result<Value, InvokeError> {
        self.invoker.invoke(function, event, "direct").await
    }

    /// Closes every connection (1001, without `$disconnect`) and stops the functions.
    pub fn shutdown(&self) {
        let conns: Vec<Arc<Conn>> = self
            .conns
            .lock()
            .expect("lock")
            .drain()
            .map(|(_, c)| c)
            .collect();
        for c in conns {
            let _ = c.tx.send(Outbound::Close(1001, "Going away".into()));
            c.deleted.notify_one();
        }
        self.invoker.shutdown();
    }

    /// Open connections right now.
    pub fn connection_count(&self) -> usize {
        self.conns.lock().expect("lock").len()
    }

    fn next_id(&self) -> String {
        // Real ids look like base64 of 11 bytes: 15 characters and '='.
        let mut bytes = ulid::Ulid::new().to_bytes()[5..].to_vec();
        bytes.truncate(11);
        base64::engine::general_purpose::URL_SAFE.encode(bytes)
    }

    fn request_id(&self) -> String {
        format!(
            "{}{:06}=",
            &ulid::Ulid::new().to_string()[..10],
            self.seq.fetch_add(1, Ordering::Relaxed) % 1_000_000
        )
    }

    fn context(
        &self,
        route: &str,
        event_type: &str,
        conn_id: &str,
        connected_at: i64,
        ip: &str,
        ua: &str,
    ) -> Map<String, Value> {
        let now = now_ms();
        let rid = self.request_id();
        let mut c = Map::new();
        c.insert("routeKey".into(), json!(route));
        c.insert("eventType".into(), json!(event_type));
        c.insert("extendedRequestId".into(), json!(rid));
        c.insert("requestTime".into(), json!(request_time(now)));
        c.insert("messageDirection".into(), json!("IN"));
        c.insert("stage".into(), json!(self.api.stage));
        c.insert("connectedAt".into(), json!(connected_at));
        c.insert("requestTimeEpoch".into(), json!(now));
        c.insert("identity".into(), json!({"sourceIp": ip, "userAgent": ua}));
        c.insert("requestId".into(), json!(rid));
        c.insert("domainName".into(), json!(self.domain));
        c.insert("connectionId".into(), json!(conn_id));
        c.insert("apiId".into(), json!(LOCAL_API_ID));
        c.insert("accountId".into(), json!(LOCAL_ACCOUNT));
        c
    }

    /// One frame, read off the socket at `arrived_ms`.
    async fn on_message(
        self: Arc<Self>,
        conn: Arc<Conn>,
        body: String,
        base64: bool,
        arrived_ms: i64,
    ) {
        let text = (!base64).then_some(body.as_str());
        let Some(route) = select_route(&self.api, text) else {
            let _ = conn.tx.send(Outbound::Text(json!({"message": "Forbidden", "connectionId": conn.id, "requestId": self.request_id()}).to_string()));
            return;
        };
        let mut ctx = self.context(
            &route,
            "MESSAGE",
            &conn.id,
            conn.connected_at_ms,
            &conn.source_ip,
            &conn.user_agent,
        );
        ctx.insert("messageId".into(), json!(self.request_id()));
        // Stamped when the frame was read, not when this task runs: the tasks of one
        // connection's frames run in any order, and `$default` orders messages by this.
        ctx.insert("requestTime".into(), json!(request_time(arrived_ms)));
        ctx.insert("requestTimeEpoch".into(), json!(arrived_ms));
        let event = json!({"requestContext": ctx, "body": body, "isBase64Encoded": base64});
        let function = &self.api.routes[&route];
        if let Err(e) = self.invoker.invoke(function, &event, &route).await {
            // What API Gateway sends a client whose integration failed.
            gateway_log(&format!("{route} failed: {e}"));
            let _ = conn.tx.send(Outbound::Text(json!({"message": "Internal server error", "connectionId": conn.id, "requestId": ctx["requestId"]}).to_string()));
        }
    }

    /// One connection, from the handshake's upgrade to its `$disconnect`.
    async fn run(
        self: Arc<Self>,
        conn: Arc<Conn>,
        socket: WebSocket,
        rx: mpsc::UnboundedReceiver<Outbound>,
        headers: Value,
    ) {
        let (sink, stream) = socket.split();
        let writer = tokio::spawn(write_out(sink, rx));
        let (code, reason, abrupt) = self.clone().read_in(&conn, stream).await;
        let skip_disconnect =
            (abrupt && !self.options.disconnect_on_abrupt_close) || self.invoker.is_closed();
        // (noted before it leaves `conns`, so a post that finds it gone finds it here)
        self.note_ended(&conn, code, !skip_disconnect);
        self.conns.lock().expect("lock").remove(&conn.id);
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        if !skip_disconnect {
            self.disconnect(&conn, code, &reason, headers).await;
        }
    }

    /// Reads the client's frames, handing each to its route, until the connection ends: by
    /// the client (its close code; 1006 and `abrupt` when it just vanished), by a limit (1001
    /// idle or too old, 1009 too big), or by `DELETE @connections` (1000).
    async fn read_in(
        self: Arc<Self>,
        conn: &Arc<Conn>,
        mut stream: futures::stream::SplitStream<WebSocket>,
    ) -> (u16, String, bool) {
        let limits = self.options.limits.clone();
        let life_end = conn.connected_at_ms + limits.max_lifetime.as_millis() as i64;
        let idle_end =
            || conn.last_active_ms.load(Ordering::Relaxed) + limits.idle_timeout.as_millis() as i64;
        loop {
            let wait = Duration::from_millis((idle_end().min(life_end) - now_ms()).max(0) as u64);
            let next = tokio::select! {
                next = tokio::time::timeout(wait, stream.next()) => next,
                _ = conn.deleted.notified() => {
                    return (1000, "Connection closed by the server".to_owned(), false)
                }
            };
            let msg = match next {
                Err(_) if now_ms() >= idle_end() || now_ms() >= life_end => {
                    let _ = conn.tx.send(Outbound::Close(1001, "Going away".into()));
                    return (1001, "Going away".to_owned(), false);
                }
                Err(_) => continue,
                Ok(None) | Ok(Some(Err(_))) => return (1006, String::new(), true),
                Ok(Some(Ok(msg))) => msg,
            };
            match inbound(msg, limits.max_message_bytes) {
                Inbound::Frame { body, base64 } => {
                    conn.touch();
                    tokio::spawn(
                        self.clone()
                            .on_message(conn.clone(), body, base64, now_ms()),
                    );
                }
                Inbound::Alive => conn.touch(),
                Inbound::Close(code, reason) => {
                    let _ = conn.tx.send(Outbound::Close(code, reason.clone()));
                    return (code, reason, false);
                }
            }
        }
    }

    /// Invokes `$disconnect`, as API Gateway does (best effort there, always here unless the
    /// options say otherwise).
    async fn disconnect(&self, conn: &Conn, code: u16, reason: &str, headers: Value) {
        let Some(function) = self.api.routes.get("$disconnect") else {
            return;
        };
        let mut ctx = self.context(
            "$disconnect",
            "DISCONNECT",
            &conn.id,
            conn.connected_at_ms,
            &conn.source_ip,
            &conn.user_agent,
        );
        ctx.insert("disconnectStatusCode".into(), json!(code));
        ctx.insert("disconnectReason".into(), json!(reason));
        let event = json!({"headers": headers, "multiValueHeaders": {}, "requestContext": ctx, "isBase64Encoded": false});
        if let Err(e) = self.invoker.invoke(function, &event, "$disconnect").await {
            gateway_log(&format!("$disconnect failed: {e}"));
        }
    }
}

/// `$request.body.a.b` → the route whose key equals that string field (never a `$` route),
/// else `$default`; `None` when there is no `$default` either.
fn select_route(api: &ApiSpec, body: Option<&str>) -> Option<String> {
    let picked = api
        .route_selection_expression
        .strip_prefix("$request.body.")
        .and_then(|path| {
            let mut v: Value = serde_json::from_str(body?).ok()?;
            for part in path.split('.') {
                v = v.get(part)?.clone();
            }
            v.as_str().map(str::to_owned)
        })
        .filter(|k| !k.starts_with('$') && api.routes.contains_key(k));
    picked.or_else(|| {
        api.routes
            .contains_key("$default")
            .then(|| "$default".to_owned())
    })
}

/// What one message off a client's socket means.
#[derive(Debug, PartialEq)]
enum Inbound {
    /// A frame for a route (binary frames go base64-encoded, as API Gateway hands them over).
    Frame { body: String, base64: bool },
    /// A ping or pong: the connection is alive.
    Alive,
    /// The connection ends with this code: the client's close, or 1009 for a frame over the
    /// limit.
    Close(u16, String),
}

fn inbound(msg: Message, max_bytes: usize) -> Inbound {
    let too_big = || Inbound::Close(1009, "Message too big".into());
    match msg {
        Message::Text(t) if t.len() > max_bytes => too_big(),
        Message::Binary(b) if b.len() > max_bytes => too_big(),
        Message::Text(t) => Inbound::Frame {
            body: t.to_string(),
            base64: false,
        },
        Message::Binary(b) => Inbound::Frame {
            body: base64::engine::general_purpose::STANDARD.encode(&b),
            base64: true,
        },
        Message::Close(frame) => {
            let (code, reason) = frame
                .map(|f| (f.code, f.reason.to_string()))
                .unwrap_or((1005, String::new()));
            Inbound::Close(code, reason)
        }
        Message::Ping(_) | Message::Pong(_) => Inbound::Alive,
    }
}

/// Writes what the gateway sends a client (frames, posts, its close) until the close.
async fn write_out(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
) {
    while let Some(out) = rx.recv().await {
        let sent = match out {
            Outbound::Text(s) => sink.send(Message::Text(s.into())).await,
            Outbound::Binary(b) => sink.send(Message::Binary(b.into())).await,
            Outbound::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                break;
            }
        };
        if sent.is_err() {
            break;
        }
    }
}

fn gateway_log(line: &str) {
    eprintln!("[gateway] {line}");
}

fn header_maps(h: &HeaderMap) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (k, v) in h {
        let v = v.to_str().unwrap_or_default().to_owned();
        single.insert(k.as_str().to_owned(), json!(v));
        multi
            .entry(k.as_str().to_owned())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("array")
            .push(json!(v));
    }
    (Value::Object(single), Value::Object(multi))
}

async fn handshake(
    State(g): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<crate::peer::Peer>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    ws: WebSocketUpgrade,
) -> Response {
    let id = g.next_id();
    let connected_at = now_ms();
    let ip = peer.addr.ip().to_string();
    let ua = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (single, multi) = header_maps(&headers);
    if let Some(function) = g.api.routes.get("$connect") {
        let mut qs = Map::new();
        let mut mqs: Map<String, Value> = Map::new();
        for (k, v) in &query {
            qs.insert(k.clone(), json!(v));
            mqs.entry(k.clone())
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("array")
                .push(json!(v));
        }
        let mut event = json!({
            "headers": single, "multiValueHeaders": multi,
            "requestContext": g.context("$connect", "CONNECT", &id, connected_at, &ip, &ua),
            "isBase64Encoded": false,
        });
        if !qs.is_empty() {
            event["queryStringParameters"] = Value::Object(qs);
            event["multiValueQueryStringParameters"] = Value::Object(mqs);
        }
        // In its own task: a client that gives up on the handshake must not cut the
        // invocation short (on AWS the Lambda runs to completion either way).
        let (invoker, function) = (g.invoker.clone(), function.clone());
        let outcome =
            tokio::spawn(async move { invoker.invoke(&function, &event, "$connect").await })
                .await
                .unwrap_or_else(|e| Err(InvokeError::Crashed(e.to_string())));
        match outcome {
            Ok(resp) => {
                let status = resp
                    .get("statusCode")
                    .and_then(Value::as_u64)
                    .unwrap_or(200);
                if !(200..300).contains(&status) {
                    return StatusCode::from_u16(status as u16)
                        .unwrap_or(StatusCode::FORBIDDEN)
                        .into_response();
                }
            }
            Err(e) => {
                gateway_log(&format!("$connect failed: {e}"));
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        }
    }
    let max = g.options.limits.max_message_bytes;
    let gateway = g.clone();
    ws.max_message_size(max.saturating_mul(2).max(1 << 20))
        .on_upgrade(move |socket| async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let conn = Arc::new(Conn {
                id: id.clone(),
                tx,
                connected_at_ms: connected_at,
                last_active_ms: AtomicI64::new(now_ms()),
                source_ip: ip,
                user_agent: ua,
                deleted: tokio::sync::Notify::new(),
            });
            gateway.conns.lock().expect("lock").insert(id, conn.clone());
            gateway.run(conn, socket, rx, single).await;
        })
}

/// The browser chat app (`clients/web/`), same origin as the WebSocket endpoint; `chat.js`
/// and `view.js` are the mini-program's own (clients/web/README.md). Compiled in, so the stack
/// serves the app of the commit it was built from.
const WEB_FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../../clients/web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../clients/web/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../../clients/web/app.css"),
    ),
    (
        "wx-web.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../clients/web/wx-web.js"),
    ),
    (
        "chat.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../clients/miniprogram/chat.js"),
    ),
    (
        "view.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../clients/miniprogram/view.js"),
    ),
];

/// Scripts and styles from this origin only, no inline code; sockets, uploads and pictures may
/// go to loopback ports (the gateway's and the S3 front's) and blob: URLs (local previews).
const WEB_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    connect-src 'self' ws://127.0.0.1:* http://127.0.0.1:* blob:; \
    img-src 'self' http://127.0.0.1:* blob:; media-src 'self' http://127.0.0.1:* blob:; \
    object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn web_file(name: &str) -> Response {
    match WEB_FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                ("content-type", *content_type),
                ("content-security-policy", WEB_CSP),
                ("x-content-type-options", "nosniff"),
                ("cache-control", "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn aws_error(status: StatusCode, kind: &str, message: Option<&str>) -> Response {
    let mut r = (status, json!({ "message": message }).to_string()).into_response();
    r.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_str(kind).expect("ascii"),
    );
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// The management API is SigV4-signed on AWS; locally any signature passes, none does not.
fn unsigned(headers: &HeaderMap) -> Option<Response> {
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
    (!signed).then(|| {
        aws_error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            Some("Missing Authentication Token"),
        )
    })
}

/// The connection a management call names, if the call is signed and the connection open;
/// `remove` also takes it out (DELETE). Otherwise the error response API Gateway gives.
fn target(
    g: &Gateway,
    id: &str,
    headers: &HeaderMap,
    remove: bool,
) -> Result<Arc<Conn>, Box<Response>> {
    if let Some(r) = unsigned(headers) {
        return Err(Box::new(r));
    }
    let mut conns = g.conns.lock().expect("lock");
    let conn = if remove {
        // (noted before it leaves `conns`, as `run` does, so that a post finding it gone in the
        // moment before its socket loop ends knows its age; `run` notes it again, exactly)
        if let Some(c) = conns.get(id) {
            g.note_ended(c, 1000, true);
        }
        conns.remove(id)
    } else {
        conns.get(id).cloned()
    };
    conn.ok_or_else(|| Box::new(aws_error(StatusCode::GONE, "GoneException", None)))
}

async fn post_to_connection(
    State(g): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let conn = match target(&g, &id, &headers, false) {
        Ok(c) => c,
        Err(r) => {
            if r.status() == StatusCode::GONE {
                g.note_gone_post(&id);
            }
            return *r;
        }
    };
    let every = g.post_fault_every.load(Ordering::SeqCst);
    if every > 0 && g.posts.fetch_add(1, Ordering::SeqCst) % every == every - 1 {
        return aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerErrorException",
            Some("injected fault"),
        );
    }
    if body.len() > g.options.limits.max_message_bytes {
        return aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            Some("Message too long"),
        );
    }
    let out = match String::from_utf8(body.to_vec()) {
        Ok(s) => Outbound::Text(s),
        Err(e) => Outbound::Binary(e.into_bytes()),
    };
    if conn.tx.send(out).is_err() {
        g.note_gone_post(&id);
        return aws_error(StatusCode::GONE, "GoneException", None);
    }
    conn.touch();
    StatusCode::OK.into_response()
}

async fn get_connection(
    State(g): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let c = match target(&g, &id, &headers, false) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let body = json!({
        "ConnectedAt": iso(c.connected_at_ms),
        "Identity": {"SourceIp": c.source_ip, "UserAgent": c.user_agent},
        "LastActiveAt": iso(c.last_active_ms.load(Ordering::Relaxed)),
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn delete_connection(
    State(g): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let c = match target(&g, &id, &headers, true) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let _ = c.tx.send(Outbound::Close(
        1000,
        "Connection closed by the server".into(),
    ));
    c.deleted.notify_one();
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Logs;
    use std::collections::BTreeMap;

    fn api(routes: &[&str]) -> ApiSpec {
        ApiSpec {
            logical_id: "Api".into(),
            route_selection_expression: "$request.body.action".into(),
            stage: "prod".into(),
            routes: routes
                .iter()
                .map(|r| (r.to_string(), format!("F{r}")))
                .collect(),
        }
    }

    #[test]
    fn route_selection_picks_the_named_route_else_default() {
        // GIVEN an API with $default and a `sendmessage` route
        let a = api(&["$connect", "$default", "sendmessage"]);
        let pick = |body: &str| select_route(&a, Some(body));
        // THEN the action names its route; anything else goes to $default
        assert_eq!(
            pick(r#"{"action":"sendmessage"}"#).as_deref(),
            Some("sendmessage")
        );
        assert_eq!(pick(r#"{"action":"nothing"}"#).as_deref(), Some("$default"));
        assert_eq!(
            pick(r#"{"action":"$connect"}"#).as_deref(),
            Some("$default"),
            "never a $ route"
        );
        assert_eq!(pick(r#"{"action":7}"#).as_deref(), Some("$default"));
        assert_eq!(pick("not json").as_deref(), Some("$default"));
        assert_eq!(
            select_route(&a, None).as_deref(),
            Some("$default"),
            "binary frames"
        );
        // AND a nested path is followed; without $default an unknown action has no route
        let mut nested = api(&["sendmessage"]);
        nested.route_selection_expression = "$request.body.meta.kind".into();
        let pick = |body: &str| select_route(&nested, Some(body));
        assert_eq!(
            pick(r#"{"meta":{"kind":"sendmessage"}}"#).as_deref(),
            Some("sendmessage")
        );
        assert_eq!(pick(r#"{"action":"sendmessage"}"#), None);
    }

    #[test]
    fn frames_over_the_limit_close_with_1009_and_the_rest_pass() {
        let text = |n: usize| Message::Text("x".repeat(n).into());
        // GIVEN a limit of 10 bytes THEN a frame of 10 passes and one of 11 closes the socket
        assert_eq!(
            inbound(text(10), 10),
            Inbound::Frame {
                body: "x".repeat(10),
                base64: false
            }
        );
        assert_eq!(
            inbound(text(11), 10),
            Inbound::Close(1009, "Message too big".into())
        );
        assert_eq!(
            inbound(Message::Binary(vec![0u8; 11].into()), 10),
            Inbound::Close(1009, "Message too big".into())
        );
        // AND binary frames go base64-encoded, pings keep it alive, a close echoes its code
        assert_eq!(
            inbound(Message::Binary(vec![1u8, 2, 3].into()), 10),
            Inbound::Frame {
                body: "AQID".into(),
                base64: true
            }
        );
        assert_eq!(inbound(Message::Ping(vec![].into()), 10), Inbound::Alive);
        let close = CloseFrame {
            code: 4000,
            reason: "bye".into(),
        };
        assert_eq!(
            inbound(Message::Close(Some(close)), 10),
            Inbound::Close(4000, "bye".into())
        );
        assert_eq!(
            inbound(Message::Close(None), 10),
            Inbound::Close(1005, String::new())
        );
    }

    /// A gateway with one open connection `c1`, whose outbound frames come out of the receiver.
    fn gateway_with_a_connection(max: usize) -> (Arc<Gateway>, mpsc::UnboundedReceiver<Outbound>) {
        let invoker = Arc::new(Invoker::new(
            BTreeMap::new(),
            std::env::temp_dir(),
            BTreeMap::new(),
            Logs::Quiet,
        ));
        let mut options = Options::default();
        options.limits.max_message_bytes = max;
        let g = Gateway::new(api(&["$default"]), invoker, options, "127.0.0.1:1".into());
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Conn {
            id: "c1".into(),
            tx,
            connected_at_ms: 1_000,
            last_active_ms: AtomicI64::new(1_000),
            source_ip: "127.0.0.1".into(),
            user_agent: "test".into(),
            deleted: tokio::sync::Notify::new(),
        };
        g.conns.lock().unwrap().insert("c1".into(), Arc::new(conn));
        (g, rx)
    }

    fn signed() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"),
        );
        h
    }

    async fn post(
        g: &Arc<Gateway>,
        id: &str,
        headers: HeaderMap,
        body: &'static [u8],
    ) -> StatusCode {
        post_to_connection(
            State(g.clone()),
            Path(id.into()),
            headers,
            Bytes::from_static(body),
        )
        .await
        .status()
    }

    #[tokio::test]
    async fn posts_need_a_signature_reach_open_connections_and_answer_410_and_413() {
        // GIVEN an open connection and a limit of 8 bytes
        let (g, mut rx) = gateway_with_a_connection(8);
        // WHEN posts arrive THEN an unsigned one is refused, a signed one delivered
        assert_eq!(
            post(&g, "c1", HeaderMap::new(), b"hi").await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(post(&g, "c1", signed(), b"hi").await, StatusCode::OK);
        assert!(matches!(rx.try_recv(), Ok(Outbound::Text(t)) if t == "hi"));
        // AND an oversized one is 413 and delivers nothing, an unknown connection is 410
        assert_eq!(
            post(&g, "c1", signed(), b"123456789").await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert!(rx.try_recv().is_err());
        assert_eq!(post(&g, "nope", signed(), b"hi").await, StatusCode::GONE);
        assert_eq!(g.gone_posts().len(), 1, "a gone post is noted for audits");
        // AND with injected faults every 2nd post answers 500 and delivers nothing
        g.fail_posts_every(2);
        assert_eq!(post(&g, "c1", signed(), b"a").await, StatusCode::OK);
        assert_eq!(
            post(&g, "c1", signed(), b"b").await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let delivered: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(delivered.len(), 1);
    }

    #[tokio::test]
    async fn get_describes_and_delete_closes_a_connection() {
        let (g, mut rx) = gateway_with_a_connection(8);
        // GIVEN an open connection WHEN it is described THEN its identity comes back
        let got = get_connection(State(g.clone()), Path("c1".into()), signed()).await;
        assert_eq!(got.status(), StatusCode::OK);
        // WHEN it is deleted THEN it is closed with 1000 and gone for the next call
        let deleted = delete_connection(State(g.clone()), Path("c1".into()), signed()).await;
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        assert!(matches!(rx.try_recv(), Ok(Outbound::Close(1000, _))));
        let again = delete_connection(State(g.clone()), Path("c1".into()), signed()).await;
        assert_eq!(again.status(), StatusCode::GONE);
        assert_eq!(g.connection_count(), 0);
    }
}
