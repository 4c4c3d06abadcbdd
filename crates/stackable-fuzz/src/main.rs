//! `stackable-fuzz`: runs the fuzz targets on stable Rust (what `cargo xtask fuzz` runs).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use stackable_fuzz::{TARGETS, driver};

/// Runs the fuzz targets with the stable mutation driver.
#[derive(Debug, Parser)]
#[command(name = "stackable-fuzz")]
struct Args {
    /// The targets to run (all when none is given); `--list` names them.
    #[arg(long = "target", short = 't')]
    targets: Vec<String>,
    /// Run each target this long (`60s`, `10m`); without `--inputs`, 10 s.
    #[arg(long, value_parser = humantime::parse_duration)]
    time: Option<Duration>,
    /// Run each target for this many inputs (with `--time`: whichever comes first).
    #[arg(long)]
    inputs: Option<u64>,
    /// The PRNG seed.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Where reproducers are written (not `target/fuzz`: that is the `fuzz` profile's build directory).
    #[arg(long, default_value = "target/fuzz-findings")]
    out: PathBuf,
    /// Peak memory growth (MiB) that counts as a finding.
    #[arg(long, default_value_t = 256)]
    memory_limit_mib: u64,
    /// Report inputs slower than this instead of each target's own bound.
    #[arg(long, value_parser = humantime::parse_duration)]
    slow: Option<Duration>,
    /// List the targets and what they parse.
    #[arg(long)]
    list: bool,
    /// Run one input file through the target (one `--target`) and print the outcome.
    #[arg(long)]
    reproduce: Option<PathBuf>,
    /// Write each selected target's seeds to `<dir>/<target>/` (a corpus for cargo-fuzz) and exit.
    #[arg(long)]
    write_seeds: Option<PathBuf>,
    /// Print a Markdown table of the runs at the end (as in docs/fuzzing.md).
    #[arg(long)]
    markdown: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for target in TARGETS {
            println!("{:<24} {}", target.name, target.about);
        }
        return ExitCode::SUCCESS;
    }
    let mut selected = Vec::new();
    for name in &args.targets {
        match stackable_fuzz::target(name) {
            Some(target) => selected.push(target),
            None => {
                eprintln!("error: no target {name:?} (see --list)");
                return ExitCode::FAILURE;
            }
        }
    }
    if selected.is_empty() {
        selected = TARGETS.iter().collect();
    }
    if let Some(dir) = &args.write_seeds {
        for target in &selected {
            let dir = dir.join(target.name);
            let written = std::fs::create_dir_all(&dir).and_then(|()| {
                (target.seeds)()
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, seed)| {
                        std::fs::write(dir.join(format!("seed-{i:02}")), seed)
                    })
            });
            if let Err(error) = written {
                eprintln!("error: cannot write seeds to {}: {error}", dir.display());
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.reproduce {
        let [target] = selected.as_slice() else {
            eprintln!("error: --reproduce takes exactly one --target");
            return ExitCode::FAILURE;
        };
        return match driver::reproduce(target, path) {
            Ok(Ok(outcome)) => {
                println!("{}: {outcome}", target.name);
                ExitCode::SUCCESS
            }
            Ok(Err(panic)) => {
                println!("{}: PANIC {panic}", target.name);
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("error: cannot read {}: {error}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let options = driver::Options {
        inputs: args.inputs,
        time: match (args.time, args.inputs) {
            (None, None) => Some(Duration::from_secs(10)),
            (time, _) => time,
        },
        seed: args.seed,
        out_dir: args.out,
        memory_limit: args.memory_limit_mib * 1024 * 1024,
        slow: args.slow,
        progress: true,
    };
    let mut reports = Vec::new();
    for target in selected {
        let report = driver::run(target, &options);
        print!("{report}");
        reports.push(report);
    }
    if args.markdown {
        println!();
        println!(
            "| target | inputs | time | inputs/s | outcomes | slowest | peak memory | findings |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---|");
        for r in &reports {
            let findings = if r.findings.is_empty() {
                "none".to_owned()
            } else {
                r.findings
                    .iter()
                    .map(|f| format!("{:?} x{}", f.kind, f.count))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            println!(
                "| `{}` | {} | {:.0} s | {:.0} | {} | {:.1} ms | +{} MiB | {} |",
                r.target,
                r.inputs,
                r.elapsed.as_secs_f64(),
                r.rate(),
                r.outcomes.len(),
                r.slowest.0.as_secs_f64() * 1e3,
                r.peak_memory_growth / (1024 * 1024),
                findings
            );
        }
    }
    if reports.iter().any(driver::Report::failed) {
        eprintln!("stackable-fuzz: findings (reproducers above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
