//! A bare `lambda_runtime` function that answers its event: the baseline `local-bench`
//! measures the chat functions' init and memory against, through the same local runtime.
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
