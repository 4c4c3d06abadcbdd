//! The endpoints of the forwarder: what a test adds ([`Backend`], [`Readiness`]), what it
//! reads back ([`BackendState`]), and the table the forwarder picks from, round-robin
//! among the ready ones.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::task::AbortHandle;

/// An endpoint behind the forwarder: a Pod IP and port in Kubernetes terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Where connections go.
    pub addr: SocketAddr,
    /// How readiness is checked; `None`: ready from the moment it is added.
    pub readiness: Option<Readiness>,
}

impl Backend {
    /// A backend that is ready from the moment it is added.
    pub fn always_ready(addr: SocketAddr) -> Self {
        Self {
            addr,
            readiness: None,
        }
    }

    /// A backend that receives new connections only while `readiness` passes.
    pub fn with_readiness(addr: SocketAddr, readiness: Readiness) -> Self {
        Self {
            addr,
            readiness: Some(readiness),
        }
    }
}

/// An HTTP GET readiness probe, as a Pod's `readinessProbe.httpGet`: plain HTTP, success for
/// a status from 200 to 399.
///
/// A backend with a probe is not ready until the probe first succeeds (as a new Pod is not
/// in the ready endpoints until then). The defaults are faster than the kubelet's (a
/// period of 10 s and a failure threshold of 3) so that a test sees a change within about
/// two periods: period 200 ms, timeout 1 s, success and failure thresholds 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The address of the health server (often not the backend's own port).
    pub addr: SocketAddr,
    /// The request path, e.g. `/readyz`.
    pub path: String,
    /// Time between the start of one probe and the next.
    pub period: Duration,
    /// How long one probe may take.
    pub timeout: Duration,
    /// Consecutive successes that make a not-ready backend ready.
    pub success_threshold: u32,
    /// Consecutive failures that make a ready backend not ready.
    pub failure_threshold: u32,
}

impl Readiness {
    /// `GET http://{addr}{path}` with the default period, timeout and thresholds.
    pub fn http_get(addr: SocketAddr, path: impl Into<String>) -> Self {
        Self {
            addr,
            path: path.into(),
            period: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 1,
        }
    }

    /// Sets the period (minimum 10 ms).
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period.max(Duration::from_millis(10));
        self
    }

    /// Sets the timeout of one probe.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the consecutive successes needed to become ready (minimum 1).
    pub fn success_threshold(mut self, threshold: u32) -> Self {
        self.success_threshold = threshold.max(1);
        self
    }

    /// Sets the consecutive failures needed to become not ready (minimum 1).
    pub fn failure_threshold(mut self, threshold: u32) -> Self {
        self.failure_threshold = threshold.max(1);
        self
    }
}

/// Identifies a backend of one forwarder; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub(crate) u64);

impl std::fmt::Display for BackendId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backend-{}", self.0)
    }
}

/// A snapshot of one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendState {
    /// Its id.
    pub id: BackendId,
    /// Where connections go.
    pub addr: SocketAddr,
    /// Whether it receives new connections.
    pub ready: bool,
    /// Connections forwarded to it so far.
    pub connections: u64,
    /// Of those, the ones still open.
    pub open_connections: u64,
    /// Dials to it that failed (refused, reset or timed out).
    pub dial_errors: u64,
    /// What the last probe saw (`None` before the first probe or without one).
    pub last_probe: Option<String>,
}

/// One backend in the table, shared with its connections and its probe.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) id: BackendId,
    pub(crate) addr: SocketAddr,
    pub(crate) ready: AtomicBool,
    pub(crate) connections: AtomicU64,
    pub(crate) open_connections: AtomicU64,
    pub(crate) dial_errors: AtomicU64,
    pub(crate) last_probe: Mutex<Option<String>>,
}

impl Slot {
    pub(crate) fn new(id: BackendId, addr: SocketAddr, ready: bool) -> Self {
        Self {
            id,
            addr,
            ready: AtomicBool::new(ready),
            connections: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            dial_errors: AtomicU64::new(0),
            last_probe: Mutex::new(None),
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_probe_result(&self, ready: Option<bool>, seen: String) {
        if let Some(ready) = ready {
            self.ready.store(ready, Ordering::Release);
        }
        *self
            .last_probe
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(seen);
    }

    pub(crate) fn state(&self) -> BackendState {
        BackendState {
            id: self.id,
            addr: self.addr,
            ready: self.is_ready(),
            connections: self.connections.load(Ordering::Relaxed),
            open_connections: self.open_connections.load(Ordering::Relaxed),
            dial_errors: self.dial_errors.load(Ordering::Relaxed),
            last_probe: self
                .last_probe
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }
}

/// Counts a connection as open while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<Slot>);

impl OpenConnection {
    pub(crate) fn new(slot: Arc<Slot>) -> Self {
        slot.connections.fetch_add(1, Ordering::Relaxed);
        slot.open_connections.fetch_add(1, Ordering::Relaxed);
        Self(slot)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Entry {
    slot: Arc<Slot>,
    probe: Option<AbortHandle>,
}

/// The backends in the order they were added, and the round-robin position.
#[derive(Debug, Default)]
pub(crate) struct Table {
    entries: Vec<Entry>,
    next_id: u64,
    turn: usize,
}

impl Table {
    /// Adds a backend; `probe` is called with the new slot to start its probe.
    pub(crate) fn add(
        &mut self,
        addr: SocketAddr,
        ready: bool,
        probe: impl FnOnce(Arc<Slot>) -> Option<AbortHandle>,
    ) -> BackendId {
        let id = BackendId(self.next_id);
        self.next_id += 1;
        let slot = Arc::new(Slot::new(id, addr, ready));
        let probe = probe(slot.clone());
        self.entries.push(Entry { slot, probe });
        id
    }

    /// Removes a backend and stops its probe; its open connections carry on.
    pub(crate) fn remove(&mut self, id: BackendId) -> Option<BackendState> {
        let index = self.entries.iter().position(|e| e.slot.id == id)?;
        let entry = self.entries.remove(index);
        if let Some(probe) = entry.probe {
            probe.abort();
        }
        Some(entry.slot.state())
    }

    /// The ready backends for one new connection: the one whose turn it is first, then
    /// the others in round-robin order. Empty when none is ready.
    pub(crate) fn pick(&mut self) -> Vec<Arc<Slot>> {
        let ready: Vec<Arc<Slot>> = self
            .entries
            .iter()
            .filter(|e| e.slot.is_ready())
            .map(|e| e.slot.clone())
            .collect();
        if ready.is_empty() {
            return ready;
        }
        let start = self.turn % ready.len();
        self.turn = self.turn.wrapping_add(1);
        ready[start..]
            .iter()
            .chain(&ready[..start])
            .cloned()
            .collect()
    }

    pub(crate) fn states(&self) -> Vec<BackendState> {
        self.entries.iter().map(|e| e.slot.state()).collect()
    }

    pub(crate) fn get(&self, id: BackendId) -> Option<BackendState> {
        self.entries
            .iter()
            .find(|e| e.slot.id == id)
            .map(|e| e.slot.state())
    }

    /// Stops every probe (the forwarder is going away).
    pub(crate) fn stop_probes(&mut self) {
        for entry in &mut self.entries {
            if let Some(probe) = entry.probe.take() {
                probe.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn pick_rotates_among_ready_backends_only() {
        let mut table = Table::default();
        let a = table.add(addr(1), true, |_| None);
        let b = table.add(addr(2), false, |_| None);
        let c = table.add(addr(3), true, |_| None);
        let firsts: Vec<BackendId> = (0..4).map(|_| table.pick()[0].id).collect();
        assert_eq!(firsts, [a, c, a, c]);
        // The other ready backends follow, for a retry.
        let order: Vec<BackendId> = table.pick().iter().map(|s| s.id).collect();
        assert_eq!(order, [a, c]);
        assert!(!order.contains(&b));
    }

    #[test]
    fn nothing_ready_picks_nothing_and_removal_is_by_id() {
        let mut table = Table::default();
        let a = table.add(addr(1), false, |_| None);
        assert!(table.pick().is_empty());
        assert_eq!(table.remove(a).map(|s| s.addr), Some(addr(1)));
        assert_eq!(table.remove(a), None);
        let b = table.add(addr(2), true, |_| None);
        assert_ne!(a, b, "ids are not reused");
        assert_eq!(table.states().len(), 1);
    }

    #[test]
    fn open_connections_are_counted_while_alive() {
        let slot = Arc::new(Slot::new(BackendId(0), addr(1), true));
        let first = OpenConnection::new(slot.clone());
        let second = OpenConnection::new(slot.clone());
        drop(first);
        let state = slot.state();
        assert_eq!((state.connections, state.open_connections), (2, 1));
        drop(second);
        assert_eq!(slot.state().open_connections, 0);
    }

    #[test]
    fn readiness_settings_have_floors() {
        let r = Readiness::http_get(addr(9), "/readyz")
            .period(Duration::ZERO)
            .success_threshold(0)
            .failure_threshold(0);
        assert_eq!(r.period, Duration::from_millis(10));
        assert_eq!((r.success_threshold, r.failure_threshold), (1, 1));
    }
}
