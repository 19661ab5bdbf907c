//! End to end, offline notices (issue 22): `subscribe` frames grant the template, the messages
//! table's stream (run by the local stack as Lambda's event source mapping would) feeds the
//! real `chat-notify`, which sends WeChat's subscribe message to the fake WeChat API. Needs
//! `cargo build --workspace --bins` first (`make test` does it).

use devtools::chat::{self, DEMO_APP_SID};
use devtools::fake_wechat::{FakeWeChat, SentNotice, RISKY_WORD};
use devtools::ws_client::{conversation_query, user_query, ChatSocket};
use local_stack::stack::Stack;
use serde_json::{json, Value};
use std::time::Duration;

mod checked;
use checked::{fake, login, login_named, next, open, WAIT};

const SECRET: &str = "notices-e2e-secret-notices-e2e-0123456789";
const TEMPLATE: &str = "tpl-e2e-notice";

async fn stack(fake: &FakeWeChat) -> Stack {
    let bins = [
        "chat-login",
        "chat-connect",
        "chat-default",
        "chat-disconnect",
        "chat-notify",
        "chat-recheck",
    ];
    checked::stack(
        fake,
        SECRET,
        &[("NoticeTemplateId", TEMPLATE), ("MaxNoticeGrants", "3")],
        &bins,
    )
    .await
}

fn send(to: &str, cmid: &str, text: &str) -> Value {
    json!({"action":"send","to":to,"client_msg_id":cmid,"chat_type":0,"chat_content":text})
}

/// Sends a text and waits for its acknowledgement: the message id.
async fn say(socket: &mut ChatSocket, to: &str, cmid: &str, text: &str) -> String {
    socket.send_json(&send(to, cmid, text)).await.unwrap();
    let ack = next(socket, "message").await;
    ack["message"]["id"].as_str().expect("an id").to_owned()
}

/// `subscribe` with `result`: the answer frame.
async fn subscribe(socket: &mut ChatSocket, req_id: &str, template: &str, result: &str) -> Value {
    socket
        .send_json(
            &json!({"action":"subscribe","req_id":req_id,"template_id":template,"result":result}),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match socket.read(left).await {
            devtools::ws_client::Read::Frame(f) if f["req_id"] == req_id => return f,
            devtools::ws_client::Read::Frame(_) => continue,
            other => panic!("no answer to {req_id}: {other:?}"),
        }
    }
}

/// Closes `socket` and waits until `user` has no connection left in their registry (what
/// `$disconnect` removes).
async fn go_offline(stack: &Stack, socket: ChatSocket, user: &str) {
    drop(socket);
    until_registered(stack, user, 0).await;
}

/// Waits until `user`'s registry lists `n` connections.
async fn until_registered(stack: &Stack, user: &str, n: usize) {
    let ddb = local_stack::clients::dynamodb(&stack.dynamodb_endpoint());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let item = ddb
            .get_item()
            .table_name(&chat::tables(stack).connections)
            .key(
                "connection_id",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("r#{DEMO_APP_SID}#{user}")),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item;
        let count = item
            .and_then(|i| i.get("conns").and_then(|c| c.as_m().ok()).map(|m| m.len()))
            .unwrap_or(0);
        if count == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} holds {count} connections, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until chat-notify handled the stream record of message `id` without failing it.
async fn processed(stack: &Stack, id: &str) {
    let sk = format!("m#{id}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let done = stack.stream_batches().iter().any(|b| {
            let failed = b.outcome.as_ref().map_or(true, |a| {
                a["batchItemFailures"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
            });
            !failed
                && b.records
                    .iter()
                    .any(|r| r["dynamodb"]["Keys"]["sk"]["S"] == sk.as_str())
        });
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {id} was not processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The notices the fake accepted.
fn sent(wx: &FakeWeChat) -> Vec<SentNotice> {
    wx.notices()
        .into_iter()
        .filter(|n| n.errcode == 0)
        .collect()
}

#[tokio::test]
async fn an_offline_receiver_with_a_grant_gets_one_notice_per_offline_period() {
    // GIVEN Ann (named 安妮) and Bob logged in through WeChat, Bob on a user connection
    let wx = fake().await;
    let stack = stack(&wx).await;
    let (ann, bob) = ("o-notice-ann", "o-notice-bob");
    let ann_token = login_named(&stack, &wx, ann, Some("安妮")).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_token = login(&stack, &wx, bob).await;
    let mut b = open(&stack, &user_query(bob, DEMO_APP_SID, &bob_token)).await;
    // WHEN Bob reports a grant of another template, then two of ours
    let other = subscribe(&mut b, "s0", "someone-elses", "accept").await;
    assert_eq!(
        (other["code"].as_i64(), other["error"].as_str()),
        (Some(0), Some("bad_template")),
        "{other}"
    );
    assert_eq!(other["req_id"], "s0");
    for (i, want) in [(1, 1), (2, 2)] {
        let f = subscribe(&mut b, &format!("s{i}"), TEMPLATE, "accept").await;
        assert_eq!(
            f,
            json!({"code":1,"type":"subscribed","req_id":format!("s{i}"),"template_id":TEMPLATE,"grants":want})
        );
    }
    // AND a refusal adds nothing; a bad result is refused
    let rejected = subscribe(&mut b, "s3", TEMPLATE, "reject").await;
    assert_eq!(rejected["grants"], 2);
    let bad = subscribe(&mut b, "s4", TEMPLATE, "maybe").await;
    assert_eq!(bad["error"], "bad_result");
    // AND he goes offline, and Ann sends three messages
    go_offline(&stack, b, bob).await;
    let mut a = open(&stack, &user_query(ann, DEMO_APP_SID, &ann_token)).await;
    let long = "今天晚上七点在老地方见面吧，别忘了带上那本书和雨伞";
    let mut ids = Vec::new();
    for (i, text) in [long, "second", "third"].iter().enumerate() {
        ids.push(say(&mut a, bob, &format!("k{i}"), text).await);
    }
    for id in &ids {
        processed(&stack, id).await;
    }
    // THEN exactly one notice reached WeChat: Bob's openid, the template, the mapped and cut
    // fields, the page
    let notices = sent(&wx);
    assert_eq!(notices.len(), 1, "{notices:?}");
    let n = &notices[0];
    assert_eq!((n.touser.as_str(), n.template_id.as_str()), (bob, TEMPLATE));
    assert_eq!(n.page, format!("pages/chat/index?peer={ann}"));
    assert_eq!(n.miniprogram_state, "formal");
    assert_eq!(n.data["thing1"]["value"], "安妮");
    let preview = n.data["thing2"]["value"].as_str().unwrap();
    assert_eq!(preview.chars().count(), 20, "{preview}");
    assert!(preview.starts_with("今天晚上七点") && preview.ends_with('…'));
    let time = n.data["time3"]["value"].as_str().unwrap();
    assert_eq!(
        (time.len(), &time[4..5], &time[13..14]),
        (16, "-", ":"),
        "{time}"
    );
    // WHEN Bob connects (a conversation connection, the seed's kind) and leaves again, and Ann
    // writes once more
    let c = open(
        &stack,
        &conversation_query(bob, ann, DEMO_APP_SID, &bob_token),
    )
    .await;
    go_offline(&stack, c, bob).await;
    let id = say(&mut a, bob, "k3", "are you there?").await;
    processed(&stack, &id).await;
    // THEN a second notice goes, previewing it
    let notices = sent(&wx);
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert_eq!(notices[1].data["thing2"]["value"], "are you there?");
    // WHEN he comes and goes once more, now without a grant left, and Ann writes
    let c = open(&stack, &user_query(bob, DEMO_APP_SID, &bob_token)).await;
    go_offline(&stack, c, bob).await;
    let id = say(&mut a, bob, "k4", "hello?").await;
    processed(&stack, &id).await;
    // THEN nothing is sent
    assert_eq!(wx.notices().len(), 2);
    // WHEN he grants once more but WeChat says he has no grant (43101)
    let mut b = open(&stack, &user_query(bob, DEMO_APP_SID, &bob_token)).await;
    assert_eq!(
        subscribe(&mut b, "s5", TEMPLATE, "accept").await["grants"],
        1
    );
    // (and up to the cap of 3 only)
    for i in 6..9 {
        subscribe(&mut b, &format!("s{i}"), TEMPLATE, "accept").await;
    }
    assert_eq!(
        subscribe(&mut b, "s9", TEMPLATE, "reject").await["grants"],
        3
    );
    go_offline(&stack, b, bob).await;
    wx.refuse_notices(bob);
    let id = say(&mut a, bob, "k5", "knock knock").await;
    processed(&stack, &id).await;
    // THEN the call was made and refused, and his grants are zero
    let all = wx.notices();
    assert_eq!((all.len(), all[2].errcode), (3, 43101), "{all:?}");
    let mut b = open(&stack, &user_query(bob, DEMO_APP_SID, &bob_token)).await;
    assert_eq!(
        subscribe(&mut b, "s10", TEMPLATE, "reject").await["grants"],
        0
    );
}

#[tokio::test]
async fn no_notice_goes_to_an_online_receiver_or_for_a_recalled_or_blocked_message_nor_twice() {
    // GIVEN Bob with grants, and Ann and Carol
    let wx = fake().await;
    let stack = stack(&wx).await;
    let (ann, bob, carol) = ("o-quiet-ann", "o-quiet-bob", "o-quiet-carol");
    let ann_token = login(&stack, &wx, ann).await;
    let bob_token = login(&stack, &wx, bob).await;
    let carol_token = login(&stack, &wx, carol).await;
    let mut a = open(&stack, &user_query(ann, DEMO_APP_SID, &ann_token)).await;
    let mut b = open(&stack, &user_query(bob, DEMO_APP_SID, &bob_token)).await;
    for i in 0..3 {
        subscribe(&mut b, &format!("g{i}"), TEMPLATE, "accept").await;
    }
    // WHEN Ann writes while Bob is on a user connection
    let id = say(&mut a, bob, "q1", "you are online").await;
    processed(&stack, &id).await;
    // AND while he is on a conversation connection with her
    let mut c = open(
        &stack,
        &conversation_query(bob, ann, DEMO_APP_SID, &bob_token),
    )
    .await;
    drop(b);
    until_registered(&stack, bob, 1).await;
    let id = say(&mut a, bob, "q2", "still online").await;
    processed(&stack, &id).await;
    let _ = next(&mut c, "history").await;
    // THEN nothing is sent
    assert!(wx.notices().is_empty(), "{:?}", wx.notices());
    go_offline(&stack, c, bob).await;
    // WHEN, Bob offline, Ann sends a message and recalls it before chat-notify reads it
    assert!(stack.set_stream_enabled("NotifyFunction", false));
    let id = say(&mut a, bob, "q3", "oops").await;
    a.send_json(&json!({"action":"recall","to":bob,"id":id}))
        .await
        .unwrap();
    next(&mut a, "recall").await;
    // AND one stored unchecked (WeChat busy) is taken down by the re-check meanwhile
    wx.busy_next(1);
    let blocked = say(
        &mut a,
        bob,
        "q4",
        &format!("a {RISKY_WORD} said while busy"),
    )
    .await;
    let run = stack.run_schedule("RecheckFunction").await.unwrap();
    assert_eq!(run["blocked"].as_u64(), Some(1), "{run}");
    stack.set_stream_enabled("NotifyFunction", true);
    processed(&stack, &id).await;
    processed(&stack, &blocked).await;
    // THEN neither is notified
    assert!(wx.notices().is_empty(), "{:?}", wx.notices());
    // WHEN Bob sits on a conversation connection with Carol only, and Ann writes
    let mut bc = open(
        &stack,
        &conversation_query(bob, carol, DEMO_APP_SID, &bob_token),
    )
    .await;
    let id = say(&mut a, bob, "q5", "not for carol").await;
    processed(&stack, &id).await;
    // THEN that connection does not carry Ann's conversation: a notice goes
    assert_eq!(sent(&wx).len(), 1);
    // WHEN the same stream record is delivered again (streams deliver at least once)
    let batch = stack
        .stream_batches()
        .into_iter()
        .find(|b| {
            b.records
                .iter()
                .any(|r| r["dynamodb"]["Keys"]["sk"]["S"] == format!("m#{id}").as_str())
        })
        .unwrap();
    let again = stack
        .invoker()
        .invoke(
            "NotifyFunction",
            &json!({"Records": batch.records}),
            "replay",
        )
        .await
        .unwrap();
    // THEN it succeeds and no second notice goes
    assert_eq!(again["batchItemFailures"], json!([]));
    assert_eq!(wx.notices().len(), 1);
    // AND Carol's own messages to Bob reach him on that connection, no notice either
    let mut cr = open(&stack, &user_query(carol, DEMO_APP_SID, &carol_token)).await;
    let id = say(&mut cr, bob, "c1", "hi bob").await;
    processed(&stack, &id).await;
    let _ = next(&mut bc, "history").await;
    assert_eq!(wx.notices().len(), 1);
}

#[tokio::test]
async fn a_record_chat_notify_cannot_read_goes_to_the_on_failure_queue_and_its_batch_goes_on() {
    // GIVEN Bob offline with a grant
    let wx = fake().await;
    let stack = stack(&wx).await;
    let (ann, bob) = ("o-poison-ann", "o-poison-bob");
    let ann_token = login(&stack, &wx, ann).await;
    let bob_token = login(&stack, &wx, bob).await;
    let mut b = open(&stack, &user_query(bob, DEMO_APP_SID, &bob_token)).await;
    subscribe(&mut b, "g", TEMPLATE, "accept").await;
    go_offline(&stack, b, bob).await;
    let mut a = open(&stack, &user_query(ann, DEMO_APP_SID, &ann_token)).await;
    // WHEN, in one batch, a message item that is not one (corrupt: no attributes) comes
    // before Ann's message
    assert!(stack.set_stream_enabled("NotifyFunction", false));
    let conversation = shared::domain::ids::Conversation::new(DEMO_APP_SID, ann, bob);
    let poison = "01JB0000000000000000000000";
    local_stack::clients::dynamodb(&stack.dynamodb_endpoint())
        .put_item()
        .table_name(&chat::tables(&stack).messages)
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(conversation.key()),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("m#{poison}")),
        )
        .send()
        .await
        .unwrap();
    let id = say(&mut a, bob, "p1", "after the poison").await;
    stack.set_stream_enabled("NotifyFunction", true);
    // THEN Ann's message is notified
    processed(&stack, &id).await;
    assert_eq!(sent(&wx).len(), 1);
    // AND the first invocation held both records
    let first = &stack.stream_batches()[0];
    assert_eq!(first.records.len(), 2, "{:?}", first.records);
    // AND after its retries the corrupt record's invocation record reaches the queue
    let deadline = tokio::time::Instant::now() + WAIT;
    let failure = loop {
        if let Some(f) = stack.stream_failures().first().cloned() {
            break f;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no on-failure record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        failure.destination.starts_with("arn:aws:sqs:"),
        "{}",
        failure.destination
    );
    assert!(failure.destination.ends_with(":NoticeFailures"));
    let info = &failure.body["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1);
    assert_eq!(
        info["startSequenceNumber"],
        first.records[0]["dynamodb"]["SequenceNumber"]
    );
    // (MaximumRetryAttempts: 3, after the first try)
    assert_eq!(failure.body["requestContext"]["approximateInvokeCount"], 4);
}
