//! The injection controller: one kube-runtime [`applier`] per target kind.
//!
//! Each kind's targets are watched as metadata; only annotated objects (stripped of their
//! `managedFields`) are kept in the applier's store. A reconciliation is requested when a
//! target changes, when a Secret or Certificate it reads changes (through the reference index
//! in [`Context`]), when cert-manager's CRD comes or goes, when the API server CA changes, and
//! by the reconciler itself: at the resync period (default 10 minutes, jittered) when all is
//! well, with backoff after a failure that may pass. The applier de-duplicates requests and
//! never reconciles one object twice at once; `concurrency` bounds the reconciliations in
//! flight.

use std::{collections::BTreeMap, fmt::Debug, sync::Arc};

use futures::{StreamExt as _, TryStreamExt as _, future::BoxFuture, stream};
use k8s_openapi::{
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        core::v1::ConfigMap,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    kube_aggregator::pkg::apis::apiregistration::v1::APIService,
};
use kube::{
    Api, Client, Resource,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt as _,
        controller::{self, applier},
        reflector::{self, ObjectRef},
        watcher::{self, Event},
    },
};
use serde::de::DeserializeOwned;
use snafu::Snafu;
use stackable_cainject::{Target, TargetKind};
use tokio::sync::mpsc;

use crate::{
    annotations, cert_manager,
    config::{ApiServerCa, Config, ServiceCa},
    context::Context,
    metrics::Metrics,
    reconcile::{Retry, error_policy, reconcile},
    watches,
};

/// Why the controller stopped.
#[derive(Debug, Snafu)]
pub enum Error {
    /// A watch stream ended, which only happens when the client is shut down.
    #[snafu(display("the watch streams ended"))]
    StreamsEnded,
}

/// Whether an object carries one of the injection annotations.
pub(crate) fn has_injection_annotation(annotations: Option<&BTreeMap<String, String>>) -> bool {
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

/// Runs the controller until its watch streams end.
pub async fn run(client: Client, config: Config, metrics: Metrics) -> Result<(), Error> {
    let certificates = cert_manager::certificates_served(&client, None).await;
    let namespaces: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut kinds = vec![
        TargetKind::CustomResourceDefinition,
        TargetKind::ValidatingWebhookConfiguration,
        TargetKind::MutatingWebhookConfiguration,
        TargetKind::ApiService,
    ];
    if config.config_maps {
        kinds.push(TargetKind::ConfigMap);
    }
    let mut triggers = BTreeMap::new();
    let mut receivers = BTreeMap::new();
    for kind in &kinds {
        let (tx, rx) = mpsc::unbounded_channel();
        triggers.insert(*kind, tx);
        receivers.insert(*kind, rx);
    }
    if certificates.is_none() {
        tracing::info!(
            "cert-manager's Certificate kind is not served; inject-ca-from is refused until {} is installed",
            cert_manager::CERTIFICATE_CRD
        );
    }
    let ctx = Arc::new(Context::new(
        client.clone(),
        config.clone(),
        metrics,
        triggers,
        certificates,
    ));

    let mut tasks = Vec::new();
    for namespace in &namespaces {
        tasks.push(tokio::spawn(watches::watch_secrets(
            ctx.clone(),
            namespace.clone(),
        )));
    }
    // The configured service CA Secret may live outside the watched namespaces.
    if let ServiceCa::Secret(key) = &config.service_ca
        && !config.in_scope(&key.namespace)
    {
        tasks.push(tokio::spawn(watches::watch_secrets(
            ctx.clone(),
            Some(key.namespace.clone()),
        )));
    }
    if let ApiServerCa::File(path) = &config.api_server_ca {
        tasks.push(tokio::spawn(watches::follow_api_server_ca(
            ctx.clone(),
            path.clone(),
        )));
    }
    tasks.push(tokio::spawn(cert_manager::follow(
        ctx.clone(),
        namespaces.clone(),
    )));

    let mut controllers: Vec<BoxFuture<'static, ()>> = Vec::new();
    for (kind, rx) in receivers {
        let ctx = ctx.clone();
        let controller: BoxFuture<'static, ()> = match kind {
            TargetKind::CustomResourceDefinition => Box::pin(run_kind::<CustomResourceDefinition>(
                ctx,
                kind,
                Api::all(client.clone()),
                rx,
            )),
            TargetKind::ValidatingWebhookConfiguration => {
                Box::pin(run_kind::<ValidatingWebhookConfiguration>(
                    ctx,
                    kind,
                    Api::all(client.clone()),
                    rx,
                ))
            }
            TargetKind::MutatingWebhookConfiguration => {
                Box::pin(run_kind::<MutatingWebhookConfiguration>(
                    ctx,
                    kind,
                    Api::all(client.clone()),
                    rx,
                ))
            }
            TargetKind::ApiService => Box::pin(run_kind::<APIService>(
                ctx,
                kind,
                Api::all(client.clone()),
                rx,
            )),
            TargetKind::ConfigMap => {
                // One applier for every watched namespace: one store, one stream per namespace.
                let apis: Vec<Api<PartialObjectMeta<ConfigMap>>> = namespaces
                    .iter()
                    .map(|ns| match ns {
                        Some(ns) => Api::namespaced(client.clone(), ns),
                        None => Api::all(client.clone()),
                    })
                    .collect();
                Box::pin(run_kinds::<ConfigMap>(ctx, kind, apis, rx))
            }
        };
        controllers.push(controller);
    }
    futures::future::select_all(controllers).await;
    for task in tasks {
        task.abort();
    }
    StreamsEndedSnafu.fail()
}

async fn run_kind<K>(
    ctx: Arc<Context>,
    kind: TargetKind,
    api: Api<PartialObjectMeta<K>>,
    triggers: mpsc::UnboundedReceiver<Target>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    run_kinds(ctx, kind, vec![api], triggers).await;
}

/// The applier of one target kind, fed by metadata watches of `apis`.
async fn run_kinds<K>(
    ctx: Arc<Context>,
    kind: TargetKind,
    apis: Vec<Api<PartialObjectMeta<K>>>,
    triggers: mpsc::UnboundedReceiver<Target>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<PartialObjectMeta<K>>();
    let watches = stream::select_all(apis.into_iter().map(|api| {
        watcher::watcher(api, watcher::Config::default())
            .backoff(stackable_certs::rotation::kube::watch_backoff())
            .boxed()
    }));
    // Only annotated objects are stored; one that loses its annotation leaves the store.
    let annotated = watches
        .try_filter_map(|event| {
            futures::future::ready(Ok(match event {
                Event::Apply(o) if !has_injection_annotation(o.metadata.annotations.as_ref()) => {
                    Some(Event::Delete(o))
                }
                Event::InitApply(o)
                    if !has_injection_annotation(o.metadata.annotations.as_ref()) =>
                {
                    None
                }
                other => Some(other),
            }))
        })
        .modify(|object| object.metadata.managed_fields = None);
    let untrack_ctx = ctx.clone();
    let own = reflector::reflector(writer, annotated).try_filter_map(move |event| {
        futures::future::ready(Ok(match event {
            Event::Apply(o) | Event::InitApply(o) => Some(ObjectRef::from_obj(&o)),
            Event::Delete(o) => {
                if let Some(name) = o.metadata.name.clone() {
                    untrack_ctx.untrack(&Target::new(kind, o.metadata.namespace.clone(), name));
                }
                None
            }
            Event::Init | Event::InitDone => None,
        }))
    });
    let related = stream::unfold(triggers, |mut rx| async move {
        let target = rx.recv().await?;
        let reference = ObjectRef::<PartialObjectMeta<K>>::new(target.name());
        let reference = match target.namespace() {
            Some(ns) => reference.within(ns),
            None => reference,
        };
        Some((Ok::<_, watcher::Error>(reference), rx))
    });
    let queue = stream::select(own.boxed(), related.boxed());
    let config = controller::Config::default().concurrency(ctx.config.concurrency);
    applier(
        move |object, ctx| Box::pin(reconcile(kind, object, ctx)),
        move |object, error: &Retry, ctx| error_policy(kind, object, error, ctx),
        ctx,
        store,
        queue,
        config,
    )
    .for_each(|result| {
        match result {
            Ok(_) => {}
            Err(controller::Error::ObjectNotFound(reference)) => {
                // A Secret's or Certificate's reader that is not annotated (any more).
                tracing::debug!(%reference, "not an injection target (any more)");
            }
            Err(controller::Error::ReconcilerFailed(error, reference)) => {
                tracing::debug!(%reference, %error, "reconciliation failed; retrying with backoff");
            }
            Err(error) => tracing::warn!(%error, "{kind} controller error"),
        }
        futures::future::ready(())
    })
    .await;
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
}
