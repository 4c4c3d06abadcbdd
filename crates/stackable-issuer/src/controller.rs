//! The controllers: [`IssuerControllers`] runs, on kube-runtime's [`Controller`], one issuer
//! controller per issuer kind, the `CertificateRequest` controller and the Kubernetes
//! `CertificateSigningRequest` controller, with issuer-lib's semantics
//! (<https://github.com/cert-manager/issuer-lib>).
//!
//! With leader election the controllers run only on the replica that holds the Lease (a
//! term); each term builds them afresh (watches, stores, backoffs).
//!
//! Status is written by server-side apply on the status subresource with the field owner;
//! the watches pass only the changes that matter (see `predicates`), so a status write does
//! not wake its own controller again.

mod backoff;
mod certificate_request;
mod csr;
mod events;
mod issuer;
mod options;
mod predicates;
mod reports;
mod request;
mod request_status;
mod targets;
mod wiring;

use std::{fmt, future::Future, sync::Arc, time::Duration};

use futures::{FutureExt as _, future::BoxFuture};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::{
    Client, Resource,
    api::{Api, ApiResource, DynamicObject, Patch, PatchParams},
    runtime::events::{Recorder, Reporter},
};
use snafu::{ResultExt as _, ensure};

pub use issuer::ready_reason as issuer_ready_reason;
pub use options::{
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_RETRY_DURATION,
    DEFAULT_RECHECK_INTERVAL,
};
pub use request_status::request_reason;

use self::{
    backoff::Backoffs,
    options::Options,
    reports::Reports,
    request::RequestCtx,
    targets::{IssuerTypes, Scope},
    wiring::{
        Synced, issuer_loop, request_controller, run_request_loop, served, watch_issuers,
        wrap_cluster_issuer, wrap_issuer,
    },
};
use crate::{
    api::CertificateRequest,
    error::{InvalidOptionsSnafu, LeaderElectionSnafu, Result, WriteStatusSnafu},
    metrics::IssuerMetrics,
    signer::Signer,
};
use stackable_runtime::{Election, Leadership, Readiness};

/// What every controller shares.
pub(crate) struct Shared<S: Signer> {
    pub(crate) client: Client,
    pub(crate) signer: Arc<S>,
    pub(crate) options: Options,
    pub(crate) recorder: Recorder,
    pub(crate) backoff: Backoffs,
    pub(crate) metrics: IssuerMetrics,
}

/// The issuer, `CertificateRequest` and `CertificateSigningRequest` controllers of one
/// [`Signer`].
///
/// ```no_run
/// # async fn run<S: stackable_issuer::Signer>(client: kube::Client, signer: S) -> Result<(), stackable_issuer::Error> {
/// use std::time::Duration;
/// use stackable_issuer::IssuerControllers;
///
/// IssuerControllers::new(client, signer, "ca-issuer.example.com")
///     .max_retry_duration(Duration::from_secs(300))
///     .recheck_interval(Some(Duration::from_secs(60)))
///     .run()
///     .await
/// # }
/// ```
pub struct IssuerControllers<S: Signer> {
    client: Client,
    signer: Arc<S>,
    options: Options,
    election: Option<Election>,
    readiness: Readiness,
    metrics: IssuerMetrics,
}

impl<S: Signer> fmt::Debug for IssuerControllers<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerControllers")
            .field("options", &self.options)
            .field("election", &self.election)
            .finish_non_exhaustive()
    }
}

impl<S: Signer> IssuerControllers<S> {
    /// Controllers for `signer`'s issuer kinds; `field_owner` is the server-side-apply field
    /// manager of every status write and the reporting controller of every Event.
    pub fn new(client: Client, signer: S, field_owner: impl Into<String>) -> Self {
        IssuerControllers {
            client,
            signer: Arc::new(signer),
            options: Options::new(field_owner.into()),
            election: None,
            readiness: Readiness::new(false),
            metrics: IssuerMetrics::default(),
        }
    }

    /// How long a request is retried after retryable errors, counted from its creation
    /// (default [`DEFAULT_MAX_RETRY_DURATION`]); then it fails.
    #[must_use]
    pub fn max_retry_duration(mut self, duration: Duration) -> Self {
        self.options.max_retry_duration = duration;
        self
    }

    /// How often a `Ready` issuer is checked again (default [`DEFAULT_RECHECK_INTERVAL`];
    /// `None`: only on changes, as issuer-lib does).
    #[must_use]
    pub fn recheck_interval(mut self, interval: Option<Duration>) -> Self {
        self.options.recheck_interval = interval;
        self
    }

    /// The per-object retry delay after retryable errors: `initial`, doubling per consecutive
    /// failure, at most `max` (defaults [`DEFAULT_BACKOFF_INITIAL`], [`DEFAULT_BACKOFF_MAX`]).
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.options.backoff_initial = initial;
        self.options.backoff_max = max;
        self
    }

    /// Whether to sign cert-manager `CertificateRequest`s (default on; needs cert-manager's
    /// CRDs).
    #[must_use]
    pub fn certificate_requests(mut self, on: bool) -> Self {
        self.options.certificate_requests = on;
        self
    }

    /// Whether to sign Kubernetes `CertificateSigningRequest`s (default on).
    #[must_use]
    pub fn certificate_signing_requests(mut self, on: bool) -> Self {
        self.options.certificate_signing_requests = on;
        self
    }

    /// Whether to also write the CA into a `CertificateRequest`'s deprecated `status.ca`
    /// (default off, as in issuer-lib).
    #[must_use]
    pub fn set_ca_on_certificate_request(mut self, on: bool) -> Self {
        self.options.set_ca_on_certificate_request = on;
        self
    }

    /// The `signerName` under which a cluster issuer `name` signs Kubernetes CSRs.
    pub fn signer_name(name: &str) -> String {
        IssuerTypes::of::<S>().signer_name(name)
    }

    /// Runs the controllers only while this replica holds the Lease of `election`
    /// (issuer-lib's controller-runtime manager elects a leader the same way): the other
    /// replicas stand by and take over once the leader is gone (it releases the Lease on
    /// shutdown; one that died leaves it to expire), within about one Lease duration. A leader
    /// that finds the Lease held by another replica stops its controllers (reconciliations in
    /// flight finish) and stands by again. Needs RBAC
    /// `get`, `update`, `patch` on the Lease by name and `create` on `leases` in its namespace.
    #[must_use]
    pub fn leader_election(mut self, election: Election) -> Self {
        self.election = Some(election);
        self
    }

    /// Where to report readiness (for `/readyz`): ready once the kinds are found served and,
    /// on the replica that runs the controllers, their watches have listed everything once; a
    /// replica that stands by (see [`Self::leader_election`]) is ready as well, its role being
    /// to take over. Not ready before, and on a new leader until its watches have synced.
    #[must_use]
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Where to count reconciliations, errors and signed requests, and whether this replica
    /// leads (see [`IssuerMetrics`]).
    #[must_use]
    pub fn metrics(mut self, metrics: IssuerMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs the controllers until the process ends.
    pub async fn run(self) -> Result<()> {
        self.run_until(futures::future::pending()).await
    }

    /// Runs the controllers until `shutdown` completes (reconciliations in flight finish; with
    /// leader election the Lease is released then).
    ///
    /// Fails at once when the options are unusable or a kind is not served by the API server
    /// (a CRD is missing).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        self.options
            .validate()
            .map_err(|reason| InvalidOptionsSnafu { reason }.build())?;
        let client = self.client.clone();
        served::<S::Issuer>(&client, "").await?;
        served::<S::ClusterIssuer>(&client, "").await?;
        if self.options.certificate_requests {
            served::<CertificateRequest>(
                &client,
                " (cert-manager's CRDs), or turn the CertificateRequest controller off",
            )
            .await?;
        }
        let term = Term {
            client: self.client,
            signer: self.signer,
            options: self.options,
            readiness: self.readiness,
            metrics: self.metrics,
        };
        let Some(election) = self.election else {
            term.metrics.set_leader(true);
            let result = term.clone().run(shutdown).await;
            term.metrics.set_leader(false);
            return result;
        };
        let leadership = Leadership::start(client, &election)
            .await
            .context(LeaderElectionSnafu)?;
        tracing::info!(
            lease = %format!("{}/{}", election.namespace, election.name),
            identity = %election.identity,
            "standing by until this replica leads"
        );
        term.readiness.set(true);
        leadership
            .lead(shutdown, |stopped| {
                let term = term.clone();
                async move {
                    term.readiness.set(false);
                    term.metrics.set_leader(true);
                    let result = term.clone().run(stopped.wait()).await;
                    term.metrics.set_leader(false);
                    term.readiness.set(true);
                    tracing::info!("the issuer controllers stopped; standing by");
                    result
                }
            })
            .await
    }
}

/// What one run of the controllers (a term as leader) needs.
struct Term<S: Signer> {
    client: Client,
    signer: Arc<S>,
    options: Options,
    readiness: Readiness,
    metrics: IssuerMetrics,
}

impl<S: Signer> Clone for Term<S> {
    fn clone(&self) -> Self {
        Term {
            client: self.client.clone(),
            signer: self.signer.clone(),
            options: self.options.clone(),
            readiness: self.readiness.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<S: Signer> Term<S> {
    /// Runs every controller until `shutdown` completes.
    async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let client = self.client;
        let shutdown = shutdown.shared();
        let shared = Arc::new(Shared {
            recorder: Recorder::new(
                client.clone(),
                Reporter::from(self.options.field_owner.clone()),
            ),
            backoff: Backoffs::new(self.options.backoff_initial, self.options.backoff_max),
            client: client.clone(),
            signer: self.signer,
            options: self.options,
            metrics: self.metrics,
        });
        let (issuer_reports, issuer_triggers) = Reports::<S::Issuer>::new();
        let (cluster_reports, cluster_triggers) = Reports::<S::ClusterIssuer>::new();
        let issuer_reports = Arc::new(issuer_reports);
        let cluster_reports = Arc::new(cluster_reports);
        let types = IssuerTypes::of::<S>();
        let mut synced = Synced::default();
        tracing::info!(
            issuer = %S::Issuer::kind(&()),
            cluster_issuer = %S::ClusterIssuer::kind(&()),
            signer_names = %format!("{}/<name>", types.signer_name_prefix()),
            field_owner = %shared.options.field_owner,
            "starting the issuer controllers"
        );

        let mut loops: Vec<BoxFuture<'static, ()>> = vec![
            issuer_loop::<S, S::Issuer>(
                &shared,
                issuer_reports.clone(),
                issuer_triggers,
                wrap_issuer::<S>,
                shutdown.clone(),
                &mut synced,
            ),
            issuer_loop::<S, S::ClusterIssuer>(
                &shared,
                cluster_reports.clone(),
                cluster_triggers,
                wrap_cluster_issuer::<S>,
                shutdown.clone(),
                &mut synced,
            ),
        ];
        if shared.options.certificate_requests {
            let (controller, issuers) = request_controller::<CertificateRequest>(
                &client,
                predicates::certificate_request,
                &mut synced,
            );
            let (controller, issuer_store) = watch_issuers::<CertificateRequest, S::Issuer>(
                controller,
                &client,
                &types,
                issuers.clone(),
                Scope::Namespaced,
                &mut synced,
            );
            let (controller, cluster_store) = watch_issuers::<CertificateRequest, S::ClusterIssuer>(
                controller,
                &client,
                &types,
                issuers,
                Scope::Cluster,
                &mut synced,
            );
            let ctx = Arc::new(RequestCtx {
                shared: shared.clone(),
                types: types.clone(),
                issuers: Some(issuer_store),
                cluster_issuers: cluster_store,
                issuer_reports: issuer_reports.clone(),
                cluster_issuer_reports: cluster_reports.clone(),
            });
            loops.push(run_request_loop(controller, ctx, shutdown.clone()));
        }
        if shared.options.certificate_signing_requests {
            let (controller, requests) = request_controller::<CertificateSigningRequest>(
                &client,
                predicates::csr,
                &mut synced,
            );
            let (controller, cluster_store) =
                watch_issuers::<CertificateSigningRequest, S::ClusterIssuer>(
                    controller,
                    &client,
                    &types,
                    requests,
                    Scope::Cluster,
                    &mut synced,
                );
            let ctx = Arc::new(RequestCtx {
                shared: shared.clone(),
                types: types.clone(),
                issuers: None,
                cluster_issuers: cluster_store,
                issuer_reports,
                cluster_issuer_reports: cluster_reports,
            });
            loops.push(run_request_loop(controller, ctx, shutdown.clone()));
        }
        let readiness = self.readiness;
        let ready = async move {
            futures::future::join_all(synced.0).await;
            tracing::info!("every watch has synced: ready");
            readiness.set(true);
            futures::future::pending::<()>().await;
        };
        futures::future::select(futures::future::join_all(loops), ready.boxed()).await;
        Ok(())
    }
}

/// Applies `status` to the status subresource of `object` (server-side apply with
/// `field_owner`, forced: the fields this owner writes are its own). A vanished object is not
/// an error.
pub(crate) async fn apply_status<K: Resource<DynamicType = ()>>(
    client: &Client,
    field_owner: &str,
    object: &K,
    status: serde_json::Value,
) -> Result<()> {
    let resource = ApiResource::erase::<K>(&());
    let name = object.meta().name.clone().unwrap_or_default();
    let namespace = object.meta().namespace.clone();
    ensure!(
        !name.is_empty(),
        InvalidOptionsSnafu {
            reason: format!("a {} without a name", resource.kind)
        }
    );
    let api: Api<DynamicObject> = match &namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let mut metadata = serde_json::json!({ "name": name });
    if let Some(namespace) = &namespace {
        metadata["namespace"] = namespace.clone().into();
    }
    let body = serde_json::json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": metadata,
        "status": status,
    });
    let params = PatchParams::apply(field_owner).force();
    match api.patch_status(&name, &params, &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        // A group the API server does not serve at all answers a plain-text 404, which kube
        // reports without the NotFound reason: the code is what counts.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(source).context(WriteStatusSnafu {
            kind: resource.kind.clone(),
            name: match namespace {
                Some(namespace) => format!("{namespace}/{name}"),
                None => name.clone(),
            },
        }),
    }
}
