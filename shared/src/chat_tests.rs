use super::*;
use crate::auth::{mint, Claims};
use crate::fakes::{config, FakeNotifier, FakeStore};
use serde_json::Value;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// Tokens are checked against the real clock, so the tests' "now" is the real one, fixed once.
fn now() -> i64 {
    static NOW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *NOW.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    })
}

fn token(sub: &str, app: &str, exp_s: i64) -> String {
    mint(
        SECRET,
        &Claims {
            sub: sub.into(),
            app: app.into(),
            exp: exp_s as u64,
            name: Some(format!("name-{sub}")),
            avatar: Some(format!("https://img/{sub}.png")),
        },
    )
    .unwrap()
}

struct World {
    store: FakeStore,
    notifier: FakeNotifier,
    config: Config,
    verifier: TokenVerifier,
}

impl World {
    fn new() -> Self {
        World {
            store: FakeStore::default(),
            notifier: FakeNotifier::default(),
            config: config(),
            verifier: TokenVerifier::new(SECRET).unwrap(),
        }
    }

    async fn connect_as(&self, cid: &str, app: &str, user: &str, friend: &str) -> ConnectOutcome {
        let t = token(user, app, now() / 1000 + 600);
        let req = ConnectRequest {
            connection_id: cid,
            userphone: Some(user),
            friendphone: Some(friend),
            app_sid: Some(app),
            token: Some(&t),
            now_ms: now(),
        };
        connect(&self.store, &self.verifier, &self.config, &req)
            .await
            .unwrap()
    }

    async fn frame(&self, cid: &str, body: &str) -> Result<FrameOutcome> {
        self.frame_at(cid, body, now() + 1000).await
    }

    async fn frame_at(&self, cid: &str, body: &str, at: i64) -> Result<FrameOutcome> {
        on_frame(&self.store, &self.notifier, &self.config, cid, body, at).await
    }

    fn last_to(&self, cid: &str) -> Value {
        self.notifier
            .frames_to(cid)
            .pop()
            .expect("a frame was posted")
    }
}

fn send(cmid: &str, text: &str) -> String {
    serde_json::json!({"action":"send","client_msg_id":cmid,"chat_type":0,"chat_content":text})
        .to_string()
}

#[tokio::test]
async fn handshake_parameters_are_checked_before_the_token() {
    let w = World::new();
    let t = token("111", "app", now() / 1000 + 600);
    let base = ConnectRequest {
        connection_id: "c1",
        userphone: Some("111"),
        friendphone: Some("222"),
        app_sid: Some("app"),
        token: Some(&t),
        now_ms: now(),
    };
    let cases = [
        (
            ConnectRequest {
                userphone: None,
                ..base.clone()
            },
            400,
        ),
        (
            ConnectRequest {
                friendphone: Some(""),
                ..base.clone()
            },
            400,
        ),
        (
            ConnectRequest {
                app_sid: Some("a#b"),
                ..base.clone()
            },
            400,
        ),
        (
            ConnectRequest {
                friendphone: Some("111"),
                ..base.clone()
            },
            400,
        ),
        (
            ConnectRequest {
                token: None,
                ..base.clone()
            },
            401,
        ),
        (
            ConnectRequest {
                token: Some("garbage"),
                ..base.clone()
            },
            401,
        ),
    ];
    for (req, status) in cases {
        let out = connect(&w.store, &w.verifier, &w.config, &req)
            .await
            .unwrap();
        assert_eq!(out.status(), status, "{req:?}");
    }
    // THEN nothing was stored for any refused handshake
    assert!(!w.store.has_connection("c1"));
    assert!(w.store.state.lock().unwrap().profiles.is_empty());
}

#[tokio::test]
async fn forged_expired_and_mismatched_tokens_are_refused() {
    let w = World::new();
    let forged = mint(
        b"another-secret-another-secret-!!",
        &Claims {
            sub: "111".into(),
            app: "app".into(),
            exp: (now() / 1000 + 600) as u64,
            name: None,
            avatar: None,
        },
    )
    .unwrap();
    let expired = token("111", "app", now() / 1000 - 3600);
    let other_user = token("333", "app", now() / 1000 + 600);
    let other_app = token("111", "app2", now() / 1000 + 600);
    for (t, status) in [
        (&forged, 401),
        (&expired, 401),
        (&other_user, 403),
        (&other_app, 403),
    ] {
        let req = ConnectRequest {
            connection_id: "c1",
            userphone: Some("111"),
            friendphone: Some("222"),
            app_sid: Some("app"),
            token: Some(t),
            now_ms: now(),
        };
        let out = connect(&w.store, &w.verifier, &w.config, &req)
            .await
            .unwrap();
        assert_eq!(out.status(), status);
    }
    assert!(!w.store.has_connection("c1"));
}

#[tokio::test]
async fn an_accepted_handshake_records_identity_profile_and_ttl() {
    let w = World::new();
    assert_eq!(
        w.connect_as("c1", "app", "111", "222").await,
        ConnectOutcome::Accepted
    );
    let s = w.store.state.lock().unwrap();
    let r = &s.connections["c1"];
    assert_eq!(
        (r.user.as_str(), r.friend.as_str(), r.app_sid.as_str()),
        ("111", "222", "app")
    );
    assert_eq!(r.profile.name, "name-111");
    assert_eq!(r.expires_at, now() / 1000 + w.config.connection_ttl_secs);
    assert!(
        r.expires_at - now() / 1000 > 2 * 3600,
        "outlives API Gateway's 2 h cap"
    );
    assert_eq!(
        s.profiles[&(r.conversation().key(), "111".to_string())].avatar,
        "https://img/111.png"
    );
}

#[tokio::test]
async fn a_send_reaches_every_device_of_both_users_and_nobody_else() {
    // GIVEN A on two devices and B on one, in one conversation; C chats with A elsewhere;
    // and the same phone numbers in another app
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.connect_as("a2", "app", "111", "222").await;
    w.connect_as("b1", "app", "222", "111").await;
    w.connect_as("c1", "app", "333", "111").await;
    w.connect_as("a-other", "app", "111", "333").await;
    w.connect_as("x1", "app2", "222", "111").await;
    // WHEN A sends from a1, claiming in the frame to be somebody else
    let body = r#"{"action":"send","client_msg_id":"m1","chat_type":0,"chat_content":"hello",
                   "userInfo":{"account":"222"},"friendInfo":{"account":"333"}}"#;
    let out = w.frame("a1", body).await.unwrap();
    // THEN the three connections of the conversation got it, the others nothing
    assert_eq!(
        out,
        FrameOutcome::Sent {
            duplicate: false,
            delivered: 3,
            gone: 0
        }
    );
    for quiet in ["c1", "a-other", "x1"] {
        assert!(
            w.notifier.frames_to(quiet).is_empty(),
            "{quiet} must receive nothing"
        );
    }
    for cid in ["a1", "a2", "b1"] {
        let f = w.last_to(cid);
        assert_eq!(f["type"], "history");
        let row = &f["data"][0];
        assert_eq!(
            row["userphone"], "111",
            "the sender is the authenticated user"
        );
        assert_eq!(row["friendphone"], "222");
        assert_eq!(row["username"], "name-111");
        assert_eq!(row["friendname"], "name-222");
        assert_eq!(row["content"], "hello");
        assert_eq!(f["message"]["id"], row["id"]);
    }
    // AND only the sending connection's frame carries the acknowledgement
    assert_eq!(w.last_to("a1")["client_msg_id"], "m1");
    assert!(w.last_to("a2").get("client_msg_id").is_none());
    assert!(w.last_to("b1").get("client_msg_id").is_none());
}

#[tokio::test]
async fn a_retried_client_msg_id_is_stored_once_and_acknowledged_the_same() {
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.frame("a1", &send("k-1", "once")).await.unwrap();
    let first = w.last_to("a1");
    let out = w
        .frame_at("a1", &send("k-1", "once"), now() + 5000)
        .await
        .unwrap();
    assert!(matches!(
        out,
        FrameOutcome::Sent {
            duplicate: true,
            ..
        }
    ));
    let second = w.last_to("a1");
    assert_eq!(w.store.message_count(), 1);
    assert_eq!(first["message"]["id"], second["message"]["id"]);
    assert_eq!(second["client_msg_id"], "k-1");
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    // A new id is a new message
    w.frame("a1", &send("k-2", "twice")).await.unwrap();
    assert_eq!(w.store.message_count(), 2);
}

#[tokio::test]
async fn bad_frames_get_an_error_frame_and_change_nothing() {
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    let long = "x".repeat(w.config.limits.max_content_bytes + 1);
    let cases = [
        ("not json".to_string(), "bad_json"),
        (r#"{"action":"fly"}"#.to_string(), "unknown_action"),
        (
            r#"{"action":"send","chat_type":7,"chat_content":"x"}"#.to_string(),
            "bad_chat_type",
        ),
        (send("k", &long), "content_too_long"),
        (
            r#"{"action":"sync","limit":100000}"#.to_string(),
            "bad_limit",
        ),
    ];
    for (body, code) in cases {
        let out = w.frame("a1", &body).await.unwrap();
        assert_eq!(out, FrameOutcome::Rejected(code));
        let f = w.last_to("a1");
        assert_eq!(
            (f["code"].as_i64(), f["error"].as_str()),
            (Some(0), Some(code))
        );
    }
    assert_eq!(w.store.message_count(), 0);
    assert_eq!(w.last_to("a1")["type"], "error");
    // AND the connection still works
    assert_eq!(
        w.frame("a1", r#"{"action":"ping"}"#).await.unwrap(),
        FrameOutcome::Ponged
    );
    assert_eq!(w.last_to("a1"), serde_json::json!({"code":1,"type":"pong"}));
}

#[tokio::test]
async fn an_unregistered_or_expired_connection_is_told_to_reconnect() {
    let w = World::new();
    assert_eq!(
        w.frame("ghost", &send("k", "x")).await.unwrap(),
        FrameOutcome::UnknownConnection
    );
    assert_eq!(w.last_to("ghost")["error"], "not_connected");
    w.connect_as("a1", "app", "111", "222").await;
    let after_ttl = now() + (w.config.connection_ttl_secs + 1) * 1000;
    assert_eq!(
        w.frame_at("a1", &send("k", "x"), after_ttl).await.unwrap(),
        FrameOutcome::UnknownConnection
    );
    assert_eq!(w.store.message_count(), 0);
}

#[tokio::test]
async fn a_gone_peer_loses_its_record_and_other_failures_do_not_fail_the_send() {
    // GIVEN b1 (gone) and b2 (failing) connected a minute ago, and b3 (gone: API Gateway says
    // so while $connect still runs) connecting right now
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.connect_as("b1", "app", "222", "111").await;
    w.connect_as("b2", "app", "222", "111").await;
    let later = now() + 60_000;
    let fresh = token("222", "app", later / 1000 + 600);
    let req = ConnectRequest {
        connection_id: "b3",
        userphone: Some("222"),
        friendphone: Some("111"),
        app_sid: Some("app"),
        token: Some(&fresh),
        now_ms: later,
    };
    connect(&w.store, &w.verifier, &w.config, &req)
        .await
        .unwrap();
    for id in ["b1", "b3"] {
        w.notifier.gone.lock().unwrap().insert(id.into());
    }
    w.notifier.failing.lock().unwrap().insert("b2".into());
    // WHEN a1 sends a minute later
    let out = w.frame_at("a1", &send("k", "hi"), later).await.unwrap();
    assert_eq!(
        out,
        FrameOutcome::Sent {
            duplicate: false,
            delivered: 1,
            gone: 3
        }
    );
    // THEN exactly the old gone connection's record is deleted — not the sender's, not the
    // failing one's, not the one still connecting
    assert!(!w.store.has_connection("b1"));
    assert!(w.store.has_connection("a1"));
    assert!(w.store.has_connection("b2"));
    assert!(w.store.has_connection("b3"));
    assert_eq!(w.store.message_count(), 1);
}

#[tokio::test]
async fn a_storage_outage_sends_an_internal_error_and_stores_nothing() {
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.store.set_down(true);
    assert!(w.frame("a1", &send("k9", "hi")).await.is_err());
    let f = w.last_to("a1");
    assert_eq!(f["error"], "internal");
    assert!(
        !f["msg"].as_str().unwrap().contains("refused"),
        "no inner error text"
    );
    w.store.set_down(false);
    assert_eq!(w.store.message_count(), 0);
    assert!(matches!(
        w.frame("a1", &send("k9", "hi")).await.unwrap(),
        FrameOutcome::Sent { .. }
    ));
}

#[tokio::test]
async fn paging_returns_every_row_exactly_once_in_one_order_for_both_users() {
    // GIVEN 45 messages alternating between A and B
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.connect_as("b1", "app", "222", "111").await;
    for i in 0..45 {
        let cid = if i % 2 == 0 { "a1" } else { "b1" };
        w.frame_at(cid, &send(&format!("k{i}"), &format!("m{i}")), now() + i)
            .await
            .unwrap();
    }
    // WHEN each user syncs and pages back 20 at a time
    let mut seen_by = Vec::new();
    for cid in ["a1", "b1"] {
        w.notifier.clear();
        w.frame(cid, r#"{"action":"sync","limit":20}"#)
            .await
            .unwrap();
        let mut frame = w.last_to(cid);
        let mut all: Vec<String> = Vec::new();
        loop {
            let mut page: Vec<String> = frame["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["content"].as_str().unwrap().to_owned())
                .collect();
            page.extend(all);
            all = page;
            if !frame["has_more"].as_bool().unwrap() {
                assert_eq!(frame["cursor"], Value::Null);
                break;
            }
            let body = serde_json::json!({"action":"history","before":frame["cursor"],"limit":20});
            w.frame(cid, &body.to_string()).await.unwrap();
            frame = w.last_to(cid);
            assert!(frame["before"].is_string());
        }
        seen_by.push(all);
    }
    // THEN both saw all 45, once each, oldest first, in the same order
    let expected: Vec<String> = (0..45).map(|i| format!("m{i}")).collect();
    assert_eq!(seen_by[0], expected);
    assert_eq!(seen_by[1], expected);
}
