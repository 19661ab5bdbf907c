//! Shared set-up of the end-to-end tests of content security (`moderation.rs`,
//! `media_moderation.rs`): a stack with `Moderation=wechat` against the fake WeChat API, logins
//! through `POST /login`, sockets and the frames they wait for.
#![allow(dead_code)]

use devtools::chat::{self, DEMO_APPID, DEMO_APP_SID};
use devtools::fake_wechat::FakeWeChat;
use devtools::ws_client::{ChatSocket, Read};
use local_stack::runtime::Logs;
use local_stack::stack::{Stack, StackOptions};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(20);

/// The fake WeChat API with the demo app.
pub async fn fake() -> FakeWeChat {
    FakeWeChat::start(&[(DEMO_APPID, chat::DEMO_APP_SECRET)])
        .await
        .unwrap()
}

/// A stack signing tokens with `secret` and checking with `fake` (Moderation=wechat, accounts
/// are openids), under `parameters`; `bins` must be fresh builds.
pub async fn stack(
    fake: &FakeWeChat,
    secret: &str,
    parameters: &[(&str, &str)],
    bins: &[&str],
) -> Stack {
    let mut opts = StackOptions {
        logs: Logs::Capture,
        parameters: [("Moderation", "wechat"), ("AccountIdentity", "openid")]
            .iter()
            .chain(parameters)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..chat::stack_options(secret)
    };
    chat::assert_fresh_binaries(&opts.functions_dir, bins);
    chat::use_wechat(&mut opts, &fake.base, &chat::demo_apps());
    Stack::start(opts).await.unwrap()
}

/// Logs `openid` in through `POST /login`: the token (the account is the openid).
pub async fn login(stack: &Stack, wx: &FakeWeChat, openid: &str) -> String {
    login_named(stack, wx, openid, None).await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The same with a display name: the whole answer.
pub async fn login_named(
    stack: &Stack,
    wx: &FakeWeChat,
    openid: &str,
    name: Option<&str>,
) -> Value {
    let url = format!("{}/login", stack.http_url.as_deref().unwrap());
    let mut body = json!({"app_sid": DEMO_APP_SID, "code": wx.login_code(DEMO_APPID, openid)});
    if let Some(name) = name {
        body["name"] = json!(name);
    }
    let text = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["account"], openid, "{v}");
    v
}

pub async fn open(stack: &Stack, query: &str) -> ChatSocket {
    ChatSocket::open(&stack.ws_url, query)
        .await
        .expect("handshake accepted")
}

/// The next frame of `kind` (others, such as list updates, are skipped).
pub async fn next(socket: &mut ChatSocket, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match socket.read(left).await {
            Read::Frame(f) if f["type"] == kind => return f,
            Read::Frame(_) => continue,
            other => panic!("no {kind} frame in time: {other:?}"),
        }
    }
}

/// The rows of the conversation with `peer`, as a fresh `sync` reads them.
pub async fn rows(socket: &mut ChatSocket, peer: &str) -> Vec<Value> {
    socket
        .send_json(&json!({"action":"sync","to":peer}))
        .await
        .unwrap();
    next(socket, "history").await["data"]
        .as_array()
        .unwrap()
        .clone()
}
