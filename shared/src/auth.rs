//! Handshake authentication: HS256 JWTs issued by the app's own login service.

use crate::config::SecretSource;
use crate::error::{Error, Result};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Shortest signing secret accepted (HS256 wants at least its 256-bit output).
pub const MIN_SECRET_BYTES: usize = 32;

/// The claims of a chat token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account (phone) this token speaks for.
    pub sub: String,
    /// The app (`app_sid`) the account belongs to.
    pub app: String,
    /// Expiry, epoch seconds.
    pub exp: u64,
    /// Display name shown to the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Avatar URL shown to the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
}

/// Why a token was refused. Only logged; the client sees a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

/// Verifies tokens with one secret, loaded once per cold start.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::Config(format!(
                "the JWT secret must be at least {MIN_SECRET_BYTES} bytes"
            )));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `nbf`, when present, is honoured; `aud` is not part of this contract and is ignored
        // (a login service may set one for its own purposes).
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Ok(TokenVerifier {
            key: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// Checks signature, algorithm and expiry; returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        decode::<Claims>(token, &self.key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// Signs claims with the secret (HS256). Used by the local token minter and tests; a real
/// deployment's login service does the same with the same secret.
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| Error::Config(format!("cannot sign token: {e}")))
}

/// Resolves the signing secret once, at cold start.
pub async fn load_secret(source: &SecretSource, aws: &aws_config::SdkConfig) -> Result<Vec<u8>> {
    match source {
        SecretSource::Inline(bytes) => Ok(bytes.clone()),
        SecretSource::SecretsManager(id) => {
            let client = aws_sdk_secretsmanager::Client::new(aws);
            let out = client
                .get_secret_value()
                .secret_id(id)
                .send()
                .await
                .map_err(|e| Error::Secret(Box::new(aws_sdk_secretsmanager::Error::from(e))))?;
            out.secret_string()
                .map(|s| s.as_bytes().to_vec())
                .ok_or_else(|| Error::Config(format!("secret {id} has no string value")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "13800000001".into(),
            app: "wxapp".into(),
            exp,
            name: Some("Ann".into()),
            avatar: None,
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let v = TokenVerifier::new(SECRET).unwrap();
        let c = claims(now() + 600);
        assert_eq!(v.verify(&mint(SECRET, &c).unwrap()).unwrap(), c);
    }

    #[test]
    fn forged_expired_and_garbage_tokens_are_refused() {
        let v = TokenVerifier::new(SECRET).unwrap();
        let other = b"ffffffffffffffffffffffffffffffff";
        let forged = mint(other, &claims(now() + 600)).unwrap();
        assert_eq!(v.verify(&forged), Err(TokenError::Invalid));
        let expired = mint(SECRET, &claims(now() - 3600)).unwrap();
        assert_eq!(v.verify(&expired), Err(TokenError::Expired));
        assert_eq!(v.verify("abc.def.ghi"), Err(TokenError::Invalid));
        assert_eq!(v.verify(""), Err(TokenError::Missing));
    }

    #[test]
    fn alg_none_is_refused() {
        // GIVEN a token with alg "none" and no signature
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let body = "eyJzdWIiOiIxIiwiYXBwIjoiYSIsImV4cCI6OTk5OTk5OTk5OX0"; // sub 1, app a
        let v = TokenVerifier::new(SECRET).unwrap();
        assert_eq!(
            v.verify(&format!("{header}.{body}.")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn nbf_in_the_future_is_refused_and_an_audience_is_ignored() {
        #[derive(serde::Serialize)]
        struct Extra {
            sub: &'static str,
            app: &'static str,
            exp: u64,
            nbf: u64,
            aud: &'static str,
        }
        let v = TokenVerifier::new(SECRET).unwrap();
        let sign = |nbf| {
            let c = Extra {
                sub: "1",
                app: "a",
                exp: now() + 600,
                nbf,
                aud: "login-service",
            };
            encode(
                &Header::new(Algorithm::HS256),
                &c,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap()
        };
        assert_eq!(v.verify(&sign(now() + 3600)), Err(TokenError::Invalid));
        assert_eq!(v.verify(&sign(now() - 10)).unwrap().sub, "1");
    }

    #[test]
    fn short_secrets_are_refused_at_start() {
        assert!(TokenVerifier::new(b"short").is_err());
    }
}
