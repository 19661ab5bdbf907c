//! The S3 operations the function needs, behind a narrow trait, and the SDK adapter.

use crate::Error;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use std::future::Future;

/// What reading an object gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The whole object.
    Bytes(Vec<u8>),
    /// The object is larger than allowed; nothing (or only part of it) was read.
    TooLarge { size: u64 },
    /// The object is gone (deleted before the event was handled).
    Missing,
}

/// Reading uploads and writing thumbnails.
pub trait Objects {
    /// Reads `key`, but never more than `max_bytes` of it.
    fn get(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Fetched, Error>> + Send;
    /// Writes a JPEG at `key` (`Content-Type: image/jpeg`).
    fn put_jpeg(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Whether `key` exists (`HeadObject`).
    fn exists(&self, bucket: &str, key: &str) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Deletes `key` (one that is gone already is no error).
    fn delete(&self, bucket: &str, key: &str) -> impl Future<Output = Result<(), Error>> + Send;
}

/// [`Objects`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
}

impl S3Objects {
    /// One client for the life of the process. `force_path_style` for local S3 servers
    /// (`S3_FORCE_PATH_STYLE=true`); the endpoint itself comes from `AWS_ENDPOINT_URL_S3`.
    pub fn new(sdk_config: &aws_config::SdkConfig, force_path_style: bool) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk_config)
            .force_path_style(force_path_style)
            .build();
        S3Objects {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }
}

/// A failed request as one log line: the S3 error code, HTTP status and message when S3
/// answered, otherwise the whole cause chain (timeouts, connection errors).
fn sdk_failure<E>(op: &'static str, e: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = match e.code() {
        Some(code) => {
            let status = e.raw_response().map_or(0, |r| r.status().as_u16());
            match e.message() {
                Some(m) => format!("{code} (HTTP {status}): {m}"),
                None => format!("{code} (HTTP {status})"),
            }
        }
        None => DisplayErrorContext(&e).to_string(),
    };
    Error::Storage { op, message }
}

impl Objects for S3Objects {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Fetched, Error> {
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(Fetched::Missing)
            }
            Err(e) => return Err(sdk_failure("GetObject", e)),
        };
        let announced = out.content_length.and_then(|n| u64::try_from(n).ok());
        if let Some(size) = announced.filter(|&n| n > max_bytes) {
            return Ok(Fetched::TooLarge { size });
        }
        // Streamed with a cap, so a missing or wrong Content-Length cannot make us hold more.
        let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let mut bytes = Vec::with_capacity(announced.map_or(0, |n| n as usize).min(cap));
        let mut body = out.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::Storage {
                op: "GetObject",
                message: DisplayErrorContext(e).to_string(),
            })?;
            if bytes.len() + chunk.len() > cap {
                return Ok(Fetched::TooLarge {
                    size: (bytes.len() + chunk.len()) as u64,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched::Bytes(bytes))
    }

    async fn put_jpeg(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("image/jpeg")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_failure("PutObject", e))?;
        Ok(())
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, Error> {
        // (With s3:ListBucket, a missing key is 404 NotFound, not 403.)
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(sdk_failure("HeadObject", e)),
        }
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), Error> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_failure("DeleteObject", e))?;
        Ok(())
    }
}
