//! End to end, content security for media (issue 21): images and video posters checked by
//! WeChat's `mediaCheckAsync` (the fake WeChat API, which downloads the URL it is given and
//! pushes its verdict to the stack's push URL in the secure mode) through the real `$connect`,
//! `$default` and `chat-wechat-push` binaries. Needs `cargo build --workspace --bins` first
//! (`make test` does it).

use devtools::chat::{self, DEMO_APPID, DEMO_APP_SID, DEMO_PUSH_AES_KEY, DEMO_PUSH_TOKEN};
use devtools::fake_wechat::{FakeWeChat, RISKY_IMAGE_MARKER};
use devtools::ws_client::{conversation_query, user_query, ChatSocket, Read};
use local_stack::stack::Stack;
use serde_json::{json, Value};
use shared::domain::push::{aes_key, encrypt_push, msg_signature, push_signature};
use std::time::Duration;

mod checked;
use checked::{fake, login, next, open, rows, WAIT};

const SECRET: &str = "media-mod-e2e-secret-media-mod-e2e-012345";

/// A stack checking with `fake`, under `parameters`, whose push URL takes its verdicts.
async fn stack(fake: &FakeWeChat, parameters: &[(&str, &str)]) -> Stack {
    let bins = [
        "chat-login",
        "chat-connect",
        "chat-default",
        "chat-wechat-push",
    ];
    checked::stack(fake, SECRET, parameters, &bins).await
}

/// Whether no frame of `kind` arrives within `wait`.
async fn none_of(socket: &mut ChatSocket, kind: &str, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match socket.read(left).await {
            Read::Frame(f) if f["type"] == kind => return false,
            Read::Frame(_) => continue,
            _ => return true,
        }
    }
}

fn web() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

async fn download(url: &str) -> (u16, Vec<u8>) {
    let r = web().get(url).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

fn png(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, seed])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A PNG that the fake WeChat API finds risky: the marker after its end.
fn risky_png(seed: u8) -> Vec<u8> {
    let mut bytes = png(seed);
    bytes.extend_from_slice(RISKY_IMAGE_MARKER);
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Uploads `bytes` with a ticket's presigned PUT: the key to send.
async fn upload(
    socket: &mut ChatSocket,
    chat_type: u8,
    content_type: &str,
    bytes: &[u8],
) -> String {
    let mut f = json!({"action":"upload","req_id":"r","chat_type":chat_type,
                       "content_type":content_type,"size":bytes.len()});
    if chat_type == 1 {
        f["width"] = json!(64);
        f["height"] = json!(48);
    }
    socket.send_json(&f).await.unwrap();
    let t = next(socket, "upload").await;
    let mut req = web().put(t["put"]["url"].as_str().unwrap());
    for (k, v) in t["put"]["headers"].as_object().unwrap() {
        if !k.eq_ignore_ascii_case("content-length") {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
    }
    let status = req.body(bytes.to_vec()).send().await.unwrap().status();
    assert_eq!(status.as_u16(), 200);
    t["key"].as_str().unwrap().to_owned()
}

/// Sends an image from a user connection: its acknowledged row.
async fn send_image(socket: &mut ChatSocket, to: &str, cmid: &str, bytes: &[u8]) -> Value {
    let key = upload(socket, 1, "image/png", bytes).await;
    socket
        .send_json(
            &json!({"action":"send","to":to,"client_msg_id":cmid,"chat_type":1,
                           "chat_content":key}),
        )
        .await
        .unwrap();
    let ack = next(socket, "message").await;
    assert_eq!(ack["client_msg_id"], cmid, "{ack}");
    ack["message"].clone()
}

fn row<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no row {id} in {rows:?}"))
}

/// Waits until the fake has pushed the verdict of the check of `n` checks in (1-based).
async fn verdict_pushed(wx: &FakeWeChat, n: usize) -> devtools::fake_wechat::MediaCheck {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let checks = wx.media_checks();
        if let Some(c) = checks.get(n - 1).filter(|c| c.push_status.is_some()) {
            return c.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no verdict pushed: {checks:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the fake was asked `n` media checks.
async fn checks_asked(wx: &FakeWeChat, n: usize) -> Vec<devtools::fake_wechat::MediaCheck> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let checks = wx.media_checks();
        if checks.len() >= n {
            return checks;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} media checks not asked: {checks:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `wxa_media_check` verdict for `trace_id` as WeChat pushes it to the demo app (secure
/// mode): the query and the body.
fn sealed_verdict(trace_id: &str, suggest: &str, nonce: &str) -> (String, String) {
    let event = json!({"ToUserName":"gh_x","FromUserName":"o-sys","CreateTime":1,
        "MsgType":"event","Event":"wxa_media_check","appid":DEMO_APPID,"trace_id":trace_id,
        "version":2,"result":{"suggest":suggest,"label":20002},"detail":[]})
    .to_string();
    let key = aes_key(DEMO_PUSH_AES_KEY).unwrap();
    let sealed = encrypt_push(&key, DEMO_APPID, [9; 16], event.as_bytes());
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let query = format!(
        "signature={}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={}",
        push_signature(DEMO_PUSH_TOKEN, &ts, nonce),
        msg_signature(DEMO_PUSH_TOKEN, &ts, nonce, &sealed)
    );
    (
        query,
        json!({"ToUserName":"gh_x","Encrypt":sealed}).to_string(),
    )
}

async fn push(stack: &Stack, url_with_query: &str, body: &str) -> u16 {
    let url = match url_with_query.starts_with("http") {
        true => url_with_query.to_owned(),
        false => format!("{}?{url_with_query}", chat::push_url(stack, DEMO_APP_SID)),
    };
    web()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_risky_image_is_taken_down_on_both_sides_and_a_passing_one_stays() {
    // GIVEN Ann on a user connection; Bob on a user and a conversation connection; the fake
    // pushes verdicts to the stack's push URL (secure mode) 1.5 s after each check
    let wx = fake().await;
    let stack = stack(&wx, &[]).await;
    chat::push_demo_app_to(&wx, &stack);
    wx.media_delay(1500);
    let (ann, bob) = ("o-img-ann", "o-img-bob");
    let mut a = open(
        &stack,
        &user_query(ann, DEMO_APP_SID, &login(&stack, &wx, ann).await),
    )
    .await;
    let bob_token = login(&stack, &wx, bob).await;
    let mut b = open(&stack, &user_query(bob, DEMO_APP_SID, &bob_token)).await;
    let mut bc = open(
        &stack,
        &conversation_query(bob, ann, DEMO_APP_SID, &bob_token),
    )
    .await;
    rows(&mut bc, ann).await;
    // WHEN Ann sends a harmless image, then one WeChat finds risky
    let fine = png(1);
    let bad = risky_png(2);
    let ok_row = send_image(&mut a, bob, "img-ok", &fine).await;
    let bad_row = send_image(&mut a, bob, "img-bad", &bad).await;
    let bad_id = bad_row["id"].as_str().unwrap().to_owned();
    let bad_url = bad_row["content"].as_str().unwrap().to_owned();
    // THEN Bob sees both at once, on both connections, and can download the risky one
    for id in [&ok_row["id"], &bad_row["id"]] {
        let f = next(&mut b, "message").await;
        assert_eq!(&f["message"]["id"], id, "{f}");
    }
    assert_eq!(download(&bad_url).await, (200, bad.clone()));
    // AND WeChat was asked once per image, with Ann's openid and scene 2, and the URL it got
    // downloads what Ann sent
    checks_asked(&wx, 2).await;
    for (n, bytes) in [(1, &fine), (2, &bad)] {
        let check = verdict_pushed(&wx, n).await;
        assert_eq!((check.openid.as_str(), check.scene), (ann, 2));
        assert_eq!(check.fetched_status, Some(200));
        assert_eq!(check.fetched_sha256, Some(sha256(bytes)));
        assert_eq!(
            check.push_status,
            Some(200),
            "the push URL took the verdict"
        );
    }
    let checks = wx.media_checks();
    assert_eq!(
        checks
            .iter()
            .map(|c| c.suggest.clone().unwrap())
            .collect::<Vec<_>>(),
        ["pass", "risky"]
    );
    // AND the risky one is taken down: a `blocked` frame on both user connections
    for (socket, peer) in [(&mut a, bob), (&mut b, ann)] {
        let f = next(socket, "blocked").await;
        assert_eq!(
            f,
            json!({"code":1,"type":"blocked","peer":peer,"id":bad_id})
        );
    }
    // AND a fresh page on Bob's conversation connection shows it blocked, without media (the
    // pages of the two sends come first)
    let mut page = next(&mut bc, "history").await;
    let blocked_in = |page: &Value| {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == bad_id.as_str() && r["blocked"] == true)
    };
    while !blocked_in(&page) {
        page = next(&mut bc, "history").await;
    }
    let gone = row(page["data"].as_array().unwrap(), &bad_id).clone();
    assert_eq!(gone["content"], "", "{gone}");
    assert!(gone.get("media").is_none(), "{gone}");
    // AND its objects are gone: the download URL Bob got answers 403 or 404
    let (status, _) = download(&bad_url).await;
    assert!(
        status == 403 || status == 404,
        "the risky image still answers {status}"
    );
    // AND the harmless one stays, for both, and still downloads
    for (socket, peer) in [(&mut a, bob), (&mut b, ann)] {
        let rows = rows(socket, peer).await;
        let kept = row(&rows, ok_row["id"].as_str().unwrap());
        assert!(kept.get("blocked").is_none(), "{kept}");
        assert_eq!(
            download(kept["content"].as_str().unwrap()).await,
            (200, fine.clone())
        );
        assert_eq!(row(&rows, &bad_id)["blocked"], true);
    }
    // AND no log line holds an openid, a URL's signature or a push's signatures
    let logs = stack.function_logs();
    let mut secrets: Vec<String> = vec![ann.into(), bob.into()];
    for check in &checks {
        let sig = check.media_url.split("X-Amz-Signature=").nth(1).unwrap();
        secrets.push(sig.split('&').next().unwrap().to_owned());
    }
    for p in wx.pushes() {
        for part in p.url.split(['?', '&']) {
            if let Some(sig) = part
                .strip_prefix("signature=")
                .or_else(|| part.strip_prefix("msg_signature="))
            {
                secrets.push(sig.to_owned());
            }
        }
    }
    assert!(secrets.len() >= 2 + 2 + 4, "{secrets:?}");
    for secret in &secrets {
        let leaks: Vec<&String> = logs
            .iter()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(leaks.is_empty(), "{secret} was logged: {leaks:?}");
    }
    assert!(
        logs.iter().any(|l| l.contains("media check verdict")),
        "verdicts are logged"
    );
}

#[tokio::test]
async fn forged_replayed_and_late_verdicts_change_nothing() {
    // GIVEN a stack whose push URL the fake does not know: the test pushes itself
    let wx = fake().await;
    let stack = stack(&wx, &[]).await;
    let (ann, bob) = ("o-push-ann", "o-push-bob");
    let mut a = open(
        &stack,
        &user_query(ann, DEMO_APP_SID, &login(&stack, &wx, ann).await),
    )
    .await;
    let mut b = open(
        &stack,
        &user_query(bob, DEMO_APP_SID, &login(&stack, &wx, bob).await),
    )
    .await;
    let sent = risky_png(3);
    let m = send_image(&mut a, bob, "p1", &sent).await;
    next(&mut b, "message").await;
    let id = m["id"].as_str().unwrap().to_owned();
    let trace = checks_asked(&wx, 1).await[0].trace_id.clone();
    // WHEN a risky verdict for its trace id comes forged, or plain to the secure app
    let (q, body) = sealed_verdict(&trace, "risky", "n-forged");
    let forged = q.replace("msg_signature=", "msg_signature=0");
    assert_eq!(push(&stack, &forged, &body).await, 401);
    let ts = q
        .split("timestamp=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let plain = format!(
        "signature={}&timestamp={ts}&nonce=n-plain",
        push_signature(DEMO_PUSH_TOKEN, ts, "n-plain")
    );
    let event = json!({"Event":"wxa_media_check","trace_id":trace,
                       "result":{"suggest":"risky","label":20002}});
    assert_eq!(push(&stack, &plain, &event.to_string()).await, 401);
    // THEN nothing changed: no blocked frame, the image still downloads
    assert!(none_of(&mut a, "blocked", Duration::from_millis(500)).await);
    let url = m["content"].as_str().unwrap();
    assert_eq!(download(url).await, (200, sent.clone()));
    // WHEN the true verdict comes, THEN it is taken down
    assert_eq!(push(&stack, &q, &body).await, 200);
    assert_eq!(next(&mut b, "blocked").await["id"], id);
    assert_eq!(next(&mut a, "blocked").await["id"], id);
    // AND the same push again (captured, replayed) is refused
    assert_eq!(push(&stack, &q, &body).await, 401);
    // AND a verdict for an unknown trace id is taken and changes nothing
    let (q, body) = sealed_verdict("mtrace-unknown", "risky", "n-unknown");
    assert_eq!(push(&stack, &q, &body).await, 200);
    // WHEN Ann recalls an image before its (risky) verdict comes
    let second = risky_png(4);
    let m2 = send_image(&mut a, bob, "p2", &second).await;
    next(&mut b, "message").await;
    let id2 = m2["id"].as_str().unwrap().to_owned();
    let trace2 = checks_asked(&wx, 2).await[1].trace_id.clone();
    a.send_json(&json!({"action":"recall","to":bob,"id":id2}))
        .await
        .unwrap();
    next(&mut b, "recall").await;
    let (q, body) = sealed_verdict(&trace2, "risky", "n-late");
    assert_eq!(push(&stack, &q, &body).await, 200);
    // THEN it stays recalled, and nobody is told of a take-down
    assert!(none_of(&mut b, "blocked", Duration::from_millis(700)).await);
    let rows = rows(&mut b, ann).await;
    let recalled = row(&rows, &id2);
    assert_eq!(recalled["recalled"], true, "{recalled}");
    assert!(recalled.get("blocked").is_none(), "{recalled}");
}

#[tokio::test]
async fn a_video_without_a_poster_is_stored_unchecked_by_default_and_a_posters_check_is_asked() {
    let wx = fake().await;
    let stack = stack(&wx, &[]).await;
    let (ann, bob) = ("o-vid-ann", "o-vid-bob");
    let mut a = open(
        &stack,
        &user_query(ann, DEMO_APP_SID, &login(&stack, &wx, ann).await),
    )
    .await;
    let video: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    // WHEN Ann sends a video without a poster
    let key = upload(&mut a, 2, "video/mp4", &video).await;
    a.send_json(
        &json!({"action":"send","to":bob,"client_msg_id":"v1","chat_type":2,
                        "chat_content":key}),
    )
    .await
    .unwrap();
    // THEN it is stored (allow, the default), and WeChat is asked nothing
    assert_eq!(next(&mut a, "message").await["client_msg_id"], "v1");
    // WHEN she sends one with a poster
    let poster = png(5);
    let key = upload(&mut a, 2, "video/mp4", &video).await;
    let pkey = upload(&mut a, 1, "image/png", &poster).await;
    a.send_json(
        &json!({"action":"send","to":bob,"client_msg_id":"v2","chat_type":2,
                        "chat_content":key,"poster":pkey}),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut a, "message").await["client_msg_id"], "v2");
    // THEN only the poster is checked: one check, whose URL downloads the poster
    let checks = checks_asked(&wx, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let checks_now = wx.media_checks();
    assert_eq!(checks_now.len(), 1, "{checks_now:?}");
    let (status, got) = download(&checks[0].media_url).await;
    assert_eq!((status, sha256(&got)), (200, sha256(&poster)));
}

#[tokio::test]
async fn a_video_without_a_poster_is_refused_when_the_operator_says_so() {
    let wx = fake().await;
    let stack = stack(&wx, &[("ModerationVideoWithoutPoster", "refuse")]).await;
    let (ann, bob) = ("o-vidr-ann", "o-vidr-bob");
    let mut a = open(
        &stack,
        &user_query(ann, DEMO_APP_SID, &login(&stack, &wx, ann).await),
    )
    .await;
    let video: Vec<u8> = (0..50_000u32).map(|i| (i % 247) as u8).collect();
    let key = upload(&mut a, 2, "video/mp4", &video).await;
    a.send_json(
        &json!({"action":"send","to":bob,"client_msg_id":"v1","chat_type":2,
                        "chat_content":key}),
    )
    .await
    .unwrap();
    // THEN poster_required, and nothing is stored or asked
    let f = next(&mut a, "error").await;
    assert_eq!(
        (f["error"].as_str(), f["client_msg_id"].as_str()),
        (Some("poster_required"), Some("v1")),
        "{f}"
    );
    assert!(rows(&mut a, bob).await.is_empty());
    assert!(wx.media_checks().is_empty());
}
