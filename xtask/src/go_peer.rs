//! Go peers of the benchmarks (`xtask/bench/<module>`): built with the local Go toolchain
//! (`GOTOOLCHAIN=local`, `CGO_ENABLED=0`) into `~/.cache/stackable-webhook-kit/<name>-<hash>/`
//! and reused while the module's sources, `go.sum` and the Go version stay the same.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use crate::Result;

/// One Go program the benchmarks compare against.
#[derive(Debug)]
pub(crate) struct GoPeer {
    /// The prefix of progress lines (the xtask command's name).
    pub(crate) log: &'static str,
    /// The Go module, relative to the workspace root.
    pub(crate) module: &'static str,
    /// The binary's name, also the cache folder's prefix.
    pub(crate) name: &'static str,
    /// What it is, for the progress line.
    pub(crate) what: &'static str,
}

impl GoPeer {
    /// Builds the peer into the cache, or reuses an earlier build of the same sources.
    pub(crate) fn build(&self) -> Result<PathBuf> {
        let log = self.log;
        let module = crate::bench_peer::workspace_root().join(self.module);
        let go_version = Command::new("go")
            .arg("version")
            .env("GOTOOLCHAIN", "local")
            .output()
            .map_err(|e| format!("cannot run `go version` (install Go >= 1.26): {e}"))?;
        let go_version = String::from_utf8_lossy(&go_version.stdout)
            .trim()
            .to_owned();
        let hash = source_hash(&module, &go_version)?;
        let cache = stackable_testenv::assets::cache_dir()?
            .parent()
            .map(Path::to_path_buf)
            .ok_or("the cache folder has no parent")?;
        let prefix = format!("{}-", self.name);
        let out_dir = cache.join(format!("{prefix}{hash:016x}"));
        let binary = out_dir.join(self.name);
        if binary.is_file() {
            eprintln!("{log}: reusing the Go peer {}", binary.display());
            return Ok(binary);
        }
        eprintln!(
            "{log}: building the Go peer ({}) from {} with {go_version} into {}",
            self.what,
            module.display(),
            out_dir.display()
        );
        run_step(
            log,
            "go mod download",
            go_command(&module).args(["mod", "download"]),
        )?;
        let staging = cache.join(format!(
            "{prefix}{hash:016x}.partial-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)?;
        let built = run_step(
            log,
            "go build",
            go_command(&module)
                .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
                .arg(staging.join(self.name))
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
        // Older builds of other sources are dead weight in the cache.
        for entry in std::fs::read_dir(&cache)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && entry.path() != out_dir && !name.contains(".partial-") {
                eprintln!("{log}: removing the stale Go peer build {name}");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(binary)
    }
}

/// The content hash of a module's `*.go`, `go.mod` and `go.sum` files and the Go version.
fn source_hash(module: &Path, go_version: &str) -> Result<u64> {
    let mut sources: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(module)
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
    Ok(fnv1a(&chunks))
}

/// 64-bit FNV-1a: a stable content hash for the cache folder name (no crypto needed).
fn fnv1a(chunks: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in chunks {
        for byte in chunk.iter() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate the chunks so that moving bytes between files changes the hash.
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

fn run_step(log: &str, step: &str, command: &mut Command) -> Result {
    let started = Instant::now();
    eprintln!("{log}:   {step}: {command:?}");
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
        "{log}:   {step}: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_depends_on_chunk_boundaries_and_content() {
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_ne!(fnv1a(&[b"go.sum", b"x"]), fnv1a(&[b"go.sum", b"y"]));
        assert_eq!(fnv1a(&[b"same"]), fnv1a(&[b"same"]));
    }

    #[test]
    fn source_hash_follows_the_sources_and_the_go_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.go"), "package main").unwrap();
        std::fs::write(dir.path().join("README.md"), "ignored").unwrap();
        let first = source_hash(dir.path(), "go1.26").unwrap();
        assert_ne!(first, source_hash(dir.path(), "go1.27").unwrap());
        std::fs::write(dir.path().join("README.md"), "still ignored").unwrap();
        assert_eq!(first, source_hash(dir.path(), "go1.26").unwrap());
        std::fs::write(dir.path().join("main.go"), "package main // changed").unwrap();
        assert_ne!(first, source_hash(dir.path(), "go1.26").unwrap());
    }
}
