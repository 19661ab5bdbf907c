//! The token keeper: every 10 minutes (and on demand), refreshes each WeChat app's stored
//! access token before it runs out, so that the other functions only read it.
use lambda_runtime::{run, service_fn, Error};
use shared::entrypoints::wiring::AwsKeeperDeps;
use shared::entrypoints::{self as handlers, token_keeper};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = shared::Config::from_env()?;
    let aws = handlers::aws_sdk_config().await;
    // Built once per cold start: the WeChat apps, the WeChat and DynamoDB clients.
    let deps = AwsKeeperDeps::from_aws(&aws, config).await?;
    run(service_fn(|event| token_keeper::keep_tokens(&deps, event))).await
}
