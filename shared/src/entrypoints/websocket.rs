//! Lambda entry points: API Gateway WebSocket events in, a status code out. Each `main.rs`
//! builds its dependencies once (see [`super::wiring`]) and hands every event to one of these.

use crate::adapters::secrets::Verifier;
use crate::clock::now_ms;
use crate::config::Config;
use crate::flows::{self, ConnectRequest, Deps, FrameOutcome, FrameStore, Media};
use crate::ports::{
    ConnectionCloser, ConnectionRegister, ConnectionRemove, IdentityStore, MediaObjects,
    MediaSigner, Notifier, ProfileWrite,
};
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use lambda_runtime::LambdaEvent;

/// The event type every route receives.
pub type WsEvent = LambdaEvent<ApiGatewayWebsocketProxyRequest>;
/// Handler result; an `Err` is an invocation error (never used for client mistakes).
pub type HandlerResult = Result<ApiGatewayProxyResponse, lambda_runtime::Error>;

/// What `$connect` needs: storage, the management API (to close a user's oldest connection
/// over the cap), the token verifier.
pub struct ConnectDeps<S, C> {
    pub store: S,
    pub closer: C,
    pub verifier: Verifier,
    pub config: Config,
}

/// How far `requestTimeEpoch` may be from this function's clock and still be believed.
const ARRIVAL_SKEW_MS: i64 = 60_000;

/// When API Gateway received the frame (`requestTimeEpoch`), or `now` when the event has none
/// (0) or one implausibly far from this function's clock.
fn arrived_ms(request_time_epoch: i64, now: i64) -> i64 {
    if (request_time_epoch - now).abs() <= ARRIVAL_SKEW_MS {
        request_time_epoch
    } else {
        now
    }
}

/// A response with a status and a small JSON body (API Gateway shows neither to a WebSocket
/// client after the handshake; on `$connect` the status decides the handshake).
pub fn response(status: u16, reason: &str) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status.into();
    r.body = Some(Body::Text(
        serde_json::json!({ "message": reason }).to_string(),
    ));
    r
}

fn connection_id(event: &ApiGatewayWebsocketProxyRequest) -> Option<&str> {
    event
        .request_context
        .connection_id
        .as_deref()
        .filter(|c| !c.is_empty())
}

/// `$connect`: authenticate, then record the connection. 400/401/403 refuse the handshake.
#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn connect<S, C>(deps: &ConnectDeps<S, C>, event: WsEvent) -> HandlerResult
where
    S: ConnectionRegister + ProfileWrite + IdentityStore,
    C: ConnectionCloser,
{
    let ev = &event.payload;
    let Some(cid) = connection_id(ev) else {
        return Ok(response(400, "no connection id"));
    };
    tracing::Span::current().record("connection_id", cid);
    let query = &ev.query_string_parameters;
    let header_token = ev
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let req = ConnectRequest {
        connection_id: cid,
        userphone: query.first("userphone"),
        friendphone: query.first("friendphone"),
        app_sid: query.first("app_sid"),
        token: query
            .first("token")
            .filter(|t| !t.is_empty())
            .or(header_token),
        now_ms: now_ms(),
    };
    let verifier = deps.verifier.get().await;
    match flows::connect(&deps.store, &deps.closer, &verifier, &deps.config, &req).await {
        Ok(outcome) => {
            if outcome.status() != 200 {
                tracing::info!(
                    status = outcome.status(),
                    reason = outcome.reason(),
                    "handshake refused"
                );
            }
            Ok(response(outcome.status(), outcome.reason()))
        }
        Err(e) => {
            tracing::error!(error = %e, "connect failed");
            Ok(response(500, "internal error"))
        }
    }
}

/// `$default`: one client frame.
#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn default<S, N, O>(deps: &Deps<S, N, Media<O>>, event: WsEvent) -> HandlerResult
where
    S: FrameStore,
    N: Notifier + ConnectionCloser,
    O: MediaObjects + MediaSigner,
{
    let ev = &event.payload;
    let Some(cid) = connection_id(ev) else {
        return Ok(response(400, "no connection id"));
    };
    tracing::Span::current().record("connection_id", cid);
    // API Gateway hands binary frames over base64-encoded: they are not JSON text frames.
    let body = if ev.is_base64_encoded {
        ""
    } else {
        ev.body.as_deref().unwrap_or_default()
    };
    let now = now_ms();
    let arrived = arrived_ms(ev.request_context.request_time_epoch, now);
    match flows::on_frame_arrived(deps, cid, body, now, arrived).await {
        // The client learns the outcome from its frames; the status tells API Gateway's access
        // log (`integrationStatus`) and the tests what happened: 400 for a refused frame, 410
        // for a connection without a record.
        Ok(outcome) => {
            tracing::debug!(?outcome, "frame handled");
            Ok(match outcome {
                FrameOutcome::Rejected(code) => response(400, code),
                FrameOutcome::UnknownConnection => response(410, "not_connected"),
                _ => response(200, "ok"),
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "frame failed");
            Ok(response(500, "internal error"))
        }
    }
}

/// `$disconnect`: forget the connection.
#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn disconnect<S: ConnectionRemove, N, M>(
    deps: &Deps<S, N, M>,
    event: WsEvent,
) -> HandlerResult {
    let Some(cid) = connection_id(&event.payload) else {
        return Ok(response(400, "no connection id"));
    };
    tracing::Span::current().record("connection_id", cid);
    match flows::disconnect(&deps.store, cid).await {
        Ok(()) => Ok(response(200, "ok")),
        // A failure here is retried by nobody; TTL removes the record within hours.
        Err(e) => {
            tracing::error!(error = %e, "disconnect failed");
            Ok(response(500, "internal error"))
        }
    }
}

#[cfg(test)]
mod tests {
    //! Handlers on the sample events in `events/` (the same files `sam local invoke` uses).
    use super::*;
    use crate::domain::auth::{mint, Claims};
    use crate::domain::media::OwnerKey;
    use crate::fakes::{config, FakeNotifier, FakeStore};
    use lambda_runtime::Context;

    const SECRET: &[u8] = b"local-dev-secret-at-least-32-bytes-long!!";

    fn event(json: &str) -> WsEvent {
        LambdaEvent::new(
            serde_json::from_str(json).expect("sample event parses"),
            Context::default(),
        )
    }

    fn connect_event(token: &str) -> WsEvent {
        let json = include_str!("../../../events/connect.json")
            .replace("REPLACE_WITH_A_TOKEN_FROM_mint-token", token);
        event(&json)
    }

    fn token(sub: &str) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        mint(
            SECRET,
            &Claims {
                sub: sub.into(),
                app: "wxdemo".into(),
                exp,
                name: None,
                avatar: None,
            },
        )
        .unwrap()
    }

    fn connect_deps() -> ConnectDeps<FakeStore, FakeNotifier> {
        ConnectDeps {
            store: FakeStore::default(),
            closer: FakeNotifier::default(),
            verifier: Verifier::fixed(crate::domain::auth::TokenVerifier::new(SECRET).unwrap()),
            config: config(),
        }
    }

    #[test]
    fn arrival_is_api_gateways_request_time_unless_missing_or_implausible() {
        let now = 1_700_000_000_000;
        assert_eq!(arrived_ms(now - 250, now), now - 250);
        assert_eq!(
            arrived_ms(now + 20, now),
            now + 20,
            "a clock a little behind"
        );
        assert_eq!(arrived_ms(0, now), now, "no requestTimeEpoch");
        assert_eq!(arrived_ms(now - 3_600_000, now), now);
    }

    #[tokio::test]
    async fn the_sample_connect_event_is_accepted_with_a_valid_token() {
        let deps = connect_deps();
        let r = connect(&deps, connect_event(&token("13800000001")))
            .await
            .unwrap();
        assert_eq!(r.status_code, 200);
        assert!(deps.store.has_connection("L0SM9cOFvHcCIhw="));
    }

    #[tokio::test]
    async fn the_token_may_come_as_a_bearer_header() {
        let deps = connect_deps();
        let mut ev = connect_event("");
        ev.payload.headers.insert(
            "authorization",
            format!("Bearer {}", token("13800000001")).parse().unwrap(),
        );
        assert_eq!(connect(&deps, ev).await.unwrap().status_code, 200);
    }

    #[tokio::test]
    async fn refused_handshakes_answer_their_status_and_store_nothing() {
        let deps = connect_deps();
        assert_eq!(
            connect(&deps, connect_event("")).await.unwrap().status_code,
            401
        );
        assert_eq!(
            connect(&deps, connect_event(&token("13800000009")))
                .await
                .unwrap()
                .status_code,
            403
        );
        let json = include_str!("../../../events/connect.json").replace("\"wxdemo\"", "\"\"");
        assert_eq!(connect(&deps, event(&json)).await.unwrap().status_code, 400);
        assert!(!deps.store.has_connection("L0SM9cOFvHcCIhw="));
    }

    #[tokio::test]
    async fn the_seed_clients_frame_and_the_disconnect_event_run_through_their_handlers() {
        // GIVEN a connected sample connection
        let cdeps = connect_deps();
        connect(&cdeps, connect_event(&token("13800000001")))
            .await
            .unwrap();
        let deps = Deps {
            store: cdeps.store,
            notifier: FakeNotifier::default(),
            media: Media {
                objects: crate::fakes::FakeMedia::default(),
                owner_key: OwnerKey::from_secret(SECRET),
            },
            config: config(),
            records: Default::default(),
            moderation: Default::default(),
        };
        // WHEN the seed client's chatInfo arrives on $default
        let r = default(
            &deps,
            event(include_str!("../../../events/default-seed-chatinfo.json")),
        )
        .await
        .unwrap();
        // THEN it is stored and the sender gets the history frame
        assert_eq!(r.status_code, 200);
        assert_eq!(deps.store.message_count(), 1);
        let frame = &deps.notifier.frames_to("L0SM9cOFvHcCIhw=")[0];
        assert_eq!(frame["data"][0]["content"], "hello from the seed client");
        for sample in [
            include_str!("../../../events/default-send.json"),
            include_str!("../../../events/default-sync.json"),
            include_str!("../../../events/default-ping.json"),
        ] {
            assert_eq!(
                default(&deps, event(sample)).await.unwrap().status_code,
                200
            );
        }
        assert_eq!(deps.store.message_count(), 2);
        // AND a refused frame answers 400 and stores nothing
        let mut ev = event(include_str!("../../../events/default-send.json"));
        ev.payload.body = Some(r#"{"action":"send","chat_type":7,"chat_content":"x"}"#.into());
        let r = default(&deps, ev).await.unwrap();
        assert_eq!(r.status_code, 400);
        assert_eq!(deps.store.message_count(), 2);
        // AND $disconnect forgets the connection
        let r = disconnect(
            &deps,
            event(include_str!("../../../events/disconnect.json")),
        )
        .await
        .unwrap();
        assert_eq!(r.status_code, 200);
        assert!(!deps.store.has_connection("L0SM9cOFvHcCIhw="));
        // AND a frame on the forgotten connection answers 410 with a not_connected frame, in a
        // `$default` instance without the record cached (`$disconnect` is another function: an
        // instance that read the record lately serves it for CONNECTION_CACHE_SECONDS)
        let deps = Deps {
            records: Default::default(),
            moderation: Default::default(),
            ..deps
        };
        let r = default(
            &deps,
            event(include_str!("../../../events/default-ping.json")),
        )
        .await
        .unwrap();
        assert_eq!(r.status_code, 410);
        let last = deps.notifier.frames_to("L0SM9cOFvHcCIhw=").pop().unwrap();
        assert_eq!(last["error"], "not_connected");
    }

    #[tokio::test]
    async fn a_user_connection_and_its_frames_run_through_their_handlers() {
        // GIVEN the sample user connection (no friendphone) accepted
        let cdeps = connect_deps();
        let json = include_str!("../../../events/connect-user.json").replace(
            "REPLACE_WITH_A_TOKEN_FROM_mint-token",
            &token("13800000001"),
        );
        assert_eq!(
            connect(&cdeps, event(&json)).await.unwrap().status_code,
            200
        );
        let deps = Deps {
            store: cdeps.store,
            notifier: FakeNotifier::default(),
            media: Media {
                objects: crate::fakes::FakeMedia::default(),
                owner_key: OwnerKey::from_secret(SECRET),
            },
            config: config(),
            records: Default::default(),
            moderation: Default::default(),
        };
        // WHEN it sends to a peer and lists its conversations
        for sample in [
            include_str!("../../../events/default-send-to.json"),
            include_str!("../../../events/default-conversations.json"),
        ] {
            assert_eq!(
                default(&deps, event(sample)).await.unwrap().status_code,
                200
            );
        }
        // THEN the send was acknowledged and the list shows the conversation
        let frames = deps.notifier.frames_to("L0SNBdNOvHcCHQg=");
        assert_eq!(frames[0]["type"], "message");
        assert_eq!(frames[0]["client_msg_id"], "sample-user-1");
        assert_eq!(frames[1]["type"], "conversations");
        assert_eq!(frames[1]["data"][0]["peer"], "13800000002");
    }

    #[tokio::test]
    async fn a_storage_failure_answers_500_without_details() {
        let deps = connect_deps();
        deps.store.set_down(true);
        let r = connect(&deps, connect_event(&token("13800000001")))
            .await
            .unwrap();
        assert_eq!(r.status_code, 500);
        let Some(Body::Text(body)) = r.body else {
            panic!("a text body")
        };
        assert!(!body.contains("refused"));
    }
}
