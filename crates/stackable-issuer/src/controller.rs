//! The controllers: [`IssuerControllers`] runs, on kube-runtime's [`Controller`], one issuer
//! controller per issuer kind, the `CertificateRequest` controller and the Kubernetes
//! `CertificateSigningRequest` controller, with issuer-lib's semantics
//! (<https://github.com/cert-manager/issuer-lib>).
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

use std::{fmt, future::Future, sync::Arc, time::Duration};

use futures::{FutureExt as _, StreamExt as _, future::BoxFuture, stream::BoxStream};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::{
    Client, Resource, ResourceExt as _,
    api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt as _,
        controller::Action,
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
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
    issuer::IssuerCtx,
    options::Options,
    reports::Reports,
    request::{RequestCtx, RequestObject},
    targets::{IssuerKey, IssuerTypes, Scope},
};
use crate::{
    api::CertificateRequest,
    error::{InvalidOptionsSnafu, KindNotServedSnafu, ListKindSnafu, Result, WriteStatusSnafu},
    issuer::{AnyIssuer, IssuerResource},
    signer::Signer,
};

/// What every controller shares.
pub(crate) struct Shared<S: Signer> {
    pub(crate) client: Client,
    pub(crate) signer: Arc<S>,
    pub(crate) options: Options,
    pub(crate) recorder: Recorder,
    pub(crate) backoff: Backoffs,
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
}

impl<S: Signer> fmt::Debug for IssuerControllers<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerControllers")
            .field("options", &self.options)
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

    /// Runs the controllers until the process ends.
    pub async fn run(self) -> Result<()> {
        self.run_until(futures::future::pending()).await
    }

    /// Runs the controllers until `shutdown` completes (reconciliations in flight finish).
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
        });
        let (issuer_reports, issuer_triggers) = Reports::<S::Issuer>::new();
        let (cluster_reports, cluster_triggers) = Reports::<S::ClusterIssuer>::new();
        let issuer_reports = Arc::new(issuer_reports);
        let cluster_reports = Arc::new(cluster_reports);
        let types = IssuerTypes::of::<S>();
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
            ),
            issuer_loop::<S, S::ClusterIssuer>(
                &shared,
                cluster_reports.clone(),
                cluster_triggers,
                wrap_cluster_issuer::<S>,
                shutdown.clone(),
            ),
        ];
        if shared.options.certificate_requests {
            let (controller, issuers) = request_controller::<CertificateRequest>(
                &client,
                crate::controller::predicates::certificate_request,
            );
            let (controller, issuer_store) = watch_issuers::<CertificateRequest, S::Issuer>(
                controller,
                &client,
                &types,
                issuers.clone(),
                Scope::Namespaced,
            );
            let (controller, cluster_store) = watch_issuers::<CertificateRequest, S::ClusterIssuer>(
                controller,
                &client,
                &types,
                issuers,
                Scope::Cluster,
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
                crate::controller::predicates::csr,
            );
            let (controller, cluster_store) =
                watch_issuers::<CertificateSigningRequest, S::ClusterIssuer>(
                    controller,
                    &client,
                    &types,
                    requests,
                    Scope::Cluster,
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
        futures::future::join_all(loops).await;
        Ok(())
    }
}

fn wrap_issuer<S: Signer>(issuer: &S::Issuer) -> AnyIssuer<'_, S::Issuer, S::ClusterIssuer> {
    AnyIssuer::Issuer(issuer)
}

fn wrap_cluster_issuer<S: Signer>(
    issuer: &S::ClusterIssuer,
) -> AnyIssuer<'_, S::Issuer, S::ClusterIssuer> {
    AnyIssuer::ClusterIssuer(issuer)
}

/// Fails when the API server does not serve `K`.
async fn served<
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + fmt::Debug,
>(
    client: &Client,
    hint: &'static str,
) -> Result<()> {
    let api: Api<K> = Api::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => KindNotServedSnafu {
            kind: K::kind(&()).into_owned(),
            api_version: K::api_version(&()).into_owned(),
            hint,
        }
        .fail(),
        Err(source) => Err(source).context(ListKindSnafu {
            kind: K::kind(&()).into_owned(),
        }),
    }
}

/// A watch of every `K`, without managedFields, reflected into a store.
fn watch_all<K>(client: &Client) -> (Store<K>, BoxStream<'static, Result<K, watcher::Error>>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .modify(|object: &mut K| object.managed_fields_mut().clear())
        .backoff(stackable_certs::rotation::kube::watch_backoff())
        .reflect(writer)
        .applied_objects()
        .boxed();
    (reader, stream)
}

fn issuer_loop<S: Signer, K: IssuerResource>(
    shared: &Arc<Shared<S>>,
    reports: Arc<Reports<K>>,
    triggers: futures::channel::mpsc::UnboundedReceiver<ObjectRef<K>>,
    wrap: for<'a> fn(&'a K) -> AnyIssuer<'a, S::Issuer, S::ClusterIssuer>,
    shutdown: futures::future::Shared<impl Future<Output = ()> + Send + 'static>,
) -> BoxFuture<'static, ()> {
    let (store, stream) = watch_all::<K>(&shared.client);
    let stream = stream.predicate_filter(predicates::issuer::<K>, Default::default());
    let ctx = Arc::new(IssuerCtx {
        shared: shared.clone(),
        reports,
        wrap,
    });
    Controller::for_stream(stream, store)
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(
            issuer::reconcile::<S, K>,
            error_policy::<K, IssuerCtx<S, K>>,
            ctx,
        )
        .for_each(log_result)
        .boxed()
}

fn request_controller<R: RequestObject>(
    client: &Client,
    predicate: fn(&R) -> Option<u64>,
) -> (Controller<R>, Store<R>) {
    let (store, stream) = watch_all::<R>(client);
    let stream = stream.predicate_filter(predicate, Default::default());
    let controller = Controller::for_stream(stream, store);
    let requests = controller.store();
    (controller, requests)
}

/// Wakes the requests for an issuer of kind `K` when its readiness changes.
fn watch_issuers<R: RequestObject, K: IssuerResource>(
    controller: Controller<R>,
    client: &Client,
    types: &IssuerTypes,
    requests: Store<R>,
    scope: Scope,
) -> (Controller<R>, Store<K>) {
    let (store, stream) = watch_all::<K>(client);
    let stream = stream.predicate_filter(predicates::linked_issuer::<K>, Default::default());
    let types = types.clone();
    let controller = controller.watches_stream(stream, move |issuer: K| {
        let key = IssuerKey {
            scope,
            namespace: issuer.namespace(),
            name: issuer.name_any(),
        };
        requests
            .state()
            .into_iter()
            .filter(|request| request.issuer_key(&types).as_ref() == Some(&key))
            .map(|request| ObjectRef::from_obj(&*request))
            .collect::<Vec<_>>()
    });
    (controller, store)
}

fn run_request_loop<S: Signer, R: RequestObject>(
    controller: Controller<R>,
    ctx: Arc<RequestCtx<S>>,
    shutdown: futures::future::Shared<impl Future<Output = ()> + Send + 'static>,
) -> BoxFuture<'static, ()> {
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            request::reconcile::<S, R>,
            error_policy::<R, RequestCtx<S>>,
            ctx,
        )
        .for_each(log_result)
        .boxed()
}

/// Access to the backoff of any controller's context.
pub(crate) trait HasBackoff {
    fn backoffs(&self) -> &Backoffs;
}

impl<S: Signer, K: IssuerResource> HasBackoff for IssuerCtx<S, K> {
    fn backoffs(&self) -> &Backoffs {
        &self.shared.backoff
    }
}

impl<S: Signer> HasBackoff for RequestCtx<S> {
    fn backoffs(&self) -> &Backoffs {
        &self.shared.backoff
    }
}

/// A reconciliation that failed on the Kubernetes side is retried with the object's backoff.
fn error_policy<K: Resource<DynamicType = ()>, C: HasBackoff>(
    object: Arc<K>,
    error: &crate::Error,
    ctx: Arc<C>,
) -> Action {
    let reference = ObjectRef::from_obj(&*object);
    let delay = ctx.backoffs().next(&format!("error/{reference}"));
    tracing::warn!(object = %reference, error = %snafu::Report::from_error(error), retry_in = ?delay, "reconciliation failed");
    Action::requeue(delay)
}

async fn log_result<K: Resource, E1: std::error::Error, E2: std::error::Error>(
    result: std::result::Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E1, E2>>,
) where
    K::DynamicType: fmt::Debug,
{
    match result {
        Ok((object, action)) => tracing::trace!(%object, ?action, "reconciled"),
        Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
            tracing::trace!(%object, "gone before its reconciliation")
        }
        Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
        Err(error) => tracing::warn!(error = %snafu::Report::from_error(&error), "controller"),
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
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(source).context(WriteStatusSnafu {
            kind: resource.kind.clone(),
            name: match namespace {
                Some(namespace) => format!("{namespace}/{name}"),
                None => name.clone(),
            },
        }),
    }
}
