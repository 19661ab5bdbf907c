//! A local API Gateway HTTP API: `http://127.0.0.1:<port>[/<stage>]/…` runs the function of
//! the template's route for each request, with the payload format 2.0 event, and turns its
//! answer into the HTTP response as API Gateway does.
//!
//! Emulated: route selection (exact method before `ANY`, literal segments before `{param}`,
//! `{param+}` last, `$default`), path and query parameters, cookies, base64 bodies for
//! non-text content, the 10 MB request limit, a function's structured response (`statusCode`,
//! `headers`, `cookies`, `body`, `isBase64Encoded`) or any other JSON as a 200 body, and the
//! gateway's own answers (404 no route, 413 too large, 500 function error, 503 timeout). Not
//! emulated: throttling, authorizers, CORS configuration, custom domains (README.md).

use crate::apigw::{now_ms, request_time};
use crate::app::HttpApiSpec;
use crate::resolve::{LOCAL_ACCOUNT, LOCAL_API_ID};
use crate::runtime::{InvokeError, Invoker};
use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// API Gateway's largest HTTP API request payload.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// The HTTP API's state.
pub struct HttpApi {
    spec: HttpApiSpec,
    invoker: Arc<Invoker>,
    /// What events report as `domainName` (`127.0.0.1:port`).
    domain: String,
    seq: AtomicU64,
}

impl HttpApi {
    pub fn new(spec: HttpApiSpec, invoker: Arc<Invoker>, domain: String) -> Arc<Self> {
        Arc::new(HttpApi {
            spec,
            invoker,
            domain,
            seq: AtomicU64::new(0),
        })
    }

    /// Serves the API on `listener` until the task is aborted.
    pub fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> tokio::task::JoinHandle<()> {
        let app = Router::new().fallback(handle).with_state(self.clone());
        crate::peer::serve(listener, app)
    }

    fn request_id(&self) -> String {
        format!(
            "{}{:06}=",
            &ulid::Ulid::new().to_string()[..10],
            self.seq.fetch_add(1, Ordering::Relaxed) % 1_000_000
        )
    }
}

fn message(status: StatusCode, text: &str, request_id: &str) -> Response {
    let mut r = (status, axum::Json(json!({ "message": text }))).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("apigw-requestid", v);
    }
    r
}

async fn handle(
    State(api): State<Arc<HttpApi>>,
    ConnectInfo(peer): ConnectInfo<crate::peer::Peer>,
    req: Request,
) -> Response {
    let request_id = api.request_id();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let full_path = parts.uri.path().to_owned();
    let path = match &api.spec.stage {
        None => Some(full_path.as_str()),
        Some(stage) => full_path
            .strip_prefix(&format!("/{stage}"))
            .filter(|rest| rest.is_empty() || rest.starts_with('/')),
    };
    let Some((route, params)) = path.and_then(|p| api.spec.route(&method, p)) else {
        return message(StatusCode::NOT_FOUND, "Not Found", &request_id);
    };
    let Ok(body) = to_bytes(body, MAX_REQUEST_BYTES).await else {
        return message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Entity Too Large",
            &request_id,
        );
    };
    let route_key = match route.path.as_str() {
        "$default" => "$default".to_owned(),
        p => format!("{} {p}", route.method),
    };
    let event = event(
        &api,
        &EventParts {
            request_id: &request_id,
            route_key: &route_key,
            method: &method,
            path: &full_path,
            query: parts.uri.query().unwrap_or_default(),
            headers: &parts.headers,
            params: &params,
            source_ip: &peer.addr.ip().to_string(),
        },
        &body,
    );
    match api
        .invoker
        .invoke(&route.function, &event, &route_key)
        .await
    {
        Ok(out) => with_request_id(response(out), &request_id),
        Err(InvokeError::Timeout(_)) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            &request_id,
        ),
        Err(e) => {
            eprintln!("[http api] {route_key} failed: {e}");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                &request_id,
            )
        }
    }
}

fn with_request_id(mut r: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("apigw-requestid", v);
    }
    r
}

struct EventParts<'a> {
    request_id: &'a str,
    route_key: &'a str,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    params: &'a [(String, String)],
    source_ip: &'a str,
}

/// Whether API Gateway passes a body of this content type as text (else base64).
fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/")
        || ["json", "javascript", "xml", "x-www-form-urlencoded"]
            .iter()
            .any(|k| ct.contains(k))
}

/// The payload format 2.0 event of a request.
fn event(api: &HttpApi, p: &EventParts, body: &[u8]) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (k, v) in p.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        if k == axum::http::header::COOKIE {
            cookies.extend(
                v.split(';')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        let joined = match headers.get(k.as_str()).and_then(Value::as_str) {
            Some(before) => format!("{before},{v}"),
            None => v,
        };
        headers.insert(k.as_str().to_owned(), json!(joined));
    }
    let mut query = Map::new();
    for (k, v) in form_pairs(p.query) {
        let joined = match query.get(&k).and_then(Value::as_str) {
            Some(before) => format!("{before},{v}"),
            None => v,
        };
        query.insert(k, json!(joined));
    }
    let now = now_ms();
    let user_agent = p
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut e = json!({
        "version": "2.0",
        "routeKey": p.route_key,
        "rawPath": p.path,
        "rawQueryString": p.query,
        "headers": headers,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT,
            "apiId": LOCAL_API_ID,
            "domainName": api.domain,
            "domainPrefix": api.domain.split('.').next().unwrap_or_default(),
            "http": {
                "method": p.method,
                "path": p.path,
                "protocol": "HTTP/1.1",
                "sourceIp": p.source_ip,
                "userAgent": user_agent,
            },
            "requestId": p.request_id,
            "routeKey": p.route_key,
            "stage": api.spec.stage.as_deref().unwrap_or("$default"),
            "time": request_time(now),
            "timeEpoch": now,
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        e["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        e["queryStringParameters"] = Value::Object(query);
    }
    if !p.params.is_empty() {
        let params: Map<String, Value> = p
            .params
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        e["pathParameters"] = Value::Object(params);
    }
    if !body.is_empty() {
        let content_type = p
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match std::str::from_utf8(body) {
            Ok(text) if is_text(content_type) => e["body"] = json!(text),
            _ => {
                e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
                e["isBase64Encoded"] = json!(true);
            }
        }
    }
    e
}

/// `a=1&b=x%20y` → pairs, percent-decoded (`+` as a space, as API Gateway does).
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A function's answer as API Gateway turns it into a response (payload format 2.0): an
/// object with `statusCode` is a structured response; anything else is a 200 JSON body.
fn response(out: Value) -> Response {
    let Some(status) = out.get("statusCode").and_then(Value::as_u64) else {
        let mut r = Response::new(Body::from(out.to_string()));
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    };
    let Ok(status) = StatusCode::from_u16(status as u16) else {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "",
        );
    };
    let body = match (
        out.get("body"),
        out.get("isBase64Encoded").and_then(Value::as_bool),
    ) {
        (Some(Value::String(b)), Some(true)) => {
            match base64::engine::general_purpose::STANDARD.decode(b) {
                Ok(bytes) => bytes,
                Err(_) => {
                    return message(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error",
                        "",
                    )
                }
            }
        }
        (Some(Value::String(b)), _) => b.clone().into_bytes(),
        _ => Vec::new(),
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Some(headers) = out.get("headers").and_then(Value::as_object) {
        for (k, v) in headers {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(&v)) {
                h.append(k, v);
            }
        }
    }
    if let Some(cookies) = out.get("cookies").and_then(Value::as_array) {
        for c in cookies.iter().filter_map(Value::as_str) {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.append(axum::http::header::SET_COOKIE, v);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{FunctionSpec, HttpRoute};
    use crate::runtime::{fake, Logs};
    use std::collections::BTreeMap;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 request over a fresh connection: (status, headers and body as text).
    async fn request(addr: std::net::SocketAddr, raw: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
            .await
            .expect("answered in time")
            .unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text[9..12].parse().unwrap();
        (status, text)
    }

    #[tokio::test]
    async fn requests_reach_their_routes_function_as_payload_2_events() {
        // GIVEN an HTTP API on a named stage whose routes run a function that echoes its event
        // and one that dies
        let dir = fake::TempDir::new("httpapi");
        fake::function(
            &dir.0,
            "echo",
            "ctx = event['requestContext']\n\
             seen = {k: event.get(k) for k in ['routeKey', 'rawPath', 'rawQueryString', 'pathParameters', 'queryStringParameters', 'body', 'isBase64Encoded', 'cookies']}\n\
             seen['stage'] = ctx['stage']\n\
             seen['method'] = ctx['http']['method']\n\
             seen['ip'] = ctx['http']['sourceIp']\n\
             seen['type'] = event['headers'].get('content-type')\n\
             result = {'statusCode': 201, 'headers': {'x-echo': 'yes'}, 'body': json.dumps(seen)}",
        );
        fake::function(&dir.0, "dies", "os._exit(3)");
        let spec = |id: &str, binary: &str| FunctionSpec {
            logical_id: id.into(),
            binary: binary.into(),
            timeout: Duration::from_secs(10),
            memory_mb: 128,
            env: BTreeMap::new(),
        };
        let invoker = Arc::new(crate::runtime::Invoker::new(
            BTreeMap::from([
                ("Echo".to_string(), spec("Echo", "echo")),
                ("Dies".to_string(), spec("Dies", "dies")),
            ]),
            dir.0.clone(),
            BTreeMap::new(),
            Logs::Quiet,
        ));
        let route = |method: &str, path: &str, f: &str| HttpRoute {
            method: method.into(),
            path: path.into(),
            function: f.into(),
        };
        let api = HttpApi::new(
            HttpApiSpec {
                logical_id: "Api".into(),
                stage: Some("v1".into()),
                routes: vec![
                    route("POST", "/items/{id}", "Echo"),
                    route("GET", "/crash", "Dies"),
                ],
            },
            invoker.clone(),
            "127.0.0.1".into(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = api.serve(listener);
        // WHEN a JSON body is posted to a route with a path parameter, a query and a cookie
        let body = r#"{"a":"你好"}"#;
        let (status, text) = request(
            addr,
            &format!(
                "POST /v1/items/42?x=1&x=2&y=a%20b HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Cookie: s=1; t=2\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
        .await;
        // THEN the function's status, header and body come back
        assert_eq!(status, 201, "{text}");
        assert!(text.to_ascii_lowercase().contains("x-echo: yes"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("apigw-requestid"),
            "{text}"
        );
        let seen: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        // AND the event was API Gateway's payload format 2.0
        assert_eq!(seen["routeKey"], "POST /items/{id}");
        assert_eq!(seen["rawPath"], "/v1/items/42");
        assert_eq!(seen["rawQueryString"], "x=1&x=2&y=a%20b");
        assert_eq!(seen["pathParameters"], json!({"id": "42"}));
        assert_eq!(
            seen["queryStringParameters"],
            json!({"x": "1,2", "y": "a b"})
        );
        assert_eq!(seen["cookies"], json!(["s=1", "t=2"]));
        assert_eq!(seen["body"], body);
        assert_eq!(seen["isBase64Encoded"], false);
        assert_eq!(seen["stage"], "v1");
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["ip"], "127.0.0.1");
        assert_eq!(seen["type"], "application/json");
        // WHEN a binary body is posted
        let (status, text) = request(
            addr,
            "POST /v1/items/7 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 3\r\nConnection: close\r\n\r\n\x01\x02\x03",
        )
        .await;
        assert_eq!(status, 201, "{text}");
        let seen: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        // THEN it arrives base64-encoded
        assert_eq!(seen["body"], "AQID");
        assert_eq!(seen["isBase64Encoded"], true);
        // AND a path outside the stage, an undeclared method and a dying function get the
        // gateway's own answers
        for (raw, want) in [
            ("POST /items/42 HTTP/1.1", 404),
            ("GET /v1/items/42 HTTP/1.1", 404),
            ("GET /v1/crash HTTP/1.1", 500),
        ] {
            let (status, text) = request(
                addr,
                &format!("{raw}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
            )
            .await;
            assert_eq!(status, want, "{raw}: {text}");
        }
        server.abort();
        invoker.shutdown();
    }

    #[test]
    fn query_strings_decode_as_api_gateway_does() {
        assert_eq!(
            form_pairs("a=1&b=x%20y+z&c&a=2&bad=%zz&end=%4&u=%E4%BD%A0%"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), "".into()),
                ("a".into(), "2".into()),
                ("bad".into(), "%zz".into()),
                ("end".into(), "%4".into()),
                ("u".into(), "你%".into()),
            ]
        );
    }

    #[test]
    fn text_bodies_stay_text_and_others_go_base64() {
        assert!(is_text(Some("application/json; charset=utf-8")));
        assert!(is_text(Some("text/plain")));
        assert!(is_text(None));
        assert!(!is_text(Some("image/png")));
    }

    #[tokio::test]
    async fn structured_and_plain_function_answers_become_responses() {
        let r = response(json!({
            "statusCode": 409,
            "headers": {"content-type": "application/json", "retry-after": 2},
            "cookies": ["a=1", "b=2"],
            "body": "{\"error\":\"x\"}",
        }));
        assert_eq!(r.status(), 409);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
        let body = to_bytes(r.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"{\"error\":\"x\"}");
        let r = response(json!({"statusCode": 200, "body": "aGk=", "isBase64Encoded": true}));
        assert_eq!(&to_bytes(r.into_body(), 1024).await.unwrap()[..], b"hi");
        let r = response(json!({"hello": "world"}));
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
    }
}
