//! End to end, content security (issue 20): texts checked by WeChat's msgSecCheck (the fake
//! WeChat API) through the real `$connect` and `$default` binaries, under the operator's
//! policies. Needs `cargo build --workspace --bins` first (`make test` does it).

use devtools::chat::{self, DEMO_APP_SID};
use devtools::fake_webhook::{FakeWebhook, DENY_WORD, REPLACE_WORD, SLOW_WORD};
use devtools::fake_wechat::{FakeWeChat, REVIEW_WORD, RISKY_WORD};
use devtools::ws_client::{conversation_query, user_query, ChatSocket, Read};
use local_stack::runtime::Logs;
use local_stack::stack::{Stack, StackOptions};
use serde_json::{json, Value};
use shared::domain::auth::{mint, Claims};
use std::collections::HashMap;
use std::time::Duration;

mod checked;
use checked::{fake, login, login_named, next, open, rows};

const SECRET: &str = "moderation-e2e-secret-moderation-e2e-0123";

/// A stack checking texts with `fake`, under `parameters`.
async fn stack(fake: &FakeWeChat, parameters: &[(&str, &str)]) -> Stack {
    let bins = ["chat-login", "chat-connect", "chat-default"];
    checked::stack(fake, SECRET, parameters, &bins).await
}

/// A token the operator minted (no `/login`, so no openid).
fn minted(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = Claims {
        sub: sub.into(),
        app: DEMO_APP_SID.into(),
        exp,
        name: None,
        avatar: None,
    };
    mint(SECRET.as_bytes(), &claims).unwrap()
}

/// Whether anything arrives within `wait`.
async fn quiet(socket: &mut ChatSocket, wait: Duration) -> bool {
    !matches!(socket.read(wait).await, Read::Frame(_))
}

fn send(to: &str, cmid: &str, text: &str) -> Value {
    json!({"action":"send","to":to,"client_msg_id":cmid,"chat_type":0,"chat_content":text})
}

/// The messages in the sparse `unchecked` index: (content, mod). (A test may scan.)
async fn unchecked(stack: &Stack) -> Vec<(String, String)> {
    let ddb = local_stack::clients::dynamodb(&stack.dynamodb_endpoint());
    let out = ddb
        .scan()
        .table_name(&chat::tables(stack).messages)
        .index_name("unchecked")
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_s().unwrap().clone();
            (s("content"), s("mod"))
        })
        .collect()
}

#[tokio::test]
async fn a_risky_text_is_refused_and_nothing_else_changes_for_either_kind_of_client() {
    // GIVEN Ann logged in through WeChat on a user connection, Bob on the seed's kind
    let wx = fake().await;
    let stack = stack(&wx, &[]).await;
    let (ann, bob) = ("o-mod-ann", "o-mod-bob");
    let mut a = open(
        &stack,
        &user_query(ann, DEMO_APP_SID, &login(&stack, &wx, ann).await),
    )
    .await;
    let bob_token = login(&stack, &wx, bob).await;
    let mut b = open(
        &stack,
        &conversation_query(bob, ann, DEMO_APP_SID, &bob_token),
    )
    .await;
    // WHEN Ann sends a text WeChat finds risky
    a.send_json(&send(bob, "k1", &format!("you are a {RISKY_WORD}")))
        .await
        .unwrap();
    // THEN she gets content_blocked with the label's name and her id
    let refused = next(&mut a, "error").await;
    assert_eq!(
        (
            refused["error"].as_str(),
            refused["label"].as_str(),
            refused["client_msg_id"].as_str()
        ),
        (Some("content_blocked"), Some("porn"), Some("k1")),
        "{refused}"
    );
    // AND Bob is told nothing, and nothing was stored
    assert!(quiet(&mut b, Duration::from_millis(500)).await);
    assert!(rows(&mut a, bob).await.is_empty());
    // AND WeChat was asked with Ann's openid in scene 2 (the default)
    assert_eq!(wx.checks(), [(ann.to_owned(), 2)]);
    // WHEN she edits it and sends it with the same id
    a.send_json(&send(bob, "k1", "you are a star"))
        .await
        .unwrap();
    // THEN it is stored and acknowledged, and Bob's client (the seed's) gets its usual page
    let ack = next(&mut a, "message").await;
    assert_eq!(ack["client_msg_id"], "k1", "{ack}");
    let page = next(&mut b, "history").await;
    let row = &page["data"][0];
    assert_eq!(row["content"], "you are a star", "{page}");
    assert!(
        row.get("blocked").is_none() && row.get("label").is_none(),
        "{row}"
    );
    // AND a doubtful text is stored (ModerationReview=allow), its label not in the rows
    a.send_json(&send(bob, "k2", &format!("a {REVIEW_WORD} here")))
        .await
        .unwrap();
    assert_eq!(next(&mut a, "message").await["client_msg_id"], "k2");
    let page = next(&mut b, "history").await;
    assert!(page.to_string().contains(REVIEW_WORD));
    assert!(!page.to_string().contains("21000"), "{page}");
    // AND while WeChat is busy (ModerationUnavailable=allow) a text is stored marked unchecked
    wx.busy_next(1);
    a.send_json(&send(bob, "k3", "said while WeChat was busy"))
        .await
        .unwrap();
    assert_eq!(next(&mut a, "message").await["client_msg_id"], "k3");
    assert_eq!(
        unchecked(&stack).await,
        [(
            "said while WeChat was busy".to_owned(),
            "unchecked".to_owned()
        )]
    );
    // AND a sender without an openid (ModerationWithoutOpenid=skip) is stored unchecked too
    let mut c = open(
        &stack,
        &user_query("13800000009", DEMO_APP_SID, &minted("13800000009")),
    )
    .await;
    c.send_json(&send(ann, "k4", "minted, not logged in"))
        .await
        .unwrap();
    assert_eq!(next(&mut c, "message").await["client_msg_id"], "k4");
    assert_eq!(unchecked(&stack).await.len(), 2);
    // (four calls: risky, star, review and the busy one; the openid-less send is not asked)
    assert_eq!(wx.calls("/wxa/msg_sec_check"), 4);
    // AND no log line holds a message's text or an openid
    let logs = stack.function_logs();
    for secret in [
        ann,
        bob,
        RISKY_WORD,
        "you are a star",
        "said while WeChat was busy",
    ] {
        let leaks: Vec<&String> = logs.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} was logged: {leaks:?}");
    }
}

#[tokio::test]
async fn the_strict_policies_refuse_what_was_not_passed() {
    // GIVEN review, unavailable and openid-less texts all refused
    let wx = fake().await;
    let strict = [
        ("ModerationReview", "block"),
        ("ModerationUnavailable", "block"),
        ("ModerationWithoutOpenid", "refuse"),
    ];
    let stack = stack(&wx, &strict).await;
    let ann = "o-strict-ann";
    let mut a = open(
        &stack,
        &user_query(ann, DEMO_APP_SID, &login(&stack, &wx, ann).await),
    )
    .await;
    let mut c = open(
        &stack,
        &user_query("13800000008", DEMO_APP_SID, &minted("13800000008")),
    )
    .await;
    // A first send fetches the app's access token, so that `busy` below hits the check.
    a.send_json(&send("o-peer", "k0", "hello")).await.unwrap();
    assert_eq!(next(&mut a, "message").await["client_msg_id"], "k0");
    // WHEN each is sent THEN each is refused by its own code, echoing its id
    a.send_json(&send("o-peer", "k1", &format!("a {REVIEW_WORD}")))
        .await
        .unwrap();
    let f = next(&mut a, "error").await;
    assert_eq!(
        (
            f["error"].as_str(),
            f["label"].as_str(),
            f["client_msg_id"].as_str()
        ),
        (Some("content_blocked"), Some("other"), Some("k1")),
        "{f}"
    );
    wx.busy_next(1);
    a.send_json(&send("o-peer", "k2", "while busy"))
        .await
        .unwrap();
    let f = next(&mut a, "error").await;
    assert_eq!(
        (f["error"].as_str(), f["client_msg_id"].as_str()),
        (Some("moderation_unavailable"), Some("k2")),
        "{f}"
    );
    c.send_json(&send(ann, "k3", "no openid")).await.unwrap();
    let f = next(&mut c, "error").await;
    assert_eq!(
        (f["error"].as_str(), f["client_msg_id"].as_str()),
        (Some("login_required"), Some("k3")),
        "{f}"
    );
    // AND only the first text was stored
    assert_eq!(rows(&mut a, "o-peer").await.len(), 1);
    assert!(rows(&mut c, ann).await.is_empty());
    assert!(unchecked(&stack).await.is_empty());
}

#[tokio::test]
async fn an_unchecked_text_is_checked_again_and_taken_down_everywhere_when_it_fails() {
    // GIVEN Ann on a user connection and Bob on both kinds, while WeChat is busy for two texts
    let wx = fake().await;
    let stack = stack(&wx, &[]).await;
    let (ann, bob) = ("o-re-ann", "o-re-bob");
    let mut a = open(
        &stack,
        &user_query(ann, DEMO_APP_SID, &login(&stack, &wx, ann).await),
    )
    .await;
    let bob_token = login(&stack, &wx, bob).await;
    let mut b_conv = open(
        &stack,
        &conversation_query(bob, ann, DEMO_APP_SID, &bob_token),
    )
    .await;
    let mut b_user = open(&stack, &user_query(bob, DEMO_APP_SID, &bob_token)).await;
    a.send_json(&send(bob, "k0", "hello")).await.unwrap();
    let hello = next(&mut a, "message").await;
    let _ = next(&mut b_conv, "history").await;
    let _ = next(&mut b_user, "message").await;
    wx.busy_next(2);
    a.send_json(&send(bob, "k1", "fine when checked later"))
        .await
        .unwrap();
    next(&mut a, "message").await;
    a.send_json(&send(
        bob,
        "k2",
        "later-bad words, said while WeChat was busy",
    ))
    .await
    .unwrap();
    let bad = next(&mut a, "message").await["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(unchecked(&stack).await.len(), 2);
    for _ in 0..2 {
        next(&mut b_conv, "history").await;
        next(&mut b_user, "message").await;
    }
    // WHEN the re-check runs, and WeChat now finds the second one risky (fraud)
    wx.moderation_words(&[(RISKY_WORD, 20002), ("later-bad", 20008)], &[]);
    let run = stack.run_schedule("RecheckFunction").await.unwrap();
    // THEN one passed and one was taken down; nothing is left unchecked
    assert_eq!(
        (run["passed"].as_u64(), run["blocked"].as_u64()),
        (Some(1), Some(1)),
        "{run}"
    );
    assert!(unchecked(&stack).await.is_empty());
    // AND both users' user connections are told, from their own side
    for (socket, peer) in [(&mut a, bob), (&mut b_user, ann)] {
        let f = next(socket, "blocked").await;
        assert_eq!(f, json!({"code":1,"type":"blocked","peer":peer,"id":bad}));
    }
    // AND Bob's conversation connection (the seed's client) gets a fresh page without the text
    let page = next(&mut b_conv, "history").await;
    let row = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == bad.as_str())
        .cloned()
        .expect("the row is still there");
    assert_eq!(
        (row["blocked"].as_bool(), row["content"].as_str()),
        (Some(true), Some(""))
    );
    // AND every later read shows it blocked: history, and the conversation list
    let rows = rows(&mut a, bob).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["id"], hello["message"]["id"]);
    assert_eq!(rows[1]["content"], "fine when checked later");
    assert_eq!(
        (rows[2]["blocked"].as_bool(), rows[2]["content"].as_str()),
        (Some(true), Some(""))
    );
    b_user
        .send_json(&json!({"action":"conversations"}))
        .await
        .unwrap();
    let list = next(&mut b_user, "conversations").await;
    assert!(!list.to_string().contains("later-bad"), "{list}");
    // AND a second run (the sample event, as sam local invoke would send it) finds nothing
    let sample = std::fs::read_to_string(devtools::repo_root().join("events/recheck.json"));
    let sample: Value = serde_json::from_str(&sample.unwrap()).unwrap();
    let again = stack
        .gateway
        .invoke("RecheckFunction", &sample)
        .await
        .unwrap();
    assert_eq!(
        (again["passed"].as_u64(), again["blocked"].as_u64()),
        (Some(0), Some(0))
    );
    // AND no log line holds the text
    let logs = stack.function_logs();
    assert!(!logs.iter().any(|l| l.contains("later-bad")));
}

#[tokio::test]
async fn display_names_are_checked_at_login_and_a_risky_one_is_left_out() {
    // GIVEN the stack checking with WeChat
    let wx = fake().await;
    let stack = stack(&wx, &[]).await;
    // WHEN Ann logs in with a fine name and Bob with a risky one
    let ann = login_named(&stack, &wx, "o-name-ann", Some("Ann")).await;
    let bob = login_named(
        &stack,
        &wx,
        "o-name-bob",
        Some(&format!("{RISKY_WORD} Bob")),
    )
    .await;
    // THEN both log in; Bob is told why his name was left out
    assert!(ann.get("name_refused").is_none(), "{ann}");
    assert_eq!(bob["name_refused"], "porn", "{bob}");
    // AND WeChat checked both names as profiles (scene 1)
    assert_eq!(
        wx.checks(),
        [("o-name-ann".to_owned(), 1), ("o-name-bob".to_owned(), 1)]
    );
    // AND Bob's messages show no name, Ann's hers
    let token = bob["token"].as_str().unwrap();
    let mut b = open(&stack, &user_query("o-name-bob", DEMO_APP_SID, token)).await;
    b.send_json(&send("o-name-ann", "k1", "hi")).await.unwrap();
    let row = next(&mut b, "message").await["message"].clone();
    assert_eq!(row["username"], "", "{row}");
    let token = ann["token"].as_str().unwrap();
    let mut a = open(&stack, &user_query("o-name-ann", DEMO_APP_SID, token)).await;
    a.send_json(&send("o-name-bob", "k2", "hello"))
        .await
        .unwrap();
    assert_eq!(next(&mut a, "message").await["message"]["username"], "Ann");
}

/// A stack checking texts with the fake webhook (the fake WeChat API still logs users in).
async fn webhook_stack(wx: &FakeWeChat, hook: &FakeWebhook) -> Stack {
    let mut opts = StackOptions {
        logs: Logs::Capture,
        parameters: HashMap::from([("AccountIdentity".to_owned(), "openid".to_owned())]),
        ..chat::stack_options(SECRET)
    };
    chat::use_wechat(&mut opts, &wx.base, &chat::demo_apps());
    chat::use_webhook(&mut opts, &hook.url);
    Stack::start(opts).await.unwrap()
}

#[tokio::test]
async fn the_webhook_allows_denies_replaces_and_a_slow_one_leaves_the_text_unchecked() {
    // GIVEN the operator's webhook (the fake) as the checker, Ann on a user connection and
    // Bob, with a token the operator minted (no openid: the webhook does not need one)
    let wx = fake().await;
    let hook = FakeWebhook::start(chat::LOCAL_WEBHOOK_KEY.as_bytes())
        .await
        .unwrap();
    let stack = webhook_stack(&wx, &hook).await;
    let ann = "o-hook-ann";
    let mut a = open(
        &stack,
        &user_query(ann, DEMO_APP_SID, &login(&stack, &wx, ann).await),
    )
    .await;
    let bob = "13800000007";
    let mut b = open(
        &stack,
        &conversation_query(bob, ann, DEMO_APP_SID, &minted(bob)),
    )
    .await;
    // WHEN Ann sends a plain text THEN it is allowed and the webhook got it signed
    a.send_json(&send(bob, "k1", "hello there")).await.unwrap();
    assert_eq!(next(&mut a, "message").await["client_msg_id"], "k1");
    let got = hook.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].body,
        json!({"app_sid": DEMO_APP_SID, "sender": ann, "peer": bob, "kind": "message", "text": "hello there"})
    );
    assert!(got[0].signed && got[0].fresh, "{:?}", got[0]);
    // WHEN Bob (no openid) sends a text the webhook denies THEN content_blocked, nothing stored
    b.send_json(&send(ann, "k2", &format!("buy now {DENY_WORD}")))
        .await
        .unwrap();
    let f = next(&mut b, "error").await;
    assert_eq!(
        (
            f["error"].as_str(),
            f["label"].as_str(),
            f["client_msg_id"].as_str()
        ),
        (Some("content_blocked"), Some("fraud"), Some("k2")),
        "{f}"
    );
    // WHEN Ann sends one the webhook replaces THEN the replacement is stored and relayed
    let original = format!("a {REPLACE_WORD} in it");
    a.send_json(&send(bob, "k3", &original)).await.unwrap();
    let ack = next(&mut a, "message").await;
    assert_eq!(ack["message"]["content"], "***", "{ack}");
    let page = next(&mut b, "history").await;
    assert!(page.to_string().contains("***") && !page.to_string().contains(REPLACE_WORD));
    // AND her retry of it (same id, the text she typed) is the same message, not a reuse
    a.send_json(&send(bob, "k3", &original)).await.unwrap();
    let again = next(&mut a, "message").await;
    assert_eq!(again["message"]["id"], ack["message"]["id"], "{again}");
    // WHEN the webhook is too slow (over 2 s) THEN the text is stored, marked unchecked
    a.send_json(&send(bob, "k4", &format!("a {SLOW_WORD}")))
        .await
        .unwrap();
    assert_eq!(next(&mut a, "message").await["client_msg_id"], "k4");
    assert_eq!(unchecked(&stack).await.len(), 1);
    assert_eq!(
        rows(&mut a, bob).await.len(),
        3,
        "hello, the replacement, the slow one"
    );
    // AND a display name at login goes to the webhook too, as a display name
    let named = login_named(&stack, &wx, "o-hook-cat", Some(&format!("Cat {DENY_WORD}"))).await;
    assert_eq!(named["name_refused"], "fraud", "{named}");
    assert_eq!(
        hook.received()[5].body,
        json!({"app_sid": DEMO_APP_SID, "kind": "display_name", "text": format!("Cat {DENY_WORD}")})
    );
    // AND a forged request (a wrong key) is refused by the receiver: the signature is real
    let forged = reqwest::Client::new()
        .post(&hook.url)
        .header("x-chat-timestamp", "1")
        .header("x-chat-signature", got[0].signature.clone())
        .body(got[0].body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    assert!(hook.received()[..6].iter().all(|r| r.signed));
    // AND no log line holds a text or the key
    let logs = stack.function_logs();
    for secret in [
        chat::LOCAL_WEBHOOK_KEY,
        "hello there",
        DENY_WORD,
        REPLACE_WORD,
        SLOW_WORD,
    ] {
        let leaks: Vec<&String> = logs.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} was logged: {leaks:?}");
    }
}
