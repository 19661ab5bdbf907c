//! ThumbnailFunction: a 320 px JPEG beside every uploaded image (`u/i/…` → `t/…`).
use lambda_runtime::{run, service_fn, Error};
use thumbnail::{handler, Config, Deps, S3Objects};

// One thread: the image work runs inline, one event at a time, so that MemorySize only has to
// cover one decoded image (no per-thread stacks or malloc arenas under the limit).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = aws_config::load_from_env().await;
    // Built once per cold start.
    let deps = Deps {
        objects: S3Objects::new(&aws, config.force_path_style),
        config,
    };
    run(service_fn(|event| handler(&deps, event))).await
}
