//! The chat's template as the local stack reads it, and what the template means where the
//! local servers do not enforce it.

use super::*;
use local_stack::app::{CorsRule, S3Subscription, SamApp};
use std::time::Duration;

fn app() -> SamApp {
    app::read(Template::project().unwrap(), &HashMap::new(), &supplied()).unwrap()
}

#[test]
fn the_templates_routes_stage_and_selection_expression_are_read() {
    // GIVEN the project's template
    // WHEN it is read
    let a = app();
    // THEN the API is the one clients talk to
    assert_eq!(a.api.route_selection_expression, "$request.body.action");
    assert_eq!(a.api.stage, "prod");
    assert_eq!(a.api.routes["$connect"], "ConnectFunction");
    assert_eq!(a.api.routes["$default"], "DefaultFunction");
    assert_eq!(a.api.routes["$disconnect"], "DisconnectFunction");
}

#[test]
fn functions_get_binary_limits_and_resolved_environment() {
    // GIVEN the project's template
    let a = app();
    // THEN each function has its binary, limits and resolved variables
    let d = &a.functions["DefaultFunction"];
    assert_eq!(d.binary, "chat-default");
    assert_eq!(
        d.timeout,
        Duration::from_secs(20),
        "own Timeout overrides Globals"
    );
    assert_eq!(d.memory_mb, 256);
    assert_eq!(d.env["MESSAGES_TABLE"], "MessagesTable");
    assert_eq!(d.env["PAGE_SIZE_DEFAULT"], "20");
    assert_eq!(
        d.env["MANAGEMENT_ENDPOINT"],
        "https://local.execute-api.us-east-1.amazonaws.com/prod"
    );
    assert_eq!(
        d.env["MEDIA_BUCKET"],
        "chat-media-00000000-0000-4000-8000-000000000000"
    );
    let c = &a.functions["ConnectFunction"];
    // JWT_SECRET_ARN names the secret the stack creates, which the local stack supplies
    assert_eq!(c.env["JWT_SECRET_ARN"], "");
    assert!(!a.functions["DisconnectFunction"]
        .env
        .contains_key("JWT_SECRET_ARN"));
    // $default reads the media owner key, a secret of its own, and never the signing secret
    assert_eq!(d.env["MEDIA_KEY_SECRET_ARN"], "");
    assert!(!d.env.contains_key("JWT_SECRET_ARN"));
    assert!(!c.env.contains_key("MEDIA_KEY_SECRET_ARN"));
    let t = &a.functions["ThumbnailFunction"];
    assert_eq!((t.binary.as_str(), t.memory_mb), ("chat-thumbnail", 1024));
}

#[test]
fn the_media_bucket_has_its_name_cors_rules_and_the_thumbnail_subscription() {
    // GIVEN the project's template
    let a = app();
    // THEN the media bucket is named from the local stack id, with its CORS rule
    let b = &a.buckets[0];
    assert_eq!(a.buckets.len(), 1);
    assert_eq!(b.logical_id, "MediaBucket");
    assert_eq!(b.name, "chat-media-00000000-0000-4000-8000-000000000000");
    assert_eq!(
        b.cors,
        vec![CorsRule {
            allowed_methods: vec!["GET".into(), "HEAD".into(), "PUT".into(), "POST".into()],
            allowed_origins: vec!["*".into()],
            allowed_headers: vec!["*".into()],
            exposed_headers: vec!["ETag".into()],
            max_age_seconds: Some(3000),
        }]
    );
    // AND sent images (the send's copy) go to the thumbnail function
    assert_eq!(
        b.notifications,
        vec![S3Subscription {
            function: "ThumbnailFunction".into(),
            event_id: "ImageSent".into(),
            events: vec!["s3:ObjectCreated:*".into()],
            prefix: Some("m/i/".into()),
            suffix: None,
        }]
    );
    assert_eq!(a.bucket(&b.name), Some(b));
}

#[test]
fn cors_origins_come_from_a_comma_delimited_list_parameter() {
    // GIVEN two origins as the MediaCorsOrigins parameter
    let overrides = HashMap::from([(
        "MediaCorsOrigins".to_string(),
        "https://a.example,https://b.example".to_string(),
    )]);
    // WHEN the template is read
    let a = app::read(Template::project().unwrap(), &overrides, &supplied()).unwrap();
    // THEN the rule allows exactly those
    assert_eq!(
        a.buckets[0].cors[0].allowed_origins,
        vec!["https://a.example", "https://b.example"]
    );
}

#[test]
fn parameter_overrides_flow_into_conditions_and_values() {
    // GIVEN a stage and an existing secret as parameters
    let overrides = HashMap::from([
        ("StageName".to_string(), "dev".to_string()),
        ("JwtSecretArn".to_string(), "arn:x".to_string()),
    ]);
    // WHEN the template is read (only the stack's own secrets supplied: the signing secret
    // now exists, so it resolves)
    let supplied = Supplied::from([
        ("MEDIA_KEY_SECRET_ARN".to_string(), String::new()),
        ("WECHAT_APPS_SECRET_ARN".to_string(), String::new()),
    ]);
    let a = app::read(Template::project().unwrap(), &overrides, &supplied).unwrap();
    // THEN both are used
    assert_eq!(a.api.stage, "dev");
    assert_eq!(
        a.functions["ConnectFunction"].env["JWT_SECRET_ARN"],
        "arn:x"
    );
    assert_eq!(a.functions["LoginFunction"].env["JWT_SECRET_ARN"], "arn:x");
}

#[test]
fn the_http_api_serves_post_login_with_the_login_function() {
    // GIVEN the project's own template
    let a = app();
    // THEN it has one HTTP API on its $default stage with POST /login → LoginFunction
    let api = a.http_api.expect("an HTTP API");
    assert_eq!(api.stage, None);
    let (route, params) = api.route("POST", "/login").expect("POST /login");
    assert_eq!(route.function, "LoginFunction");
    assert!(params.is_empty());
    assert!(api.route("GET", "/login").is_none());
    // AND the login function reads the WeChat apps, never a media key
    let login = &a.functions["LoginFunction"];
    assert_eq!(login.binary, "chat-login");
    assert_eq!(login.env["WECHAT_APPS_SECRET_ARN"], "");
    assert_eq!(login.env["ACCOUNT_IDENTITY"], "phone");
    assert!(!login.env.contains_key("MEDIA_KEY_SECRET_ARN"));
    // AND $connect never holds the apps' secrets ($default does, for content security)
    assert!(!a.functions["ConnectFunction"]
        .env
        .contains_key("WECHAT_APPS_SECRET_ARN"));
    assert_eq!(a.functions["DefaultFunction"].env["MODERATION"], "none");
}

#[test]
fn the_templates_tables_are_read_with_keys_index_and_ttl() {
    // GIVEN the project's own template
    let specs = app().tables;
    // THEN both chat tables are there with the layout the adapters rely on
    let by_id = |id: &str| specs.iter().find(|s| s.logical_id == id).unwrap();
    let messages = by_id("MessagesTable");
    assert_eq!(
        messages.key_schema,
        vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
    );
    assert_eq!(
        messages.ttl_attribute.as_deref(),
        Some(shared::adapters::dynamo::MARKER_TTL_ATTRIBUTE),
        "idempotency markers expire"
    );
    let ix = &messages.indexes[0];
    assert_eq!(ix.name, shared::adapters::dynamo::BY_ACTIVITY_INDEX);
    assert_eq!(
        ix.key_schema,
        vec![
            ("inbox".into(), "HASH".into()),
            ("activity".into(), "RANGE".into())
        ]
    );
    let connections = by_id("ConnectionsTable");
    assert_eq!(connections.ttl_attribute.as_deref(), Some("expires_at"));
    assert!(
        connections.indexes.is_empty(),
        "nothing reads an index there"
    );
}

/// s3s-fs has no lifecycle rules, bucket policies or public-access settings, so the
/// template's meaning is checked here: abandoned uploads expire, sent media stay, the bucket
/// is private and TLS-only, and each function may touch only its own prefixes.
#[test]
fn the_media_bucket_expires_unsent_uploads_and_stays_private() {
    let doc = Template::project().unwrap().doc();
    let res = |id: &str| doc["Resources"][id]["Properties"].clone();
    let bucket = res("MediaBucket");
    // GIVEN the lifecycle rules THEN exactly the upload prefix expires, after a day
    let rules = bucket["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .unwrap();
    let expiring: Vec<_> = rules
        .iter()
        .filter(|r| r.get("ExpirationInDays").is_some())
        .collect();
    assert_eq!(expiring.len(), 1);
    assert_eq!(expiring[0]["Prefix"].as_str(), Some("u/"));
    assert_eq!(expiring[0]["ExpirationInDays"].as_u64(), Some(1));
    assert_eq!(expiring[0]["Status"].as_str(), Some("Enabled"));
    // AND every public access is blocked, objects are encrypted, plain HTTP is denied
    let block = &bucket["PublicAccessBlockConfiguration"];
    for k in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[k].as_bool(), Some(true), "{k}");
    }
    assert!(bucket["BucketEncryption"].is_mapping());
    let policy = serde_yaml::to_string(&res("MediaBucketPolicy")).unwrap();
    assert!(policy.contains("aws:SecureTransport") && policy.contains("Deny"));
    // AND the functions' S3 permissions name only their prefixes
    let s3_grants = |f: &str| -> Vec<String> {
        let p = &res(f)["Policies"][0]["Statement"];
        p.as_sequence()
            .unwrap()
            .iter()
            .filter(|s| serde_yaml::to_string(&s["Action"]).unwrap().contains("s3:"))
            .map(|s| serde_yaml::to_string(s).unwrap())
            .collect()
    };
    let grants = s3_grants("DefaultFunction");
    let default = grants.join("\n");
    assert!(!default.contains("s3:*"));
    // (deletes, for recalls, only of sent copies and thumbnails)
    let deletes: Vec<&String> = grants
        .iter()
        .filter(|g| g.contains("DeleteObject"))
        .collect();
    assert_eq!(deletes.len(), 1, "{default}");
    assert!(
        deletes[0].contains("/m/*") && deletes[0].contains("/t/*") && !deletes[0].contains("/u/")
    );
    assert!(default.contains("/u/*") && default.contains("/m/*") && default.contains("/t/*"));
    let thumb = s3_grants("ThumbnailFunction").join("\n");
    assert!(thumb.contains("/m/i/*") && thumb.contains("/t/*") && !thumb.contains("/u/"));
    for f in ["ConnectFunction", "DisconnectFunction"] {
        assert!(s3_grants(f).is_empty(), "{f} needs no S3");
    }
}
