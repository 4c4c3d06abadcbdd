//! The report of `cargo xtask bench`: one window's measurement, the rounds of a server in a
//! scenario merged into a row, the table with the ratios of each pair of servers, and the
//! `--samples` files.

use std::{fmt::Write as _, path::Path};

use crate::{
    Result,
    bench::ScenarioName,
    bench_load::{self, FullSpeed, Negotiated, Percentiles},
    bench_peer::{self, Peer},
};

/// The figures of one server in one scenario.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Row {
    scenario: &'static str,
    peer: &'static str,
    rounds: usize,
    measured_seconds: f64,
    requests: u64,
    requests_per_second: f64,
    latency: Percentiles,
    /// The median over the 100 ms windows of each window's p99 (see
    /// [`bench_load::window_p99s`]); `None` when no window had enough requests.
    p99_typical_us: Option<u32>,
    /// The windows at full speed and their p99 (see [`bench_load::full_speed`]).
    full_speed: Option<FullSpeed>,
    pub(crate) errors: u64,
    error_samples: Vec<String>,
    warmup_requests: u64,
    startup_ms: f64,
    listen_ms: f64,
    rss_idle_bytes: u64,
    rss_end_bytes: u64,
    rss_peak_bytes: u64,
    server_cpu_seconds: f64,
    server_cpu_us_per_request: f64,
    client_cpu_seconds: f64,
    other_cpu_seconds: f64,
    /// Steal time over the windows, in % of the server's CPU (of the machine's CPUs when not
    /// pinned).
    steal_percent: f64,
}

/// What one server answered to the correctness probes before the load.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Probe {
    pub(crate) peer: &'static str,
    pub(crate) negotiated: Negotiated,
    pub(crate) mutate_patch: String,
    pub(crate) validate_answer_bytes: usize,
    pub(crate) mutate_answer_bytes: usize,
    pub(crate) convert_answer_bytes: usize,
    pub(crate) binary_bytes: u64,
}

/// One measured window on one fresh server.
#[derive(Debug)]
pub(crate) struct Measurement {
    pub(crate) seconds: f64,
    pub(crate) latencies_us: Vec<u32>,
    /// When each request started (ms into the window; parallel to `latencies_us`).
    pub(crate) started_ms: Vec<u32>,
    pub(crate) errors: u64,
    pub(crate) error_samples: Vec<String>,
    pub(crate) warmup_requests: u64,
    pub(crate) startup_ms: f64,
    pub(crate) listen_ms: f64,
    pub(crate) rss_idle_bytes: u64,
    pub(crate) rss_end_bytes: u64,
    pub(crate) rss_peak_bytes: u64,
    pub(crate) server_cpu_seconds: f64,
    pub(crate) client_cpu_seconds: f64,
    pub(crate) other_cpu_seconds: f64,
    /// Steal time of the server's CPU (of the machine's CPUs added up when not pinned) over
    /// the window.
    pub(crate) steal_seconds: f64,
    /// How many CPUs `steal_seconds` is of.
    pub(crate) steal_cpus: usize,
    /// The same per `bench_load::WINDOW_MS` window, in ms.
    pub(crate) steal_ms: Vec<f64>,
    /// The server's CPU time per `bench_load::WINDOW_MS` window, in ms (one per window of the
    /// sampler, NaN where the server's threads could not be read).
    pub(crate) cpu_ms: Vec<f64>,
}

/// Steal (in % of the CPU it is read from) from which a window's figures are flagged.
pub(crate) const STEAL_WARN_PERCENT: f64 = 1.0;

impl Measurement {
    /// The CPU seconds the steal time was read over: the window times the CPUs watched.
    fn cpu_seconds_watched(&self) -> f64 {
        self.seconds * self.steal_cpus as f64
    }

    /// The window's steal time in % of the CPUs it was read from.
    pub(crate) fn steal_percent(&self) -> f64 {
        percent_of(self.steal_seconds, self.cpu_seconds_watched())
    }
}

/// `part` in % of `whole` (0 when `whole` is not positive).
fn percent_of(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part * 100.0 / whole
    } else {
        0.0
    }
}

/// Writes the measured requests of one window (see `--samples`), in the order they started,
/// and beside them (`<tag>.windows.tsv`) the steal time and the server's CPU time of each 100 ms
/// of the window.
pub(crate) fn write_samples(path: &Path, measurement: &Measurement) -> Result {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut samples: Vec<(u32, u32)> = measurement
        .started_ms
        .iter()
        .copied()
        .zip(measurement.latencies_us.iter().copied())
        .collect();
    samples.sort_unstable();
    let mut text = String::from("started_ms\tlatency_us\n");
    for (started, latency) in samples {
        let _ = writeln!(text, "{started}\t{latency}");
    }
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(path, text)?;
    let mut windows = String::from("window_ms\tsteal_ms\tserver_cpu_ms\n");
    for (i, ms) in measurement.steal_ms.iter().enumerate() {
        let cpu = measurement
            .cpu_ms
            .get(i)
            .filter(|cpu| cpu.is_finite())
            .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.1}"));
        let _ = writeln!(
            windows,
            "{}\t{ms:.0}\t{cpu}",
            i as u64 * u64::from(bench_load::WINDOW_MS)
        );
    }
    Ok(write(&path.with_extension("windows.tsv"), windows)?)
}

/// Merges the rounds of one server in one scenario: counts and CPU times add up, latency
/// percentiles are taken over all requests (the typical p99 over the windows of all rounds),
/// memory is the largest, start-up the median.
pub(crate) fn summarize(scenario: ScenarioName, peer: Peer, rounds: Vec<Measurement>) -> Row {
    let count = rounds.len();
    let seconds: f64 = rounds.iter().map(|m| m.seconds).sum();
    let server_cpu: f64 = rounds.iter().map(|m| m.server_cpu_seconds).sum();
    let median = |value: fn(&Measurement) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(value).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    let startup_ms = median(|m| m.startup_ms);
    let listen_ms = median(|m| m.listen_ms);
    let mut latencies: Vec<u32> = Vec::new();
    let mut window_p99s: Vec<u32> = Vec::new();
    let mut windows = Vec::new();
    let mut error_samples = Vec::new();
    for m in &rounds {
        latencies.extend_from_slice(&m.latencies_us);
        window_p99s.extend(bench_load::window_p99s(&m.started_ms, &m.latencies_us));
        windows.extend(bench_load::windows(
            &m.started_ms,
            &m.latencies_us,
            &m.cpu_ms,
        ));
        error_samples.extend(m.error_samples.iter().cloned());
    }
    error_samples.truncate(3);
    let requests = latencies.len() as u64;
    Row {
        scenario: scenario.name(),
        peer: peer.label(),
        rounds: count,
        measured_seconds: seconds,
        requests,
        requests_per_second: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        latency: Percentiles::of(&mut latencies),
        p99_typical_us: (!window_p99s.is_empty()).then(|| Percentiles::of(&mut window_p99s).p50_us),
        full_speed: bench_load::full_speed(&windows),
        errors: rounds.iter().map(|m| m.errors).sum(),
        error_samples,
        warmup_requests: rounds.iter().map(|m| m.warmup_requests).sum(),
        startup_ms,
        listen_ms,
        rss_idle_bytes: rounds.iter().map(|m| m.rss_idle_bytes).max().unwrap_or(0),
        rss_end_bytes: rounds.iter().map(|m| m.rss_end_bytes).max().unwrap_or(0),
        rss_peak_bytes: rounds.iter().map(|m| m.rss_peak_bytes).max().unwrap_or(0),
        server_cpu_seconds: server_cpu,
        server_cpu_us_per_request: if requests > 0 {
            server_cpu * 1e6 / requests as f64
        } else {
            0.0
        },
        client_cpu_seconds: rounds.iter().map(|m| m.client_cpu_seconds).sum(),
        other_cpu_seconds: rounds.iter().map(|m| m.other_cpu_seconds).sum(),
        steal_percent: percent_of(
            rounds.iter().map(|m| m.steal_seconds).sum(),
            rounds.iter().map(Measurement::cpu_seconds_watched).sum(),
        ),
    }
}

fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

/// The report: how it was run, what each server negotiated and answered, the table.
pub(crate) fn render(how: &str, probes: &[Probe], rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nWebhook server benchmark, {}",
        bench_peer::report_date()
    );
    let _ = writeln!(out, "How: {how}\n");
    for probe in probes {
        let _ = writeln!(
            out,
            "{:<18} binary {:>9}; {} {} {} ALPN {}; answers: validate {} B, mutate {} B, convert {} B; patch {}",
            probe.peer,
            bench_peer::mib(probe.binary_bytes),
            probe.negotiated.version,
            probe.negotiated.cipher_suite,
            probe.negotiated.kx_group,
            probe.negotiated.alpn,
            probe.validate_answer_bytes,
            probe.mutate_answer_bytes,
            probe.convert_answer_bytes,
            probe.mutate_patch,
        );
    }
    let header = [
        "scenario",
        "server",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99 typ ms",
        "p99 full ms",
        "full %",
        "max ms",
        "errors",
        "srv CPU s",
        "CPU µs/req",
        "RSS idle",
        "RSS end",
        "RSS peak",
        "listen ms",
        "start ms",
        "client CPU s",
        "other CPU s",
        "steal %",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for row in rows {
        table.push(vec![
            row.scenario.to_owned(),
            row.peer.to_owned(),
            format!("{:.0}", row.requests_per_second),
            format!("{:.2}", ms(row.latency.p50_us)),
            format!("{:.2}", ms(row.latency.p99_us)),
            row.p99_typical_us
                .map_or_else(|| "-".to_owned(), |p99| format!("{:.2}", ms(p99))),
            row.full_speed
                .map_or_else(|| "-".to_owned(), |fast| format!("{:.2}", ms(fast.p99_us))),
            row.full_speed
                .map_or_else(|| "-".to_owned(), |fast| format!("{:.0}", fast.percent)),
            format!("{:.1}", ms(row.latency.max_us)),
            row.errors.to_string(),
            format!("{:.2}", row.server_cpu_seconds),
            format!("{:.0}", row.server_cpu_us_per_request),
            bench_peer::mib(row.rss_idle_bytes),
            bench_peer::mib(row.rss_end_bytes),
            bench_peer::mib(row.rss_peak_bytes),
            format!("{:.0}", row.listen_ms),
            format!("{:.0}", row.startup_ms),
            format!("{:.2}", row.client_cpu_seconds),
            format!("{:.2}", row.other_cpu_seconds),
            format!("{:.1}", row.steal_percent),
        ]);
    }
    let _ = writeln!(out);
    bench_peer::write_table(&mut out, &table, 2);
    // Each server beside controller-runtime, and the mimalloc build beside the system allocator's.
    for (a, b) in [
        (Peer::Ours, Peer::Go),
        (Peer::OursMimalloc, Peer::Go),
        (Peer::OursMimalloc, Peer::Ours),
    ] {
        let ratios = ratio_lines(rows, a, b);
        if !ratios.is_empty() {
            let _ = writeln!(
                out,
                "\n{} / {} (req/s: higher is better; the rest: lower is better):",
                a.label(),
                b.label()
            );
            for line in ratios {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    let _ = writeln!(
        out,
        "\nreq/s and latency are client-side over the measured window; p99 typ is the median over the \
         100 ms windows (of at least 100 requests) of each window's p99: the tail of a typical tenth \
         of a second, which a stretch where the machine runs slower moves less than it moves p99; \
         p99 full is the p99 of the requests started in the 100 ms windows in which the machine ran \
         at full speed, and full % their share of the windows: those where the server's CPU time per \
         request was at most 1.25 times the 10th percentile of all windows' (the same code on the \
         same requests costs more CPU time only when the machine runs slower); \
         srv CPU is the server's user+system time in that window (client and server share the cores; \
         client CPU is this process's time in the same window, other CPU what the rest of the \
         machine used meanwhile); steal is the time the hypervisor ran something else while this \
         VM wanted the CPU (/proc/stat), of the servers' CPU when pinned, else of all CPUs: no \
         process of the machine runs then, and a request in flight waits; RSS from /proc: idle after the first request, at the end of the \
         window, and the peak (VmHWM), largest over the rounds; listen = the server's process \
         started (timed when spawning returns) to the first accepted TCP connection, start = the \
         same to the first served request (the difference is mostly the first TLS handshake), \
         medians over the rounds."
    );
    out
}

/// One line per scenario that both `a` and `b` ran: `a`'s figures divided by `b`'s.
fn ratio_lines(rows: &[Row], a: Peer, b: Peer) -> Vec<String> {
    let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { 0.0 };
    ScenarioName::ALL
        .iter()
        .filter_map(|scenario| {
            let find = |peer: Peer| {
                rows.iter()
                    .find(|row| row.scenario == scenario.name() && row.peer == peer.label())
            };
            let (a, b) = (find(a)?, find(b)?);
            Some(format!(
                "{:<10} req/s x{:.2}  p99 x{:.2}  CPU/req x{:.2}  RSS end x{:.2}  start x{:.2}",
                scenario.name(),
                ratio(a.requests_per_second, b.requests_per_second),
                ratio(f64::from(a.latency.p99_us), f64::from(b.latency.p99_us)),
                ratio(a.server_cpu_us_per_request, b.server_cpu_us_per_request),
                ratio(a.rss_end_bytes as f64, b.rss_end_bytes as f64),
                ratio(a.startup_ms, b.startup_ms),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(peer: Peer, requests_per_second: f64, cpu_us: f64, rss_end_bytes: u64) -> Row {
        Row {
            scenario: "validate",
            peer: peer.label(),
            requests_per_second,
            server_cpu_us_per_request: cpu_us,
            rss_end_bytes,
            ..Row::default()
        }
    }

    #[test]
    fn ratios_are_printed_for_each_pair_that_ran() {
        let rows = [
            row(Peer::Ours, 20_000.0, 50.0, 10),
            row(Peer::OursMimalloc, 22_000.0, 45.0, 20),
        ];
        assert_eq!(
            ratio_lines(&rows, Peer::OursMimalloc, Peer::Ours),
            ["validate   req/s x1.10  p99 x0.00  CPU/req x0.90  RSS end x2.00  start x0.00"]
        );
        // Controller-runtime did not run: no line against it.
        assert!(ratio_lines(&rows, Peer::Ours, Peer::Go).is_empty());
        assert!(ratio_lines(&rows, Peer::OursMimalloc, Peer::Go).is_empty());
    }
}
