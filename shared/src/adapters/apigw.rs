//! The API Gateway management API as a [`Notifier`] (`POST /@connections/{id}`) and a
//! [`ConnectionCloser`] (`DELETE /@connections/{id}`).

use crate::ports::{ConnectionCloser, Notifier, PostError};
use aws_sdk_apigatewaymanagement::config::http::HttpResponse;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_apigatewaymanagement::Client;

/// Posts through one management client, built once per cold start.
#[derive(Clone, Debug)]
pub struct ApiGatewayNotifier {
    client: Client,
}

impl ApiGatewayNotifier {
    /// `endpoint` is `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`, built from
    /// the API id in the template, never from the event's domain name (custom domains differ).
    pub fn new(aws: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(aws)
            .endpoint_url(endpoint)
            .build();
        ApiGatewayNotifier {
            client: Client::from_conf(config),
        }
    }
}

impl Notifier for ApiGatewayNotifier {
    async fn post(&self, connection_id: &str, frame: &str) -> Result<(), PostError> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(frame.as_bytes()))
            .send()
            .await;
        result.map(|_| ()).map_err(post_error)
    }
}

impl ConnectionCloser for ApiGatewayNotifier {
    async fn close(&self, connection_id: &str) -> Result<(), PostError> {
        let result = self
            .client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await;
        result.map(|_| ()).map_err(post_error)
    }
}

/// 410 / `GoneException` (the connection no longer exists) apart from every other failure, for
/// both POST and DELETE on `@connections`.
fn post_error<E>(e: SdkError<E, HttpResponse>) -> PostError
where
    E: ProvideErrorMetadata,
    aws_sdk_apigatewaymanagement::Error: From<SdkError<E, HttpResponse>>,
{
    if let SdkError::ServiceError(ctx) = &e {
        if ctx.err().code() == Some("GoneException") {
            return PostError::Gone;
        }
    }
    if e.raw_response().is_some_and(|r| r.status().as_u16() == 410) {
        return PostError::Gone;
    }
    PostError::Other(aws_sdk_apigatewaymanagement::Error::from(e).to_string())
}
