use crate::config::Config;
use crate::domain::auth::{mint, Claims, TokenVerifier};
use crate::domain::ids::Conversation;
use crate::error::Result;
use crate::fakes::{config, FakeMedia, FakeNotifier, FakeStore};
use crate::flows::send::{FAN_OUT_AGAIN_WITHIN_MS, MAX_SEND_RETRIES};
use crate::flows::{
    connect, disconnect, on_frame, on_frame_arrived, ConnectOutcome, ConnectRequest, Deps,
    FrameOutcome, Media,
};
use crate::ports::{ConnectionRemove, MessageStore};
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
                    owner_key: crate::domain::media::OwnerKey::from_secret(SECRET),
                },
                config: config(),
                records: Default::default(),
                moderation: Default::default(),
            },
            verifier: TokenVerifier::new(SECRET).unwrap(),
        }
    }

    /// A conversation connection (the seed's kind), made now.
    async fn connect_as(&self, cid: &str, app: &str, user: &str, friend: &str) -> ConnectOutcome {
        self.connect_at(cid, app, user, Some(friend), now()).await
    }

    /// A user connection, made now.
    async fn connect_user(&self, cid: &str, app: &str, user: &str) -> ConnectOutcome {
        self.connect_at(cid, app, user, None, now()).await
    }

    async fn connect_at(
        &self,
        cid: &str,
        app: &str,
        user: &str,
        friend: Option<&str>,
        at: i64,
    ) -> ConnectOutcome {
        // Tokens are checked against the real clock.
        let t = token(user, app, at.max(now()) / 1000 + 600);
        let req = ConnectRequest {
            connection_id: cid,
            userphone: Some(user),
            friendphone: friend,
            app_sid: Some(app),
            token: Some(&t),
            now_ms: at,
        };
        self.handshake(&req).await
    }

    async fn handshake(&self, req: &ConnectRequest<'_>) -> ConnectOutcome {
        connect(
            &self.deps.store,
            &self.deps.notifier,
            &self.verifier,
            &self.deps.config,
            req,
        )
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
        let out = w.handshake(&req).await;
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
        let out = w.handshake(&req).await;
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
        (r.user.as_str(), r.friend.as_deref(), r.app_sid.as_str()),
        ("111", Some("222"), "app")
    );
    assert!(r.registered);
    assert_eq!(r.profile.name, "name-111");
    assert_eq!(
        r.expires_at,
        now() / 1000 + w.deps.config.connection_ttl_secs
    );
    assert!(
        r.expires_at - now() / 1000 > 2 * 3600,
        "outlives API Gateway's 2 h cap"
    );
    let conversation = Conversation::new("app", "111", "222");
    assert_eq!(
        s.profiles[&(conversation.key(), "111".to_string())].avatar,
        "https://img/111.png"
    );
    let registry = &s.registries[&("app".to_string(), "111".to_string())];
    assert_eq!(registry.entries, vec![r.registry_entry()]);
    assert_eq!(registry.profile.as_ref().unwrap().name, "name-111");
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
            gone: 0,
            retries: 0,
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
    w.handshake(&req).await;
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
            gone: 3,
            retries: 0,
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
    // (the rest is `<ULID>_640x480.png`: no room for the account, which a random ULID or
    // owner segment may contain by chance, as "111" once did)
    let name = &key[format!("u/i/{owner}/").len()..];
    assert!(
        name.len() == 26 + "_640x480.png".len()
            && name.ends_with("_640x480.png")
            && name[..26].bytes().all(|b| b.is_ascii_alphanumeric()),
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
    let thumb = crate::domain::media::thumbnail_key(&key).unwrap();
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
    // AND re-uploading other bytes to the same key and sending it again changes nothing that
    // was sent: the copy is not made again
    w.deps.media.objects.put(&key, "image/jpeg", 999);
    w.frame("a1", &media_send("m2", 1, &key, None))
        .await
        .unwrap();
    assert_eq!(w.deps.media.objects.copies.lock().unwrap().len(), 1);
    let rows = w.last_to("a1")["data"].as_array().unwrap().clone();
    assert!(rows.iter().all(|r| r["media"]["size"] == 1500), "{rows:?}");
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
    let thumb = crate::domain::media::thumbnail_key(&poster).unwrap();
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
    // GIVEN 25 image messages (each row carries two long signed URLs), their tickets taken
    // within a minute under a limit that allows it
    let mut w = World::new();
    w.deps.config.max_uploads_per_minute = 25;
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

// ---------------------------------------------------------------- inbox

impl World {
    fn with_config(f: impl FnOnce(&mut Config)) -> Self {
        let mut w = World::new();
        f(&mut w.deps.config);
        w
    }

    /// Frames posted to `cid` since the last clear, parsed.
    fn frames(&self, cid: &str) -> Vec<Value> {
        self.deps.notifier.frames_to(cid)
    }

    fn types(&self, cid: &str) -> Vec<String> {
        self.frames(cid)
            .iter()
            .map(|f| f["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn send_to(to: &str, cmid: &str, text: &str) -> String {
    serde_json::json!({"action":"send","to":to,"client_msg_id":cmid,"chat_type":0,"chat_content":text})
        .to_string()
}

fn frame(v: Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn a_url_without_friendphone_opens_a_user_connection() {
    // GIVEN a handshake without friendphone
    let w = World::new();
    // WHEN it is made
    assert_eq!(
        w.connect_user("u1", "app", "111").await,
        ConnectOutcome::Accepted
    );
    // THEN the record has no friend, the registry lists it as a user connection, and no
    // conversation got a profile
    let s = w.deps.store.state.lock().unwrap();
    assert_eq!(s.connections["u1"].friend, None);
    let reg = &s.registries[&("app".to_string(), "111".to_string())];
    assert!(reg.entries[0].is_user_connection());
    assert_eq!(reg.profile.as_ref().unwrap().name, "name-111");
    assert!(s.profiles.is_empty());
}

#[tokio::test]
async fn a_user_connection_must_name_its_peer_and_a_conversation_connection_only_its_friend() {
    let w = World::new();
    w.connect_user("u1", "app", "111").await;
    w.connect_as("c1", "app", "111", "222").await;
    for (cid, body) in [
        ("u1", frame(serde_json::json!({"action":"sync"}))),
        ("u1", frame(serde_json::json!({"action":"sync","to":"111"}))),
        ("u1", frame(serde_json::json!({"action":"sync","to":"a#b"}))),
        ("u1", frame(serde_json::json!({"action":"history","to":7}))),
        ("u1", send("k1", "no peer")),
        ("u1", frame(serde_json::json!({"action":"typing"}))),
        ("c1", frame(serde_json::json!({"action":"sync","to":"333"}))),
        ("c1", send_to("333", "k2", "elsewhere")),
    ] {
        // WHEN a frame names no peer, itself, a malformed one, or not the connection's friend
        assert_eq!(
            w.frame(cid, &body).await.unwrap(),
            FrameOutcome::Rejected("bad_peer"),
            "{cid} {body}"
        );
        assert_eq!(w.last_to(cid)["error"], "bad_peer");
    }
    // THEN nothing was stored; naming the friend on the conversation connection is fine
    assert_eq!(w.deps.store.message_count(), 0);
    let f = w.frame("c1", &send_to("222", "k3", "ok")).await.unwrap();
    assert!(matches!(f, FrameOutcome::Sent { .. }));
    w.frame(
        "u1",
        &frame(serde_json::json!({"action":"sync","to":"222"})),
    )
    .await
    .unwrap();
    let sync = w.last_to("u1");
    assert_eq!(
        (sync["type"].as_str(), sync["peer"].as_str()),
        (Some("history"), Some("222"))
    );
    assert_eq!(sync["data"][0]["content"], "ok");
}

#[tokio::test]
async fn a_send_tells_user_connections_with_unread_counts_and_this_conversations_pages() {
    // GIVEN A on two user connections and a conversation connection with B; B on a user
    // connection and a conversation connection with A; A's conversation connection with C;
    // and C
    let w = World::new();
    w.connect_user("a-u1", "app", "111").await;
    w.connect_user("a-u2", "app", "111").await;
    w.connect_as("a-c", "app", "111", "222").await;
    w.connect_as("a-c3", "app", "111", "333").await;
    w.connect_user("b-u", "app", "222").await;
    w.connect_as("b-c", "app", "222", "111").await;
    w.connect_user("c-u", "app", "333").await;
    // WHEN A sends twice from a user connection
    w.frame("a-u1", &send_to("222", "m1", "one")).await.unwrap();
    let out = w.frame("a-u1", &send_to("222", "m2", "two")).await.unwrap();
    // THEN six connections got it each time: both users' user connections and this
    // conversation's connections
    assert_eq!(
        out,
        FrameOutcome::Sent {
            duplicate: false,
            delivered: 5,
            gone: 0,
            retries: 0
        }
    );
    let ack = w.last_to("a-u1");
    assert_eq!(ack["type"], "message");
    assert_eq!(ack["peer"], "222");
    assert_eq!(ack["client_msg_id"], "m2");
    assert_eq!(ack["unread"], 0);
    assert_eq!(ack["message"]["content"], "two");
    assert_eq!(ack["message"]["username"], "name-111");
    let other_device = w.last_to("a-u2");
    assert_eq!(other_device["type"], "message");
    assert!(other_device.get("client_msg_id").is_none());
    let at_b = w.last_to("b-u");
    assert_eq!(
        (at_b["peer"].as_str(), at_b["unread"].as_i64()),
        (Some("111"), Some(2))
    );
    assert_eq!(at_b["message"]["friendname"], "name-222");
    for cid in ["a-c", "b-c"] {
        let f = w.last_to(cid);
        assert_eq!(f["type"], "history", "{cid}");
        assert_eq!(contents_of(&f), ["one", "two"]);
        assert_eq!(f["message"]["content"], "two");
    }
    assert_eq!(w.last_to("a-c")["peer"], "222");
    assert_eq!(w.last_to("b-c")["peer"], "111");
    // AND the conversation connection elsewhere and the third user heard nothing
    assert!(w.frames("a-c3").is_empty());
    assert!(w.frames("c-u").is_empty());
    // AND the entries count: A sent 2, B has 2 unread
    let a = w.deps.store.entry("app", "111", "222").unwrap();
    let b = w.deps.store.entry("app", "222", "111").unwrap();
    assert_eq!((a.sent, a.unread(), b.peer_sent, b.unread()), (2, 0, 2, 2));
    assert_eq!(a.ver, b.ver);
}

fn contents_of(f: &Value) -> Vec<String> {
    f["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_reused_client_msg_id_with_other_content_is_refused_and_changes_nothing() {
    // GIVEN a message sent with client_msg_id k
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    w.frame("a", &send_to("222", "k", "first")).await.unwrap();
    let entry = w.deps.store.entry("app", "222", "111").unwrap();
    w.deps.notifier.clear();
    // WHEN k comes again with another text, or another kind of message
    let other_type = serde_json::json!({"action":"send","to":"222","client_msg_id":"k",
        "chat_type":1,"chat_content":"https://img.example/first.png"})
    .to_string();
    for body in [send_to("222", "k", "second"), other_type] {
        let out = w.frame("a", &body).await.unwrap();
        // THEN it is refused with its own code, echoing the id; nothing is stored or told
        assert_eq!(out, FrameOutcome::Rejected("client_msg_id_reused"));
        let f = w.last_to("a");
        assert_eq!(
            (f["error"].as_str(), f["client_msg_id"].as_str()),
            (Some("client_msg_id_reused"), Some("k"))
        );
    }
    assert_eq!(w.deps.store.message_count(), 1);
    assert_eq!(w.deps.store.entry("app", "222", "111").unwrap(), entry);
    assert!(w.deps.notifier.frames_to("b").is_empty());
    // AND the same content is still the acknowledged duplicate
    let out = w.frame("a", &send_to("222", "k", "first")).await.unwrap();
    assert!(matches!(
        out,
        FrameOutcome::Sent {
            duplicate: true,
            ..
        }
    ));
}

#[tokio::test]
async fn an_expired_idempotency_marker_lets_its_client_msg_id_be_used_again() {
    // GIVEN markers that live 10 s
    let mut w = World::new();
    w.deps.config.marker_ttl_secs = 10;
    w.connect_user("a", "app", "111").await;
    w.frame_at("a", &send_to("222", "k", "first"), now() + 1000)
        .await
        .unwrap();
    // WHEN k is sent again with new content 11 s later (the marker expired, not yet swept)
    let out = w
        .frame_at("a", &send_to("222", "k", "second"), now() + 12_000)
        .await
        .unwrap();
    // THEN it is a new message
    assert!(matches!(
        out,
        FrameOutcome::Sent {
            duplicate: false,
            ..
        }
    ));
    assert_eq!(w.deps.store.message_count(), 2);
    assert_eq!(w.last_to("a")["message"]["content"], "second");
}

/// A frame that API Gateway received at `arrived`, handled at `handled`.
async fn frame_arrived(
    w: &World,
    cid: &str,
    body: &str,
    handled: i64,
    arrived: i64,
) -> FrameOutcome {
    on_frame_arrived(&w.deps, cid, body, handled, arrived)
        .await
        .unwrap()
}

#[tokio::test]
async fn messages_are_ordered_by_arrival_even_when_handled_out_of_order() {
    // GIVEN A on a user connection and on the seed's page, B on a user connection
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.connect_as("a-page", "app", "111", "222").await;
    w.connect_user("b", "app", "222").await;
    // WHEN A's frames arrive at t+1, t+2, t+3 ms but are handled in the order 3, 1, 2 (frames
    // are handled concurrently), each by a handler whose own clock is later
    let t = now() + 1000;
    for i in [3, 1, 2] {
        frame_arrived(
            &w,
            "a",
            &send_to("222", &format!("k{i}"), &format!("m{i}")),
            t + 50 - i,
            t + i,
        )
        .await;
    }
    // THEN the conversation holds them in the order they were sent, timed by their arrival
    let page = w
        .deps
        .store
        .latest(&Conversation::new("app", "111", "222"), 10)
        .await
        .unwrap();
    let order: Vec<(&str, i64)> = page
        .messages
        .iter()
        .map(|m| (m.content.as_str(), m.created_at_ms - t))
        .collect();
    assert_eq!(order, [("m1", 1), ("m2", 2), ("m3", 3)]);
    // AND both entries still show the newest, with three unread for B
    let theirs = w.deps.store.entry("app", "222", "111").unwrap();
    assert_eq!(theirs.last.as_ref().unwrap().content, "m3");
    assert_eq!(theirs.unread(), 3);
    assert_eq!(
        w.deps
            .store
            .entry("app", "111", "222")
            .unwrap()
            .last
            .unwrap()
            .content,
        "m3"
    );
    // AND the seed's page, sent after each send, was in arrival order every time
    let last_page: Vec<String> = w.last_to("a-page")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(last_page, ["m1", "m2", "m3"]);
    // WHEN B reads the newest message (m3, whose seq is 1: it committed first)
    let read =
        serde_json::json!({"action":"read","to":"111","id":theirs.last.unwrap().id}).to_string();
    w.frame("b", &read).await.unwrap();
    // THEN everything A sent is read
    assert_eq!(w.deps.store.entry("app", "222", "111").unwrap().unread(), 0);
}

#[tokio::test]
async fn a_frame_without_a_plausible_arrival_time_is_timed_by_the_handler() {
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    let t = now() + 1000;
    frame_arrived(&w, "a", &send_to("222", "k", "x"), t, t - 3).await;
    assert_eq!(w.last_to("a")["message"]["created_at"], t - 3);
}

#[tokio::test]
async fn a_seed_send_stored_before_a_later_step_failed_is_not_invited_to_retry() {
    // GIVEN the seed's client (no client_msg_id) on its conversation page, B on a user
    // connection and on the conversation's page
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.connect_user("b", "app", "222").await;
    w.connect_as("b1", "app", "222", "111").await;
    let seed = r#"{"chat_type":0,"chat_content":"hello"}"#;
    // WHEN the page read beside the write fails once THEN it is read again and all goes on
    w.deps.store.fail_pages(1);
    w.frame("a1", seed).await.unwrap();
    assert_eq!(w.last_to("a1")["type"], "history");
    assert_eq!(w.deps.store.message_count(), 1);
    w.deps.notifier.clear();
    // WHEN the message is stored but the page cannot be read at all
    w.deps.store.fail_pages(2);
    let out = w.frame("a1", seed).await.unwrap();
    // THEN the send counts as done (no 500), and the sender hears it was stored, with its id,
    // and not to send it again: no `internal`, which the seed's client would retry
    assert!(
        matches!(
            out,
            FrameOutcome::Sent {
                duplicate: false,
                ..
            }
        ),
        "{out:?}"
    );
    let frames = w.deps.notifier.frames_to("a1");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["error"], "not_delivered");
    assert!(frames[0]["msg"]
        .as_str()
        .unwrap()
        .contains("do not send it again"));
    let id = frames[0]["id"].as_str().unwrap().to_owned();
    // AND B's user connection still gets the message; the pages get nothing
    assert_eq!(w.last_to("b")["message"]["id"], id.as_str());
    assert!(w.deps.notifier.frames_to("b1").is_empty());
    // AND it is stored once; a sync shows both messages
    assert_eq!(w.deps.store.message_count(), 2);
    w.frame("a1", r#"{"action":"sync"}"#).await.unwrap();
    assert_eq!(contents_of(&w.last_to("a1")), ["hello", "hello"]);
}

#[tokio::test]
async fn a_user_over_the_send_rate_is_refused_on_every_connection_and_nothing_changes() {
    // GIVEN at most 3 messages a minute per user; A on two user connections, to two peers
    let mut w = World::new();
    w.deps.config.max_sends_per_minute = 3;
    w.connect_user("a", "app", "111").await;
    w.connect_user("a2", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    let t = (now() / 60_000 + 1) * 60_000; // the start of a minute
    for (i, (cid, to)) in [("a", "222"), ("a2", "333"), ("a", "333")]
        .iter()
        .enumerate()
    {
        let out = w
            .frame_at(cid, &send_to(to, &format!("k{i}"), "hi"), t + i as i64)
            .await
            .unwrap();
        assert!(matches!(out, FrameOutcome::Sent { .. }), "{out:?}");
    }
    let entry = w.deps.store.entry("app", "222", "111").unwrap();
    w.deps.notifier.clear();
    // WHEN a fourth comes in the same minute, from the connection that sent only one
    let out = w
        .frame_at("a2", &send_to("222", "k3", "too many"), t + 59_000)
        .await
        .unwrap();
    // THEN it is refused by name, echoing its id; nothing is stored or told
    assert_eq!(out, FrameOutcome::Rejected("rate_limited"));
    let f = w.last_to("a2");
    assert_eq!(
        (f["error"].as_str(), f["client_msg_id"].as_str()),
        (Some("rate_limited"), Some("k3"))
    );
    assert!(f["msg"]
        .as_str()
        .unwrap()
        .contains("3 messages a minute per user"));
    assert_eq!(w.deps.store.message_count(), 3);
    assert_eq!(w.deps.store.entry("app", "222", "111").unwrap(), entry);
    assert!(w.deps.notifier.frames_to("b").is_empty());
    // AND a new connection (a reconnect) starts no new count
    w.connect_user("a3", "app", "111").await;
    let out = w
        .frame_at("a3", &send_to("222", "k4", "reconnected"), t + 59_000)
        .await
        .unwrap();
    assert_eq!(out, FrameOutcome::Rejected("rate_limited"));
    assert_eq!(w.deps.store.message_count(), 3);
    // AND in the next minute the user may send again; older counts are dropped
    let out = w
        .frame_at("a", &send_to("222", "k3", "later"), t + 60_000)
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            FrameOutcome::Sent {
                duplicate: false,
                ..
            }
        ),
        "{out:?}"
    );
    let counter = w.deps.store.state.lock().unwrap().rate_counters
        [&("app".to_string(), "111".to_string())]
        .clone();
    assert_eq!(counter, [(t / 60_000 + 1, 1)]);
}

#[tokio::test]
async fn a_duplicate_send_changes_no_counter() {
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    w.frame("a", &send_to("222", "same", "once")).await.unwrap();
    let before = w.deps.store.entry("app", "222", "111").unwrap();
    let out = w.frame("a", &send_to("222", "same", "once")).await.unwrap();
    assert!(matches!(
        out,
        FrameOutcome::Sent {
            duplicate: true,
            ..
        }
    ));
    assert_eq!(w.deps.store.entry("app", "222", "111").unwrap(), before);
    assert_eq!(w.last_to("a")["client_msg_id"], "same");
}

#[tokio::test]
async fn a_retry_of_a_send_nobody_was_told_of_reaches_every_connection() {
    // GIVEN A, B on a user connection and B on a conversation connection (the seed's client),
    // and a first send whose posts to B all fail (as when its function is killed between the
    // write and the posts): stored, but B heard nothing and A got its acknowledgement only
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    w.connect_as("b-seed", "app", "222", "111").await;
    for cid in ["b", "b-seed"] {
        w.deps.notifier.failing.lock().unwrap().insert(cid.into());
    }
    w.frame("a", &send_to("222", "same", "once")).await.unwrap();
    let count = |cid: &str| w.deps.notifier.frames_to(cid).len();
    assert_eq!((count("b"), count("b-seed")), (0, 0));
    w.deps.notifier.failing.lock().unwrap().clear();
    let unread = w.deps.store.entry("app", "222", "111").unwrap();
    // WHEN A's client, unsure, sends it again with the same client_msg_id
    let out = w.frame("a", &send_to("222", "same", "once")).await.unwrap();
    // THEN it is stored once, and both of B's connections get it now, without the
    // acknowledgement, and no unread count moves
    assert!(
        matches!(
            out,
            FrameOutcome::Sent {
                duplicate: true,
                delivered: 3,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.deps.store.message_count(), 1);
    let b = w.last_to("b");
    assert_eq!(
        (b["type"].as_str(), b["unread"].as_u64()),
        (Some("message"), Some(1))
    );
    assert_eq!(b["message"]["content"], "once");
    assert!(b.get("client_msg_id").is_none());
    let seed = w.last_to("b-seed");
    assert_eq!(seed["type"], "history");
    assert_eq!(seed["data"][0]["id"], b["message"]["id"]);
    assert_eq!(w.last_to("a")["client_msg_id"], "same");
    assert_eq!(w.deps.store.entry("app", "222", "111").unwrap(), unread);
}

#[tokio::test]
async fn a_duplicate_past_the_window_or_the_users_meter_is_answered_to_its_connection_only() {
    // GIVEN A on two devices and B, after a message everyone received once, and a limit of 2
    // sends a minute (which also bounds the duplicates told to everyone again)
    let w = World::with_config(|c| c.max_sends_per_minute = 2);
    w.connect_user("a", "app", "111").await;
    w.connect_user("a2", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    w.frame("a", &send_to("222", "same", "once")).await.unwrap();
    let count = |cid: &str| w.deps.notifier.frames_to(cid).len();
    assert_eq!((count("a"), count("a2"), count("b")), (1, 1, 1));
    // WHEN A retries it three times in the same minute
    for _ in 0..3 {
        w.frame("a", &send_to("222", "same", "once")).await.unwrap();
    }
    // THEN the first two go to everyone again, the third only to A (its acknowledgement)
    assert_eq!((count("a"), count("a2"), count("b")), (4, 3, 3));
    assert_eq!(w.last_to("a")["client_msg_id"], "same");
    // AND a retry more than two minutes after the message is answered to A only
    let late = now() + FAN_OUT_AGAIN_WITHIN_MS + 60_000;
    let out = w
        .frame_at("a", &send_to("222", "same", "once"), late)
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            FrameOutcome::Sent {
                duplicate: true,
                delivered: 1,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!((count("a"), count("a2"), count("b")), (5, 3, 3));
    assert_eq!(w.deps.store.message_count(), 1);
}

#[tokio::test]
async fn a_send_that_loses_races_retries_and_reports_them() {
    // GIVEN two concurrent sends that win first
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.deps.store.conflict_next(2);
    // WHEN A sends THEN it is stored once, after two retries
    let out = w.frame("a", &send_to("222", "k", "hi")).await.unwrap();
    assert_eq!(
        out,
        FrameOutcome::Sent {
            duplicate: false,
            delivered: 1,
            gone: 0,
            retries: 2
        }
    );
    assert_eq!(w.deps.store.message_count(), 1);
    // AND a send that keeps losing gives up with an internal error and stores nothing
    w.deps.store.conflict_next(MAX_SEND_RETRIES + 1);
    assert!(w.frame("a", &send_to("222", "k2", "no")).await.is_err());
    assert_eq!(w.last_to("a")["error"], "internal");
    assert_eq!(w.deps.store.message_count(), 1);
}

#[tokio::test]
async fn over_the_cap_the_oldest_connection_is_closed_and_expired_ones_pruned() {
    // GIVEN a cap of 2 and a user with one expired and two live connections
    let w = World::with_config(|c| c.max_connections_per_user = 2);
    let t0 = now() - 3_600_000;
    w.connect_at("expired", "app", "111", None, t0 - 10_000_000)
        .await;
    w.connect_at("old", "app", "111", None, t0).await;
    w.connect_at("mid", "app", "111", Some("222"), t0 + 1).await;
    assert_eq!(
        w.deps.store.registered("app", "111"),
        ["old", "mid"],
        "expired pruned"
    );
    assert!(w.deps.notifier.closed.lock().unwrap().is_empty());
    // WHEN a third live connection is made
    w.connect_user("new", "app", "111").await;
    // THEN the oldest is closed and out of the registry; the others stay
    assert_eq!(*w.deps.notifier.closed.lock().unwrap(), ["old"]);
    assert_eq!(w.deps.store.registered("app", "111"), ["mid", "new"]);
    // AND a message to the user reaches the two that remain, not the closed one
    w.connect_user("b", "app", "222").await;
    w.deps.notifier.clear();
    w.frame("b", &send_to("111", "k", "hi")).await.unwrap();
    assert!(w.frames("old").is_empty());
    assert_eq!(w.types("new"), ["message"]);
    assert_eq!(w.types("mid"), ["history"]);
}

#[tokio::test]
async fn disconnect_and_410_take_connections_out_of_the_registry() {
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.connect_at("b-old", "app", "222", None, now() - 60_000)
        .await;
    w.connect_user("b-new", "app", "222").await;
    disconnect(&w.deps.store, "b-new").await.unwrap();
    assert_eq!(w.deps.store.registered("app", "222"), ["b-old"]);
    w.deps.notifier.gone.lock().unwrap().insert("b-old".into());
    let out = w.frame("a", &send_to("222", "k", "hi")).await.unwrap();
    assert!(matches!(out, FrameOutcome::Sent { gone: 1, .. }));
    assert!(w.deps.store.registered("app", "222").is_empty());
    assert!(!w.deps.store.has_connection("b-old"));
}

#[tokio::test]
async fn a_connection_from_before_the_registry_joins_it_with_its_next_frame() {
    // GIVEN a record written before registries existed
    let w = World::new();
    w.connect_as("legacy", "app", "222", "111").await;
    {
        let mut s = w.deps.store.state.lock().unwrap();
        s.connections.get_mut("legacy").unwrap().registered = false;
        s.registries.clear();
    }
    w.connect_user("a", "app", "111").await;
    // WHEN it pings THEN it is in the registry and hears the next message
    w.frame("legacy", r#"{"action":"ping"}"#).await.unwrap();
    assert_eq!(w.deps.store.registered("app", "222"), ["legacy"]);
    w.frame("a", &send_to("222", "k", "found you"))
        .await
        .unwrap();
    assert_eq!(contents_of(&w.last_to("legacy")), ["found you"]);
}

#[tokio::test]
async fn the_conversation_list_is_by_last_activity_with_unread_counts_and_pages() {
    // GIVEN B, C and D each wrote to A, D last, and A answered C
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    for (i, (cid, user)) in [("b", "222"), ("c", "333"), ("d", "444")]
        .iter()
        .enumerate()
    {
        w.connect_user(cid, "app", user).await;
        for j in 0..=i {
            let body = send_to("111", &format!("{cid}{j}"), &format!("from {user} #{j}"));
            w.frame_at(cid, &body, now() + (i * 10 + j) as i64)
                .await
                .unwrap();
        }
    }
    w.frame_at("a", &send_to("333", "a1", "hi C"), now() + 100)
        .await
        .unwrap();
    // WHEN A lists two at a time
    w.frame("a", r#"{"action":"conversations","limit":2}"#)
        .await
        .unwrap();
    let first = w.last_to("a");
    // THEN C (answered last) comes first with no unread, then D with 3, and a cursor
    assert_eq!(first["type"], "conversations");
    let peers: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["333", "444"]);
    assert_eq!(first["data"][0]["unread"], 0);
    assert_eq!(first["data"][0]["last"]["content"], "hi C");
    assert_eq!(first["data"][0]["last"]["username"], "name-111");
    assert_eq!(first["data"][0]["peername"], "name-333");
    assert_eq!(first["data"][1]["unread"], 3);
    assert_eq!(first["data"][1]["peer_read_id"], Value::Null);
    assert_eq!(first["has_more"], true);
    // AND the next page is B, the end
    let next = serde_json::json!({"action":"conversations","limit":2,"before":first["cursor"]});
    w.frame("a", &next.to_string()).await.unwrap();
    let second = w.last_to("a");
    assert_eq!(second["data"][0]["peer"], "222");
    assert_eq!(second["data"][0]["unread"], 1);
    assert_eq!(
        (second["has_more"].as_bool(), second["cursor"].is_null()),
        (Some(false), true)
    );
    // AND a cursor not handed out is refused
    w.frame("a", r#"{"action":"conversations","before":"yesterday"}"#)
        .await
        .unwrap();
    assert_eq!(w.last_to("a")["error"], "bad_cursor");
}

#[tokio::test]
async fn read_moves_forward_only_clears_unread_and_sends_a_receipt() {
    // GIVEN B sent A three messages; A on a user connection and B's conversation; B on a
    // user connection and a conversation connection
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.connect_as("a-c", "app", "111", "222").await;
    w.connect_user("b", "app", "222").await;
    w.connect_as("b-c", "app", "222", "111").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        w.frame("b", &send_to("111", &format!("k{i}"), &format!("m{i}")))
            .await
            .unwrap();
        ids.push(w.last_to("b")["message"]["id"].as_str().unwrap().to_owned());
    }
    w.deps.notifier.clear();
    // WHEN A reads up to the second
    let read = |id: &str| serde_json::json!({"action":"read","to":"222","id":id}).to_string();
    assert_eq!(
        w.frame("a", &read(&ids[1])).await.unwrap(),
        FrameOutcome::Read { moved: true }
    );
    // THEN A's user connection gets the entry with one unread, B's user connection a receipt,
    // and the conversation connections nothing
    let entry = w.last_to("a");
    assert_eq!(entry["type"], "conversation");
    assert_eq!(
        (
            entry["data"]["peer"].as_str(),
            entry["data"]["unread"].as_i64()
        ),
        (Some("222"), Some(1))
    );
    assert_eq!(
        w.last_to("b"),
        serde_json::json!({"code":1,"type":"read","peer":"111","id":ids[1]})
    );
    assert!(w.frames("a-c").is_empty() && w.frames("b-c").is_empty());
    assert_eq!(
        w.deps
            .store
            .entry("app", "222", "111")
            .unwrap()
            .peer_read_id
            .as_deref(),
        Some(ids[1].as_str())
    );
    // WHEN A reads the first again (from the conversation connection): nothing moves back
    w.deps.notifier.clear();
    assert_eq!(
        w.frame("a-c", &read(&ids[0])).await.unwrap(),
        FrameOutcome::Read { moved: false }
    );
    assert_eq!(
        w.last_to("a-c")["data"]["unread"],
        1,
        "the asker is answered"
    );
    assert!(w.frames("b").is_empty(), "no receipt for nothing new");
    // WHEN A reads the last THEN nothing is unread
    w.frame("a", &read(&ids[2])).await.unwrap();
    assert_eq!(w.last_to("a")["data"]["unread"], 0);
    assert_eq!(w.deps.store.entry("app", "111", "222").unwrap().unread(), 0);
    // AND an unknown id, a malformed one
    let unknown = crate::domain::ids::new_message_id(now());
    assert_eq!(
        w.frame("a", &read(&unknown)).await.unwrap(),
        FrameOutcome::Rejected("not_found")
    );
    assert_eq!(
        w.frame("a", r#"{"action":"read","to":"222","id":"x"}"#)
            .await
            .unwrap(),
        FrameOutcome::Rejected("bad_id")
    );
}

#[tokio::test]
async fn typing_reaches_the_peers_user_connections_at_most_every_two_seconds() {
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    w.connect_as("b-c", "app", "222", "111").await;
    w.connect_user("c", "app", "333").await;
    let typing = r#"{"action":"typing","to":"222"}"#;
    let t = now() + 1000;
    assert_eq!(
        w.frame_at("a", typing, t).await.unwrap(),
        FrameOutcome::Typed { relayed: true }
    );
    assert_eq!(
        w.frame_at("a", typing, t + 1500).await.unwrap(),
        FrameOutcome::Typed { relayed: false }
    );
    assert_eq!(
        w.frame_at("a", typing, t + 2000).await.unwrap(),
        FrameOutcome::Typed { relayed: true }
    );
    assert_eq!(
        w.frames("b"),
        vec![serde_json::json!({"code":1,"type":"typing","peer":"111"}); 2]
    );
    assert!(
        w.frames("b-c").is_empty(),
        "conversation connections get only history"
    );
    assert!(w.frames("a").is_empty(), "no answer to the typer");
    assert!(w.frames("c").is_empty());
    assert_eq!(w.deps.store.message_count(), 0);
}

#[tokio::test]
async fn a_recall_inside_the_window_changes_the_row_everywhere() {
    // GIVEN A sent an uploaded image to B, seen on user and conversation connections
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    w.connect_as("b-c", "app", "222", "111").await;
    let key = w.ticket_key("a", 1, "image/jpeg", 100).await;
    w.deps.media.objects.put(&key, "image/jpeg", 100);
    let mut body: Value = serde_json::from_str(&media_send("m1", 1, &key, None)).unwrap();
    body["to"] = "222".into();
    w.frame("a", &body.to_string()).await.unwrap();
    let id = w.last_to("a")["message"]["id"].as_str().unwrap().to_owned();
    w.deps.notifier.clear();
    // WHEN A recalls it
    let recall = serde_json::json!({"action":"recall","to":"222","id":id}).to_string();
    assert_eq!(w.frame("a", &recall).await.unwrap(), FrameOutcome::Recalled);
    // THEN the sent copy and its thumbnail are deleted (the upload area expires on its own)
    let sent = key.replacen("u/", "m/", 1);
    let thumb = crate::domain::media::thumbnail_key(&sent).unwrap();
    let mut deleted = w.deps.media.objects.deleted.lock().unwrap().clone();
    deleted.sort();
    assert_eq!(deleted, [sent.clone(), thumb]);
    assert!(!w
        .deps
        .media
        .objects
        .objects
        .lock()
        .unwrap()
        .contains_key(&sent));
    // THEN user connections get a recall frame, the conversation connection a page whose row
    // is recalled, and every later read shows it recalled
    assert_eq!(
        w.last_to("a"),
        serde_json::json!({"code":1,"type":"recall","peer":"222","id":id})
    );
    assert_eq!(
        w.last_to("b"),
        serde_json::json!({"code":1,"type":"recall","peer":"111","id":id})
    );
    let page = w.last_to("b-c");
    assert_eq!(page["type"], "history");
    let row = &page["data"][0];
    assert_eq!(
        (row["recalled"].as_bool(), row["content"].as_str()),
        (Some(true), Some(""))
    );
    assert!(row.get("media").is_none());
    w.frame("b", r#"{"action":"sync","to":"111"}"#)
        .await
        .unwrap();
    assert_eq!(w.last_to("b")["data"][0]["recalled"], true);
    w.frame("b", r#"{"action":"conversations"}"#).await.unwrap();
    let last = &w.last_to("b")["data"][0]["last"];
    assert_eq!(
        (last["recalled"].as_bool(), last["content"].as_str()),
        (Some(true), Some(""))
    );
    // AND recalling again is harmless
    assert_eq!(w.frame("a", &recall).await.unwrap(), FrameOutcome::Recalled);
    // AND a retried send with the same client_msg_id answers the recalled message, not the
    // original
    w.deps.notifier.clear();
    let again = w.frame("a", &body.to_string()).await.unwrap();
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
    let m = &w.last_to("a")["message"];
    assert_eq!(
        (m["recalled"].as_bool(), m["content"].as_str()),
        (Some(true), Some("")),
        "{m}"
    );
    assert!(m.get("media").is_none());
    // (a duplicate of a recalled message is answered to its own connection only: B was told
    // of the recall)
    assert!(w.deps.notifier.frames_to("b").is_empty());
    assert_eq!(w.deps.store.message_count(), 1);
}

#[tokio::test]
async fn a_recall_of_anothers_an_old_or_an_unknown_message_is_refused() {
    let w = World::with_config(|c| c.recall_window_secs = 60);
    w.connect_user("a", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    w.frame("b", &send_to("111", "k1", "theirs")).await.unwrap();
    let theirs = w.last_to("b")["message"]["id"].as_str().unwrap().to_owned();
    w.frame("a", &send_to("222", "k2", "mine")).await.unwrap();
    let mine = w.last_to("a")["message"]["id"].as_str().unwrap().to_owned();
    let recall = |id: &str| serde_json::json!({"action":"recall","to":"222","id":id}).to_string();
    for (id, at, code) in [
        (theirs.as_str(), now() + 1000, "not_yours"),
        (mine.as_str(), now() + 61_001, "recall_window_passed"),
        (
            &crate::domain::ids::new_message_id(now()),
            now() + 1000,
            "not_found",
        ),
    ] {
        assert_eq!(
            w.frame_at("a", &recall(id), at).await.unwrap(),
            FrameOutcome::Rejected(code)
        );
        assert_eq!(w.last_to("a")["error"], code);
    }
    // AND nothing changed
    w.frame("a", r#"{"action":"sync","to":"222"}"#)
        .await
        .unwrap();
    assert_eq!(contents_of(&w.last_to("a")), ["theirs", "mine"]);
}

// ---------------------------------------------------------------- warm instances

/// A ping from `cid` at `at`: what became of it.
async fn ping_at(w: &World, cid: &str, at: i64) -> FrameOutcome {
    w.frame_at(cid, r#"{"action":"ping"}"#, at).await.unwrap()
}

/// A world where `cid` (user 111) pinged at `t` through this instance, then lost its record
/// behind the instance's back (another instance's `$disconnect`).
async fn read_then_removed(w: &World, cid: &str, t: i64) {
    w.connect_user(cid, "app", "111").await;
    assert_eq!(ping_at(w, cid, t).await, FrameOutcome::Ponged);
    w.deps.store.remove(cid).await.unwrap();
}

#[tokio::test]
async fn a_warm_instance_trusts_a_record_it_read_for_a_bounded_time_only() {
    // GIVEN a connection whose record this instance read, then removed elsewhere
    // (CONNECTION_CACHE_SECONDS is 5 by default)
    let w = World::new();
    let t = now() + 1000;
    read_then_removed(&w, "a1", t).await;
    // THEN frames within the bound are still served from the record it read ...
    assert_eq!(ping_at(&w, "a1", t + 4_000).await, FrameOutcome::Ponged);
    // ... and once the bound passed the connection is refused
    assert_eq!(
        ping_at(&w, "a1", t + 5_000).await,
        FrameOutcome::UnknownConnection
    );
    assert_eq!(w.last_to("a1")["error"], "not_connected");
    // AND with the cache off (0) every frame reads the record
    let w = World::with_config(|c| c.connection_cache_secs = 0);
    read_then_removed(&w, "b1", t).await;
    assert_eq!(
        ping_at(&w, "b1", t + 1).await,
        FrameOutcome::UnknownConnection
    );
}

#[tokio::test]
async fn a_disconnect_handled_here_forgets_the_record_at_once() {
    // GIVEN a user connection made a minute ago whose record this instance has cached
    let w = World::new();
    let t = now() + 1000;
    w.connect_at("a1", "app", "111", None, now() - 60_000).await;
    w.connect_user("b1", "app", "222").await;
    assert_eq!(ping_at(&w, "a1", t).await, FrameOutcome::Ponged);
    // WHEN its socket is gone and a send from here finds out (410): this is the disconnect
    // this instance sees; `$disconnect` itself runs in another function
    w.deps.notifier.gone.lock().unwrap().insert("a1".into());
    let sent = w
        .frame_at("b1", &send_to("111", "k1", "hi"), t)
        .await
        .unwrap();
    assert!(
        matches!(sent, FrameOutcome::Sent { gone: 1, .. }),
        "{sent:?}"
    );
    // THEN the record is gone and this instance no longer serves its cached copy
    assert!(!w.deps.store.has_connection("a1"));
    assert_eq!(
        ping_at(&w, "a1", t + 1).await,
        FrameOutcome::UnknownConnection
    );
}

#[tokio::test]
async fn a_commit_whose_answer_was_lost_is_settled_not_answered_internal() {
    // GIVEN the seed's client (no client_msg_id, so no marker would catch a resend) and B
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.connect_user("b", "app", "222").await;
    // WHEN the send's transaction commits but its answer is lost (a timeout)
    w.deps.store.lose_commit_answers(1);
    let out = w
        .frame("a1", r#"{"chat_type":0,"chat_content":"hello"}"#)
        .await
        .unwrap();
    // THEN it is settled as stored: one row, the sender's page and B's copy, no `internal`
    // (which the seed's client would answer by sending the message again)
    assert!(
        matches!(
            out,
            FrameOutcome::Sent {
                duplicate: false,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.deps.store.message_count(), 1);
    let to_sender = w.deps.notifier.frames_to("a1");
    assert!(
        to_sender.iter().all(|f| f["type"] != "error"),
        "{to_sender:?}"
    );
    assert_eq!(w.last_to("a1")["type"], "history");
    assert_eq!(w.last_to("b")["message"]["content"], "hello");
}

#[tokio::test]
async fn a_commit_that_failed_and_stays_unknown_answers_internal() {
    // GIVEN a send whose transaction fails, and fails again when it is settled
    let w = World::new();
    w.connect_as("a1", "app", "111", "222").await;
    w.deps.store.fail_commits(2);
    // THEN the message is looked for, not found, and the client gets `internal`: nothing
    // was stored, so its retry stores it once
    let out = w
        .frame("a1", r#"{"chat_type":0,"chat_content":"hello"}"#)
        .await;
    assert!(out.is_err());
    assert_eq!(w.deps.store.message_count(), 0);
    assert_eq!(w.last_to("a1")["error"], "internal");
    w.frame("a1", r#"{"chat_type":0,"chat_content":"hello"}"#)
        .await
        .unwrap();
    assert_eq!(w.deps.store.message_count(), 1);
}

#[tokio::test]
async fn upload_tickets_over_the_users_limit_are_refused_on_every_connection() {
    // GIVEN at most 2 tickets a minute per user; the user on two connections
    let mut w = World::new();
    w.deps.config.max_uploads_per_minute = 2;
    w.connect_user("a", "app", "111").await;
    w.connect_user("a2", "app", "111").await;
    let t = (now() / 60_000 + 1) * 60_000;
    for (i, cid) in ["a", "a2"].iter().enumerate() {
        let out = w
            .frame_at(cid, &ticket(&format!("r{i}"), 1, "image/png", 10), t)
            .await;
        assert_eq!(out.unwrap(), FrameOutcome::Ticketed);
    }
    w.deps.notifier.clear();
    // WHEN a third ticket is asked for in the same minute, on either connection
    let out = w
        .frame_at("a", &ticket("r2", 1, "image/png", 10), t + 59_000)
        .await;
    // THEN it is refused by name and nothing is signed
    assert_eq!(out.unwrap(), FrameOutcome::Rejected("upload_rate_limited"));
    let f = w.last_to("a");
    assert_eq!(f["error"], "upload_rate_limited");
    assert!(
        f["msg"]
            .as_str()
            .unwrap()
            .contains("2 upload tickets a minute"),
        "{f}"
    );
    assert!(f.get("key").is_none() && f.get("post").is_none(), "{f}");
    // AND the next minute gives tickets again; other users were never counted
    let out = w
        .frame_at("a2", &ticket("r3", 1, "image/png", 10), t + 60_000)
        .await;
    assert_eq!(out.unwrap(), FrameOutcome::Ticketed);
    w.connect_user("b", "app", "222").await;
    let out = w
        .frame_at("b", &ticket("r4", 1, "image/png", 10), t + 59_000)
        .await;
    assert_eq!(out.unwrap(), FrameOutcome::Ticketed);
}

#[tokio::test]
async fn recalls_over_the_users_limit_are_refused_even_of_an_already_recalled_message() {
    // GIVEN at most 2 recalls a minute per user, and a message A sent to B
    let mut w = World::new();
    w.deps.config.max_recalls_per_minute = 2;
    w.connect_user("a", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    let t = (now() / 60_000 + 1) * 60_000;
    w.frame_at("a", &send_to("222", "k1", "oops"), t)
        .await
        .unwrap();
    let id = w.last_to("a")["message"]["id"].as_str().unwrap().to_owned();
    let recall = serde_json::json!({"action":"recall","to":"222","id":id}).to_string();
    // WHEN A recalls it, then recalls it again (each posted to both users)
    assert_eq!(
        w.frame_at("a", &recall, t + 1).await.unwrap(),
        FrameOutcome::Recalled
    );
    assert_eq!(
        w.frame_at("a", &recall, t + 2).await.unwrap(),
        FrameOutcome::Recalled
    );
    w.deps.notifier.clear();
    // THEN a third recall in the minute is refused by name and posted to nobody else
    let out = w.frame_at("a", &recall, t + 3).await.unwrap();
    assert_eq!(out, FrameOutcome::Rejected("recall_rate_limited"));
    assert_eq!(w.last_to("a")["error"], "recall_rate_limited");
    assert!(w.deps.notifier.frames_to("b").is_empty());
    // AND the next minute it may recall again
    let out = w.frame_at("a", &recall, t + 60_000).await.unwrap();
    assert_eq!(out, FrameOutcome::Recalled);
}

#[tokio::test]
async fn a_frame_after_the_connections_token_expired_is_refused_and_the_connection_closed() {
    // GIVEN a connection opened with a token that expires in 60 s
    let w = World::new();
    let exp_s = now() / 1000 + 60;
    let t = token("111", "app", exp_s);
    let req = ConnectRequest {
        connection_id: "a",
        userphone: Some("111"),
        friendphone: None,
        app_sid: Some("app"),
        token: Some(&t),
        now_ms: now(),
    };
    assert_eq!(w.handshake(&req).await, ConnectOutcome::Accepted);
    w.connect_user("b", "app", "222").await;
    // WHEN it sends before the expiry THEN the send is stored
    let out = w
        .frame_at("a", &send_to("222", "k1", "in time"), exp_s * 1000 - 1)
        .await;
    assert!(matches!(out.unwrap(), FrameOutcome::Sent { .. }));
    assert!(w.deps.notifier.closed.lock().unwrap().is_empty());
    w.deps.notifier.clear();
    // WHEN it sends at the expiry
    let out = w
        .frame_at("a", &send_to("222", "k2", "too late"), exp_s * 1000)
        .await;
    // THEN it is refused by name, the connection is closed, nothing is stored or told
    assert_eq!(out.unwrap(), FrameOutcome::Rejected("token_expired"));
    let f = w.last_to("a");
    assert_eq!(
        (f["error"].as_str(), f["client_msg_id"].as_str()),
        (Some("token_expired"), Some("k2"))
    );
    assert_eq!(*w.deps.notifier.closed.lock().unwrap(), ["a"]);
    assert_eq!(w.deps.store.message_count(), 1);
    assert!(w.deps.notifier.frames_to("b").is_empty());
}

#[tokio::test]
async fn a_post_that_fails_for_a_moment_is_tried_again_and_the_message_arrives() {
    // GIVEN B on a user connection and on the seed's conversation connection, each of whose
    // next post fails (a 500, not a 410)
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    w.connect_as("b-c", "app", "222", "111").await;
    for cid in ["b", "b-c"] {
        w.deps
            .notifier
            .failing_next
            .lock()
            .unwrap()
            .insert(cid.into(), 1);
    }
    // WHEN A sends
    let out = w.frame("a", &send_to("222", "k1", "hello")).await.unwrap();
    // THEN both of B's connections still get it, on the second try, and it counts delivered
    assert!(
        matches!(
            out,
            FrameOutcome::Sent {
                delivered: 3,
                gone: 0,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.last_to("b")["message"]["content"], "hello");
    assert_eq!(w.last_to("b-c")["data"][0]["content"], "hello");
    let attempts = w.deps.notifier.attempts.lock().unwrap().clone();
    assert_eq!(attempts.iter().filter(|c| *c == "b").count(), 2);
    // AND a connection that keeps failing is tried a bounded number of times, then left
    w.deps.notifier.failing.lock().unwrap().insert("b".into());
    w.deps.notifier.attempts.lock().unwrap().clear();
    let out = w.frame("a", &send_to("222", "k2", "again")).await.unwrap();
    assert!(
        matches!(
            out,
            FrameOutcome::Sent {
                delivered: 2,
                gone: 1,
                ..
            }
        ),
        "{out:?}"
    );
    let attempts = w.deps.notifier.attempts.lock().unwrap().clone();
    let tries = attempts.iter().filter(|c| *c == "b").count();
    assert_eq!(tries, 1 + crate::flows::fanout::POST_RETRIES);
}

#[tokio::test]
async fn every_message_carries_the_conversations_sequence_number_in_every_frame() {
    // GIVEN A and B, B also on the seed's conversation connection
    let w = World::new();
    w.connect_user("a", "app", "111").await;
    w.connect_user("b", "app", "222").await;
    w.connect_as("b-c", "app", "222", "111").await;
    // WHEN they send in turn, and A recalls the second message
    for (cid, to, k) in [("a", "222", "k1"), ("b", "111", "k2"), ("a", "222", "k3")] {
        w.frame(cid, &send_to(to, k, k)).await.unwrap();
    }
    assert_eq!(
        w.last_to("b")["message"]["seq"],
        3,
        "both users count the same"
    );
    assert_eq!(w.last_to("a")["message"]["seq"], 3);
    let second = w
        .deps
        .store
        .state
        .lock()
        .unwrap()
        .messages
        .values()
        .next()
        .unwrap()
        .values()
        .nth(1)
        .unwrap()
        .id
        .clone();
    let recall = serde_json::json!({"action":"recall","to":"111","id":second}).to_string();
    assert_eq!(w.frame("b", &recall).await.unwrap(), FrameOutcome::Recalled);
    // THEN every row carries its number, the recalled one too, and the next send goes on
    w.frame("a", r#"{"action":"sync","to":"222"}"#)
        .await
        .unwrap();
    let seqs: Vec<u64> = w.last_to("a")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    w.frame("b", &send_to("111", "k4", "k4")).await.unwrap();
    assert_eq!(w.last_to("a")["message"]["seq"], 4);
    assert_eq!(
        w.last_to("b-c")["data"].as_array().unwrap().last().unwrap()["seq"],
        4
    );
}

/// A checker for the flows' tests: texts holding `risky` are denied (porn), `review` doubtful
/// (other), `down` get no answer; a sender without an openid gets none either. Counts checks.
#[derive(Default)]
struct WordChecker {
    checks: std::sync::atomic::AtomicUsize,
}

impl crate::ports::TextModerator for WordChecker {
    fn check<'a>(
        &'a self,
        text: crate::ports::Authored<'a>,
    ) -> futures::future::BoxFuture<
        'a,
        std::result::Result<
            crate::domain::moderation::Decision,
            crate::domain::moderation::Undecided,
        >,
    > {
        use crate::domain::moderation::{Decision, Undecided};
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            match text.text {
                _ if text.openid.is_none() => Err(Undecided::NoOpenid),
                t if t.contains("risky") => Ok(Decision::Deny { label: 20002 }),
                t if t.contains("review") => Ok(Decision::Review { label: 21000 }),
                t if t.contains("down") => Err(Undecided::Unavailable),
                _ => Ok(Decision::Allow),
            }
        })
    }
}

/// A world whose texts are checked by [`WordChecker`] under `policy`; users 111 and 222 of
/// `app` logged in through WeChat (their openids are on their records), 333 did not.
async fn checked_world(
    policy: crate::domain::moderation::Policy,
) -> (World, std::sync::Arc<WordChecker>) {
    use crate::ports::IdentityStore;
    let mut w = World::new();
    w.deps.config.moderation = crate::config::Checker::WeChat;
    let checker = std::sync::Arc::new(WordChecker::default());
    w.deps.moderation = crate::flows::moderation::Moderation {
        checker: Some(checker.clone()),
        media: None,
        policy,
    };
    for (openid, user) in [("o-111", "111"), ("o-222", "222")] {
        w.deps.store.bind("app", openid, user).await.unwrap();
    }
    (w, checker)
}

fn stored_in(w: &World, a: &str, b: &str) -> Vec<crate::domain::message::Message> {
    let page =
        futures::executor::block_on(w.deps.store.latest(&Conversation::new("app", a, b), 50));
    page.unwrap().messages
}

#[tokio::test]
async fn a_risky_text_is_refused_stores_nothing_and_its_id_may_carry_an_edit() {
    use crate::domain::moderation::Policy;
    // GIVEN Ann (user connection) and Bob, checked
    let (w, checker) = checked_world(Policy::default()).await;
    w.connect_user("a", "app", "111").await;
    w.connect_as("b", "app", "222", "111").await;
    // WHEN Ann sends a risky text
    let out = w
        .frame("a", &send_to("222", "k", "so risky"))
        .await
        .unwrap();
    // THEN she is told content_blocked with the label's name and her id
    assert_eq!(out, FrameOutcome::Rejected("content_blocked"));
    let f = w.last_to("a");
    assert_eq!(
        (
            f["error"].as_str(),
            f["label"].as_str(),
            f["client_msg_id"].as_str()
        ),
        (Some("content_blocked"), Some("porn"), Some("k")),
        "{f}"
    );
    // AND nothing was stored or told
    assert_eq!(w.deps.store.message_count(), 0);
    assert!(w.deps.store.entry("app", "222", "111").is_none());
    assert!(w.deps.notifier.frames_to("b").is_empty());
    // WHEN she edits it and sends it with the same id
    let out = w.frame("a", &send_to("222", "k", "so nice")).await.unwrap();
    // THEN it is stored once, clear, and Bob sees it
    assert!(
        matches!(
            out,
            FrameOutcome::Sent {
                duplicate: false,
                ..
            }
        ),
        "{out:?}"
    );
    let stored = stored_in(&w, "111", "222");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].content, "so nice");
    assert_eq!(stored[0].screening, Default::default());
    assert_eq!(w.last_to("b")["data"][0]["content"], "so nice");
    assert_eq!(checker.checks.load(std::sync::atomic::Ordering::SeqCst), 2);
    // AND media sends are not text-checked (issue 21 checks images)
    w.frame(
        "a",
        &serde_json::json!({"action":"send","to":"222","client_msg_id":"img","chat_type":1,
            "chat_content":"https://img.example/risky.png"})
        .to_string(),
    )
    .await
    .unwrap();
    assert_eq!(checker.checks.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn review_unavailable_and_openid_less_texts_follow_the_policy() {
    use crate::domain::moderation::{OnReview, OnUnavailable, Policy, Screening, WithoutOpenid};
    // GIVEN the default policy: review and unavailable allowed, openid-less skipped
    let (w, _) = checked_world(Policy::default()).await;
    w.connect_user("a", "app", "111").await;
    w.connect_user("c", "app", "333").await;
    for (cmid, text) in [("r", "a review text"), ("d", "checker down")] {
        let out = w.frame("a", &send_to("222", cmid, text)).await.unwrap();
        assert!(matches!(out, FrameOutcome::Sent { .. }), "{out:?}");
    }
    w.frame("c", &send_to("222", "n", "no openid here"))
        .await
        .unwrap();
    // THEN each is stored with what moderation made of it; rows never show the label
    let screening = |a: &str| -> Vec<Screening> {
        stored_in(&w, a, "222")
            .into_iter()
            .map(|m| m.screening)
            .collect()
    };
    assert_eq!(
        screening("111"),
        [Screening::Review { label: 21000 }, Screening::Unchecked]
    );
    assert_eq!(screening("333"), [Screening::Unchecked]);
    let f = w.last_to("a");
    assert!(
        f["message"].get("label").is_none() && f["message"].get("blocked").is_none(),
        "{f}"
    );
    // GIVEN the strict policy
    let strict = Policy {
        review: OnReview::Block,
        unavailable: OnUnavailable::Block,
        without_openid: WithoutOpenid::Refuse,
        posterless_video: Default::default(),
    };
    let (w, _) = checked_world(strict).await;
    w.connect_user("a", "app", "111").await;
    w.connect_user("c", "app", "333").await;
    // THEN each is refused by its own code, and nothing is stored
    for (cid, text, code) in [
        ("a", "a review text", "content_blocked"),
        ("a", "checker down", "moderation_unavailable"),
        ("c", "no openid here", "login_required"),
    ] {
        let out = w.frame(cid, &send_to("222", "k", text)).await.unwrap();
        assert_eq!(out, FrameOutcome::Rejected(code));
        assert_eq!(w.last_to(cid)["client_msg_id"], "k");
    }
    assert_eq!(w.last_to("a")["error"], "moderation_unavailable");
    assert_eq!(w.deps.store.message_count(), 0);
}
