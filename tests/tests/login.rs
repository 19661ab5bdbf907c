//! End to end: `POST /login` through the local HTTP API → the real `chat-login` binary → the
//! fake WeChat API and DynamoDB Local, and the token it mints accepted by the real `$connect`.
//! Needs `cargo build --workspace --bins` first (`make test` does it).

use devtools::chat::{self, DEMO_APPID, DEMO_APP_SID};
use devtools::fake_wechat::FakeWeChat;
use devtools::ws_client::{user_query, ChatSocket};
use local_stack::runtime::Logs;
use local_stack::stack::{Stack, StackOptions};
use serde_json::{json, Value};
use std::collections::HashMap;

const SECRET: &str = "login-e2e-secret-login-e2e-secret-0123";

/// A stack whose functions talk to `fake` (the demo app), keeping what they log.
async fn stack(fake: &FakeWeChat, parameters: &[(&str, &str)]) -> Stack {
    stack_with(fake, parameters, None).await
}

/// The same, with every schedule's period replaced by `schedule_every`.
async fn stack_with(
    fake: &FakeWeChat,
    parameters: &[(&str, &str)],
    schedule_every: Option<std::time::Duration>,
) -> Stack {
    let mut opts = StackOptions {
        schedule_every,
        logs: Logs::Capture,
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..chat::stack_options(SECRET)
    };
    chat::assert_fresh_binaries(
        &opts.functions_dir,
        &["chat-login", "chat-connect", "chat-token-keeper"],
    );
    chat::use_wechat(&mut opts, &fake.base, &chat::demo_apps());
    Stack::start(opts).await.unwrap()
}

async fn fake() -> FakeWeChat {
    FakeWeChat::start(&[(DEMO_APPID, chat::DEMO_APP_SECRET)])
        .await
        .unwrap()
}

/// `POST /login` with `body`: (status, `Retry-After`, JSON answer).
async fn login(stack: &Stack, body: &str) -> (u16, Option<String>, Value) {
    let url = format!("{}/login", stack.http_url.as_deref().expect("an HTTP API"));
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, retry, v)
}

fn body(code: &str, phone_code: Option<&str>) -> String {
    let mut b = json!({"app_sid": DEMO_APP_SID, "code": code, "name": "Ann"});
    if let Some(p) = phone_code {
        b["phone_code"] = json!(p);
    }
    b.to_string()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_wechat_user_logs_in_with_the_phone_button_and_the_token_opens_a_connection() {
    // GIVEN the stack (AccountIdentity=phone, the default) and the fake WeChat API
    let wx = fake().await;
    let stack = stack(&wx, &[]).await;
    let (openid, phone) = ("o-e2e-ann", "13811112222");
    // WHEN a new user logs in without the phone button's code
    let (status, _, v) = login(&stack, &body(&wx.login_code(DEMO_APPID, openid), None)).await;
    // THEN the client is told to show the phone button
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("phone_required")),
        "{v}"
    );
    // WHEN they log in with it
    let code = wx.login_code(DEMO_APPID, openid);
    let phone_code = wx.phone_code(DEMO_APPID, phone);
    let (status, _, v) = login(&stack, &body(&code, Some(&phone_code))).await;
    // THEN the account is the verified number, with a token for LoginTokenSeconds
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["account"], phone);
    let expires_at = v["expires_at"].as_u64().unwrap();
    assert!(expires_at.abs_diff(now_s() + 7200) <= 5, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    // AND $connect accepts that token for that account's user connection, which chats
    let mut socket = ChatSocket::open(&stack.ws_url, &user_query(phone, DEMO_APP_SID, &token))
        .await
        .expect("the token opens a connection");
    socket
        .send_json(&json!({"action":"send","to":"13899990000","client_msg_id":"first","chat_type":0,"chat_content":"hello"}))
        .await
        .unwrap();
    let ack = loop {
        let f = socket
            .frame(std::time::Duration::from_secs(15))
            .await
            .unwrap();
        if f["type"] != "conversation" {
            break f;
        }
    };
    assert_eq!(ack["type"], "message", "{ack}");
    assert_eq!(
        (
            ack["message"]["userphone"].as_str(),
            ack["client_msg_id"].as_str()
        ),
        (Some(phone), Some("first")),
        "{ack}"
    );
    socket.close().await;
    // AND the same code again is refused as used
    let (status, _, v) = login(&stack, &body(&code, None)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("bad_code")),
        "{v}"
    );
    // WHEN they come back later without the phone button
    let (status, _, v) = login(&stack, &body(&wx.login_code(DEMO_APPID, openid), None)).await;
    // THEN the remembered number is their account
    assert_eq!((status, v["account"].as_str()), (200, Some(phone)), "{v}");
    // WHEN WeChat verifies that number for another openid (numbers are recycled)
    let (status, _, v) = login(
        &stack,
        &body(
            &wx.login_code(DEMO_APPID, "o-e2e-new-owner"),
            Some(&wx.phone_code(DEMO_APPID, phone)),
        ),
    )
    .await;
    assert_eq!((status, v["account"].as_str()), (200, Some(phone)), "{v}");
    // THEN it is the new owner's: the first openid must verify a number again
    let (status, _, v) = login(&stack, &body(&wx.login_code(DEMO_APPID, openid), None)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("phone_required")),
        "{v}"
    );
    // AND one phone lookup went to WeChat per phone code, with one access token for all
    assert_eq!(wx.calls("/wxa/business/getuserphonenumber"), 2);
    assert_eq!(wx.calls("/cgi-bin/stable_token"), 1);
    // AND no log line holds a code, openid, number, token or app secret
    let logs = stack.function_logs();
    assert!(
        logs.iter()
            .any(|l| l.starts_with("[LoginFunction]") && l.contains("login")),
        "the login function logged nothing:\n{}",
        logs.join("\n")
    );
    for secret in [
        openid,
        "o-e2e-new-owner",
        phone,
        code.as_str(),
        phone_code.as_str(),
        token.as_str(),
        chat::DEMO_APP_SECRET,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(wx.handed_out())
    {
        let secret = secret.as_str();
        let leaks: Vec<&String> = logs.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} was logged: {leaks:?}");
    }
}

#[tokio::test]
async fn bad_logins_get_their_refusal_and_wechat_trouble_asks_to_retry() {
    // GIVEN the stack and the fake WeChat API
    let wx = fake().await;
    let stack = stack(&wx, &[]).await;
    let code = || wx.login_code(DEMO_APPID, "o-e2e-refused");
    // THEN malformed requests are 400 bad_request and an unknown app 400 unknown_app
    for (b, want) in [
        ("not json".to_owned(), "bad_request"),
        (
            json!({"app_sid": DEMO_APP_SID, "code": code(), "extra": 1}).to_string(),
            "bad_request",
        ),
        (
            json!({"app_sid": DEMO_APP_SID, "code": code(), "name": "n".repeat(65)}).to_string(),
            "bad_request",
        ),
        (
            json!({"app_sid": "nosuchapp", "code": code()}).to_string(),
            "unknown_app",
        ),
    ] {
        let (status, _, v) = login(&stack, &b).await;
        assert_eq!((status, v["error"].as_str()), (400, Some(want)), "{b}: {v}");
        assert!(v["message"].is_string(), "{v}");
    }
    // AND a code WeChat never issued is 401 bad_code
    let (status, _, v) = login(&stack, &body("made-up-code", None)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("bad_code")),
        "{v}"
    );
    // AND WeChat busy is 503 with Retry-After, and nothing was stored: the user (who sent a
    // phone code) is still unknown
    wx.busy_next(1);
    let pc = wx.phone_code(DEMO_APPID, "13833334444");
    let (status, retry, v) = login(&stack, &body(&code(), Some(&pc))).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (503, Some("wechat_unavailable")),
        "{v}"
    );
    assert_eq!(retry.as_deref(), Some("2"));
    let (status, _, v) = login(&stack, &body(&code(), None)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("phone_required")),
        "{v}"
    );
    // AND a user WeChat blocks as high-risk is 403, an errcode we do not know 502 naming it
    wx.errcode_next(40226, 1);
    let (status, _, v) = login(&stack, &body(&code(), None)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("user_blocked")),
        "{v}"
    );
    wx.errcode_next(61024, 1);
    let (status, retry, v) = login(&stack, &body(&code(), None)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (502, Some("wechat_error")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("61024"), "{v}");
    assert!(
        !v["message"].as_str().unwrap().contains("fault injected"),
        "{v}"
    );
    assert_eq!(retry, None);
    // AND its rate limit is 429 with Retry-After
    wx.rate_limited_next(1);
    let (status, retry, v) = login(&stack, &body(&code(), None)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    assert_eq!(retry.as_deref(), Some("2"));
    // AND no refusal carries WeChat's own text or anything internal
    let logs = stack.function_logs().join("\n");
    assert!(!logs.contains("o-e2e-refused"), "{logs}");
}

#[tokio::test]
async fn with_openid_identity_the_account_is_the_openid_and_no_phone_is_asked() {
    // GIVEN a stack deployed with AccountIdentity=openid
    let wx = fake().await;
    let stack = stack(&wx, &[("AccountIdentity", "openid")]).await;
    // WHEN a user logs in with only wx.login's code
    let (status, _, v) = login(
        &stack,
        &body(&wx.login_code(DEMO_APPID, "o-e2e-solo"), None),
    )
    .await;
    // THEN their account is their openid and WeChat's phone API was never called
    assert_eq!(
        (status, v["account"].as_str()),
        (200, Some("o-e2e-solo")),
        "{v}"
    );
    let token = v["token"].as_str().unwrap();
    let mut socket = ChatSocket::open(
        &stack.ws_url,
        &user_query("o-e2e-solo", DEMO_APP_SID, token),
    )
    .await
    .expect("the token opens a connection");
    socket.close().await;
    assert_eq!(wx.calls("/wxa/business/getuserphonenumber"), 0);
}

#[tokio::test]
async fn one_stored_access_token_serves_every_login_and_a_refused_one_is_forced_once() {
    // GIVEN the stack and the fake WeChat API
    let wx = fake().await;
    let stack = stack(&wx, &[]).await;
    let tokens = || wx.calls("/cgi-bin/stable_token");
    let phone_login = |openid: &'static str, phone: &'static str| {
        let (code, pc) = (
            wx.login_code(DEMO_APPID, openid),
            wx.phone_code(DEMO_APPID, phone),
        );
        let stack = &stack;
        async move { login(stack, &body(&code, Some(&pc))).await }
    };
    // WHEN the token keeper runs (as its schedule would), twice
    let first = stack.run_schedule("TokenKeeperFunction").await.unwrap();
    let second = stack.run_schedule("TokenKeeperFunction").await.unwrap();
    // THEN it fetched the app's token once and then found it fresh
    assert_eq!(
        first,
        json!({"apps": 1, "fresh": 0, "refreshed": 1, "failed": 0})
    );
    assert_eq!(
        second,
        json!({"apps": 1, "fresh": 1, "refreshed": 0, "failed": 0})
    );
    assert_eq!(tokens(), 1);
    // AND a login that needs the token reads the stored one: no call of its own
    let (status, _, v) = phone_login("o-e2e-tok-1", "13822220001").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(tokens(), 1);
    // WHEN WeChat refuses that token (40001) although it still hands it out
    wx.invalid_token_next(1);
    let (status, _, v) = phone_login("o-e2e-tok-2", "13822220002").await;
    // THEN the login still succeeds: a normal call gave the same token, so one forced refresh
    assert_eq!(status, 200, "{v}");
    assert_eq!(tokens(), 3);
    // AND the keeper finds the new token stored and fresh
    let third = stack.run_schedule("TokenKeeperFunction").await.unwrap();
    assert_eq!(third["fresh"], 1, "{third}");
    assert_eq!(tokens(), 3);
    // WHEN WeChat refuses the new one too within the hour
    wx.invalid_token_next(1);
    let (status, _, v) = phone_login("o-e2e-tok-3", "13822220003").await;
    // THEN no second forced refresh is made (one normal call only) and the login says so
    assert_eq!(
        (status, v["error"].as_str()),
        (502, Some("wechat_error")),
        "{v}"
    );
    assert_eq!(tokens(), 4);
    // AND no log line holds a token
    let logs = stack.function_logs().join("\n");
    assert!(!logs.contains("\"access_token\""), "{logs}");
    // AND the sample events run through the real binaries (as sam local invoke would)
    let sample = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(devtools::repo_root().join("events").join(name)).unwrap(),
        )
        .unwrap()
    };
    let kept = stack
        .gateway
        .invoke("TokenKeeperFunction", &sample("token-keeper.json"))
        .await
        .unwrap();
    assert_eq!(kept["apps"], 1, "{kept}");
    // (the sample's codes were never issued by this fake WeChat API)
    let answer = stack
        .gateway
        .invoke("LoginFunction", &sample("login.json"))
        .await
        .unwrap();
    assert_eq!(answer["statusCode"], 401, "{answer}");
    assert_eq!(
        answer["headers"]["content-type"], "application/json",
        "{answer}"
    );
}

#[tokio::test]
async fn the_local_stack_runs_the_token_keeper_on_its_schedule() {
    // GIVEN a stack whose schedules fire every 400 ms instead of every 10 minutes
    let wx = fake().await;
    let stack = stack_with(&wx, &[], Some(std::time::Duration::from_millis(400))).await;
    // WHEN a few periods pass
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let runs = loop {
        let runs = stack.schedule_runs();
        if runs.len() >= 3 {
            break runs;
        }
        assert!(std::time::Instant::now() < deadline, "{runs:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // THEN the keeper ran each time, refreshing once and then finding the token fresh
    assert!(
        runs.iter().all(|r| r.function == "TokenKeeperFunction"),
        "{runs:?}"
    );
    assert_eq!(
        runs[0].outcome,
        Ok(json!({"apps": 1, "fresh": 0, "refreshed": 1, "failed": 0}))
    );
    assert_eq!(
        runs[2].outcome,
        Ok(json!({"apps": 1, "fresh": 1, "refreshed": 0, "failed": 0}))
    );
    assert_eq!(wx.calls("/cgi-bin/stable_token"), 1);
}

#[tokio::test]
async fn fifty_concurrent_first_logins_share_one_access_token_call() {
    // GIVEN a fresh fake WeChat API and a stack whose instances have no token yet
    let wx = fake().await;
    let stack = stack(&wx, &[]).await;
    // WHEN 50 new users log in at once with the phone button (several instances start)
    let bodies: Vec<String> = (0..50)
        .map(|i| {
            let code = wx.login_code(DEMO_APPID, &format!("o-e2e-many-{i}"));
            let pc = wx.phone_code(DEMO_APPID, &format!("1386666{i:04}"));
            body(&code, Some(&pc))
        })
        .collect();
    let answers = futures::future::join_all(bodies.iter().map(|b| login(&stack, b))).await;
    // THEN every login succeeded, with its own number
    for (i, (status, _, v)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{v}");
        assert_eq!(v["account"], format!("1386666{i:04}"));
    }
    // AND WeChat was asked for an access token once, for all of them
    assert_eq!(wx.calls("/cgi-bin/stable_token"), 1);
    assert_eq!(wx.calls("/wxa/business/getuserphonenumber"), 50);
}
