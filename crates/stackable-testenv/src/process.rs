//! A child process of the control plane: etcd or kube-apiserver.
//!
//! Its output goes to a log file in the harness's temporary folder, so a startup failure can
//! show the tail of it. It runs in its own process group (a Ctrl-C in the terminal reaches
//! the harness, which stops the children in order), gets a stdin pipe whose write end only
//! this process holds (the binaries built by this crate exit when it closes: see
//! `go/internal/watchdog`), and is killed and reaped on drop.

use std::{
    fs::OpenOptions,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
};

/// The variable that switches on the watchdog in the binaries built by this crate.
pub(crate) const WATCHDOG_ENV: &str = "STACKABLE_TESTENV_EXIT_ON_STDIN_EOF";

/// A running child, killed on drop.
#[derive(Debug)]
pub(crate) struct ManagedProcess {
    name: &'static str,
    child: Child,
    /// Held open for the watchdog; closed when the harness goes away.
    stdin: Option<ChildStdin>,
    log: PathBuf,
    command_line: String,
}

impl ManagedProcess {
    /// Starts `program` with `args`, output appended to `log` (created if missing, so a
    /// restarted process adds to the log of the one before).
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> std::io::Result<Self> {
        let out = OpenOptions::new().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let mut child = Command::new(program)
            .args(args)
            .env(WATCHDOG_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        let command_line = std::iter::once(program.display().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self {
            name,
            child,
            stdin,
            log,
            command_line,
        })
    }

    /// The name given at spawn (`etcd`, `kube-apiserver`).
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The program and its flags, for messages.
    pub(crate) fn command_line(&self) -> &str {
        &self.command_line
    }

    /// The log file.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status, if it has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        crate::build::tail(&String::from_utf8_lossy(&text), lines)
    }

    /// Kills the process and waits for it.
    pub(crate) fn stop(&mut self) {
        self.stdin.take();
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
