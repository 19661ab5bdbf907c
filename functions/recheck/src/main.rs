//! The re-check: every 5 minutes (and on demand), checks messages stored without a moderation
//! decision again and takes down those that fail.
use lambda_runtime::{run, service_fn, Error};
use shared::entrypoints::wiring::AwsRecheckDeps;
use shared::entrypoints::{self as handlers, recheck};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = shared::Config::from_env()?;
    let aws = handlers::aws_sdk_config().await;
    // Built once per cold start: the checker, the DynamoDB, S3 signing and management clients.
    let deps = AwsRecheckDeps::from_aws(&aws, config).await?;
    run(service_fn(|event| recheck::recheck(&deps, event))).await
}
