//! `POST /login` (HTTP API): a `wx.login` code (and the phone button's) in, a chat token out.
use lambda_runtime::{run, service_fn, Error};
use shared::entrypoints::wiring::AwsLoginDeps;
use shared::entrypoints::{self as handlers, http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = shared::Config::from_env()?;
    let aws = handlers::aws_sdk_config().await;
    // Built once per cold start: the signing secret, the WeChat apps, the WeChat and DynamoDB
    // clients, and this instance's copy of each app's access token.
    let deps = AwsLoginDeps::from_aws(&aws, config).await?;
    run(service_fn(|event| http::login(&deps, event))).await
}
