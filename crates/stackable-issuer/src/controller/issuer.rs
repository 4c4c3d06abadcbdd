//! The issuer controller, one per issuer kind (issuer-lib's `IssuerReconciler`): it runs the
//! user's `check` and keeps the issuer's `Ready` condition.
//!
//! 1. An issuer that failed permanently for its current generation is left alone, and so is
//!    one the user's `ignore_issuer` hook ignores.
//! 2. An issuer without a `Ready` condition gets `Ready=Unknown` (reason `Initializing`); that
//!    write wakes the controller again.
//! 3. A `Ready` issuer for which a request reported an issuer error takes that error; any other
//!    issuer is checked.
//! 4. Success: `Ready=True` (`Checked`), checked again after the re-check interval (beyond
//!    issuer-lib: an issuer whose CA expired or vanished turns not-Ready before requests fail).
//!    A permanent error: `Ready=False` (`Failed`), not retried. Another error: `Ready=False`
//!    (`Pending`), retried with backoff.
//!
//! Every condition carries the generation it was computed for (`observedGeneration`).

use std::sync::Arc;

use kube::runtime::{controller::Action, reflector::ObjectRef};
use snafu::ResultExt as _;

use super::{
    Shared,
    events::{self, EventSpec, reason},
    reports::Reports,
};
use crate::{
    api::issuer_status::CONDITION_READY,
    conditions::{self, FALSE, TRUE, UNKNOWN},
    error::{IgnoreHookSnafu, Result},
    issuer::{AnyIssuer, IssuerResource},
    signer::{ErrorKind, Signer},
};

/// Reasons of an issuer's `Ready` condition (issuer-lib's `IssuerConditionReason*`).
pub mod ready_reason {
    /// The controller has started on the issuer.
    pub const INITIALIZING: &str = "Initializing";
    /// `check` failed with an error that may pass, or a request reported an issuer error.
    pub const PENDING: &str = "Pending";
    /// `check` succeeded.
    pub const CHECKED: &str = "Checked";
    /// `check` failed permanently (until the spec changes).
    pub const FAILED: &str = "Failed";
}

/// What the issuer controller of kind `K` needs.
pub(crate) struct IssuerCtx<S: Signer, K: IssuerResource> {
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) reports: Arc<Reports<K>>,
    pub(crate) wrap: for<'a> fn(&'a K) -> AnyIssuer<'a, S::Issuer, S::ClusterIssuer>,
}

pub(crate) async fn reconcile<S: Signer, K: IssuerResource>(
    issuer: Arc<K>,
    ctx: Arc<IssuerCtx<S, K>>,
) -> Result<Action> {
    let shared = &ctx.shared;
    let key = ObjectRef::from_obj(&*issuer);
    // Taken first, so that a report is never left behind for a later reconciliation.
    let reported = ctx.reports.take(&key);
    let backoff_key = format!("issuer/{key}");
    let generation = issuer.meta().generation;
    let ready = issuer.ready_condition();

    if let Some(ready) = ready
        && ready.status == FALSE
        && ready.reason == ready_reason::FAILED
        && ready.observed_generation.unwrap_or(0) >= generation.unwrap_or(0)
    {
        tracing::debug!(issuer = %key, "failed permanently for this generation; left alone");
        return Ok(Action::await_change());
    }

    let ignore = shared
        .signer
        .ignore_issuer((ctx.wrap)(&issuer))
        .await
        .context(IgnoreHookSnafu {
            kind: K::kind(&()).into_owned(),
            name: key.to_string(),
        })?;
    if ignore {
        tracing::debug!(issuer = %key, "ignore_issuer returned true; left alone");
        return Ok(Action::await_change());
    }

    let now = conditions::now();
    let set = |status: &str, reason: &str, message: &str| {
        conditions::issuer_condition(
            ready,
            CONDITION_READY,
            status,
            reason,
            message,
            generation,
            &now,
        )
    };

    let Some(ready) = ready else {
        let condition = set(
            UNKNOWN,
            ready_reason::INITIALIZING,
            &format!(
                "{} has started reconciling this {}",
                shared.options.field_owner,
                K::kind(&())
            ),
        );
        write_ready(shared, &*issuer, &condition).await?;
        return Ok(Action::await_change());
    };

    let result = match reported {
        Some(message) if ready.status == TRUE => {
            tracing::info!(issuer = %key, error = %message, "a request reported an issuer error");
            Err((ErrorKind::Issuer, message))
        }
        _ => shared
            .signer
            .check((ctx.wrap)(&issuer))
            .await
            .map_err(|e| (e.kind(), e.message())),
    };

    let (condition, event, action) = match result {
        Ok(()) => {
            shared.backoff.reset(&backoff_key);
            let condition = set(TRUE, ready_reason::CHECKED, "Succeeded checking the issuer");
            let transition = ready.status != TRUE || ready.reason != ready_reason::CHECKED;
            let event = transition.then(|| EventSpec::normal(reason::CHECKED, &condition.message));
            let action = match shared.options.recheck_interval {
                Some(interval) => Action::requeue(interval),
                None => Action::await_change(),
            };
            (condition, event, action)
        }
        Err((ErrorKind::Permanent, message)) => {
            shared.backoff.reset(&backoff_key);
            tracing::warn!(issuer = %key, error = %message, "check failed permanently");
            let condition = set(
                FALSE,
                ready_reason::FAILED,
                &format!("Failed permanently: {message}"),
            );
            let event = EventSpec::warning(reason::PERMANENT_ERROR, &condition.message);
            (condition, Some(event), Action::await_change())
        }
        Err((_, message)) => {
            let delay = shared.backoff.next(&backoff_key);
            tracing::info!(issuer = %key, error = %message, retry_in = ?delay, "check failed; will retry");
            let condition = set(
                FALSE,
                ready_reason::PENDING,
                &format!("Not ready yet: {message}"),
            );
            let event = EventSpec::warning(reason::RETRYABLE_ERROR, &condition.message);
            (condition, Some(event), Action::requeue(delay))
        }
    };
    if !conditions::same_issuer_condition(Some(ready), &condition) {
        write_ready(shared, &*issuer, &condition).await?;
    }
    if let Some(event) = event {
        events::publish(&shared.recorder, &issuer.object_ref(&()), &[event]).await;
    }
    Ok(action)
}

/// Applies the `Ready` condition to the issuer's status subresource (the field owner owns only
/// this condition).
async fn write_ready<S: Signer, K: IssuerResource>(
    shared: &Shared<S>,
    issuer: &K,
    condition: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
) -> Result<()> {
    let status = serde_json::json!({ "conditions": [condition] });
    super::apply_status(&shared.client, &shared.options.field_owner, issuer, status).await
}
