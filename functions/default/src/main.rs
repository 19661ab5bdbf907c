//! `$default`: every client frame (send, sync, history, ping).
// The handler's future (fan-out stream inside the runtime's service stack) is deeper than
// rustc's default query limit when its layout is computed from scratch.
#![recursion_limit = "256"]
use lambda_runtime::{run, service_fn, Error};
use shared::entrypoints as handlers;
use shared::flows::Deps;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = shared::Config::from_env()?;
    let aws = handlers::aws_sdk_config().await;
    // Built once per cold start: DynamoDB, management API and S3 clients, the owner key.
    let deps = Deps::from_aws(&aws, config).await?;
    run(service_fn(|event| handlers::default(&deps, event))).await
}
