//! One reconciliation of one target: read it, find its source, resolve the bundle, write it
//! (server-side apply of the caBundle fields only, nothing when it already carries it).
//!
//! Outcomes: written or already in place → checked again at the next resync; refused (bad
//! source data, anti-hijack rules, a missing source) → an Event, the old bundle stays, checked
//! again when the source changes and at the next resync; failed in a way that may pass (a 429,
//! a 5xx, a timeout, a 403 while RBAC is being fixed) → retried with backoff (1 s doubling to
//! 5 minutes) by the applier's error policy.

use std::{collections::BTreeMap, sync::Arc};

use kube::{
    Resource,
    core::PartialObjectMeta,
    runtime::{controller::Action, events::EventType},
};
use snafu::Snafu;
use stackable_cainject::{ApplyError, Outcome, Target, TargetKind};

use stackable_certs::Certificate;
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::{annotations, context::Context, grace, sources::Failure};

/// A reconciliation that will be retried with backoff.
#[derive(Debug, Snafu)]
#[snafu(display("{message}"))]
pub struct Retry {
    message: String,
}

fn target_of<K: Resource>(kind: TargetKind, object: &PartialObjectMeta<K>) -> Option<Target> {
    Some(Target::new(
        kind,
        object.metadata.namespace.clone(),
        object.metadata.name.clone()?,
    ))
}

/// The applier's reconciler for targets of `kind`: one reconciliation in an `inject` span
/// carrying the `target` (`ValidatingWebhookConfiguration my-webhook`), so every line it logs,
/// the writer's and the Event recorder's too, names the object.
pub(crate) async fn reconcile<K: Resource>(
    kind: TargetKind,
    object: Arc<PartialObjectMeta<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Retry> {
    let Some(target) = target_of(kind, &object) else {
        return Ok(Action::await_change());
    };
    let span = tracing::info_span!("inject", %target);
    reconcile_in_span(target, ctx).instrument(span).await
}

async fn reconcile_in_span(target: Target, ctx: Arc<Context>) -> Result<Action, Retry> {
    let kind = target.kind();
    match reconcile_target(&target, &ctx).await {
        Ok(action) => {
            ctx.succeeded(&target);
            Ok(action)
        }
        Err(Failure::Refused(reason)) => {
            ctx.succeeded(&target);
            tracing::warn!(%reason, "refused to inject; the previous caBundle stays");
            ctx.metrics.refused(kind.kind());
            ctx.event(&target, EventType::Warning, "CABundleRefused", reason)
                .await;
            Ok(Action::requeue(ctx.resync()))
        }
        Err(Failure::Retry(message)) => {
            tracing::warn!(error = %message, "caBundle injection failed; retrying with backoff");
            ctx.metrics.error(kind.kind());
            ctx.event(
                &target,
                EventType::Warning,
                "CABundleInjectionFailed",
                message.clone(),
            )
            .await;
            Err(Retry { message })
        }
    }
}

/// The applier's error policy: retry with a per-target exponential backoff.
pub(crate) fn error_policy<K: Resource>(
    kind: TargetKind,
    object: Arc<PartialObjectMeta<K>>,
    _error: &Retry,
    ctx: Arc<Context>,
) -> Action {
    match target_of(kind, &object) {
        Some(target) => Action::requeue(ctx.next_retry(&target)),
        None => Action::await_change(),
    }
}

fn apply_failure(error: ApplyError) -> Failure {
    let message = snafu::Report::from_error(&error).to_string();
    match error {
        ApplyError::Transient { .. } | ApplyError::Forbidden { .. } => Failure::Retry(message),
        _ => Failure::Refused(message),
    }
}

async fn reconcile_target(target: &Target, ctx: &Context) -> Result<Action, Failure> {
    let current = match ctx.writer.get(target).await {
        Ok(current) => current,
        Err(ApplyError::NotFound { .. }) => {
            ctx.untrack(target);
            return Ok(Action::await_change());
        }
        Err(error) => return Err(apply_failure(error)),
    };
    let annotations: BTreeMap<String, String> = current
        .pointer("/metadata/annotations")
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default();
    let source = match annotations::parse_source(target.kind(), target.namespace(), &annotations) {
        Ok(Some(source)) => source,
        Ok(None) => {
            ctx.untrack(target);
            return Ok(Action::await_change());
        }
        Err(error) => {
            ctx.untrack(target);
            return Err(Failure::Refused(error.to_string()));
        }
    };
    let source_bundle = ctx.resolve(target, &source).await?;
    // Certificates the target trusts that left the source stay for the grace period.
    let now = OffsetDateTime::now_utc();
    let carried = carried_certificates(target, &current);
    let retired = grace::parse_retired(
        annotations
            .get(grace::RETIRED_ANNOTATION)
            .map(String::as_str),
    );
    let merged = grace::merge(
        &source_bundle,
        &carried,
        &retired,
        ctx.config.grace_period,
        now,
    );
    let owned: BTreeMap<String, String> = merged
        .annotation
        .iter()
        .map(|value| (grace::RETIRED_ANNOTATION.to_owned(), value.clone()))
        .collect();
    match ctx
        .writer
        .inject_with_annotations(
            target,
            &current,
            &merged.bundle,
            &owned,
            &[grace::RETIRED_ANNOTATION],
        )
        .await
    {
        Ok(Outcome::Written) => {
            ctx.metrics.injected(target.kind().kind());
            let retained = merged.bundle.len() - source_bundle.len();
            ctx.event(
                target,
                EventType::Normal,
                "CABundleInjected",
                if retained == 0 {
                    format!("injected {} certificate(s) from {source}", source_bundle.len())
                } else {
                    format!(
                        "injected {} certificate(s) from {source}, and kept {retained} that left it within the grace period",
                        source_bundle.len()
                    )
                },
            )
            .await;
        }
        Ok(Outcome::Unchanged) => {}
        Err(error) => return Err(apply_failure(error)),
    }
    // Come back when a retained certificate's grace ends, or at the resync.
    let resync = ctx.resync();
    let until_change = merged.next_change.map(|at| {
        std::time::Duration::try_from(at - now).unwrap_or_default()
            + std::time::Duration::from_secs(1)
    });
    Ok(Action::requeue(
        until_change.map_or(resync, |d| d.min(resync)),
    ))
}

/// Every certificate the target's bundle fields carry now (any certificate: a retained
/// self-signed leaf is not a CA); nothing from a field that does not parse.
fn carried_certificates(target: &Target, current: &serde_json::Value) -> Vec<Certificate> {
    let mut all: Vec<Certificate> = Vec::new();
    for pem in stackable_cainject::patch::published_bundles(target, current)
        .into_iter()
        .flatten()
    {
        for certificate in Certificate::all_from_pem(&pem).unwrap_or_default() {
            if !all.contains(&certificate) {
                all.push(certificate);
            }
        }
    }
    all
}
