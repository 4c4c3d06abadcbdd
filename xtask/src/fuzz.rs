//! `cargo xtask fuzz`: runs the fuzz targets of `crates/stackable-fuzz` (docs/fuzzing.md).
//!
//! The default engine is the crate's stable-Rust mutation driver, built with the `fuzz` profile
//! (release with debug assertions and overflow checks). `--engine libfuzzer` runs the same
//! targets under cargo-fuzz, which needs a nightly toolchain and `cargo install cargo-fuzz`.

use std::{path::Path, process::Command, time::Duration};

use crate::Result;

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The targets (all when none is given; `cargo xtask fuzz --list` names them).
    #[arg(long = "target", short = 't')]
    targets: Vec<String>,
    /// How long each target runs.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    time: Duration,
    /// Stop each target after this many inputs (stable engine; with `--time`, whichever first).
    #[arg(long)]
    inputs: Option<u64>,
    /// The engine: `stable` (the crate's mutation driver) or `libfuzzer` (cargo-fuzz, nightly).
    #[arg(long, default_value = "stable")]
    engine: String,
    /// List the targets.
    #[arg(long)]
    list: bool,
    /// Print a Markdown table of the runs (stable engine).
    #[arg(long)]
    markdown: bool,
}

/// The targets' crate and its cargo-fuzz directory, relative to the workspace root.
const FUZZ_DIR: &str = "crates/stackable-fuzz/fuzz";

pub(crate) fn run(args: Args) -> Result {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("xtask has no parent directory")?;
    let driver = |extra: &[String]| -> Result {
        let status = Command::new(env!("CARGO"))
            .current_dir(root)
            .args([
                "run",
                "--locked",
                "--profile",
                "fuzz",
                "-p",
                "stackable-fuzz",
                "--",
            ])
            .args(extra)
            .status()?;
        if !status.success() {
            return Err(format!("stackable-fuzz failed ({status})").into());
        }
        Ok(())
    };
    let mut selection = Vec::new();
    for target in &args.targets {
        selection.extend(["--target".to_owned(), target.clone()]);
    }
    if args.list {
        return driver(&["--list".to_owned()]);
    }
    match args.engine.as_str() {
        "stable" => {
            let mut extra = selection;
            extra.extend([
                "--time".to_owned(),
                humantime::format_duration(args.time).to_string(),
            ]);
            if let Some(inputs) = args.inputs {
                extra.extend(["--inputs".to_owned(), inputs.to_string()]);
            }
            if args.markdown {
                extra.push("--markdown".to_owned());
            }
            driver(&extra)
        }
        "libfuzzer" => libfuzzer(root, &args, &selection, driver),
        other => Err(format!("unknown engine {other:?} (stable, libfuzzer)").into()),
    }
}

/// cargo-fuzz on nightly: the seeds are written into its corpus directories first.
fn libfuzzer(
    root: &Path,
    args: &Args,
    selection: &[String],
    driver: impl Fn(&[String]) -> Result,
) -> Result {
    let available = Command::new("cargo")
        .current_dir(root)
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !available {
        return Err(
            "cargo-fuzz on a nightly toolchain is needed: `rustup toolchain install \
                    nightly` and `cargo install cargo-fuzz` (or use the default stable engine)"
                .into(),
        );
    }
    let corpus = root.join(FUZZ_DIR).join("corpus");
    let mut extra = selection.to_vec();
    extra.extend(["--write-seeds".to_owned(), corpus.display().to_string()]);
    driver(&extra)?;
    let targets: Vec<String> = if args.targets.is_empty() {
        std::fs::read_dir(&corpus)?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect()
    } else {
        args.targets.clone()
    };
    for target in targets {
        eprintln!("xtask fuzz: cargo fuzz run {target}");
        let status = Command::new("cargo")
            .current_dir(root)
            .args([
                "+nightly",
                "fuzz",
                "run",
                "--fuzz-dir",
                FUZZ_DIR,
                &target,
                "--",
            ])
            .arg(format!("-max_total_time={}", args.time.as_secs().max(1)))
            .arg("-rss_limit_mb=2048")
            .status()?;
        if !status.success() {
            return Err(format!(
                "cargo fuzz run {target} found something ({status}); \
                                the input is under {FUZZ_DIR}/artifacts/{target}/"
            )
            .into());
        }
    }
    Ok(())
}
