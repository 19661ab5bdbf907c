//! `GET|POST /wechat/push/{app_sid}` (HTTP API): WeChat's message push, its URL check and its
//! events, each verified with the app's push token.
use lambda_runtime::{run, service_fn, Error};
use shared::entrypoints::wiring::AwsPushDeps;
use shared::entrypoints::{self as handlers, http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = shared::Config::from_env()?;
    let aws = handlers::aws_sdk_config().await;
    // Built once per cold start: the WeChat apps (their push tokens) and the DynamoDB client.
    let deps = AwsPushDeps::from_aws(&aws, config).await?;
    run(service_fn(|event| http::wechat_push(&deps, event))).await
}
