//! Faults of the control plane: kube-apiserver stopped and started again.
//!
//! The restarted API server listens on the same port, with the same flags, certificates,
//! service-account key and etcd, so everything built before it stopped (kube clients,
//! kubeconfig files, operator processes) reconnects on its own, and every object survives.
//! While it is stopped, connections to its port are refused, as for an API server whose
//! node is gone.

use std::time::Duration;

use snafu::ResultExt;

use super::{ApiserverRunningSnafu, Error, TestEnv, WriteFileSnafu, spawn, wait_for_apiserver};

impl TestEnv {
    /// Whether kube-apiserver runs (it may have been stopped by [`Self::stop_apiserver`],
    /// or have exited on its own).
    pub fn apiserver_running(&mut self) -> bool {
        self.apiserver.exited().is_none()
    }

    /// Stops kube-apiserver with SIGKILL, as a crash would; etcd keeps running. Its clients
    /// see refused connections until [`Self::start_apiserver`]. Does nothing when it is not
    /// running.
    pub fn stop_apiserver(&mut self) {
        if self.apiserver_running() {
            tracing::info!(pid = self.apiserver.id(), "stopping kube-apiserver");
        }
        self.apiserver.stop();
    }

    /// Starts kube-apiserver again, on the same port with the same flags, certificates and
    /// etcd, and waits until `/readyz` answers 200 and the `default` namespace is there (as
    /// at start, within the builder's startup timeout). Its output is appended to the same
    /// log file.
    ///
    /// Fails when it is already running: stop it first.
    pub async fn start_apiserver(&mut self) -> Result<(), Error> {
        if self.apiserver_running() {
            return ApiserverRunningSnafu {
                pid: self.apiserver.id(),
            }
            .fail();
        }
        let log = self.apiserver.log_path().to_owned();
        append_marker(&log)?;
        let program = &self.binaries.kube_apiserver;
        self.apiserver = spawn("kube-apiserver", program, &self.apiserver_args, log)?;
        wait_for_apiserver(
            &mut self.apiserver,
            &mut self.etcd,
            &self.config,
            self.startup_timeout,
        )
        .await?;
        tracing::info!(pid = self.apiserver.id(), "kube-apiserver started again");
        Ok(())
    }

    /// Stops kube-apiserver, waits `down`, and starts it again (see
    /// [`Self::stop_apiserver`] and [`Self::start_apiserver`]).
    pub async fn restart_apiserver_after(&mut self, down: Duration) -> Result<(), Error> {
        self.stop_apiserver();
        tokio::time::sleep(down).await;
        self.start_apiserver().await
    }
}

/// Marks the restart in the log, so its reader can tell the two runs apart.
fn append_marker(log: &std::path::Path) -> Result<(), Error> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut file| writeln!(file, "--- stackable-testenv: kube-apiserver restarted ---"))
        .context(WriteFileSnafu { path: log })
}
