//! [`Context`]: what every reconciliation shares: the client and writer, the configuration,
//! the reference index (which target reads which Secret or Certificate), the per-kind trigger
//! channels, per-target backoff, Events and metrics.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    hash::{BuildHasher, Hasher},
    sync::Mutex,
    time::Duration,
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    core::ApiResource,
    runtime::events::{Event as KubeEvent, EventType, Recorder},
};
use stackable_cainject::{Target, TargetKind, Writer};
use tokio::sync::mpsc;

use crate::{
    config::Config,
    index::{Reference, ReferenceIndex},
    metrics::Metrics,
};

/// The first retry after a failure; doubled on every further failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between retries.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// Shared by every reconciliation.
pub(crate) struct Context {
    pub(crate) writer: Writer,
    pub(crate) config: Config,
    pub(crate) recorder: Recorder,
    pub(crate) metrics: Metrics,
    index: Mutex<ReferenceIndex>,
    triggers: BTreeMap<TargetKind, mpsc::UnboundedSender<Target>>,
    failures: Mutex<HashMap<Target, u32>>,
    /// The Certificate kind while cert-manager's CRD is installed and served.
    certificates: Mutex<Option<ApiResource>>,
    /// Targets whose source is a Certificate: re-evaluated when the CRD comes or goes.
    certificate_readers: Mutex<HashSet<Target>>,
    /// Targets whose source is the API server CA: re-evaluated when it changes.
    api_server_ca_readers: Mutex<HashSet<Target>>,
    /// The API server CA as last read (PEM), when it comes from a file.
    api_server_ca: Mutex<Option<String>>,
}

impl Context {
    pub(crate) fn new(
        client: Client,
        config: Config,
        metrics: Metrics,
        triggers: BTreeMap<TargetKind, mpsc::UnboundedSender<Target>>,
        certificates: Option<ApiResource>,
    ) -> Self {
        Context {
            writer: Writer::new(client.clone(), config.field_manager.clone()),
            recorder: Recorder::new(client, config.reporter.clone()),
            config,
            metrics,
            index: Mutex::new(ReferenceIndex::new()),
            triggers,
            failures: Mutex::new(HashMap::new()),
            certificates: Mutex::new(certificates),
            certificate_readers: Mutex::new(HashSet::new()),
            api_server_ca_readers: Mutex::new(HashSet::new()),
            api_server_ca: Mutex::new(None),
        }
    }

    pub(crate) fn client(&self) -> &Client {
        self.writer.client()
    }

    /// Asks for `target` to be reconciled (deduplicated by the applier's scheduler).
    pub(crate) fn enqueue(&self, target: Target) {
        if let Some(trigger) = self.triggers.get(&target.kind()) {
            let _ = trigger.send(target);
        }
    }

    /// Reconciles every target that reads `reference`.
    pub(crate) fn enqueue_referrers(&self, reference: &Reference) {
        let targets = lock(&self.index).targets_of(reference);
        for target in targets {
            self.enqueue(target);
        }
    }

    /// Records what `target` reads.
    pub(crate) fn track(&self, target: &Target, references: Vec<Reference>) {
        let reads_certificate = references
            .iter()
            .any(|r| matches!(r, Reference::Certificate(_)));
        set_membership(&self.certificate_readers, target, reads_certificate);
        set_membership(&self.api_server_ca_readers, target, false);
        lock(&self.index).set(target, references);
    }

    /// Records that `target` reads the API server CA.
    pub(crate) fn track_api_server_ca(&self, target: &Target) {
        self.untrack(target);
        set_membership(&self.api_server_ca_readers, target, true);
    }

    /// Forgets `target` (deleted, no longer annotated, or reading nothing watchable).
    pub(crate) fn untrack(&self, target: &Target) {
        set_membership(&self.certificate_readers, target, false);
        set_membership(&self.api_server_ca_readers, target, false);
        lock(&self.index).remove(target);
        lock(&self.failures).remove(target);
    }

    pub(crate) fn certificates(&self) -> Option<ApiResource> {
        lock(&self.certificates).clone()
    }

    /// Sets the served Certificate kind (`None`: not installed) and re-evaluates every
    /// target that reads a Certificate.
    pub(crate) fn set_certificates(&self, certificates: Option<ApiResource>) {
        *lock(&self.certificates) = certificates;
        let readers: Vec<Target> = lock(&self.certificate_readers).iter().cloned().collect();
        for target in readers {
            self.enqueue(target);
        }
    }

    /// The API server CA as last read from its file.
    pub(crate) fn api_server_ca_from_file(&self) -> Option<String> {
        lock(&self.api_server_ca).clone()
    }

    /// Stores a newly read API server CA; when it changed, re-evaluates its readers.
    pub(crate) fn set_api_server_ca(&self, pem: String) {
        let changed = {
            let mut current = lock(&self.api_server_ca);
            let changed = current.as_deref() != Some(pem.as_str());
            *current = Some(pem);
            changed
        };
        if changed {
            let readers: Vec<Target> = lock(&self.api_server_ca_readers).iter().cloned().collect();
            for target in readers {
                self.enqueue(target);
            }
        }
    }

    /// The wait before retrying `target` after another failure: 1 s, doubled each time, at
    /// most 5 minutes, with jitter.
    pub(crate) fn next_retry(&self, target: &Target) -> Duration {
        let mut failures = lock(&self.failures);
        let count = failures.entry(target.clone()).or_insert(0);
        let delay = FIRST_RETRY
            .saturating_mul(2u32.saturating_pow(*count))
            .min(MAX_RETRY);
        *count = count.saturating_add(1);
        jitter(delay, 0.2)
    }

    /// Forgets the failures of `target` (it succeeded).
    pub(crate) fn succeeded(&self, target: &Target) {
        lock(&self.failures).remove(target);
    }

    /// When a target that is fine is checked again.
    pub(crate) fn resync(&self) -> Duration {
        jitter(self.config.resync_period, 0.1)
    }

    pub(crate) async fn event(
        &self,
        target: &Target,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let reference = ObjectReference {
            api_version: Some(target.kind().api_version()),
            kind: Some(target.kind().kind().to_owned()),
            name: Some(target.name().to_owned()),
            namespace: target.namespace().map(str::to_owned),
            ..ObjectReference::default()
        };
        let event = KubeEvent {
            type_,
            reason: reason.to_owned(),
            note: Some(note.chars().take(1000).collect()),
            action: "InjectCABundle".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(%target, %error, "cannot publish event");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set_membership(set: &Mutex<HashSet<Target>>, target: &Target, member: bool) {
    let mut set = lock(set);
    if member {
        set.insert(target.clone());
    } else {
        set.remove(target);
    }
}

/// `duration` scaled by a random factor in `[1 - spread, 1 + spread]`, so that many targets
/// retried or resynced together spread out.
pub(crate) fn jitter(duration: Duration, spread: f64) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let unit = (random % 10_000) as f64 / 10_000.0; // [0, 1)
    duration.mul_f64(1.0 - spread + 2.0 * spread * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_spread() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(100), 0.1);
            assert!((90.0..=110.0).contains(&d.as_secs_f64()), "{d:?}");
        }
    }
}
