//! Wiring: the AWS configuration and the adapters each function builds once per cold start.

use crate::adapters::apigw::ApiGatewayNotifier;
use crate::adapters::dynamo::DynamoStore;
use crate::adapters::s3::S3Media;
use crate::adapters::secrets::{load_secret, AppsSecret, Verifier};
use crate::adapters::webhook::{WebhookModerator, WEBHOOK_TIMEOUT};
use crate::adapters::wechat::HttpWeChat;
use crate::config::{Checker, Config};
use crate::domain::auth::TokenSigner;
use crate::domain::media::OwnerKey;
use crate::entrypoints::token_keeper::KeeperDeps;
use crate::entrypoints::websocket::ConnectDeps;
use crate::error::Error;
use crate::flows::access_token::SharedTokens;
use crate::flows::login::LoginDeps;
use crate::flows::moderation::{Moderation, WeChatModerator};
use crate::flows::notify::NotifyDeps;
use crate::flows::push::PushDeps;
use crate::flows::recheck::RecheckDeps;
use crate::flows::{Deps, Media};
use crate::ports::{MediaModerator, TextModerator};
use std::sync::Arc;

impl ConnectDeps<DynamoStore, ApiGatewayNotifier> {
    /// Loads the signing secret and builds the DynamoDB and management clients. Fails at cold
    /// start.
    pub async fn from_aws(aws: &aws_config::SdkConfig, config: Config) -> crate::Result<Self> {
        let verifier = Verifier::load(
            config.require_jwt_secret()?,
            aws,
            std::time::Duration::from_secs(config.secret_max_age_secs),
            config.max_token_lifetime_secs,
        )
        .await?;
        Ok(ConnectDeps {
            store: dynamo_store(aws, &config),
            closer: ApiGatewayNotifier::new(aws, config.require_management_endpoint()?),
            verifier,
            config,
        })
    }
}

impl Deps<DynamoStore, ApiGatewayNotifier, Media<S3Media>> {
    /// The `$default` function's clients, and the key that names upload owners (a secret of
    /// its own, loaded once; `$default` never reads the token signing secret).
    pub async fn from_aws(aws: &aws_config::SdkConfig, config: Config) -> crate::Result<Self> {
        let notifier = ApiGatewayNotifier::new(aws, config.require_management_endpoint()?);
        let objects = S3Media::new(
            aws,
            config.require_media_bucket()?,
            config.s3_force_path_style,
        );
        let secret = load_secret(config.require_media_key_secret()?, aws).await?;
        let store = dynamo_store(aws, &config);
        let moderation = moderation(aws, &config, &store, None).await?;
        Ok(Deps {
            store,
            notifier,
            media: Media {
                objects,
                owner_key: OwnerKey::from_secret(&secret),
            },
            config,
            records: Default::default(),
            moderation,
        })
    }
}

/// This instance's copy of each app's access token, over the function's one WeChat client.
pub type AwsTokens = Arc<SharedTokens<Arc<HttpWeChat>, DynamoStore>>;

/// A function's one WeChat client, its token cache and the WeChat apps: shared by everything
/// in the function that talks to WeChat (the login and its display-name check use one of each).
#[derive(Clone)]
struct WeChatParts {
    wechat: Arc<HttpWeChat>,
    tokens: AwsTokens,
    apps: Arc<AppsSecret>,
}

impl WeChatParts {
    /// Builds the client and loads the apps (one secret read). Fails at cold start.
    async fn load(
        aws: &aws_config::SdkConfig,
        config: &Config,
        store: &DynamoStore,
    ) -> crate::Result<Self> {
        let wechat = Arc::new(wechat_client(config)?);
        Ok(WeChatParts {
            tokens: Arc::new(SharedTokens::new(wechat.clone(), store.clone())),
            wechat,
            apps: Arc::new(wechat_apps(aws, config).await?),
        })
    }
}

/// The login function's dependencies: the WeChat parts (shared with the display-name check
/// under `Moderation=wechat`) and DynamoDB (identities, the stored access tokens).
pub type AwsLoginDeps = LoginDeps<Arc<HttpWeChat>, DynamoStore, AwsTokens, Arc<AppsSecret>>;

impl AwsLoginDeps {
    /// Loads the signing secret and the WeChat apps, and builds the WeChat and DynamoDB
    /// clients. Fails at cold start. (An app added to the secret reaches warm instances within
    /// `SECRET_MAX_AGE_SECONDS`.)
    pub async fn from_aws(aws: &aws_config::SdkConfig, config: Config) -> crate::Result<Self> {
        let signer = TokenSigner::new(&load_secret(config.require_jwt_secret()?, aws).await?)?;
        let store = dynamo_store(aws, &config);
        let parts = WeChatParts::load(aws, &config, &store).await?;
        let moderation = moderation(aws, &config, &store, Some(&parts)).await?;
        Ok(LoginDeps {
            tokens: parts.tokens,
            wechat: parts.wechat,
            identities: store,
            apps: parts.apps,
            identity: config.account_identity,
            token_secs: config.login_token_secs,
            signer,
            moderation,
        })
    }
}

/// The push function's dependencies.
pub type AwsPushDeps = PushDeps<DynamoStore, AppsSecret, ApiGatewayNotifier, S3Media>;

impl AwsPushDeps {
    /// Loads the WeChat apps (their push tokens) and builds the DynamoDB, S3 and management
    /// clients (a risky verdict takes media down). Fails at cold start.
    pub async fn from_aws(aws: &aws_config::SdkConfig, config: Config) -> crate::Result<Self> {
        Ok(PushDeps {
            store: dynamo_store(aws, &config),
            apps: wechat_apps(aws, &config).await?,
            notifier: ApiGatewayNotifier::new(aws, config.require_management_endpoint()?),
            objects: S3Media::new(
                aws,
                config.require_media_bucket()?,
                config.s3_force_path_style,
            ),
            config,
        })
    }
}

/// The token keeper's dependencies.
pub type AwsKeeperDeps = KeeperDeps<HttpWeChat, DynamoStore, AppsSecret>;

impl AwsKeeperDeps {
    /// Loads the WeChat apps and builds the WeChat and DynamoDB clients. Fails at cold start.
    pub async fn from_aws(aws: &aws_config::SdkConfig, config: Config) -> crate::Result<Self> {
        let apps = wechat_apps(aws, &config).await?;
        Ok(KeeperDeps {
            wechat: wechat_client(&config)?,
            store: dynamo_store(aws, &config),
            apps,
        })
    }
}

impl Deps<DynamoStore> {
    /// The `$disconnect` function's client.
    pub fn storage_only(aws: &aws_config::SdkConfig, config: Config) -> Self {
        Deps {
            store: dynamo_store(aws, &config),
            notifier: (),
            media: (),
            config,
            records: Default::default(),
            moderation: Default::default(),
        }
    }
}

/// A function's AWS configuration, from its environment (credentials, region, endpoint
/// overrides) as `aws_config::load_from_env` reads it, with one HTTPS client for every SDK
/// client: rustls on `ring` rather than the SDK's default aws-lc, whose C library was the
/// largest single part of each bootstrap (docs/benchmark.md, "Bootstrap size").
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https)
        .load()
        .await
}

/// The re-check's dependencies.
pub type AwsRecheckDeps = RecheckDeps<DynamoStore, ApiGatewayNotifier, S3Media>;

impl AwsRecheckDeps {
    /// Builds the checker `MODERATION` names (loading the WeChat apps for `wechat`), the
    /// DynamoDB and management clients, and the S3 signer. Fails at cold start.
    pub async fn from_aws(aws: &aws_config::SdkConfig, config: Config) -> crate::Result<Self> {
        let store = dynamo_store(aws, &config);
        Ok(RecheckDeps {
            moderation: moderation(aws, &config, &store, None).await?,
            store,
            notifier: ApiGatewayNotifier::new(aws, config.require_management_endpoint()?),
            signer: S3Media::new(
                aws,
                config.require_media_bucket()?,
                config.s3_force_path_style,
            ),
            config,
        })
    }
}

/// The notify function's dependencies.
pub type AwsNotifyDeps = NotifyDeps<DynamoStore, Arc<HttpWeChat>, AwsTokens, Arc<AppsSecret>>;

impl AwsNotifyDeps {
    /// Loads the WeChat apps and builds the WeChat and DynamoDB clients. Fails at cold start,
    /// also without a notice template (`NOTICE_TEMPLATE_ID`).
    pub async fn from_aws(aws: &aws_config::SdkConfig, config: Config) -> crate::Result<Self> {
        let template = config
            .notices
            .clone()
            .ok_or_else(|| Error::Config("chat-notify needs NOTICE_TEMPLATE_ID".into()))?;
        let store = dynamo_store(aws, &config);
        let parts = WeChatParts::load(aws, &config, &store).await?;
        Ok(NotifyDeps {
            tokens: parts.tokens,
            wechat: parts.wechat,
            apps: parts.apps,
            store,
            template,
            offset: config.display_offset,
        })
    }
}

/// The text checker `MODERATION` names, with the operator's policy. `wechat`: the function's WeChat parts if it has them already (else built here, only for
/// `wechat`).
async fn moderation(
    aws: &aws_config::SdkConfig,
    config: &Config,
    store: &DynamoStore,
    wechat: Option<&WeChatParts>,
) -> crate::Result<Moderation> {
    let mut media: Option<Arc<dyn MediaModerator>> = None;
    let checker: Option<Arc<dyn TextModerator>> = match config.moderation {
        Checker::None => None,
        Checker::WeChat => {
            let parts = match wechat {
                Some(p) => p.clone(),
                None => WeChatParts::load(aws, config, store).await?,
            };
            // One moderator checks texts and asks for media checks.
            let moderator = Arc::new(WeChatModerator {
                tokens: parts.tokens,
                wechat: parts.wechat,
                apps: parts.apps,
                scene: config.moderation_scene,
            });
            media = Some(moderator.clone());
            Some(moderator)
        }
        Checker::Webhook => {
            let (url, key) = config.require_webhook()?;
            let key = load_secret(key, aws).await?;
            let webhook =
                WebhookModerator::new(url, key, WEBHOOK_TIMEOUT, config.limits.max_content_bytes)
                    .map_err(|e| Error::Config(format!("MODERATION_WEBHOOK_URL: {e}")))?;
            Some(Arc::new(webhook))
        }
    };
    Ok(Moderation {
        checker,
        media,
        policy: config.moderation_policy,
    })
}

fn wechat_client(config: &Config) -> crate::Result<HttpWeChat> {
    HttpWeChat::new(&config.wechat_api_base, config.wechat_timeout)
        .map_err(|e| Error::Config(format!("the WeChat client: {e}")))
}

/// The WeChat apps, read now and again every `SECRET_MAX_AGE_SECONDS`.
async fn wechat_apps(aws: &aws_config::SdkConfig, config: &Config) -> crate::Result<AppsSecret> {
    AppsSecret::load(
        config.require_wechat_apps()?,
        aws,
        std::time::Duration::from_secs(config.secret_max_age_secs),
    )
    .await
}

fn dynamo_store(aws: &aws_config::SdkConfig, config: &Config) -> DynamoStore {
    DynamoStore::new(
        aws_sdk_dynamodb::Client::new(aws),
        &config.messages_table,
        &config.connections_table,
    )
}
