//! The errors of [`Replicas`](super::Replicas), each naming the replica, and for a replica
//! that exited or is not ready, its command line and log tail.

use std::{path::PathBuf, time::Duration};

use snafu::Snafu;

use super::ReplicaId;

/// Errors of [`Replicas`](super::Replicas).
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(super)))]
pub enum Error {
    /// No free port was found.
    #[snafu(display("cannot find a free port on 127.0.0.1"))]
    FreePort {
        /// The cause.
        source: std::io::Error,
    },

    /// The folder for the logs could not be created.
    #[snafu(display("cannot create the log folder {path:?}"))]
    LogDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// A log file could not be opened.
    #[snafu(display("cannot open the log file {path:?}"))]
    LogFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// The program could not be started.
    #[snafu(display("cannot start replica {name} ({program:?})"))]
    Spawn {
        /// The replica's name.
        name: String,
        /// The program.
        program: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// No replica has this id (or it was never started by this set).
    #[snafu(display("no replica {id}"))]
    UnknownReplica {
        /// The id.
        id: ReplicaId,
    },

    /// A signal could not be sent.
    #[snafu(display("cannot send {signal} to replica {name}"))]
    Signal {
        /// The replica's name.
        name: String,
        /// `SIGTERM` or `SIGKILL`.
        signal: &'static str,
        /// The cause.
        source: std::io::Error,
    },

    /// Waiting for the process failed.
    #[snafu(display("cannot wait for replica {name}"))]
    Wait {
        /// The replica's name.
        name: String,
        /// The cause.
        source: std::io::Error,
    },

    /// A replica exited while it was waited for to become ready.
    #[snafu(display("replica {} exited ({status}) before it was ready\n{report}", report.name))]
    Exited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The replica, with its log tail.
        report: Box<ReplicaReport>,
    },

    /// A replica was not ready in time.
    #[snafu(display(
        "replica {} was not ready after {timeout:?} (last check: {last_check})\n{report}",
        report.name
    ))]
    NotReady {
        /// The timeout.
        timeout: Duration,
        /// What the last readiness check saw.
        last_check: String,
        /// The replica, with its log tail.
        report: Box<ReplicaReport>,
    },
}

/// What an error tells about a replica: its command line and the end of its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaReport {
    /// The replica's name.
    pub name: String,
    /// The program and its arguments.
    pub command_line: String,
    /// The log file.
    pub log: PathBuf,
    /// The last lines of its output.
    pub tail: String,
}

impl std::fmt::Display for ReplicaReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nlog ({:?}) ends with:\n{}",
            self.command_line, self.log, self.tail
        )
    }
}
