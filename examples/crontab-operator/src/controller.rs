//! The CronTab controller: for every CronTab, a ConfigMap `crontab-<name>` that renders its
//! schedule and endpoint (owned by the CronTab, so deleting the CronTab garbage-collects it),
//! and the CronTab's status through the status subresource.
//!
//! It watches and writes **v1** while v1beta1 stays the storage version, so every list, watch
//! event and status write goes through the conversion webhook this same process serves
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>):
//! the webhook must be up, and trusted, before the controller starts.
//!
//! Built on kube-runtime's [`Controller`]: the CronTabs are the main stream, the ConfigMaps
//! it owns (label `app.kubernetes.io/managed-by=crontab-operator`) trigger their owner.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams},
    runtime::{
        Controller,
        controller::Action,
        watcher::{self},
    },
};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use snafu::{ResultExt as _, Snafu};
use tokio::sync::watch;

use crate::v1::{CronTab, CronTabStatus};

/// The field manager of the controller's writes.
pub const FIELD_MANAGER: &str = "crontab-operator";
/// The label on every ConfigMap the controller renders.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "crontab-operator");

/// Why a reconciliation failed (it is retried after [`RETRY`]).
#[derive(Debug, Snafu)]
pub enum Error {
    /// The CronTab has no namespace or name (never for objects the API server returns).
    #[snafu(display("the CronTab has no {what}"))]
    Incomplete {
        /// What is missing.
        what: &'static str,
    },
    /// Writing the ConfigMap failed.
    #[snafu(display("cannot apply ConfigMap {namespace}/{name}"))]
    ApplyConfigMap {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Writing the status failed.
    #[snafu(display("cannot write the status of CronTab {namespace}/{name}"))]
    WriteStatus {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

/// After a failed reconciliation, the CronTab is tried again this much later.
pub const RETRY: Duration = Duration::from_secs(5);

/// The controller's metrics (registered on the webhook server's `/metrics`).
#[derive(Clone, Debug, Default)]
pub struct ControllerMetrics {
    /// Reconciliations done.
    pub reconciliations: Counter,
    /// Reconciliations that failed.
    pub failures: Counter,
    /// 1 while this replica is the leader and its controller runs.
    pub leader: Gauge,
    /// 1 while the leader's controller has its caches synced (its first list of CronTabs,
    /// converted by the webhook, is done).
    pub synced: Gauge,
}

impl ControllerMetrics {
    /// Registers the metrics under `crontab_controller_*`.
    pub fn register(&self, metrics: &stackable_webhook::Metrics) {
        metrics.register(
            "crontab_controller_reconciliations",
            "CronTab reconciliations",
            self.reconciliations.clone(),
        );
        metrics.register(
            "crontab_controller_failures",
            "CronTab reconciliations that failed",
            self.failures.clone(),
        );
        metrics.register(
            "crontab_controller_leader",
            "1 while this replica leads and reconciles",
            self.leader.clone(),
        );
        metrics.register(
            "crontab_controller_synced",
            "1 while the leader's controller has listed every CronTab",
            self.synced.clone(),
        );
    }
}

struct Context {
    client: Client,
    metrics: ControllerMetrics,
}

/// The name of the ConfigMap rendered for the CronTab `name`.
pub fn config_map_name(name: &str) -> String {
    format!("crontab-{name}")
}

/// The ConfigMap rendered for `crontab`: its schedule (with the time zone when set), its
/// endpoint, owned by the CronTab.
pub fn render(crontab: &CronTab) -> Option<ConfigMap> {
    let owner = crontab.controller_owner_ref(&())?;
    let mut data = BTreeMap::from([
        ("schedule".to_owned(), crontab.spec.schedule.clone()),
        (
            "endpoint".to_owned(),
            format!("{}:{}", crontab.spec.host, crontab.spec.port),
        ),
        ("image".to_owned(), crontab.spec.image.clone()),
    ]);
    if let Some(zone) = &crontab.spec.time_zone {
        data.insert("timeZone".to_owned(), zone.clone());
    }
    Some(ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(&crontab.name_any())),
            namespace: crontab.namespace(),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_owned(),
                MANAGED_BY.1.to_owned(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    })
}

async fn reconcile(crontab: Arc<CronTab>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciliations.inc();
    let namespace = crontab
        .namespace()
        .ok_or(Error::Incomplete { what: "namespace" })?;
    let name = crontab
        .metadata
        .name
        .clone()
        .ok_or(Error::Incomplete { what: "name" })?;
    let rendered = render(&crontab).ok_or(Error::Incomplete { what: "uid" })?;
    let config_map_name = config_map_name(&name);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let before = config_maps.get_opt(&config_map_name).await.ok().flatten();
    config_maps
        .patch(&config_map_name, &params, &Patch::Apply(&rendered))
        .await
        .context(ApplyConfigMapSnafu {
            namespace: &namespace,
            name: &config_map_name,
        })?;
    let changed = before.and_then(|b| b.data) != rendered.data;

    // The status, through the v1 status subresource (converted to v1beta1 for storage).
    let status = CronTabStatus {
        active_jobs: Some(crontab.spec.replicas.unwrap_or(1)),
        last_schedule_time: if changed {
            Some(now_rfc3339())
        } else {
            crontab
                .status
                .as_ref()
                .and_then(|s| s.last_schedule_time.clone())
                .or_else(|| Some(now_rfc3339()))
        },
    };
    if crontab.status.as_ref() != Some(&status) {
        let crontabs: Api<CronTab> = Api::namespaced(ctx.client.clone(), &namespace);
        let body = serde_json::json!({
            "apiVersion": CronTab::api_version(&()),
            "kind": CronTab::kind(&()),
            "status": status,
        });
        crontabs
            .patch_status(&name, &params, &Patch::Apply(&body))
            .await
            .context(WriteStatusSnafu {
                namespace: &namespace,
                name: &name,
            })?;
    }
    Ok(Action::await_change())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn error_policy(crontab: Arc<CronTab>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failures.inc();
    tracing::warn!(
        crontab = %crontab.name_any(),
        error = %snafu::Report::from_error(error),
        "reconciliation failed; retrying"
    );
    Action::requeue(RETRY)
}

/// Runs the controller until `stop` is set to `true` (graceful: reconciliations in flight
/// finish). `synced` turns `true` once its caches are filled.
pub async fn run(
    client: Client,
    metrics: ControllerMetrics,
    mut stop: watch::Receiver<bool>,
    synced: watch::Sender<bool>,
) {
    let crontabs: Api<CronTab> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    let owned = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    // The initial list (and every re-list) is read from etcd, not from the API server's watch
    // cache: the v1 watch cache converts each stored object once, when it enters the cache, and
    // an object whose conversion failed then (the webhook not reachable yet, e.g. while every
    // replica was down) stays "not decodable" there until it changes, failing every list from
    // the cache with a 500 StorageReadError. A list from etcd converts afresh.
    let config = watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent);
    let controller = Controller::new(crontabs, config).owns(config_maps, owned);
    let store = controller.store();
    let synced_metric = metrics.synced.clone();
    tokio::spawn(async move {
        // Polled in a loop: kube-runtime's store readiness wakes only its most recent waiter,
        // and the applier waits on it too.
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    let _ = synced.send(true);
                    synced_metric.set(1);
                    tracing::info!(crontabs = store.len(), "controller caches synced");
                    return;
                }
                Ok(Err(_)) => return,
                Err(_) => {}
            }
        }
    });
    let ctx = Arc::new(Context { client, metrics });
    controller
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            match result {
                Ok(_) => {}
                // Reported by the error policy already.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(error) => tracing::warn!(
                    error = %snafu::Report::from_error(&error),
                    "controller error"
                ),
            }
            futures::future::ready(())
        })
        .await;
    tracing::info!("controller stopped");
}
