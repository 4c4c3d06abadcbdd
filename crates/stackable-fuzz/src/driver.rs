//! The stable-Rust engine: runs a [`Target`] on mutated inputs for a number of inputs or a
//! time, catching panics (written out as reproducers, shrunk), reporting inputs slower than
//! the target allows and watching the peak resident memory of the process.
//!
//! It is not coverage-guided (that needs nightly and libFuzzer: cargo-fuzz runs the same
//! targets, see `docs/fuzzing.md`); it keeps an input in its corpus when the target reports an
//! outcome (an error variant, "ok") not seen before, so inputs that get past the outer parser
//! become parents of later ones.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    fmt,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::Once,
    time::{Duration, Instant},
};

use crate::{Target, mutate::mutate, rng::Rng};

/// How long and how to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop after this many inputs (seeds included).
    pub inputs: Option<u64>,
    /// Stop after this time.
    pub time: Option<Duration>,
    /// The PRNG seed: the same seed, target and build make the same inputs.
    pub seed: u64,
    /// Where reproducers are written (`<dir>/<target>/`).
    pub out_dir: PathBuf,
    /// A growth of the peak resident memory beyond this (over the peak after the seeds ran) is
    /// a finding.
    pub memory_limit: u64,
    /// Inputs slower than this are reported; `None`: the target's own bound.
    pub slow: Option<Duration>,
    /// Print progress to stderr every few seconds.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            inputs: None,
            time: Some(Duration::from_secs(10)),
            seed: 0x5eed,
            out_dir: PathBuf::from("target/fuzz-findings"),
            memory_limit: 256 * 1024 * 1024,
            slow: None,
            progress: false,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingKind {
    /// The target panicked (the code under test, or a promise the target checks).
    Panic {
        /// The panic message and location.
        message: String,
    },
    /// One input took longer than allowed.
    Slow {
        /// How long.
        took: Duration,
    },
    /// The peak resident memory grew beyond the limit within a batch of inputs (all written).
    Memory {
        /// The growth in bytes.
        growth: u64,
    },
}

/// A finding and where its input was written.
#[derive(Debug, Clone)]
pub struct Finding {
    /// What happened.
    pub kind: FindingKind,
    /// The input (for `Memory`: a directory of the batch's inputs).
    pub reproducer: PathBuf,
    /// How often it happened (panics with the same message and location count as one).
    pub count: u64,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Inputs run.
    pub inputs: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Inputs in the corpus at the end.
    pub corpus: usize,
    /// How many inputs ended in each outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// What was found.
    pub findings: Vec<Finding>,
    /// The slowest input's time and length.
    pub slowest: (Duration, usize),
    /// The growth of the peak resident memory over the run (bytes; 0 where unknown).
    pub peak_memory_growth: u64,
}

impl Report {
    /// Whether the run found a panic or a memory growth beyond the limit.
    pub fn failed(&self) -> bool {
        self.findings
            .iter()
            .any(|f| !matches!(f.kind, FindingKind::Slow { .. }))
    }

    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} inputs in {:.1} s ({:.0}/s), corpus {}, {} outcomes, slowest {:.2} ms ({} bytes), peak memory +{} MiB, {} findings",
            self.target,
            self.inputs,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.corpus,
            self.outcomes.len(),
            self.slowest.0.as_secs_f64() * 1e3,
            self.slowest.1,
            self.peak_memory_growth / (1024 * 1024),
            self.findings.len()
        )?;
        let mut outcomes: Vec<_> = self.outcomes.iter().collect();
        outcomes.sort_by(|a, b| b.1.cmp(a.1));
        let shown: Vec<String> = outcomes
            .iter()
            .take(8)
            .map(|(label, n)| format!("{label} {n}"))
            .collect();
        writeln!(f, "  outcomes: {}", shown.join(", "))?;
        for finding in &self.findings {
            writeln!(
                f,
                "  FINDING {:?} x{} -> {}",
                finding.kind,
                finding.count,
                finding.reproducer.display()
            )?;
        }
        Ok(())
    }
}

thread_local! {
    /// Set while this thread runs a target: the panic hook records here instead of printing.
    static CAUGHT: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records the message of a panic on a fuzzing thread and
/// leaves every other thread's panics to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let recorded = CAUGHT.with(|caught| {
                let mut caught = caught.borrow_mut();
                match caught.as_mut() {
                    Some(slot) => {
                        let location = info
                            .location()
                            .map(|l| format!("{}:{}", l.file(), l.line()))
                            .unwrap_or_default();
                        let payload = info.payload();
                        let message = payload
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        *slot = Some(format!("{message} at {location}"));
                        true
                    }
                    None => false,
                }
            });
            if !recorded {
                previous(info);
            }
        }));
    });
}

/// Runs `target` once on `input`: its outcome, or the panic's message and location.
pub fn run_one(target: &Target, input: &[u8]) -> Result<String, String> {
    install_panic_hook();
    CAUGHT.with(|caught| *caught.borrow_mut() = Some(None));
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let message = CAUGHT.with(|caught| caught.borrow_mut().take().flatten());
    result.map_err(|_| message.unwrap_or_else(|| "panic without a message".to_owned()))
}

/// Runs `target` as `options` say.
pub fn run(target: &'static Target, options: &Options) -> Report {
    let start = Instant::now();
    let mut rng = Rng::new(options.seed);
    let slow = options.slow.unwrap_or(target.slow);
    let mut corpus: Vec<Vec<u8>> = (target.seeds)();
    let seed_count = corpus.len();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut panics: BTreeMap<String, Finding> = BTreeMap::new();
    let mut findings: Vec<Finding> = Vec::new();
    let mut slowest = (Duration::ZERO, 0);
    let mut inputs = 0u64;
    let mut last_progress = Instant::now();

    // Memory: the peak after the seeds ran is the baseline; checked every BATCH inputs.
    const BATCH: usize = 64;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut baseline: Option<u64> = None;
    let start_peak = peak_memory();
    let mut memory_reported = false;

    let done = |inputs: u64| {
        options.inputs.is_some_and(|n| inputs >= n)
            || options.time.is_some_and(|t| start.elapsed() >= t)
    };

    let mut next_seed = 0;
    while !done(inputs) {
        let input = if next_seed < seed_count {
            next_seed += 1;
            corpus[next_seed - 1].clone()
        } else {
            let parent = &corpus[rng.below(corpus.len())];
            mutate(&mut rng, parent, &corpus, target.dictionary, target.max_len)
        };
        let began = Instant::now();
        let result = run_one(target, &input);
        let took = began.elapsed();
        inputs += 1;
        if took > slowest.0 {
            slowest = (took, input.len());
        }
        if took > slow
            && findings
                .iter()
                .all(|f| !matches!(f.kind, FindingKind::Slow { .. }))
        {
            findings.push(Finding {
                kind: FindingKind::Slow { took },
                reproducer: write(options, target, "slow", &input),
                count: 1,
            });
        }
        match result {
            Ok(label) => {
                let seen = outcomes.entry(label).or_insert(0);
                *seen += 1;
                if *seen == 1 && next_seed >= seed_count {
                    // A new outcome: keep the input as a parent.
                    if corpus.len() < 4096 {
                        corpus.push(input.clone());
                    } else {
                        let at = seed_count + rng.below(corpus.len() - seed_count);
                        corpus[at] = input.clone();
                    }
                }
            }
            Err(message) => {
                *outcomes.entry("PANIC".to_owned()).or_insert(0) += 1;
                match panics.get_mut(&message) {
                    Some(finding) => finding.count += 1,
                    None => {
                        let small = shrink(target, &input, &message);
                        let reproducer = write(options, target, "crash", &small);
                        if options.progress {
                            eprintln!(
                                "{}: PANIC {message} -> {}",
                                target.name,
                                reproducer.display()
                            );
                        }
                        panics.insert(
                            message.clone(),
                            Finding {
                                kind: FindingKind::Panic { message },
                                reproducer,
                                count: 1,
                            },
                        );
                    }
                }
            }
        }
        batch.push(input);
        if batch.len() == BATCH {
            if inputs as usize >= seed_count {
                let peak = peak_memory();
                match baseline {
                    None => baseline = Some(peak),
                    Some(base)
                        if !memory_reported && peak.saturating_sub(base) > options.memory_limit =>
                    {
                        memory_reported = true;
                        let dir = options
                            .out_dir
                            .join(target.name)
                            .join(format!("memory-{inputs}"));
                        let _ = std::fs::create_dir_all(&dir);
                        for (i, input) in batch.iter().enumerate() {
                            let _ = std::fs::write(dir.join(format!("{i:02}")), input);
                        }
                        findings.push(Finding {
                            kind: FindingKind::Memory {
                                growth: peak - base,
                            },
                            reproducer: dir,
                            count: 1,
                        });
                    }
                    Some(_) => {}
                }
            }
            batch.clear();
        }
        if options.progress && last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            eprintln!(
                "{}: {inputs} inputs, {:.0}/s, corpus {}, outcomes {}, panics {}",
                target.name,
                inputs as f64 / start.elapsed().as_secs_f64(),
                corpus.len(),
                outcomes.len(),
                panics.len()
            );
        }
    }
    findings.extend(panics.into_values());
    Report {
        target: target.name,
        inputs,
        elapsed: start.elapsed(),
        corpus: corpus.len(),
        outcomes,
        findings,
        slowest,
        peak_memory_growth: peak_memory().saturating_sub(start_peak),
    }
}

/// A smaller input that panics with the same message: chunks removed while it still does.
fn shrink(target: &Target, input: &[u8], message: &str) -> Vec<u8> {
    let mut best = input.to_vec();
    let mut chunk = best.len() / 2;
    let mut tries = 0;
    while chunk > 0 && tries < 4096 {
        let mut at = 0;
        let mut removed = false;
        while at < best.len() && tries < 4096 {
            tries += 1;
            let end = (at + chunk).min(best.len());
            let mut candidate = best[..at].to_vec();
            candidate.extend_from_slice(&best[end..]);
            if run_one(target, &candidate).err().as_deref() == Some(message) {
                best = candidate;
                removed = true;
            } else {
                at += chunk;
            }
        }
        if !removed {
            chunk /= 2;
        }
    }
    best
}

/// Writes `input` to `<out>/<target>/<kind>-<hash>` and returns the path.
fn write(options: &Options, target: &Target, kind: &str, input: &[u8]) -> PathBuf {
    let dir = options.out_dir.join(target.name);
    let path = dir.join(format!("{kind}-{:016x}", fnv1a(input)));
    if let Err(error) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        eprintln!("{}: cannot write {}: {error}", target.name, path.display());
    }
    path
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The peak resident memory of this process in bytes (`VmHWM` of `/proc/self/status`; 0 where
/// there is no procfs).
pub fn peak_memory() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

/// Runs a reproducer file through `target`.
pub fn reproduce(target: &Target, path: &Path) -> std::io::Result<Result<String, String>> {
    let input = std::fs::read(path)?;
    Ok(run_one(target, &input))
}
