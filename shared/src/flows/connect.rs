//! `$connect` and `$disconnect`: authenticate a handshake and record the connection; forget it.
//!
//! `$connect` as steps: [`identify`] the handshake's parameters → [`authenticate`] its token →
//! [`ConnectionRecord`] from the claims ([`profile_of`]) → [`record`] it (record, registry,
//! profile, side by side) → [`enforce_cap`] on the user's connections.

use crate::config::{Checker, Config};
use crate::domain::auth::{Claims, TokenError, TokenVerifier};
use crate::domain::connection::{ConnectionRecord, Registry};
use crate::domain::ids::{valid_ident, Conversation};
use crate::domain::message::Profile;
use crate::error::Result;
use crate::ports::{
    ConnectionCloser, ConnectionRegister, ConnectionRemove, IdentityStore, PostError, ProfileWrite,
};

/// Longest display name kept from a token (characters).
pub const MAX_NAME_CHARS: usize = 64;
/// Longest avatar URL kept from a token (bytes).
pub const MAX_AVATAR_BYTES: usize = 1024;

/// The parts of a `$connect` request that matter.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest<'a> {
    pub connection_id: &'a str,
    pub userphone: Option<&'a str>,
    /// Absent: a user connection. Present: a conversation connection with this account.
    pub friendphone: Option<&'a str>,
    pub app_sid: Option<&'a str>,
    /// From `?token=` or `Authorization: Bearer`.
    pub token: Option<&'a str>,
    pub now_ms: i64,
}

/// What `$connect` answers. A refusal stores nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    Accepted,
    /// 400: a parameter is missing or malformed.
    BadRequest(&'static str),
    /// 401: no token, or a forged or expired one.
    Unauthorized(&'static str),
    /// 403: a valid token for another account or app.
    Forbidden(&'static str),
}

impl ConnectOutcome {
    pub fn status(self) -> u16 {
        match self {
            ConnectOutcome::Accepted => 200,
            ConnectOutcome::BadRequest(_) => 400,
            ConnectOutcome::Unauthorized(_) => 401,
            ConnectOutcome::Forbidden(_) => 403,
        }
    }
    pub fn reason(self) -> &'static str {
        match self {
            ConnectOutcome::Accepted => "connected",
            ConnectOutcome::BadRequest(r)
            | ConnectOutcome::Unauthorized(r)
            | ConnectOutcome::Forbidden(r) => r,
        }
    }
}

/// Who a handshake says it is, checked for shape: (user, app, friend).
type Identity = (String, String, Option<String>);

/// Authenticates a handshake and records the connection: its record, its entry in the user's
/// registry (closing the user's oldest connection over the cap), and the user's profile.
pub async fn connect<S, C>(
    store: &S,
    closer: &C,
    verifier: &TokenVerifier,
    config: &Config,
    req: &ConnectRequest<'_>,
) -> Result<ConnectOutcome>
where
    S: ConnectionRegister + ProfileWrite + IdentityStore,
    C: ConnectionCloser,
{
    let (user, app, friend) = match identify(req) {
        Ok(identity) => identity,
        Err(refused) => return Ok(refused),
    };
    let claims = match authenticate(verifier, req.token.unwrap_or_default(), &user, &app) {
        Ok(claims) => claims,
        Err(refused) => return Ok(refused),
    };
    let token_expires_at = i64::try_from(claims.exp).unwrap_or(i64::MAX);
    // WeChat checks a text only with its writer's openid: kept on the record, so a send starts
    // its check at once (one read here, only when WeChat checks).
    let openid = match config.moderation {
        Checker::WeChat => store.openid_of(&app, &user).await?,
        _ => None,
    };
    let record = ConnectionRecord {
        connection_id: req.connection_id.to_owned(),
        app_sid: app,
        user,
        friend,
        profile: profile_of(claims),
        connected_at_ms: req.now_ms,
        expires_at: req.now_ms / 1000 + config.connection_ttl_secs,
        registered: true,
        sends: Vec::new(),
        token_expires_at: Some(token_expires_at),
        openid,
    };
    let registry = record_connection(store, &record).await?;
    enforce_cap(store, closer, config, &record, &registry).await;
    tracing::info!(
        connection_id = req.connection_id,
        app_sid = %record.app_sid,
        kind = if record.friend.is_some() { "conversation" } else { "user" },
        "connected"
    );
    Ok(ConnectOutcome::Accepted)
}

/// The handshake's parameters, or the 400 that refuses them.
fn identify(req: &ConnectRequest<'_>) -> std::result::Result<Identity, ConnectOutcome> {
    let param = |v: Option<&'_ str>| v.filter(|s| valid_ident(s)).map(str::to_owned);
    let (Some(user), Some(app)) = (param(req.userphone), param(req.app_sid)) else {
        return Err(ConnectOutcome::BadRequest(
            "userphone and app_sid are required (1-64 of A-Z a-z 0-9 _ . @ + -)",
        ));
    };
    let friend = match req.friendphone {
        None => None,
        Some(f) if valid_ident(f) => Some(f.to_owned()),
        Some(_) => {
            return Err(ConnectOutcome::BadRequest(
                "friendphone, when given, is 1-64 of A-Z a-z 0-9 _ . @ + -",
            ))
        }
    };
    if friend.as_deref() == Some(user.as_str()) {
        return Err(ConnectOutcome::BadRequest(
            "userphone and friendphone must differ",
        ));
    }
    Ok((user, app, friend))
}

/// The token's claims when it is valid for exactly this account and app, or the 401 / 403.
fn authenticate(
    verifier: &TokenVerifier,
    token: &str,
    user: &str,
    app: &str,
) -> std::result::Result<Claims, ConnectOutcome> {
    let claims = verifier.verify(token, app).map_err(|e| match e {
        TokenError::Missing => ConnectOutcome::Unauthorized("token required"),
        TokenError::Expired => ConnectOutcome::Unauthorized("token expired"),
        TokenError::Invalid => ConnectOutcome::Unauthorized("token invalid"),
        TokenError::TooLongLived => ConnectOutcome::Unauthorized("token lives too long"),
    })?;
    if claims.sub != user || claims.app != app {
        return Err(ConnectOutcome::Forbidden(
            "token is for another account or app",
        ));
    }
    Ok(claims)
}

/// The profile a token's claims give, cut to what is kept.
fn profile_of(claims: Claims) -> Profile {
    Profile {
        name: claims
            .name
            .unwrap_or_default()
            .chars()
            .take(MAX_NAME_CHARS)
            .collect(),
        avatar: claims
            .avatar
            .filter(|a| a.len() <= MAX_AVATAR_BYTES)
            .unwrap_or_default(),
    }
}

/// Writes the record, enters it in the user's registry and, for a conversation connection,
/// refreshes the profile its conversation shows (as in the seed; the registry keeps the user's
/// latest for every conversation). Side by side; returns the registry after the entry.
async fn record_connection<S>(store: &S, record: &ConnectionRecord) -> Result<Registry>
where
    S: ConnectionRegister + ProfileWrite,
{
    let conversation_profile = async {
        match &record.friend {
            Some(friend) => {
                let conversation = Conversation::new(&record.app_sid, &record.user, friend);
                store
                    .put_profile(&conversation, &record.user, &record.profile)
                    .await
            }
            None => Ok(()),
        }
    };
    let (profile, registered, registry) = futures::join!(
        conversation_profile,
        store.register(record),
        store.enroll(record)
    );
    profile?;
    registered?;
    registry
}

/// The connections a new one pushes out of `registry`: the user's oldest live ones over the
/// cap (never `me`), and the expired entries to prune. (victims, to drop from the registry)
fn over_cap(registry: &Registry, me: &ConnectionRecord, max: usize) -> (Vec<String>, Vec<String>) {
    let now_s = me.connected_at_ms / 1000;
    let live: Vec<_> = registry.live(now_s).collect(); // oldest first
    let over = live.len().saturating_sub(max);
    let victims: Vec<String> = live
        .iter()
        .filter(|e| e.connection_id != me.connection_id)
        .take(over)
        .map(|e| e.connection_id.clone())
        .collect();
    let mut drop: Vec<String> = registry
        .entries
        .iter()
        .filter(|e| !e.live(now_s))
        .map(|e| e.connection_id.clone())
        .collect();
    drop.extend(victims.iter().cloned());
    (victims, drop)
}

/// Over the cap, the user's oldest live connections leave the registry and are closed; expired
/// entries (a `$disconnect` that never came) are pruned on the way. A failure here is logged
/// and does not refuse the handshake.
async fn enforce_cap<S: ConnectionRegister, C: ConnectionCloser>(
    store: &S,
    closer: &C,
    config: &Config,
    me: &ConnectionRecord,
    registry: &Registry,
) {
    let (victims, drop) = over_cap(registry, me, config.max_connections_per_user);
    if drop.is_empty() {
        return;
    }
    if let Err(e) = store.prune(&me.app_sid, &me.user, &drop).await {
        tracing::warn!(error = %e, "could not prune the registry");
    }
    let closed = futures::future::join_all(victims.iter().map(|v| closer.close(v))).await;
    for (victim, result) in victims.iter().zip(closed) {
        match result {
            Ok(()) => tracing::info!(
                connection_id = victim,
                "closed the oldest connection over the cap"
            ),
            Err(PostError::Gone) => {
                tracing::info!(connection_id = victim, "oldest connection already gone")
            }
            Err(PostError::Other(e)) => {
                tracing::warn!(connection_id = victim, error = %e, "could not close the oldest connection")
            }
        }
    }
}

/// Forgets a connection. `$disconnect` is best effort on API Gateway's side; TTL and 410
/// handling cover the cases where it never comes.
pub async fn disconnect<S: ConnectionRemove>(store: &S, connection_id: &str) -> Result<()> {
    store.remove(connection_id).await?;
    tracing::info!(connection_id, "disconnected");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::connection::RegistryEntry;

    fn req<'a>(user: Option<&'a str>, friend: Option<&'a str>) -> ConnectRequest<'a> {
        ConnectRequest {
            connection_id: "c",
            userphone: user,
            friendphone: friend,
            app_sid: Some("app"),
            token: None,
            now_ms: 0,
        }
    }

    #[test]
    fn a_handshake_is_identified_or_refused_with_400() {
        // GIVEN handshakes of either kind, and malformed ones
        assert_eq!(
            identify(&req(Some("111"), None)),
            Ok(("111".into(), "app".into(), None))
        );
        assert_eq!(
            identify(&req(Some("111"), Some("222"))).map(|i| i.2),
            Ok(Some("222".into()))
        );
        // THEN missing, malformed or self-addressed parameters answer 400
        for bad in [
            req(None, None),
            req(Some("a#b"), None),
            req(Some("111"), Some("")),
            req(Some("111"), Some("111")),
        ] {
            assert_eq!(identify(&bad).map_err(ConnectOutcome::status), Err(400));
        }
    }

    #[test]
    fn a_tokens_profile_is_cut_to_what_is_kept() {
        let claims = Claims {
            sub: "1".into(),
            app: "a".into(),
            exp: 0,
            name: Some("名".repeat(MAX_NAME_CHARS + 5)),
            avatar: Some("x".repeat(MAX_AVATAR_BYTES + 1)),
        };
        let p = profile_of(claims);
        assert_eq!(p.name.chars().count(), MAX_NAME_CHARS);
        assert_eq!(p.avatar, "", "an oversized avatar is dropped, not cut");
    }

    #[test]
    fn over_the_cap_the_oldest_other_connections_go_and_expired_entries_are_pruned() {
        // GIVEN a registry of three live connections (oldest first), one expired, and me
        let entry = |cid: &str, at: i64, exp: i64| RegistryEntry {
            connection_id: cid.into(),
            friend: None,
            connected_at_ms: at,
            expires_at: exp,
        };
        let registry = Registry {
            user: "111".into(),
            profile: None,
            entries: vec![
                entry("old", 1_000, 5),
                entry("a", 2_000, 100),
                entry("b", 3_000, 100),
                entry("me", 10_000, 100),
            ],
        };
        let me = ConnectionRecord {
            connection_id: "me".into(),
            app_sid: "app".into(),
            user: "111".into(),
            friend: None,
            profile: Profile::default(),
            connected_at_ms: 10_000,
            expires_at: 100,
            registered: true,
            sends: vec![],
            token_expires_at: None,
            openid: None,
        };
        // WHEN at most two may stay
        let (victims, drop) = over_cap(&registry, &me, 2);
        // THEN the oldest live one is closed, and it and the expired one leave the registry
        assert_eq!(victims, ["a"]);
        assert_eq!(drop, ["old", "a"]);
        // AND under the cap only the expired entry is pruned
        assert_eq!(over_cap(&registry, &me, 20), (vec![], vec!["old".into()]));
    }
}
