//! The one error type of the crate, and the single place that decides what a client may see.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong inside a handler.
///
/// Only [`Error::client_view`] turns one into client-facing text; the `Display` output (which
/// may carry AWS error text) goes to logs only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration missing or malformed at cold start.
    #[error("configuration: {0}")]
    Config(String),
    /// The signing secret could not be fetched at cold start.
    #[error("secret: {0}")]
    Secret(#[source] Source),
    /// A DynamoDB request failed (throttling, network, service error).
    #[error("storage: {0}")]
    Store(#[source] Source),
    /// A stored item does not have the shape this code writes.
    #[error("corrupt item: {0}")]
    Corrupt(String),
    /// Concurrent writers kept winning a bounded number of retries (what is named here).
    #[error("contention: {0}")]
    Contention(&'static str),
}

impl Error {
    /// Wraps any adapter error as a storage failure.
    pub fn store<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        Error::Store(Box::new(e))
    }

    /// The machine code and human text a client gets for this error. Never the inner text.
    pub fn client_view(&self) -> (&'static str, &'static str) {
        ("internal", "temporary server error, please retry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_view_never_carries_inner_text() {
        // GIVEN a storage error whose text names AWS internals
        let e = Error::Store("ResourceNotFoundException: table arn:aws:dynamodb:secret".into());
        // WHEN it is turned into what the client sees
        let (code, msg) = e.client_view();
        // THEN nothing of the inner text leaks
        assert_eq!(code, "internal");
        assert!(!msg.contains("arn:") && !msg.contains("Resource"));
        assert!(
            e.to_string().contains("ResourceNotFound"),
            "logs keep the detail"
        );
    }
}
