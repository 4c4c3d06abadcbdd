//! The servers of `cargo xtask bench`: building them, starting them, reading their CPU time
//! and memory from `/proc`, and stopping them.
//!
//! - ours: `crates/stackable-webhook/examples/bench_server.rs`, `cargo build --release`;
//! - ours with mimalloc (only when asked for, `--peer ours-mimalloc`): the same server with
//!   mimalloc as its global allocator (`examples/bench_server_mimalloc.rs`);
//! - the Go peer: `xtask/bench/go-peer` (controller-runtime's webhook server), built with the
//!   local Go toolchain into `~/.cache/stackable-webhook-kit/bench-peer-<hash>/` and reused while
//!   its sources, `go.sum` and the Go version stay the same.
//!
//! Memory figures come from `/proc/<pid>/status` (`VmRSS`, `VmHWM`), CPU time from
//! `/proc/<pid>/stat` (`utime` + `stime`), see proc(5).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::Result;

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum Peer {
    /// stackable-webhook (Rust, tokio/hyper/rustls), the system's allocator.
    Ours,
    /// controller-runtime's webhook server (Go).
    Go,
    /// stackable-webhook with mimalloc as the global allocator (not run unless asked for).
    OursMimalloc,
}

impl Peer {
    /// The name in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Peer::Ours => "stackable-webhook",
            Peer::Go => "controller-runtime",
            Peer::OursMimalloc => "stackable-webhook, mimalloc",
        }
    }

    /// Builds the server (ours in release, into the target folder) and returns its path.
    pub(crate) fn build(self) -> Result<PathBuf> {
        match self {
            Peer::Ours => build_ours(),
            Peer::OursMimalloc => build_ours_with(&target_dir(), "bench_server_mimalloc", &[]),
            Peer::Go => build_go_peer(),
        }
    }
}

/// The workspace root (xtask's parent folder).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo target folder.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs a cargo command from the workspace root, failing on a non-zero exit.
pub(crate) fn cargo(args: &[&str]) -> Result {
    cargo_with_env(args, &[])
}

/// [`cargo`] with environment variables for cargo (a target folder, profile overrides).
fn cargo_with_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Result {
    eprintln!("bench: cargo {}", args.join(" "));
    let status = Command::new(env!("CARGO"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .status()?;
    if !status.success() {
        return Err(format!("`cargo {}` failed ({status})", args.join(" ")).into());
    }
    Ok(())
}

/// `cargo xtask` runs the debug build; the measuring client must not be the slow part, so
/// build the release xtask and run the same command line with it (`log`: the progress prefix).
pub(crate) fn reexec_release(log: &str) -> Result<std::process::ExitCode> {
    cargo(&[
        "build",
        "--release",
        "--locked",
        "--package",
        "xtask",
        "--bin",
        "xtask",
    ])?;
    let release = target_dir().join("release/xtask");
    eprintln!("{log}: running {}", release.display());
    let mut command = Command::new(&release);
    command.args(std::env::args_os().skip(1));
    let status = status_passing_signals(command)
        .map_err(|e| format!("cannot run {}: {e}", release.display()))?;
    Ok(exit_code(status))
}

/// Runs `command` to its end. A SIGINT or SIGTERM this process gets meanwhile is passed on to
/// the command (which stops the servers it started and exits, see [`unless_interrupted`])
/// instead of ending this process alone and leaving the command, and its servers, running.
pub(crate) fn status_passing_signals(command: Command) -> Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut child = tokio::process::Command::from(command).spawn()?;
        loop {
            let name = tokio::select! {
                status = child.wait() => return Ok(status?),
                _ = interrupt.recv() => "-INT",
                _ = terminate.recv() => "-TERM",
            };
            if let Some(pid) = child.id() {
                let _ = Command::new("kill").args([name, &pid.to_string()]).status();
            }
        }
    })
}

/// Runs `work` until it ends or this process gets SIGINT or SIGTERM; on a signal `work` is
/// dropped, and with it the servers it started ([`Server`] stops its process when dropped, as
/// `cargo xtask profile`'s child under callgrind does), and the error names the signal.
pub(crate) async fn unless_interrupted<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = work => result,
        _ = interrupt.recv() => Err("interrupted (SIGINT); the servers it started were stopped".into()),
        _ = terminate.recv() => Err("terminated (SIGTERM); the servers it started were stopped".into()),
    }
}

/// The exit code that passes on how a command this one ran again ended.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> std::process::ExitCode {
    if status.success() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Bytes as mebibytes with one decimal, e.g. `11.2 MiB`.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The date and time (UTC, to the minute) printed on a report, from the `date` command.
pub(crate) fn report_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Writes `table` (the first line is the header) as aligned columns: the first `left` columns
/// left-aligned, the figures right-aligned, a rule under the header.
pub(crate) fn write_table(out: &mut String, table: &[Vec<String>], left: usize) {
    use std::fmt::Write as _;
    let columns = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            table
                .iter()
                .filter_map(|line| line.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (index, line) in table.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, width))| {
                let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
                if column < left {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if index == 0 {
            let total = widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
}

/// Builds our server in release and returns its path.
pub(crate) fn build_ours() -> Result<PathBuf> {
    build_ours_with(&target_dir(), "bench_server", &[])
}

/// Builds stackable-webhook's `example` in release into the target folder `target`, with
/// cargo's `profile` overrides (`CARGO_PROFILE_RELEASE_*` variables, e.g. `("LTO", "false")`).
pub(crate) fn build_ours_with(
    target: &Path,
    example: &str,
    profile: &[(&str, &str)],
) -> Result<PathBuf> {
    let names: Vec<String> = profile
        .iter()
        .map(|(key, _)| format!("CARGO_PROFILE_RELEASE_{key}"))
        .collect();
    let mut env: Vec<(&str, &std::ffi::OsStr)> = vec![("CARGO_TARGET_DIR", target.as_os_str())];
    env.extend(
        names
            .iter()
            .zip(profile)
            .map(|(name, (_, value))| (name.as_str(), std::ffi::OsStr::new(*value))),
    );
    cargo_with_env(
        &[
            "build",
            "--release",
            "--locked",
            "--package",
            "stackable-webhook",
            "--example",
            example,
        ],
        &env,
    )?;
    let path = target.join("release/examples").join(example);
    if !path.is_file() {
        return Err(format!("cargo built no {}", path.display()).into());
    }
    Ok(path)
}

/// The Go peer: controller-runtime's webhook server.
pub(crate) fn build_go_peer() -> Result<PathBuf> {
    crate::go_peer::GoPeer {
        log: "bench",
        module: "xtask/bench/go-peer",
        name: "bench-peer",
        what: "controller-runtime webhook server",
    }
    .build()
}

/// How the servers run (the same for both).
#[derive(Clone, Debug)]
pub(crate) struct RunOptions {
    /// `GOMAXPROCS` and `TOKIO_WORKER_THREADS`; `None` leaves both at their default.
    pub(crate) threads: Option<usize>,
    /// Run the server under `taskset -c` on this CPU.
    pub(crate) pin_cpu: Option<usize>,
    /// More environment variables for both servers.
    pub(crate) env: Vec<(String, String)>,
    /// Where server logs go.
    pub(crate) log_dir: PathBuf,
}

/// A running server process.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    /// Its address.
    pub(crate) addr: SocketAddr,
    /// When it was spawned.
    pub(crate) spawned: Instant,
}

impl Server {
    /// Spawns `binary` serving `cert`/`key` on a free loopback port.
    pub(crate) fn spawn(
        peer: Peer,
        binary: &Path,
        cert: &Path,
        key: &Path,
        options: &RunOptions,
        tag: &str,
    ) -> Result<Self> {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?
        };
        let log_path = options.log_dir.join(format!("{tag}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut command = match options.pin_cpu {
            // taskset execs the server: the pid stays the server's.
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpu.to_string()).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--addr")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env_remove("RUST_LOG")
            .env_remove("GOMAXPROCS")
            .env_remove("TOKIO_WORKER_THREADS")
            .env_remove("GOGC")
            .env_remove("GOMEMLIMIT")
            .env_remove("GLIBC_TUNABLES")
            .env_remove("MALLOC_ARENA_MAX")
            .envs(options.env.iter().map(|(key, value)| (key, value)));
        if let Some(threads) = options.threads {
            command
                .env("GOMAXPROCS", threads.to_string())
                .env("TOKIO_WORKER_THREADS", threads.to_string());
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {} ({}): {e}", peer.label(), binary.display()))?;
        // Timed when spawning returns: the process exists (posix_spawn returns once the child
        // has exec'd). Before it, `spawn` may spend tens of milliseconds in this process's
        // allocator (glibc consolidating the heap the 10k-object review body left behind),
        // which is no part of the server's start.
        let spawned = Instant::now();
        Ok(Self {
            child,
            addr,
            spawned,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub(crate) fn check_alive(&mut self) -> Result {
        if let Some(status) = self.child.try_wait()? {
            return Err(format!("the server exited early ({status})").into());
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not stopped within 5 s.
    pub(crate) fn stop(mut self) {
        terminate(&mut self.child);
    }
}

/// SIGTERM to `child` unless it has exited, up to 5 s for it to exit, then SIGKILL.
pub(crate) fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Server {
    /// A server still running when its handle goes (the run interrupted, or failed before
    /// [`stop`](Self::stop)) is killed, not left behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Clock ticks per second for `/proc/<pid>/stat` times.
pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process (`pid` `None`: this process).
pub(crate) fn cpu_seconds(pid: Option<u32>, ticks: f64) -> Result<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(&path)?;
    // The command name (field 2) may contain spaces: fields are counted after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("unexpected {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: f64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: f64 = fields.get(12).ok_or("no stime")?.parse()?;
    Ok((utime + stime) / ticks)
}

/// The CPU time of every thread of a process, in nanoseconds (the first field of each
/// `/proc/<pid>/task/<tid>/schedstat`, which counts nanoseconds, where `/proc/<pid>/stat`
/// counts clock ticks of 10 ms: too coarse for a window of 100 ms).
pub(crate) fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread that ended between the listing and the read is left out.
        if let Ok(text) = std::fs::read_to_string(task?.path().join("schedstat")) {
            total += parse_schedstat(&text)?;
        }
    }
    Ok(total)
}

/// The time on CPU (ns) of one `schedstat` line: on-CPU ns, waiting ns, timeslices.
fn parse_schedstat(text: &str) -> Result<u64> {
    Ok(text
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("empty schedstat {text:?}"))?
        .parse()?)
}

/// CPU seconds from one line of `/proc/stat`, split into what ran and what the hypervisor
/// took.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct CpuTimes {
    /// user, nice, system, irq and softirq: the work of this machine's processes and kernel.
    pub(crate) busy: f64,
    /// steal: time the CPU was runnable but the hypervisor ran something else (a VM's host
    /// busy with other guests). Nothing inside the machine runs then, ours or anyone's.
    pub(crate) steal: f64,
}

impl std::ops::Sub for CpuTimes {
    type Output = CpuTimes;

    fn sub(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            busy: self.busy - earlier.busy,
            steal: self.steal - earlier.steal,
        }
    }
}

/// CPU times of the whole machine (`cpu`, all cores added) or of one CPU (`cpuN`).
pub(crate) fn cpu_times(cpu: Option<usize>, ticks: f64) -> Result<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = cpu.map_or_else(|| "cpu".to_owned(), |n| format!("cpu{n}"));
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))
        .ok_or_else(|| format!("no {name} line in /proc/stat"))?;
    parse_cpu_times(line, ticks)
}

/// One `cpu…` line of `/proc/stat`: user nice system idle iowait irq softirq steal ….
fn parse_cpu_times(line: &str, ticks: f64) -> Result<CpuTimes> {
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse::<f64>)
        .collect::<std::result::Result<_, _>>()?;
    let field = |i: usize| values.get(i).copied().unwrap_or(0.0);
    Ok(CpuTimes {
        busy: (field(0) + field(1) + field(2) + field(5) + field(6)) / ticks,
        steal: field(7) / ticks,
    })
}

/// Resident memory of a process, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Memory {
    /// `VmRSS`: resident now.
    pub(crate) rss: u64,
    /// `VmHWM`: the peak resident size since the process started.
    pub(crate) hwm: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub(crate) fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    Ok(Memory {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_gives_the_time_on_cpu() {
        assert_eq!(parse_schedstat("123456789 2000 31\n").unwrap(), 123_456_789);
        assert!(parse_schedstat("").is_err());
        assert!(parse_schedstat("x 1 2").is_err());
        // This process: at least one thread, and it has run.
        assert!(cpu_ns(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn a_server_dropped_while_running_is_stopped() {
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        let proc_entry = PathBuf::from(format!("/proc/{pid}"));
        let server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            spawned: Instant::now(),
        };
        assert!(proc_entry.exists());
        drop(server);
        assert!(!proc_entry.exists(), "the server process is left running");
    }

    #[test]
    fn table_columns_are_aligned() {
        let table = vec![
            vec!["name".to_owned(), "req/s".to_owned()],
            vec!["ours".to_owned(), "10331".to_owned()],
            vec!["controller-runtime".to_owned(), "7".to_owned()],
        ];
        let mut out = String::new();
        write_table(&mut out, &table, 1);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "name                req/s");
        assert_eq!(lines[1], "-".repeat(25));
        assert_eq!(lines[2], "ours                10331");
        assert_eq!(lines[3], "controller-runtime      7");
    }

    #[test]
    fn cpu_times_leave_idle_out_and_steal_apart() {
        let times = parse_cpu_times("cpu0 100 5 20 900 7 3 2 40 0 0", 100.0).unwrap();
        assert_eq!(
            times,
            CpuTimes {
                busy: 1.3,
                steal: 0.4
            }
        );
        assert!(parse_cpu_times("cpu0 1 x", 100.0).is_err());
    }

    #[test]
    fn reads_own_cpu_and_memory() {
        let ticks = clock_ticks();
        assert!(cpu_seconds(None, ticks).unwrap() >= 0.0);
        assert!(cpu_times(None, ticks).unwrap().busy > 0.0);
        assert!(cpu_times(Some(0), ticks).unwrap().busy > 0.0);
        assert!(cpu_times(Some(100_000), ticks).is_err());
        let memory = memory(std::process::id()).unwrap();
        assert!(memory.rss > 0 && memory.hwm >= memory.rss);
    }
}
