//! The whole chat on loopback: `local-stack [--port N] [--http-port N] [--parameter-overrides
//! "Name=value …"]` (the HTTP API on `--port` + 1 unless `--http-port` says; 0 picks a free one)
//! (`make dev PARAMS="…"`). Prints the wss URL, the HTTP API URL (`POST /login`, against a
//! fake WeChat API unless `WECHAT_API_BASE` is set), two demo users' tokens and how to chat
//! from a terminal; runs until Ctrl-C / SIGTERM. An override the template does not declare, or one
//! outside its parameter's constraints, stops it with a message naming it.
use devtools::chat;
use devtools::fake_wechat::FakeWeChat;
use local_stack::runtime::Logs;
use local_stack::stack::{Stack, StackOptions};
use shared::domain::auth::{mint, Claims};
use std::collections::HashMap;

const USAGE: &str =
    "usage: local-stack [--port N] [--http-port N] [--parameter-overrides \"Name=value ...\"]";

/// `Name=value` pairs separated by spaces, as `sam deploy --parameter-overrides` takes them.
fn overrides(text: &str) -> Result<HashMap<String, String>, String> {
    text.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("parameter override {pair:?} is not Name=value")),
        })
        .collect()
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("local-stack: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 3001;
    let mut http_port = None;
    let mut parameters = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--port", Some(p)) => port = p.parse()?,
            ("--http-port", Some(p)) => http_port = Some(p.parse()?),
            ("--parameter-overrides", Some(p)) => parameters.extend(overrides(&p)?),
            _ => return Err(USAGE.into()),
        }
    }
    // Content security runs locally as WeChat review needs it on AWS: against the fake WeChat
    // API (PARAMS="Moderation=none" turns it off).
    parameters
        .entry("Moderation".to_owned())
        .or_insert_with(|| "wechat".to_owned());
    // Offline notices run locally too: a demo template, or NOTICE_TEMPLATE_ID (and
    // NOTICE_TEMPLATE_FIELDS) from the environment (PARAMS wins over both).
    for (param, var, default) in [
        (
            "NoticeTemplateId",
            "NOTICE_TEMPLATE_ID",
            Some(devtools::chat::DEMO_NOTICE_TEMPLATE),
        ),
        ("NoticeTemplateFields", "NOTICE_TEMPLATE_FIELDS", None),
    ] {
        if let Some(v) = std::env::var(var).ok().or(default.map(str::to_owned)) {
            parameters.entry(param.to_owned()).or_insert(v);
        }
    }
    let secret =
        std::env::var("JWT_SECRET").unwrap_or_else(|_| format!("dev-secret-{}", ulid::Ulid::new()));
    if secret.len() < 32 {
        // The functions refuse a shorter key; say so now rather than with every handshake's 500.
        return Err("JWT_SECRET must be at least 32 bytes".into());
    }
    let mut opts = StackOptions {
        port,
        // The HTTP API (POST /login) beside the WebSocket port, so its URL stays put too
        // (`--http-port 0` picks a free one).
        http_port: match http_port {
            Some(p) => p,
            None if port == 0 => 0,
            None => port.checked_add(1).ok_or("--port must be below 65535")?,
        },
        parameters: parameters.clone(),
        logs: Logs::Print,
        ..devtools::chat::stack_options(&secret)
    };
    // A media owner key of its own per run, as the deployed stack creates one.
    let media_key = std::env::var("MEDIA_KEY_SECRET")
        .unwrap_or_else(|_| format!("dev-media-key-{}", ulid::Ulid::new()));
    opts.env.insert("MEDIA_KEY_SECRET".into(), media_key);
    // WeChat: the fake with the demo app, unless WECHAT_API_BASE names another endpoint
    // (then WECHAT_APPS, the WeChatApps secret's JSON, names its apps).
    let (fake, wechat_base) = match std::env::var("WECHAT_API_BASE") {
        Ok(base) if !base.is_empty() => (None, base),
        _ => {
            let fake = FakeWeChat::start(&[(chat::DEMO_APPID, chat::DEMO_APP_SECRET)]).await?;
            let base = fake.base.clone();
            (Some(fake), base)
        }
    };
    let apps = std::env::var("WECHAT_APPS").unwrap_or_else(|_| chat::demo_apps());
    chat::use_wechat(&mut opts, &wechat_base, &apps);
    // PARAMS="Moderation=webhook": the operator's webhook at MODERATION_WEBHOOK_URL (signed with
    // MODERATION_WEBHOOK_SECRET), else the fake one.
    let mut hook = None;
    if parameters.get("Moderation").map(String::as_str) == Some("webhook") {
        let url = match std::env::var("MODERATION_WEBHOOK_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                let key = std::env::var("MODERATION_WEBHOOK_SECRET")
                    .unwrap_or_else(|_| chat::LOCAL_WEBHOOK_KEY.to_owned());
                let fake = devtools::fake_webhook::FakeWebhook::start(key.as_bytes()).await?;
                let url = fake.url.clone();
                hook = Some(fake);
                url
            }
        };
        chat::use_webhook(&mut opts, &url);
        if let Ok(key) = std::env::var("MODERATION_WEBHOOK_SECRET") {
            opts.env.insert("MODERATION_WEBHOOK_SECRET".into(), key);
        }
    }
    let stack = Stack::start(opts).await?;
    let http = stack.http_url.clone().unwrap_or_default();
    // The fake pushes the demo app's media check verdicts to the stack's push URL.
    if let (Some(f), Err(_)) = (&fake, std::env::var("WECHAT_APPS")) {
        chat::push_demo_app_to(f, &stack);
    }
    let login = match &fake {
        Some(f) => format!(
            "Fake WeChat API: {base} (the demo app {sid}, appid {appid}; with Moderation=wechat it refuses texts holding \"{risky}\" and takes down images holding \"{marker}\" a second after they are sent)\n  \
             Log a demo user in through the fake WeChat API (wx.login and the phone button's codes, then POST /login):\n  \
             curl -s '{base}/fake/login_body?app_sid={sid}&appid={appid}&openid=o-demo-ann&phone=13800000001' | curl -s -H 'content-type: application/json' --data-binary @- {http}/login",
            base = f.base,
            sid = chat::DEMO_APP_SID,
            appid = chat::DEMO_APPID,
            risky = devtools::fake_wechat::RISKY_WORD,
            marker = String::from_utf8_lossy(devtools::fake_wechat::RISKY_IMAGE_MARKER),
        ),
        None => format!("WeChat API: {wechat_base} (WECHAT_API_BASE), apps from WECHAT_APPS"),
    };
    let login = match &hook {
        Some(h) => format!(
            "{login}\n  Fake moderation webhook: {url} (denies texts holding \"{deny}\", replaces \"{replace}\")",
            url = h.url,
            deny = devtools::fake_webhook::DENY_WORD,
            replace = devtools::fake_webhook::REPLACE_WORD,
        ),
        None => login,
    };
    let login = match parameters.get("NoticeTemplateId").filter(|t| !t.is_empty()) {
        Some(template) => format!(
            "{login}\n  Offline notices: template {template}; a user grants one with  {{\"action\":\"subscribe\",\"req_id\":\"s1\",\"template_id\":\"{template}\",\"result\":\"accept\"}}{seen}",
            seen = match &fake {
                Some(f) => format!(", and the notices sent are listed at {}/fake/notices", f.base),
                None => String::new(),
            }
        ),
        None => login,
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 24 * 3600;
    let token = |sub: &str, name: &str| {
        mint(
            secret.as_bytes(),
            &Claims {
                sub: sub.into(),
                app: "wxdemo".into(),
                exp,
                name: Some(name.into()),
                avatar: None,
            },
        )
    };
    let (a, b) = ("13800000001", "13800000002");
    let url = |me: &str, friend: &str, t: &str| {
        format!(
            "{}?userphone={me}&friendphone={friend}&app_sid=wxdemo&token={t}",
            stack.ws_url
        )
    };
    let (ta, tb) = (token(a, "Ann")?, token(b, "Bob")?);
    let url_a = url(a, b, &ta);
    let url_b = url(b, a, &tb);
    let user_url =
        |me: &str, t: &str| format!("{}?userphone={me}&app_sid=wxdemo&token={t}", stack.ws_url);
    let (user_a, user_b) = (user_url(a, &ta), user_url(b, &tb));
    let page = stack
        .ws_url
        .replace("ws://", "http://")
        .replace(&format!("/{}", stack.app.api.stage), "/");
    println!(
        r#"
Local chat is up (Ctrl-C stops everything).{params}
  WebSocket:   {ws}
  @connections {mgmt}
  DynamoDB     {ddb}
  S3           {s3} (path-style; buckets: {buckets})
HTTP API: {http}
  {login}
Two demo users in app wxdemo (tokens valid 24 h; JWT_SECRET={secret}):
  Ann, chatting with Bob (the seed's conversation connection): {url_a}
  Bob, chatting with Ann:                                      {url_b}
  Ann's user connection (all her conversations):               {user_a}
  Bob's user connection:                                       {user_b}
In a browser, the chat app (each link in a tab of its own; the paperclip sends an image or a video):
  Ann:  {page}#userphone={a}&name=Ann&app_sid=wxdemo&token={ta}
  Bob:  {page}#userphone={b}&name=Bob&app_sid=wxdemo&token={tb}
  then in Ann's window type Bob's account ({b}) into "New chat".
Or from two terminals:
  npx -y wscat -c '{url_a}'
  npx -y wscat -c '{url_b}'
then type  {{"action":"sync"}}  and  {{"action":"send","client_msg_id":"m1","chat_type":0,"chat_content":"hi"}}
On a user connection name the peer:  {{"action":"conversations"}}  {{"action":"send","to":"{b}","client_msg_id":"m1","chat_type":0,"chat_content":"hi"}}
  {{"action":"read","to":"{b}","id":"<message id>"}}  {{"action":"typing","to":"{b}"}}  {{"action":"recall","to":"{b}","id":"<id>"}}
Media from a terminal: {{"action":"upload","req_id":"r1","chat_type":1,"content_type":"image/png","size":<bytes>}}
  answers a ticket; upload with its POST form, e.g.  curl -F key=... (every post.fields entry) -F file=@photo.png <post.url>
  then  {{"action":"send","client_msg_id":"m2","chat_type":1,"chat_content":"<key>"}}
Mint more tokens: JWT_SECRET={secret} target/debug/mint-token <account> wxdemo [name]
"#,
        params = if parameters.is_empty() {
            String::new()
        } else {
            let mut p: Vec<String> = parameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
            p.sort();
            format!("\n  Parameters:  {}", p.join(" "))
        },
        ws = stack.ws_url,
        http = http,
        login = login,
        mgmt = stack.management_url,
        ddb = stack.dynamodb_endpoint(),
        s3 = stack.s3_endpoint().unwrap_or_default(),
        buckets = stack
            .app
            .buckets
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    println!("stopping");
    drop(stack);
    drop(fake);
    drop(hook);
    Ok(())
}
