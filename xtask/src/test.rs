//! `cargo xtask test`: the README's test command, and what `.ci/run` runs.

use std::process::Command;

use crate::Result;

/// Arguments of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Extra arguments passed to `cargo test` (after `--`).
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

/// Runs the unit tier and the e2e tier of every crate, then stackable-telemetry's tests with its
/// optional features (OTLP) and stackable-webhook's FIPS test with its `fips` feature.
pub(crate) fn run(args: Args) -> Result {
    warn_when_disk_is_short();
    eprintln!(
        "xtask test: kube-apiserver, etcd, kubectl and helm (reused from the cache; the first \
         run builds them from Go modules, several minutes), then `cargo test --workspace`"
    );
    // Build (or reuse) kube-apiserver, etcd, kubectl and helm once, and tell every e2e test
    // where they are, so no test triggers a build of its own.
    let binaries = crate::testenv::ensure_binaries()?;
    let status = Command::new(env!("CARGO"))
        .args(["test", "--workspace", "--locked"])
        .envs(binaries)
        .args(&args.cargo_args)
        .status()?;
    if !status.success() {
        return Err(format!("cargo test failed ({status})").into());
    }
    // The OTLP export is behind a feature no workspace member enables by default; its test
    // (a span reaching an OTLP/HTTP receiver on 127.0.0.1) runs here, on that crate alone, so
    // the binaries of the run above stay built without it. Not after a run narrowed by extra
    // arguments (a test name, `-p`), which the line below would not understand.
    if !args.cargo_args.is_empty() {
        return Ok(());
    }
    let status = Command::new(env!("CARGO"))
        .args([
            "test",
            "--locked",
            "-p",
            "stackable-telemetry",
            "--all-features",
        ])
        .status()?;
    if !status.success() {
        return Err(
            format!("cargo test -p stackable-telemetry --all-features failed ({status})").into(),
        );
    }
    // The `fips` feature links aws-lc's FIPS module instead of aws-lc (the first build compiles
    // it with CMake and Go, a few minutes); its test runs on stackable-webhook alone, for the
    // same reason as above.
    let status = Command::new(env!("CARGO"))
        .args([
            "test",
            "--locked",
            "-p",
            "stackable-webhook",
            "--features",
            "fips",
            "--test",
            "fips",
        ])
        .status()?;
    if !status.success() {
        return Err(format!(
            "cargo test -p stackable-webhook --features fips --test fips failed ({status})"
        )
        .into());
    }
    Ok(())
}

/// What a fresh debug build of the workspace and its test binaries takes in `target/` (measured
/// 2.5 GB on 2026-11-23), plus room for the control planes' etcd data (64 MB WAL each).
const DISK_NEEDED_KIB: u64 = 4 * 1024 * 1024;

/// Prints a warning when the file system holding the workspace has less free space than a test
/// run needs: a full disk otherwise shows up late, as etcd failing to preallocate its WAL
/// ("no space left on device") in whichever e2e test starts a control plane at that moment.
fn warn_when_disk_is_short() {
    let Some(free_kib) = free_kib(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    if free_kib < DISK_NEEDED_KIB {
        eprintln!(
            "xtask test: warning: only {} MiB free on the disk holding the workspace; a fresh \
             test build needs about {} MiB (target/ and the control planes' etcd data). Free \
             some space (e.g. `cargo clean` in other checkouts) if tests fail with \
             \"no space left on device\".",
            free_kib / 1024,
            DISK_NEEDED_KIB / 1024
        );
    }
}

/// Free space in KiB of the file system holding `path`, from POSIX `df -Pk` (None if unknown).
fn free_kib(path: &str) -> Option<u64> {
    let output = Command::new("df").args(["-Pk", path]).output().ok()?;
    if !output.status.success() {
        return None;
    }
    parse_df_available(&String::from_utf8_lossy(&output.stdout))
}

/// The "Available" column of the data line of `df -P` output.
fn parse_df_available(output: &str) -> Option<u64> {
    output
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_available_column_of_df() {
        let output = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                      /dev/vda        263174212 21637660  74067524      23% /\n";
        assert_eq!(parse_df_available(output), Some(74_067_524));
        assert_eq!(parse_df_available("garbage"), None);
        assert_eq!(
            parse_df_available("header\n/dev/x 1 2 not-a-number 3% /\n"),
            None
        );
    }
}
