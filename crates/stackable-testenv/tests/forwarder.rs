//! The forwarder against real TCP servers on 127.0.0.1 (tasks of this test; the replicas
//! tests use processes). No control plane needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use stackable_testenv::forwarder::{Backend, Forwarder, Readiness};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A tiny server: greets each connection with its name and echoes; a health server whose
/// `/readyz` answers 200 or 503 as `ready` says. Both stop on drop.
struct TestServer {
    name: String,
    addr: SocketAddr,
    health: SocketAddr,
    ready: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl TestServer {
    async fn start(name: &str) -> Self {
        let listener = TcpListener::bind(LOOPBACK).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let greeting: Arc<str> = format!("{name}\n").into();
        let echo = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let greeting = greeting.clone();
                tokio::spawn(async move {
                    stream.write_all(greeting.as_bytes()).await?;
                    let (mut read, mut write) = stream.split();
                    tokio::io::copy(&mut read, &mut write).await?;
                    write.shutdown().await
                });
            }
        });
        let health_listener = TcpListener::bind(LOOPBACK).await.unwrap();
        let health = health_listener.local_addr().unwrap();
        let ready = Arc::new(AtomicBool::new(true));
        let flag = ready.clone();
        let health_task = tokio::spawn(async move {
            while let Ok((stream, _)) = health_listener.accept().await {
                let flag = flag.clone();
                let service = service_fn(move |_request| {
                    let status = if flag.load(Ordering::SeqCst) {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    async move {
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            name: name.to_owned(),
            addr,
            health,
            ready,
            tasks: vec![echo, health_task],
        }
    }

    fn readiness(&self, period: Duration) -> Readiness {
        Readiness::http_get(self.health, "/readyz").period(period)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connects through the forwarder and returns the greeting line (the server's name) and the
/// open stream; `Err` when the forwarder closed or reset the connection instead.
async fn connect(forwarder: &Forwarder) -> Result<(String, BufReader<TcpStream>), String> {
    let stream = TcpStream::connect(forwarder.local_addr())
        .await
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    match tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await {
        Ok(Ok(0)) => Err("closed without a greeting".to_owned()),
        Ok(Ok(_)) => Ok((line.trim_end().to_owned(), reader)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no greeting within 5 s".to_owned()),
    }
}

async fn greetings(forwarder: &Forwarder, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let (name, _) = connect(forwarder).await.unwrap();
        *counts.entry(name).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_over_three_backends() {
    let servers = [
        TestServer::start("a").await,
        TestServer::start("b").await,
        TestServer::start("c").await,
    ];
    let forwarder = Forwarder::start(LOOPBACK).await.unwrap();
    let ids: Vec<_> = servers
        .iter()
        .map(|s| forwarder.add_backend(Backend::always_ready(s.addr)))
        .collect();

    let counts = greetings(&forwarder, 30).await;
    println!("connections per backend: {counts:?}");
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 10), ("b".into(), 10), ("c".into(), 10)])
    );
    for (id, server) in ids.iter().zip(&servers) {
        let state = forwarder.backend(*id).unwrap();
        assert_eq!(state.addr, server.addr);
        assert_eq!(state.connections, 10, "{}: {state:?}", server.name);
    }
    let stats = forwarder.stats();
    assert_eq!((stats.accepted, stats.forwarded), (30, 30), "{stats:?}");
    assert_eq!(
        stats.refused_no_ready_backend + stats.dial_errors,
        0,
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_backend_whose_readyz_fails_gets_no_new_connections() {
    let period = Duration::from_millis(200);
    let servers = [
        TestServer::start("a").await,
        TestServer::start("b").await,
        TestServer::start("c").await,
    ];
    let forwarder = Forwarder::start(LOOPBACK).await.unwrap();
    let ids: Vec<_> = servers
        .iter()
        .map(|s| forwarder.add_backend(Backend::with_readiness(s.addr, s.readiness(period))))
        .collect();
    forwarder
        .wait_for_ready(3, Duration::from_secs(5))
        .await
        .unwrap();

    servers[1].ready.store(false, Ordering::SeqCst);
    let flipped = Instant::now();
    while forwarder.backend(ids[1]).unwrap().ready {
        assert!(flipped.elapsed() < Duration::from_secs(5), "b stayed ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = flipped.elapsed();
    println!("b out of rotation {took:?} after /readyz turned 503 (period {period:?})");
    // At most one period until the next probe, which sees 503 (it does not time out here);
    // two periods and some slack for a loaded machine.
    assert!(
        took <= 2 * period + Duration::from_millis(200),
        "took {took:?}"
    );
    let state = forwarder.backend(ids[1]).unwrap();
    assert_eq!(
        state.last_probe.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );

    let counts = greetings(&forwarder, 20).await;
    assert_eq!(counts, BTreeMap::from([("a".into(), 10), ("c".into(), 10)]));

    // Ready again: back in rotation.
    servers[1].ready.store(true, Ordering::SeqCst);
    forwarder
        .wait_for_ready(3, Duration::from_secs(5))
        .await
        .unwrap();
    let counts = greetings(&forwarder, 30).await;
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
}

#[tokio::test]
async fn a_backend_with_a_probe_waits_for_its_first_success() {
    let server = TestServer::start("a").await;
    server.ready.store(false, Ordering::SeqCst);
    let forwarder = Forwarder::start(LOOPBACK).await.unwrap();
    let id = forwarder.add_backend(Backend::with_readiness(
        server.addr,
        server.readiness(Duration::from_millis(50)),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!forwarder.backend(id).unwrap().ready);
    assert!(connect(&forwarder).await.is_err());
    server.ready.store(true, Ordering::SeqCst);
    forwarder
        .wait_for_ready(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(connect(&forwarder).await.unwrap().0, "a");
}

#[tokio::test]
async fn an_established_connection_outlives_its_backends_removal() {
    let servers = [TestServer::start("a").await, TestServer::start("b").await];
    let forwarder = Forwarder::start(LOOPBACK).await.unwrap();
    let a = forwarder.add_backend(Backend::always_ready(servers[0].addr));
    let (name, mut stream) = connect(&forwarder).await.unwrap();
    assert_eq!(name, "a");
    let b = forwarder.add_backend(Backend::always_ready(servers[1].addr));

    let removed = forwarder.remove_backend(a).unwrap();
    assert_eq!(removed.open_connections, 1, "{removed:?}");
    assert!(forwarder.backend(a).is_none());
    // New connections go to b only.
    assert_eq!(
        greetings(&forwarder, 3).await,
        BTreeMap::from([("b".into(), 3)])
    );

    // The old one still talks to a, both ways, and half-close works: the client's EOF
    // reaches the server, which answers the rest and closes its side.
    stream.get_mut().write_all(b"still here\n").await.unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    assert_eq!(line, "still here\n");
    stream.get_mut().write_all(b"last words").await.unwrap();
    stream.get_mut().shutdown().await.unwrap();
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, "last words");

    let deadline = Instant::now() + Duration::from_secs(5);
    while forwarder.stats().open > 0 {
        assert!(Instant::now() < deadline, "{:?}", forwarder.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(forwarder.backend(b).unwrap().connections, 3);
}

#[tokio::test]
async fn no_ready_backend_means_the_connection_is_reset_and_counted() {
    let forwarder = Forwarder::start(LOOPBACK).await.unwrap();
    assert!(connect(&forwarder).await.is_err());

    // A backend whose health port has nothing on it never becomes ready.
    let unused = TcpListener::bind(LOOPBACK)
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let server = TestServer::start("a").await;
    let id = forwarder.add_backend(Backend::with_readiness(
        server.addr,
        Readiness::http_get(unused, "/readyz").period(Duration::from_millis(20)),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = forwarder.backend(id).unwrap();
    assert!(!state.ready);
    assert!(
        state
            .last_probe
            .as_deref()
            .unwrap_or("")
            .starts_with("no answer: connect to"),
        "{state:?}"
    );
    assert!(connect(&forwarder).await.is_err());

    let stats = forwarder.stats();
    assert_eq!(stats.refused_no_ready_backend, 2, "{stats:?}");
    assert_eq!(stats.forwarded, 0, "{stats:?}");
}

#[tokio::test]
async fn a_failed_dial_is_retried_on_the_next_backend_unless_switched_off() {
    let server = TestServer::start("alive").await;
    // Nothing listens here: dials are refused.
    let dead = TcpListener::bind(LOOPBACK)
        .await
        .unwrap()
        .local_addr()
        .unwrap();

    let retrying = Forwarder::start(LOOPBACK).await.unwrap();
    let dead_id = retrying.add_backend(Backend::always_ready(dead));
    retrying.add_backend(Backend::always_ready(server.addr));
    assert_eq!(
        greetings(&retrying, 10).await,
        BTreeMap::from([("alive".into(), 10)])
    );
    let stats = retrying.stats();
    assert_eq!(stats.dial_errors, 5, "{stats:?}");
    assert_eq!(stats.reset_after_dial_errors, 0, "{stats:?}");
    assert_eq!(retrying.backend(dead_id).unwrap().dial_errors, 5);

    let faithful = Forwarder::kube_proxy().await.unwrap();
    faithful.add_backend(Backend::always_ready(dead));
    faithful.add_backend(Backend::always_ready(server.addr));
    let mut failed = 0;
    for _ in 0..10 {
        if connect(&faithful).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 5);
    let stats = faithful.stats();
    assert_eq!(
        (stats.dial_errors, stats.reset_after_dial_errors),
        (5, 5),
        "{stats:?}"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let server = TestServer::start("a").await;
    let forwarder = Forwarder::builder()
        .max_connections(2)
        .start(LOOPBACK)
        .await
        .unwrap();
    forwarder.add_backend(Backend::always_ready(server.addr));
    let first = connect(&forwarder).await.unwrap();
    let _second = connect(&forwarder).await.unwrap();

    let third = tokio::spawn({
        let forwarder = forwarder.clone();
        async move { connect(&forwarder).await.map(|(name, _)| name) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "a third connection was served");
    assert_eq!(forwarder.stats().open, 2);

    drop(first);
    let name = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(name, "a");
}

#[tokio::test]
async fn dropping_the_forwarder_stops_the_listener_and_its_connections() {
    let server = TestServer::start("a").await;
    let forwarder = Forwarder::start(LOOPBACK).await.unwrap();
    forwarder.add_backend(Backend::with_readiness(
        server.addr,
        server.readiness(Duration::from_millis(50)),
    ));
    forwarder
        .wait_for_ready(1, Duration::from_secs(5))
        .await
        .unwrap();
    let addr = forwarder.local_addr();
    let (_, mut open) = connect(&forwarder).await.unwrap();
    drop(forwarder);

    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the open connection was not closed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening on {addr}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_forwarder_listens_on_loopback_only() {
    let error = Forwarder::start("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("loopback only"), "{error}");
}

#[tokio::test]
async fn a_backend_removed_after_a_delay_serves_until_then() {
    let server = TestServer::start("a").await;
    let forwarder = Forwarder::start(LOOPBACK).await.unwrap();
    let id = forwarder.add_backend(Backend::always_ready(server.addr));
    forwarder.remove_backend_after(id, Duration::from_millis(300));
    assert_eq!(connect(&forwarder).await.unwrap().0, "a");
    let deadline = Instant::now() + Duration::from_secs(5);
    while forwarder.backend(id).is_some() {
        assert!(Instant::now() < deadline, "not removed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(connect(&forwarder).await.is_err());
    assert_eq!(forwarder.stats().refused_no_ready_backend, 1);
}
