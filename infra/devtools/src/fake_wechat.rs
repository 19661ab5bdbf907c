//! A fake WeChat API for the chat's local runs and tests (not part of the general local stack:
//! only the chat talks to WeChat). It answers the three calls the chat makes as WeChat
//! documents them, with WeChat's errcodes, on 127.0.0.1 only:
//!
//! - `GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code` →
//!   `{"openid","session_key","unionid"}` (as for an app bound to an Open Platform account); a
//!   code is valid once and for 5 minutes: unknown or expired 40029, used 40163; a wrong
//!   secret 40125, an unknown appid 40013.
//! - `POST /wxa/business/getuserphonenumber?access_token=T` `{"code"}` →
//!   `{"errcode":0,"phone_info":{"phoneNumber","purePhoneNumber","countryCode","watermark"}}`;
//!   an unknown token 40001, an expired one 42001; codes as above.
//! - `POST /cgi-bin/stable_token` `{"grant_type":"client_credential","appid","secret",
//!   "force_refresh"}` → `{"access_token","expires_in"}`: the same token until less than 5
//!   minutes are left (then a new one, the old one working until it expires);
//!   `force_refresh` makes a new one at once and ends the old one ("会导致上次获取的
//!   access_token 失效"), at most once every 30 s (45011) and 20 times a day (45009).
//!
//! - `POST /wxa/msg_sec_check?access_token=T` `{"version":2,"openid","scene","content"}` →
//!   `{"errcode":0,"result":{"suggest","label"},"detail":[…],"trace_id"}`: `risky` for a text
//!   containing a word of its risky list (default [`RISKY_WORD`], label 20002), `review` for
//!   its review list ([`REVIEW_WORD`], 21000), else `pass` (100); another version, a scene
//!   outside 1–4, no content or over 2,500 characters 40097, no openid 40003; tokens as above.
//!
//! - `POST /wxa/media_check_async?access_token=T` `{"media_url","media_type","version":2,
//!   "openid","scene"}` → `{"errcode":0,"trace_id"}`; then, as WeChat does, it downloads the
//!   URL (proving it can be fetched from outside the functions) and after a delay (1 s by
//!   default, knob `media_delay_ms`) pushes the verdict, a `wxa_media_check` event, to the
//!   app's push URL ([`FakeWeChat::push_to`]), signed with its push token, in the secure mode
//!   when it has an EncodingAESKey: `risky` (label 20002) for bytes holding
//!   [`RISKY_IMAGE_MARKER`], else `pass`. A media_type other than 1 or 2, another version, a
//!   scene outside 1–4 or no URL 40097, no openid 40003; tokens as above.
//!
//! - `POST /cgi-bin/message/subscribe/send?access_token=T` `{"touser","template_id","page",
//!   "data":{"thing1":{"value"},…},"miniprogram_state","lang"}` → `{"errcode":0}`; 43101 for an
//!   openid without a grant ([`FakeWeChat::refuse_notices`]); no touser 40003; no template
//!   40037; a value breaking its key type's rule (`thing` ≤ 20 characters, `phrase` ≤ 5,
//!   `name` ≤ 10, `character_string` ≤ 32 letters, digits and symbols, `time` a date-time,
//!   `date` a date), a state other than formal, trial, developer, or a data field of no known
//!   type 47003. Every call is recorded with its answer (`GET /fake/notices`).
//!
//! And, for the runs and tests (`/fake/…`): `POST /fake/login_code {"appid","openid"}` and
//! `POST /fake/phone_code {"appid","phone"}` mint codes (`{"code"}`), as `wx.login` and the
//! phone button would; `GET /fake/login_body?app_sid&appid&openid[&phone]` mints both and
//! answers a whole `POST /login` body (`make dev`'s demo `curl` pipes it to the login);
//! `GET /fake/calls` counts the calls per path; `GET /fake/media_checks` lists the media checks
//! (what was fetched, the verdict, the push's status); `POST /fake/push_to
//! {"appid","url","token","aes_key"?}` sets an app's push URL; `POST /fake/faults` sets
//! knobs: `errcode` with `errcode_times` (the next n calls answer that errcode, 1 by default),
//! `busy` (the next n calls answer −1), `rate_limited` (45011), `invalid_token` (the
//! next n calls that take a token answer 40001), `slow_ms` (every answer waits), and
//! `token_ttl_secs` (the lifetime of new tokens, 7200 by default), `media_delay_ms` (how long
//! a media verdict takes).

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A code's life (`wx.login` codes and phone codes alike).
const CODE_TTL_SECS: i64 = 300;
/// A token this close to its expiry is replaced by a normal `stable_token` call ("普通模式下
/// 平台会提前5分钟更新access_token").
const TOKEN_OVERLAP_SECS: i64 = 300;

#[derive(Default)]
struct Faults {
    /// The next `.1` calls answer errcode `.0` (any errcode: 40226, one WeChat may add, …).
    errcode: Option<(i64, u64)>,
    busy: u64,
    rate_limited: u64,
    invalid_token: u64,
    slow_ms: u64,
    token_ttl_secs: Option<i64>,
    /// How long a media check's verdict takes (ms); 1,000 when unset.
    media_delay_ms: Option<u64>,
}

/// Where an app's pushes go: the URL, its push token and its EncodingAESKey (secure mode).
#[derive(Clone)]
struct PushTarget {
    url: String,
    token: String,
    aes_key: Option<String>,
}

/// One media check, as the fake saw it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MediaCheck {
    pub trace_id: String,
    pub appid: String,
    pub openid: String,
    pub scene: u8,
    /// The URL WeChat was given (log audits look for its signature).
    pub media_url: String,
    /// The HTTP status of the fetch of `media_url` (none: not fetched yet, or no answer).
    pub fetched_status: Option<u16>,
    /// SHA-256 (hex) of what the fetch got.
    pub fetched_sha256: Option<String>,
    pub suggest: Option<String>,
    /// The status the push URL answered (none: not pushed yet, or no push URL).
    pub push_status: Option<u16>,
}

/// One `subscribe/send` call, as the fake saw it, and its answer.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SentNotice {
    pub appid: String,
    pub touser: String,
    pub template_id: String,
    pub page: String,
    /// `data`, as sent: key → `{"value": …}`.
    pub data: Value,
    pub miniprogram_state: String,
    pub lang: String,
    pub errcode: i64,
    /// When it came (epoch ms).
    pub at_ms: i64,
}

/// A push the fake made: the URL with its query, and the body.
#[derive(Debug, Clone)]
pub struct SentPush {
    pub url: String,
    pub body: String,
}

struct Code {
    appid: String,
    /// The openid (login codes) or the phone number (phone codes).
    subject: String,
    issued_s: i64,
    used: bool,
}

struct Token {
    appid: String,
    expires_s: i64,
}

#[derive(Default)]
struct AppState {
    /// appid → secret.
    apps: HashMap<String, String>,
    login_codes: HashMap<String, Code>,
    phone_codes: HashMap<String, Code>,
    tokens: HashMap<String, Token>,
    /// appid → its newest token.
    newest: HashMap<String, String>,
    /// appid → the times of its forced refreshes.
    forced: HashMap<String, Vec<i64>>,
    calls: HashMap<String, u64>,
    /// Every session key, unionid and access token answered (log audits look for them).
    handed_out: Vec<String>,
    /// The text filter's words, and every check made: (openid, scene).
    moderation: Moderation,
    checks: Vec<(String, u8)>,
    /// appid → where its pushes go.
    push_targets: HashMap<String, PushTarget>,
    media_checks: Vec<MediaCheck>,
    pushes: Vec<SentPush>,
    notices: Vec<SentNotice>,
    /// Openids whose notices are answered 43101.
    no_grant: std::collections::HashSet<String>,
    faults: Faults,
    serial: u64,
}

type Shared = Arc<Mutex<AppState>>;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn err(code: i64, msg: &str) -> Json<Value> {
    Json(json!({"errcode": code, "errmsg": msg}))
}

impl AppState {
    fn fresh(&mut self, prefix: &str) -> String {
        self.serial += 1;
        format!("{prefix}{}{:016x}", self.serial, ulid::Ulid::new().random())
    }

    /// Counts a call to `path` and answers the fault knobs first: `None` to go on.
    fn enter(&mut self, path: &str, takes_token: bool) -> Option<Json<Value>> {
        *self.calls.entry(path.to_owned()).or_default() += 1;
        let f = &mut self.faults;
        if let Some((code, n)) = f.errcode {
            f.errcode = (n > 1).then_some((code, n - 1));
            return Some(err(code, "fault injected by the fake"));
        }
        if f.busy > 0 {
            f.busy -= 1;
            return Some(err(-1, "system error"));
        }
        if f.rate_limited > 0 {
            f.rate_limited -= 1;
            return Some(err(45011, "api minute-quota reach limit"));
        }
        if takes_token && f.invalid_token > 0 {
            f.invalid_token -= 1;
            return Some(err(40001, "invalid credential"));
        }
        None
    }

    fn app(&self, appid: &str, secret: &str) -> Result<(), Json<Value>> {
        match self.apps.get(appid) {
            None => Err(err(40013, "invalid appid")),
            Some(s) if s != secret => Err(err(40125, "invalid appsecret")),
            Some(_) => Ok(()),
        }
    }

    /// Uses a code once: its subject, or WeChat's errcode.
    fn redeem(
        codes: &mut HashMap<String, Code>,
        appid: &str,
        code: &str,
    ) -> Result<String, Json<Value>> {
        match codes.get_mut(code) {
            Some(c) if c.appid == appid && now_s() - c.issued_s <= CODE_TTL_SECS => {
                if c.used {
                    return Err(err(40163, "code been used"));
                }
                c.used = true;
                Ok(c.subject.clone())
            }
            _ => Err(err(40029, "invalid code")),
        }
    }

    /// [`Self::enter`] for a call that takes `?access_token=`: the token's appid, or the
    /// answer to give (a fault, or the token refused).
    fn enter_with_token(
        &mut self,
        path: &str,
        query: &HashMap<String, String>,
    ) -> Result<String, Json<Value>> {
        if let Some(f) = self.enter(path, true) {
            return Err(f);
        }
        self.token_app(
            query
                .get("access_token")
                .map(String::as_str)
                .unwrap_or_default(),
        )
    }

    fn token_app(&self, token: &str) -> Result<String, Json<Value>> {
        match self.tokens.get(token) {
            None => Err(err(
                40001,
                "invalid credential, access_token is invalid or not latest",
            )),
            Some(t) if t.expires_s <= now_s() => Err(err(42001, "access_token expired")),
            Some(t) => Ok(t.appid.clone()),
        }
    }
}

async fn slow(state: &Shared) {
    let ms = state.lock().unwrap().faults.slow_ms;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

async fn jscode2session(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    slow(&state).await;
    let mut s = state.lock().unwrap();
    if let Some(f) = s.enter("/sns/jscode2session", false) {
        return f;
    }
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "authorization_code" {
        return err(40002, "invalid grant_type");
    }
    if let Err(e) = s.app(get("appid"), get("secret")) {
        return e;
    }
    match AppState::redeem(&mut s.login_codes, get("appid"), get("js_code")) {
        Ok(openid) => {
            let session_key = s.fresh("sk");
            let unionid = format!("un-{openid}");
            s.handed_out.push(session_key.clone());
            s.handed_out.push(unionid.clone());
            Json(json!({"openid": openid, "session_key": session_key, "unionid": unionid}))
        }
        Err(e) => e,
    }
}

async fn phone_number(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Option<Json<Value>>,
) -> Json<Value> {
    slow(&state).await;
    let mut s = state.lock().unwrap();
    let appid = match s.enter_with_token("/wxa/business/getuserphonenumber", &q) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let code = body
        .as_ref()
        .and_then(|b| b["code"].as_str())
        .unwrap_or_default();
    match AppState::redeem(&mut s.phone_codes, &appid, code) {
        Ok(phone) => Json(json!({
            "errcode": 0, "errmsg": "ok",
            "phone_info": {
                "phoneNumber": phone, "purePhoneNumber": phone, "countryCode": "86",
                "watermark": {"appid": appid, "timestamp": now_s()}
            }
        })),
        Err(e) => e,
    }
}

/// The fake's text filter: a text containing a word of `risky` (or `review`) gets that verdict
/// with the word's label.
struct Moderation {
    risky: Vec<(String, u32)>,
    review: Vec<(String, u32)>,
}

impl Default for Moderation {
    fn default() -> Self {
        Moderation {
            risky: vec![(RISKY_WORD.to_owned(), 20002)],
            review: vec![(REVIEW_WORD.to_owned(), 21000)],
        }
    }
}

/// The default word the fake's `msg_sec_check` finds risky (label 20002), and the one it sends
/// to review (label 21000).
pub const RISKY_WORD: &str = "risky-word";
pub const REVIEW_WORD: &str = "review-word";

async fn msg_sec_check(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Option<Json<Value>>,
) -> Json<Value> {
    slow(&state).await;
    let mut s = state.lock().unwrap();
    if let Err(e) = s.enter_with_token("/wxa/msg_sec_check", &q) {
        return e;
    }
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let content = b["content"].as_str().unwrap_or_default();
    let openid = b["openid"].as_str().unwrap_or_default();
    let scene = b["scene"].as_u64().unwrap_or_default();
    if b["version"].as_u64() != Some(2)
        || !(1..=4).contains(&scene)
        || content.is_empty()
        || content.chars().count() > 2500
    {
        return err(40097, "invalid args");
    }
    if openid.is_empty() {
        return err(40003, "invalid openid");
    }
    s.checks.push((openid.to_owned(), scene as u8));
    let hit = |list: &[(String, u32)]| {
        list.iter()
            .find(|(w, _)| content.contains(w.as_str()))
            .map(|(_, l)| *l)
    };
    let (suggest, label) = match (hit(&s.moderation.risky), hit(&s.moderation.review)) {
        (Some(l), _) => ("risky", l),
        (None, Some(l)) => ("review", l),
        (None, None) => ("pass", 100),
    };
    let trace_id = s.fresh("trace-");
    Json(json!({
        "errcode": 0, "errmsg": "ok",
        "result": {"suggest": suggest, "label": label},
        "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90}],
        "trace_id": trace_id,
    }))
}

async fn subscribe_send(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Option<Json<Value>>,
) -> Json<Value> {
    slow(&state).await;
    let mut s = state.lock().unwrap();
    let appid = match s.enter_with_token("/cgi-bin/message/subscribe/send", &q) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let text = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
    let mut notice = SentNotice {
        appid,
        touser: text("touser"),
        template_id: text("template_id"),
        page: text("page"),
        data: b["data"].clone(),
        miniprogram_state: text("miniprogram_state"),
        lang: text("lang"),
        errcode: 0,
        at_ms: now_ms(),
    };
    let (code, msg) = if notice.touser.is_empty() {
        (40003, "invalid openid")
    } else if notice.template_id.is_empty() {
        (40037, "invalid template_id")
    } else if !["formal", "trial", "developer"].contains(&notice.miniprogram_state.as_str())
        || !data_valid(&notice.data)
    {
        (
            47003,
            "argument invalid! data.value exceeds limit or is malformed",
        )
    } else if s.no_grant.contains(&notice.touser) {
        (43101, "user refuse to accept the msg")
    } else {
        (0, "ok")
    };
    notice.errcode = code;
    s.notices.push(notice);
    err(code, msg)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether every value of `data` keeps its key type's rule.
fn data_valid(data: &Value) -> bool {
    let Some(fields) = data.as_object().filter(|d| !d.is_empty()) else {
        return false;
    };
    fields.iter().all(|(key, v)| {
        let Some(value) = v["value"].as_str() else {
            return false;
        };
        let chars = value.chars().count();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let date = |d: &str| {
            let p: Vec<&str> = d.split('-').collect();
            p.len() == 3 && p.iter().all(|x| digits(x))
        };
        match key.trim_end_matches(|c: char| c.is_ascii_digit()) {
            "thing" => (1..=20).contains(&chars),
            "phrase" => (1..=5).contains(&chars),
            "name" => (1..=10).contains(&chars),
            "character_string" => chars <= 32 && value.bytes().all(|b| b.is_ascii_graphic()),
            "date" => date(value),
            "time" => match value.split_once(' ') {
                Some((d, t)) => date(d) && t.split(':').all(digits),
                None => false,
            },
            _ => false,
        }
    })
}

/// What makes the fake's media check answer `risky` (label 20002): these bytes anywhere in
/// the image.
pub const RISKY_IMAGE_MARKER: &[u8] = b"RISKY-IMAGE-MARKER";

async fn media_check_async(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Option<Json<Value>>,
) -> Json<Value> {
    slow(&state).await;
    let (trace_id, url, delay) = {
        let mut s = state.lock().unwrap();
        let appid = match s.enter_with_token("/wxa/media_check_async", &q) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let b = body.map(|Json(b)| b).unwrap_or_default();
        let url = b["media_url"].as_str().unwrap_or_default().to_owned();
        let openid = b["openid"].as_str().unwrap_or_default().to_owned();
        let scene = b["scene"].as_u64().unwrap_or_default();
        if b["version"].as_u64() != Some(2)
            || !matches!(b["media_type"].as_u64(), Some(1 | 2))
            || !(1..=4).contains(&scene)
            || url.is_empty()
        {
            return err(40097, "invalid args");
        }
        if openid.is_empty() {
            return err(40003, "invalid openid");
        }
        let trace_id = s.fresh("mtrace-");
        s.media_checks.push(MediaCheck {
            trace_id: trace_id.clone(),
            appid,
            openid,
            scene: scene as u8,
            media_url: url.clone(),
            ..MediaCheck::default()
        });
        (trace_id, url, s.faults.media_delay_ms.unwrap_or(1000))
    };
    tokio::spawn(check_and_push(state, trace_id.clone(), url, delay));
    Json(json!({"errcode": 0, "errmsg": "ok", "trace_id": trace_id}))
}

/// What WeChat does after `media_check_async` answered: fetch, judge, wait, push.
async fn check_and_push(state: Shared, trace_id: String, url: String, delay_ms: u64) {
    let client = reqwest::Client::new();
    let fetched = match client
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let bytes = r.bytes().await.unwrap_or_default();
            Some((status, bytes))
        }
        Err(_) => None,
    };
    let (suggest, label) = match &fetched {
        Some((200, bytes))
            if bytes
                .windows(RISKY_IMAGE_MARKER.len())
                .any(|w| w == RISKY_IMAGE_MARKER) =>
        {
            ("risky", 20002)
        }
        _ => ("pass", 100),
    };
    let target = {
        let mut s = state.lock().unwrap();
        let Some(check) = s.media_checks.iter_mut().find(|c| c.trace_id == trace_id) else {
            return;
        };
        if let Some((status, bytes)) = &fetched {
            use sha2::Digest;
            check.fetched_status = Some(*status);
            check.fetched_sha256 = Some(hex::encode(sha2::Sha256::digest(bytes)));
        }
        check.suggest = Some(suggest.to_owned());
        let appid = check.appid.clone();
        s.push_targets.get(&appid).cloned().map(|t| (appid, t))
    };
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let Some((appid, target)) = target else {
        return;
    };
    let event = json!({
        "ToUserName": "gh_fake", "FromUserName": "o-wechat-system", "CreateTime": now_s(),
        "MsgType": "event", "Event": "wxa_media_check", "appid": appid, "trace_id": trace_id,
        "version": 2, "result": {"suggest": suggest, "label": label},
        "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90}],
    })
    .to_string();
    let push = signed_push(&target, &appid, &event);
    let status = client
        .post(&push.url)
        .header("content-type", "application/json")
        .body(push.body.clone())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok();
    let mut s = state.lock().unwrap();
    s.pushes.push(push);
    if let Some(check) = s.media_checks.iter_mut().find(|c| c.trace_id == trace_id) {
        check.push_status = status;
    }
}

/// `event` as WeChat pushes it to `target`: signed in the query, sealed when the target has an
/// EncodingAESKey.
fn signed_push(target: &PushTarget, appid: &str, event: &str) -> SentPush {
    use shared::domain::push::{aes_key, encrypt_push, msg_signature, push_signature};
    let timestamp = now_s().to_string();
    let nonce = format!("{:016x}", ulid::Ulid::new().random());
    let signature = push_signature(&target.token, &timestamp, &nonce);
    let sep = if target.url.contains('?') { '&' } else { '?' };
    match target.aes_key.as_deref().and_then(aes_key) {
        None => SentPush {
            url: format!(
                "{}{sep}signature={signature}&timestamp={timestamp}&nonce={nonce}",
                target.url
            ),
            body: event.to_owned(),
        },
        Some(key) => {
            let random: [u8; 16] = ulid::Ulid::new().0.to_be_bytes();
            let sealed = encrypt_push(&key, appid, random, event.as_bytes());
            let body = json!({"ToUserName": "gh_fake", "Encrypt": sealed}).to_string();
            let ms = msg_signature(&target.token, &timestamp, &nonce, &sealed);
            SentPush {
                url: format!(
                    "{}{sep}signature={signature}&timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={ms}",
                    target.url
                ),
                body,
            }
        }
    }
}

async fn stable_token(State(state): State<Shared>, body: Option<Json<Value>>) -> Json<Value> {
    slow(&state).await;
    let mut s = state.lock().unwrap();
    if let Some(f) = s.enter("/cgi-bin/stable_token", false) {
        return f;
    }
    let b = body.map(|Json(b)| b).unwrap_or_default();
    if b["grant_type"] != "client_credential" {
        return err(40002, "invalid grant_type");
    }
    let appid = b["appid"].as_str().unwrap_or_default().to_owned();
    if let Err(e) = s.app(&appid, b["secret"].as_str().unwrap_or_default()) {
        return e;
    }
    let now = now_s();
    let ttl = s.faults.token_ttl_secs.unwrap_or(7200);
    let force = b["force_refresh"].as_bool().unwrap_or(false);
    let current = s
        .newest
        .get(&appid)
        .and_then(|t| Some((t.clone(), s.tokens.get(t)?.expires_s)));
    if force {
        let forced = s.forced.entry(appid.clone()).or_default();
        forced.retain(|t| now - t < 86_400);
        if forced.last().is_some_and(|t| now - t < 30) {
            return err(45011, "api minute-quota reach limit");
        }
        if forced.len() >= 20 {
            return err(45009, "reach max api daily quota limit");
        }
        forced.push(now);
    } else if let Some((token, expires_s)) = current.clone() {
        if expires_s - now >= TOKEN_OVERLAP_SECS {
            return Json(json!({"access_token": token, "expires_in": expires_s - now}));
        }
    }
    // A new token. A forced refresh ends the one it replaces at once (40001 from then on); a
    // normal call replaces a token only in its last 5 minutes, which it keeps working.
    if let (true, Some((old, _))) = (force, current) {
        s.tokens.remove(&old);
    }
    let token = s.fresh("AT");
    s.tokens.insert(
        token.clone(),
        Token {
            appid: appid.clone(),
            expires_s: now + ttl,
        },
    );
    s.newest.insert(appid, token.clone());
    s.handed_out.push(token.clone());
    Json(json!({"access_token": token, "expires_in": ttl}))
}

fn mint(state: &Shared, phone: bool, b: &Value) -> Json<Value> {
    let mut s = state.lock().unwrap();
    let appid = b["appid"].as_str().unwrap_or_default().to_owned();
    let subject = b[if phone { "phone" } else { "openid" }]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !s.apps.contains_key(&appid) || subject.is_empty() {
        return err(40013, "unknown appid, or no openid/phone given");
    }
    let code = s.fresh(if phone { "pc" } else { "lc" });
    let entry = Code {
        appid,
        subject,
        issued_s: now_s(),
        used: false,
    };
    if phone {
        s.phone_codes.insert(code.clone(), entry);
    } else {
        s.login_codes.insert(code.clone(), entry);
    }
    Json(json!({ "code": code }))
}

/// The fake WeChat API, serving until dropped.
pub struct FakeWeChat {
    /// `http://127.0.0.1:<port>`: what `WECHAT_API_BASE` is set to.
    pub base: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeWeChat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeWeChat {
    /// Starts it on a free port of 127.0.0.1 with `apps` (appid → secret).
    pub async fn start(apps: &[(&str, &str)]) -> std::io::Result<Self> {
        let state: Shared = Arc::default();
        state.lock().unwrap().apps = apps
            .iter()
            .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
            .collect();
        let app = Router::new()
            .route("/sns/jscode2session", get(jscode2session))
            .route("/wxa/business/getuserphonenumber", post(phone_number))
            .route("/cgi-bin/stable_token", post(stable_token))
            .route("/wxa/msg_sec_check", post(msg_sec_check))
            .route("/wxa/media_check_async", post(media_check_async))
            .route("/cgi-bin/message/subscribe/send", post(subscribe_send))
            .route(
                "/fake/notices",
                get(|State(s): State<Shared>| async move { Json(json!(s.lock().unwrap().notices)) }),
            )
            .route(
                "/fake/media_checks",
                get(|State(s): State<Shared>| async move {
                    Json(json!(s.lock().unwrap().media_checks))
                }),
            )
            .route(
                "/fake/push_to",
                post(|State(s): State<Shared>, Json(b): Json<Value>| async move {
                    let arg = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
                    let target = PushTarget {
                        url: arg("url"),
                        token: arg("token"),
                        aes_key: b["aes_key"].as_str().map(str::to_owned),
                    };
                    s.lock().unwrap().push_targets.insert(arg("appid"), target);
                    Json(json!({"ok": true}))
                }),
            )
            .route(
                "/fake/login_code",
                post(|State(s): State<Shared>, Json(b): Json<Value>| async move { mint(&s, false, &b) }),
            )
            .route(
                "/fake/phone_code",
                post(|State(s): State<Shared>, Json(b): Json<Value>| async move { mint(&s, true, &b) }),
            )
            .route(
                "/fake/login_body",
                get(|State(s): State<Shared>, Query(q): Query<HashMap<String, String>>| async move {
                    let arg = |k: &str| q.get(k).cloned().unwrap_or_default();
                    let code = mint(&s, false, &json!({"appid": arg("appid"), "openid": arg("openid")}));
                    let Some(code) = code["code"].as_str() else { return code };
                    let mut body = json!({"app_sid": arg("app_sid"), "code": code});
                    if q.contains_key("phone") {
                        let phone = mint(&s, true, &json!({"appid": arg("appid"), "phone": arg("phone")}));
                        body["phone_code"] = phone["code"].clone();
                    }
                    Json(body)
                }),
            )
            .route(
                "/fake/calls",
                get(|State(s): State<Shared>| async move { Json(json!(s.lock().unwrap().calls)) }),
            )
            .route(
                "/fake/faults",
                post(|State(s): State<Shared>, Json(b): Json<Value>| async move {
                    let f = &mut s.lock().unwrap().faults;
                    let n = |k: &str| b[k].as_u64();
                    f.busy = n("busy").unwrap_or(f.busy);
                    f.rate_limited = n("rate_limited").unwrap_or(f.rate_limited);
                    f.invalid_token = n("invalid_token").unwrap_or(f.invalid_token);
                    f.slow_ms = n("slow_ms").unwrap_or(f.slow_ms);
                    f.token_ttl_secs = b["token_ttl_secs"].as_i64().or(f.token_ttl_secs);
                    f.media_delay_ms = n("media_delay_ms").or(f.media_delay_ms);
                    if let Some(code) = b["errcode"].as_i64() {
                        f.errcode = Some((code, n("errcode_times").unwrap_or(1)));
                    }
                    Json(json!({"ok": true}))
                }),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = local_stack::peer::serve(listener, app);
        Ok(FakeWeChat { base, state, task })
    }

    /// A `wx.login` code for `openid` of `appid` (what `POST /fake/login_code` gives).
    pub fn login_code(&self, appid: &str, openid: &str) -> String {
        let v = mint(
            &self.state,
            false,
            &json!({"appid": appid, "openid": openid}),
        );
        v["code"].as_str().unwrap_or_default().to_owned()
    }

    /// A phone button's code for `phone` of `appid`.
    pub fn phone_code(&self, appid: &str, phone: &str) -> String {
        let v = mint(&self.state, true, &json!({"appid": appid, "phone": phone}));
        v["code"].as_str().unwrap_or_default().to_owned()
    }

    /// Replaces the text filter's words: texts with a word of `risky` are risky, else with one
    /// of `review` for review, each with its label.
    pub fn moderation_words(&self, risky: &[(&str, u32)], review: &[(&str, u32)]) {
        let own = |l: &[(&str, u32)]| l.iter().map(|(w, n)| ((*w).to_owned(), *n)).collect();
        self.state.lock().unwrap().moderation = Moderation {
            risky: own(risky),
            review: own(review),
        };
    }

    /// Every text check so far: (openid, scene).
    pub fn checks(&self) -> Vec<(String, u8)> {
        self.state.lock().unwrap().checks.clone()
    }

    /// Every session key, unionid and access token the fake answered so far.
    pub fn handed_out(&self) -> Vec<String> {
        self.state.lock().unwrap().handed_out.clone()
    }

    /// How many calls each WeChat path got.
    pub fn calls(&self, path: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// The next `n` calls answer −1 (system busy).
    pub fn busy_next(&self, n: u64) {
        self.state.lock().unwrap().faults.busy = n;
    }

    /// The next `n` calls that take an access token answer 40001.
    pub fn invalid_token_next(&self, n: u64) {
        self.state.lock().unwrap().faults.invalid_token = n;
    }

    /// The next `n` calls answer `errcode`.
    pub fn errcode_next(&self, errcode: i64, n: u64) {
        self.state.lock().unwrap().faults.errcode = (n > 0).then_some((errcode, n));
    }

    /// The next `n` calls answer 45011.
    pub fn rate_limited_next(&self, n: u64) {
        self.state.lock().unwrap().faults.rate_limited = n;
    }

    /// Every answer waits `ms` first.
    pub fn slow(&self, ms: u64) {
        self.state.lock().unwrap().faults.slow_ms = ms;
    }

    /// Pushes `appid`'s events (media check verdicts) to `url`, signed with `token`, sealed
    /// with `aes_key` (an EncodingAESKey) when given.
    pub fn push_to(&self, appid: &str, url: &str, token: &str, aes_key: Option<&str>) {
        self.state.lock().unwrap().push_targets.insert(
            appid.to_owned(),
            PushTarget {
                url: url.to_owned(),
                token: token.to_owned(),
                aes_key: aes_key.map(str::to_owned),
            },
        );
    }

    /// Every media check so far.
    pub fn media_checks(&self) -> Vec<MediaCheck> {
        self.state.lock().unwrap().media_checks.clone()
    }

    /// Every push made so far (to replay one).
    pub fn pushes(&self) -> Vec<SentPush> {
        self.state.lock().unwrap().pushes.clone()
    }

    /// Every `subscribe/send` call so far, with its answer.
    pub fn notices(&self) -> Vec<SentNotice> {
        self.state.lock().unwrap().notices.clone()
    }

    /// From now on, notices to `openid` are answered 43101 (the user has no grant).
    pub fn refuse_notices(&self, openid: &str) {
        self.state
            .lock()
            .unwrap()
            .no_grant
            .insert(openid.to_owned());
    }

    /// Media verdicts are pushed `ms` after the check was asked.
    pub fn media_delay(&self, ms: u64) {
        self.state.lock().unwrap().faults.media_delay_ms = Some(ms);
    }

    /// New tokens live `secs`.
    pub fn token_ttl(&self, secs: i64) {
        self.state.lock().unwrap().faults.token_ttl_secs = Some(secs);
    }
}
