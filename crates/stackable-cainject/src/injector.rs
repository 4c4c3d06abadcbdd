//! The in-process injector: keeps a set of targets carrying the current trust bundle.
//!
//! An operator that serves its own webhooks runs a [`CaInjector`] next to its server. It
//! subscribes to the bundle channel (the rotation driver's `ServingMaterial`, or any
//! [`tokio::sync::watch::Receiver`] of a [`BundleSource`]), injects on start and on every
//! change, and watches each target
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes>)
//! so that a `helm upgrade` that resets `caBundle` is repaired within seconds.
//!
//! Several replicas may run it at once without leader election: they apply the same content
//! with the same field manager, and nothing is written when the object already carries it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, future::Either};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Client,
    core::DynamicObject,
    runtime::{
        WatchStreamExt,
        events::{Event as KubeEvent, EventType, Recorder, Reporter},
        watcher::{self, Event},
    },
};
use stackable_certs::{CaBundle, Certificate, rotation::PublishedTrust};
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::{
    apply::{ApplyError, Outcome, Writer},
    install::Installed,
    patch,
    target::Target,
};

/// Something that carries a PEM trust bundle: what the injector's channel holds.
pub trait BundleSource: Send + Sync + 'static {
    /// The PEM bundle, or `None` while there is none yet.
    fn bundle_pem(&self) -> Option<String>;
}

impl BundleSource for String {
    fn bundle_pem(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl<T: BundleSource> BundleSource for Option<T> {
    fn bundle_pem(&self) -> Option<String> {
        self.as_ref().and_then(BundleSource::bundle_pem)
    }
}

impl<T: BundleSource + ?Sized> BundleSource for Arc<T> {
    fn bundle_pem(&self) -> Option<String> {
        (**self).bundle_pem()
    }
}

/// The trust bundle of the rotation driver's serving material: old and new CA during a
/// rotation overlap, exactly as `stackable-certs` publishes it.
impl BundleSource for stackable_certs::ServingMaterial {
    fn bundle_pem(&self) -> Option<String> {
        Some(self.ca_bundle_pem())
    }
}

impl BundleSource for CaBundle {
    fn bundle_pem(&self) -> Option<String> {
        Some(self.to_pem())
    }
}

/// The state of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// Not (yet) carrying the current bundle.
    Pending,
    /// Carries the current bundle.
    Injected,
    /// The last attempt failed; the message says why (and which RBAC rule is missing).
    Failed(String),
}

/// The state of every target, published on [`InjectorHandle::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectionStatus {
    /// Per target (by its display name).
    pub targets: BTreeMap<String, TargetState>,
    /// The last refusal of a bundle from the source, if the current one was refused.
    pub refused: Option<String>,
}

impl InjectionStatus {
    /// Whether every target carries the current bundle.
    pub fn is_ready(&self) -> bool {
        !self.targets.is_empty()
            && self
                .targets
                .values()
                .all(|state| *state == TargetState::Injected)
    }
}

/// Configures and starts the in-process injector.
pub struct CaInjector {
    writer: Writer,
    targets: Vec<Target>,
    installs: Vec<Installed>,
    reporter: Option<Reporter>,
    retry_after_failure: Duration,
}

impl std::fmt::Debug for CaInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaInjector")
            .field("writer", &self.writer)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl CaInjector {
    /// An injector writing as `field_manager` into `targets`.
    pub fn new(
        client: Client,
        field_manager: impl Into<String>,
        targets: impl IntoIterator<Item = Target>,
    ) -> Self {
        Self {
            writer: Writer::new(client, field_manager),
            targets: targets.into_iter().collect(),
            installs: Vec::new(),
            reporter: None,
            retry_after_failure: Duration::from_secs(10),
        }
    }

    /// Also installs these objects whole, with the bundle in the first write, and keeps them in
    /// step (see [`crate::install`]). They count as targets (status, readiness, published
    /// trust); a CRD is ready once Established.
    #[must_use]
    pub fn install(mut self, objects: impl IntoIterator<Item = Installed>) -> Self {
        self.installs.extend(objects);
        self
    }

    /// Also publishes Kubernetes Events on the targets (injections and refusals).
    #[must_use]
    pub fn with_events(mut self, reporter: Reporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// How long to wait before retrying a target after a permanent error (default 10 s).
    #[must_use]
    pub fn retry_after_failure(mut self, delay: Duration) -> Self {
        self.retry_after_failure = delay;
        self
    }

    /// Starts injecting: one task validates the source, one task per target keeps it
    /// carrying the bundle. Dropping the handle stops them.
    pub fn start<S: BundleSource>(self, source: watch::Receiver<S>) -> InjectorHandle {
        let mut jobs: Vec<(Target, Option<Installed>)> =
            self.targets.iter().map(|t| (t.clone(), None)).collect();
        jobs.extend(
            self.installs
                .iter()
                .map(|i| (i.target().clone(), Some(i.clone()))),
        );
        let initial = InjectionStatus {
            targets: jobs
                .iter()
                .map(|(t, _)| (t.to_string(), TargetState::Pending))
                .collect(),
            refused: None,
        };
        let (status_tx, status_rx) = watch::channel(initial);
        let status_tx = Arc::new(status_tx);
        let observed = Observed::new(jobs.iter().map(|(t, _)| t.to_string()));
        let published = observed.subscribe();
        let (bundle_tx, bundle_rx) = watch::channel::<Option<Arc<CaBundle>>>(None);
        let recorder = self
            .reporter
            .clone()
            .map(|reporter| Recorder::new(self.writer.client().clone(), reporter));

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(validate_source(
            source,
            bundle_tx,
            status_tx.clone(),
            recorder.clone(),
            jobs.iter().map(|(t, _)| t.clone()).collect(),
        )));
        for (target, install) in jobs {
            tasks.push(tokio::spawn(
                TargetTask {
                    writer: self.writer.clone(),
                    target,
                    install,
                    bundles: bundle_rx.clone(),
                    status: status_tx.clone(),
                    observed: observed.clone(),
                    recorder: recorder.clone(),
                    retry_after_failure: self.retry_after_failure,
                }
                .run(),
            ));
        }
        InjectorHandle {
            status: status_rx,
            published,
            listed: observed.listed.subscribe(),
            tasks,
        }
    }
}

/// What each target carries, as last seen by its watch: `None` until the watch listed it,
/// then the certificates present in **every** field the target covers (empty when the object
/// does not exist or a field holds no bundle).
#[derive(Clone)]
struct Observed {
    targets: Arc<Mutex<BTreeMap<String, Option<Vec<Certificate>>>>>,
    published: Arc<watch::Sender<PublishedTrust>>,
    listed: Arc<watch::Sender<bool>>,
}

impl Observed {
    fn new(targets: impl IntoIterator<Item = String>) -> Self {
        Observed {
            targets: Arc::new(Mutex::new(targets.into_iter().map(|t| (t, None)).collect())),
            published: Arc::new(watch::channel(PublishedTrust::observed([])).0),
            listed: Arc::new(watch::channel(false).0),
        }
    }

    fn subscribe(&self) -> watch::Receiver<PublishedTrust> {
        self.published.subscribe()
    }

    /// Records what `target` carries and republishes the certificates every target carries.
    fn set(&self, target: &str, certificates: Vec<Certificate>) {
        let (common, listed) = {
            let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
            targets.insert(target.to_owned(), Some(certificates));
            (
                intersection(targets.values()),
                targets.values().all(Option::is_some),
            )
        };
        // What the targets hold is published before they count as listed: whoever waits
        // for `listed` then reads it.
        self.published.send_if_modified(|current| {
            if *current == common {
                false
            } else {
                tracing::debug!(
                    %target,
                    trusted = ?common.certificates().iter().map(|c| c.info().serial_hex()).collect::<Vec<_>>(),
                    "CAs every target's caBundle holds changed"
                );
                *current = common;
                true
            }
        });
        self.listed.send_if_modified(|current| {
            let changed = *current != listed;
            *current = listed;
            changed
        });
    }
}

/// The certificates present in every target; nothing while a target was not observed yet.
fn intersection<'a>(
    targets: impl IntoIterator<Item = &'a Option<Vec<Certificate>>>,
) -> PublishedTrust {
    let mut common: Option<Vec<Certificate>> = None;
    for target in targets {
        let Some(certificates) = target else {
            return PublishedTrust::observed([]);
        };
        common = Some(match common {
            None => certificates.clone(),
            Some(common) => common
                .into_iter()
                .filter(|c| certificates.contains(c))
                .collect(),
        });
    }
    PublishedTrust::observed(common.unwrap_or_default())
}

/// The certificates in every field of `object` that `target` covers.
fn carried(target: &Target, object: Option<&serde_json::Value>) -> Vec<Certificate> {
    let Some(object) = object else {
        return Vec::new();
    };
    let fields = patch::published_bundles(target, object);
    let mut common: Option<Vec<Certificate>> = None;
    for field in fields {
        let certificates = field
            .and_then(|pem| Certificate::all_from_pem(&pem).ok())
            .unwrap_or_default();
        common = Some(match common {
            None => certificates,
            Some(common) => common
                .into_iter()
                .filter(|c| certificates.contains(c))
                .collect(),
        });
    }
    common.unwrap_or_default()
}

/// A running injector. Dropping it stops the injection tasks.
#[derive(Debug)]
pub struct InjectorHandle {
    status: watch::Receiver<InjectionStatus>,
    published: watch::Receiver<PublishedTrust>,
    listed: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl InjectorHandle {
    /// Resolves once every target carries the current bundle (cert-controller's `IsReady`).
    pub async fn ready(&self) {
        let mut status = self.status.clone();
        // The sender lives as long as the tasks; if they stopped, readiness never comes.
        if status.wait_for(InjectionStatus::is_ready).await.is_err() {
            futures::future::pending::<()>().await;
        }
    }

    /// Whether every target carries the current bundle now.
    pub fn is_ready(&self) -> bool {
        self.status.borrow().is_ready()
    }

    /// A watch of the per-target state, e.g. for a readiness probe.
    pub fn status(&self) -> watch::Receiver<InjectionStatus> {
        self.status.clone()
    }

    /// The CAs every target's `caBundle` holds, as read back from the API server by the
    /// targets' watches (after each write too): what `stackable-certs`' rotation driver waits
    /// for before leaves come from a new CA
    /// ([`RotationDriver::with_published_trust`](stackable_certs::rotation::RotationDriver::with_published_trust)).
    /// Holds no CA until every target was listed once.
    pub fn published_trust(&self) -> watch::Receiver<PublishedTrust> {
        self.published.clone()
    }

    /// Resolves once every target's watch has listed it once (whether it exists or not), so
    /// that [`Self::published_trust`] says what the targets hold.
    pub async fn listed(&self) {
        let mut listed = self.listed.clone();
        if listed.wait_for(|listed| *listed).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops the injector.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for InjectorHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn object_reference(target: &Target, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(target.kind().api_version()),
        kind: Some(target.kind().kind().to_owned()),
        name: Some(target.name().to_owned()),
        namespace: target.namespace().map(str::to_owned),
        uid,
        ..ObjectReference::default()
    }
}

/// Publishes an Event about `target`; failures are logged only.
pub(crate) async fn publish_event(
    recorder: Option<&Recorder>,
    target: &Target,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let Some(recorder) = recorder else { return };
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "InjectCABundle".to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder
        .publish(&event, &object_reference(target, None))
        .await
    {
        tracing::warn!(%target, %error, "cannot publish event");
    }
}

async fn validate_source<S: BundleSource>(
    mut source: watch::Receiver<S>,
    bundle_tx: watch::Sender<Option<Arc<CaBundle>>>,
    status: Arc<watch::Sender<InjectionStatus>>,
    recorder: Option<Recorder>,
    targets: Vec<Target>,
) {
    loop {
        let pem = source.borrow_and_update().bundle_pem();
        if let Some(pem) = pem {
            match CaBundle::from_pem(&pem) {
                Ok(bundle) => {
                    status.send_modify(|s| s.refused = None);
                    bundle_tx.send_if_modified(|current| {
                        if current.as_deref() == Some(&bundle) {
                            false
                        } else {
                            *current = Some(Arc::new(bundle));
                            true
                        }
                    });
                }
                Err(error) => {
                    let message =
                        format!("refused the new trust bundle, keeping the previous one: {error}");
                    tracing::error!(%error, "refused a trust bundle from the source; the previous bundle stays");
                    status.send_modify(|s| s.refused = Some(message.clone()));
                    for target in &targets {
                        publish_event(
                            recorder.as_ref(),
                            target,
                            EventType::Warning,
                            "CABundleRefused",
                            message.clone(),
                        )
                        .await;
                    }
                }
            }
        }
        if source.changed().await.is_err() {
            // The source is gone: keep serving the last bundle.
            futures::future::pending::<()>().await;
        }
    }
}

struct TargetTask {
    writer: Writer,
    target: Target,
    /// The whole object to install, for an installed target.
    install: Option<Installed>,
    bundles: watch::Receiver<Option<Arc<CaBundle>>>,
    status: Arc<watch::Sender<InjectionStatus>>,
    observed: Observed,
    recorder: Option<Recorder>,
    retry_after_failure: Duration,
}

impl TargetTask {
    /// Applies the installed object when it is missing, lacks the bundle or drifted; returns
    /// when to retry after a failure. When RBAC forbids installing it, falls back to injecting
    /// into the object others create (the CRD then comes from the generated YAML).
    async fn keep_installed(
        &mut self,
        current: Option<&serde_json::Value>,
        bundle: &CaBundle,
        backoff: &mut Duration,
    ) -> Option<Instant> {
        let installed = self.install.clone()?;
        let body = installed.body(&bundle.to_pem());
        if let Some(current) = current {
            if installed.is_installed(current, &body) {
                self.set_state(TargetState::Injected);
                return None;
            }
            if crate::install::contains(current, &body) {
                // Applied, not Established yet: the watch brings the change.
                self.set_state(TargetState::Pending);
                return None;
            }
        }
        match self.writer.apply_installed(&self.target, &body).await {
            Ok(()) => {
                *backoff = Duration::from_millis(500);
                self.set_state(TargetState::Pending);
                publish_event(
                    self.recorder.as_ref(),
                    &self.target,
                    EventType::Normal,
                    "Installed",
                    format!(
                        "applied with a trust bundle of {} certificate(s) as field manager {}",
                        bundle.len(),
                        self.writer.field_manager()
                    ),
                )
                .await;
                None
            }
            Err(error @ ApplyError::Forbidden { .. }) => {
                let message = format!(
                    "not allowed to install {}: {error}; injecting the caBundle into the object others create instead (apply it from the generated YAML, or grant the rule)",
                    self.target
                );
                tracing::warn!(target = %self.target, "{message}");
                self.set_state(TargetState::Failed(message.clone()));
                publish_event(
                    self.recorder.as_ref(),
                    &self.target,
                    EventType::Warning,
                    "InstallForbidden",
                    message,
                )
                .await;
                self.install = None;
                Some(Instant::now())
            }
            Err(error) => {
                tracing::error!(target = %self.target, error = %snafu::Report::from_error(&error), "installing failed");
                self.set_state(TargetState::Failed(
                    snafu::Report::from_error(&error).to_string(),
                ));
                let delay = if error.is_transient() {
                    let d = *backoff;
                    *backoff = (*backoff * 2).min(Duration::from_secs(30));
                    d
                } else {
                    self.retry_after_failure
                };
                Some(Instant::now() + delay)
            }
        }
    }

    fn observe(&self, object: Option<&serde_json::Value>) {
        self.observed
            .set(&self.target.to_string(), carried(&self.target, object));
    }

    fn set_state(&self, state: TargetState) {
        let key = self.target.to_string();
        self.status.send_if_modified(|status| {
            if status.targets.get(&key) == Some(&state) {
                false
            } else {
                status.targets.insert(key.clone(), state.clone());
                true
            }
        });
    }

    async fn run(mut self) {
        let ar = self.target.kind().api_resource();
        let api: Api<DynamicObject> = match self.target.namespace() {
            Some(ns) => Api::namespaced_with(self.writer.client().clone(), ns, &ar),
            None => Api::all_with(self.writer.client().clone(), &ar),
        };
        let config =
            watcher::Config::default().fields(&format!("metadata.name={}", self.target.name()));
        let mut events = watcher::watcher(api, config)
            .backoff(stackable_certs::rotation::kube::watch_backoff())
            .boxed();

        let mut bundle: Option<Arc<CaBundle>> = self.bundles.borrow_and_update().clone();
        // The object as last seen by the watch; `None` until seen.
        let mut current: Option<serde_json::Value> = None;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = Duration::from_millis(500);
        let mut bundles_open = true;
        loop {
            let mut dirty = false;
            let retry = match retry_at {
                Some(at) => Either::Left(tokio::time::sleep_until(at)),
                None => Either::Right(futures::future::pending::<()>()),
            };
            tokio::select! {
                changed = self.bundles.changed(), if bundles_open => {
                    if changed.is_err() {
                        bundles_open = false;
                    } else {
                        bundle = self.bundles.borrow_and_update().clone();
                        // Pending only when something will be written: a target known to be
                        // missing keeps saying so (a bundle published after the watch found
                        // nothing used to turn "does not exist" into "not injected yet").
                        if current.is_some() || self.install.is_some() {
                            self.set_state(TargetState::Pending);
                        }
                        dirty = true;
                    }
                }
                event = events.next() => match event {
                    Some(Ok(Event::Apply(object))) => {
                        current = serde_json::to_value(&object).ok();
                        self.observe(current.as_ref());
                        dirty = true;
                    }
                    Some(Ok(Event::InitApply(object))) => {
                        current = serde_json::to_value(&object).ok();
                        dirty = true;
                    }
                    Some(Ok(Event::Delete(_))) => {
                        current = None;
                        self.observe(None);
                        self.set_state(TargetState::Failed(format!("{} does not exist", self.target)));
                    }
                    Some(Ok(Event::InitDone)) if current.is_none() => {
                        self.observe(None);
                        self.set_state(TargetState::Failed(format!(
                            "{} does not exist (waiting for it to be created)",
                            self.target
                        )));
                    }
                    Some(Ok(Event::InitDone)) => {
                        self.observe(current.as_ref());
                    }
                    // A (re-)list starts: what was seen before may be gone.
                    Some(Ok(Event::Init)) => current = None,
                    Some(Err(error)) => {
                        tracing::warn!(target = %self.target, %error, "watching the target failed; retrying");
                    }
                    None => return,
                },
                () = retry => {
                    retry_at = None;
                    dirty = true;
                }
            }
            let (true, Some(bundle)) = (dirty, bundle.as_ref()) else {
                continue;
            };
            if self.install.is_some() {
                if let Some(retry) = self
                    .keep_installed(current.as_ref(), bundle, &mut backoff)
                    .await
                {
                    retry_at = Some(retry);
                }
                continue;
            }
            let Some(object) = current.as_ref() else {
                continue;
            };
            // Cheap check against the watched copy before any request.
            if let Ok(true) = patch::is_injected(&self.target, object, &bundle.to_pem()) {
                self.set_state(TargetState::Injected);
                retry_at = None;
                continue;
            }
            match self.writer.inject(&self.target, bundle).await {
                Ok(outcome) => {
                    self.set_state(TargetState::Injected);
                    retry_at = None;
                    backoff = Duration::from_millis(500);
                    if outcome == Outcome::Written {
                        publish_event(
                            self.recorder.as_ref(),
                            &self.target,
                            EventType::Normal,
                            "CABundleInjected",
                            format!(
                                "injected a trust bundle of {} CA certificate(s) as field manager {}",
                                bundle.len(),
                                self.writer.field_manager()
                            ),
                        )
                        .await;
                    }
                }
                Err(error) => {
                    let message = error.to_string();
                    tracing::error!(target = %self.target, error = %snafu::Report::from_error(&error), "caBundle injection failed");
                    self.set_state(TargetState::Failed(
                        snafu::Report::from_error(&error).to_string(),
                    ));
                    let delay = match &error {
                        ApplyError::Transient { .. } => {
                            let d = backoff;
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            d
                        }
                        _ => self.retry_after_failure,
                    };
                    retry_at = Some(Instant::now() + delay);
                    publish_event(
                        self.recorder.as_ref(),
                        &self.target,
                        EventType::Warning,
                        "CABundleInjectionFailed",
                        message,
                    )
                    .await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_target_injected() {
        let mut status = InjectionStatus::default();
        assert!(!status.is_ready());
        status.targets.insert("a".into(), TargetState::Injected);
        assert!(status.is_ready());
        status.targets.insert("b".into(), TargetState::Pending);
        assert!(!status.is_ready());
        status
            .targets
            .insert("b".into(), TargetState::Failed("x".into()));
        assert!(!status.is_ready());
    }

    #[test]
    fn bundle_sources() {
        assert_eq!("x".to_owned().bundle_pem().as_deref(), Some("x"));
        assert_eq!(None::<String>.bundle_pem(), None);
        assert_eq!(Arc::new("y".to_owned()).bundle_pem().as_deref(), Some("y"));
    }
}
