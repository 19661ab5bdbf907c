//! The media bucket as [`MediaObjects`] and [`MediaSigner`]: `HeadObject`, `CopyObject`, and
//! presigned PUT, POST and GET, all through one `aws-sdk-s3` client built once per cold start.
//! Presigned PUT and GET come from the SDK's own presigning; the POST form (which the SDK does
//! not offer, aws-sdk-rust #863) from [`post_policy`].

pub mod post_policy;

use crate::domain::media::{ObjectInfo, UploadTicket};
use crate::error::{Error, Result};
use crate::ports::{MediaObjects, MediaSigner};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::Client;
use post_policy::{post_policy_fields, PostPolicyRequest, SigningCredentials};
use std::time::{Duration, SystemTime};

/// One bucket behind one client.
#[derive(Clone, Debug)]
pub struct S3Media {
    client: Client,
    bucket: String,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
}

impl S3Media {
    /// The same adapter over another client of the bucket's service (the benchmark's, which
    /// counts requests); presigning keeps the configuration's credentials.
    pub fn with_client(self, client: Client) -> Self {
        S3Media { client, ..self }
    }

    /// `force_path_style` is for local S3 servers on 127.0.0.1 (`S3_FORCE_PATH_STYLE=true`);
    /// on AWS the virtual-hosted style is used.
    pub fn new(aws: &aws_config::SdkConfig, bucket: &str, force_path_style: bool) -> Self {
        let config = aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(force_path_style)
            .build();
        S3Media {
            client: Client::from_conf(config),
            bucket: bucket.to_owned(),
            region: aws
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".to_owned()),
            credentials: aws.credentials_provider(),
        }
    }

    fn presigning(expires: Duration) -> Result<PresigningConfig> {
        PresigningConfig::builder()
            .start_time(SystemTime::now())
            .expires_in(expires)
            .build()
            .map_err(Error::store)
    }

    async fn credentials(&self) -> Result<SigningCredentials> {
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| Error::Config("no AWS credentials to sign uploads with".into()))?;
        let c = provider.provide_credentials().await.map_err(Error::store)?;
        Ok(SigningCredentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().map(str::to_owned),
        })
    }
}

/// The form's URL: the presigned PUT's URL without the key and the query. Path style
/// (`http://127.0.0.1:9000/bucket/u/…`) gives `…/bucket`, virtual-hosted style
/// (`https://bucket.s3.region.amazonaws.com/u/…`) gives `…amazonaws.com/`.
pub fn post_url(put_url: &str, key: &str) -> Option<String> {
    let base = put_url.split('?').next()?;
    let base = base.strip_suffix(key)?;
    let base = base.strip_suffix('/')?;
    let after_scheme = base.split_once("://")?.1;
    Some(if after_scheme.contains('/') {
        base.to_owned()
    } else {
        format!("{base}/")
    })
}

impl MediaObjects for S3Media {
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                content_type: out.content_type().unwrap_or_default().to_owned(),
                size: out.content_length().unwrap_or_default().max(0) as u64,
            })),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(Error::store(aws_sdk_s3::Error::from(e))),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            // Keys handed out here are URL-safe (hex, ULID, digits, `_x./`): no encoding needed.
            .copy_source(format!("{}/{from}", self.bucket))
            .key(to)
            .send()
            .await
            .map_err(|e| Error::store(aws_sdk_s3::Error::from(e)))?;
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        // DeleteObject answers 204 for a missing key too.
        let deletes = keys.iter().map(|key| {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
        });
        for result in futures::future::join_all(deletes).await {
            result.map_err(|e| Error::store(aws_sdk_s3::Error::from(e)))?;
        }
        Ok(())
    }
}

impl MediaSigner for S3Media {
    async fn upload_ticket(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        expires: Duration,
    ) -> Result<UploadTicket> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(size as i64)
            .presigned(Self::presigning(expires)?)
            .await
            .map_err(|e| Error::store(aws_sdk_s3::Error::from(e)))?;
        let put_url = put.uri().to_owned();
        let post_url = post_url(&put_url, key)
            .ok_or_else(|| Error::Corrupt(format!("unexpected presigned URL shape for {key}")))?;
        let creds = self.credentials().await?;
        let post_fields = post_policy_fields(
            &PostPolicyRequest {
                bucket: &self.bucket,
                key,
                content_type,
                max_bytes: size,
                region: &self.region,
                now: SystemTime::now(),
                expires_in: expires,
            },
            &creds,
        );
        Ok(UploadTicket {
            put_headers: put
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            put_url,
            post_url,
            post_fields,
        })
    }

    async fn download_urls(&self, keys: &[String], expires: Duration) -> Result<Vec<String>> {
        let mut urls = Vec::with_capacity(keys.len());
        for key in keys {
            // Served as the type the key's extension stands for, inline under its own file
            // name, whatever type the object was stored with: a download URL never makes a
            // browser run what was uploaded.
            let name = key.rsplit('/').next().unwrap_or(key);
            let req = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .response_content_type(crate::domain::media::content_type_of(key))
                .response_content_disposition(format!("inline; filename=\"{name}\""))
                .presigned(Self::presigning(expires)?)
                .await
                .map_err(|e| Error::store(aws_sdk_s3::Error::from(e)))?;
            urls.push(req.uri().to_owned());
        }
        Ok(urls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_post_url_is_the_bucket_url_in_either_addressing_style() {
        assert_eq!(
            post_url(
                "http://127.0.0.1:9000/b/u/i/o/x.jpg?X-Amz-Signature=1",
                "u/i/o/x.jpg"
            )
            .as_deref(),
            Some("http://127.0.0.1:9000/b")
        );
        assert_eq!(
            post_url(
                "https://b.s3.us-east-1.amazonaws.com/u/i/o/x.jpg?X-Amz-Date=1",
                "u/i/o/x.jpg"
            )
            .as_deref(),
            Some("https://b.s3.us-east-1.amazonaws.com/")
        );
        assert_eq!(post_url("https://h/other?x", "u/i/o/x.jpg"), None);
    }

    /// s3s (the local S3) does not check `x-amz-security-token`, so this is where it is shown
    /// that URLs signed with a Lambda's session credentials carry it.
    #[tokio::test]
    async fn urls_signed_with_session_credentials_carry_the_token() {
        // GIVEN an S3 client with temporary credentials, as on Lambda
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    "ASIAEXAMPLE",
                    "secret",
                    Some("SESSION/TOKEN+x=".into()),
                    None,
                    "test",
                ),
            ))
            .build();
        let s3 = S3Media::new(&aws, "chat-media-x", false);
        // WHEN a ticket and a download URL are signed
        let t = s3
            .upload_ticket("u/i/o/k.jpg", "image/jpeg", 42, Duration::from_secs(300))
            .await
            .unwrap();
        let get = s3
            .download_urls(&["m/i/o/k.jpg".into()], Duration::from_secs(60))
            .await
            .unwrap();
        // THEN every form of it carries the session token, and the PUT signs type and length
        assert!(
            t.put_url
                .contains("X-Amz-Security-Token=SESSION%2FTOKEN%2Bx%3D"),
            "{}",
            t.put_url
        );
        assert!(get[0].contains("X-Amz-Security-Token="), "{}", get[0]);
        // AND the download is served as the key's type, inline under its name
        assert!(
            get[0].contains("response-content-type=image%2Fjpeg"),
            "{}",
            get[0]
        );
        assert!(
            get[0].contains("response-content-disposition=inline%3B%20filename%3D%22k.jpg%22"),
            "{}",
            get[0]
        );
        assert!(get[0].starts_with("https://chat-media-x.s3.eu-west-1.amazonaws.com/m/i/o/k.jpg?"));
        let signed = t
            .put_url
            .split("X-Amz-SignedHeaders=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        assert!(
            signed.contains("content-length") && signed.contains("content-type"),
            "{signed}"
        );
        assert!(t
            .post_fields
            .iter()
            .any(|(k, v)| k == "x-amz-security-token" && v == "SESSION/TOKEN+x="));
        assert!(t
            .post_fields
            .iter()
            .any(|(k, v)| k == "x-amz-credential" && v.contains("/eu-west-1/s3/aws4_request")));
        assert_eq!(
            t.post_url,
            "https://chat-media-x.s3.eu-west-1.amazonaws.com/"
        );
    }
}
