//! [`ServingCertificates`]: an operator's webhook certificates in one call, safe with any
//! number of replicas.
//!
//! [`ServingCertificates::shared`] wires what an operator running several replicas needs:
//! the CA in one Secret that every replica shares (`stackable-certs`' `SecretStore`, watched
//! by name), the rotation driver, this replica's own leaf, and the in-process injector that
//! keeps the trust bundle in every target's `caBundle`
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>).
//! The rotation is gated on what the injector reads back from the API server: a replica
//! serves a leaf from a new CA only once that CA is in every target, and it reports ready only
//! while the CA of its leaf is. A store that cannot be used (unreadable, forbidden, holding
//! material that must not be overwritten) is retried with backoff and reported in the status:
//! the process never exits over it.
//!
//! ```no_run
//! use stackable_cainject::{ServingCertificates, Target};
//! use stackable_certs::LeafOptions;
//! # async fn run(client: kube::Client) -> Result<(), stackable_cainject::serving::Error> {
//! let certificates = ServingCertificates::shared(
//!     client,
//!     "my-operator",                                   // the Pod's namespace
//!     "my-operator-webhook-ca",                        // the Secret every replica shares
//!     LeafOptions::for_service("my-operator", "my-operator"),
//! )
//! .inject_into([Target::crd("crontabs.example.com")])
//! .start()?;
//! certificates.ready().await; // a leaf whose CA is in every caBundle
//! # Ok(())
//! # }
//! ```

use std::{sync::Arc, time::Duration};

use kube::{Client, runtime::events::Reporter};
use snafu::{ResultExt as _, Snafu};
use stackable_certs::{
    LeafOptions, ServingMaterial,
    rotation::{
        InMemoryStore, PolicyError, PublishedTrust, RotationDriver, RotationPolicy, RotationStatus,
        RunningRotation, Store, kube::SecretStore,
    },
};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    injector::{CaInjector, InjectionStatus, InjectorHandle, TargetState},
    install::Installed,
    target::Target,
};

/// How long a starting replica waits for the injector to list every target before it starts
/// the rotation (it needs to know what the targets trust to restore a lost Secret safely).
const LIST_TARGETS_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`ServingCertificates::start`] refused to start.
#[derive(Debug, Snafu)]
pub enum Error {
    /// The rotation policy is invalid.
    #[snafu(display("invalid rotation policy for the serving certificates"))]
    InvalidPolicy {
        /// What is wrong.
        source: PolicyError,
    },
}

/// Where the CA lives.
#[derive(Clone, Debug)]
enum Storage {
    /// One Secret shared by every replica.
    Secret { namespace: String, name: String },
    /// This process's memory.
    SingleProcess,
}

/// Configures an operator's serving certificates: CA storage, leaf, policy and the targets
/// whose `caBundle` must trust them. Start it with [`ServingCertificates::start`] (or hand it
/// to `stackable-webhook`'s server, which starts it).
#[derive(Clone)]
pub struct ServingCertificates {
    client: Client,
    storage: Storage,
    leaf: LeafOptions,
    policy: RotationPolicy,
    targets: Vec<Target>,
    installs: Vec<Installed>,
    field_manager: String,
    reporter: Option<Reporter>,
}

impl std::fmt::Debug for ServingCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCertificates")
            .field("storage", &self.storage)
            .field("leaf", &self.leaf)
            .field("policy", &self.policy)
            .field("targets", &self.targets)
            .field("installs", &self.installs)
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl ServingCertificates {
    /// Certificates for any number of replicas: the CA lives in Secret `namespace/secret_name`
    /// (created if missing), every replica issues its own `leaf` from it. Needs RBAC in
    /// `namespace`: `get`, `update`, `list`, `watch` on that Secret (by name) and `create` on
    /// Secrets; plus what the targets need (see [`Target::rbac_rule`]).
    pub fn shared(
        client: Client,
        namespace: impl Into<String>,
        secret_name: impl Into<String>,
        leaf: LeafOptions,
    ) -> Self {
        Self::new(
            client,
            Storage::Secret {
                namespace: namespace.into(),
                name: secret_name.into(),
            },
            leaf,
        )
    }

    /// Certificates whose CA lives in this process's memory, for one process only (tests, a
    /// demo, a single replica that is never rolled): a second process makes a second CA and
    /// the two fight over the `caBundle`, and a restart starts with a new CA.
    pub fn single_process(client: Client, leaf: LeafOptions) -> Self {
        Self::new(client, Storage::SingleProcess, leaf)
    }

    fn new(client: Client, storage: Storage, leaf: LeafOptions) -> Self {
        ServingCertificates {
            client,
            storage,
            leaf,
            policy: RotationPolicy::default(),
            targets: Vec::new(),
            installs: Vec::new(),
            field_manager: "stackable-cainject".to_owned(),
            reporter: None,
        }
    }

    /// Keeps the trust bundle in the `caBundle` of these targets (CRDs, webhook
    /// configurations, APIServices, ConfigMaps).
    #[must_use]
    pub fn inject_into(mut self, targets: impl IntoIterator<Item = Target>) -> Self {
        self.targets.extend(targets);
        self
    }

    /// Installs these objects (the operator's CRDs, webhook configurations) whole, with the
    /// bundle in the first write, and keeps them in step (see [`crate::install`]): no moment
    /// where the API server holds a webhook without a bundle. Needs RBAC `get`, `list`,
    /// `watch`, `patch` on them, and `create`; when RBAC forbids it, the objects are only
    /// injected into (as [`Self::inject_into`]) and the status says so.
    #[must_use]
    pub fn install(mut self, objects: impl IntoIterator<Item = Installed>) -> Self {
        self.installs.extend(objects);
        self
    }

    /// The rotation policy (default: [`RotationPolicy::default`]).
    #[must_use]
    pub fn policy(mut self, policy: RotationPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The field manager of the `caBundle` writes (default `stackable-cainject`). Every
    /// replica must use the same one.
    #[must_use]
    pub fn field_manager(mut self, field_manager: impl Into<String>) -> Self {
        self.field_manager = field_manager.into();
        self
    }

    /// Publishes Kubernetes Events on the targets (injections, refusals).
    #[must_use]
    pub fn events(mut self, reporter: Reporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// The targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Validates the policy and starts in the background: the injector, then the rotation
    /// driver (retried with backoff while the store cannot be used). Must be called within a
    /// tokio runtime.
    pub fn start(self) -> Result<RunningCertificates, Error> {
        self.policy.validate().context(InvalidPolicySnafu)?;
        let (material_tx, material) = watch::channel::<Option<Arc<ServingMaterial>>>(None);
        let observes_targets = !self.targets.is_empty() || !self.installs.is_empty();
        let (status_tx, status) = watch::channel(CertificatesStatus::starting(observes_targets));
        let injector = observes_targets.then(|| {
            let mut injector = CaInjector::new(
                self.client.clone(),
                &self.field_manager,
                self.targets.clone(),
            )
            .install(self.installs.clone());
            if let Some(reporter) = self.reporter.clone() {
                injector = injector.with_events(reporter);
            }
            injector.start(material.clone())
        });
        let task = tokio::spawn(supervise(self, injector, material_tx, status_tx));
        Ok(RunningCertificates {
            material,
            status,
            task,
        })
    }
}

/// Whether the serving certificates can serve, and why not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificatesStatus {
    /// A leaf is loaded and, where targets are configured, its CA is in every target's
    /// `caBundle`: what a readiness probe should report.
    pub ready: bool,
    /// Why it is not ready (or what the rotation waits for), for the probe's body and logs.
    pub reason: Option<String>,
    /// The rotation driver's status (`None` while it has not started).
    pub rotation: Option<RotationStatus>,
    /// The injector's per-target status (`None` without targets).
    pub injection: Option<InjectionStatus>,
}

impl CertificatesStatus {
    fn starting(observes_targets: bool) -> Self {
        CertificatesStatus {
            ready: false,
            reason: Some(if !observes_targets {
                "starting the certificate rotation".to_owned()
            } else {
                "listing the injection targets before starting the certificate rotation".to_owned()
            }),
            rotation: None,
            injection: None,
        }
    }
}

/// Running serving certificates. Dropping it stops them.
#[derive(Debug)]
pub struct RunningCertificates {
    material: watch::Receiver<Option<Arc<ServingMaterial>>>,
    status: watch::Receiver<CertificatesStatus>,
    task: JoinHandle<()>,
}

impl RunningCertificates {
    /// The serving material (this replica's leaf, its key and the trust bundle); `None` until
    /// the first is ready.
    pub fn material(&self) -> watch::Receiver<Option<Arc<ServingMaterial>>> {
        self.material.clone()
    }

    /// The status (readiness and why).
    pub fn status(&self) -> watch::Receiver<CertificatesStatus> {
        self.status.clone()
    }

    /// Whether a leaf is loaded and its CA is in every target's `caBundle`.
    pub fn is_ready(&self) -> bool {
        self.status.borrow().ready
    }

    /// Resolves once [`Self::is_ready`].
    pub async fn ready(&self) {
        let mut status = self.status.clone();
        if status.wait_for(|s| s.ready).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops the rotation and the injector.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for RunningCertificates {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the rotation (retrying), forwards its material and computes the status. Owns the
/// injector and the rotation: aborting this task stops both.
async fn supervise(
    config: ServingCertificates,
    injector: Option<InjectorHandle>,
    material_tx: watch::Sender<Option<Arc<ServingMaterial>>>,
    status_tx: watch::Sender<CertificatesStatus>,
) {
    let published = match &injector {
        Some(injector) => {
            if tokio::time::timeout(LIST_TARGETS_TIMEOUT, injector.listed())
                .await
                .is_err()
            {
                tracing::warn!(
                    "the injection targets were not listed within {LIST_TARGETS_TIMEOUT:?}; starting the rotation without knowing what they trust"
                );
            }
            Some(injector.published_trust())
        }
        None => None,
    };
    let rotation = start_rotation(&config, published.clone(), &status_tx).await;
    let mut material = rotation.subscribe();
    let mut rotation_status = rotation.status();
    let mut injection = injector.as_ref().map(InjectorHandle::status);
    let mut published_rx = published.clone();
    loop {
        let current = material.borrow_and_update().clone();
        material_tx.send_if_modified(|old| {
            if old.as_ref() == Some(&current) {
                false
            } else {
                *old = Some(current);
                true
            }
        });
        if let Some(published) = published_rx.as_mut() {
            published.borrow_and_update();
        }
        let status = compose(
            rotation_status.borrow_and_update().clone(),
            injection.as_mut().map(|i| i.borrow_and_update().clone()),
        );
        status_tx.send_if_modified(|old| {
            if *old == status {
                false
            } else {
                if old.ready != status.ready {
                    match &status.reason {
                        Some(reason) if !status.ready => {
                            tracing::warn!(%reason, "serving certificates not ready");
                        }
                        _ => tracing::info!("serving certificates ready"),
                    }
                } else {
                    tracing::debug!(ready = status.ready, reason = ?status.reason, "serving certificates status");
                }
                *old = status;
                true
            }
        });
        tokio::select! {
            changed = material.changed() => if changed.is_err() { break },
            changed = rotation_status.changed() => if changed.is_err() { break },
            Some(()) = changed_opt(injection.as_mut()) => {}
            Some(()) = changed_opt(published_rx.as_mut()) => {}
        }
    }
    tracing::debug!("serving certificates stopped");
    rotation.shutdown().await;
    drop(injector);
}

async fn changed_opt<T>(rx: Option<&mut watch::Receiver<T>>) -> Option<()> {
    match rx {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

fn compose(rotation: RotationStatus, injection: Option<InjectionStatus>) -> CertificatesStatus {
    let reason = if let Some(error) = &rotation.error {
        Some(format!("certificate rotation failing: {error}"))
    } else if !rotation.issuer_published {
        let issuer = rotation.issuer_serial.as_deref().unwrap_or("?");
        let targets = injection
            .as_ref()
            .map(|i| {
                i.targets
                    .iter()
                    .map(|(target, state)| match state {
                        TargetState::Pending => format!("{target}: not injected yet"),
                        TargetState::Injected => format!("{target}: injected"),
                        TargetState::Failed(reason) => format!("{target}: {reason}"),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        Some(format!(
            "the CA {issuer} of the served leaf is not yet in every target's caBundle ({targets})"
        ))
    } else {
        rotation.waiting.clone()
    };
    CertificatesStatus {
        // Serving with a failing rotation is fine as long as the served leaf is trusted.
        ready: rotation.leaf_serial.is_some() && rotation.issuer_published,
        reason,
        rotation: Some(rotation),
        injection,
    }
}

/// Starts the rotation driver, retrying with backoff (never exits the process): a store that
/// is unreadable, forbidden or holds material that must not be overwritten is reported in the
/// status until it is fixed.
async fn start_rotation(
    config: &ServingCertificates,
    published: Option<watch::Receiver<PublishedTrust>>,
    status_tx: &watch::Sender<CertificatesStatus>,
) -> RunningRotation {
    let mut backoff = Duration::from_secs(1);
    loop {
        let result = match &config.storage {
            Storage::Secret { namespace, name } => {
                let store = SecretStore::new(config.client.clone(), namespace, name);
                start_driver(config, store, published.clone()).await
            }
            Storage::SingleProcess => {
                start_driver(config, InMemoryStore::new(), published.clone()).await
            }
        };
        match result {
            Ok(running) => return running,
            Err(error) => {
                let report = snafu::Report::from_error(&error).to_string();
                tracing::error!(error = %report, retry_in = ?backoff, "cannot start the certificate rotation; retrying");
                status_tx.send_modify(|status| {
                    status.ready = false;
                    status.reason = Some(format!(
                        "cannot start the certificate rotation (retrying): {report}"
                    ));
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn start_driver<S: Store>(
    config: &ServingCertificates,
    store: S,
    published: Option<watch::Receiver<PublishedTrust>>,
) -> Result<RunningRotation, stackable_certs::rotation::Error> {
    let mut driver = RotationDriver::with_store(config.policy.clone(), config.leaf.clone(), store);
    if let Some(published) = published {
        driver = driver.with_published_trust(published);
    }
    driver.start().await
}

/// Command-line flags (and environment variables) for [`ServingCertificates`], to
/// `#[command(flatten)]` into an operator's CLI (feature `clap`). Durations are written like
/// `90s`, `10m`, `30d`.
#[cfg(feature = "clap")]
#[derive(Clone, Debug, clap::Args)]
pub struct ServingCertificatesArgs {
    /// Secret in the operator's namespace that holds the CA every replica shares (created if
    /// missing).
    #[arg(long, env = "CA_SECRET")]
    pub ca_secret: Option<String>,
    /// Lifetime of a CA.
    #[arg(long, env = "CA_VALIDITY", value_parser = humantime::parse_duration, default_value = "365d")]
    pub ca_validity: Duration,
    /// Lifetime of a replica's serving certificate (clamped to its CA's).
    #[arg(long, env = "LEAF_VALIDITY", value_parser = humantime::parse_duration, default_value = "30d")]
    pub leaf_validity: Duration,
    /// Time a new CA is in the caBundle before leaves come from it (and at least until it is
    /// in every target's caBundle).
    #[arg(long, env = "CA_PROPAGATION_DELAY", value_parser = humantime::parse_duration, default_value = "10m")]
    pub ca_propagation_delay: Duration,
    /// Time the old CA stays in the caBundle after leaves switched.
    #[arg(long, env = "CA_OVERLAP", value_parser = humantime::parse_duration, default_value = "10m")]
    pub ca_overlap: Duration,
    /// Longest time between two checks of the certificates and the Secret (changes are seen at
    /// once through a watch; this bounds clock jumps and a broken watch).
    #[arg(long, env = "CERTIFICATE_CHECK_INTERVAL", value_parser = humantime::parse_duration, default_value = "60s")]
    pub certificate_check_interval: Duration,
}

#[cfg(feature = "clap")]
impl ServingCertificatesArgs {
    /// The rotation policy these flags describe (the rest from [`RotationPolicy::default`]).
    pub fn policy(&self) -> RotationPolicy {
        RotationPolicy {
            ca_validity: self.ca_validity,
            leaf_validity: self.leaf_validity,
            propagation_delay: self.ca_propagation_delay,
            overlap: self.ca_overlap,
            max_sleep: self.certificate_check_interval,
            ..RotationPolicy::default()
        }
    }

    /// The Secret name, or `default` when the flag was not given.
    pub fn ca_secret_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.ca_secret.as_deref().unwrap_or(default)
    }
}

#[cfg(all(test, feature = "clap"))]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        certificates: ServingCertificatesArgs,
    }

    #[test]
    fn defaults_are_the_default_policy_and_durations_parse() {
        let cli = Cli::parse_from(["op"]);
        assert_eq!(cli.certificates.policy(), RotationPolicy::default());
        assert_eq!(cli.certificates.ca_secret_or("x"), "x");
        let cli = Cli::parse_from([
            "op",
            "--ca-secret",
            "s",
            "--ca-validity",
            "90s",
            "--leaf-validity",
            "30s",
            "--ca-propagation-delay",
            "5s",
            "--ca-overlap",
            "5s",
            "--certificate-check-interval",
            "2s",
        ]);
        let policy = cli.certificates.policy();
        assert_eq!(policy.ca_validity, Duration::from_secs(90));
        assert_eq!(policy.max_sleep, Duration::from_secs(2));
        assert_eq!(cli.certificates.ca_secret_or("x"), "s");
        policy.validate().unwrap();
    }
}
