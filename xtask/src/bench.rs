//! `cargo xtask bench`: stackable-webhook against controller-runtime's webhook server, side by
//! side in the same run, under the same load, printing a table of figures.
//!
//! Both servers (see [`crate::bench_peer`]) serve the same three handlers (validate and mutate
//! a Pod, convert 100 CronTabs from v1 to v2) over TLS 1.3 from the same ECDSA P-256
//! certificate, issued for the run by a CA made with stackable-certs. For every scenario each
//! server is started fresh (the start-up time is measured to the first served request), warmed
//! up, loaded by the same client for the same time, and stopped; the order of the two servers
//! alternates from one scenario to the next. The load generator ([`crate::bench_load`]) runs in
//! this process, built in release: `cargo xtask bench` builds the release xtask and re-runs
//! itself from it. What a window measured becomes a row of the report in
//! [`crate::bench_report`].
//!
//! Project rule: speed and memory targets live here, compared with the peer in the same run,
//! never in timed unit tests. The admission and conversion protocols measured are those of
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use stackable_certs::{
    CaOptions, CertificateAuthority, IssuedCertificate, KeyAlgorithm, LeafOptions,
};

use crate::{
    Result,
    bench_bodies::{self, DENY_LABEL, DESIRED_VERSION, MUTATED_LABEL, REVIEW_UID},
    bench_load::{self, KxOffer, Load, Target},
    bench_peer::{self, Memory, Peer, RunOptions, Server},
    bench_report::{self, Measurement, Probe, STEAL_WARN_PERCENT},
};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Measured seconds per scenario and server (after the warm-up).
    #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
    duration: f64,
    /// Warm-up seconds before each measurement (requests not counted).
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    warmup: f64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Scenarios to run (repeat or comma-separate; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<ScenarioName>,
    /// Servers to run (default: ours and go; `ours-mimalloc` only when named).
    #[arg(long, value_enum, value_delimiter = ',')]
    peer: Vec<Peer>,
    /// Rounds per scenario: the measured time is split into this many windows, each on a
    /// freshly started server, the two servers taking turns, so that other work on the
    /// machine hits both alike.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A smoke run: one round of 2 s measured after 1 s of warm-up, 4 clients.
    #[arg(long)]
    quick: bool,
    /// Pin GOMAXPROCS and TOKIO_WORKER_THREADS of both servers to N (default: both unset,
    /// so both use every available core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Pin both servers to this CPU (`taskset -c N`): every thread of a server, the blocking
    /// pool's too, then shares one core. The client (this process) then runs on the other CPUs,
    /// so that it never preempts the server it measures.
    #[arg(long, value_name = "N")]
    pin_cpu: Option<usize>,
    /// Keep the client polling for answers instead of sleeping while a window runs (needs
    /// `--pin-cpu`: the client then keeps its own CPUs busy, one runtime thread). A client thread
    /// asleep in `epoll_wait` is woken by the server's answer on the server's CPU (loopback
    /// delivers the answer there); in a VM that wake-up is an inter-processor interrupt and an
    /// exit to the hypervisor, charged to the server's CPU and latency. In a cluster it happens
    /// on the API server's node. See docs/webhook-server.md, "The client's wake-ups".
    #[arg(long, requires = "pin_cpu")]
    client_poll: bool,
    /// An environment variable for both servers (`KEY=VALUE`, repeatable), e.g.
    /// `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (see docs/conversion.md § 8). Without it the
    /// servers get neither `GLIBC_TUNABLES` nor `MALLOC_ARENA_MAX` from this environment.
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    server_env: Vec<(String, String)>,
    /// Key-exchange groups the client offers.
    #[arg(long, value_enum, default_value = "go")]
    kx: KxOffer,
    /// Also write the figures as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also write every measured request into this folder, one file per scenario, server and
    /// round (`<scenario>-<server>-<round>.tsv`: when it started, in ms after the window opened,
    /// and its latency in µs), to see when the slow ones came; beside each, `<…>.windows.tsv`: the
    /// steal time of each 100 ms (of the servers' CPU with `--pin-cpu`, else of all CPUs) and the
    /// server's CPU time in it.
    #[arg(long, value_name = "DIR")]
    samples: Option<PathBuf>,
    /// Write the run's inputs into this folder and stop, for profiling a server with other tools
    /// (perf, callgrind, curl): a CA (`ca.crt`), a serving certificate and key for `localhost`
    /// and 127.0.0.1 (`tls.crt`, `tls.key`) and each scenario's request body
    /// (`validate.json`, `deny.json`, `convert.json`, `convert-10k.json`). Builds no server.
    #[arg(long, value_name = "DIR")]
    write_inputs: Option<PathBuf>,
}

/// `KEY=VALUE` of `--server-env`.
pub(crate) fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ScenarioName {
    /// Validating webhook, ~4 KiB Pod, keep-alive connections.
    Validate,
    /// Mutating webhook (adds a label; JSON Patch), same Pod, keep-alive.
    Mutate,
    /// Conversion webhook, 100 CronTabs v1 -> v2 per review, keep-alive.
    Convert,
    /// Validating webhook with a new TLS connection per request (full handshakes).
    Handshake,
    /// Conversion webhook, one review of 10,000 CronTabs with managedFields (~8 MB, a LIST), one
    /// client.
    #[value(name = "convert-10k")]
    Convert10k,
}

impl ScenarioName {
    pub(crate) const ALL: [ScenarioName; 5] = [
        ScenarioName::Validate,
        ScenarioName::Mutate,
        ScenarioName::Convert,
        ScenarioName::Handshake,
        ScenarioName::Convert10k,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            ScenarioName::Validate => "validate",
            ScenarioName::Mutate => "mutate",
            ScenarioName::Convert => "convert",
            ScenarioName::Handshake => "handshake",
            ScenarioName::Convert10k => "convert-10k",
        }
    }
}

/// Set (to the client's CPU list) in the process [`rerun_pinned`] starts.
const CLIENT_PINNED: &str = "STACKABLE_BENCH_CLIENT_CPUS";

/// The CPUs but `cpu` (as `taskset -c` takes them), `None` on a machine of one CPU.
fn other_cpus(cpu: usize) -> Option<String> {
    let count = machine_cpus();
    let others: Vec<String> = (0..count)
        .filter(|&other| other != cpu)
        .map(|other| other.to_string())
        .collect();
    (!others.is_empty()).then(|| others.join(","))
}

/// The machine's CPUs (`cpuN` lines of /proc/stat; this process's affinity does not change it).
fn machine_cpus() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|stat| {
            stat.lines()
                .filter(|line| {
                    line.strip_prefix("cpu")
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
        .max(1)
}

/// Runs this command again pinned to `cpus` (`taskset -c`): with `--pin-cpu`, the client stays
/// off the servers' CPU. Left to the scheduler, its threads, woken by the server's answers, are
/// often put on the server's CPU and preempt it (measured: ~160 involuntary context switches
/// a second of the server under validate load, against ~10 with the client pinned), and each
/// preemption stalls every request in flight.
fn rerun_pinned(cpus: &str) -> Result<ExitCode> {
    let program = std::env::current_exe()?;
    eprintln!("bench: running the client pinned to CPU {cpus} (taskset), off the servers' CPU");
    let mut command = std::process::Command::new("taskset");
    command
        .arg("-c")
        .arg(cpus)
        .arg(&program)
        .args(std::env::args_os().skip(1))
        .env(CLIENT_PINNED, cpus);
    let status = bench_peer::status_passing_signals(command)
        .map_err(|e| format!("cannot run {} under taskset: {e}", program.display()))?;
    Ok(bench_peer::exit_code(status))
}

/// Runs the benchmark (from the release build of xtask).
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    if cfg!(debug_assertions) {
        return bench_peer::reexec_release("bench");
    }
    if let Some(dir) = &args.write_inputs {
        write_inputs(dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(cpu) = args.pin_cpu
        && std::env::var_os(CLIENT_PINNED).is_none()
        && let Some(others) = other_cpus(cpu)
    {
        return rerun_pinned(&others);
    }
    let peers = wanted_peers(&args)
        .into_iter()
        .map(|peer| Ok((peer, peer.build()?)))
        .collect::<Result<Vec<_>>>()?;
    let work = tempfile::Builder::new()
        .prefix("stackable-bench-")
        .tempdir()?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.client_poll {
        // One worker, kept polling by `bench_load`: a second one would sleep on the sockets.
        runtime.worker_threads(1);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(bench_peer::unless_interrupted(bench(&args, &peers, &work)))?;
    Ok(ExitCode::SUCCESS)
}

fn wanted_peers(args: &Args) -> Vec<Peer> {
    if args.peer.is_empty() {
        vec![Peer::Ours, Peer::Go]
    } else {
        let mut seen = std::collections::HashSet::new();
        let mut peers = args.peer.clone();
        peers.retain(|peer| seen.insert(*peer));
        peers
    }
}

/// One scenario's request and the byte string every good answer contains.
pub(crate) struct ScenarioLoad {
    pub(crate) path: &'static str,
    pub(crate) body: Bytes,
    pub(crate) expect: &'static [u8],
    pub(crate) new_connection: bool,
    /// Clients, when not `--concurrency`.
    concurrency: Option<usize>,
}

pub(crate) fn scenario_load(name: ScenarioName, bodies: &Bodies) -> ScenarioLoad {
    match name {
        ScenarioName::Validate => ScenarioLoad {
            path: "/validate",
            body: bodies.allowed.clone(),
            expect: br#""allowed":true"#,
            new_connection: false,
            concurrency: None,
        },
        ScenarioName::Mutate => ScenarioLoad {
            path: "/mutate",
            body: bodies.allowed.clone(),
            expect: br#""patch":""#,
            new_connection: false,
            concurrency: None,
        },
        ScenarioName::Convert => ScenarioLoad {
            path: "/convert",
            body: bodies.convert.clone(),
            expect: br#""status":"Success""#,
            new_connection: false,
            concurrency: None,
        },
        ScenarioName::Handshake => ScenarioLoad {
            path: "/validate",
            body: bodies.allowed.clone(),
            expect: br#""allowed":true"#,
            new_connection: true,
            concurrency: None,
        },
        // One LIST at a time, as one client's list or an informer's re-list sends it.
        ScenarioName::Convert10k => ScenarioLoad {
            path: "/convert",
            body: bodies.convert_list.clone(),
            expect: br#""status":"Success""#,
            new_connection: false,
            concurrency: Some(1),
        },
    }
}

pub(crate) struct Bodies {
    allowed: Bytes,
    denied: Bytes,
    convert: Bytes,
    convert_list: Bytes,
}

const CONVERSION_OBJECTS: usize = 100;
const LIST_OBJECTS: usize = 10_000;

impl Bodies {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            allowed: Bytes::from(serde_json::to_vec(&bench_bodies::pod_review(false))?),
            denied: Bytes::from(serde_json::to_vec(&bench_bodies::pod_review(true))?),
            convert: Bytes::from(serde_json::to_vec(&bench_bodies::conversion_review(
                CONVERSION_OBJECTS,
            ))?),
            convert_list: Bytes::from(serde_json::to_vec(
                &bench_bodies::conversion_review_of_list(LIST_OBJECTS),
            )?),
        })
    }
}

/// The run's CA and its ECDSA P-256 leaf for `localhost` and 127.0.0.1.
pub(crate) fn certificates() -> Result<(CertificateAuthority, IssuedCertificate)> {
    let ca = CertificateAuthority::new(
        &CaOptions::new("stackable-bench-ca").key_algorithm(KeyAlgorithm::EcdsaP256),
    )?;
    let leaf = ca.issue(
        &LeafOptions::new()
            .dns_name("localhost")
            .ip_address(std::net::Ipv4Addr::LOCALHOST.into())
            .key_algorithm(KeyAlgorithm::EcdsaP256),
    )?;
    Ok((ca, leaf))
}

/// `--write-inputs`: the certificates and bodies of a run, as files.
fn write_inputs(dir: &Path) -> Result {
    let (ca, leaf) = certificates()?;
    let bodies = Bodies::new()?;
    std::fs::create_dir_all(dir)?;
    let (ca_pem, cert_pem, key_pem) = (
        ca.certificate().to_pem(),
        leaf.certificate.to_pem(),
        leaf.key.to_pem(),
    );
    let files: [(&str, &[u8]); 7] = [
        ("ca.crt", ca_pem.as_bytes()),
        ("tls.crt", cert_pem.as_bytes()),
        ("tls.key", key_pem.as_bytes()),
        ("validate.json", &bodies.allowed),
        ("deny.json", &bodies.denied),
        ("convert.json", &bodies.convert),
        ("convert-10k.json", &bodies.convert_list),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("wrote {} files to {}", files.len(), dir.display());
    Ok(())
}

async fn bench(args: &Args, peers: &[(Peer, PathBuf)], work: &tempfile::TempDir) -> Result {
    let (duration, warmup, concurrency, rounds) = if args.quick {
        (2.0, 1.0, args.concurrency.min(4), 1)
    } else {
        (args.duration, args.warmup, args.concurrency, args.rounds)
    };
    if !(duration > 0.0 && warmup >= 0.0 && concurrency > 0 && rounds > 0) {
        return Err(
            "--duration, --concurrency and --rounds must be positive, --warmup not negative".into(),
        );
    }
    let window = duration / rounds as f64;
    let scenarios: Vec<ScenarioName> = if args.scenario.is_empty() {
        ScenarioName::ALL.to_vec()
    } else {
        args.scenario.clone()
    };
    let peers: Vec<(Peer, &Path)> = peers
        .iter()
        .map(|(peer, path)| (*peer, path.as_path()))
        .collect();

    // One CA and one ECDSA P-256 leaf for the run, the same files for both servers.
    let (ca, leaf) = certificates()?;
    // The certificate folder holds nothing else: both servers watch it for changes, and a
    // log file written there would wake their watchers on every line.
    let cert_dir = work.path().join("certs");
    let log_dir = work.path().join("logs");
    std::fs::create_dir_all(&cert_dir)?;
    std::fs::create_dir_all(&log_dir)?;
    let cert_path = cert_dir.join("tls.crt");
    let key_path = cert_dir.join("tls.key");
    std::fs::write(&cert_path, leaf.certificate.to_pem())?;
    std::fs::write(&key_path, leaf.key.to_pem())?;
    let tls = bench_load::client_config(ca.certificate().der(), args.kx)?;
    let run_options = RunOptions {
        threads: args.threads,
        pin_cpu: args.pin_cpu,
        env: args.server_env.clone(),
        log_dir: log_dir.clone(),
    };
    let bodies = Bodies::new()?;
    let ticks = bench_peer::clock_ticks();
    let cores = machine_cpus();
    let client_cpus = std::env::var(CLIENT_PINNED)
        .map(|cpus| format!(", pinned to CPU {cpus}"))
        .unwrap_or_default()
        + if args.client_poll {
            ", one thread polling its sockets, never asleep (--client-poll)"
        } else {
            ""
        };
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();

    let how = format!(
        "{cores} cores (load average {load_average} at start); servers: {}; client: this process (release{client_cpus}), {concurrency} HTTP/1.1 connections, \
         TLS 1.3, no resumption, kx offer {:?}; measured {duration} s per scenario and server in {rounds} \
         round(s) of {window:.1} s, each on a fresh server after {warmup} s of warm-up, the servers \
         taking turns; ECDSA P-256 leaf; \
         info-level logs to a file; bodies: AdmissionReview {} B, ConversionReview ({CONVERSION_OBJECTS} CronTabs) {} B, \
         ConversionReview of a LIST ({LIST_OBJECTS} CronTabs with managedFields, one client) {} B{}",
        match args.threads {
            Some(n) => format!("GOMAXPROCS={n}, TOKIO_WORKER_THREADS={n}"),
            None => "GOMAXPROCS and tokio workers at their defaults (all cores)".to_owned(),
        },
        args.kx,
        bodies.allowed.len(),
        bodies.convert.len(),
        bodies.convert_list.len(),
        match args.pin_cpu {
            Some(cpu) => format!("; both servers pinned to CPU {cpu} (taskset)"),
            None => String::new(),
        } + &args
            .server_env
            .iter()
            .map(|(key, value)| format!("; both servers with {key}={value}"))
            .collect::<String>(),
    );
    eprintln!("bench: {how}");

    let mut probes = Vec::new();
    let mut rows = Vec::new();
    let mut turn = 0usize;
    for scenario in &scenarios {
        let mut measured: Vec<(Peer, Vec<Measurement>)> =
            peers.iter().map(|(peer, _)| (*peer, Vec::new())).collect();
        for round in 0..rounds {
            let mut order = peers.clone();
            if turn % 2 == 1 {
                order.reverse();
            }
            turn += 1;
            for (peer, binary) in order {
                let tag = format!("{}-{}-{round}", scenario.name(), peer.label());
                eprintln!(
                    "bench: {:<10} {:<18} round {}/{rounds}: warm-up {warmup} s, measuring {window:.1} s ...",
                    scenario.name(),
                    peer.label(),
                    round + 1,
                );
                let mut server =
                    Server::spawn(peer, binary, &cert_path, &key_path, &run_options, &tag)?;
                let result = measure(
                    peer,
                    *scenario,
                    &mut server,
                    &tls,
                    &bodies,
                    Timing {
                        duration: window,
                        warmup,
                        concurrency,
                        ticks,
                        steal_cpu: args.pin_cpu,
                        client_poll: args.client_poll,
                    },
                    &mut probes,
                    binary,
                )
                .await;
                let log = log_dir.join(format!("{tag}.log"));
                let pid = server.pid();
                server.stop();
                match result {
                    Ok(measurement) => {
                        if let Some(dir) = &args.samples {
                            bench_report::write_samples(
                                &dir.join(format!("{tag}.tsv")),
                                &measurement,
                            )?;
                        }
                        if measurement.errors > 0 {
                            eprintln!(
                                "bench:   {} errors, e.g. {:?}",
                                measurement.errors, measurement.error_samples
                            );
                        }
                        let steal = measurement.steal_percent();
                        if steal >= STEAL_WARN_PERCENT {
                            eprintln!(
                                "bench:   {steal:.1} % of the {} taken by the hypervisor in this window (steal): \
                                 its figures are not comparable with a window without",
                                if args.pin_cpu.is_some() {
                                    "servers' CPU"
                                } else {
                                    "CPUs"
                                }
                            );
                        }
                        if let Some((_, list)) = measured.iter_mut().find(|(p, _)| *p == peer) {
                            list.push(measurement);
                        }
                    }
                    Err(error) => {
                        let tail = std::fs::read_to_string(&log).unwrap_or_default();
                        let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                        return Err(format!(
                            "{} (pid {pid}) in scenario {}: {error}\nlast log lines:\n{}",
                            peer.label(),
                            scenario.name(),
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        )
                        .into());
                    }
                }
            }
        }
        for (peer, list) in measured {
            rows.push(bench_report::summarize(*scenario, peer, list));
        }
    }

    let report = bench_report::render(&how, &probes, &rows);
    println!("{report}");
    if let Some(path) = &args.json {
        let document = json!({
            "date": bench_peer::report_date(),
            "how": how,
            "cores": cores,
            "duration_seconds": duration,
            "warmup_seconds": warmup,
            "concurrency": concurrency,
            "rounds": rounds,
            "probes": probes,
            "rows": rows,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&document)?)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    let errors: u64 = rows.iter().map(|row| row.errors).sum();
    if errors > 0 {
        return Err(format!("{errors} requests failed (see the errors column)").into());
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Timing {
    duration: f64,
    warmup: f64,
    concurrency: usize,
    ticks: f64,
    /// Whose steal time to read: the server's CPU when pinned, else the machine's.
    steal_cpu: Option<usize>,
    /// `--client-poll`.
    client_poll: bool,
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    peer: Peer,
    scenario: ScenarioName,
    server: &mut Server,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    bodies: &Bodies,
    timing: Timing,
    probes: &mut Vec<Probe>,
    binary: &Path,
) -> Result<Measurement> {
    let target = Target {
        addr: server.addr,
        tls: tls.clone(),
    };
    let (listening, startup) = wait_until_serving(server, &target, &bodies.allowed).await?;
    let pid = server.pid();
    let idle = bench_peer::memory(pid)?;
    if !probes.iter().any(|probe| probe.peer == peer.label()) {
        let mut probe = check_answers(&target, bodies).await?;
        probe.peer = peer.label();
        probe.binary_bytes = std::fs::metadata(binary).map_or(0, |m| m.len());
        probes.push(probe);
    }

    let load = scenario_load(scenario, bodies);
    let concurrency = load.concurrency.unwrap_or(timing.concurrency);
    let now = Instant::now();
    let measure_from = now + Duration::from_secs_f64(timing.warmup);
    let until = measure_from + Duration::from_secs_f64(timing.duration);
    let load = Load {
        path: load.path,
        body: load.body,
        expect: load.expect,
        new_connection_per_request: load.new_connection,
        concurrency,
        poll: timing.client_poll,
        measure_from,
        until,
    };
    // CPU and memory are read at the window's edges by a sampler beside the workers; the steal
    // time of the server's CPU (the machine's when not pinned) also every window of
    // `bench_load::WINDOW_MS`, to tell which stretches the hypervisor took.
    let steal_cpu = timing.steal_cpu;
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let cpu = |pid| bench_peer::cpu_seconds(pid, timing.ticks).map_err(|e| e.to_string());
        let machine = || bench_peer::cpu_times(None, timing.ticks).map_err(|e| e.to_string());
        let steal = || {
            bench_peer::cpu_times(steal_cpu, timing.ticks)
                .map(|t| t.steal)
                .ok()
        };
        let server_ns = || bench_peer::cpu_ns(pid).ok();
        let server_cpu = cpu(Some(pid));
        let client_cpu = cpu(None);
        let start_machine = machine();
        let start_steal = steal();
        let mut steal_ms = Vec::new();
        let mut cpu_ms = Vec::new();
        let mut last = start_steal;
        let mut last_ns = server_ns();
        let mut tick = measure_from;
        loop {
            tick += Duration::from_millis(u64::from(bench_load::WINDOW_MS));
            if tick > until {
                break;
            }
            tokio::time::sleep_until(tick.into()).await;
            let now = steal();
            steal_ms.push(match (last, now) {
                (Some(a), Some(b)) => (b - a) * 1000.0,
                _ => 0.0,
            });
            last = now;
            let now_ns = server_ns();
            // One figure per window, NaN where a read failed, so that the i-th stays the i-th.
            cpu_ms.push(match (last_ns, now_ns) {
                (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
                _ => f64::NAN,
            });
            last_ns = now_ns;
        }
        tokio::time::sleep_until(until.into()).await;
        let end_server_cpu = cpu(Some(pid));
        let end_client_cpu = cpu(None);
        let end_machine = machine();
        let end_steal = steal();
        let memory = bench_peer::memory(pid).map_err(|e| e.to_string());
        (
            server_cpu.and_then(|a| end_server_cpu.map(|b| b - a)),
            client_cpu.and_then(|a| end_client_cpu.map(|b| b - a)),
            start_machine.and_then(|a| end_machine.map(|b| b - a)),
            start_steal.zip(end_steal).map_or(0.0, |(a, b)| b - a),
            steal_ms,
            cpu_ms,
            memory,
        )
    });
    let result = bench_load::run(&target, &load).await;
    let (server_cpu, client_cpu, machine, steal_seconds, steal_ms, cpu_ms, memory) =
        sampler.await?;
    let server_cpu = server_cpu?;
    let client_cpu = client_cpu?;
    let other_cpu = (machine?.busy - server_cpu - client_cpu).max(0.0);
    let end: Memory = memory?;
    server.check_alive()?;

    Ok(Measurement {
        seconds: timing.duration,
        latencies_us: result.latencies_us,
        started_ms: result.started_ms,
        errors: result.errors,
        error_samples: result.error_samples,
        warmup_requests: result.warmup_requests,
        startup_ms: startup.as_secs_f64() * 1000.0,
        listen_ms: listening.as_secs_f64() * 1000.0,
        rss_idle_bytes: idle.rss,
        rss_end_bytes: end.rss,
        rss_peak_bytes: end.hwm,
        server_cpu_seconds: server_cpu,
        client_cpu_seconds: client_cpu,
        other_cpu_seconds: other_cpu,
        steal_seconds,
        steal_cpus: if steal_cpu.is_some() {
            1
        } else {
            machine_cpus()
        },
        steal_ms,
        cpu_ms,
    })
}

/// Polls until the server accepts TCP connections, then until it answers a validating review;
/// returns both times since spawn (the difference is mostly the first TLS handshake).
async fn wait_until_serving(
    server: &mut Server,
    target: &Target,
    body: &Bytes,
) -> Result<(Duration, Duration)> {
    let deadline = server.spawned + Duration::from_secs(30);
    let listening = loop {
        if tokio::net::TcpStream::connect(target.addr).await.is_ok() {
            break server.spawned.elapsed();
        }
        server.check_alive()?;
        if Instant::now() > deadline {
            return Err("the server did not listen within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    loop {
        let attempt = async {
            let (mut sender, _) = bench_load::connect(target).await?;
            bench_load::post(&mut sender, "/validate", body.clone(), true).await
        };
        if let Ok((200, _)) = attempt.await {
            return Ok((listening, server.spawned.elapsed()));
        }
        server.check_alive()?;
        if Instant::now() > deadline {
            return Err("the server did not answer within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Checks that the server does the same work as its peer: the right verdicts, a patch that
/// adds the label, 100 converted objects in the desired version.
async fn check_answers(target: &Target, bodies: &Bodies) -> Result<Probe> {
    let (mut sender, negotiated) = bench_load::connect(target).await?;
    let mut ask = async |path: &str, body: &Bytes| -> Result<(Value, usize)> {
        let (status, answer) = bench_load::post(&mut sender, path, body.clone(), false).await?;
        if status != 200 {
            return Err(format!("{path}: HTTP {status}").into());
        }
        Ok((serde_json::from_slice(&answer)?, answer.len()))
    };
    let (allowed, validate_answer_bytes) = ask("/validate", &bodies.allowed).await?;
    let response = &allowed["response"];
    if response["uid"] != REVIEW_UID || response["allowed"] != true {
        return Err(format!("/validate did not allow the Pod: {allowed}").into());
    }
    let (denied, _) = ask("/validate", &bodies.denied).await?;
    if denied["response"]["allowed"] != false {
        return Err(format!("/validate allowed a Pod labelled {DENY_LABEL}=true: {denied}").into());
    }
    let (mutated, mutate_answer_bytes) = ask("/mutate", &bodies.allowed).await?;
    let patch = mutated["response"]["patch"]
        .as_str()
        .ok_or_else(|| format!("/mutate sent no patch: {mutated}"))?;
    let patch = base64::engine::general_purpose::STANDARD.decode(patch)?;
    let patch = String::from_utf8_lossy(&patch).into_owned();
    if !patch.contains(&MUTATED_LABEL.replace('/', "~1")) {
        return Err(format!("/mutate's patch does not add {MUTATED_LABEL}: {patch}").into());
    }
    let (converted, convert_answer_bytes) = ask("/convert", &bodies.convert).await?;
    let response = &converted["response"];
    let objects = response["convertedObjects"]
        .as_array()
        .ok_or_else(|| format!("/convert sent no convertedObjects: {converted}"))?;
    let all_converted = objects.iter().all(|object| {
        object["apiVersion"] == DESIRED_VERSION
            && object["spec"]["schedule"]["cron"] == "*/5 * * * *"
    });
    if response["result"]["status"] != "Success"
        || objects.len() != CONVERSION_OBJECTS
        || !all_converted
    {
        return Err(format!(
            "/convert did not convert {CONVERSION_OBJECTS} objects to {DESIRED_VERSION}: {}",
            response["result"]
        )
        .into());
    }
    let (list, _) = ask("/convert", &bodies.convert_list).await?;
    let response = &list["response"];
    let converted = response["convertedObjects"]
        .as_array()
        .map_or(0, |objects| {
            objects
                .iter()
                .filter(|object| {
                    object["apiVersion"] == DESIRED_VERSION
                        && object["spec"]["schedule"]["cron"] == "*/5 * * * *"
                        && object["metadata"]["managedFields"].is_array()
                })
                .count()
        });
    if response["result"]["status"] != "Success" || converted != LIST_OBJECTS {
        return Err(format!(
            "/convert converted {converted} of {LIST_OBJECTS} listed objects: {}",
            response["result"]
        )
        .into());
    }
    Ok(Probe {
        peer: "",
        negotiated,
        mutate_patch: patch,
        validate_answer_bytes,
        mutate_answer_bytes,
        convert_answer_bytes,
        binary_bytes: 0,
    })
}
