//! One replica: its process, its log file, its endpoint in the forwarder.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal};
use snafu::ResultExt;
use tokio::process::{Child, Command};

use super::{
    Error, ReplicaInfo, ReplicaReport, ReplicasBuilder,
    error::{ExitedSnafu, LogFileSnafu, SignalSnafu, SpawnSnafu, WaitSnafu},
};
use crate::forwarder::BackendId;

/// Identifies a replica of one [`Replicas`](super::Replicas) set; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaId(pub(crate) usize);

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a terminated replica ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Termination {
    /// Its exit status.
    pub status: ExitStatus,
    /// From SIGTERM to exit.
    pub took: Duration,
    /// Whether it needed SIGKILL because the grace period ran out.
    pub killed: bool,
}

/// A replica process, killed on drop.
#[derive(Debug)]
pub struct Replica {
    id: ReplicaId,
    info: ReplicaInfo,
    child: Child,
    pid: Option<u32>,
    status: Option<ExitStatus>,
    log: PathBuf,
    command_line: String,
    backend: Option<BackendId>,
}

impl Replica {
    pub(super) fn spawn(
        id: ReplicaId,
        info: ReplicaInfo,
        template: &ReplicasBuilder,
        log_dir: &Path,
    ) -> Result<Self, Error> {
        let log = log_dir.join(format!("{}.log", info.name));
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .context(LogFileSnafu { path: &log })?;
        let err = out.try_clone().context(LogFileSnafu { path: &log })?;
        let args = (template.args)(&info);
        let mut command = Command::new(&template.program);
        command
            .args(&args)
            .envs(template.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        for key in &template.name_env {
            command.env(key, &info.name);
        }
        if let Some(kubeconfig) = &template.kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        let child = command.spawn().context(SpawnSnafu {
            name: &info.name,
            program: &template.program,
        })?;
        let command_line = std::iter::once(template.program.display().to_string())
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self {
            id,
            pid: child.id(),
            info,
            child,
            status: None,
            log,
            command_line,
            backend: None,
        })
    }

    /// Its id in the set.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// Its name (`<prefix>-<n>`).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Its name and ports.
    pub fn info(&self) -> &ReplicaInfo {
        &self.info
    }

    /// Its process id (also after it exited).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The program and its arguments.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Its backend in the forwarder, when it runs behind one.
    pub fn backend(&self) -> Option<BackendId> {
        self.backend
    }

    /// Its log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        crate::build::tail(&String::from_utf8_lossy(&text), lines)
    }

    /// Its exit status, once it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    pub(super) fn set_backend(&mut self, backend: BackendId) {
        self.backend = Some(backend);
    }

    pub(super) fn describe(&self) -> String {
        let pid = self.pid.map_or_else(|| "?".to_owned(), |p| p.to_string());
        match self.status {
            Some(status) => format!("pid {pid}, {status}"),
            None => format!("pid {pid}, running"),
        }
    }

    /// Sends `signal` unless it has exited.
    pub(super) fn signal(&mut self, signal: Signal, name: &'static str) -> Result<(), Error> {
        if !self.is_running() {
            return Ok(());
        }
        // Not reaped yet (try_wait saw it running), so the pid is still this process's.
        let Some(pid) = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw)
        else {
            return Ok(());
        };
        rustix::process::kill_process(pid, signal)
            .map_err(std::io::Error::from)
            .context(SignalSnafu {
                name: &self.info.name,
                signal: name,
            })
    }

    /// Waits up to `grace` for it to exit, then sends SIGKILL and waits for that.
    pub(super) async fn wait_exit(&mut self, grace: Duration) -> Result<Termination, Error> {
        let started = Instant::now();
        let (status, killed) = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => (status, false),
            Err(_) => {
                self.signal(Signal::KILL, "SIGKILL")?;
                (self.child.wait().await, true)
            }
        };
        let status = status.context(WaitSnafu {
            name: &self.info.name,
        })?;
        self.status = Some(status);
        Ok(Termination {
            status,
            took: started.elapsed(),
            killed,
        })
    }

    pub(super) fn fail_if_exited(&mut self) -> Result<(), Error> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => ExitedSnafu {
                status,
                report: self.report(super::LOG_TAIL_LINES),
            }
            .fail(),
        }
    }

    pub(super) fn not_ready(&self, timeout: Duration, last_check: String, lines: usize) -> Error {
        Error::NotReady {
            timeout,
            last_check,
            report: self.report(lines),
        }
    }

    fn report(&self, lines: usize) -> Box<ReplicaReport> {
        Box::new(ReplicaReport {
            name: self.info.name.clone(),
            command_line: self.command_line.clone(),
            log: self.log.clone(),
            tail: self.log_tail(lines),
        })
    }

    /// SIGKILL without waiting (the drop of the set).
    pub(super) fn start_kill(&mut self) {
        if self.is_running() {
            let _ = self.child.start_kill();
        }
    }
}
