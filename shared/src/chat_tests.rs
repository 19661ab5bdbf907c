use super::*;
use crate::auth::{mint, Claims};
use crate::fakes::{config, FakeMedia, FakeNotifier, FakeStore};
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
    deps: Deps<FakeStore, FakeNotifier, Media<FakeMedia>>,
    verifier: TokenVerifier,
}

impl World {
    fn new() -> Self {
        World {
            deps: Deps {
                store: FakeStore::default(),
                notifier: FakeNotifier::default(),
                media: Media {
                    objects: FakeMedia::default(),
                    owner_key: crate::media::OwnerKey::from_secret(SECRET),
                },
                config: config(),
            },
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
        connect(&self.deps.store, &self.verifier, &self.deps.config, &req)
            .await
            .unwrap()
    }

    async fn frame(&self, cid: &str, body: &str) -> Result<FrameOutcome> {
        self.frame_at(cid, body, now() + 1000).await
    }

    async fn frame_at(&self, cid: &str, body: &str, at: i64) -> Result<FrameOutcome> {
        on_frame(&self.deps, cid, body, at).await
    }

    fn last_to(&self, cid: &str) -> Value {
        self.deps
            .notifier
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
        let out = connect(&w.deps.store, &w.verifier, &w.deps.config, &req)
            .await
            .unwrap();
        assert_eq!(out.status(), status, "{req:?}");
    }
    // THEN nothing was stored for any refused handshake
    assert!(!w.deps.store.has_connection("c1"));
    assert!(w.deps.store.state.lock().unwrap().profiles.is_empty());
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
        let out = connect(&w.deps.store, &w.verifier, &w.deps.config, &req)
            .await
            .unwrap();
        assert_eq!(out.status(), status);
    }
    assert!(!w.deps.store.has_connection("c1"));
}

#[tokio::test]
async fn an_accepted_handshake_records_identity_profile_and_ttl() {
    let w = World::new();
    assert_eq!(
        w.connect_as("c1", "app", "111", "222").await,
        ConnectOutcome::Accepted
    );
    let s = w.deps.store.state.lock().unwrap();
    let r = &s.connections["c1"];
    assert_eq!(
        (r.user.as_str(), r.friend.as_str(), r.app_sid.as_str()),
        ("111", "222", "app")
    );
    assert_eq!(r.profile.name, "name-111");
    assert_eq!(
        r.expires_at,
        now() / 1000 + w.deps.config.connection_ttl_secs
    );
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
            w.deps.notifier.frames_to(quiet).is_empty(),
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
    assert_eq!(w.deps.store.message_count(), 1);
    assert_eq!(first["message"]["id"], second["message"]["id"]);
    assert_eq!(second["client_msg_id"], "k-1");
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    // A new id is a new message
    w.frame("a1", &send("k-2", "twice")).await.unwrap();
    assert_eq!(w.deps.store.message_count(), 2);
}

#[tokio::test]
async fn bad_frames_get_an_error_frame_and_change_nothing() {
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    let long = "x".repeat(w.deps.config.limits.max_content_bytes + 1);
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
    assert_eq!(w.deps.store.message_count(), 0);
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
    let after_ttl = now() + (w.deps.config.connection_ttl_secs + 1) * 1000;
    assert_eq!(
        w.frame_at("a1", &send("k", "x"), after_ttl).await.unwrap(),
        FrameOutcome::UnknownConnection
    );
    assert_eq!(w.deps.store.message_count(), 0);
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
    connect(&w.deps.store, &w.verifier, &w.deps.config, &req)
        .await
        .unwrap();
    for id in ["b1", "b3"] {
        w.deps.notifier.gone.lock().unwrap().insert(id.into());
    }
    w.deps.notifier.failing.lock().unwrap().insert("b2".into());
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
    assert!(!w.deps.store.has_connection("b1"));
    assert!(w.deps.store.has_connection("a1"));
    assert!(w.deps.store.has_connection("b2"));
    assert!(w.deps.store.has_connection("b3"));
    assert_eq!(w.deps.store.message_count(), 1);
}

#[tokio::test]
async fn a_storage_outage_sends_an_internal_error_and_stores_nothing() {
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.deps.store.set_down(true);
    assert!(w.frame("a1", &send("k9", "hi")).await.is_err());
    let f = w.last_to("a1");
    assert_eq!(f["error"], "internal");
    assert!(
        !f["msg"].as_str().unwrap().contains("refused"),
        "no inner error text"
    );
    w.deps.store.set_down(false);
    assert_eq!(w.deps.store.message_count(), 0);
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
        w.deps.notifier.clear();
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

// ---------------------------------------------------------------- media

fn ticket(req_id: &str, chat_type: u8, content_type: &str, size: u64) -> String {
    serde_json::json!({"action":"upload","req_id":req_id,"chat_type":chat_type,
                       "content_type":content_type,"size":size,"width":640,"height":480})
    .to_string()
}

fn media_send(cmid: &str, chat_type: u8, key: &str, poster: Option<&str>) -> String {
    let mut v = serde_json::json!({"action":"send","client_msg_id":cmid,"chat_type":chat_type,
                                   "chat_content":key});
    if let Some(p) = poster {
        v["poster"] = p.into();
    }
    v.to_string()
}

impl World {
    /// Asks for a ticket on `cid` and returns its key.
    async fn ticket_key(&self, cid: &str, chat_type: u8, content_type: &str, size: u64) -> String {
        let out = self
            .frame(cid, &ticket("r1", chat_type, content_type, size))
            .await
            .unwrap();
        assert_eq!(out, FrameOutcome::Ticketed);
        self.last_to(cid)["key"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn an_upload_ticket_names_a_fresh_key_of_the_sender_and_pins_type_and_size() {
    // GIVEN a connected user
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    // WHEN they ask for an image ticket
    w.frame("a1", &ticket("r-7", 1, "image/png", 5000))
        .await
        .unwrap();
    let f = w.last_to("a1");
    // THEN the ticket echoes req_id, carries a key of theirs with the declared size, and a PUT
    // and a POST for exactly that key, type and size
    assert_eq!(f["type"], "upload");
    assert_eq!(f["req_id"], "r-7");
    assert_eq!(f["max_bytes"], 5000);
    assert_eq!(f["expires_in"], 300);
    let key = f["key"].as_str().unwrap();
    let owner = w.deps.media.owner_key.owner("app", "111");
    assert!(key.starts_with(&format!("u/i/{owner}/")), "{key}");
    assert!(
        key.ends_with("_640x480.png") && !key.contains("111"),
        "{key}"
    );
    assert_eq!(f["put"]["headers"]["content-type"], "image/png");
    assert_eq!(f["put"]["headers"]["content-length"], "5000");
    assert_eq!(f["post"]["fields"]["key"], key);
    // AND a second ticket gets another key
    assert_ne!(w.ticket_key("a1", 1, "image/png", 5000).await, key);
}

#[tokio::test]
async fn tickets_over_the_limit_or_of_another_type_are_refused_by_name() {
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    for (frame, code, needle) in [
        (
            ticket("r1", 1, "image/jpeg", 10_485_761),
            "media_too_large",
            "10485760",
        ),
        (
            ticket("r2", 2, "video/mp4", 26_214_401),
            "media_too_large",
            "26214400",
        ),
        (
            ticket("r3", 1, "text/html", 10),
            "bad_content_type",
            "image/jpeg",
        ),
        (
            ticket("r4", 2, "image/png", 10),
            "bad_content_type",
            "video/mp4",
        ),
        (ticket("r5", 0, "image/png", 10), "bad_chat_type", ""),
        (ticket("r6", 1, "image/png", 0), "bad_size", ""),
    ] {
        assert_eq!(
            w.frame("a1", &frame).await.unwrap(),
            FrameOutcome::Rejected(code)
        );
        let f = w.last_to("a1");
        assert_eq!(f["error"], code);
        assert!(f["msg"].as_str().unwrap().contains(needle), "{f}");
        assert!(f["req_id"].as_str().unwrap().starts_with('r'), "{f}");
    }
    let f =
        serde_json::json!({"action":"upload","chat_type":1,"content_type":"image/png","size":1});
    w.frame("a1", &f.to_string()).await.unwrap();
    assert_eq!(w.last_to("a1")["error"], "bad_req_id");
}

#[tokio::test]
async fn an_uploaded_image_is_copied_sent_and_rendered_with_signed_urls() {
    // GIVEN A uploaded an image with a ticket
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.connect_as("b1", "app", "222", "111").await;
    let key = w.ticket_key("a1", 1, "image/jpeg", 2000).await;
    w.deps.media.objects.put(&key, "image/jpeg", 1500);
    // WHEN A sends it
    let out = w
        .frame("a1", &media_send("m1", 1, &key, None))
        .await
        .unwrap();
    // THEN it is copied to the message prefix and both users get a row whose content is a
    // download URL of the copy, with type, size, dimensions and the thumbnail's URL
    assert!(
        matches!(out, FrameOutcome::Sent { delivered: 2, .. }),
        "{out:?}"
    );
    let message_key = key.replacen("u/", "m/", 1);
    assert_eq!(
        *w.deps.media.objects.copies.lock().unwrap(),
        vec![(key.clone(), message_key.clone())]
    );
    let thumb = crate::media::thumbnail_key(&key).unwrap();
    for cid in ["a1", "b1"] {
        let row = &w.last_to(cid)["data"][0];
        assert_eq!(row["content"], FakeMedia::url(&message_key));
        assert_eq!(row["chat_type"], 1);
        assert_eq!(row["media"]["content_type"], "image/jpeg");
        assert_eq!(row["media"]["size"], 1500);
        assert_eq!(row["media"]["width"], 640);
        assert_eq!(row["media"]["height"], 480);
        assert_eq!(row["media"]["thumb_url"], FakeMedia::url(&thumb));
        assert!(row["media"]["expires_at"].as_i64().unwrap() > now());
        assert!(row["media"].get("poster_url").is_none());
    }
    assert_eq!(w.last_to("a1")["client_msg_id"], "m1");
    // AND a retry after the upload expired is the same message, not a refusal or a copy
    w.deps.media.objects.objects.lock().unwrap().remove(&key);
    let again = w
        .frame("a1", &media_send("m1", 1, &key, None))
        .await
        .unwrap();
    assert!(
        matches!(
            again,
            FrameOutcome::Sent {
                duplicate: true,
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(w.deps.store.message_count(), 1);
    assert_eq!(w.deps.media.objects.copies.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_video_with_a_poster_carries_both_urls() {
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    let video = w.ticket_key("a1", 2, "video/mp4", 9000).await;
    let poster = w.ticket_key("a1", 1, "image/jpeg", 900).await;
    w.deps.media.objects.put(&video, "video/mp4", 9000);
    w.deps.media.objects.put(&poster, "image/jpeg", 900);
    w.frame("a1", &media_send("v1", 2, &video, Some(&poster)))
        .await
        .unwrap();
    let row = &w.last_to("a1")["data"][0];
    let poster_copy = poster.replacen("u/", "m/", 1);
    assert_eq!(row["media"]["content_type"], "video/mp4");
    assert_eq!(row["media"]["poster_url"], FakeMedia::url(&poster_copy));
    let thumb = crate::media::thumbnail_key(&poster).unwrap();
    assert_eq!(row["media"]["thumb_url"], FakeMedia::url(&thumb));
    assert!(w.deps.media.objects.has(&video.replacen("u/", "m/", 1)));
    assert!(w.deps.media.objects.has(&poster_copy));
}

#[tokio::test]
async fn media_sends_that_name_the_wrong_object_are_refused_and_store_nothing() {
    // GIVEN A, and B who uploaded an image; and A's key in another app
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.connect_as("b1", "app", "222", "111").await;
    w.connect_as("a-app2", "app2", "111", "222").await;
    let bs = w.ticket_key("b1", 1, "image/jpeg", 100).await;
    w.deps.media.objects.put(&bs, "image/jpeg", 100);
    let other_app = w.ticket_key("a-app2", 1, "image/jpeg", 100).await;
    w.deps.media.objects.put(&other_app, "image/jpeg", 100);
    let never = w.ticket_key("a1", 1, "image/jpeg", 100).await;
    let html = w.ticket_key("a1", 1, "image/jpeg", 100).await;
    w.deps.media.objects.put(&html, "text/html", 100);
    let huge = w.ticket_key("a1", 1, "image/jpeg", 100).await;
    w.deps.media.objects.put(&huge, "image/jpeg", 10_485_761);
    let video = w.ticket_key("a1", 2, "video/mp4", 100).await;
    w.deps.media.objects.put(&video, "video/mp4", 100);
    w.deps.notifier.clear();
    for (frame, code) in [
        (media_send("x1", 1, &bs, None), "bad_media_key"),
        (media_send("x2", 1, &other_app, None), "bad_media_key"),
        (
            media_send("x3", 1, "u/i/not-a-key.jpg", None),
            "bad_media_key",
        ),
        (media_send("x4", 1, &never, None), "media_missing"),
        (media_send("x5", 1, &html, None), "media_mismatch"),
        (media_send("x6", 1, &huge, None), "media_mismatch"),
        (media_send("x7", 1, &video, None), "media_mismatch"),
        (media_send("x8", 2, &video, Some(&video)), "media_mismatch"),
        (media_send("x9", 2, &video, Some(&bs)), "bad_media_key"),
        (media_send("x10", 1, &html, Some(&video)), "bad_media_key"),
    ] {
        // WHEN A sends it THEN the named refusal comes back, echoing client_msg_id
        assert_eq!(
            w.frame("a1", &frame).await.unwrap(),
            FrameOutcome::Rejected(code),
            "{frame}"
        );
        let f = w.last_to("a1");
        assert_eq!(f["error"], code, "{frame}");
        assert!(f["client_msg_id"].as_str().unwrap().starts_with('x'));
    }
    // AND nothing was stored, copied or posted to B
    assert_eq!(w.deps.store.message_count(), 0);
    assert!(w.deps.media.objects.copies.lock().unwrap().is_empty());
    assert!(w.deps.notifier.frames_to("b1").is_empty());
    // AND off-site URLs still work as before
    let url = serde_json::json!({"action":"send","chat_type":1,"chat_content":"https://x/y.png"});
    w.frame("a1", &url.to_string()).await.unwrap();
    let row = &w.last_to("a1")["data"][0];
    assert_eq!(row["content"], "https://x/y.png");
    assert!(row.get("media").is_none());
}

#[tokio::test]
async fn twenty_media_rows_still_fit_the_frame_budget() {
    // GIVEN 25 image messages (each row carries two long signed URLs)
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    for i in 0..25 {
        let key = w.ticket_key("a1", 1, "image/jpeg", 100).await;
        w.deps.media.objects.put(&key, "image/jpeg", 100);
        w.frame("a1", &media_send(&format!("p{i}"), 1, &key, None))
            .await
            .unwrap();
    }
    // WHEN the latest 20 are synced
    w.frame("a1", r#"{"action":"sync","limit":20}"#)
        .await
        .unwrap();
    let raw = w.deps.notifier.raw_frames_to("a1").pop().unwrap();
    // THEN the frame is within budget and every row has its URLs
    assert!(raw.len() <= w.deps.config.limits.max_frame_bytes);
    let f: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(f["data"].as_array().unwrap().len(), 20);
    assert!(f["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["media"]["thumb_url"].is_string()));
}
