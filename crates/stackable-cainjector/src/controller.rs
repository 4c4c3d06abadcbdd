//! The annotation-driven injection controller.
//!
//! It watches the metadata of CRDs, webhook configurations, APIServices, ConfigMaps and
//! Secrets (<https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables>
//! style partial objects: metadata only), keeps a [`ReferenceIndex`] from each Secret or
//! Certificate to the objects that read it, and reconciles only the objects a change
//! concerns. Secret data is read with one GET per referenced Secret and never cached.
//!
//! cert-manager may be installed or removed while the injector runs: a metadata watch of the
//! one CRD [`CERTIFICATE_CRD`] (field selector on its name) notices it. When the CRD appears,
//! the injector polls until `cert-manager.io/v1` Certificates can be listed, starts the
//! Certificate watches and re-evaluates every object annotated with `inject-ca-from`; when it
//! goes away (or starts terminating) the watches stop and those objects are re-evaluated
//! again, which reports on each that the Certificate CRD is not installed (Event
//! `CABundleRefused`; the bundle already injected stays). See
//! <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#create-a-customresourcedefinition>
//! for when a new CRD's kind becomes served.

use std::{
    collections::{BTreeMap, HashSet},
    fmt::Debug,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use futures::{
    StreamExt,
    stream::{AbortHandle, BoxStream, SelectAll},
};
use k8s_openapi::{
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        core::v1::{ConfigMap, ObjectReference, Secret},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    kube_aggregator::pkg::apis::apiregistration::v1::APIService,
};
use kube::{
    Api, Client, Resource,
    api::{DynamicObject, ListParams},
    core::{ApiResource, GroupVersionKind, PartialObjectMeta},
    runtime::{
        WatchStreamExt,
        events::{Event as KubeEvent, EventType, Recorder, Reporter},
        watcher::{self, Event},
    },
};
use serde::de::DeserializeOwned;
use snafu::Snafu;
use stackable_cainject::{
    ApplyError, Outcome, Target, TargetKind, TrustBundle, Writer,
    annotations::{self, CaSource, ObjectKey},
    index::{Reference, ReferenceIndex},
};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// The name of cert-manager's Certificate CRD, watched (metadata only) to notice cert-manager
/// being installed or removed while the injector runs.
pub const CERTIFICATE_CRD: &str = "certificates.cert-manager.io";

/// Where `service.beta.openshift.io/inject-cabundle` takes its CA from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceCa {
    /// The API server CA (the default).
    ApiServerCa,
    /// `ca.crt` of this Secret (operator-configured, so no annotation is required on it).
    Secret(ObjectKey),
}

/// The controller's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server-side apply field manager.
    pub field_manager: String,
    /// Namespaces whose Secrets, ConfigMaps and Certificates are watched; empty for all.
    pub namespaces: Vec<String>,
    /// The API server CA, for `inject-apiserver-ca` (`None` when unknown).
    pub api_server_ca: Option<String>,
    /// The CA of `inject-cabundle`.
    pub service_ca: ServiceCa,
    /// Who publishes the Events.
    pub reporter: Reporter,
}

/// Why the controller stopped.
#[derive(Debug, Snafu)]
pub enum Error {
    /// A watch stream ended, which only happens when the client is shut down.
    #[snafu(display("the watch streams ended"))]
    StreamsEnded,
}

/// Why a source yielded no bundle: reported on the target, the old bundle stays.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal(String);

struct Shared {
    writer: Writer,
    config: Config,
    index: Mutex<ReferenceIndex>,
    pending: Mutex<HashSet<Target>>,
    queue: mpsc::UnboundedSender<Target>,
    recorder: Recorder,
    metrics: Metrics,
    /// The Certificate kind while cert-manager's CRD is installed and served.
    certificates: Mutex<Option<ApiResource>>,
    /// Targets whose source is a Certificate (`inject-ca-from`): re-evaluated when the
    /// Certificate CRD appears or goes away.
    certificate_readers: Mutex<HashSet<Target>>,
}

impl Shared {
    fn enqueue(&self, target: Target) {
        let fresh = self
            .pending
            .lock()
            .map(|mut p| p.insert(target.clone()))
            .unwrap_or(true);
        if fresh {
            let _ = self.queue.send(target);
        }
    }

    fn with_index<T>(&self, f: impl FnOnce(&mut ReferenceIndex) -> T) -> Option<T> {
        self.index.lock().ok().map(|mut index| f(&mut index))
    }

    /// Records what `target` reads (in the index, and whether it reads a Certificate).
    fn track(&self, target: &Target, references: Vec<Reference>) {
        let reads_certificate = references
            .iter()
            .any(|r| matches!(r, Reference::Certificate(_)));
        if let Ok(mut readers) = self.certificate_readers.lock() {
            if reads_certificate {
                readers.insert(target.clone());
            } else {
                readers.remove(target);
            }
        }
        self.with_index(|i| i.set(target, references));
    }

    /// Forgets `target` (deleted, no longer annotated, or reading nothing watchable).
    fn untrack(&self, target: &Target) {
        if let Ok(mut readers) = self.certificate_readers.lock() {
            readers.remove(target);
        }
        self.with_index(|i| i.remove(target));
    }

    fn certificates(&self) -> Option<ApiResource> {
        self.certificates.lock().ok().and_then(|c| c.clone())
    }

    /// Sets the served Certificate kind (`None`: not installed) and re-evaluates every
    /// object that reads a Certificate.
    fn set_certificates(&self, certificates: Option<ApiResource>) {
        if let Ok(mut slot) = self.certificates.lock() {
            *slot = certificates;
        }
        let readers: Vec<Target> = self
            .certificate_readers
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        for target in readers {
            self.enqueue(target);
        }
    }

    fn enqueue_referrers(&self, reference: &Reference) {
        let targets = self
            .with_index(|index| index.targets_of(reference))
            .unwrap_or_default();
        for target in targets {
            self.enqueue(target);
        }
    }

    fn in_scope(&self, namespace: &str) -> bool {
        self.config.namespaces.is_empty() || self.config.namespaces.iter().any(|n| n == namespace)
    }

    async fn event(&self, target: &Target, type_: EventType, reason: &str, note: String) {
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

    async fn refuse(&self, target: &Target, refusal: Refusal) {
        tracing::warn!(%target, reason = %refusal.0, "refused to inject; the previous caBundle stays");
        self.metrics.refused(target.kind().kind());
        self.event(target, EventType::Warning, "CABundleRefused", refusal.0)
            .await;
    }

    /// GETs a Secret and reads its `ca.crt`; the Secret is dropped right after.
    async fn secret_ca(
        &self,
        key: &ObjectKey,
        check: impl FnOnce(&BTreeMap<String, String>) -> Result<(), Refusal>,
    ) -> Result<TrustBundle, Refusal> {
        let api: Api<Secret> = Api::namespaced(self.writer.client().clone(), &key.namespace);
        let secret = match api.get_opt(&key.name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return Err(Refusal(format!("Secret {key} does not exist"))),
            Err(error) => {
                return Err(Refusal(format!(
                    "cannot read Secret {key} (needs RBAC rule \"get secrets {}\" in namespace {}): {error}",
                    key.name, key.namespace
                )));
            }
        };
        check(
            secret
                .metadata
                .annotations
                .as_ref()
                .unwrap_or(&BTreeMap::new()),
        )?;
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(annotations::CA_CRT_KEY))
            .ok_or_else(|| {
                Refusal(format!(
                    "Secret {key} has no {} key",
                    annotations::CA_CRT_KEY
                ))
            })?;
        TrustBundle::from_pem_normalized(&data.0, SystemTime::now()).map_err(|error| {
            Refusal(format!(
                "{} of Secret {key} refused: {error}",
                annotations::CA_CRT_KEY
            ))
        })
    }

    /// Resolves a source to a bundle, recording in the index what the target reads.
    async fn resolve(&self, target: &Target, source: &CaSource) -> Result<TrustBundle, Refusal> {
        // A source outside the watched namespaces would be read once and never followed.
        if let CaSource::Secret(key) | CaSource::Certificate(key) = source
            && !self.in_scope(&key.namespace)
        {
            self.untrack(target);
            return Err(Refusal(format!(
                "{source} is outside the namespaces this injector watches ({:?}); add --namespace {}",
                self.config.namespaces, key.namespace
            )));
        }
        match source {
            CaSource::Secret(key) => {
                self.track(target, vec![Reference::Secret(key.clone())]);
                self.secret_ca(key, |annotations| {
                    if annotations::allows_direct_injection(annotations) {
                        Ok(())
                    } else {
                        Err(Refusal(format!(
                            "Secret {key} is not marked {}: \"true\", so {} may not read it",
                            annotations::ALLOW_DIRECT_INJECTION,
                            annotations::INJECT_CA_FROM_SECRET
                        )))
                    }
                })
                .await
            }
            CaSource::Certificate(key) => {
                self.track(target, vec![Reference::Certificate(key.clone())]);
                let Some(ar) = self.certificates() else {
                    return Err(Refusal(format!(
                        "{} names Certificate {key}, but cert-manager's Certificate CRD ({CERTIFICATE_CRD}, cert-manager.io/v1) is not installed; the bundle is injected as soon as it is",
                        annotations::INJECT_CA_FROM
                    )));
                };
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.writer.client().clone(), &key.namespace, &ar);
                let certificate = match api.get_opt(&key.name).await {
                    Ok(Some(c)) => c,
                    Ok(None) => return Err(Refusal(format!("Certificate {key} does not exist"))),
                    Err(error) => {
                        return Err(Refusal(format!("cannot read Certificate {key}: {error}")));
                    }
                };
                let Some(secret_name) = certificate
                    .data
                    .pointer("/spec/secretName")
                    .and_then(serde_json::Value::as_str)
                else {
                    return Err(Refusal(format!("Certificate {key} has no spec.secretName")));
                };
                let secret = ObjectKey::new(&key.namespace, secret_name);
                self.track(
                    target,
                    vec![
                        Reference::Certificate(key.clone()),
                        Reference::Secret(secret.clone()),
                    ],
                );
                self.secret_ca(&secret, |annotations| {
                    if annotations::belongs_to_certificate(annotations, &key.name) {
                        Ok(())
                    } else {
                        Err(Refusal(format!(
                            "Secret {secret} does not carry {}: {:?}, so it was not written for Certificate {key}",
                            annotations::CERTIFICATE_NAME,
                            key.name
                        )))
                    }
                })
                .await
            }
            CaSource::ApiServerCa => {
                self.untrack(target);
                self.api_server_ca()
            }
            CaSource::ServiceCa => match &self.config.service_ca {
                ServiceCa::ApiServerCa => {
                    self.untrack(target);
                    self.api_server_ca()
                }
                ServiceCa::Secret(key) => {
                    self.track(target, vec![Reference::Secret(key.clone())]);
                    self.secret_ca(key, |_| Ok(())).await
                }
            },
        }
    }

    fn api_server_ca(&self) -> Result<TrustBundle, Refusal> {
        let pem = self.config.api_server_ca.as_deref().ok_or_else(|| {
            Refusal(
                "the injector knows no API server CA (its kubeconfig or service account has none)"
                    .to_owned(),
            )
        })?;
        TrustBundle::from_pem_normalized(pem, SystemTime::now())
            .map_err(|error| Refusal(format!("the API server CA was refused: {error}")))
    }

    async fn reconcile(self: &Arc<Self>, target: Target) {
        let current = match self.writer.get(&target).await {
            Ok(current) => current,
            Err(ApplyError::NotFound { .. }) => {
                self.untrack(&target);
                return;
            }
            Err(error) => {
                self.fail(&target, error).await;
                return;
            }
        };
        let annotations: BTreeMap<String, String> = current
            .pointer("/metadata/annotations")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default();
        let source =
            match annotations::parse_source(target.kind(), target.namespace(), &annotations) {
                Ok(Some(source)) => source,
                Ok(None) => {
                    self.untrack(&target);
                    return;
                }
                Err(error) => {
                    self.untrack(&target);
                    self.refuse(&target, Refusal(error.to_string())).await;
                    return;
                }
            };
        let bundle = match self.resolve(&target, &source).await {
            Ok(bundle) => bundle,
            Err(refusal) => {
                self.refuse(&target, refusal).await;
                return;
            }
        };
        match self.writer.inject_into(&target, &current, &bundle).await {
            Ok(Outcome::Written) => {
                self.metrics.injected(target.kind().kind());
                self.event(
                    &target,
                    EventType::Normal,
                    "CABundleInjected",
                    format!("injected {} CA certificate(s) from {source}", bundle.len()),
                )
                .await;
            }
            Ok(Outcome::Unchanged) => {}
            Err(ApplyError::InvalidTarget { source: error, .. }) => {
                self.refuse(&target, Refusal(error.to_string())).await;
            }
            Err(error) => self.fail(&target, error).await,
        }
    }

    async fn fail(self: &Arc<Self>, target: &Target, error: ApplyError) {
        let message = snafu::Report::from_error(&error).to_string();
        tracing::error!(%target, error = %message, "caBundle injection failed");
        self.metrics.error(target.kind().kind());
        self.event(
            target,
            EventType::Warning,
            "CABundleInjectionFailed",
            message,
        )
        .await;
        // Retry later; a change of the target or its source retries sooner.
        let shared = Arc::clone(self);
        let target = target.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(if error.is_transient() {
                2
            } else {
                30
            }))
            .await;
            shared.enqueue(target);
        });
    }
}

fn has_injection_annotation(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations.is_some_and(|a| {
        [
            annotations::INJECT_CA_FROM,
            annotations::INJECT_CA_FROM_SECRET,
            annotations::INJECT_APISERVER_CA,
            annotations::OPENSHIFT_INJECT_CABUNDLE,
        ]
        .iter()
        .any(|key| a.contains_key(*key))
    })
}

/// What a watch stream reports to the controller.
enum Signal {
    Target {
        target: Target,
        annotated: bool,
        deleted: bool,
    },
    Reference {
        reference: Reference,
    },
    /// cert-manager's Certificate CRD exists (`true`) or is gone or terminating (`false`).
    CertificateCrd {
        installed: bool,
    },
    /// Certificates can be listed (the answer to the `generation`-th appearance of the
    /// CRD).
    CertificatesServed {
        kind: ApiResource,
        generation: u64,
    },
}

fn metadata_stream<K>(
    api: Api<PartialObjectMeta<K>>,
    map: impl Fn(PartialObjectMeta<K>, bool) -> Option<Signal> + Send + 'static,
) -> BoxStream<'static, Signal>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Clone,
{
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            let signal = match event {
                Ok(Event::Apply(object) | Event::InitApply(object)) => map(object, false),
                Ok(Event::Delete(object)) => map(object, true),
                Ok(Event::Init | Event::InitDone) => None,
                Err(error) => {
                    tracing::warn!(%error, "watch failed; retrying");
                    None
                }
            };
            futures::future::ready(signal)
        })
        .boxed()
}

fn target_stream<K>(api: Api<PartialObjectMeta<K>>, kind: TargetKind) -> BoxStream<'static, Signal>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    metadata_stream(api, move |object, deleted| {
        let name = object.metadata.name.clone()?;
        Some(Signal::Target {
            target: Target::new(kind, object.metadata.namespace.clone(), name),
            annotated: has_injection_annotation(object.metadata.annotations.as_ref()),
            deleted,
        })
    })
}

fn secret_stream(client: &Client, namespace: Option<&str>) -> BoxStream<'static, Signal> {
    let api: Api<PartialObjectMeta<Secret>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    metadata_stream(api, |object, _| {
        Some(Signal::Reference {
            reference: Reference::Secret(ObjectKey::new(
                object.metadata.namespace?,
                object.metadata.name?,
            )),
        })
    })
}

/// Whether cert-manager's Certificate CRD exists: a metadata watch of that one CRD.
///
/// A relist that does not contain it (it was deleted while the watch was down) reports it
/// gone; a CRD with a deletionTimestamp counts as gone (its Certificates are being removed).
fn certificate_crd_stream(client: &Client) -> BoxStream<'static, Signal> {
    let api: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={CERTIFICATE_CRD}"));
    let mut presence = CrdPresence::default();
    watcher::watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let signal = match event {
                Ok(event) => presence
                    .on(&event)
                    .map(|installed| Signal::CertificateCrd { installed }),
                Err(error) => {
                    tracing::warn!(%error, "watch of {CERTIFICATE_CRD} failed; retrying");
                    None
                }
            };
            futures::future::ready(signal)
        })
        .boxed()
}

/// Turns the events of a watch of one CRD into "installed" (`true`) or "gone" (`false`).
#[derive(Debug, Default)]
struct CrdPresence {
    /// Whether the current (re)list contained the CRD.
    listed: bool,
}

impl CrdPresence {
    fn on(&mut self, event: &Event<PartialObjectMeta<CustomResourceDefinition>>) -> Option<bool> {
        match event {
            Event::Init => {
                self.listed = false;
                None
            }
            Event::InitApply(crd) | Event::Apply(crd) => {
                self.listed = true;
                Some(crd.metadata.deletion_timestamp.is_none())
            }
            // A (re)list without it: it was deleted while the watch was down, or never existed.
            Event::InitDone => (!self.listed).then_some(false),
            Event::Delete(_) => {
                self.listed = false;
                Some(false)
            }
        }
    }
}

fn certificate_stream(
    client: &Client,
    ar: &ApiResource,
    namespace: Option<&str>,
) -> BoxStream<'static, Signal> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    // Certificates are small and few; their spec.secretName is read on reconcile.
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(|event| {
            let object = match event {
                Ok(Event::Apply(o) | Event::InitApply(o) | Event::Delete(o)) => Some(o),
                _ => None,
            };
            futures::future::ready(object.and_then(|o| {
                Some(Signal::Reference {
                    reference: Reference::Certificate(ObjectKey::new(
                        o.metadata.namespace?,
                        o.metadata.name?,
                    )),
                })
            }))
        })
        .boxed()
}

/// Detects cert-manager's Certificate kind via discovery.
pub async fn discover_certificates(client: &Client) -> Option<ApiResource> {
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate");
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((ar, _)) => Some(ar),
        Err(error) => {
            tracing::debug!(%error, "cert-manager's Certificate kind is not served");
            None
        }
    }
}

/// Whether Certificates can be listed (in `namespace`, or cluster-wide): the kind is served.
///
/// Probing the resource itself rather than discovery: a new CRD's kind is served as soon as
/// it is Established, while the API server's discovery documents follow about two seconds
/// later.
async fn certificates_served(client: &Client, namespace: Option<&str>) -> Option<ApiResource> {
    let kind = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    );
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &kind),
        None => Api::all_with(client.clone(), &kind),
    };
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Some(kind),
        Err(error) => {
            tracing::debug!(%error, "cert-manager.io/v1 Certificates are not served yet");
            None
        }
    }
}

/// Polls until Certificates are served (a new CRD is Established within a second or so),
/// then reports it.
async fn await_certificates(
    client: Client,
    namespace: Option<String>,
    generation: u64,
    report: mpsc::UnboundedSender<Signal>,
) {
    // Every 250 ms for the first 10 s, then every 10 s (a CRD that does not serve v1, or is
    // not Established, or that RBAC does not let us list, may take long).
    let mut attempts = 0u32;
    loop {
        if let Some(kind) = certificates_served(&client, namespace.as_deref()).await {
            let _ = report.send(Signal::CertificatesServed { kind, generation });
            return;
        }
        attempts += 1;
        let delay = if attempts < 40 {
            Duration::from_millis(250)
        } else {
            if attempts == 40 {
                tracing::warn!(
                    "{CERTIFICATE_CRD} exists but cert-manager.io/v1 Certificates cannot be listed after 10 s (not served, or RBAC); still trying"
                );
            }
            Duration::from_secs(10)
        };
        tokio::time::sleep(delay).await;
    }
}

/// The Certificate watches and the probe in flight, switched on and off with the CRD.
struct CertManager {
    client: Client,
    namespaces: Vec<Option<String>>,
    report: mpsc::UnboundedSender<Signal>,
    /// Bumped on every appearance or disappearance; stale probe answers are ignored.
    generation: u64,
    discovery: Option<tokio::task::JoinHandle<()>>,
    watches: Vec<AbortHandle>,
}

impl CertManager {
    fn active(&self) -> bool {
        !self.watches.is_empty()
    }

    /// Starts the Certificate watches (one per watched namespace).
    fn start_watches(
        &mut self,
        kind: &ApiResource,
        signals: &mut SelectAll<BoxStream<'static, Signal>>,
    ) {
        for namespace in &self.namespaces {
            let (stream, handle) = futures::stream::abortable(certificate_stream(
                &self.client,
                kind,
                namespace.as_deref(),
            ));
            self.watches.push(handle);
            signals.push(stream.boxed());
        }
    }

    fn stop(&mut self) {
        self.generation += 1;
        if let Some(discovery) = self.discovery.take() {
            discovery.abort();
        }
        for watch in self.watches.drain(..) {
            watch.abort();
        }
    }

    /// Handles a [`Signal::CertificateCrd`] or [`Signal::CertificatesServed`].
    fn handle(
        &mut self,
        signal: Signal,
        shared: &Shared,
        signals: &mut SelectAll<BoxStream<'static, Signal>>,
    ) {
        match signal {
            Signal::CertificateCrd { installed: true } => {
                if self.active() || self.discovery.is_some() {
                    return;
                }
                self.generation += 1;
                tracing::info!("{CERTIFICATE_CRD} appeared; waiting until Certificates are served");
                self.discovery = Some(tokio::spawn(await_certificates(
                    self.client.clone(),
                    self.namespaces.first().cloned().flatten(),
                    self.generation,
                    self.report.clone(),
                )));
            }
            Signal::CertificateCrd { installed: false } => {
                let was_active = self.active();
                self.stop();
                if was_active {
                    tracing::info!(
                        "{CERTIFICATE_CRD} is gone; stopped watching Certificates, inject-ca-from is refused until it is back"
                    );
                    shared.set_certificates(None);
                }
            }
            Signal::CertificatesServed { kind, generation } => {
                if generation != self.generation || self.active() {
                    return;
                }
                self.discovery = None;
                tracing::info!(
                    version = %kind.api_version,
                    "cert-manager's Certificate kind is served; watching Certificates and re-evaluating inject-ca-from"
                );
                self.start_watches(&kind, signals);
                shared.set_certificates(Some(kind));
            }
            Signal::Target { .. } | Signal::Reference { .. } => {}
        }
    }
}

/// Runs the controller until its watch streams end.
pub async fn run(client: Client, config: Config, metrics: Metrics) -> Result<(), Error> {
    let certificates = discover_certificates(&client).await;
    let (queue, mut queued) = mpsc::unbounded_channel();
    let namespaces: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let shared = Arc::new(Shared {
        writer: Writer::new(client.clone(), config.field_manager.clone()),
        recorder: Recorder::new(client.clone(), config.reporter.clone()),
        config,
        index: Mutex::new(ReferenceIndex::new()),
        pending: Mutex::new(HashSet::new()),
        queue,
        metrics,
        certificates: Mutex::new(certificates.clone()),
        certificate_readers: Mutex::new(HashSet::new()),
    });

    let mut streams: Vec<BoxStream<'static, Signal>> = vec![
        target_stream(
            Api::<PartialObjectMeta<CustomResourceDefinition>>::all(client.clone()),
            TargetKind::CustomResourceDefinition,
        ),
        target_stream(
            Api::<PartialObjectMeta<ValidatingWebhookConfiguration>>::all(client.clone()),
            TargetKind::ValidatingWebhookConfiguration,
        ),
        target_stream(
            Api::<PartialObjectMeta<MutatingWebhookConfiguration>>::all(client.clone()),
            TargetKind::MutatingWebhookConfiguration,
        ),
        target_stream(
            Api::<PartialObjectMeta<APIService>>::all(client.clone()),
            TargetKind::ApiService,
        ),
        certificate_crd_stream(&client),
    ];
    for namespace in &namespaces {
        let config_maps: Api<PartialObjectMeta<ConfigMap>> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        streams.push(target_stream(config_maps, TargetKind::ConfigMap));
        streams.push(secret_stream(&client, namespace.as_deref()));
    }
    // The configured service CA Secret may live outside the watched namespaces.
    if let ServiceCa::Secret(key) = &shared.config.service_ca
        && !shared.in_scope(&key.namespace)
    {
        streams.push(secret_stream(&client, Some(&key.namespace)));
    }
    let (report, reports) = mpsc::unbounded_channel();
    streams.push(
        futures::stream::unfold(reports, |mut reports| async move {
            reports.recv().await.map(|signal| (signal, reports))
        })
        .boxed(),
    );
    let mut signals = futures::stream::select_all(streams);
    let mut cert_manager = CertManager {
        client: client.clone(),
        namespaces,
        report,
        generation: 0,
        discovery: None,
        watches: Vec::new(),
    };
    match &certificates {
        Some(kind) => cert_manager.start_watches(kind, &mut signals),
        None => tracing::info!(
            "cert-manager's Certificate kind is not served; inject-ca-from is refused until {CERTIFICATE_CRD} is installed"
        ),
    }

    let worker = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Some(target) = queued.recv().await {
                if let Ok(mut pending) = shared.pending.lock() {
                    pending.remove(&target);
                }
                shared.reconcile(target).await;
            }
        })
    };

    while let Some(signal) = signals.next().await {
        match signal {
            Signal::Target {
                target,
                annotated,
                deleted,
            } => {
                let indexed = shared
                    .with_index(|i| !i.references_of(&target).is_empty())
                    .unwrap_or(false);
                if deleted {
                    shared.untrack(&target);
                } else if annotated || indexed {
                    shared.enqueue(target);
                }
            }
            Signal::Reference { reference } => shared.enqueue_referrers(&reference),
            signal @ (Signal::CertificateCrd { .. } | Signal::CertificatesServed { .. }) => {
                cert_manager.handle(signal, &shared, &mut signals);
            }
        }
    }
    cert_manager.stop();
    worker.abort();
    StreamsEndedSnafu.fail()
}

/// Converts DER certificates (a kubeconfig's or service account's CA) to PEM.
pub fn der_to_pem(certificates: &[Vec<u8>]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    certificates
        .iter()
        .map(|der| pem::encode_config(&pem::Pem::new("CERTIFICATE", der.clone()), config))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_injection_annotations() {
        let mut a = BTreeMap::new();
        assert!(!has_injection_annotation(None));
        assert!(!has_injection_annotation(Some(&a)));
        a.insert("other".to_owned(), "x".to_owned());
        assert!(!has_injection_annotation(Some(&a)));
        a.insert(
            annotations::OPENSHIFT_INJECT_CABUNDLE.to_owned(),
            "true".to_owned(),
        );
        assert!(has_injection_annotation(Some(&a)));
    }

    fn crd(deleting: bool) -> PartialObjectMeta<CustomResourceDefinition> {
        let mut crd = PartialObjectMeta::<CustomResourceDefinition>::default();
        crd.metadata.name = Some(CERTIFICATE_CRD.to_owned());
        if deleting {
            crd.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
            );
        }
        crd
    }

    #[test]
    fn crd_presence_follows_lists_and_events() {
        let mut p = CrdPresence::default();
        // Started without the CRD: the initial list is empty.
        assert_eq!(p.on(&Event::Init), None);
        assert_eq!(p.on(&Event::InitDone), Some(false));
        // Installed, updated, deleted.
        assert_eq!(p.on(&Event::Apply(crd(false))), Some(true));
        assert_eq!(
            p.on(&Event::Apply(crd(true))),
            Some(false),
            "terminating counts as gone"
        );
        assert_eq!(p.on(&Event::Delete(crd(true))), Some(false));
        // A relist that contains it reports it, one that does not reports it gone.
        assert_eq!(p.on(&Event::Init), None);
        assert_eq!(p.on(&Event::InitApply(crd(false))), Some(true));
        assert_eq!(p.on(&Event::InitDone), None);
        assert_eq!(p.on(&Event::Init), None);
        assert_eq!(p.on(&Event::InitDone), Some(false));
    }

    #[test]
    fn der_to_pem_is_lf_pem() {
        let pem = der_to_pem(&[vec![1, 2, 3], vec![4]]);
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----\n").count(), 2);
        assert!(!pem.contains('\r'));
    }
}
