//! cert-manager coming and going while the injector runs.
//!
//! A metadata watch of the one CRD [`CERTIFICATE_CRD`] (field selector on its name) notices it.
//! When the CRD appears, the injector polls until `cert-manager.io/v1` Certificates can be
//! listed (a new CRD's kind is served as soon as it is Established, discovery follows about two
//! seconds later:
//! <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#create-a-customresourcedefinition>),
//! starts the Certificate watches and re-evaluates every target annotated with
//! `inject-ca-from`; when it goes away (or starts terminating) the watches stop and those
//! targets are re-evaluated again, which reports on each that the Certificate CRD is not
//! installed (the bundle already injected stays).

use std::{sync::Arc, time::Duration};

use futures::StreamExt as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams},
    core::{ApiResource, GroupVersionKind, PartialObjectMeta},
    runtime::{
        WatchStreamExt as _,
        watcher::{self, Event},
    },
};
use tokio::task::JoinHandle;

use crate::{annotations::ObjectKey, context::Context, index::Reference};

/// The name of cert-manager's Certificate CRD.
pub const CERTIFICATE_CRD: &str = "certificates.cert-manager.io";

fn certificate_kind() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

/// Whether Certificates can be listed (in `namespace`, or cluster-wide): the kind is served.
/// The resource itself is probed rather than discovery, which lags behind.
pub async fn certificates_served(client: &Client, namespace: Option<&str>) -> Option<ApiResource> {
    let kind = certificate_kind();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &kind),
        None => Api::all_with(client.clone(), &kind),
    };
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Some(kind),
        Err(error) => {
            tracing::debug!(%error, "cert-manager.io/v1 Certificates are not served (yet)");
            None
        }
    }
}

/// Turns the events of a watch of one CRD into "installed" (`true`) or "gone" (`false`).
///
/// A relist that does not contain it (it was deleted while the watch was down) reports it
/// gone; a CRD with a deletionTimestamp counts as gone (its Certificates are being removed).
#[derive(Debug, Default)]
pub(crate) struct CrdPresence {
    /// Whether the current (re)list contained the CRD.
    listed: bool,
}

impl CrdPresence {
    pub(crate) fn on(
        &mut self,
        event: &Event<PartialObjectMeta<CustomResourceDefinition>>,
    ) -> Option<bool> {
        match event {
            Event::Init => {
                self.listed = false;
                None
            }
            Event::InitApply(crd) | Event::Apply(crd) => {
                self.listed = true;
                Some(crd.metadata.deletion_timestamp.is_none())
            }
            Event::InitDone => (!self.listed).then_some(false),
            Event::Delete(_) => {
                self.listed = false;
                Some(false)
            }
        }
    }
}

/// Follows cert-manager's CRD: starts and stops the Certificate watches, and tells the
/// context which Certificate kind is served. Runs until the client shuts down.
pub(crate) async fn follow(ctx: Arc<Context>, namespaces: Vec<Option<String>>) {
    let client = ctx.client().clone();
    let api: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={CERTIFICATE_CRD}"));
    let mut events = watcher::watcher(api, config)
        .backoff(stackable_certs::rotation::kube::watch_backoff())
        .boxed();
    let mut presence = CrdPresence::default();
    let mut watches: Vec<JoinHandle<()>> = Vec::new();
    let mut probe: Option<JoinHandle<Option<ApiResource>>> = None;
    loop {
        let installed = tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => presence.on(&event),
                Some(Err(error)) => {
                    tracing::warn!(%error, "watch of {CERTIFICATE_CRD} failed; retrying");
                    None
                }
                None => break,
            },
            Some(kind) = wait_probe(&mut probe) => {
                probe = None;
                if let Some(kind) = kind && watches.is_empty() {
                    tracing::info!(version = %kind.api_version, "cert-manager's Certificate kind is served; watching Certificates and re-evaluating inject-ca-from");
                    for namespace in &namespaces {
                        watches.push(tokio::spawn(watch_certificates(ctx.clone(), kind.clone(), namespace.clone())));
                    }
                    ctx.set_certificates(Some(kind));
                }
                continue;
            }
        };
        match installed {
            Some(true) if watches.is_empty() && probe.is_none() => {
                tracing::info!("{CERTIFICATE_CRD} exists; waiting until Certificates are served");
                let client = client.clone();
                let namespace = namespaces.first().cloned().flatten();
                probe = Some(tokio::spawn(async move {
                    await_served(&client, namespace.as_deref()).await
                }));
            }
            Some(false) => {
                if let Some(probe) = probe.take() {
                    probe.abort();
                }
                if !watches.is_empty() {
                    for watch in watches.drain(..) {
                        watch.abort();
                    }
                    tracing::info!(
                        "{CERTIFICATE_CRD} is gone; stopped watching Certificates, inject-ca-from is refused until it is back"
                    );
                    ctx.set_certificates(None);
                } else if ctx.certificates().is_some() {
                    ctx.set_certificates(None);
                }
            }
            _ => {}
        }
    }
    for watch in watches {
        watch.abort();
    }
}

async fn wait_probe(
    probe: &mut Option<JoinHandle<Option<ApiResource>>>,
) -> Option<Option<ApiResource>> {
    match probe {
        Some(handle) => Some(handle.await.ok().flatten()),
        None => std::future::pending().await,
    }
}

/// Polls until Certificates are served: every 250 ms for the first 10 s, then every 10 s (a
/// CRD that does not serve v1, is not Established, or that RBAC does not let us list).
async fn await_served(client: &Client, namespace: Option<&str>) -> Option<ApiResource> {
    let mut attempts = 0u32;
    loop {
        if let Some(kind) = certificates_served(client, namespace).await {
            return Some(kind);
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

/// Watches Certificates (metadata only: their `spec.secretName` is read on reconcile) and
/// reconciles the targets that read a changed one.
async fn watch_certificates(ctx: Arc<Context>, kind: ApiResource, namespace: Option<String>) {
    let api: Api<PartialObjectMeta<DynamicObject>> = match &namespace {
        Some(ns) => Api::namespaced_with(ctx.client().clone(), ns, &kind),
        None => Api::all_with(ctx.client().clone(), &kind),
    };
    let mut events = watcher::watcher(api, watcher::Config::default())
        .backoff(stackable_certs::rotation::kube::watch_backoff())
        .boxed();
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(Event::Apply(o) | Event::InitApply(o) | Event::Delete(o)) => o,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "watch of Certificates failed; retrying");
                continue;
            }
        };
        if let (Some(ns), Some(name)) = (object.metadata.namespace, object.metadata.name) {
            ctx.enqueue_referrers(&Reference::Certificate(ObjectKey::new(ns, name)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
