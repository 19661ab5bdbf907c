//! Property tests: hostile bytes and hostile JSON through the frame parser and the whole frame
//! flow. Whatever a client sends, nothing panics, a refused frame gets exactly one error frame,
//! and nothing is written.

use crate::domain::connection::ConnectionRecord;
use crate::domain::media::OwnerKey;
use crate::domain::message::Profile;
use crate::fakes::{config, FakeMedia, FakeNotifier, FakeStore};
use crate::flows::{on_frame, Deps, FrameOutcome, Media};
use crate::ports::ConnectionRegister;
use crate::wire::request::parse_request;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Field names the parser looks at, plus noise.
const FIELDS: &[&str] = &[
    "action",
    "chat_type",
    "chat_content",
    "client_msg_id",
    "req_id",
    "limit",
    "before",
    "content_type",
    "size",
    "width",
    "height",
    "poster",
    "userInfo",
    "friendInfo",
    "x",
];
const ACTIONS: &[&str] = &[
    "sync", "history", "send", "upload", "ping", "", "SEND", "nope",
];

fn hostile_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(ACTIONS).prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
        // keys of the right shape and a long string
        Just(Value::from(
            "u/i/0123456789abcdef0123456789abcdef/01HZ0000000000000000000000.jpg"
        )),
        (0usize..20_000).prop_map(|n| Value::from("字".repeat(n))),
        Just(Value::from("01HZ0000000000000000000000")),
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    hostile_scalar().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn hostile_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        // objects over the fields the parser reads
        prop::collection::vec((prop::sample::select(FIELDS), hostile_value()), 0..8).prop_map(
            |pairs| {
                let m: Map<String, Value> =
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                Value::Object(m).to_string()
            }
        ),
        // any JSON at all
        hostile_value().prop_map(|v| v.to_string()),
        // any text
        "\\PC{0,200}",
        // truncated JSON
        prop::collection::vec(prop::sample::select(FIELDS), 1..4)
            .prop_map(|ks| format!("{{\"{}\":", ks.join("\":1,\""))),
    ]
}

fn world() -> Deps<FakeStore, FakeNotifier, Media<FakeMedia>> {
    Deps {
        store: FakeStore::default(),
        notifier: FakeNotifier::default(),
        media: Media {
            objects: FakeMedia::default(),
            owner_key: OwnerKey::from_secret(b"props"),
        },
        config: config(),
        records: Default::default(),
        moderation: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_request(&text, &crate::config::Limits::default());
    }

    #[test]
    fn a_refused_frame_gets_one_error_frame_and_writes_nothing(frame in hostile_frame()) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            // GIVEN a registered connection
            let w = world();
            let now = 1_900_000_000_000;
            let me = ConnectionRecord {
                connection_id: "c1".into(),
                app_sid: "app".into(),
                user: "111".into(),
                friend: Some("222".into()),
                profile: Profile::default(),
                connected_at_ms: now,
                expires_at: now / 1000 + 600,
                registered: true,
                sends: Vec::new(),
                token_expires_at: None,
                openid: None,
            };
            w.store.register(&me).await.unwrap();
            w.store.enroll(&me).await.unwrap();
            // WHEN a hostile frame arrives
            let out = on_frame(&w, "c1", &frame, now).await;
            // THEN it never fails internally; a refusal is one error frame and no write
            let out = out.expect("client input never causes an internal error");
            let posted = w.notifier.frames_to("c1");
            match out {
                FrameOutcome::Rejected(code) => {
                    prop_assert_eq!(posted.len(), 1, "{}", frame);
                    prop_assert_eq!(posted[0]["type"].as_str(), Some("error"));
                    prop_assert_eq!(posted[0]["error"].as_str(), Some(code));
                    prop_assert_eq!(w.store.message_count(), 0);
                    prop_assert!(w.media.objects.copies.lock().unwrap().is_empty());
                }
                FrameOutcome::Sent { .. } => prop_assert_eq!(w.store.message_count(), 1),
                // Valid non-sends answer at most once (typing answers nothing) and store nothing.
                _ => {
                    prop_assert!(posted.len() <= 1, "{}", frame);
                    prop_assert_eq!(w.store.message_count(), 0);
                }
            }
            Ok(())
        })?;
    }
}
