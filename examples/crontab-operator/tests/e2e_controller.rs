//! The operator as an operator, through a real API server: two replica processes (as the deploy
//! ServiceAccount, behind the round-robin forwarder) serve the conversion webhook; the elected
//! leader runs the CronTab controller, which watches and writes v1 while v1beta1 is stored, so
//! every list, watch event and status write goes through the webhook.
//!
//! - CronTabs created as v1beta1 and as v1 get their ConfigMap (owned by the CronTab: an owner
//!   reference with `controller: true`, checked directly since nothing garbage-collects here)
//!   and their status, written through v1, stored as v1beta1, read back in both versions;
//! - the leader is killed: the other replica reconciles within the lease duration, and reads
//!   through the webhook never fail during the handover;
//! - many CronTabs (200 in CI, 1,000 with `--ignored`): the controller's initial list (every
//!   object converted by the webhook) completes and every one gets its ConfigMap; times printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{ENDPOINT_REMOVAL_DELAY, Harness, OBJECTS, Readers};
use crontab_operator::{controller::config_map_name, v1, v1beta1};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::ConfigMap};
use kube::{
    Api, ResourceExt,
    api::{ObjectMeta, PostParams},
};

const LEASE: &str = "crontab-operator-controller";

async fn wait_config_map(api: &Api<ConfigMap>, crontab: &str, within: Duration) -> ConfigMap {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(config_map)) = api.get_opt(&config_map_name(crontab)).await {
            return config_map;
        }
        assert!(
            Instant::now() < deadline,
            "no ConfigMap for CronTab {crontab} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reconciles_and_hands_over_without_failed_calls() {
    let mut h = Harness::start(2, &["--lease-duration=6s"]).await;
    h.wait_all_ready(Duration::from_secs(60)).await;
    let ns = h.namespace.clone();
    let config_maps: Api<ConfigMap> = Api::namespaced(h.client.clone(), &ns);
    let v1_api: Api<v1::CronTab> = Api::namespaced(h.client.clone(), &ns);
    let v1beta1_api: Api<v1beta1::CronTab> = Api::namespaced(h.client.clone(), &ns);
    let readers = Readers::start(&h.client, &ns, 2);

    // The CronTabs created as v1beta1 before the operator started, and one created as v1 now.
    let modern = v1::CronTab {
        metadata: ObjectMeta {
            name: Some("modern".to_owned()),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        spec: v1::CronTabSpec {
            schedule: "0 3 * * *".to_owned(),
            image: "busybox:1".to_owned(),
            replicas: Some(2),
            host: "backup.example.com".to_owned(),
            port: 9000,
            time_zone: Some("Europe/Berlin".to_owned()),
        },
        status: None,
    };
    v1_api
        .create(&PostParams::default(), &modern)
        .await
        .unwrap();
    for name in (0..OBJECTS)
        .map(|i| format!("crontab-{i}"))
        .chain(["modern".to_owned()])
    {
        let config_map = wait_config_map(&config_maps, &name, Duration::from_secs(60)).await;
        let crontab = v1_api.get(&name).await.unwrap();
        let owner = &config_map.owner_references()[0];
        assert_eq!(owner.uid, crontab.uid().unwrap());
        assert_eq!(owner.kind, "CronTab");
        assert_eq!(owner.controller, Some(true));
        let data = config_map.data.unwrap();
        assert_eq!(
            data["endpoint"],
            format!("{}:{}", crontab.spec.host, crontab.spec.port)
        );
    }
    let config_map = config_maps.get(&config_map_name("modern")).await.unwrap();
    assert_eq!(config_map.data.unwrap()["timeZone"], "Europe/Berlin");

    // Status written through v1 (activeJobs), stored as v1beta1 (active), read in both.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let as_v1 = v1_api.get("modern").await.unwrap();
        let as_v1beta1 = v1beta1_api.get("modern").await.unwrap();
        let v1_status = as_v1.status.clone().unwrap_or_default();
        let v1beta1_status = as_v1beta1.status.clone().unwrap_or_default();
        if v1_status.active_jobs == Some(2) && v1beta1_status.active == Some(2) {
            assert!(v1_status.last_schedule_time.is_some());
            assert_eq!(
                v1_status.last_schedule_time, v1beta1_status.last_schedule_time,
                "lastScheduleTime reads the same in both versions"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status not written: v1 {v1_status:?}, v1beta1 {v1beta1_status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kill the leader (SIGKILL: it cannot release the Lease).
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &ns);
    let holder = leases
        .get(LEASE)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let leader = h
        .replicas
        .running()
        .into_iter()
        .find(|id| {
            h.replicas
                .get(*id)
                .and_then(|r| r.pid())
                .is_some_and(|pid| holder == format!("crontab-operator-{pid}"))
        })
        .unwrap_or_else(|| h.fail(&format!("no replica holds the Lease ({holder})")));
    let step = readers.reads.snapshot();
    let killed = Instant::now();
    h.replicas.kill(leader).await.unwrap();
    let after_handover = v1::CronTab {
        metadata: ObjectMeta {
            name: Some("after-handover".to_owned()),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        ..modern.clone()
    };
    // The create is converted to the storage version by the webhook: right after the SIGKILL,
    // that call may be on a connection the kill cut (a 500 naming the reset), which a client
    // retries; anything else fails the test.
    for attempt in 1.. {
        match v1_api.create(&PostParams::default(), &after_handover).await {
            Ok(_) => break,
            Err(error)
                if attempt < 3
                    && ["EOF", "connection reset by peer", "broken pipe"]
                        .iter()
                        .any(|symptom| error.to_string().contains(symptom)) =>
            {
                println!("create cut by the kill (attempt {attempt}): {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("creating a CronTab after the kill: {error}"),
        }
    }
    wait_config_map(&config_maps, "after-handover", Duration::from_secs(30)).await;
    let took = killed.elapsed();
    let new_holder = leases
        .get(LEASE)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let (ok, failed) = readers.reads.since(step);
    println!(
        "leader {holder} killed: {new_holder} reconciled a new CronTab {took:?} later (lease 6 s); {ok} reads through the webhook meanwhile, {failed} failed"
    );
    assert_ne!(new_holder, holder);
    assert!(took < Duration::from_secs(15), "handover took {took:?}");
    let reads = readers.stop().await;
    // A SIGKILL cuts the connections the API server holds to the killed replica: a conversion
    // call on one of them fails with `EOF` or a reset (Go does not retry a POST), once per such
    // connection, as it would when a node dies; and until its endpoint leaves the forwarder
    // (`ENDPOINT_REMOVAL_DELAY`; in a cluster, until the endpoints controller learns of the
    // death) a new connection sent to it is reset too. Those, right after the kill, are the only
    // failures allowed; anything else, or any failure later (a refused review, an untrusted
    // certificate, a replica that was not ready) fails the test. CI saw 1 such read of 303, and 3
    // of 379 (the bound was once "at most two", which that run broke without a fault of ours).
    let errors = reads.errors_at();
    let window = killed + ENDPOINT_REMOVAL_DELAY + Duration::from_secs(2);
    let cut = |(at, error): &(Instant, String)| {
        *at <= window
            && ["EOF", "connection reset by peer", "broken pipe"]
                .iter()
                .any(|symptom| error.contains(symptom))
    };
    assert!(
        failed <= 10 && errors.iter().all(cut),
        "failed reads beyond the calls the SIGKILL cut ({failed} in all; each with its time \
         after the kill): {:?}",
        errors
            .iter()
            .map(|(at, error)| (at.saturating_duration_since(killed), error))
            .collect::<Vec<_>>()
    );
    assert!(ok > 20, "too few reads: {ok}");
}

/// 200 CronTabs in CI; the 1,000 of the soak run: `cargo test -p crontab-operator --test
/// e2e_controller -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_crontabs_are_listed_through_the_webhook_and_reconciled() {
    many_crontabs(200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 1,000 CronTabs, about 2-4 minutes; run with --ignored"]
async fn a_thousand_crontabs_are_listed_through_the_webhook_and_reconciled() {
    many_crontabs(1_000).await;
}

async fn many_crontabs(count: usize) {
    let started = Instant::now();
    let mut h = Harness::start_with(1, count, &["--lease-duration=6s"]).await;
    println!(
        "created {count} CronTabs (as v1beta1) and started the operator in {:?}",
        started.elapsed()
    );
    let replica_started = Instant::now();
    let health = h.replicas.all()[0].info().health;
    // The controller's initial list: 1,000 objects, each converted by the webhook.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = http_get(health, "/metrics").await.unwrap_or_default();
        if metrics
            .lines()
            .any(|line| line.trim() == "webhook_crontab_controller_synced 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the controller never synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "the controller's initial list of {count} CronTabs as v1 (converted by the webhook) completed {:?} after the replica started",
        replica_started.elapsed()
    );
    let ns = h.namespace.clone();
    let config_maps: Api<ConfigMap> = Api::namespaced(h.client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let rendered = config_maps
            .list_metadata(&Default::default())
            .await
            .unwrap()
            .items
            .len();
        if rendered >= count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {rendered} ConfigMaps after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "every CronTab reconciled (ConfigMap applied, status written through v1) {:?} after the replica started",
        replica_started.elapsed()
    );
    h.wait_all_ready(Duration::from_secs(10)).await;
}

/// `GET path` on a plain-HTTP `addr`: the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    Some(body)
}
