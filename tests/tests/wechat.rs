//! The WeChat client of the functions (`shared::adapters::wechat`) against the fake WeChat API
//! (`devtools::fake_wechat`) over real HTTP on loopback: answers, errcodes, and the redaction
//! of what must never be kept.

use devtools::fake_wechat::FakeWeChat;
use shared::adapters::wechat::HttpWeChat;
use shared::domain::wechat::{WeChatApp, WeChatError};
use shared::ports::WeChat;
use std::time::Duration;

fn app() -> WeChatApp {
    WeChatApp {
        appid: "wx-test".into(),
        secret: "secret-1".into(),
        ..Default::default()
    }
}

async fn setup() -> (FakeWeChat, HttpWeChat) {
    let fake = FakeWeChat::start(&[("wx-test", "secret-1")]).await.unwrap();
    let client = HttpWeChat::new(&fake.base, Duration::from_secs(2)).unwrap();
    (fake, client)
}

#[tokio::test]
async fn a_login_code_gives_its_openid_once() {
    let (fake, wechat) = setup().await;
    let code = fake.login_code("wx-test", "o-ann");
    let session = wechat.code_to_session(&app(), &code).await.unwrap();
    assert_eq!(session.openid, "o-ann");
    assert_eq!(session.unionid.as_deref(), Some("un-o-ann"));
    // the same code again: 40163; a code never issued: 40029
    assert_eq!(
        wechat.code_to_session(&app(), &code).await,
        Err(WeChatError::BadCode(40163))
    );
    assert_eq!(
        wechat.code_to_session(&app(), "no-such-code").await,
        Err(WeChatError::BadCode(40029))
    );
    // a wrong secret is WeChat's 40125, passed on as "other" with its errcode
    let wrong = WeChatApp {
        secret: "nope".into(),
        ..app()
    };
    let code = fake.login_code("wx-test", "o-ann");
    assert!(matches!(
        wechat.code_to_session(&wrong, &code).await,
        Err(WeChatError::Other(40125, _))
    ));
    assert_eq!(fake.calls("/sns/jscode2session"), 4);
}

#[tokio::test]
async fn busy_rate_limited_and_slow_answers_are_told_apart() {
    let (fake, wechat) = setup().await;
    let code = fake.login_code("wx-test", "o-bob");
    fake.busy_next(1);
    assert!(matches!(
        wechat.code_to_session(&app(), &code).await,
        Err(WeChatError::Unavailable(_))
    ));
    fake.rate_limited_next(1);
    assert_eq!(
        wechat.code_to_session(&app(), &code).await,
        Err(WeChatError::RateLimited)
    );
    // (neither used the code up)
    fake.slow(2500);
    assert!(matches!(
        wechat.code_to_session(&app(), &code).await,
        Err(WeChatError::Unavailable(why)) if why.contains("no answer")
    ));
    fake.slow(0);
    // nothing listening at all
    let dead = HttpWeChat::new("http://127.0.0.1:9", Duration::from_secs(2)).unwrap();
    assert!(matches!(
        dead.code_to_session(&app(), &code).await,
        Err(WeChatError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_stable_token_stays_the_same_until_forced_and_reads_phone_numbers() {
    let (fake, wechat) = setup().await;
    let t1 = wechat.stable_token(&app(), false).await.unwrap();
    let t2 = wechat.stable_token(&app(), false).await.unwrap();
    assert_eq!(t1.token, t2.token, "normal mode gives the same token");
    assert!(
        t1.expires_at
            > 7000
                + std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64
    );
    let phone = fake.phone_code("wx-test", "13800000001");
    assert_eq!(
        wechat.phone_number(&t1.token, &phone).await.unwrap(),
        "13800000001"
    );
    assert_eq!(
        wechat.phone_number(&t1.token, &phone).await,
        Err(WeChatError::BadCode(40163))
    );
    // a forced refresh gives a new token; a second one within 30 s is refused (45011)
    let t3 = wechat.stable_token(&app(), true).await.unwrap();
    assert_ne!(t3.token, t1.token);
    assert_eq!(
        wechat.stable_token(&app(), true).await,
        Err(WeChatError::RateLimited)
    );
    // and the forced refresh ended the old token
    let phone = fake.phone_code("wx-test", "13800000009");
    assert_eq!(
        wechat.phone_number(&t1.token, &phone).await,
        Err(WeChatError::InvalidToken(40001))
    );
    // a token WeChat does not know: 40001
    let phone = fake.phone_code("wx-test", "13800000002");
    assert_eq!(
        wechat.phone_number("made-up", &phone).await,
        Err(WeChatError::InvalidToken(40001))
    );
}

#[tokio::test]
async fn an_expired_token_is_refused_and_a_nearly_expired_one_replaced() {
    let (fake, wechat) = setup().await;
    fake.token_ttl(0);
    let t1 = wechat.stable_token(&app(), false).await.unwrap();
    let phone = fake.phone_code("wx-test", "13800000003");
    assert_eq!(
        wechat.phone_number(&t1.token, &phone).await,
        Err(WeChatError::InvalidToken(42001))
    );
    // under 5 minutes left: a normal call already gives a new token
    fake.token_ttl(7200);
    let t2 = wechat.stable_token(&app(), false).await.unwrap();
    assert_ne!(t2.token, t1.token);
    assert_eq!(
        wechat.phone_number(&t2.token, &phone).await.unwrap(),
        "13800000003"
    );
    assert_eq!(fake.calls("/cgi-bin/stable_token"), 2);
}

#[tokio::test]
async fn msg_sec_check_gives_wechats_verdict_label_and_trace_id() {
    use devtools::fake_wechat::{REVIEW_WORD, RISKY_WORD};
    use shared::domain::moderation::{label_name, Suggest, SCENE_COMMENT, SCENE_PROFILE};
    let (fake, wechat) = setup().await;
    let token = wechat.stable_token(&app(), false).await.unwrap().token;
    let check = |content: String, scene: u8| {
        let (wechat, token) = (&wechat, token.clone());
        async move { wechat.msg_sec_check(&token, "o-ann", scene, &content).await }
    };
    // A harmless text passes (label 100), a risky one is risky with its label, a doubtful one
    // goes to review; each answer carries WeChat's trace id
    let pass = check("hello there".into(), SCENE_COMMENT).await.unwrap();
    assert_eq!((pass.suggest, pass.label), (Suggest::Pass, 100));
    let risky = check(format!("buy {RISKY_WORD} now"), SCENE_COMMENT)
        .await
        .unwrap();
    assert_eq!(
        (risky.suggest, label_name(risky.label)),
        (Suggest::Risky, "porn")
    );
    assert!(risky.trace_id.is_some_and(|t| t.starts_with("trace-")));
    let review = check(format!("a {REVIEW_WORD}"), SCENE_PROFILE)
        .await
        .unwrap();
    assert_eq!(
        (review.suggest, label_name(review.label)),
        (Suggest::Review, "other")
    );
    // AND the operator's word list is the fake's to set
    fake.moderation_words(&[("spam", 10001)], &[]);
    let ad = check("spam spam".into(), SCENE_COMMENT).await.unwrap();
    assert_eq!((ad.suggest, label_name(ad.label)), (Suggest::Risky, "ad"));
    // AND the checks were made for the sender's openid, in the scene asked
    assert_eq!(fake.checks().len(), 4);
    assert_eq!(fake.checks()[2], ("o-ann".to_string(), SCENE_PROFILE));
    // AND a used-up quota, a refused token and a text over WeChat's limit are told apart
    fake.errcode_next(45009, 1);
    assert_eq!(
        check("hi".into(), SCENE_COMMENT).await,
        Err(WeChatError::Quota)
    );
    assert_eq!(
        wechat.msg_sec_check("not-a-token", "o-ann", 2, "hi").await,
        Err(WeChatError::InvalidToken(40001))
    );
    assert!(matches!(
        check("字".repeat(2501), SCENE_COMMENT).await,
        Err(WeChatError::Other(40097, _))
    ));
}
