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
    let status = Command::new(env!("CARGO"))
        .args(["test", "--workspace", "--locked"])
        .args(&args.cargo_args)
        .status()?;
    if !status.success() {
        return Err(format!("cargo test failed ({status})").into());
    }
    Ok(())
}
