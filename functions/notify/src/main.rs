//! Offline notices: the messages table's stream in, WeChat subscribe messages out to receivers
//! who are not connected.
use lambda_runtime::{run, service_fn, Error};
use shared::entrypoints::wiring::AwsNotifyDeps;
use shared::entrypoints::{self as handlers, notify};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = shared::Config::from_env()?;
    let aws = handlers::aws_sdk_config().await;
    // Built once per cold start: the WeChat apps and client, the DynamoDB client.
    let deps = AwsNotifyDeps::from_aws(&aws, config).await?;
    run(service_fn(|event| notify::notify(&deps, event))).await
}
