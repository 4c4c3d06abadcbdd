//! One operator process, in order: certificates → webhook server ready (its leaf's CA in the
//! CRD's caBundle) → leader election → the controller, on the leader only. On SIGTERM the
//! webhook drains first (`/readyz` 503, connections still accepted for the drain period, then
//! in-flight requests get the shutdown grace and its connections are closed); only then the
//! controller stops and the Lease is released, so that the next leader's first writes (each one
//! a conversion call the API server makes to fill its watch cache) never meet this replica
//! closing its connections: a call written onto a connection just as the server closes it
//! fails, and the object stays unreadable from the API server's cache until written again.
//!
//! `/readyz` covers the webhook (certificate, caBundle in place, not draining); `/metrics`
//! serves both, the controller's state as `crontab_controller_leader` and
//! `crontab_controller_synced`. The controller's cache sync is deliberately not a readiness
//! check: the controller lists CronTabs as v1, which the API server converts by calling this
//! very webhook through the Service, and a Service only routes to ready Pods, so a leader that
//! reported unready until its caches synced would deadlock as the only replica.

use std::sync::Arc;

use kube::Client;
use snafu::{ResultExt as _, Snafu};
use stackable_webhook::{RunningServer, WebhookServer};
use tokio::{sync::watch, task::JoinHandle};

use stackable_runtime::leader::{self, Election, Leadership};

use crate::controller::{self, ControllerMetrics};

/// Why the operator stopped.
#[derive(Debug, Snafu)]
pub enum Error {
    /// The webhook server failed to start or failed.
    #[snafu(display("the webhook server failed"))]
    Serve {
        /// The cause.
        source: stackable_webhook::ServerError,
    },
    /// Leader election could not start.
    #[snafu(display("leader election failed"))]
    Leader {
        /// The cause.
        source: leader::Error,
    },
}

/// Runs `server` and, with `election`, the controller on the leader, until SIGTERM/SIGINT.
/// The server must not handle signals itself (`handle_signals(false)`).
pub async fn run(
    client: Client,
    server: WebhookServer,
    election: Option<Election>,
    metrics: ControllerMetrics,
    synced: Arc<watch::Sender<bool>>,
    leading: Arc<watch::Sender<bool>>,
) -> Result<(), Error> {
    let running = server.start().await.context(ServeSnafu)?;
    // One signal listener for the whole life of the process.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    tracing::info!(address = %running.local_addr(), health = ?running.health_addr(), "webhook server listening");

    // The controller watches v1: every list goes through this webhook, so it starts once the
    // API server trusts it.
    let election = match election {
        Some(election) => {
            tokio::select! {
                () = running.wait_ready() => {}
                () = &mut shutdown => return drain(running).await,
            }
            tracing::info!(
                "webhook ready (certificate served and trusted); starting leader election"
            );
            Some(
                Leadership::start(client.clone(), &election)
                    .await
                    .context(LeaderSnafu)?,
            )
        }
        None => None,
    };

    let mut leading_rx = election.as_ref().map(Leadership::leading);
    let mut controller: Option<(watch::Sender<bool>, JoinHandle<()>)> = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            changed = wait_changed(leading_rx.as_mut()) => {
                if !changed {
                    leading_rx = None;
                    continue;
                }
                let now_leading = leading_rx.as_ref().is_some_and(|rx| *rx.borrow());
                leading.send_replace(now_leading);
                metrics.leader.set(i64::from(now_leading));
                match (now_leading, controller.is_some()) {
                    (true, false) => {
                        tracing::info!("leading: starting the controller");
                        let (stop, stop_rx) = watch::channel(false);
                        synced.send_replace(false);
                        let task = tokio::spawn(controller::run(
                            client.clone(),
                            metrics.clone(),
                            stop_rx,
                            (*synced).clone(),
                        ));
                        controller = Some((stop, task));
                    }
                    (false, true) => {
                        tracing::info!("no longer leading: stopping the controller");
                        stop_controller(controller.take()).await;
                        metrics.synced.set(0);
                    }
                    _ => {}
                }
            }
        }
    }
    // Shutdown: the webhook drains and closes its connections, then the controller stops and
    // the Lease is released (see the module docs). Leadership lost meanwhile still stops the
    // controller.
    tracing::info!("shutting down: the webhook drains, then the controller stops");
    running.drain_and_shutdown();
    let served = {
        let wait = running.wait();
        tokio::pin!(wait);
        loop {
            tokio::select! {
                served = &mut wait => break served,
                changed = wait_changed(leading_rx.as_mut()) => {
                    if !changed {
                        leading_rx = None;
                    } else if !leading_rx.as_ref().is_some_and(|rx| *rx.borrow()) {
                        tracing::info!("no longer leading: stopping the controller");
                        stop_controller(controller.take()).await;
                    }
                }
            }
        }
    };
    stop_controller(controller.take()).await;
    metrics.leader.set(0);
    metrics.synced.set(0);
    // The Lease manager releases the Lease and ends once every receiver of `leading` is gone:
    // this clone too (kept, it hung the shutdown until SIGKILL and held the Lease meanwhile).
    drop(leading_rx);
    if let Some(election) = election {
        election.release().await;
    }
    served.context(ServeSnafu)
}

async fn drain(running: RunningServer) -> Result<(), Error> {
    running.drain_and_shutdown();
    running.wait().await.context(ServeSnafu)
}

async fn stop_controller(controller: Option<(watch::Sender<bool>, JoinHandle<()>)>) {
    if let Some((stop, task)) = controller {
        let _ = stop.send(true);
        let _ = task.await;
    }
}

async fn wait_changed(rx: Option<&mut watch::Receiver<bool>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut sigterm) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
