//! ThumbnailFunction: a 320 px JPEG beside every sent image (`m/i/…` → `t/…`).
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use lambda_runtime::{run, service_fn, Error};
use thumbnail::{handler, Config, Deps, S3Objects};

// One thread: the image work runs inline, one event at a time, so that MemorySize only has to
// cover one decoded image (no per-thread stacks or malloc arenas under the limit).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    // rustls on ring, not the SDK's default aws-lc: as the chat functions do
    // (`shared::handlers::aws_sdk_config`; docs/benchmark.md, "Bootstrap size").
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https)
        .load()
        .await;
    // Built once per cold start.
    let deps = Deps {
        objects: S3Objects::new(&aws, config.force_path_style),
        config,
    };
    run(service_fn(|event| handler(&deps, event))).await
}
