//! The one way to build an AWS client for the local servers: the local region, the local
//! credentials (which the S3 front and s3s-fs check), the endpoint, path-style S3.

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

/// The region of everything local.
pub const REGION: &str = "us-east-1";

/// The local S3's access key: random per process (s3s-fs checks SigV4 with it, and its
/// command line is visible to every local user, so a fixed one would be public).
pub fn access_key() -> &'static str {
    &credentials().0
}

/// The local S3's secret key, random per process (see [`access_key`]).
pub fn secret_key() -> &'static str {
    &credentials().1
}

fn credentials() -> &'static (String, String) {
    static KEYS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let id = ulid::Ulid::new().to_string();
        (
            format!("LOCAL{}", &id[10..]),
            ulid::Ulid::new().to_string() + &id,
        )
    })
}

/// The SDK configuration of a client for the local server at `endpoint`.
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            Credentials::new(access_key(), secret_key(), None, None, "local"),
        ))
        .build()
}

/// A DynamoDB client's configuration for `endpoint`, to add interceptors or timeouts to.
pub fn dynamodb_config(endpoint: &str) -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::config::Builder::from(&sdk_config(endpoint))
}

/// A DynamoDB client for `endpoint` (DynamoDB Local, or its forwarder).
pub fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(dynamodb_config(endpoint).build())
}

/// An S3 client's configuration for `endpoint`, path-style.
pub fn s3_config(endpoint: &str) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::from(&sdk_config(endpoint)).force_path_style(true)
}

/// An S3 client for `endpoint` (the stack's S3 front, or s3s-fs itself).
pub fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_config(endpoint).build())
}
