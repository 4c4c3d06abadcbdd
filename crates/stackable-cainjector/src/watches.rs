//! What makes a target worth another look besides itself changing: a Secret it reads (metadata
//! watch: Secret data is read with one GET per referenced Secret and never cached, so 20,000
//! unrelated Secrets cost next to nothing), and the API server CA file changing.

use std::{path::PathBuf, sync::Arc};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt as _,
        watcher::{self, Event},
    },
};

use crate::{annotations::ObjectKey, context::Context, index::Reference};

/// Watches the metadata of Secrets (in `namespace`, or all) and reconciles the targets that
/// read a changed, created or deleted one.
pub(crate) async fn watch_secrets(ctx: Arc<Context>, namespace: Option<String>) {
    let api: Api<PartialObjectMeta<Secret>> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client().clone(), ns),
        None => Api::all(ctx.client().clone()),
    };
    let mut events = watcher::watcher(api, watcher::Config::default())
        .backoff(stackable_certs::rotation::kube::watch_backoff())
        .boxed();
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(Event::Apply(o) | Event::InitApply(o) | Event::Delete(o)) => o,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "watch of Secrets failed; retrying");
                continue;
            }
        };
        if let (Some(ns), Some(name)) = (object.metadata.namespace, object.metadata.name) {
            ctx.enqueue_referrers(&Reference::Secret(ObjectKey::new(ns, name)));
        }
    }
}

/// Reads the API server CA file now and then; when it changed (the cluster CA rotated and the
/// kubelet updated the mounted file), the targets that inject it are reconciled.
pub(crate) async fn follow_api_server_ca(ctx: Arc<Context>, path: PathBuf) {
    let mut warned = false;
    loop {
        match tokio::fs::read_to_string(&path).await {
            Ok(pem) => {
                warned = false;
                ctx.set_api_server_ca(pem);
            }
            Err(error) if !warned => {
                warned = true;
                tracing::warn!(path = %path.display(), %error, "cannot read the API server CA file; keeping the last one read");
            }
            Err(_) => {}
        }
        tokio::time::sleep(ctx.config.api_server_ca_poll).await;
    }
}
