//! Project dev tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).

use clap::{Parser, Subcommand};

/// Project dev tasks.
#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// The tasks.
#[derive(Debug, Subcommand)]
enum Task {}

fn main() {
    let cli = Cli::parse();
    match cli.task {}
}
