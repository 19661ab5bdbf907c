//! A local AWS for a SAM application with a WebSocket API — the `sam local` that WebSocket APIs
//! never got. Everything it runs is read from the application's `template.yaml`: the API
//! Gateway WebSocket API (routes, stage, selection expression) emulated in [`apigw`], the
//! functions' binaries run by a local Lambda runtime ([`runtime`]), DynamoDB Local with the
//! template's tables ([`dynamodb_local`], [`tables`]), s3s-fs with the template's buckets behind
//! a front that adds CORS and S3 event notifications ([`s3_local`], [`s3_front`]), and the
//! functions' DynamoDB stream event sources ([`streams`]). [`template`]
//! parses, [`resolve`] resolves intrinsics (refusing what it cannot resolve exactly), [`app`]
//! reads each resource kind; [`stack`] starts it all on 127.0.0.1. See README.md.
pub mod apigw;
pub mod app;
pub mod clients;
pub mod dynamodb_local;
pub mod httpapi;
pub mod peer;
pub mod process;
pub mod resolve;
pub mod runtime;
pub mod s3_front;
pub mod s3_local;
pub mod schedule;
pub mod stack;
pub mod streams;
pub mod tables;
pub mod template;

use std::path::PathBuf;

/// The project root (where `template.yaml`, `.tools/` and `target/` live): `LOCAL_STACK_ROOT`,
/// else the repository this crate is in.
pub fn project_root() -> PathBuf {
    match std::env::var_os("LOCAL_STACK_ROOT") {
        Some(root) => PathBuf::from(root),
        // Two folders up from this crate (`infra/local-stack`), without resolving links: the
        // checkout may sit in a folder another user (a test as `nobody`) cannot resolve.
        None => {
            let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            here.ancestors().nth(2).unwrap_or(here).to_owned()
        }
    }
}

/// Errors of the local stack. It runs on developer machines and in tests, so the text is meant
/// for a developer, and names the resource and property at fault.
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
