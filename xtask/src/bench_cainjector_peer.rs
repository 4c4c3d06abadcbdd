//! The two injectors of `cargo xtask bench-cainjector`: building them and running them as
//! processes against the test control plane.
//!
//! - ours: the `stackable-cainjector` binary (crates/stackable-cainjector), `cargo build --release`;
//! - the Go peer: `xtask/bench/cainjector-peer` (cert-manager's cainjector library code wrapped
//!   as its binary wraps it), built with the local Go toolchain (`GOTOOLCHAIN=local`) into
//!   `~/.cache/stackable-webhook-kit/cainjector-peer-<hash>/` and reused while its sources,
//!   `go.sum` and the Go version stay the same.
//!
//! Both read the test control plane's kubeconfig and log at info level to a file.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Instant,
};

use crate::{Result, bench_peer};

/// Which injector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum Injector {
    /// `stackable-cainjector` (Rust, kube-rs).
    Ours,
    /// cert-manager's cainjector (Go, controller-runtime).
    Go,
}

impl Injector {
    /// The name in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Injector::Ours => "stackable-cainjector",
            Injector::Go => "cert-manager cainjector",
        }
    }

    /// A short name for object and file names.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Injector::Ours => "ours",
            Injector::Go => "go",
        }
    }

    /// The command-line flags it runs with (beside the kubeconfig), as printed in the report.
    pub(crate) fn flags(self) -> &'static [&'static str] {
        match self {
            // The metrics endpoint off; everything else at its default (all namespaces, all
            // target kinds, cert-manager Certificates followed when their CRD exists).
            Injector::Ours => &["--metrics-address="],
            // Leader election off (the peer's default; cert-manager's binary defaults to on);
            // everything else at cert-manager's defaults (all namespaces, all four injectable
            // kinds, the Certificates data source on); metrics and health probes off.
            Injector::Go => &["--leader-elect=false"],
        }
    }
}

/// Builds our injector in release and returns its path.
pub(crate) fn build_ours() -> Result<PathBuf> {
    bench_peer::cargo(&[
        "build",
        "--release",
        "--locked",
        "--package",
        "stackable-cainjector",
        "--bin",
        "stackable-cainjector",
    ])?;
    let path = bench_peer::target_dir().join("release/stackable-cainjector");
    if !path.is_file() {
        return Err(format!("cargo built no {}", path.display()).into());
    }
    Ok(path)
}

/// The Go peer: cert-manager's cainjector.
pub(crate) fn build_go_peer() -> Result<PathBuf> {
    crate::go_peer::GoPeer {
        log: "bench-cainjector",
        module: "xtask/bench/cainjector-peer",
        name: "cainjector-peer",
        what: "cert-manager's cainjector",
    }
    .build()
}

/// A running injector process, killed on drop.
#[derive(Debug)]
pub(crate) struct Process {
    child: Option<Child>,
    /// When it was spawned.
    pub(crate) spawned: Instant,
    /// Its log file.
    pub(crate) log: PathBuf,
}

impl Process {
    /// Starts `binary` (the `injector`) against the control plane of `kubeconfig`.
    pub(crate) fn spawn(
        injector: Injector,
        binary: &Path,
        kubeconfig: &Path,
        log: PathBuf,
    ) -> Result<Self> {
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(binary);
        command
            .args(injector.flags())
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("GOMAXPROCS")
            .env_remove("TOKIO_WORKER_THREADS")
            .env_remove("GOGC")
            .env_remove("GOMEMLIMIT")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if injector == Injector::Go {
            command.arg("--kubeconfig").arg(kubeconfig);
        }
        let child = command.spawn().map_err(|e| {
            format!(
                "cannot start {} ({}): {e}",
                injector.label(),
                binary.display()
            )
        })?;
        // Timed once the process exists, as the webhook bench times its servers: the harness's
        // own work inside `spawn` (its allocator, before the fork) is no part of the start.
        let spawned = Instant::now();
        Ok(Self {
            child: Some(child),
            spawned,
            log,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails (with the log's last lines) if the process has exited.
    pub(crate) fn check_alive(&mut self) -> Result {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            return Err(format!(
                "the injector exited early ({status}); last log lines:\n{}",
                self.log_tail()
            )
            .into());
        }
        Ok(())
    }

    /// The last 15 lines of its log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then SIGKILL if it has not stopped within 5 s.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            bench_peer::terminate(&mut child);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_peer_runs_without_leader_election() {
        assert!(Injector::Go.flags().contains(&"--leader-elect=false"));
        assert_ne!(Injector::Ours.label(), Injector::Go.label());
    }
}
