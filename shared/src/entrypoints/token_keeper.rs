//! The token keeper (a scheduled function, also invocable on demand with any event): keeps the
//! stored access token of every WeChat app fresh, so that callers only read it. Answers what
//! it did, `{"apps","fresh","refreshed","failed"}`; a failure is logged and counted, never an
//! invocation error (the schedule runs again in 10 minutes, and callers refresh on a miss).

use crate::domain::wechat::WeChatApp;
use crate::flows::access_token::{keep, Kept};
use crate::ports::{AppDirectory, TokenStore, WeChat};
use lambda_runtime::LambdaEvent;
use std::collections::HashMap;

/// What the keeper needs, built once per instance.
pub struct KeeperDeps<W, S, A = HashMap<String, WeChatApp>> {
    pub wechat: W,
    pub store: S,
    /// app_sid → its mini-program's credentials.
    pub apps: A,
}

/// One run over every app (each appid once, however many app_sids name it).
#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id))]
pub async fn keep_tokens<W, S, A>(
    deps: &KeeperDeps<W, S, A>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_runtime::Error>
where
    W: WeChat,
    S: TokenStore,
    A: AppDirectory,
{
    let now = crate::clock::now_s();
    let apps = deps.apps.apps().await;
    let mut by_appid: HashMap<&str, (&str, &WeChatApp)> = HashMap::new();
    for (sid, app) in apps.iter() {
        by_appid.entry(app.appid.as_str()).or_insert((sid, app));
    }
    let runs = by_appid.into_values().map(|(sid, app)| async move {
        let outcome = keep(&deps.wechat, &deps.store, app, now).await;
        match &outcome {
            Ok(kept) => tracing::info!(app_sid = sid, outcome = ?kept, "access token kept"),
            Err(e) => tracing::error!(app_sid = sid, error = %e, "could not keep the access token"),
        }
        outcome
    });
    let outcomes = futures::future::join_all(runs).await;
    let count = |f: &dyn Fn(&Result<Kept, _>) -> bool| outcomes.iter().filter(|o| f(o)).count();
    Ok(serde_json::json!({
        "apps": outcomes.len(),
        "fresh": count(&|o| matches!(o, Ok(Kept::Fresh))),
        "refreshed": count(&|o| matches!(o, Ok(Kept::Refreshed))),
        "failed": count(&|o| o.is_err()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wechat::WeChatError;
    use crate::fakes::{FakeStore, FakeWeChatApi};

    #[tokio::test]
    async fn a_run_keeps_each_appid_once_and_counts_what_failed() {
        // GIVEN two app_sids of one mini-program and a second mini-program
        let app = |appid: &str| WeChatApp {
            appid: appid.into(),
            secret: "s".into(),
            ..Default::default()
        };
        let deps = KeeperDeps {
            wechat: FakeWeChatApi::default(),
            store: FakeStore::default(),
            apps: HashMap::from([
                ("shop".to_owned(), app("wx1")),
                ("shop-test".to_owned(), app("wx1")),
                ("blog".to_owned(), app("wx2")),
            ]),
        };
        let run = || {
            keep_tokens(
                &deps,
                LambdaEvent::new(serde_json::json!({}), Default::default()),
            )
        };
        // WHEN the keeper runs twice
        let first = run().await.unwrap();
        let second = run().await.unwrap();
        // THEN each appid was refreshed once, then found fresh
        assert_eq!(
            first,
            serde_json::json!({"apps": 2, "fresh": 0, "refreshed": 2, "failed": 0})
        );
        assert_eq!(
            second,
            serde_json::json!({"apps": 2, "fresh": 2, "refreshed": 0, "failed": 0})
        );
        assert_eq!(deps.wechat.token_calls.lock().unwrap().0, 2);
        // AND a run whose WeChat call fails counts it without failing the invocation
        deps.store.state.lock().unwrap().wechat_tokens.clear();
        deps.wechat
            .next_errors
            .lock()
            .unwrap()
            .push(WeChatError::Unavailable("busy".into()));
        let third = run().await.unwrap();
        assert_eq!(
            (third["failed"].clone(), third["refreshed"].clone()),
            (1.into(), 1.into())
        );
    }
}
