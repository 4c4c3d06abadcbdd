//! How the controllers are put together on kube-runtime: one watch per kind (without
//! managedFields, reflected into a store, filtered by the predicates), the issuer controllers
//! with the issuer-error reports as an extra trigger, and the request controllers watching the
//! issuer kinds to wake the requests of an issuer whose readiness changed.

use std::{fmt, future::Future, sync::Arc};

use futures::{FutureExt as _, StreamExt as _, future::BoxFuture, stream::BoxStream};
use kube::{
    Client, Resource, ResourceExt as _,
    api::{Api, ListParams},
    runtime::{
        Controller, WatchStreamExt as _,
        controller::Action,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use snafu::ResultExt as _;

use super::{
    Shared,
    backoff::Backoffs,
    issuer::{self, IssuerCtx},
    predicates,
    reports::Reports,
    request::{self, RequestCtx, RequestObject},
    targets::{IssuerKey, IssuerTypes, Scope},
};
use crate::{
    error::{KindNotServedSnafu, ListKindSnafu, Result},
    issuer::{AnyIssuer, IssuerResource},
    metrics::IssuerMetrics,
    signer::Signer,
};

pub(crate) fn wrap_issuer<S: Signer>(
    issuer: &S::Issuer,
) -> AnyIssuer<'_, S::Issuer, S::ClusterIssuer> {
    AnyIssuer::Issuer(issuer)
}

pub(crate) fn wrap_cluster_issuer<S: Signer>(
    issuer: &S::ClusterIssuer,
) -> AnyIssuer<'_, S::Issuer, S::ClusterIssuer> {
    AnyIssuer::ClusterIssuer(issuer)
}

/// Fails when the API server does not serve `K`.
pub(crate) async fn served<
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + fmt::Debug,
>(
    client: &Client,
    hint: &'static str,
) -> Result<()> {
    let api: Api<K> = Api::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        // A group the API server does not serve at all answers a plain-text 404, which kube
        // reports without the NotFound reason: the code is what counts.
        Err(kube::Error::Api(status)) if status.code == 404 => KindNotServedSnafu {
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

/// Completes once a watch has listed everything (its first `InitDone`, after the store took
/// it), or when the watch is gone; any number of tasks may wait on clones.
///
/// Not `Store::wait_until_ready`: its `DelayedInit` keeps the waker of only the last task that
/// polled it, so of two tasks waiting at once one may never wake (a reconciliation waiting
/// for the issuers' store hung that way beside a second waiter). The controllers' own stores
/// keep their one waiter, kube-runtime's `Controller`.
pub(crate) type Listed = futures::future::Shared<BoxFuture<'static, ()>>;

/// The [`Listed`] of every watch (for readiness).
#[derive(Default)]
pub(crate) struct Synced(pub(crate) Vec<Listed>);

/// A watch of every `K`, without managedFields, reflected into a store.
fn watch_all<K>(
    client: &Client,
    synced: &mut Synced,
) -> (
    Store<K>,
    Listed,
    BoxStream<'static, Result<K, watcher::Error>>,
)
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
    let (done, listed) = futures::channel::oneshot::channel::<()>();
    let listed: Listed = async move {
        let _ = listed.await;
    }
    .boxed()
    .shared();
    synced.0.push(listed.clone());
    let mut done = Some(done);
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .modify(|object: &mut K| object.managed_fields_mut().clear())
        .backoff(stackable_certs::rotation::kube::watch_backoff())
        .reflect(writer)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone))
                && let Some(done) = done.take()
            {
                let _ = done.send(());
            }
        })
        .applied_objects()
        .boxed();
    (reader, listed, stream)
}

pub(crate) fn issuer_loop<S: Signer, K: IssuerResource>(
    shared: &Arc<Shared<S>>,
    reports: Arc<Reports<K>>,
    triggers: futures::channel::mpsc::UnboundedReceiver<ObjectRef<K>>,
    wrap: for<'a> fn(&'a K) -> AnyIssuer<'a, S::Issuer, S::ClusterIssuer>,
    shutdown: futures::future::Shared<impl Future<Output = ()> + Send + 'static>,
    synced: &mut Synced,
) -> BoxFuture<'static, ()> {
    let (store, _, stream) = watch_all::<K>(&shared.client, synced);
    let stream = stream.predicate_filter(predicates::issuer::<K>, Default::default());
    let ctx = Arc::new(IssuerCtx {
        shared: shared.clone(),
        reports,
        wrap,
    });
    let metrics = shared.metrics.clone();
    Controller::for_stream(stream, store)
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(
            issuer::reconcile::<S, K>,
            error_policy::<K, IssuerCtx<S, K>>,
            ctx,
        )
        .for_each(move |result| {
            count(&metrics, &result);
            log_result(result)
        })
        .boxed()
}

pub(crate) fn request_controller<R: RequestObject>(
    client: &Client,
    predicate: fn(&R) -> Option<u64>,
    synced: &mut Synced,
) -> (Controller<R>, Store<R>) {
    let (store, _, stream) = watch_all::<R>(client, synced);
    let stream = stream.predicate_filter(predicate, Default::default());
    let controller = Controller::for_stream(stream, store);
    let requests = controller.store();
    (controller, requests)
}

/// Wakes the requests for an issuer of kind `K` when its readiness changes.
pub(crate) fn watch_issuers<R: RequestObject, K: IssuerResource>(
    controller: Controller<R>,
    client: &Client,
    types: &IssuerTypes,
    requests: Store<R>,
    scope: Scope,
    synced: &mut Synced,
) -> (Controller<R>, (Store<K>, Listed)) {
    let (store, listed, stream) = watch_all::<K>(client, synced);
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
    (controller, (store, listed))
}

pub(crate) fn run_request_loop<S: Signer, R: RequestObject>(
    controller: Controller<R>,
    ctx: Arc<RequestCtx<S>>,
    shutdown: futures::future::Shared<impl Future<Output = ()> + Send + 'static>,
) -> BoxFuture<'static, ()> {
    let metrics = ctx.shared.metrics.clone();
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            request::reconcile::<S, R>,
            error_policy::<R, RequestCtx<S>>,
            ctx,
        )
        .for_each(move |result| {
            count(&metrics, &result);
            log_result(result)
        })
        .boxed()
}

/// Access to the backoff of any controller's context.
trait HasBackoff {
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

/// Counts a finished reconciliation of `K` (a failed one too).
fn count<K: Resource<DynamicType = ()>, E1, E2>(
    metrics: &IssuerMetrics,
    result: &std::result::Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E1, E2>>,
) {
    match result {
        Ok(_) => metrics.reconciled(&K::kind(&()), false),
        Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {
            metrics.reconciled(&K::kind(&()), true)
        }
        Err(_) => {}
    }
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
