//! A round-robin TCP forwarder on loopback that plays kube-proxy and the endpoints
//! controller for one Service with several endpoints.
//!
//! In a cluster, the API server calls a webhook through a Service; kube-proxy sends each
//! new connection to one of the Service's *ready* endpoints, and the endpoints controller
//! takes a Pod out of them when its readiness probe fails or it is terminating. A
//! [`Forwarder`] does the same for processes on 127.0.0.1, so a test can put several
//! replicas of a webhook behind one port (see [`Services`] and [`Endpoints`]):
//!
//! - each new connection goes to the next ready [`Backend`] (round-robin);
//! - a backend with a [`Readiness`] probe receives new connections only while the probe
//!   passes; one without is ready from the moment it is added;
//! - an established connection stays with its backend until either side closes, also after
//!   the backend turned not ready or was removed (as conntrack keeps it);
//! - with no ready backend, the connection is accepted and reset at once (kube-proxy
//!   rejects it; a TCP listener cannot refuse after accepting) and counted;
//! - a failed dial (refused, reset, timed out) is counted, and by default tried once more
//!   on the next ready backend. kube-proxy does not do that: its rules send the connection
//!   to a dead endpoint, and the client sees the failure. Switch the retry off
//!   ([`ForwarderBuilder::retry_failed_dial`]) to see what a client in a cluster would, or
//!   assert that [`ForwarderStats::dial_errors`] stayed at 0.
//!
//! Connections are copied both ways with half-close (`copy_bidirectional`). At most
//! [`ForwarderBuilder::max_connections`] are open at once; further clients wait in the
//! listen backlog. Dropping the last clone of a [`Forwarder`] closes the listener and ends
//! every connection and probe.
//!
//! [`Services`]: https://kubernetes.io/docs/concepts/services-networking/service/
//! [`Endpoints`]: https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/

mod backend;
pub(crate) mod probe;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

pub use backend::{Backend, BackendId, BackendState, Readiness};
use backend::{OpenConnection, Slot, Table};
use snafu::{ResultExt, Snafu, ensure};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};

/// Errors of [`Forwarder`].
#[derive(Debug, Snafu)]
pub enum Error {
    /// The forwarder only listens on loopback addresses.
    #[snafu(display("the forwarder listens on loopback only, not on {addr}"))]
    NotLoopback {
        /// The address given.
        addr: SocketAddr,
    },

    /// The listener could not be bound.
    #[snafu(display("cannot listen on {addr}"))]
    Bind {
        /// The address given.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },

    /// Fewer backends than wanted became ready in time.
    #[snafu(display(
        "{ready} of {wanted} wanted backends were ready after {timeout:?}: {backends:?}"
    ))]
    NotReady {
        /// How many were wanted.
        wanted: usize,
        /// How many were ready.
        ready: usize,
        /// The timeout.
        timeout: Duration,
        /// Every backend at the deadline.
        backends: Vec<BackendState>,
    },
}

/// Counters of a [`Forwarder`] since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwarderStats {
    /// Connections accepted from clients.
    pub accepted: u64,
    /// Connections forwarded to a backend.
    pub forwarded: u64,
    /// Connections reset because no backend was ready.
    pub refused_no_ready_backend: u64,
    /// Dials to a backend that failed, including those retried with success.
    pub dial_errors: u64,
    /// Connections reset because every dial tried for them failed.
    pub reset_after_dial_errors: u64,
    /// Connections open now.
    pub open: u64,
}

/// Builder for [`Forwarder`].
#[derive(Debug, Clone)]
pub struct ForwarderBuilder {
    max_connections: usize,
    dial_timeout: Duration,
    retry_failed_dial: bool,
}

impl Default for ForwarderBuilder {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            dial_timeout: Duration::from_secs(1),
            retry_failed_dial: true,
        }
    }
}

impl ForwarderBuilder {
    /// How many connections may be open at once (default 1024, minimum 1); further
    /// clients wait in the listen backlog.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How long a dial to a backend may take (default 1 s).
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// Whether a failed dial is tried once more on the next ready backend (default
    /// `true`; kube-proxy does not retry).
    pub fn retry_failed_dial(mut self, retry: bool) -> Self {
        self.retry_failed_dial = retry;
        self
    }

    /// Listens on `listen` (a loopback address, port 0 for a free one) and starts
    /// forwarding. Needs a tokio runtime.
    pub async fn start(self, listen: SocketAddr) -> Result<Forwarder, Error> {
        ensure!(listen.ip().is_loopback(), NotLoopbackSnafu { addr: listen });
        let listener = TcpListener::bind(listen)
            .await
            .context(BindSnafu { addr: listen })?;
        let local_addr = listener.local_addr().context(BindSnafu { addr: listen })?;
        let (shutdown, shutdown_rx) = watch::channel(());
        let shared = Arc::new(Shared {
            runtime: tokio::runtime::Handle::current(),
            table: Mutex::default(),
            counters: Counters::default(),
            config: self.clone(),
            shutdown: shutdown_rx,
        });
        tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            Arc::new(Semaphore::new(self.max_connections)),
        ));
        tracing::debug!(%local_addr, "forwarder listening");
        Ok(Forwarder {
            handle: Arc::new(Handle {
                local_addr,
                shared,
                _shutdown: shutdown,
            }),
        })
    }
}

/// A round-robin TCP forwarder on loopback: see the [module documentation](self).
///
/// Clones share the same listener and backends; everything stops when the last is dropped.
#[derive(Debug, Clone)]
pub struct Forwarder {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropped with the last `Forwarder`: every task sees its receiver close and ends.
    _shutdown: watch::Sender<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.table().stop_probes();
        tracing::debug!(local_addr = %self.local_addr, "forwarder stopped");
    }
}

#[derive(Debug)]
struct Shared {
    /// The runtime the forwarder started on: probes and timers run there, so the methods
    /// of a `Forwarder` work from any thread.
    runtime: tokio::runtime::Handle,
    table: Mutex<Table>,
    counters: Counters,
    config: ForwarderBuilder,
    shutdown: watch::Receiver<()>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    forwarded: AtomicU64,
    refused: AtomicU64,
    dial_errors: AtomicU64,
    reset_after_dial_errors: AtomicU64,
    open: AtomicU64,
}

impl Forwarder {
    /// A builder, for the connection limit, the dial timeout and the retry.
    pub fn builder() -> ForwarderBuilder {
        ForwarderBuilder::default()
    }

    /// Starts a forwarder with the defaults on `listen` (usually `127.0.0.1:0`).
    pub async fn start(listen: SocketAddr) -> Result<Self, Error> {
        Self::builder().start(listen).await
    }

    /// Starts a forwarder that behaves like kube-proxy in front of a Service (a failed dial
    /// is not retried on another backend) on a free port of 127.0.0.1: what a test that
    /// plays a Service in front of replicas wants.
    pub async fn kube_proxy() -> Result<Self, Error> {
        Self::builder()
            .retry_failed_dial(false)
            .start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr
    }

    /// Adds a backend. With a probe, it receives connections once the probe passed
    /// (the first probe runs at once); without, at once.
    pub fn add_backend(&self, backend: Backend) -> BackendId {
        let shared = &self.handle.shared;
        let id = shared
            .table()
            .add(backend.addr, backend.readiness.is_none(), |slot| {
                let readiness = backend.readiness?;
                let mut shutdown = shared.shutdown.clone();
                let task = shared.runtime.spawn(async move {
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        () = probe_loop(slot, readiness) => {}
                    }
                });
                Some(task.abort_handle())
            });
        tracing::debug!(%id, addr = %backend.addr, "backend added");
        id
    }

    /// Removes a backend: it gets no new connections, its open ones carry on. Returns its
    /// last state, `None` for an unknown id.
    pub fn remove_backend(&self, id: BackendId) -> Option<BackendState> {
        let removed = self.handle.shared.table().remove(id);
        tracing::debug!(%id, found = removed.is_some(), "backend removed");
        removed
    }

    /// Removes a backend after `delay`, as the endpoints controller and kube-proxy take a
    /// moment to notice a Pod going away; until then it keeps receiving new connections
    /// while ready. Does nothing when the forwarder is dropped before.
    pub fn remove_backend_after(&self, id: BackendId, delay: Duration) {
        let shared = Arc::downgrade(&self.handle.shared);
        let mut shutdown = self.handle.shared.shutdown.clone();
        self.handle.shared.runtime.spawn(async move {
            tokio::select! {
                _ = shutdown.changed() => {}
                () = tokio::time::sleep(delay) => {
                    if let Some(shared) = shared.upgrade() {
                        let removed = shared.table().remove(id);
                        tracing::debug!(%id, found = removed.is_some(), ?delay, "backend removed");
                    }
                }
            }
        });
    }

    /// Every backend, in the order they were added.
    pub fn backends(&self) -> Vec<BackendState> {
        self.handle.shared.table().states()
    }

    /// One backend, `None` for an unknown or removed id.
    pub fn backend(&self, id: BackendId) -> Option<BackendState> {
        self.handle.shared.table().get(id)
    }

    /// The counters since the start.
    pub fn stats(&self) -> ForwarderStats {
        let c = &self.handle.shared.counters;
        ForwarderStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            refused_no_ready_backend: c.refused.load(Ordering::Relaxed),
            dial_errors: c.dial_errors.load(Ordering::Relaxed),
            reset_after_dial_errors: c.reset_after_dial_errors.load(Ordering::Relaxed),
            open: c.open.load(Ordering::Relaxed),
        }
    }

    /// Waits until at least `wanted` backends are ready.
    pub async fn wait_for_ready(&self, wanted: usize, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let backends = self.backends();
            let ready = backends.iter().filter(|b| b.ready).count();
            if ready >= wanted {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return NotReadySnafu {
                    wanted,
                    ready,
                    timeout,
                    backends,
                }
                .fail();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, limit: Arc<Semaphore>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => return,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => return,
            },
        };
        let client = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match client {
            Ok((client, _peer)) => {
                shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut shutdown = shared.shutdown.clone();
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        () = forward(client, &shared) => {}
                    }
                    drop(permit);
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "forwarder cannot accept");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn forward(mut client: TcpStream, shared: &Shared) {
    let counters = &shared.counters;
    let candidates = shared.table().pick();
    if candidates.is_empty() {
        counters.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("no ready backend: connection reset");
        let _ = client.set_zero_linger();
        return;
    }
    let attempts = if shared.config.retry_failed_dial {
        2
    } else {
        1
    };
    for slot in candidates.into_iter().take(attempts) {
        let dialed =
            tokio::time::timeout(shared.config.dial_timeout, TcpStream::connect(slot.addr))
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "dial timed out",
                    ))
                });
        let mut upstream = match dialed {
            Ok(upstream) => upstream,
            Err(error) => {
                slot.dial_errors.fetch_add(1, Ordering::Relaxed);
                counters.dial_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(id = %slot.id, addr = %slot.addr, %error, "dial to backend failed");
                continue;
            }
        };
        let _ = upstream.set_nodelay(true);
        let _ = client.set_nodelay(true);
        counters.forwarded.fetch_add(1, Ordering::Relaxed);
        counters.open.fetch_add(1, Ordering::Relaxed);
        let open = OpenConnection::new(slot);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        drop(open);
        counters.open.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    counters
        .reset_after_dial_errors
        .fetch_add(1, Ordering::Relaxed);
    let _ = client.set_zero_linger();
}

async fn probe_loop(slot: Arc<Slot>, readiness: Readiness) {
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut next = tokio::time::Instant::now();
    loop {
        let outcome = probe::http_get(readiness.addr, &readiness.path, readiness.timeout).await;
        let change = match &outcome {
            Ok(_) => {
                failures = 0;
                successes = successes.saturating_add(1);
                (successes >= readiness.success_threshold).then_some(true)
            }
            Err(_) => {
                successes = 0;
                failures = failures.saturating_add(1);
                (failures >= readiness.failure_threshold).then_some(false)
            }
        };
        let seen = match &outcome {
            Ok(status) => format!("HTTP {status}"),
            Err(failure) => failure.to_string(),
        };
        if change.is_some_and(|ready| ready != slot.is_ready()) {
            tracing::debug!(id = %slot.id, ready = change, %seen, "backend readiness changed");
        }
        slot.set_probe_result(change, seen);
        next += readiness.period;
        tokio::time::sleep_until(next.max(tokio::time::Instant::now())).await;
    }
}
