//! The request controller's reconciliation, shared by cert-manager `CertificateRequest`s and
//! Kubernetes `CertificateSigningRequest`s (issuer-lib's `RequestController`).
//!
//! In this order:
//! 1. a request for another issuer (foreign) is ignored;
//! 2. a request neither approved nor denied waits (an approval wakes it);
//! 3. a request already `Ready`, `Failed` or `Denied` is left as it is, and so is one the
//!    user's `ignore_certificate_request` hook ignores;
//! 4. a denied request gets `Ready=False/Denied` and `failureTime`; a request without `Ready`
//!    gets `Ready=Unknown/Initializing` first (`CertificateRequest` only);
//! 5. a missing issuer, an issuer without `Ready`, with a `Ready` condition behind its
//!    generation or not `True`: `Pending`; the issuer's watch wakes the request;
//! 6. `sign`: the certificate and `Ready=True/Issued`, or the error's outcome
//!    (see [`SignerError`](crate::SignerError)).

use std::{sync::Arc, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Resource,
    runtime::{
        controller::Action,
        reflector::{ObjectRef, Store},
    },
};
use snafu::ResultExt as _;

use super::{
    Shared, apply_status, events,
    reports::Reports,
    request_status::{Existing, Flavor, IssuerReadiness, StatusPatch},
    targets::{IssuerKey, IssuerTypes, Scope},
    wiring::Listed,
};
use crate::{
    conditions::{self, TRUE},
    error::{IgnoreHookSnafu, Result},
    issuer::AnyIssuer,
    signer::{ErrorKind, Signer, SigningRequest},
};

/// A kind of request the controllers sign.
pub(crate) trait RequestObject:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    const FLAVOR: Flavor;
    fn issuer_key(&self, types: &IssuerTypes) -> Option<IssuerKey>;
    fn is_approved(&self) -> bool;
    /// An approver denied it.
    fn is_denied(&self) -> bool;
    fn is_ready(&self) -> bool;
    fn is_failed(&self) -> bool;
    /// The denial is recorded as the final state.
    fn is_denied_final(&self) -> bool;
    fn has_ready(&self) -> bool;
    fn existing_conditions(&self) -> Vec<Existing>;
    fn signing_request(&self) -> SigningRequest<'_>;
}

/// What a request controller needs.
pub(crate) struct RequestCtx<S: Signer> {
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) types: IssuerTypes,
    /// `None` for Kubernetes CSRs, which only cluster issuers sign.
    pub(crate) issuers: Option<(Store<S::Issuer>, Listed)>,
    pub(crate) cluster_issuers: (Store<S::ClusterIssuer>, Listed),
    pub(crate) issuer_reports: Arc<Reports<S::Issuer>>,
    pub(crate) cluster_issuer_reports: Arc<Reports<S::ClusterIssuer>>,
}

/// An issuer found in a store.
enum Found<S: Signer> {
    Issuer(Arc<S::Issuer>),
    ClusterIssuer(Arc<S::ClusterIssuer>),
}

impl<S: Signer> Found<S> {
    fn any(&self) -> AnyIssuer<'_, S::Issuer, S::ClusterIssuer> {
        match self {
            Found::Issuer(i) => AnyIssuer::Issuer(i),
            Found::ClusterIssuer(c) => AnyIssuer::ClusterIssuer(c),
        }
    }
}

impl<S: Signer> RequestCtx<S> {
    async fn find(&self, key: &IssuerKey) -> Option<Found<S>> {
        match key.scope {
            Scope::Namespaced => {
                let (issuers, listed) = self.issuers.as_ref()?;
                listed.clone().await;
                let reference = ObjectRef::new(&key.name).within(key.namespace.as_deref()?);
                issuers.get(&reference).map(Found::Issuer)
            }
            Scope::Cluster => {
                let (cluster_issuers, listed) = &self.cluster_issuers;
                listed.clone().await;
                cluster_issuers
                    .get(&ObjectRef::new(&key.name))
                    .map(Found::ClusterIssuer)
            }
        }
    }

    fn report(&self, found: &Found<S>, message: String) {
        match found {
            Found::Issuer(i) => self
                .issuer_reports
                .report(ObjectRef::from_obj(&**i), message),
            Found::ClusterIssuer(c) => self
                .cluster_issuer_reports
                .report(ObjectRef::from_obj(&**c), message),
        }
    }

    fn not_found_message(&self, key: &IssuerKey) -> String {
        let (kind, group) = match key.scope {
            Scope::Namespaced => (S::Issuer::kind(&()), S::Issuer::group(&())),
            Scope::Cluster => (S::ClusterIssuer::kind(&()), S::ClusterIssuer::group(&())),
        };
        format!("{kind}.{group} {:?} not found", key.name)
    }
}

/// Whether `created + max` lies in the past.
fn past(created: Option<&Time>, max: Duration) -> bool {
    let Some(created) = created else {
        return false;
    };
    let Ok(max) = i64::try_from(max.as_secs()) else {
        return false;
    };
    Timestamp::now().as_second() > created.0.as_second().saturating_add(max)
}

pub(crate) async fn reconcile<S: Signer, R: RequestObject>(
    request: Arc<R>,
    ctx: Arc<RequestCtx<S>>,
) -> Result<Action> {
    let shared = &ctx.shared;
    let reference = ObjectRef::from_obj(&*request);
    let done = Ok(Action::await_change());
    let Some(key) = request.issuer_key(&ctx.types) else {
        tracing::trace!(request = %reference, "foreign issuer; ignored");
        return done;
    };
    if !request.is_approved() && !request.is_denied() {
        tracing::debug!(request = %reference, "neither approved nor denied yet");
        return done;
    }
    if request.is_ready() || request.is_failed() || request.is_denied_final() {
        tracing::trace!(request = %reference, "already final; left as it is");
        return done;
    }
    let ignore = shared
        .signer
        .ignore_certificate_request(request.signing_request(), &ctx.types.reference(&key))
        .await
        .context(IgnoreHookSnafu {
            kind: R::kind(&()).into_owned(),
            name: reference.to_string(),
        })?;
    if ignore {
        tracing::debug!(request = %reference, "ignore_certificate_request returned true; left alone");
        return done;
    }
    let backoff_key = format!("request/{reference}");
    let mut patch = StatusPatch::new(R::FLAVOR, request.existing_conditions(), conditions::now());
    let outcome = decide(&ctx, &*request, &key, &mut patch, &backoff_key).await;
    if let Some(status) = patch.status() {
        apply_status(
            &shared.client,
            &shared.options.field_owner,
            &*request,
            status,
        )
        .await?;
    }
    events::publish(&shared.recorder, &request.object_ref(&()), &patch.events).await;
    Ok(outcome)
}

async fn decide<S: Signer, R: RequestObject>(
    ctx: &RequestCtx<S>,
    request: &R,
    key: &IssuerKey,
    patch: &mut StatusPatch,
    backoff_key: &str,
) -> Action {
    let shared = &ctx.shared;
    let done = Action::await_change();
    if patch.set_initializing(
        request.is_denied(),
        request.has_ready(),
        &shared.options.field_owner,
    ) {
        tracing::debug!("no Ready condition yet: Initializing");
        return done;
    }
    let Some(found) = ctx.find(key).await else {
        patch.set_waiting_for_issuer_exist(&ctx.not_found_message(key));
        return done;
    };
    let issuer = found.any();
    let generation = issuer.metadata().generation.unwrap_or(0);
    let ready = issuer.issuer_status().and_then(|s| s.ready());
    tracing::debug!(
        issuer = issuer.name(),
        generation,
        ready = ?ready.map(|r| (&r.status, &r.reason, r.observed_generation)),
        "the request's issuer"
    );
    match ready {
        None => {
            patch.set_waiting_for_issuer_ready(IssuerReadiness::NoCondition);
            return done;
        }
        Some(ready) if ready.observed_generation.unwrap_or(0) < generation => {
            patch.set_waiting_for_issuer_ready(IssuerReadiness::Outdated);
            return done;
        }
        Some(ready) if ready.status != TRUE => {
            patch.set_waiting_for_issuer_ready(IssuerReadiness::NotReady {
                reason: &ready.reason,
                message: &ready.message,
            });
            return done;
        }
        Some(_) => {}
    }

    let error = match shared.signer.sign(request.signing_request(), issuer).await {
        Ok(bundle) => {
            shared.backoff.reset(backoff_key);
            shared.metrics.signed_one(&R::kind(&()));
            patch.set_issued(&bundle, shared.options.set_ca_on_certificate_request);
            return done;
        }
        Err(error) => error,
    };
    let message = error.message();
    if error.kind() == ErrorKind::Issuer {
        tracing::info!(issuer = issuer.name(), error = %message, "sign reported an issuer error");
        ctx.report(&found, message);
        patch.set_waiting_for_issuer_ready(IssuerReadiness::Outdated);
        return done;
    }
    let custom_transition = error
        .condition()
        .is_some_and(|c| patch.set_custom(&c.type_, &c.status, &c.reason, &message));
    let created = request.meta().creation_timestamp.as_ref();
    match error.kind() {
        ErrorKind::Pending { requeue_after } => {
            patch.set_pending(&message);
            if custom_transition {
                done
            } else {
                Action::requeue(requeue_after)
            }
        }
        ErrorKind::Permanent => {
            shared.backoff.reset(backoff_key);
            patch.set_permanent_error(&message);
            done
        }
        _ if past(created, shared.options.max_retry_duration) => {
            shared.backoff.reset(backoff_key);
            tracing::info!(error = %message, "retried for longer than the maximum retry duration");
            patch.set_permanent_error(&message);
            done
        }
        _ => {
            patch.set_retryable_error(&message);
            if custom_transition {
                done
            } else {
                Action::requeue(shared.backoff.next(backoff_key))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_window_counts_from_creation() {
        let now = Timestamp::now().as_second();
        let at = |s: i64| Time(Timestamp::from_second(s).unwrap_or_default());
        assert!(!past(Some(&at(now - 10)), Duration::from_secs(60)));
        assert!(past(Some(&at(now - 61)), Duration::from_secs(60)));
        assert!(!past(None, Duration::ZERO));
    }
}
