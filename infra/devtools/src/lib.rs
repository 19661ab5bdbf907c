//! Tools for running and testing the chat locally: the local stack (API Gateway WebSocket
//! emulator, Lambda runtime, DynamoDB Local, s3s-fs behind an S3 front with CORS and events),
//! all read from `template.yaml` (never a hand-kept copy), and token minting.
pub mod apigw;
pub mod bench;
pub mod bench_report;
pub mod ddb_log;
pub mod dynamodb_local;
pub mod peer;
pub mod process;
pub mod runtime;
pub mod s3_front;
pub mod s3_local;
pub mod sam;
pub mod stack;
pub mod template;

use std::path::PathBuf;

/// The repository root (where `template.yaml` lives), found from this crate's location.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// Errors of the local tools. They run on developer machines and in tests, so the text is
/// meant for a developer.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("template.yaml: {0}")]
    Template(String),
    #[error("DynamoDB Local: {0}")]
    DynamoDbLocal(String),
    #[error("local S3: {0}")]
    S3(String),
    #[error("local gateway: {0}")]
    Gateway(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("DynamoDB: {0}")]
    Dynamo(Box<aws_sdk_dynamodb::Error>),
}

impl From<aws_sdk_dynamodb::Error> for DevError {
    fn from(e: aws_sdk_dynamodb::Error) -> Self {
        DevError::Dynamo(Box::new(e))
    }
}
