//! The chat on the general local stack (`local-stack`, which knows it only through
//! template.yaml): what the chat's functions get from the stack instead of the template, and
//! the chat's two tables.

use local_stack::app::{self, Supplied};
use local_stack::stack::{Stack, StackOptions};
use local_stack::tables::create_tables;
use local_stack::template::Template;
use local_stack::DevError;
use std::collections::{BTreeMap, HashMap};

/// What the stack supplies instead of resolving the template: `JWT_SECRET_ARN`,
/// `MEDIA_KEY_SECRET_ARN`, `WECHAT_APPS_SECRET_ARN` and `MODERATION_WEBHOOK_SECRET_ARN` name
/// Secrets Manager secrets (`!Ref JwtSecret`, …), which the stack does not emulate, so they are
/// empty and the functions read the secrets inline from `JWT_SECRET`, `MEDIA_KEY_SECRET`,
/// `WECHAT_APPS` and `MODERATION_WEBHOOK_SECRET` (`shared::config`).
pub fn supplied() -> Supplied {
    Supplied::from([
        ("JWT_SECRET_ARN".to_string(), String::new()),
        ("MEDIA_KEY_SECRET_ARN".to_string(), String::new()),
        ("WECHAT_APPS_SECRET_ARN".to_string(), String::new()),
        ("MODERATION_WEBHOOK_SECRET_ARN".to_string(), String::new()),
    ])
}

/// The key local runs sign moderation webhook requests with (`MODERATION_WEBHOOK_SECRET`).
pub const LOCAL_WEBHOOK_KEY: &str = "local-moderation-webhook-key";

/// Checks texts with the operator's webhook at `url` (`Moderation=webhook`), signing with
/// [`LOCAL_WEBHOOK_KEY`]. The URL goes in as the function's variable: the template's
/// `ModerationWebhookUrl` takes `https://` only, and a local fake listens on http.
pub fn use_webhook(opts: &mut StackOptions, url: &str) {
    opts.parameters
        .insert("Moderation".into(), "webhook".into());
    opts.env
        .insert("MODERATION_WEBHOOK_URL".into(), url.to_owned());
    opts.env.insert(
        "MODERATION_WEBHOOK_SECRET".into(),
        LOCAL_WEBHOOK_KEY.to_owned(),
    );
}

/// The demo mini-program of local runs: its app_sid (the tokens' `app`), appid and secret
/// (known to the fake WeChat API that `make dev` and the tests start).
pub const DEMO_APP_SID: &str = "wxdemo";
pub const DEMO_APPID: &str = "wx00000000000demo";
pub const DEMO_APP_SECRET: &str = "demo-app-secret-not-a-real-one";

/// The demo app's message push Token and EncodingAESKey (the secure mode), as the admin
/// console would hold them.
pub const DEMO_PUSH_TOKEN: &str = "demoPushToken42";
pub const DEMO_PUSH_AES_KEY: &str = "DemoEncodingAesKey0123456789abcdefghijklmno";

/// The WeChat apps JSON (`WECHAT_APPS`, the `WeChatApps` secret's shape) of the demo app.
pub fn demo_apps() -> String {
    serde_json::json!({ DEMO_APP_SID: {
        "appid": DEMO_APPID, "secret": DEMO_APP_SECRET,
        "push_token": DEMO_PUSH_TOKEN, "push_aes_key": DEMO_PUSH_AES_KEY,
    }})
    .to_string()
}

/// The notice template `make dev` configures (`NoticeTemplateId`), unless `NOTICE_TEMPLATE_ID`
/// names another.
pub const DEMO_NOTICE_TEMPLATE: &str = "demo-notice-template";

/// The stack's message push URL of `app_sid` (`{HttpApiUrl}/wechat/push/{app_sid}`), which
/// the admin console would hold.
pub fn push_url(stack: &Stack, app_sid: &str) -> String {
    format!(
        "{}/wechat/push/{app_sid}",
        stack.http_url.as_deref().unwrap_or_default()
    )
}

/// Has `fake` push the demo app's events (media check verdicts) to `stack`, in the secure
/// mode, as WeChat does once the push URL is saved in the admin console.
pub fn push_demo_app_to(fake: &crate::fake_wechat::FakeWeChat, stack: &Stack) {
    fake.push_to(
        DEMO_APPID,
        &push_url(stack, DEMO_APP_SID),
        DEMO_PUSH_TOKEN,
        Some(DEMO_PUSH_AES_KEY),
    );
}

/// Points every function at the WeChat API at `base` (the fake's, or `WECHAT_API_BASE`) with
/// `apps` (`WECHAT_APPS` JSON).
pub fn use_wechat(opts: &mut StackOptions, base: &str, apps: &str) {
    opts.env.insert("WECHAT_API_BASE".into(), base.to_owned());
    opts.env.insert("WECHAT_APPS".into(), apps.to_owned());
}

/// The media owner key of a stack made with [`stack_options`] (tests derive owner segments
/// with it; `make dev` replaces it with a random one).
pub const LOCAL_MEDIA_KEY: &str = "local-media-owner-key";

/// The stack's options for the chat, signing tokens with `jwt_secret`.
pub fn stack_options(jwt_secret: &str) -> StackOptions {
    StackOptions {
        supplied: supplied(),
        env: BTreeMap::from([
            ("JWT_SECRET".to_string(), jwt_secret.to_owned()),
            ("MEDIA_KEY_SECRET".to_string(), LOCAL_MEDIA_KEY.to_owned()),
        ]),
        ..StackOptions::default()
    }
}

/// Names of the chat's two tables.
#[derive(Debug, Clone)]
pub struct ChatTables {
    pub messages: String,
    pub connections: String,
}

impl ChatTables {
    /// From a logical id → name map (as [`Stack::tables`] or `create_tables` give it).
    pub fn of(names: &BTreeMap<String, String>) -> Result<Self, DevError> {
        let name = |id: &str| {
            names
                .get(id)
                .cloned()
                .ok_or_else(|| DevError::Template(format!("no AWS::DynamoDB::Table {id}")))
        };
        Ok(ChatTables {
            messages: name("MessagesTable")?,
            connections: name("ConnectionsTable")?,
        })
    }
}

/// The chat tables of a running stack.
pub fn tables(stack: &Stack) -> ChatTables {
    ChatTables::of(&stack.tables).expect("the template declares both chat tables")
}

/// Creates every table of the project's template, named `<prefix><name>`.
pub async fn create_chat_tables(
    client: &aws_sdk_dynamodb::Client,
    prefix: &str,
) -> Result<ChatTables, DevError> {
    let app = app::read(Template::project()?, &HashMap::new(), &supplied())?;
    ChatTables::of(&create_tables(client, &app.tables, prefix).await?)
}

/// End-to-end tests run the function binaries that `cargo build --workspace --bins` left in
/// `functions_dir`; after a change to their sources without a build they would test old code
/// and pass or fail for the wrong reason. Cargo's dep-info (`<bin>.d`) lists every source a
/// binary was built from: none may be newer than the binary.
pub fn assert_fresh_binaries(dir: &std::path::Path, bins: &[&str]) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified());
    for bin in bins {
        let exe = dir.join(bin);
        let built = modified(&exe).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run cargo build --workspace --bins",
                exe.display()
            )
        });
        let deps = std::fs::read_to_string(dir.join(format!("{bin}.d"))).unwrap_or_else(|_| {
            panic!("no dep-info for {bin}: run cargo build --workspace --bins")
        });
        let sources = deps
            .lines()
            .next()
            .and_then(|l| l.split_once(": "))
            .map(|(_, s)| s)
            .unwrap_or_default();
        for src in sources.split_whitespace() {
            let src = std::path::Path::new(src);
            if modified(src).is_ok_and(|m| m > built) {
                panic!(
                    "{bin} is older than {}: run cargo build --workspace --bins",
                    src.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
