//! The DynamoDB adapters against a real DynamoDB Local, with tables created from template.yaml.

mod common;

use common::*;
use shared::chat::{on_frame, FrameOutcome};
use shared::model::{Appended, ChatType, ConnectionRecord, Conversation, Cursor, Message, Profile};
use shared::ports::*;
use std::time::Duration;

fn record(cid: &str, app: &str, user: &str, friend: &str, expires_at: i64) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: cid.into(),
        app_sid: app.into(),
        user: user.into(),
        friend: friend.into(),
        profile: Profile {
            name: format!("n-{user}"),
            avatar: format!("https://a/{user}"),
        },
        connected_at_ms: now_ms(),
        expires_at,
    }
}

fn message(app: &str, from: &str, to: &str, at: i64, cmid: Option<&str>, text: &str) -> Message {
    Message {
        id: shared::model::new_message_id(at),
        app_sid: app.into(),
        sender: from.into(),
        receiver: to.into(),
        chat_type: ChatType::Text,
        content: text.into(),
        created_at_ms: at,
        client_msg_id: cmid.map(str::to_owned),
        media: None,
    }
}

async fn connect(f: &Fixture, r: &ConnectionRecord) {
    f.store
        .put_profile(&r.conversation(), &r.user, &r.profile)
        .await
        .unwrap();
    f.store.register(r).await.unwrap();
}

#[tokio::test]
async fn connections_are_found_by_conversation_and_expire_by_ttl() {
    let f = fixture().await;
    let now_s = now_ms() / 1000;
    connect(&f, &record("a1", "app", "111", "222", now_s + 100)).await;
    connect(&f, &record("b1", "app", "222", "111", now_s + 100)).await;
    connect(&f, &record("old", "app", "222", "111", now_s - 1)).await;
    connect(&f, &record("c1", "app", "111", "333", now_s + 100)).await;
    connect(&f, &record("x1", "app2", "111", "222", now_s + 100)).await;
    let conv = Conversation::new("app", "222", "111");
    let mut ids: Vec<String> = f
        .store
        .in_conversation(&conv, now_s)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.connection_id)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["a1", "b1"],
        "same conversation and app only, expired excluded"
    );
    let got = f.store.get("a1", now_s).await.unwrap().unwrap();
    assert_eq!(
        got,
        ConnectionRecord {
            connected_at_ms: got.connected_at_ms,
            ..record("a1", "app", "111", "222", now_s + 100)
        }
    );
    assert_eq!(
        f.store.get("old", now_s).await.unwrap(),
        None,
        "expired but not yet swept by TTL"
    );
    f.store.remove("a1").await.unwrap();
    f.store.remove("a1").await.unwrap(); // idempotent
    assert_eq!(f.store.get("a1", now_s).await.unwrap(), None);
}

#[tokio::test]
async fn a_client_msg_id_is_stored_once_per_sender_and_conversation() {
    let f = fixture().await;
    let t = now_ms();
    let first = message("app", "111", "222", t, Some("k1"), "hello");
    assert_eq!(
        f.store.append(&first).await.unwrap(),
        Appended::Stored(first.clone())
    );
    // A retry gets a new server id and time, but the same client_msg_id
    let retry = message("app", "111", "222", t + 50, Some("k1"), "hello");
    assert_eq!(
        f.store.append(&retry).await.unwrap(),
        Appended::Duplicate(first.clone())
    );
    // The same id from the other participant, or in another app, is another message
    let other_sender = message("app", "222", "111", t + 60, Some("k1"), "hi");
    assert!(matches!(
        f.store.append(&other_sender).await.unwrap(),
        Appended::Stored(_)
    ));
    let other_app = message("app2", "111", "222", t + 70, Some("k1"), "x");
    assert!(matches!(
        f.store.append(&other_app).await.unwrap(),
        Appended::Stored(_)
    ));
    let page = f
        .store
        .latest(&Conversation::new("app", "111", "222"), 10)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 2);
    assert_eq!(page.messages[0], first);
}

#[tokio::test]
async fn paging_returns_every_message_once_oldest_first_with_profiles() {
    let f = fixture().await;
    let now_s = now_ms() / 1000;
    connect(&f, &record("a1", "app", "111", "222", now_s + 100)).await;
    connect(&f, &record("b1", "app", "222", "111", now_s + 100)).await;
    let t0 = now_ms();
    for i in 0..45 {
        let (from, to) = if i % 3 == 0 {
            ("222", "111")
        } else {
            ("111", "222")
        };
        f.store
            .append(&message("app", from, to, t0 + i, None, &format!("m{i}")))
            .await
            .unwrap();
    }
    // Another tenant with the same numbers must not show up
    f.store
        .append(&message("app2", "111", "222", t0, None, "other tenant"))
        .await
        .unwrap();
    let conv = Conversation::new("app", "111", "222");
    let mut page = f.store.latest(&conv, 20).await.unwrap();
    assert_eq!(page.profiles["111"].name, "n-111");
    assert_eq!(page.profiles["222"].avatar, "https://a/222");
    let mut all = Vec::new();
    loop {
        let mut texts: Vec<String> = page.messages.iter().map(|m| m.content.clone()).collect();
        texts.extend(all);
        all = texts;
        if !page.has_more {
            break;
        }
        let cursor = Cursor::from_message_id(&page.messages[0].id);
        page = f.store.before(&conv, &cursor, 20).await.unwrap();
        assert_eq!(page.profiles.len(), 2, "older pages carry profiles too");
    }
    let expected: Vec<String> = (0..45).map(|i| format!("m{i}")).collect();
    assert_eq!(all, expected);
}

/// Sends one message through the real domain flow and returns the DynamoDB requests it made.
async fn requests_for_one_send(connections_per_user: usize, history: usize) -> Vec<String> {
    let f = fixture().await;
    let d = frame_deps(&f, RecordingNotifier::default());
    let now_s = now_ms() / 1000;
    for i in 0..connections_per_user {
        connect(
            &f,
            &record(&format!("a{i}"), "app", "111", "222", now_s + 600),
        )
        .await;
        connect(
            &f,
            &record(&format!("b{i}"), "app", "222", "111", now_s + 600),
        )
        .await;
    }
    let t0 = now_ms() - 10_000;
    for i in 0..history {
        f.store
            .append(&message("app", "111", "222", t0 + i as i64, None, "old"))
            .await
            .unwrap();
    }
    f.log.take();
    let body = r#"{"action":"send","client_msg_id":"count-me","chat_type":0,"chat_content":"hi"}"#;
    let out = on_frame(&d, "a0", body, now_ms()).await.unwrap();
    assert_eq!(
        out,
        FrameOutcome::Sent {
            duplicate: false,
            delivered: 2 * connections_per_user,
            gone: 0
        }
    );
    f.log.take()
}

#[tokio::test]
async fn a_send_costs_the_same_requests_whatever_the_audience_and_history() {
    // GIVEN a quiet conversation, and a busy one with 40 connections and 300 stored messages
    let small = requests_for_one_send(1, 1).await;
    let large = requests_for_one_send(20, 300).await;
    // THEN both sends make exactly the same four requests, and no Scan anywhere
    assert_eq!(small, ["GetItem", "TransactWriteItems", "Query", "Query"]);
    assert_eq!(large, small);
}

#[tokio::test]
async fn a_gone_connection_loses_its_record_and_only_that_one() {
    let f = fixture().await;
    let d = frame_deps(&f, RecordingNotifier::default());
    let now_s = now_ms() / 1000;
    connect(&f, &record("a1", "app", "111", "222", now_s + 600)).await;
    // b1 connected a minute ago and is gone; b3 is "gone" because it is still in $connect
    let mut b1 = record("b1", "app", "222", "111", now_s + 600);
    b1.connected_at_ms -= 60_000;
    connect(&f, &b1).await;
    connect(&f, &record("b2", "app", "222", "111", now_s + 600)).await;
    connect(&f, &record("b3", "app", "222", "111", now_s + 600)).await;
    d.notifier.gone.lock().unwrap().insert("b1".into());
    d.notifier.gone.lock().unwrap().insert("b3".into());
    let body = r#"{"action":"send","chat_type":0,"chat_content":"hi"}"#;
    let out = on_frame(&d, "a1", body, now_ms()).await.unwrap();
    assert_eq!(
        out,
        FrameOutcome::Sent {
            duplicate: false,
            delivered: 2,
            gone: 2
        }
    );
    assert!(f.store.get("b1", now_s).await.unwrap().is_none());
    assert!(f.store.get("a1", now_s).await.unwrap().is_some());
    assert!(f.store.get("b2", now_s).await.unwrap().is_some());
    assert!(
        f.store.get("b3", now_s).await.unwrap().is_some(),
        "too young to be judged gone"
    );
    let frame = &d.notifier.to("b2")[0];
    assert_eq!(frame["data"][0]["userphone"], "111");
    assert_eq!(frame["data"][0]["username"], "n-111");
    assert_eq!(frame["data"][0]["friendname"], "n-222");
}

#[tokio::test]
async fn when_dynamodb_goes_away_a_send_gets_an_internal_error_frame() {
    // GIVEN a private DynamoDB Local for this test, with a connected user
    let mut local = devtools::dynamodb_local::DynamoDbLocal::start().unwrap();
    let f = fixture_on(&local.endpoint()).await;
    let d = frame_deps(&f, RecordingNotifier::default());
    connect(
        &f,
        &record("a1", "app", "111", "222", now_ms() / 1000 + 600),
    )
    .await;
    // WHEN it stops and the user sends
    local.kill();
    let body = r#"{"action":"send","client_msg_id":"k","chat_type":0,"chat_content":"hi"}"#;
    let result = on_frame(&d, "a1", body, now_ms()).await;
    // THEN the send fails with an error frame that names nothing internal
    assert!(result.is_err());
    let frames = d.notifier.to("a1");
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["error"], "internal");
    assert_eq!(frames[0]["code"], 0);
    let text = frames[0].to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("dispatch"),
        "{text}"
    );
}

#[test]
fn dynamodb_local_is_reachable_only_through_the_loopback_forwarder() {
    // GIVEN a machine that grants private network namespaces (root, or user namespaces)
    if devtools::dynamodb_local::isolated().is_none() {
        eprintln!("no network namespace here: DynamoDB Local runs on the host network");
        return;
    }
    // WHEN DynamoDB Local starts
    let local = dynamodb();
    // THEN it lives in the namespace: its own port is closed on this network, the forwarder's
    // on 127.0.0.1 answers
    assert!(local.is_isolated());
    let inner = std::net::SocketAddr::from(([127, 0, 0, 1], local.inner_port()));
    assert!(std::net::TcpStream::connect_timeout(&inner, Duration::from_millis(300)).is_err());
    let outer = std::net::SocketAddr::from(([127, 0, 0, 1], local.port()));
    assert!(std::net::TcpStream::connect_timeout(&outer, Duration::from_millis(300)).is_ok());
}
