//! The re-check (a scheduled function, also invocable on demand with any event): answers what
//! one run did, `{"passed","review","blocked","uncheckable","unanswered","recalled",
//! "media_overdue","media_asked_again","media_given_up"}`. A
//! storage failure fails the invocation (the schedule runs again; nothing is half-done: each
//! message's decision is one conditional write, a take-down's writes are idempotent).

use crate::flows::recheck::RecheckDeps;
use crate::ports::{
    ConnectionRemove, IdentityStore, MediaCheckStore, MediaSigner, MessageStore, Notifier,
    ScreeningStore,
};
use lambda_runtime::LambdaEvent;

#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id))]
pub async fn recheck<S, N, O>(
    deps: &RecheckDeps<S, N, O>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_runtime::Error>
where
    S: ScreeningStore + IdentityStore + MessageStore + ConnectionRemove + MediaCheckStore,
    N: Notifier,
    O: MediaSigner,
{
    match crate::flows::recheck::recheck(deps, crate::clock::now_ms()).await {
        Ok(done) => Ok(serde_json::to_value(done)?),
        Err(e) => {
            tracing::error!(error = %e, "re-check failed");
            Err(Box::new(e))
        }
    }
}
