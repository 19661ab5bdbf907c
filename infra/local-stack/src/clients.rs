//! The one way to build an AWS client for the local servers: the local region, the local
//! credentials (which the S3 front and s3s-fs check), the endpoint, path-style S3.

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

/// The region and credentials of everything local.
pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "local";
pub const SECRET_KEY: &str = "local-secret-key";

/// The SDK configuration of a client for the local server at `endpoint`.
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "local"),
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
