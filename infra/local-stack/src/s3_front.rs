//! The local S3 endpoint the functions sign URLs for: a reverse proxy on 127.0.0.1 in front
//! of s3s-fs that adds what s3s-fs lacks and S3 has, CORS and event notifications.
//!
//! - Every request goes to s3s-fs unchanged: method, path and query as received, headers
//!   (`Host` exactly: SigV4 signs it, so presigned URLs made for this endpoint verify at
//!   s3s-fs) and body. Request bodies are buffered, up to [`MAX_BODY_BYTES`]; responses stream.
//! - CORS as S3 does it, from the bucket's `CorsConfiguration` in the template: preflights
//!   (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) are answered here (s3s-fs
//!   answers 501), 403 when no rule allows them; other responses to a request whose `Origin`
//!   and method a rule allows get `Access-Control-Allow-Origin`, `Vary: Origin`, …
//! - After a 2xx PutObject (`ObjectCreated:Put`), CopyObject (`PUT` with `x-amz-copy-source`,
//!   `ObjectCreated:Copy`), browser-form upload (`POST` multipart/form-data to the bucket,
//!   `ObjectCreated:Post`) or CompleteMultipartUpload, each function the template subscribes
//!   to the bucket (an `Events` entry of `Type: S3` whose event types and key filters match)
//!   gets S3's event JSON, asynchronously as S3 invokes Lambda: the upload's response does
//!   not wait for it. Size and ETag come from a HeadObject to s3s-fs. Every delivery ends up
//!   in [`Deliveries`], where tests wait for it; failures are also printed.
//!
//! Path-style requests only (`http://127.0.0.1:port/bucket/key`; the functions get
//! `S3_FORCE_PATH_STYLE=true`). Differences from S3 found in s3s-fs 0.14.1: a form upload is
//! answered 204 without `ETag` and `Location` headers, and `${filename}` in the form's `key`
//! is stored literally rather than replaced by the file's name (the event then names the
//! literal key, as stored). Not emulated: retries of failed asynchronous invocations,
//! `ObjectRemoved` and other event types, virtual-hosted-style addressing.

use crate::app::{BucketSpec, CorsRule};
use crate::clients::REGION as LOCAL_REGION;
use crate::runtime::Invoker;
use crate::DevError;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, Multipart, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::future::BoxFuture;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Largest request body the front buffers (uploads here are at most about 25 MB).
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// How an event reaches a function. The local stack uses its [`Invoker`].
pub trait Deliver: Send + Sync + 'static {
    /// Invokes `function` with `event`; `label` names the invocation in logs.
    fn deliver<'a>(
        &'a self,
        function: &'a str,
        event: &'a Value,
        label: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}

impl Deliver for Invoker {
    fn deliver<'a>(
        &'a self,
        function: &'a str,
        event: &'a Value,
        label: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.invoke(function, event, label)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// One event notification handed to a function, and how the invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Logical id of the function.
    pub function: String,
    /// `ObjectCreated:Put`, `ObjectCreated:Post`, `ObjectCreated:Copy`, …
    pub event_name: String,
    pub bucket: String,
    /// The object's key as stored (the event carries it URL-encoded).
    pub key: String,
    /// What the function was invoked with (`{"Records": [...]}`).
    pub event: Value,
    /// `Ok` once the function returned a response; otherwise why not.
    pub outcome: Result<(), String>,
}

/// Every delivery of a front so far, in the order they ended.
#[derive(Clone)]
pub struct Deliveries {
    tx: Arc<watch::Sender<Vec<Delivery>>>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            tx: Arc::new(watch::Sender::new(Vec::new())),
        }
    }
}

impl Deliveries {
    pub fn all(&self) -> Vec<Delivery> {
        self.tx.borrow().clone()
    }

    pub fn len(&self) -> usize {
        self.tx.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes whenever a delivery ends.
    pub fn subscribe(&self) -> watch::Receiver<Vec<Delivery>> {
        self.tx.subscribe()
    }

    /// The first delivery (past or future) that `pred` accepts, or `None` after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Delivery) -> bool,
    ) -> Option<Delivery> {
        let mut rx = self.tx.subscribe();
        let all = tokio::time::timeout(timeout, rx.wait_for(|all| all.iter().any(&pred)))
            .await
            .ok()?
            .ok()?;
        all.iter().find(|d| pred(d)).cloned()
    }

    fn push(&self, d: Delivery) {
        self.tx.send_modify(|all| all.push(d));
    }
}

/// A running front; stops when dropped.
pub struct S3Front {
    url: String,
    deliveries: Deliveries,
    server: tokio::task::JoinHandle<()>,
}

struct Front {
    /// `http://127.0.0.1:<port>` of s3s-fs.
    upstream: String,
    buckets: Vec<BucketSpec>,
    client: Client<HttpConnector, Body>,
    /// Reads size and ETag of created objects, straight from s3s-fs.
    s3: aws_sdk_s3::Client,
    deliver: Arc<dyn Deliver>,
    deliveries: Deliveries,
    seq: AtomicU64,
}

impl S3Front {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (s3s-fs, which accepts
    /// [`crate::clients::access_key()`]); `buckets` give the CORS rules and subscriptions.
    pub async fn start(
        upstream: String,
        buckets: Vec<BucketSpec>,
        deliver: Arc<dyn Deliver>,
    ) -> Result<Self, DevError> {
        Self::start_on(Self::bind().await?, upstream, buckets, deliver)
    }

    /// A free port of 127.0.0.1 for [`S3Front::start_on`], so that its URL is known before
    /// the front starts (the functions that receive its events need the URL).
    pub async fn bind() -> Result<tokio::net::TcpListener, DevError> {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| DevError::S3(format!("the S3 front cannot listen: {e}")))
    }

    /// Like [`S3Front::start`], on `listener`.
    pub fn start_on(
        listener: tokio::net::TcpListener,
        upstream: String,
        buckets: Vec<BucketSpec>,
        deliver: Arc<dyn Deliver>,
    ) -> Result<Self, DevError> {
        let url = format!("http://{}", listener.local_addr()?);
        let s3 = crate::clients::s3(&upstream);
        let deliveries = Deliveries::default();
        let front = Arc::new(Front {
            upstream,
            buckets,
            client: Client::builder(TokioExecutor::new()).build_http(),
            s3,
            deliver,
            deliveries: deliveries.clone(),
            seq: AtomicU64::new(now_nanos()),
        });
        // Only the stack's user's processes (the functions, the tests, the user's browser).
        let app = Router::new()
            .fallback(proxy)
            .with_state(front)
            .layer(axum::middleware::from_fn(crate::peer::same_user_only));
        let server = crate::peer::serve(listener, app);
        Ok(S3Front {
            url,
            deliveries,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`: what functions and clients use as their S3 endpoint.
    pub fn endpoint(&self) -> String {
        self.url.clone()
    }

    pub fn deliveries(&self) -> &Deliveries {
        &self.deliveries
    }
}

impl Drop for S3Front {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

fn s3_log(line: &str) {
    eprintln!("[s3] {line}");
}

/// Headers that belong to one connection, not to the request or response.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        h.remove(name);
    }
    h.remove(header::UPGRADE);
}

/// S3's XML error document.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// `%XX` decoded (a `+` stays a `+` in a path), if that is UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A key as S3 puts it in an event: URL-encoded, a space as `+`, `/` kept.
pub fn event_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Bucket and key (decoded) of a path-style path; the key is `None` for the bucket itself.
fn bucket_and_key(path: &str) -> (Option<String>, Option<String>) {
    let path = path.trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) => (b, Some(k)),
        None => (path, None),
    };
    let bucket = (!bucket.is_empty())
        .then(|| percent_decode(bucket))
        .flatten();
    let key = key.filter(|k| !k.is_empty()).and_then(percent_decode);
    (bucket, key)
}

/// Names of the query parameters that select an operation (not the presigning ones).
fn subresources(uri: &Uri) -> Vec<String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(k, _)| k).to_owned())
        .filter(|k| k != "x-id" && !k.to_ascii_lowercase().starts_with("x-amz-"))
        .collect()
}

/// Whether `value` matches `pattern`, which may hold one `*` standing for any text.
fn wildcard(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let (p, v) = if case_insensitive {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), value.to_owned())
    };
    match p.split_once('*') {
        None => p == v,
        Some((head, tail)) => {
            v.len() >= head.len() + tail.len() && v.starts_with(head) && v.ends_with(tail)
        }
    }
}

/// The first rule that allows `origin`, `method` and every one of `headers`, as S3 picks it.
fn cors_rule<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allowed_origins.iter().any(|o| wildcard(o, origin, false))
            && r.allowed_methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| r.allowed_headers.iter().any(|p| wildcard(p, h, true)))
    })
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The CORS headers S3 adds for `rule` (the preflight ones only with `preflight`).
fn add_cors_headers(
    h: &mut HeaderMap,
    rule: &CorsRule,
    origin: &str,
    requested_headers: Option<&str>,
    preflight: bool,
) {
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    if rule.allowed_origins.iter().any(|o| o == "*") {
        set(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    } else {
        set(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        set(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
    }
    set(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        &rule.allowed_methods.join(", "),
    );
    if !rule.exposed_headers.is_empty() {
        set(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            &rule.exposed_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set(header::ACCESS_CONTROL_MAX_AGE, &age.to_string());
    }
    if preflight {
        if let Some(requested) = requested_headers.filter(|r| !r.trim().is_empty()) {
            set(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        }
    }
    set(
        header::VARY,
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
}

/// Answers a CORS preflight from the bucket's rules.
fn preflight(bucket: Option<&BucketSpec>, headers: &HeaderMap, origin: &str) -> Response {
    let rules = bucket.map(|b| b.cors.as_slice()).unwrap_or_default();
    if rules.is_empty() {
        return s3_error(
            StatusCode::FORBIDDEN,
            "AccessForbidden",
            "CORSResponse: CORS is not enabled for this bucket.",
        );
    }
    let method = header_str(headers, header::ACCESS_CONTROL_REQUEST_METHOD).unwrap_or_default();
    let requested = header_str(headers, header::ACCESS_CONTROL_REQUEST_HEADERS);
    let wanted: Vec<String> = requested
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    match cors_rule(rules, origin, method, &wanted) {
        Some(rule) => {
            let mut r = StatusCode::OK.into_response();
            add_cors_headers(r.headers_mut(), rule, origin, requested, true);
            r
        }
        None => s3_error(
            StatusCode::FORBIDDEN,
            "AccessForbidden",
            "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        ),
    }
}

/// An object write that, once it succeeds, S3 reports to subscribers.
#[derive(Debug, Clone, PartialEq)]
struct Created {
    event_name: &'static str,
    bucket: String,
    key: String,
}

/// The form's `key` (and the file's name) of a browser-form upload. S3 ignores fields after
/// `file`, so reading stops there.
async fn form_key(content_type: &HeaderValue, body: Bytes) -> Option<(String, Option<String>)> {
    let req = Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .ok()?;
    let mut form = Multipart::from_request(req, &()).await.ok()?;
    let mut key = None;
    let mut file_name = None;
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_ascii_lowercase();
        if name == "file" {
            file_name = field.file_name().map(str::to_owned);
            break;
        }
        if name == "key" {
            key = field.text().await.ok();
        }
    }
    Some((key?, file_name))
}

/// What a request creates, if it is an object write that emits an event.
async fn created(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Option<Created> {
    let (bucket, key) = bucket_and_key(uri.path());
    let bucket = bucket?;
    let sub = subresources(uri);
    let event_name = match (method, &key) {
        (&Method::PUT, Some(_)) if sub.is_empty() => {
            if headers.contains_key("x-amz-copy-source") {
                "ObjectCreated:Copy"
            } else {
                "ObjectCreated:Put"
            }
        }
        (&Method::POST, Some(_)) if sub.iter().any(|s| s == "uploadId") => {
            "ObjectCreated:CompleteMultipartUpload"
        }
        (&Method::POST, None) => {
            let ct = headers.get(header::CONTENT_TYPE)?;
            if !ct
                .to_str()
                .ok()?
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
            {
                return None;
            }
            let (key, file_name) = form_key(ct, body.clone()).await?;
            if key.contains("${filename}") {
                s3_log(&format!(
                    "note: s3s-fs stores {key:?} literally; S3 would replace ${{filename}} with {:?}",
                    file_name.unwrap_or_default()
                ));
            }
            return Some(Created {
                event_name: "ObjectCreated:Post",
                bucket,
                key,
            });
        }
        _ => return None,
    };
    Some(Created {
        event_name,
        bucket,
        key: key?,
    })
}

async fn proxy(
    State(front): State<Arc<Front>>,
    ConnectInfo(peer): ConnectInfo<crate::peer::Peer>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let (bucket_name, _) = bucket_and_key(parts.uri.path());
    let bucket = bucket_name
        .as_deref()
        .and_then(|n| front.buckets.iter().find(|b| b.name == n));
    let origin = header_str(&parts.headers, header::ORIGIN).map(str::to_owned);
    if let Some(origin) = &origin {
        if parts.method == Method::OPTIONS
            && parts
                .headers
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return preflight(bucket, &parts.headers, origin);
        }
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return s3_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "EntityTooLarge",
                &format!("The local S3 front buffers at most {MAX_BODY_BYTES} bytes."),
            )
        }
    };
    let created = created(&parts.method, &parts.uri, &parts.headers, &body).await;

    let mut resp = match forward(&front, &parts, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if resp.status().is_success() {
        if let Some(c) = created {
            tokio::spawn(front.clone().notify(c, peer.addr));
        }
    }
    if let (Some(origin), Some(bucket)) = (&origin, bucket) {
        if let Some(rule) = cors_rule(&bucket.cors, origin, parts.method.as_str(), &[]) {
            add_cors_headers(resp.headers_mut(), rule, origin, None, false);
        }
    }
    resp
}

/// Sends the request on to s3s-fs unchanged (its hop-by-hop headers aside): the answer, or the
/// S3 error the front gives instead.
async fn forward(
    front: &Front,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> Result<Response, Response> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    if !headers.contains_key(header::HOST) {
        // HTTP/2 carries the host in the URI; s3s-fs verifies the signature against it.
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, v);
        }
    }
    let mut upstream = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path_and_query}", front.upstream))
        .body(Body::from(body))
        .map_err(|e| s3_error(StatusCode::BAD_REQUEST, "InvalidRequest", &e.to_string()))?;
    *upstream.headers_mut() = headers;
    let resp = front.client.request(upstream).await.map_err(|e| {
        s3_error(
            StatusCode::BAD_GATEWAY,
            "ServiceUnavailable",
            &format!("s3s-fs did not answer: {e}"),
        )
    })?;
    let (mut rparts, rbody) = resp.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    Ok(Response::from_parts(rparts, Body::new(rbody)))
}

impl Front {
    /// Sends the event of `c` to every subscribed function.
    async fn notify(self: Arc<Self>, c: Created, peer: SocketAddr) {
        let Some(bucket) = self.buckets.iter().find(|b| b.name == c.bucket) else {
            return;
        };
        let subscribed: Vec<_> = bucket
            .notifications
            .iter()
            .filter(|s| s.matches(c.event_name, &c.key))
            .cloned()
            .collect();
        if subscribed.is_empty() {
            return;
        }
        let head = match self
            .s3
            .head_object()
            .bucket(&c.bucket)
            .key(&c.key)
            .send()
            .await
        {
            Ok(h) => h,
            Err(e) => {
                s3_log(&format!(
                    "{} {}/{}: no event, HeadObject failed: {}",
                    c.event_name,
                    c.bucket,
                    c.key,
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                ));
                return;
            }
        };
        let size = head.content_length().unwrap_or_default();
        let etag = head
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned();
        let sequencer = format!("{:016X}", self.seq.fetch_add(1, Ordering::Relaxed));
        for s in subscribed {
            let event = event_json(&EventFields {
                event_name: c.event_name,
                bucket: &c.bucket,
                key: &c.key,
                size,
                etag: &etag,
                sequencer: &sequencer,
                configuration_id: &s.event_id,
                source_ip: &peer.ip().to_string(),
            });
            let me = self.clone();
            let c = c.clone();
            tokio::spawn(async move {
                let outcome = me.deliver.deliver(&s.function, &event, c.event_name).await;
                if let Err(e) = &outcome {
                    s3_log(&format!(
                        "{} of {}/{} to {} failed: {e}",
                        c.event_name, c.bucket, c.key, s.function
                    ));
                }
                me.deliveries.push(Delivery {
                    function: s.function,
                    event_name: c.event_name.to_owned(),
                    bucket: c.bucket,
                    key: c.key,
                    event,
                    outcome,
                });
            });
        }
    }
}

/// What one event record says.
pub struct EventFields<'a> {
    pub event_name: &'a str,
    pub bucket: &'a str,
    /// As stored; URL-encoded in the record.
    pub key: &'a str,
    pub size: i64,
    /// Without quotes.
    pub etag: &'a str,
    pub sequencer: &'a str,
    pub configuration_id: &'a str,
    pub source_ip: &'a str,
}

/// S3's event notification (`eventVersion` 2.1) with one record.
pub fn event_json(f: &EventFields) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let event_time = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default();
    let request_id = format!("{:016X}", now_nanos());
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": LOCAL_REGION,
        "eventTime": event_time,
        "eventName": f.event_name,
        "userIdentity": {"principalId": "AWS:local"},
        "requestParameters": {"sourceIPAddress": f.source_ip},
        "responseElements": {"x-amz-request-id": request_id, "x-amz-id-2": format!("local/{request_id}")},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": f.configuration_id,
            "bucket": {
                "name": f.bucket,
                "ownerIdentity": {"principalId": "local"},
                "arn": format!("arn:aws:s3:::{}", f.bucket),
            },
            "object": {
                "key": event_key(f.key),
                "size": f.size,
                "eTag": f.etag,
                "sequencer": f.sequencer,
            },
        },
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::S3Subscription;
    use crate::s3_local::S3Local;
    use aws_sdk_s3::presigning::PresigningConfig;
    use aws_sdk_s3::primitives::ByteStream;

    const BUCKET: &str = "media-bucket";
    const ORIGIN: &str = "https://app.example";
    const WAIT: Duration = Duration::from_secs(10);

    /// Records events instead of invoking functions.
    struct Accept;
    impl Deliver for Accept {
        fn deliver<'a>(
            &'a self,
            _: &'a str,
            _: &'a Value,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn bucket() -> BucketSpec {
        BucketSpec {
            name: BUCKET.into(),
            logical_id: "Media".into(),
            cors: vec![CorsRule {
                allowed_methods: vec!["GET".into(), "HEAD".into(), "PUT".into(), "POST".into()],
                allowed_origins: vec![ORIGIN.into(), "http://*.local.example".into()],
                allowed_headers: vec!["*".into()],
                exposed_headers: vec!["ETag".into()],
                max_age_seconds: Some(3000),
            }],
            notifications: vec![S3Subscription {
                function: "Thumbnail".into(),
                event_id: "ImageUploaded".into(),
                events: vec!["s3:ObjectCreated:*".into()],
                prefix: Some("u/i/".into()),
                suffix: None,
            }],
        }
    }

    /// s3s-fs and a front before it; dropping it stops both.
    struct Fixture {
        front: S3Front,
        s3: S3Local,
        dir: std::path::PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn fixture() -> Fixture {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "s3-front-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let s3 = S3Local::start(&dir, &[BUCKET.to_string()]).unwrap();
        let front = S3Front::start(s3.endpoint(), vec![bucket()], Arc::new(Accept))
            .await
            .unwrap();
        Fixture { front, s3, dir }
    }

    fn client(endpoint: &str) -> aws_sdk_s3::Client {
        crate::clients::s3(endpoint)
    }

    /// A plain HTTP request, as a browser would send it.
    async fn http(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = tokio::time::timeout(WAIT, client.request(req.body(Body::from(body)).unwrap()))
            .await
            .expect("answered in time")
            .expect("answered");
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(Body::new(body), usize::MAX)
            .await
            .unwrap();
        (parts.status, parts.headers, body)
    }

    async fn presigned_put(endpoint: &str, key: &str) -> String {
        client(endpoint)
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
            .await
            .unwrap()
            .uri()
            .to_owned()
    }

    /// Waits a moment for deliveries that should not come.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    #[tokio::test]
    async fn a_presigned_put_through_the_front_is_stored_and_a_tampered_one_is_refused() {
        // GIVEN s3s-fs behind the front and a PUT presigned for the front's endpoint
        let f = fixture().await;
        let url = presigned_put(&f.front.endpoint(), "u/v/clip one.mp4").await;
        // WHEN a browser PUTs to it
        let (status, _, body) = http("PUT", &url, &[], b"video bytes".to_vec()).await;
        // THEN s3s-fs verified the signature (the Host header arrived unchanged) and stored it
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let got = client(&f.front.endpoint())
            .get_object()
            .bucket(BUCKET)
            .key("u/v/clip one.mp4")
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().as_ref(),
            b"video bytes"
        );
        // AND the same URL for another key is refused
        let tampered = url.replace("clip%20one.mp4", "other.mp4");
        assert_ne!(tampered, url);
        let (status, _, _) = http("PUT", &tampered, &[], b"x".to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // AND nothing was delivered: no subscription covers u/v/
        settle().await;
        assert!(f.front.deliveries().is_empty());
    }

    #[tokio::test]
    async fn a_large_upload_with_expect_continue_passes_through_whole() {
        // GIVEN a presigned PUT and a 5 MB body, sent as curl sends large ones
        let f = fixture().await;
        let url = presigned_put(&f.front.endpoint(), "u/v/large.bin").await;
        let body: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 251) as u8).collect();
        // WHEN it is PUT with `Expect: 100-continue`
        let (status, _, answer) =
            http("PUT", &url, &[("expect", "100-continue")], body.clone()).await;
        // THEN s3s-fs stored every byte
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let got = client(&f.front.endpoint())
            .get_object()
            .bucket(BUCKET)
            .key("u/v/large.bin")
            .send()
            .await
            .unwrap();
        assert!(got.body.collect().await.unwrap().into_bytes() == body);
    }

    #[tokio::test]
    async fn a_preflight_from_an_allowed_origin_gets_the_rules_cors_headers() {
        // GIVEN the front of a bucket whose rule allows ORIGIN
        let f = fixture().await;
        let url = format!("{}/{BUCKET}/u/i/a.jpg", f.front.endpoint());
        // WHEN a browser at ORIGIN asks to PUT with a content type
        let (status, h, _) = http(
            "OPTIONS",
            &url,
            &[
                ("origin", ORIGIN),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "content-type"),
            ],
            Vec::new(),
        )
        .await;
        // THEN the preflight is allowed with the rule's headers
        assert_eq!(status, StatusCode::OK);
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(get("access-control-allow-origin"), ORIGIN);
        assert_eq!(get("access-control-allow-methods"), "GET, HEAD, PUT, POST");
        assert_eq!(get("access-control-allow-headers"), "content-type");
        assert_eq!(get("access-control-expose-headers"), "ETag");
        assert_eq!(get("access-control-max-age"), "3000");
        assert!(get("vary").contains("Origin"));
        // AND a wildcard origin of the rule matches too
        let (status, h, _) = http(
            "OPTIONS",
            &url,
            &[
                ("origin", "http://dev.local.example"),
                ("access-control-request-method", "GET"),
            ],
            Vec::new(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            h.get("access-control-allow-origin").unwrap(),
            "http://dev.local.example"
        );
        // AND another origin, or a method no rule allows, is refused
        for (origin, method) in [("https://evil.example", "PUT"), (ORIGIN, "DELETE")] {
            let (status, h, _) = http(
                "OPTIONS",
                &url,
                &[
                    ("origin", origin),
                    ("access-control-request-method", method),
                ],
                Vec::new(),
            )
            .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{origin} {method}");
            assert!(!h.contains_key("access-control-allow-origin"));
        }
    }

    #[tokio::test]
    async fn actual_responses_to_an_allowed_origin_carry_cors_headers() {
        // GIVEN an object in the bucket
        let f = fixture().await;
        let url = presigned_put(&f.front.endpoint(), "m/a.txt").await;
        let (status, _, _) = http("PUT", &url, &[("origin", ORIGIN)], b"hello".to_vec()).await;
        assert_eq!(status, StatusCode::OK);
        // WHEN a browser at ORIGIN and one elsewhere read it with a presigned GET
        let get = client(&f.front.endpoint())
            .get_object()
            .bucket(BUCKET)
            .key("m/a.txt")
            .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
            .await
            .unwrap()
            .uri()
            .to_owned();
        let (status, h, body) = http("GET", &get, &[("origin", ORIGIN)], Vec::new()).await;
        let (_, other, _) = http(
            "GET",
            &get,
            &[("origin", "https://evil.example")],
            Vec::new(),
        )
        .await;
        // THEN the allowed one gets the object with the CORS headers, the other none
        assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"hello"[..]));
        assert_eq!(h.get("access-control-allow-origin").unwrap(), ORIGIN);
        assert_eq!(h.get("access-control-expose-headers").unwrap(), "ETag");
        assert!(h.get("vary").unwrap().to_str().unwrap().contains("Origin"));
        assert!(h.contains_key("etag"));
        assert!(!other.contains_key("access-control-allow-origin"));
    }

    #[tokio::test]
    async fn a_put_to_a_subscribed_prefix_delivers_one_record_and_a_copy_elsewhere_none() {
        // GIVEN the front of a bucket that notifies Thumbnail of objects created under u/i/
        let f = fixture().await;
        let s3 = client(&f.front.endpoint());
        // WHEN an image is put under u/i/
        let put = s3
            .put_object()
            .bucket(BUCKET)
            .key("u/i/photo (1).jpg")
            .body(ByteStream::from_static(b"jpeg bytes"))
            .send()
            .await
            .unwrap();
        // THEN exactly one event reaches Thumbnail, in S3's shape
        let d = f
            .front
            .deliveries()
            .wait_for(WAIT, |d| d.key == "u/i/photo (1).jpg")
            .await
            .expect("an event was delivered");
        assert_eq!(d.function, "Thumbnail");
        assert_eq!(d.event_name, "ObjectCreated:Put");
        assert_eq!(d.outcome, Ok(()));
        let event: aws_lambda_events::s3::S3Event =
            serde_json::from_value(d.event.clone()).unwrap();
        assert_eq!(event.records.len(), 1);
        let r = &event.records[0];
        assert_eq!(r.event_name.as_deref(), Some("ObjectCreated:Put"));
        assert_eq!(r.event_source.as_deref(), Some("aws:s3"));
        assert_eq!(r.s3.configuration_id.as_deref(), Some("ImageUploaded"));
        assert_eq!(r.s3.bucket.name.as_deref(), Some(BUCKET));
        assert_eq!(
            r.s3.bucket.arn.as_deref(),
            Some("arn:aws:s3:::media-bucket")
        );
        assert_eq!(r.s3.object.key.as_deref(), Some("u/i/photo+%281%29.jpg"));
        assert_eq!(r.s3.object.size, Some(10));
        assert_eq!(
            r.s3.object.e_tag.as_deref(),
            put.e_tag().map(|e| e.trim_matches('"'))
        );
        settle().await;
        assert_eq!(f.front.deliveries().len(), 1);

        // WHEN it is copied out of u/i/, and once more within it
        for to in ["m/photo.jpg", "u/i/copy.jpg"] {
            s3.copy_object()
                .bucket(BUCKET)
                .key(to)
                .copy_source(format!("{BUCKET}/u/i/photo%20%281%29.jpg"))
                .send()
                .await
                .unwrap();
        }
        // THEN only the copy within u/i/ is delivered, as a Copy
        let copy = f
            .front
            .deliveries()
            .wait_for(WAIT, |d| d.key == "u/i/copy.jpg")
            .await
            .expect("the copy was delivered");
        assert_eq!(copy.event_name, "ObjectCreated:Copy");
        settle().await;
        let keys: Vec<String> = f
            .front
            .deliveries()
            .all()
            .into_iter()
            .map(|d| d.key)
            .collect();
        assert_eq!(keys, ["u/i/photo (1).jpg", "u/i/copy.jpg"]);
    }

    /// A browser-form upload signed as the functions sign one (SigV4 POST policy).
    fn post_form(key: &str, file: &[u8]) -> (String, Vec<u8>) {
        use hmac::{Hmac, Mac};
        type H = Hmac<sha2::Sha256>;
        let mac = |k: &[u8], m: &[u8]| {
            let mut h = H::new_from_slice(k).unwrap();
            h.update(m);
            h.finalize().into_bytes().to_vec()
        };
        let now = time::OffsetDateTime::now_utc();
        let date = format!("{:04}{:02}{:02}", now.year(), now.month() as u8, now.day());
        let amz_date = format!(
            "{date}T{:02}{:02}{:02}Z",
            now.hour(),
            now.minute(),
            now.second()
        );
        let credential = format!(
            "{}/{date}/{LOCAL_REGION}/s3/aws4_request",
            crate::clients::access_key()
        );
        let expiration = (now + time::Duration::minutes(5))
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].000Z"
            ))
            .unwrap();
        let policy = json!({"expiration": expiration, "conditions": [
            {"bucket": BUCKET}, ["starts-with", "$key", "u/"],
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"}, {"x-amz-credential": credential},
            {"x-amz-date": amz_date}, ["content-length-range", 1, 1024]
        ]});
        use base64::Engine;
        let policy = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
        let mut k = mac(
            format!("AWS4{}", crate::clients::secret_key()).as_bytes(),
            date.as_bytes(),
        );
        for part in [LOCAL_REGION, "s3", "aws4_request"] {
            k = mac(&k, part.as_bytes());
        }
        let signature = hex::encode(mac(&k, policy.as_bytes()));
        let boundary = "----localfront0123456789";
        let mut body = Vec::new();
        for (name, value) in [
            ("key", key),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            ("x-amz-credential", &credential),
            ("x-amz-date", &amz_date),
            ("policy", &policy),
            ("x-amz-signature", &signature),
        ] {
            body.extend(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"pic.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
        body.extend(file);
        body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }

    #[tokio::test]
    async fn a_browser_form_upload_is_delivered_as_a_post_with_the_forms_key() {
        // GIVEN a signed form upload to u/i/ from an allowed origin
        let f = fixture().await;
        let (content_type, body) = post_form("u/i/form.png", b"png bytes");
        // WHEN it is posted to the bucket through the front
        let (status, h, _) = http(
            "POST",
            &format!("{}/{BUCKET}", f.front.endpoint()),
            &[("content-type", &content_type), ("origin", ORIGIN)],
            body,
        )
        .await;
        // THEN s3s-fs accepts it (204, as S3 by default) and the answer carries CORS headers
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(h.get("access-control-allow-origin").unwrap(), ORIGIN);
        // AND Thumbnail gets an ObjectCreated:Post for the form's key, with the file's size
        let d = f
            .front
            .deliveries()
            .wait_for(WAIT, |d| d.key == "u/i/form.png")
            .await
            .expect("the upload was delivered");
        assert_eq!(d.event_name, "ObjectCreated:Post");
        assert_eq!(d.event["Records"][0]["s3"]["object"]["size"], 9);
        // AND a form whose policy does not hold is refused (s3s-fs answers 400
        // InvalidPolicyDocument where S3 answers 403) and delivers nothing
        let (content_type, body) = post_form("elsewhere/x.png", b"png");
        let (status, _, _) = http(
            "POST",
            &format!("{}/{BUCKET}", f.front.endpoint()),
            &[("content-type", &content_type)],
            body,
        )
        .await;
        assert!(status.is_client_error(), "{status}");
        settle().await;
        assert_eq!(f.front.deliveries().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_invocation_is_recorded_with_its_error() {
        // GIVEN a front whose function always fails
        struct Fail;
        impl Deliver for Fail {
            fn deliver<'a>(
                &'a self,
                _: &'a str,
                _: &'a Value,
                _: &'a str,
            ) -> BoxFuture<'a, Result<(), String>> {
                Box::pin(async { Err("function error: boom".to_owned()) })
            }
        }
        let f = fixture().await;
        let front = S3Front::start(f.s3.endpoint(), vec![bucket()], Arc::new(Fail))
            .await
            .unwrap();
        // WHEN an image is uploaded
        let put = client(&front.endpoint())
            .put_object()
            .bucket(BUCKET)
            .key("u/i/x.jpg")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await;
        // THEN the upload succeeded regardless, and the delivery records the failure
        assert!(put.is_ok());
        let d = front
            .deliveries()
            .wait_for(WAIT, |_| true)
            .await
            .expect("delivered");
        assert_eq!(d.outcome, Err("function error: boom".to_owned()));
    }

    #[test]
    fn keys_are_url_encoded_in_events_as_s3_does() {
        // GIVEN keys with spaces, reserved characters and non-ASCII text
        // THEN spaces become +, slashes stay, the rest is %-encoded as UTF-8
        assert_eq!(event_key("u/i/a b+c(1).jpg"), "u/i/a+b%2Bc%281%29.jpg");
        assert_eq!(event_key("u/i/照片.png"), "u/i/%E7%85%A7%E7%89%87.png");
        assert_eq!(event_key("plain-key_1.~x"), "plain-key_1.~x");
    }

    #[test]
    fn paths_give_bucket_and_decoded_key_and_presign_params_are_not_subresources() {
        // GIVEN path-style paths and queries
        assert_eq!(
            bucket_and_key("/b/u/i/a%20b.jpg"),
            (Some("b".into()), Some("u/i/a b.jpg".into()))
        );
        assert_eq!(bucket_and_key("/b/"), (Some("b".into()), None));
        assert_eq!(bucket_and_key("/"), (None, None));
        let uri: Uri = "/b/k?x-id=PutObject&X-Amz-Signature=abc&X-Amz-Date=1"
            .parse()
            .unwrap();
        assert!(subresources(&uri).is_empty());
        let uri: Uri = "/b/k?partNumber=1&uploadId=x".parse().unwrap();
        assert_eq!(subresources(&uri), ["partNumber", "uploadId"]);
    }

    #[test]
    fn origins_and_headers_match_with_one_wildcard() {
        // GIVEN rule patterns with and without a wildcard
        assert!(wildcard("*", "https://a.example", false));
        assert!(wildcard(
            "https://*.example.com",
            "https://x.example.com",
            false
        ));
        assert!(!wildcard(
            "https://*.example.com",
            "https://example.org",
            false
        ));
        assert!(wildcard("x-amz-*", "X-Amz-Date", true));
        assert!(!wildcard("https://a.example", "https://A.example", false));
    }
}
