//! Replicas as real processes (the crate's `echo_backend` example, and `sh`) behind a
//! forwarder on 127.0.0.1. No control plane needed.
//!
//! `cargo test -p stackable-testenv` builds the example first; when one test file is run
//! alone (`--test replicas`), build it with `cargo build -p stackable-testenv --example
//! echo_backend`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use stackable_testenv::{
    forwarder::Forwarder,
    replicas::{Error, Replicas, ReplicasBuilder},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpStream,
};

/// `target/<profile>/examples/echo_backend`, next to this test's `deps/` folder.
fn echo_backend() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/echo_backend");
    assert!(
        path.exists(),
        "{path:?} is missing: run `cargo build -p stackable-testenv --example echo_backend`"
    );
    path
}

fn echo_replicas(drain: Duration) -> ReplicasBuilder {
    Replicas::builder(echo_backend())
        .name_prefix("echo")
        .args(move |r| {
            [
                "--name",
                &r.name,
                "--echo",
                &r.https.to_string(),
                "--health",
                &r.health.to_string(),
                "--drain-ms",
                &drain.as_millis().to_string(),
            ]
            .map(str::to_owned)
            .to_vec()
        })
}

async fn greeting(forwarder: &Forwarder) -> Result<String, String> {
    let stream = TcpStream::connect(forwarder.local_addr())
        .await
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    match tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(stream).read_line(&mut line),
    )
    .await
    {
        Ok(Ok(0)) => Err("closed without a greeting".to_owned()),
        Ok(Ok(_)) => Ok(line.trim_end().to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no greeting within 5 s".to_owned()),
    }
}

/// Connects through the forwarder in a loop until stopped; counts answers and failures.
#[derive(Clone, Default)]
struct Load {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Load {
    fn start(&self, forwarder: &Forwarder) -> tokio::task::JoinHandle<Vec<String>> {
        let (load, forwarder) = (self.clone(), forwarder.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !load.stop.load(Ordering::SeqCst) {
                match greeting(&forwarder).await {
                    Ok(_) => load.ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        failures.push(e);
                        load.failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            failures
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_the_forwarder_take_turns() {
    let forwarder = Forwarder::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut replicas = echo_replicas(Duration::ZERO)
        .behind(&forwarder)
        .readiness_path("/readyz")
        .start(3)
        .unwrap();
    replicas
        .wait_all_ready(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", replicas.log_tails(20)));
    assert_eq!(forwarder.backends().len(), 3);

    let mut counts = BTreeMap::<String, usize>::new();
    for _ in 0..30 {
        *counts
            .entry(greeting(&forwarder).await.unwrap())
            .or_default() += 1;
    }
    println!("connections per replica: {counts:?}");
    assert_eq!(
        counts,
        BTreeMap::from([
            ("echo-0".into(), 10),
            ("echo-1".into(), 10),
            ("echo-2".into(), 10)
        ])
    );
    let first = &replicas.all()[0];
    assert!(
        first.log_tail(5).contains("echo-0: ready"),
        "{}",
        first.log_tail(5)
    );
}

/// Rolling updates with SIGTERM: a replica that turns not ready at once and drains for
/// longer than the endpoint takes to leave loses no connection, even with the forwarder
/// not retrying failed dials (as kube-proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_of_draining_replicas_lose_no_connection() {
    let forwarder = Forwarder::kube_proxy().await.unwrap();
    let mut replicas = echo_replicas(Duration::from_millis(1500))
        .behind(&forwarder)
        .readiness_path("/readyz")
        .endpoint_removal_delay(Duration::from_secs(1))
        .start(2)
        .unwrap();
    replicas
        .wait_all_ready(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", replicas.log_tails(20)));

    let load = Load::default();
    let task = load.start(&forwarder);
    let started = Instant::now();
    for _round in 0..2 {
        for old in replicas.running() {
            let (new, termination) = replicas
                .roll(old, Duration::from_secs(20))
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", replicas.log_tails(20)));
            assert!(termination.status.success(), "{termination:?}");
            assert!(!termination.killed);
            assert!(replicas.get(new).is_some());
        }
    }
    load.stop.store(true, Ordering::SeqCst);
    let failures = task.await.unwrap();
    let stats = forwarder.stats();
    println!(
        "rolled 4 times in {:?}: {} connections, {} failed; {stats:?}",
        started.elapsed(),
        load.ok.load(Ordering::SeqCst),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{failures:?}\n{}",
        replicas.log_tails(10)
    );
    assert!(load.ok.load(Ordering::SeqCst) > 50);
    assert_eq!(stats.dial_errors, 0, "{stats:?}");
    assert_eq!(replicas.running().len(), 2);
    assert_eq!(replicas.all().len(), 6);
}

/// The same without a drain period: connections sent to the replica after it exited and
/// before its endpoint left the forwarder fail. This is what the harness shows about a
/// server that stops listening at SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_exits_at_once_loses_connections_until_its_endpoint_is_gone() {
    let forwarder = Forwarder::kube_proxy().await.unwrap();
    let mut replicas = echo_replicas(Duration::ZERO)
        .behind(&forwarder)
        // No probe: only the endpoint removal takes the replica out of rotation.
        .endpoint_removal_delay(Duration::from_secs(1))
        .start(2)
        .unwrap();
    replicas
        .wait_all_ready(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", replicas.log_tails(20)));

    let load = Load::default();
    let task = load.start(&forwarder);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = replicas.running()[0];
    let termination = replicas.terminate(first).await.unwrap();
    assert!(termination.status.success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load.stop.store(true, Ordering::SeqCst);
    let failures = task.await.unwrap();
    let stats = forwarder.stats();
    println!("{} failed connections; {stats:?}", failures.len());
    assert!(!failures.is_empty(), "{stats:?}");
    // Each connection sent to the exited replica is reset by the forwarder; besides those, the
    // one request in flight when the process exited may be cut (the load is one client).
    let resets = stats.reset_after_dial_errors;
    let failed = failures.len() as u64;
    assert!(
        resets > 0 && (failed == resets || failed == resets + 1),
        "{failed} failures, {resets} resets after dial errors: {failures:?}"
    );
    assert_eq!(
        forwarder.backends().len(),
        1,
        "the endpoint was not removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_the_grace_period_and_kill_at_once() {
    let forwarder = Forwarder::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut replicas = echo_replicas(Duration::from_secs(60))
        .behind(&forwarder)
        .readiness_path("/readyz")
        .termination_grace(Duration::from_millis(300))
        .endpoint_removal_delay(Duration::ZERO)
        .start(2)
        .unwrap();
    replicas
        .wait_all_ready(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", replicas.log_tails(20)));
    let [slow, crashing] = replicas.running()[..] else {
        panic!("two replicas expected");
    };

    let termination = replicas.terminate(slow).await.unwrap();
    println!("{termination:?}");
    assert!(termination.killed, "{termination:?}");
    assert_eq!(termination.status.signal(), Some(9));
    assert!(termination.took >= Duration::from_millis(300));
    let log = replicas.get(slow).unwrap().log_tail(5);
    assert!(log.contains("SIGTERM, not ready, draining"), "{log}");

    let status = replicas.kill(crashing).await.unwrap();
    assert_eq!(status.signal(), Some(9));
    assert!(replicas.running().is_empty());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !forwarder.backends().is_empty() {
        assert!(Instant::now() < deadline, "{:?}", forwarder.backends());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_replica_that_exits_fails_the_wait_with_its_log() {
    let mut replicas = Replicas::builder(echo_backend())
        .args(|_| vec!["--no-such-flag".to_owned(), "x".to_owned()])
        .readiness_path("/readyz")
        .start(1)
        .unwrap();
    let id = replicas.all()[0].id();
    let error = replicas
        .wait_ready(id, Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Exited { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("unknown flag --no-such-flag"), "{message}");
    assert!(message.contains("replica-0 exited"), "{message}");
}

#[tokio::test]
async fn replicas_get_their_ports_names_and_kubeconfig_and_are_killed_on_drop() {
    let logs = tempfile::tempdir().unwrap();
    let replicas = Replicas::builder("/bin/sh")
        .kubeconfig("/some/kubeconfig")
        .env("EXTRA", "yes")
        .env("POD_NAME", "overridden")
        .name_env("POD_NAME")
        .log_dir(logs.path())
        .args(|r| {
            vec![
                "-c".to_owned(),
                format!(
                    "echo name={} https={} health={} KUBECONFIG=$KUBECONFIG EXTRA=$EXTRA POD_NAME=$POD_NAME; exec sleep 600",
                    r.name, r.https, r.health
                ),
            ]
        })
        .start(2)
        .unwrap();
    let infos: Vec<_> = replicas.all().iter().map(|r| r.info().clone()).collect();
    assert_ne!(infos[0].https, infos[1].https);
    assert_ne!(infos[0].health, infos[0].https);

    let deadline = Instant::now() + Duration::from_secs(10);
    for replica in replicas.all() {
        let expected = format!(
            "name={} https={} health={} KUBECONFIG=/some/kubeconfig EXTRA=yes POD_NAME={}",
            replica.name(),
            replica.info().https,
            replica.info().health,
            replica.name()
        );
        while !replica.log_tail(1).contains(&expected) {
            assert!(Instant::now() < deadline, "{}", replicas.log_tails(5));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            replica.log_path(),
            logs.path().join(format!("{}.log", replica.name()))
        );
    }
    let tails = replicas.log_tails(1);
    assert!(tails.contains("=== replica-1 (pid "), "{tails}");

    let pids: Vec<u32> = replicas.all().iter().filter_map(|r| r.pid()).collect();
    assert_eq!(pids.len(), 2);
    drop(replicas);
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in pids {
        // Gone, or a zombie until tokio reaps it.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
        {
            assert!(Instant::now() < deadline, "pid {pid} survived the drop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
