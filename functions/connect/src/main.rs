//! `$connect`: authenticates the handshake and records the connection.
use lambda_runtime::{run, service_fn, Error};
use shared::entrypoints::{self as handlers, ConnectDeps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = shared::Config::from_env()?;
    let aws = handlers::aws_sdk_config().await;
    // Built once per cold start: the secret is fetched here, not per handshake.
    let deps = ConnectDeps::from_aws(&aws, config).await?;
    run(service_fn(|event| handlers::connect(&deps, event))).await
}
