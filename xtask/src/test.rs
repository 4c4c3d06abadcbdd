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

/// Runs the unit tier and the e2e tier of every crate.
pub(crate) fn run(args: Args) -> Result {
    // Build (or reuse) kube-apiserver, etcd and kubectl once, and tell every e2e test where
    // they are, so no test triggers a build of its own.
    let binaries = crate::testenv::ensure_binaries()?;
    let status = Command::new(env!("CARGO"))
        .args(["test", "--workspace", "--locked"])
        .envs(binaries.env_vars())
        .args(&args.cargo_args)
        .status()?;
    if !status.success() {
        return Err(format!("cargo test failed ({status})").into());
    }
    Ok(())
}
