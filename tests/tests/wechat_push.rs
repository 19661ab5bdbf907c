//! End to end: WeChat's message push (issue 21's endpoint) through the local HTTP API and the
//! real `chat-wechat-push`: the URL check, a signed push in the plain and in the secure mode,
//! and the forged, stale, replayed and wrong-mode ones refused. Needs `cargo build --workspace --bins` first (`make test` does it).

use devtools::chat::{self, DEMO_APPID, DEMO_APP_SECRET, DEMO_APP_SID};
use devtools::fake_wechat::FakeWeChat;
use local_stack::runtime::Logs;
use local_stack::stack::{Stack, StackOptions};
use serde_json::json;
use shared::domain::push::{aes_key, encrypt_push, msg_signature, push_signature};

const SECRET: &str = "push-e2e-secret-push-e2e-secret-push-0123";
const PUSH_TOKEN: &str = "demoPushToken42";
const AES_APP: &str = "wxsecure";

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A stack whose demo app has a push token, and a second app that asks for the secure mode.
async fn stack(fake: &FakeWeChat) -> Stack {
    let mut opts = StackOptions {
        logs: Logs::Capture,
        ..chat::stack_options(SECRET)
    };
    chat::assert_fresh_binaries(&opts.functions_dir, &["chat-wechat-push"]);
    let apps = json!({
        DEMO_APP_SID: {"appid": DEMO_APPID, "secret": DEMO_APP_SECRET, "push_token": PUSH_TOKEN},
        AES_APP: {"appid": "wx0000000000secure", "secret": "s", "push_token": PUSH_TOKEN,
                  "push_aes_key": "a".repeat(43)},
    });
    chat::use_wechat(&mut opts, &fake.base, &apps.to_string());
    Stack::start(opts).await.unwrap()
}

/// `method` to `/wechat/push/<app>?<query>` with `body`: (status, text).
async fn call(stack: &Stack, method: &str, app: &str, query: &str, body: &str) -> (u16, String) {
    let url = format!(
        "{}/wechat/push/{app}?{query}",
        stack.http_url.as_deref().unwrap()
    );
    let client = reqwest::Client::new();
    let req = match method {
        "GET" => client.get(url),
        _ => client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    };
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The query WeChat signs a push with, at `ts`.
fn signed(ts: i64, nonce: &str) -> String {
    let ts = ts.to_string();
    format!(
        "signature={}&timestamp={ts}&nonce={nonce}",
        push_signature(PUSH_TOKEN, &ts, nonce)
    )
}

#[tokio::test]
async fn the_push_url_answers_wechats_check_and_takes_only_signed_fresh_pushes_once() {
    let wx = FakeWeChat::start(&[(DEMO_APPID, DEMO_APP_SECRET)])
        .await
        .unwrap();
    let stack = stack(&wx).await;
    // THEN the URL check (saving the URL in the admin console) gets its echostr back
    let q = format!("{}&echostr=abc123", signed(now_s(), "n-check"));
    assert_eq!(
        call(&stack, "GET", DEMO_APP_SID, &q, "").await,
        (200, "abc123".into())
    );
    // AND a wrong signature, an app without a push token, are 401
    let forged = q.replace("signature=", "signature=0");
    assert_eq!(call(&stack, "GET", DEMO_APP_SID, &forged, "").await.0, 401);
    assert_eq!(call(&stack, "GET", "wxnosuchapp", &q, "").await.0, 401);
    // WHEN WeChat pushes a media check verdict (JSON, plain mode), signed and fresh
    let event =
        json!({"ToUserName":"gh_x","FromUserName":"o-x","CreateTime":now_s(),"MsgType":"event",
        "Event":"wxa_media_check","appid":DEMO_APPID,"trace_id":"t-unknown","version":2,
        "result":{"suggest":"risky","label":20002},"detail":[]})
        .to_string();
    let push = signed(now_s(), "n-push-1");
    // THEN it is taken (200 success; the trace id is no message's, so nothing changes)
    assert_eq!(
        call(&stack, "POST", DEMO_APP_SID, &push, &event).await,
        (200, "success".into())
    );
    // AND the same push again (a captured one, replayed) is 401
    assert_eq!(
        call(&stack, "POST", DEMO_APP_SID, &push, &event).await.0,
        401
    );
    // AND a push signed 10 minutes ago, or unsigned, is 401
    let stale = signed(now_s() - 600, "n-stale");
    assert_eq!(
        call(&stack, "POST", DEMO_APP_SID, &stale, &event).await.0,
        401
    );
    assert_eq!(call(&stack, "POST", DEMO_APP_SID, "", &event).await.0, 401);
    // AND an app with an EncodingAESKey refuses a plain push
    let plain = signed(now_s(), "n-plain");
    assert_eq!(call(&stack, "POST", AES_APP, &plain, &event).await.0, 401);
    // AND that app takes a push in the secure mode: sealed with its key, the body signed
    let key = aes_key(&"a".repeat(43)).unwrap();
    let sealed = encrypt_push(&key, "wx0000000000secure", [3; 16], event.as_bytes());
    let envelope = json!({"ToUserName": "gh_x", "Encrypt": sealed}).to_string();
    let secure = |nonce: &str, encrypt: &str| {
        let ts = now_s().to_string();
        format!(
            "timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={}",
            msg_signature(PUSH_TOKEN, &ts, nonce, encrypt)
        )
    };
    assert_eq!(
        call(
            &stack,
            "POST",
            AES_APP,
            &secure("n-aes", &sealed),
            &envelope
        )
        .await,
        (200, "success".into())
    );
    // AND one whose body signature is over another body, or sealed for another app, is 401
    let other = encrypt_push(&key, "wx0000000000secure", [4; 16], b"{}");
    assert_eq!(
        call(
            &stack,
            "POST",
            AES_APP,
            &secure("n-aes2", &other),
            &envelope
        )
        .await
        .0,
        401
    );
    let foreign = encrypt_push(&key, DEMO_APPID, [5; 16], event.as_bytes());
    let foreign_body = json!({"ToUserName": "gh_x", "Encrypt": foreign}).to_string();
    assert_eq!(
        call(
            &stack,
            "POST",
            AES_APP,
            &secure("n-aes3", &foreign),
            &foreign_body
        )
        .await
        .0,
        401
    );
    // AND a signed push that is not JSON is 400
    let xml = signed(now_s(), "n-xml");
    assert_eq!(
        call(&stack, "POST", DEMO_APP_SID, &xml, "<xml/>").await.0,
        400
    );
    // AND no log line holds the push token or a signature
    let logs = stack.function_logs();
    assert!(
        logs.iter().any(|l| l.contains("push refused")),
        "the refusals are logged:\n{}",
        logs.join("\n")
    );
    let signature = push
        .split('&')
        .next()
        .unwrap()
        .trim_start_matches("signature=");
    for secret in [PUSH_TOKEN, signature] {
        assert!(
            !logs.iter().any(|l| l.contains(secret)),
            "{secret} was logged"
        );
    }
}
