//! The short run CI makes of every target (`cargo xtask test` runs the workspace's tests): each
//! target's seeds reach the parser's success path, and a few thousand mutated inputs find
//! no panic and no memory growth. `cargo xtask fuzz` makes the long runs (docs/fuzzing.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use stackable_fuzz::{
    TARGETS, Target,
    driver::{self, FindingKind, Options},
};

/// A target's seeds are valid: each parses (no seed lands in an error outcome only), so the
/// mutations start from inputs that reach the parsers behind the outer layer.
#[test]
fn every_seed_runs_and_some_reach_success() {
    for target in TARGETS {
        let seeds = (target.seeds)();
        assert!(seeds.len() >= 2, "{}: {} seeds", target.name, seeds.len());
        let mut successes = 0;
        for seed in &seeds {
            let outcome = driver::run_one(target, seed)
                .unwrap_or_else(|panic| panic!("{}: a seed panics: {panic}", target.name));
            let success = [
                "ok",
                "decoded",
                "200:Success",
                "signed",
                "Managed",
                "advanced",
                "Certificate",
                "Secret",
                "ApiServerCa",
                "ServiceCa",
            ];
            successes += usize::from(success.iter().any(|s| outcome.contains(s)));
        }
        assert!(
            successes > 0,
            "{}: no seed reaches the success path",
            target.name
        );
    }
}

/// Every target, a bounded number of mutated inputs (or a few seconds in a debug build,
/// whichever comes first): no panic, no memory growth beyond 256 MiB.
#[test]
fn every_target_survives_a_short_run() {
    let out = tempfile::tempdir().unwrap();
    let options = Options {
        inputs: Some(3_000),
        time: Some(Duration::from_secs(5)),
        out_dir: out.path().to_owned(),
        // Debug builds on a shared CI machine: only a pathological input is reported as slow,
        // and a slow input does not fail the run (see docs/fuzzing.md).
        slow: Some(Duration::from_secs(5)),
        ..Options::default()
    };
    let mut failures = Vec::new();
    for target in TARGETS {
        let report = driver::run(target, &options);
        eprint!("{report}");
        // A debug build is slow where a target generates keys (rotation_state issues a leaf
        // for every state it reads): the time bound may come first.
        assert!(
            report.inputs >= 30,
            "{}: only {} inputs",
            target.name,
            report.inputs
        );
        // Mutations reach more than one outcome: the driver is not feeding one input.
        assert!(report.outcomes.len() >= 2, "{report}");
        if report.failed() {
            failures.push(report.to_string());
        }
    }
    assert!(failures.is_empty(), "findings:\n{}", failures.join(""));
}

fn panics_on_magic(input: &[u8]) -> String {
    if input.windows(5).any(|w| w == b"magic") {
        panic!("found the magic word");
    }
    format!("len:{}", input.len().min(3))
}

fn magic_seeds() -> Vec<Vec<u8>> {
    vec![b"a magi and more".to_vec(), b"{\"k\":\"magi\"}".to_vec()]
}

const PANICKING: Target = Target {
    name: "panicking",
    about: "a target that panics on the word magic",
    run: panics_on_magic,
    seeds: magic_seeds,
    dictionary: &["c"],
    max_len: 1024,
    slow: Duration::from_secs(1),
};

/// The driver finds a panic, reports it once with its count and writes a shrunk reproducer
/// that panics again.
#[test]
fn a_panic_is_found_shrunk_and_written() {
    static TARGET: Target = PANICKING;
    let out = tempfile::tempdir().unwrap();
    let report = driver::run(
        &TARGET,
        &Options {
            inputs: Some(200_000),
            time: Some(Duration::from_secs(60)),
            out_dir: out.path().to_owned(),
            ..Options::default()
        },
    );
    assert!(report.failed(), "{report}");
    let finding = report
        .findings
        .iter()
        .find(|f| matches!(f.kind, FindingKind::Panic { .. }))
        .expect("a panic finding");
    let FindingKind::Panic { message } = &finding.kind else {
        unreachable!()
    };
    assert!(message.contains("found the magic word"), "{message}");
    let reproducer = std::fs::read(&finding.reproducer).unwrap();
    assert_eq!(reproducer, b"magic", "shrunk to the word itself");
    assert!(
        driver::reproduce(&TARGET, &finding.reproducer)
            .unwrap()
            .is_err()
    );
}
