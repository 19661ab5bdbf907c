//! The signing secret from Secrets Manager (or inline, locally), the `$connect` instance's
//! verifier that re-reads it so a rotation reaches warm instances, and the WeChat apps, re-read
//! the same way.

use crate::config::SecretSource;
use crate::domain::auth::TokenVerifier;
use crate::domain::wechat::{parse_apps, WeChatApp};
use crate::error::{Error, Result};
use crate::ports::AppDirectory;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The verifier of a `$connect` instance. A secret from Secrets Manager is fetched again when
/// the copy in hand is older than `max_age`, so a rotation reaches warm instances within that
/// time; if the fetch fails, the keys in hand stay in use (and the failure is logged).
pub struct Verifier {
    current: RwLock<(Arc<TokenVerifier>, Instant)>,
    reload: Option<Reload>,
}

struct Reload {
    source: SecretSource,
    aws: aws_config::SdkConfig,
    max_age: Duration,
    max_lifetime_secs: u64,
}

impl Verifier {
    /// Keys that never change (a secret given inline, tests).
    pub fn fixed(v: TokenVerifier) -> Self {
        Verifier {
            current: RwLock::new((Arc::new(v), Instant::now())),
            reload: None,
        }
    }

    /// Loads the secret now (failing the cold start if that fails) and again after `max_age`.
    pub async fn load(
        source: &SecretSource,
        aws: &aws_config::SdkConfig,
        max_age: Duration,
        max_lifetime_secs: u64,
    ) -> Result<Self> {
        let v = TokenVerifier::new(&load_secret(source, aws).await?)?
            .with_max_lifetime(max_lifetime_secs);
        let reload = matches!(source, SecretSource::SecretsManager(_)).then(|| Reload {
            source: source.clone(),
            aws: aws.clone(),
            max_age,
            max_lifetime_secs,
        });
        Ok(Verifier {
            current: RwLock::new((Arc::new(v), Instant::now())),
            reload,
        })
    }

    /// The verifier to use now.
    pub async fn get(&self) -> Arc<TokenVerifier> {
        let (v, loaded) = {
            let g = self.current.read().unwrap_or_else(|p| p.into_inner());
            (g.0.clone(), g.1)
        };
        let Some(r) = &self.reload else { return v };
        if loaded.elapsed() < r.max_age {
            return v;
        }
        let fresh = match load_secret(&r.source, &r.aws).await {
            Ok(secret) => {
                TokenVerifier::new(&secret).map(|t| t.with_max_lifetime(r.max_lifetime_secs))
            }
            Err(e) => Err(e),
        };
        let mut g = self.current.write().unwrap_or_else(|p| p.into_inner());
        match fresh {
            Ok(t) => *g = (Arc::new(t), Instant::now()),
            Err(e) => {
                tracing::error!(error = %e, "could not reload the signing secret; keeping the keys in hand");
                g.1 = Instant::now(); // try again after another max_age, not on every handshake
            }
        }
        g.0.clone()
    }
}
/// The WeChat apps of an instance (`WeChatApps` secret). A secret from Secrets Manager is read
/// again at the first use after the copy in hand is `max_age` old (`SECRET_MAX_AGE_SECONDS`),
/// so an app added to the secret, or a changed AppSecret, reaches warm instances within that
/// time; if the read or the JSON fails, the apps in hand stay in use (and it is logged).
pub struct AppsSecret {
    current: RwLock<(Arc<HashMap<String, WeChatApp>>, Instant)>,
    reload: Option<(SecretSource, aws_config::SdkConfig, Duration)>,
}

impl AppsSecret {
    /// Reads the apps now (failing the cold start if that fails).
    pub async fn load(
        source: &SecretSource,
        aws: &aws_config::SdkConfig,
        max_age: Duration,
    ) -> Result<Self> {
        let apps = read_apps(source, aws).await?;
        let reload = matches!(source, SecretSource::SecretsManager(_))
            .then(|| (source.clone(), aws.clone(), max_age));
        Ok(AppsSecret {
            current: RwLock::new((Arc::new(apps), Instant::now())),
            reload,
        })
    }
}

async fn read_apps(
    source: &SecretSource,
    aws: &aws_config::SdkConfig,
) -> Result<HashMap<String, WeChatApp>> {
    parse_apps(&load_secret(source, aws).await?).map_err(Error::Config)
}

impl AppDirectory for AppsSecret {
    async fn apps(&self) -> Arc<HashMap<String, WeChatApp>> {
        let (apps, loaded) = {
            let g = self.current.read().unwrap_or_else(|p| p.into_inner());
            (g.0.clone(), g.1)
        };
        let Some((source, aws, max_age)) = &self.reload else {
            return apps;
        };
        if loaded.elapsed() < *max_age {
            return apps;
        }
        let fresh = read_apps(source, aws).await;
        let mut g = self.current.write().unwrap_or_else(|p| p.into_inner());
        match fresh {
            Ok(a) => *g = (Arc::new(a), Instant::now()),
            Err(e) => {
                tracing::error!(error = %e, "could not read the WeChat apps again; keeping the ones in hand");
                g.1 = Instant::now();
            }
        }
        g.0.clone()
    }
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
