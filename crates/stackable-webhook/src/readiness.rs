//! What `/readyz` answers: a serving certificate is loaded, every readiness check passes, and
//! the server is not draining.
//!
//! Kubernetes sends traffic for a Service only to Pods whose readiness probe succeeds
//! (<https://kubernetes.io/docs/concepts/configuration/liveness-readiness-startup-probes/>). A
//! replica whose certificate the API server would not trust (its CA is not yet in the
//! `caBundle`) must not get webhook calls, and a replica that is shutting down must leave the
//! endpoints before it stops accepting connections: on SIGTERM the server reports 503 at once
//! and keeps serving for a drain period (see [`crate::Limits::drain_period`]).
//!
//! Each check is also a gauge, `webhook_ready{check="…"}` (1 ready, 0 not), on `/metrics`.

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::{metrics::Metrics, tls::CertResolver};

/// A readiness check: `Ok(())` when ready, else why not.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The readiness of one server: its checks and whether it is draining. Cheap to clone.
#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    draining: AtomicBool,
    checks: Mutex<Vec<(String, ReadinessCheck)>>,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checks = self
            .inner
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>();
        f.debug_struct("Readiness")
            .field("draining", &self.is_draining())
            .field("checks", &checks)
            .finish()
    }
}

impl Readiness {
    /// Adds a named check; `/readyz` answers 503 while it fails.
    pub fn add_check(&self, name: impl Into<String>, check: ReadinessCheck) {
        self.inner
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.into(), check));
    }

    /// Whether the server is draining (shutting down; `/readyz` answers 503).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Starts draining: `/readyz` answers 503 from now on and responses ask clients to close
    /// their connection.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Evaluates every check (updating the `webhook_ready` gauges): `Ok` when ready, else one
    /// line per failing check.
    pub(crate) fn check(&self, resolver: &CertResolver, metrics: &Metrics) -> Result<(), String> {
        let mut failures = Vec::new();
        let certificate = resolver.is_ready();
        metrics.set_ready("certificate", certificate);
        if !certificate {
            failures.push("certificate: no serving certificate yet".to_owned());
        }
        let checks = self
            .inner
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (name, check) in checks {
            let result = check();
            metrics.set_ready(&name, result.is_ok());
            if let Err(reason) = result {
                failures.push(format!("{name}: {reason}"));
            }
        }
        let draining = self.is_draining();
        metrics.set_ready("not-draining", !draining);
        if draining {
            failures.push("shutting down: draining connections".to_owned());
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_and_draining_count() {
        let readiness = Readiness::default();
        let resolver = CertResolver::default();
        let metrics = Metrics::new();
        let error = readiness.check(&resolver, &metrics).unwrap_err();
        assert!(error.contains("no serving certificate"), "{error}");

        let flag = Arc::new(AtomicBool::new(false));
        let check_flag = flag.clone();
        readiness.add_check(
            "bundle",
            Arc::new(move || {
                if check_flag.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("CA not in every caBundle".to_owned())
                }
            }),
        );
        let error = readiness.check(&resolver, &metrics).unwrap_err();
        assert!(
            error.contains("bundle: CA not in every caBundle"),
            "{error}"
        );
        assert!(
            metrics
                .encode()
                .contains("webhook_ready{check=\"bundle\"} 0")
        );
        flag.store(true, Ordering::SeqCst);
        let error = readiness.check(&resolver, &metrics).unwrap_err();
        assert!(!error.contains("bundle"), "{error}");
        assert!(
            metrics
                .encode()
                .contains("webhook_ready{check=\"bundle\"} 1")
        );

        readiness.start_draining();
        assert!(readiness.is_draining());
        let error = readiness.check(&resolver, &metrics).unwrap_err();
        assert!(error.contains("draining"), "{error}");
    }
}
