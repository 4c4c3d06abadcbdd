//! N replicas of an operator binary as real processes, behind a [`Forwarder`]: the Pods of a
//! Deployment, and what the kubelet and a rolling update do to them.
//!
//! Each replica gets two free ports on 127.0.0.1 (its HTTPS server and its health server),
//! the kubeconfig of the test control plane in `KUBECONFIG`, and a log file that takes its
//! stdout and stderr. Behind a forwarder, it is added as an endpoint whose readiness is
//! probed on its health port.
//!
//! - [`Replicas::terminate`] does what the kubelet does when a Pod is deleted: SIGTERM,
//!   the endpoint taken out of the forwarder after
//!   [`ReplicasBuilder::endpoint_removal_delay`] (in a cluster, the endpoints controller and
//!   kube-proxy take a moment, which a server's drain period must cover), SIGKILL after the
//!   termination grace period.
//! - [`Replicas::kill`] is a crash: SIGKILL at once.
//! - [`Replicas::roll`] replaces one replica as a Deployment's rolling update with
//!   `maxSurge: 1, maxUnavailable: 0` does: start the new one, wait until it is ready,
//!   then terminate the old one.
//!
//! Dropping [`Replicas`] kills every process still running. The replicas share the test's
//! process group, so a Ctrl-C reaches them too; a test process killed with SIGKILL leaves
//! them running (the control plane's binaries have a watchdog for that, an operator
//! binary does not).
//!
//! [`Forwarder`]: crate::forwarder::Forwarder

mod error;
mod replica;

use std::{
    ffi::OsString,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

pub use error::{Error, ReplicaReport};
use error::{FreePortSnafu, LogDirSnafu, UnknownReplicaSnafu};
pub use replica::{Replica, ReplicaId, Termination};
use snafu::{OptionExt, ResultExt};

use crate::{
    TestEnv,
    forwarder::{self, Backend, Forwarder, Readiness},
    ports::free_port,
};

/// How many log lines a readiness error shows.
const LOG_TAIL_LINES: usize = 40;

/// The name and addresses of one replica, for its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// `<prefix>-<n>`, unique in its set; also the name of its log file (`<name>.log`).
    pub name: String,
    /// Where its HTTPS server should listen (127.0.0.1 and a free port); the forwarder
    /// sends connections here.
    pub https: SocketAddr,
    /// Where its health server (`/readyz`) should listen (127.0.0.1 and a free port).
    pub health: SocketAddr,
}

type ArgsFn = dyn Fn(&ReplicaInfo) -> Vec<String> + Send + Sync;

/// Builder for [`Replicas`]: what to run, and how it is wired.
#[derive(Clone)]
pub struct ReplicasBuilder {
    program: PathBuf,
    args: Arc<ArgsFn>,
    env: Vec<(OsString, OsString)>,
    name_env: Vec<OsString>,
    kubeconfig: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    name_prefix: String,
    forwarder: Option<Forwarder>,
    readiness_path: Option<String>,
    probe_period: Duration,
    termination_grace: Duration,
    endpoint_removal_delay: Duration,
}

impl std::fmt::Debug for ReplicasBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicasBuilder")
            .field("program", &self.program)
            .field("env", &self.env)
            .field("name_env", &self.name_env)
            .field("kubeconfig", &self.kubeconfig)
            .field("log_dir", &self.log_dir)
            .field("name_prefix", &self.name_prefix)
            .field(
                "forwarder",
                &self.forwarder.as_ref().map(Forwarder::local_addr),
            )
            .field("readiness_path", &self.readiness_path)
            .field("probe_period", &self.probe_period)
            .field("termination_grace", &self.termination_grace)
            .field("endpoint_removal_delay", &self.endpoint_removal_delay)
            .finish_non_exhaustive()
    }
}

impl ReplicasBuilder {
    /// The arguments of each replica, from its name and ports, e.g.
    /// `|r| vec![format!("--bind-address={}", r.https), format!("--health-bind-address={}", r.health)]`.
    /// Default: none.
    pub fn args(
        mut self,
        args: impl Fn(&ReplicaInfo) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.args = Arc::new(args);
        self
    }

    /// Sets an environment variable for every replica (on top of the test's environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets environment variable `key` of each replica to its name (as a Pod's
    /// `metadata.name` through the downward API), over a value set with [`Self::env`].
    pub fn name_env(mut self, key: impl Into<OsString>) -> Self {
        self.name_env.push(key.into());
        self
    }

    /// Sets `KUBECONFIG` for every replica.
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// The kubeconfig of `env` in `KUBECONFIG`, and the logs in `env`'s work folder
    /// (removed with it).
    pub fn test_env(self, env: &TestEnv) -> Self {
        self.kubeconfig(env.kubeconfig_path())
            .log_dir(env.work_dir().join("replicas"))
    }

    /// Where the log files go (created if missing). Default: a temporary folder removed
    /// with the [`Replicas`].
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// The replicas' names are `<prefix>-0`, `<prefix>-1`, … (default `replica`).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// Adds each replica's HTTPS address to `forwarder` as a backend, and takes it out
    /// when the replica is terminated or killed.
    pub fn behind(mut self, forwarder: &Forwarder) -> Self {
        self.forwarder = Some(forwarder.clone());
        self
    }

    /// Probes `GET http://<health><path>` (e.g. `/readyz`) for readiness, in the forwarder
    /// and in [`Replicas::wait_ready`]. Without, a replica is ready once its HTTPS port
    /// accepts connections (and, behind a forwarder, it is an endpoint at once).
    pub fn readiness_path(mut self, path: impl Into<String>) -> Self {
        self.readiness_path = Some(path.into());
        self
    }

    /// The probe period (default 200 ms).
    pub fn probe_period(mut self, period: Duration) -> Self {
        self.probe_period = period;
        self
    }

    /// How long a terminated replica may take to exit after SIGTERM before it gets SIGKILL
    /// (a Pod's `terminationGracePeriodSeconds`; default 30 s as there).
    pub fn termination_grace(mut self, grace: Duration) -> Self {
        self.termination_grace = grace;
        self
    }

    /// How long after SIGTERM (or SIGKILL) the replica's endpoint stays in the forwarder
    /// (default 1 s, kube-proxy's default minimum sync period). Its readiness probe may
    /// take it out of rotation before that.
    pub fn endpoint_removal_delay(mut self, delay: Duration) -> Self {
        self.endpoint_removal_delay = delay;
        self
    }

    /// The set, with no replica running yet.
    pub fn build(self) -> Result<Replicas, Error> {
        let (log_dir, temp_dir) = match &self.log_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("stackable-testenv-replicas-")
                    .tempdir()
                    .context(LogDirSnafu {
                        path: std::env::temp_dir(),
                    })?;
                (dir.path().to_owned(), Some(dir))
            }
        };
        std::fs::create_dir_all(&log_dir).context(LogDirSnafu { path: &log_dir })?;
        Ok(Replicas {
            template: self,
            log_dir,
            _temp_dir: temp_dir,
            replicas: Vec::new(),
        })
    }

    /// The set with `n` replicas started at the same moment (not waited for: see
    /// [`Replicas::wait_all_ready`]).
    pub fn start(self, n: usize) -> Result<Replicas, Error> {
        let mut replicas = self.build()?;
        for _ in 0..n {
            replicas.spawn()?;
        }
        Ok(replicas)
    }

    /// [`Self::start`] `n` replicas, then [`Replicas::wait_all_ready`] within `timeout`.
    pub async fn start_ready(self, n: usize, timeout: Duration) -> Result<Replicas, Error> {
        let mut replicas = self.start(n)?;
        replicas.wait_all_ready(timeout).await?;
        Ok(replicas)
    }
}

/// Replicas of one program as real processes: see the [module documentation](self).
#[derive(Debug)]
pub struct Replicas {
    template: ReplicasBuilder,
    log_dir: PathBuf,
    _temp_dir: Option<tempfile::TempDir>,
    /// Every replica ever started, running or not, in start order (index = id).
    replicas: Vec<Replica>,
}

impl Replicas {
    /// A builder for replicas of `program`.
    pub fn builder(program: impl Into<PathBuf>) -> ReplicasBuilder {
        ReplicasBuilder {
            program: program.into(),
            args: Arc::new(|_| Vec::new()),
            env: Vec::new(),
            name_env: Vec::new(),
            kubeconfig: None,
            log_dir: None,
            name_prefix: "replica".to_owned(),
            forwarder: None,
            readiness_path: None,
            probe_period: Duration::from_millis(200),
            termination_grace: Duration::from_secs(30),
            endpoint_removal_delay: Duration::from_secs(1),
        }
    }

    /// Starts one more replica, with fresh ports, and adds it to the forwarder.
    pub fn spawn(&mut self) -> Result<ReplicaId, Error> {
        let id = ReplicaId(self.replicas.len());
        let port = || free_port().context(FreePortSnafu);
        let info = ReplicaInfo {
            name: format!("{}-{}", self.template.name_prefix, id.0),
            https: SocketAddr::from((Ipv4Addr::LOCALHOST, port()?)),
            health: SocketAddr::from((Ipv4Addr::LOCALHOST, port()?)),
        };
        let mut replica = Replica::spawn(id, info, &self.template, &self.log_dir)?;
        if let Some(forwarder) = &self.template.forwarder {
            let readiness = self.readiness(replica.info());
            let backend = forwarder.add_backend(Backend {
                addr: replica.info().https,
                readiness,
            });
            replica.set_backend(backend);
        }
        tracing::info!(name = replica.name(), pid = ?replica.pid(), "replica started");
        self.replicas.push(replica);
        Ok(id)
    }

    /// The replicas still running, in start order.
    pub fn running(&mut self) -> Vec<ReplicaId> {
        self.replicas
            .iter_mut()
            .filter_map(|r| r.is_running().then(|| r.id()))
            .collect()
    }

    /// A replica, running or not.
    pub fn get(&self, id: ReplicaId) -> Option<&Replica> {
        self.replicas.get(id.0)
    }

    /// A replica, running or not, for its exit status.
    pub fn get_mut(&mut self, id: ReplicaId) -> Option<&mut Replica> {
        self.replicas.get_mut(id.0)
    }

    /// Every replica ever started, in start order.
    pub fn all(&self) -> &[Replica] {
        &self.replicas
    }

    /// The folder of the log files.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The last `lines` lines of every replica's log, each under a header with its name,
    /// pid and state: for a test failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        self.replicas
            .iter()
            .map(|r| {
                format!(
                    "=== {} ({}) ===\n{}\n",
                    r.name(),
                    r.describe(),
                    r.log_tail(lines)
                )
            })
            .collect()
    }

    /// SIGTERM, then the endpoint out of the forwarder after the removal delay, then
    /// SIGKILL if it has not exited within the termination grace period.
    pub async fn terminate(&mut self, id: ReplicaId) -> Result<Termination, Error> {
        let grace = self.template.termination_grace;
        let replica = self.replica_mut(id)?;
        replica.signal(rustix::process::Signal::TERM, "SIGTERM")?;
        self.remove_endpoint_later(id);
        let replica = self.replica_mut(id)?;
        let termination = replica.wait_exit(grace).await?;
        tracing::info!(name = replica.name(), ?termination, "replica terminated");
        Ok(termination)
    }

    /// SIGKILL at once (a crash); the endpoint leaves the forwarder after the removal delay.
    pub async fn kill(&mut self, id: ReplicaId) -> Result<std::process::ExitStatus, Error> {
        self.replica_mut(id)?
            .signal(rustix::process::Signal::KILL, "SIGKILL")?;
        self.remove_endpoint_later(id);
        let replica = self.replica_mut(id)?;
        let termination = replica.wait_exit(Duration::from_secs(5)).await?;
        tracing::info!(name = replica.name(), "replica killed");
        Ok(termination.status)
    }

    /// Replaces `id` as a rolling update does: a new replica is started and waited for
    /// (within `ready_timeout`), then `id` is terminated. Returns the new replica's id.
    pub async fn roll(
        &mut self,
        id: ReplicaId,
        ready_timeout: Duration,
    ) -> Result<(ReplicaId, Termination), Error> {
        self.replica_mut(id)?;
        let new = self.spawn()?;
        self.wait_ready(new, ready_timeout).await?;
        let termination = self.terminate(id).await?;
        Ok((new, termination))
    }

    /// Waits until `id` is ready: its probe passes (behind a forwarder: the forwarder has
    /// it as a ready endpoint), or without a readiness path, its HTTPS port accepts.
    /// Fails at once, with its log tail, when it exits.
    pub async fn wait_ready(&mut self, id: ReplicaId, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let info = self.get(id).context(UnknownReplicaSnafu { id })?.info();
        let readiness = self.readiness(info);
        let forwarder = self.template.forwarder.clone();
        loop {
            let replica = self.replica_mut(id)?;
            replica.fail_if_exited()?;
            let last_check = match (&forwarder, replica.backend(), &readiness) {
                (Some(forwarder), Some(backend), _) => match forwarder.backend(backend) {
                    Some(state) if state.ready => return Ok(()),
                    Some(state) => state
                        .last_probe
                        .unwrap_or_else(|| "not probed yet".to_owned()),
                    None => "no longer a backend of the forwarder".to_owned(),
                },
                (_, _, Some(readiness)) => {
                    match forwarder::probe::http_get(
                        readiness.addr,
                        &readiness.path,
                        readiness.timeout,
                    )
                    .await
                    {
                        Ok(_) => return Ok(()),
                        Err(failure) => failure.to_string(),
                    }
                }
                (_, _, None) => match tokio::net::TcpStream::connect(replica.info().https).await {
                    Ok(_) => return Ok(()),
                    Err(error) => format!("connect to {}: {error}", replica.info().https),
                },
            };
            if Instant::now() >= deadline {
                return Err(replica.not_ready(timeout, last_check, LOG_TAIL_LINES));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running replica is ready (see [`Self::wait_ready`]).
    pub async fn wait_all_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        for id in self.running() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_ready(id, left).await?;
        }
        Ok(())
    }

    fn readiness(&self, info: &ReplicaInfo) -> Option<Readiness> {
        self.template.readiness_path.as_ref().map(|path| {
            Readiness::http_get(info.health, path.clone()).period(self.template.probe_period)
        })
    }

    fn replica_mut(&mut self, id: ReplicaId) -> Result<&mut Replica, Error> {
        self.replicas
            .get_mut(id.0)
            .context(UnknownReplicaSnafu { id })
    }

    fn remove_endpoint_later(&self, id: ReplicaId) {
        if let (Some(forwarder), Some(backend)) = (
            &self.template.forwarder,
            self.get(id).and_then(Replica::backend),
        ) {
            forwarder.remove_backend_after(backend, self.template.endpoint_removal_delay);
        }
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for replica in &mut self.replicas {
            replica.start_kill();
            if let (Some(forwarder), Some(backend)) = (&self.template.forwarder, replica.backend())
            {
                forwarder.remove_backend(backend);
            }
        }
    }
}
