//! Shared set-up for tests against the real DynamoDB Local.
#![allow(dead_code)]

use devtools::chat::{create_chat_tables, ChatTables};
/// The request log lives in devtools (the benchmark counts with it too). Not every test
/// binary that includes this module counts round trips.
#[allow(unused_imports)]
pub use devtools::ddb_log::{client, round_trips, RequestLog};
use local_stack::dynamodb_local::DynamoDbLocal;
use shared::adapters::dynamo::DynamoStore;
use shared::adapters::s3::S3Media;
use shared::domain::media::OwnerKey;
use shared::flows::{Deps, Media};
use shared::ports::{ConnectionCloser, Notifier, PostError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// One DynamoDB Local per test binary, started on first use, killed when the binary exits.
pub fn dynamodb() -> &'static DynamoDbLocal {
    static LOCAL: OnceLock<DynamoDbLocal> = OnceLock::new();
    LOCAL.get_or_init(|| DynamoDbLocal::start().expect("DynamoDB Local starts"))
}

/// Fresh tables (named after the template's resources, with a unique prefix) and a store.
pub struct Fixture {
    pub store: DynamoStore,
    pub tables: ChatTables,
    pub log: RequestLog,
    pub client: aws_sdk_dynamodb::Client,
}

pub async fn fixture() -> Fixture {
    fixture_on(&dynamodb().endpoint()).await
}

pub async fn fixture_on(endpoint: &str) -> Fixture {
    fixture_logged(endpoint, RequestLog::default()).await
}

/// A fixture whose client records into `log` (e.g. [`RequestLog::with_capacity`]).
pub async fn fixture_with_log(log: RequestLog) -> Fixture {
    fixture_logged(&dynamodb().endpoint(), log).await
}

async fn fixture_logged(endpoint: &str, log: RequestLog) -> Fixture {
    static N: AtomicUsize = AtomicUsize::new(0);
    let client = client(endpoint, &log);
    let prefix = format!("t{}_", N.fetch_add(1, Ordering::SeqCst));
    let tables = create_chat_tables(&client, &prefix)
        .await
        .expect("tables from template.yaml");
    log.take();
    let store = DynamoStore::new(client.clone(), &tables.messages, &tables.connections);
    Fixture {
        store,
        tables,
        log,
        client,
    }
}

/// The `$default` function's dependencies on a fixture's tables: the real DynamoDB adapter,
/// `notifier`, and the real S3 adapter aimed at `s3` (an endpoint nothing listens on for tests
/// that send no media).
pub fn frame_deps<N>(f: &Fixture, notifier: N) -> Deps<DynamoStore, N, Media<S3Media>> {
    frame_deps_with_s3(f, notifier, "http://127.0.0.1:9", "unused")
}

pub fn frame_deps_with_s3<N>(
    f: &Fixture,
    notifier: N,
    s3_endpoint: &str,
    bucket: &str,
) -> Deps<DynamoStore, N, Media<S3Media>> {
    Deps {
        store: f.store.clone(),
        notifier,
        media: Media {
            objects: s3_media(s3_endpoint, bucket),
            owner_key: OwnerKey::from_secret(b"tests-secret"),
        },
        config: config(&f.tables),
        records: Default::default(),
        moderation: Default::default(),
    }
}

/// The S3 adapter for a local S3 at `endpoint` (path style, the local stack's credentials).
pub fn s3_media(endpoint: &str, bucket: &str) -> S3Media {
    S3Media::new(&local_stack::clients::sdk_config(endpoint), bucket, true)
}

/// Records posts; ids in `gone` answer 410.
#[derive(Default)]
pub struct RecordingNotifier {
    pub posts: Mutex<Vec<(String, serde_json::Value)>>,
    pub gone: Mutex<HashSet<String>>,
    pub closed: Mutex<Vec<String>>,
}

impl RecordingNotifier {
    pub fn to(&self, id: &str) -> Vec<serde_json::Value> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == id)
            .map(|(_, f)| f.clone())
            .collect()
    }
    pub fn count(&self) -> usize {
        self.posts.lock().unwrap().len()
    }
}

impl ConnectionCloser for RecordingNotifier {
    async fn close(&self, id: &str) -> Result<(), PostError> {
        self.closed.lock().unwrap().push(id.to_owned());
        Ok(())
    }
}

impl Notifier for RecordingNotifier {
    async fn post(&self, id: &str, frame: &str) -> Result<(), PostError> {
        if self.gone.lock().unwrap().contains(id) {
            return Err(PostError::Gone);
        }
        let v = serde_json::from_str(frame).expect("frames are JSON");
        self.posts.lock().unwrap().push((id.to_owned(), v));
        Ok(())
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn config(tables: &ChatTables) -> shared::Config {
    let (m, c) = (tables.messages.clone(), tables.connections.clone());
    shared::Config::from_lookup(move |k| match k {
        "MESSAGES_TABLE" => Some(m.clone()),
        "CONNECTIONS_TABLE" => Some(c.clone()),
        _ => None,
    })
    .unwrap()
}
