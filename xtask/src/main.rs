//! Project dev tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! Each task lives in its own module; `main` only parses and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod bench_bodies;
mod bench_cainjector;
mod bench_cainjector_peer;
mod bench_load;
mod bench_peer;
mod bench_report;
mod demo;
mod fuzz;
mod gen_crds;
mod go_peer;
mod profile;
mod release;
mod test;
mod testenv;

/// Project dev tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// The tasks.
#[derive(Debug, Subcommand)]
enum Task {
    /// The main job: a local control plane and the example operators, end to end.
    Demo(demo::Args),
    /// Run the whole test suite: unit tests and the e2e tier against a real control plane.
    Test(test::Args),
    /// Write the CRD YAML of every example operator (examples/<op>/deploy/crds/); `--check` fails if stale.
    GenCrds(gen_crds::Args),
    /// A real kube-apiserver + etcd: build the binaries, run a command against one, or keep one running.
    Testenv(testenv::Args),
    /// Benchmark stackable-webhook against controller-runtime's webhook server, side by side.
    Bench(bench::Args),
    /// Count where one request of a bench scenario spends its instructions (callgrind).
    Profile(profile::Args),
    /// Benchmark stackable-cainjector against cert-manager's cainjector on one control plane.
    BenchCainjector(bench_cainjector::Args),
    /// Fuzz every parser of outside input for a given time (stable driver, or cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Releases: `check` (CI), `prepare` (bump versions, date changelogs), `tag` (local tags).
    Release(release::Args),
}

/// The error every task returns: a message for a person.
pub(crate) type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Demo(args) => demo::run(args),
        Task::Test(args) => test::run(args).map(|()| ExitCode::SUCCESS),
        Task::GenCrds(args) => gen_crds::run(args).map(|()| ExitCode::SUCCESS),
        Task::Testenv(args) => testenv::run(args),
        Task::Bench(args) => bench::run(args),
        Task::BenchCainjector(args) => bench_cainjector::run(args),
        Task::Profile(args) => profile::run(args),
        Task::Fuzz(args) => fuzz::run(args).map(|()| ExitCode::SUCCESS),
        Task::Release(args) => release::run(args).map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
