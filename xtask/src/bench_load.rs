//! The load generator of `cargo xtask bench`: N concurrent HTTPS clients (hyper HTTP/1.1 over
//! rustls), each on its own keep-alive connection or on a new connection per request, POSTing
//! one fixed body and recording the latency of every request.
//!
//! The client behaves like the Kubernetes API server's webhook client
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>):
//! HTTP/1.1, TLS 1.3, no session resumption, and (by default) the key-exchange offer of a Go
//! client (X25519MLKEM768 first, X25519 second).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, RootCertStore,
    client::Resumption,
    crypto::{CryptoProvider, aws_lc_rs},
};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Result;

/// Which key-exchange groups the client offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KxOffer {
    /// What the API server's Go (>= 1.24) client offers: X25519MLKEM768, then X25519, P-256.
    Go,
    /// Classical X25519 only (both peers then do exactly the same key exchange).
    X25519,
}

/// A rustls client trusting only `ca_der`, HTTP/1.1 by ALPN, no session resumption.
pub(crate) fn client_config(ca_der: &[u8], kx: KxOffer) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    let mut provider: CryptoProvider = aws_lc_rs::default_provider();
    // Go's order (AES-128-GCM first), so that a server honouring the client's preference
    // and one imposing its own end up on the same cipher suite.
    provider.cipher_suites = vec![
        aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
        aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
        aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    provider.kx_groups = match kx {
        KxOffer::Go => vec![
            aws_lc_rs::kx_group::X25519MLKEM768,
            aws_lc_rs::kx_group::X25519,
            aws_lc_rs::kx_group::SECP256R1,
        ],
        KxOffer::X25519 => vec![aws_lc_rs::kx_group::X25519],
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The API server's webhook client does not resume TLS sessions: every new connection is
    // a full handshake, which is what the handshake scenario measures.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// Where and how to send requests.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The server address.
    pub(crate) addr: SocketAddr,
    /// The TLS client configuration.
    pub(crate) tls: Arc<ClientConfig>,
}

/// What the TLS handshake negotiated (for the fairness line of the report).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Negotiated {
    /// TLS version.
    pub(crate) version: String,
    /// Cipher suite.
    pub(crate) cipher_suite: String,
    /// Key-exchange group.
    pub(crate) kx_group: String,
    /// ALPN protocol.
    pub(crate) alpn: String,
}

/// An open HTTP/1.1 connection.
pub(crate) type Sender = SendRequest<Full<Bytes>>;

/// Opens a TCP + TLS + HTTP/1.1 connection.
pub(crate) async fn connect(target: &Target) -> Result<(Sender, Negotiated)> {
    let tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let tls = TlsConnector::from(target.tls.clone())
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let session = tls.get_ref().1;
    let negotiated = Negotiated {
        version: session
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        cipher_suite: session
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        kx_group: session
            .negotiated_key_exchange_group()
            .map(|g| format!("{:?}", g.name()))
            .unwrap_or_default(),
        alpn: session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
    };
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, negotiated))
}

/// Sends one POST and returns the status and the whole body.
pub(crate) async fn post(
    sender: &mut Sender,
    path: &str,
    body: Bytes,
    close: bool,
) -> Result<(u16, Bytes)> {
    let mut request = http::Request::post(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json");
    if close {
        request = request.header(http::header::CONNECTION, "close");
    }
    let request = request.body(Full::new(body))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// One load scenario as the workers see it.
#[derive(Clone, Debug)]
pub(crate) struct Load {
    /// The path to POST to.
    pub(crate) path: &'static str,
    /// The request body.
    pub(crate) body: Bytes,
    /// A byte string every successful answer contains (checked on every request).
    pub(crate) expect: &'static [u8],
    /// Open a new connection for every request (and ask the server to close it).
    pub(crate) new_connection_per_request: bool,
    /// Concurrent clients.
    pub(crate) concurrency: usize,
    /// Keep the client's thread polling its sockets instead of sleeping (`--client-poll`).
    pub(crate) poll: bool,
    /// Requests started before this are warm-up and not counted.
    pub(crate) measure_from: Instant,
    /// No request starts after this.
    pub(crate) until: Instant,
}

/// What the workers measured in the measuring window.
#[derive(Debug, Default)]
pub(crate) struct LoadResult {
    /// Latency of every successful measured request, in microseconds.
    pub(crate) latencies_us: Vec<u32>,
    /// When each of them started, in milliseconds after the measured window opened (same
    /// order as `latencies_us`).
    pub(crate) started_ms: Vec<u32>,
    /// Failed measured requests.
    pub(crate) errors: u64,
    /// The first few error messages.
    pub(crate) error_samples: Vec<String>,
    /// Requests answered during warm-up.
    pub(crate) warmup_requests: u64,
}

/// Runs `load.concurrency` workers until `load.until` and merges their results.
pub(crate) async fn run(target: &Target, load: &Load) -> LoadResult {
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..load.concurrency {
        let target = target.clone();
        let load = load.clone();
        workers.spawn(async move { worker(&target, &load).await });
    }
    let poller = load.poll.then(|| tokio::spawn(keep_polling(load.until)));
    let mut merged = LoadResult::default();
    while let Some(result) = workers.join_next().await {
        match result {
            Ok(result) => {
                merged.latencies_us.extend(result.latencies_us);
                merged.started_ms.extend(result.started_ms);
                merged.errors += result.errors;
                merged.warmup_requests += result.warmup_requests;
                for sample in result.error_samples {
                    if merged.error_samples.len() < 3 {
                        merged.error_samples.push(sample);
                    }
                }
            }
            Err(error) => {
                merged.errors += 1;
                merged
                    .error_samples
                    .push(format!("worker task failed: {error}"));
            }
        }
    }
    if let Some(poller) = poller {
        poller.abort();
    }
    merged
}

/// Keeps the runtime's thread busy until `until`: a task that yields in a loop, so that the
/// thread never sleeps in `epoll_wait` but polls its sockets (with a zero timeout) between
/// tasks. A server's answer then finds no client thread to wake. On a runtime of one worker
/// (`--client-poll` builds one); with more, an idle worker could still sleep on the sockets.
async fn keep_polling(until: Instant) {
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

async fn worker(target: &Target, load: &Load) -> LoadResult {
    let mut result = LoadResult {
        latencies_us: Vec::with_capacity(1 << 14),
        started_ms: Vec::with_capacity(1 << 14),
        ..LoadResult::default()
    };
    let mut sender: Option<Sender> = None;
    loop {
        let started = Instant::now();
        if started >= load.until {
            break;
        }
        let measured = started >= load.measure_from;
        let outcome = one_request(target, load, &mut sender)
            .await
            .map_err(|error| error.to_string());
        match outcome {
            Ok(()) if measured => {
                let micros = started.elapsed().as_micros();
                let offset = started
                    .saturating_duration_since(load.measure_from)
                    .as_millis();
                result
                    .latencies_us
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
                result
                    .started_ms
                    .push(u32::try_from(offset).unwrap_or(u32::MAX));
            }
            Ok(()) => result.warmup_requests += 1,
            Err(error) => {
                sender = None;
                if measured {
                    result.errors += 1;
                    if result.error_samples.len() < 3 {
                        result.error_samples.push(error);
                    }
                }
                // Do not spin on a dead server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    result
}

async fn one_request(target: &Target, load: &Load, sender: &mut Option<Sender>) -> Result {
    let mut open = match sender.take() {
        Some(open) => open,
        None => connect(target).await?.0,
    };
    let (status, body) = post(
        &mut open,
        load.path,
        load.body.clone(),
        load.new_connection_per_request,
    )
    .await?;
    if status != 200 {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    if !contains(&body, load.expect) {
        let start = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!(
            "answer lacks {:?}: {start}",
            String::from_utf8_lossy(load.expect)
        )
        .into());
    }
    if !load.new_connection_per_request {
        *sender = Some(open);
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// How long the windows of [`window_p99s`] are, in milliseconds.
pub(crate) const WINDOW_MS: u32 = 100;

/// Fewer requests than this in a window, and [`window_p99s`] leaves it out (its 99th
/// percentile would be its largest sample).
pub(crate) const WINDOW_MIN_REQUESTS: usize = 100;

/// The 99th percentile (nearest rank, microseconds) of the requests started in each
/// [`WINDOW_MS`] window of one measured window, in time order, for the windows of at least
/// [`WINDOW_MIN_REQUESTS`] requests. `started_ms` and `latencies_us` are parallel.
///
/// The median of these is the tail of a typical tenth of a second: a stretch of seconds in
/// which the machine runs slower (a VM whose host is busy) moves it less than it moves the p99
/// over the whole window.
pub(crate) fn window_p99s(started_ms: &[u32], latencies_us: &[u32]) -> Vec<u32> {
    let mut windows: std::collections::BTreeMap<u32, Vec<u32>> = std::collections::BTreeMap::new();
    for (&started, &latency) in started_ms.iter().zip(latencies_us) {
        windows
            .entry(started / WINDOW_MS)
            .or_default()
            .push(latency);
    }
    windows
        .into_values()
        .filter(|samples| samples.len() >= WINDOW_MIN_REQUESTS)
        .map(|mut samples| Percentiles::of(&mut samples).p99_us)
        .collect()
}

/// A window is at full speed when the server's CPU time per request in it is at most this
/// many times the [`FULL_SPEED_BASE_QUANTILE`] of the windows' (see [`full_speed`]).
pub(crate) const FULL_SPEED_SLACK: f64 = 1.25;

/// The quantile of the windows' CPU time per request taken as the machine's full speed.
pub(crate) const FULL_SPEED_BASE_QUANTILE: f64 = 0.1;

/// The requests started in one [`WINDOW_MS`] window and the server's CPU time in it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Window {
    /// The server's CPU time in the window, in milliseconds.
    pub(crate) cpu_ms: f64,
    /// The latencies of the requests started in it.
    pub(crate) latencies_us: Vec<u32>,
}

/// The windows of one measured window (`cpu_ms[i]` is the server's CPU time in the `i`-th, NaN
/// where it could not be read), those of at least [`WINDOW_MIN_REQUESTS`] requests with a CPU
/// figure.
pub(crate) fn windows(started_ms: &[u32], latencies_us: &[u32], cpu_ms: &[f64]) -> Vec<Window> {
    let mut windows: Vec<Window> = cpu_ms
        .iter()
        .map(|&cpu_ms| Window {
            cpu_ms,
            latencies_us: Vec::new(),
        })
        .collect();
    for (&started, &latency) in started_ms.iter().zip(latencies_us) {
        if let Some(window) = windows.get_mut((started / WINDOW_MS) as usize) {
            window.latencies_us.push(latency);
        }
    }
    windows.retain(|window| {
        window.cpu_ms.is_finite() && window.latencies_us.len() >= WINDOW_MIN_REQUESTS
    });
    windows
}

/// The tail of the windows in which the machine ran at full speed.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub(crate) struct FullSpeed {
    /// The share of the windows at full speed, in %.
    pub(crate) percent: f64,
    /// The 99th percentile of the requests started in them.
    pub(crate) p99_us: u32,
}

/// Which windows ran at full speed, and their requests' p99.
///
/// The server's code and its requests are the same in every window, so its CPU time per
/// request moves only with how fast the machine ran it: on a VM whose host is busy the same
/// work takes up to ~1.7 times the CPU time, in stretches of seconds that steal time does not
/// show (2026-12-04: a loop of fixed work on an idle CPU of this VM ran at 0.6 times its speed in a
/// third of its 100 ms windows). A window is at full speed when its CPU time per request is at
/// most [`FULL_SPEED_SLACK`] times the [`FULL_SPEED_BASE_QUANTILE`] of all windows'. `None`
/// without windows.
pub(crate) fn full_speed(windows: &[Window]) -> Option<FullSpeed> {
    let cost = |window: &Window| window.cpu_ms / window.latencies_us.len().max(1) as f64;
    let mut costs: Vec<f64> = windows.iter().map(cost).collect();
    if costs.is_empty() {
        return None;
    }
    costs.sort_by(f64::total_cmp);
    let rank = ((costs.len() as f64 * FULL_SPEED_BASE_QUANTILE).ceil() as usize).max(1) - 1;
    let limit = costs[rank] * FULL_SPEED_SLACK;
    let fast: Vec<&Window> = windows.iter().filter(|w| cost(w) <= limit).collect();
    let mut latencies: Vec<u32> = fast
        .iter()
        .flat_map(|window| window.latencies_us.iter().copied())
        .collect();
    Some(FullSpeed {
        percent: fast.len() as f64 * 100.0 / windows.len() as f64,
        p99_us: Percentiles::of(&mut latencies).p99_us,
    })
}

/// Latency percentiles of a set of samples (microseconds), sorted in place.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Percentiles {
    /// Median.
    pub(crate) p50_us: u32,
    /// 99th percentile.
    pub(crate) p99_us: u32,
    /// Largest.
    pub(crate) max_us: u32,
}

impl Percentiles {
    /// Sorts `samples` and picks the percentiles (nearest rank).
    pub(crate) fn of(samples: &mut [u32]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index]
        };
        Self {
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: samples[samples.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_polling_ends_at_its_deadline_and_lets_sockets_and_timers_run() {
        // As `--client-poll` runs it: one worker, the poller beside the clients.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let until = Instant::now() + Duration::from_millis(200);
            let poller = tokio::spawn(keep_polling(until));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
            let connected = tokio::time::timeout(Duration::from_secs(5), async {
                tokio::net::TcpStream::connect(addr).await.unwrap();
                accept.await.unwrap().unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            })
            .await;
            assert!(
                connected.is_ok(),
                "a socket or a timer did not run beside the poller"
            );
            tokio::time::timeout(Duration::from_secs(5), poller)
                .await
                .expect("the poller did not end after its deadline")
                .unwrap();
            assert!(Instant::now() >= until);
        });
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<u32> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!((p.p50_us, p.p99_us, p.max_us), (50, 99, 100));
        assert_eq!(Percentiles::of(&mut []).max_us, 0);
    }

    #[test]
    fn window_p99s_take_each_window_alone() {
        // Window 0: 200 requests of 1..=200 µs; window 1: 150 of 1 ms and one slow one; window
        // 2: too few requests to count.
        let mut started = Vec::new();
        let mut latencies = Vec::new();
        for latency in 1..=200 {
            started.push(5);
            latencies.push(latency);
        }
        for _ in 0..150 {
            started.push(WINDOW_MS + 50);
            latencies.push(1_000);
        }
        started.push(WINDOW_MS + 99);
        latencies.push(9_000);
        for _ in 0..10 {
            started.push(2 * WINDOW_MS);
            latencies.push(50_000);
        }
        assert_eq!(window_p99s(&started, &latencies), vec![198, 1_000]);
        assert!(window_p99s(&[], &[]).is_empty());
    }

    #[test]
    fn windows_take_the_requests_started_in_them() {
        let mut started = Vec::new();
        let mut latencies = Vec::new();
        for i in 0..250 {
            started.push(i); // windows 0, 1 (100 each) and 2 (50: left out)
            latencies.push(i);
        }
        started.push(350); // a window without a CPU figure: left out
        latencies.push(1);
        let windows = windows(&started, &latencies, &[10.0, 20.0, 30.0]);
        assert_eq!(windows.len(), 2);
        // A window whose CPU time could not be read is left out; the next keeps its place.
        let unread = super::windows(&started, &latencies, &[f64::NAN, 20.0, 30.0]);
        assert_eq!(unread.len(), 1);
        assert_eq!(unread[0].cpu_ms, 20.0);
        assert_eq!(unread[0].latencies_us[0], 100);
        assert_eq!(windows[0].cpu_ms, 10.0);
        assert_eq!(windows[0].latencies_us.len(), 100);
        assert_eq!(windows[1].cpu_ms, 20.0);
        assert_eq!(windows[1].latencies_us[0], 100);
    }

    #[test]
    fn full_speed_leaves_out_the_windows_where_the_same_work_cost_more() {
        // Eight windows at 40 µs of CPU per request with a fast tail, two at 70 µs (the machine
        // at 0.6 times its speed) with a slow one.
        let window = |cpu_ms: f64, latency: u32| Window {
            cpu_ms,
            latencies_us: vec![latency; 200],
        };
        let mut all: Vec<Window> = (0..8).map(|_| window(8.0, 600)).collect();
        all.push(window(14.0, 1_400));
        all.push(window(14.0, 1_500));
        let fast = full_speed(&all).unwrap();
        assert_eq!(fast.percent, 80.0);
        assert_eq!(fast.p99_us, 600);
        // Within the slack, a window counts: 9.5 ms is 1.19 times 8 ms.
        all[8].cpu_ms = 9.5;
        assert_eq!(full_speed(&all).unwrap().percent, 90.0);
        assert_eq!(full_speed(&all).unwrap().p99_us, 1_400);
        assert_eq!(full_speed(&[]), None);
    }

    #[test]
    fn contains_finds_substrings() {
        assert!(contains(br#"{"allowed":true}"#, br#""allowed":true"#));
        assert!(!contains(br#"{"allowed":false}"#, br#""allowed":true"#));
    }
}
