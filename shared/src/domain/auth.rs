//! Handshake authentication: HS256 JWTs issued by the app's own login service.
//!
//! The secret is either one plain key for every app, or a JSON object giving each app its own
//! key, optionally with the previous one during a rotation:
//! `{"wxapp1": "<key>", "wxapp2": {"current": "<key>", "previous": "<old key>"}}`. With per-app
//! keys, whoever can mint tokens for one app cannot mint them for another.

use crate::error::{Error, Result};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
    /// Its expiry is further away than the longest lifetime a token may have.
    #[error("token lives too long")]
    TooLongLived,
}

/// Longest token lifetime accepted by default: a day.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// The keys of the secret: one for every app, or per app (current first).
enum Keys {
    All(DecodingKey),
    PerApp(HashMap<String, Vec<DecodingKey>>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AppKeys {
    One(String),
    Rotating {
        current: String,
        #[serde(default)]
        previous: Option<String>,
    },
}

fn checked_key(app: &str, key: &str) -> Result<DecodingKey> {
    if key.len() < MIN_SECRET_BYTES {
        return Err(Error::Config(format!(
            "the JWT key of app {app} must be at least {MIN_SECRET_BYTES} bytes"
        )));
    }
    Ok(DecodingKey::from_secret(key.as_bytes()))
}

impl Keys {
    fn parse(secret: &[u8]) -> Result<Self> {
        if secret.trim_ascii_start().first() != Some(&b'{') {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(Error::Config(format!(
                    "the JWT secret must be at least {MIN_SECRET_BYTES} bytes"
                )));
            }
            return Ok(Keys::All(DecodingKey::from_secret(secret)));
        }
        // Never echo serde's text: it may quote part of a key.
        let apps: HashMap<String, AppKeys> = serde_json::from_slice(secret).map_err(|_| {
            Error::Config(
                "the JWT secret is JSON but not an object of app_sid -> key or {current, previous}"
                    .into(),
            )
        })?;
        if apps.is_empty() {
            return Err(Error::Config("the JWT secret names no app".into()));
        }
        let mut keys = HashMap::new();
        for (app, k) in apps {
            if !crate::domain::ids::valid_ident(&app) {
                return Err(Error::Config(format!(
                    "the JWT secret names an invalid app_sid {app:?}"
                )));
            }
            let list = match k {
                AppKeys::One(key) => vec![checked_key(&app, &key)?],
                AppKeys::Rotating { current, previous } => {
                    let mut l = vec![checked_key(&app, &current)?];
                    if let Some(p) = previous {
                        l.push(checked_key(&app, &p)?);
                    }
                    l
                }
            };
            keys.insert(app, list);
        }
        Ok(Keys::PerApp(keys))
    }

    fn for_app(&self, app: &str) -> &[DecodingKey] {
        match self {
            Keys::All(k) => std::slice::from_ref(k),
            Keys::PerApp(m) => m.get(app).map(Vec::as_slice).unwrap_or_default(),
        }
    }
}

/// Verifies tokens with the keys of one secret.
pub struct TokenVerifier {
    keys: Keys,
    validation: Validation,
    max_lifetime_secs: u64,
}

impl TokenVerifier {
    /// Fails (at cold start) on a malformed secret or a key shorter than 32 bytes.
    pub fn new(secret: &[u8]) -> Result<Self> {
        let keys = Keys::parse(secret)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `nbf`, when present, is honoured; `aud` is not part of this contract and is ignored
        // (a login service may set one for its own purposes).
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Ok(TokenVerifier {
            keys,
            validation,
            max_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
        })
    }

    /// Refuses tokens whose expiry is more than `secs` away.
    pub fn with_max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime_secs = secs;
        self
    }

    /// Checks signature (with `app_sid`'s keys), algorithm, expiry and lifetime; returns the
    /// claims. Whether the claims name `app_sid` and the account is the caller's check.
    pub fn verify(&self, token: &str, app_sid: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let mut outcome = Err(TokenError::Invalid);
        for key in self.keys.for_app(app_sid) {
            outcome = match decode::<Claims>(token, key, &self.validation) {
                Ok(d) => Ok(d.claims),
                Err(e) if *e.kind() == ErrorKind::ExpiredSignature => Err(TokenError::Expired),
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => continue,
                Err(_) => Err(TokenError::Invalid),
            };
            break;
        }
        let claims = outcome?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        if claims.exp > now + self.max_lifetime_secs + LEEWAY_SECS {
            return Err(TokenError::TooLongLived);
        }
        Ok(claims)
    }
}
/// Mints tokens with each app's current key, from the same secret the verifier reads, so that
/// `$connect` accepts what it signs (the login function).
pub struct TokenSigner {
    keys: SigningKeys,
}

/// One key for every app, or the current key of each app.
enum SigningKeys {
    All(Vec<u8>),
    PerApp(HashMap<String, Vec<u8>>),
}

impl TokenSigner {
    /// Fails (at cold start) exactly where [`TokenVerifier::new`] would.
    pub fn new(secret: &[u8]) -> Result<Self> {
        TokenVerifier::new(secret)?;
        if secret.trim_ascii_start().first() != Some(&b'{') {
            return Ok(TokenSigner {
                keys: SigningKeys::All(secret.to_vec()),
            });
        }
        let apps: HashMap<String, AppKeys> = serde_json::from_slice(secret)
            .map_err(|_| Error::Config("the JWT secret is not an object of app keys".into()))?;
        let keys = apps
            .into_iter()
            .map(|(app, k)| {
                let current = match k {
                    AppKeys::One(key) => key,
                    AppKeys::Rotating { current, .. } => current,
                };
                (app, current.into_bytes())
            })
            .collect();
        Ok(TokenSigner {
            keys: SigningKeys::PerApp(keys),
        })
    }

    /// A token for `claims`, signed with the key of `claims.app`; `None` when the secret holds
    /// no key for that app.
    pub fn sign(&self, claims: &Claims) -> Result<Option<String>> {
        let key = match &self.keys {
            SigningKeys::All(all) => Some(all),
            SigningKeys::PerApp(per_app) => per_app.get(&claims.app),
        };
        key.map(|k| mint(k, claims)).transpose()
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
        assert_eq!(v.verify(&mint(SECRET, &c).unwrap(), "wxapp").unwrap(), c);
    }

    #[test]
    fn forged_expired_and_garbage_tokens_are_refused() {
        let v = TokenVerifier::new(SECRET).unwrap();
        let other = b"ffffffffffffffffffffffffffffffff";
        let forged = mint(other, &claims(now() + 600)).unwrap();
        assert_eq!(v.verify(&forged, "wxapp"), Err(TokenError::Invalid));
        let expired = mint(SECRET, &claims(now() - 3600)).unwrap();
        assert_eq!(v.verify(&expired, "wxapp"), Err(TokenError::Expired));
        assert_eq!(v.verify("abc.def.ghi", "wxapp"), Err(TokenError::Invalid));
        assert_eq!(v.verify("", "wxapp"), Err(TokenError::Missing));
    }

    #[test]
    fn alg_none_is_refused() {
        // GIVEN a token with alg "none" and no signature
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let body = "eyJzdWIiOiIxIiwiYXBwIjoiYSIsImV4cCI6OTk5OTk5OTk5OX0"; // sub 1, app a
        let v = TokenVerifier::new(SECRET).unwrap();
        assert_eq!(
            v.verify(&format!("{header}.{body}."), "a"),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_header_naming_another_algorithm_is_refused_even_when_signed_with_the_key() {
        // GIVEN tokens whose header says RS256 / HS512 / ES256 (the classic confusion: a
        // verifier that trusts the header), each signed with HMAC-SHA256 of the real key
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = b64.encode(format!(r#"{{"sub":"1","app":"a","exp":{}}}"#, now() + 600));
        let v = TokenVerifier::new(SECRET).unwrap();
        let token = |alg: &str| {
            let header = b64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
            mac.update(format!("{header}.{body}").as_bytes());
            format!(
                "{header}.{body}.{}",
                b64.encode(mac.finalize().into_bytes())
            )
        };
        // THEN only HS256 is accepted (the same construction with HS256 verifies)
        assert!(v.verify(&token("HS256"), "a").is_ok());
        for alg in ["RS256", "HS512", "ES256"] {
            assert_eq!(
                v.verify(&token(alg), "a"),
                Err(TokenError::Invalid),
                "{alg}"
            );
        }
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
        assert_eq!(v.verify(&sign(now() + 3600), "a"), Err(TokenError::Invalid));
        assert_eq!(v.verify(&sign(now() - 10), "a").unwrap().sub, "1");
    }

    #[test]
    fn short_secrets_are_refused_at_start() {
        assert!(TokenVerifier::new(b"short").is_err());
        assert!(TokenVerifier::new(br#"{"wxapp":"short"}"#).is_err());
        assert!(TokenVerifier::new(br#"{"bad#app":"0123456789abcdef0123456789abcdef"}"#).is_err());
        assert!(TokenVerifier::new(br#"{}"#).is_err());
        let e = TokenVerifier::new(br#"{"wxapp": 7, "x": "secret-0123456789abcdef-0123456789"}"#)
            .err()
            .unwrap();
        assert!(!e.to_string().contains("secret-0123"), "{e}");
    }

    #[test]
    fn per_app_keys_refuse_a_token_minted_with_another_apps_key() {
        // GIVEN a secret with a key per app, one of them mid-rotation
        let a = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let b_new = b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let b_old = b"cccccccccccccccccccccccccccccccc";
        let v = TokenVerifier::new(
            br#"{"wxapp": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                 "other": {"current": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                           "previous": "cccccccccccccccccccccccccccccccc"}}"#,
        )
        .unwrap();
        let token = |key: &[u8], app: &str| {
            let mut c = claims(now() + 600);
            c.app = app.into();
            mint(key, &c).unwrap()
        };
        // THEN each app's own key (and the previous one during a rotation) verifies
        assert!(v.verify(&token(a, "wxapp"), "wxapp").is_ok());
        assert!(v.verify(&token(b_new, "other"), "other").is_ok());
        assert!(v.verify(&token(b_old, "other"), "other").is_ok());
        // AND a key of one app mints nothing for another, nor for an app the secret lacks
        assert_eq!(
            v.verify(&token(a, "other"), "other"),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            v.verify(&token(b_new, "wxapp"), "wxapp"),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            v.verify(&token(a, "nope"), "nope"),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_is_refused() {
        let v = TokenVerifier::new(SECRET).unwrap().with_max_lifetime(3600);
        assert!(v
            .verify(&mint(SECRET, &claims(now() + 3500)).unwrap(), "wxapp")
            .is_ok());
        assert_eq!(
            v.verify(&mint(SECRET, &claims(now() + 3 * 3600)).unwrap(), "wxapp"),
            Err(TokenError::TooLongLived)
        );
        // the default is a day
        let v = TokenVerifier::new(SECRET).unwrap();
        assert_eq!(
            v.verify(
                &mint(SECRET, &claims(now() + 365 * 86400)).unwrap(),
                "wxapp"
            ),
            Err(TokenError::TooLongLived)
        );
    }
}
