//! Starts DynamoDB Local, creates the template's tables in it, prints the environment the
//! functions need, and runs until Ctrl-C / SIGTERM (DynamoDB Local dies with it).
//!
//! usage: local-dynamodb [env-file-to-write]
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use devtools::dynamodb_local::DynamoDbLocal;
use devtools::template::create_chat_tables;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let local = DynamoDbLocal::start()?;
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(local.endpoint())
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let tables = create_chat_tables(&client, "").await?;
    let env = format!(
        "AWS_ENDPOINT_URL_DYNAMODB={}\nAWS_REGION=us-east-1\nAWS_ACCESS_KEY_ID=local\nAWS_SECRET_ACCESS_KEY=local\nMESSAGES_TABLE={}\nCONNECTIONS_TABLE={}\n",
        local.endpoint(),
        tables.messages,
        tables.connections
    );
    if let Some(path) = std::env::args().nth(1) {
        std::fs::write(&path, &env)?;
    }
    println!(
        "DynamoDB Local is up at {} with tables from template.yaml:\n{env}",
        local.endpoint()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    drop(local);
    Ok(())
}
