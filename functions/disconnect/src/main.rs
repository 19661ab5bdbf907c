//! `$disconnect`: forgets the connection (best effort; TTL covers a missed one).
use lambda_runtime::{run, service_fn, Error};
use shared::entrypoints as handlers;
use shared::flows::Deps;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = shared::Config::from_env()?;
    let aws = handlers::aws_sdk_config().await;
    let deps = Deps::storage_only(&aws, config);
    run(service_fn(|event| handlers::disconnect(&deps, event))).await
}
