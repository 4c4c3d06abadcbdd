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
    time::{Duration, Instant},
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

/// The Go peer's module folder.
fn go_module_dir() -> PathBuf {
    bench_peer::workspace_root().join("xtask/bench/cainjector-peer")
}

/// 64-bit FNV-1a over chunks (a stable content hash for the cache folder name, no crypto).
fn fnv1a(chunks: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in chunks {
        for byte in chunk.iter() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn go_command(module: &Path) -> Command {
    let mut command = Command::new("go");
    command
        .current_dir(module)
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-buildvcs=false -mod=readonly");
    command
}

fn run_step(step: &str, command: &mut Command) -> Result {
    let started = Instant::now();
    eprintln!("bench-cainjector:   {step}: {command:?}");
    let output = command
        .output()
        .map_err(|e| format!("step '{step}': cannot run {command:?}: {e} (is Go on PATH?)"))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        return Err(format!(
            "step '{step}': {command:?} failed ({}):\n{text}",
            output.status
        )
        .into());
    }
    eprintln!(
        "bench-cainjector:   {step}: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

const PEER_PREFIX: &str = "cainjector-peer-";

/// Builds the Go peer into the cache, or reuses an earlier build of the same sources.
pub(crate) fn build_go_peer() -> Result<PathBuf> {
    let module = go_module_dir();
    let go_version = Command::new("go")
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .map_err(|e| format!("cannot run `go version` (install Go >= 1.26): {e}"))?;
    let go_version = String::from_utf8_lossy(&go_version.stdout)
        .trim()
        .to_owned();
    let mut sources: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(&module)
        .map_err(|e| format!("cannot read the Go peer's module {}: {e}", module.display()))?
    {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".go") || name == "go.mod" || name == "go.sum" {
            sources.push((name, std::fs::read(&path)?));
        }
    }
    sources.sort();
    let mut chunks: Vec<&[u8]> = vec![go_version.as_bytes()];
    for (name, content) in &sources {
        chunks.push(name.as_bytes());
        chunks.push(content);
    }
    let hash = fnv1a(&chunks);
    let cache = stackable_testenv::assets::cache_dir()?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("the cache folder has no parent")?;
    let out_dir = cache.join(format!("{PEER_PREFIX}{hash:016x}"));
    let binary = out_dir.join("cainjector-peer");
    if binary.is_file() {
        eprintln!("bench-cainjector: reusing the Go peer {}", binary.display());
        return Ok(binary);
    }
    eprintln!(
        "bench-cainjector: building the Go peer (cert-manager's cainjector) from {} with {go_version} into {}",
        module.display(),
        out_dir.display()
    );
    run_step(
        "go mod download",
        go_command(&module).args(["mod", "download"]),
    )?;
    let staging = cache.join(format!(
        "{PEER_PREFIX}{hash:016x}.partial-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let built = run_step(
        "go build",
        go_command(&module)
            .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
            .arg(staging.join("cainjector-peer"))
            .arg("."),
    );
    if let Err(error) = built {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(error);
    }
    std::fs::write(
        staging.join("stamp"),
        format!("{go_version}\nsources {}\n", module.display()),
    )?;
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::rename(&staging, &out_dir)?;
    for entry in std::fs::read_dir(&cache)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PEER_PREFIX) && entry.path() != out_dir && !name.contains(".partial-") {
            eprintln!("bench-cainjector: removing the stale Go peer build {name}");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(binary)
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
        let spawned = Instant::now();
        let child = command.spawn().map_err(|e| {
            format!(
                "cannot start {} ({}): {e}",
                injector.label(),
                binary.display()
            )
        })?;
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
        let Some(mut child) = self.child.take() else {
            return;
        };
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
    fn fnv1a_depends_on_chunk_boundaries_and_content() {
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_ne!(fnv1a(&[b"main.go", b"x"]), fnv1a(&[b"main.go", b"y"]));
    }

    #[test]
    fn go_peer_runs_without_leader_election() {
        assert!(Injector::Go.flags().contains(&"--leader-elect=false"));
        assert_ne!(Injector::Ours.label(), Injector::Go.label());
    }
}
