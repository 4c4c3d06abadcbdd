//! Storage-version migration through a real API server: 1,000 CronTabs stored as v1beta1; the
//! storage version switched to v1; the `crontab-migrate` binary killed (SIGKILL) half-way
//! (pruning is then refused; a LIST in v2 then converts objects stored in both versions), run
//! again to the end; `status.storedVersions` becomes `["v1"]`;
//! v1beta1 removed from the CRD; every object still reads.
//!
//! kube-apiserver runs without its watch cache here, so that the LIST in v2 reads the objects
//! from etcd, each in the version it is stored in (with the cache, each is converted when it
//! enters the v2 cache, and the LIST calls no webhook). What it shows (kube-apiserver 1.37):
//! each object of that LIST is converted in a review of its own, from v1 or from v1beta1; no
//! review holds objects of both versions (stackable-conversion's router handles that too:
//! `each_object_of_a_review_converts_from_its_own_version` in its `tests/graph_and_crd.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use cluster::{Cluster, Recording, meta};
use crontab_operator::{CRD_NAME, v1, v1beta1, v2};
use futures::StreamExt as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use stackable_conversion::migrate::{MigrateError, Migration};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const COUNT: usize = 1_000;

async fn stored_versions(crds: &Api<CustomResourceDefinition>) -> Vec<String> {
    crds.get(CRD_NAME)
        .await
        .unwrap()
        .status
        .and_then(|s| s.stored_versions)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_to_v1_then_drop_v1beta1() {
    let recording = Recording::new();
    let cluster = Cluster::start_serving_with_apiserver_flags(
        "migrate",
        recording.clone(),
        &["--watch-cache=false"],
    )
    .await;
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let v1beta1_api: Api<v1beta1::CronTab> = Api::namespaced(client.clone(), &ns);
    let created = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..COUNT)
        .map(|i| {
            let api = v1beta1_api.clone();
            let ns = ns.clone();
            async move {
                let object = v1beta1::CronTab {
                    metadata: meta(&format!("old-{i}"), &ns),
                    spec: v1beta1::CronTabSpec {
                        cron_spec: "*/5 * * * *".into(),
                        image: "busybox:1".into(),
                        replicas: None,
                        host_port: format!("cache-{i}:6379"),
                    },
                    status: None,
                };
                api.create(&PostParams::default(), &object)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(results.iter().all(Result::is_ok));
    println!(
        "{COUNT} CronTabs stored as v1beta1 in {:?}",
        created.elapsed()
    );

    // The storage version becomes v1.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd = crds.get(CRD_NAME).await.unwrap();
    for version in &mut crd.spec.versions {
        version.storage = version.name == "v1";
    }
    crd.metadata.managed_fields = None;
    crds.replace(CRD_NAME, &PostParams::default(), &crd)
        .await
        .unwrap();
    assert_eq!(stored_versions(&crds).await, ["v1beta1", "v1"]);

    // The migration binary, killed half-way: pruning is refused.
    let migrate = || {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_crontab-migrate"));
        command
            .args(["--page-size=100", "--rate=0"])
            .env("KUBECONFIG", cluster.env.kubeconfig_path())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command.spawn().unwrap()
    };
    let mut first = migrate();
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut progress = Vec::new();
    loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .expect("the migration did not get half-way")
            .unwrap()
            .expect("the migration ended before it was killed");
        progress.push(line.clone());
        let done: usize = line
            .strip_prefix("crontab-migrate: ")
            .and_then(|rest| rest.strip_suffix(" objects rewritten"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if done >= COUNT / 2 {
            break;
        }
    }
    first.kill().await.unwrap();
    println!("migration killed after: {progress:?}");
    let migration = Migration::new(client.clone(), CRD_NAME);
    match migration.prune().await {
        Err(error @ MigrateError::NotMigrated { .. }) => println!("after the kill: {error}"),
        other => panic!("pruning after an interrupted migration: {other:?}"),
    }
    assert_eq!(stored_versions(&crds).await, ["v1beta1", "v1"]);

    // Half the objects are stored as v1 now, the rest still as v1beta1. A LIST in the third
    // version, v2, read from etcd (no watch cache: see the module docs), converts each object
    // from the version it is stored in, and every one arrives whole.
    let v2_api: Api<v2::CronTab> = Api::namespaced(client.clone(), &ns);
    recording.take();
    let listed = v2_api.list(&ListParams::default()).await.unwrap();
    let reviews = recording.take();
    let objects: usize = reviews.iter().map(|review| review.objects).sum();
    let from: BTreeSet<&str> = reviews
        .iter()
        .flat_map(|review| review.from.iter().map(String::as_str))
        .collect();
    let largest = reviews
        .iter()
        .map(|review| review.objects)
        .max()
        .unwrap_or(0);
    println!(
        "LIST as v2 of objects stored in two versions: {} ConversionReview(s), the largest of \
         {largest} object(s), {objects} object(s) from {from:?}",
        reviews.len()
    );
    assert!(objects >= COUNT, "every object of the LIST is converted");
    assert_eq!(
        largest, 1,
        "kube-apiserver converts a LIST one object per review"
    );
    assert_eq!(
        from,
        BTreeSet::from(["example.com/v1", "example.com/v1beta1"]),
        "converted from both stored versions"
    );
    assert_eq!(listed.items.len(), COUNT);
    for object in &listed.items {
        let name = object.metadata.name.as_deref().unwrap();
        let i = name.strip_prefix("old-").unwrap();
        assert_eq!(
            (object.spec.host.as_str(), object.spec.port),
            (format!("cache-{i}").as_str(), 6379),
            "{name} as v2"
        );
        assert_eq!(object.spec.schedule, "*/5 * * * *", "{name} as v2");
    }

    // Run again: completes, prunes.
    let second = migrate().wait_with_output().await.unwrap();
    let output = String::from_utf8_lossy(&second.stderr);
    println!("second run:\n{output}");
    assert!(second.status.success(), "{output}");
    assert!(
        output.contains(&format!("every {CRD_NAME} stored as v1 ({COUNT} objects")),
        "{output}"
    );
    assert_eq!(stored_versions(&crds).await, ["v1"]);

    // v1beta1 can now be removed from the CRD, and every object still reads.
    let mut crd = crds.get(CRD_NAME).await.unwrap();
    crd.spec.versions.retain(|v| v.name == "v1");
    crd.metadata.managed_fields = None;
    crds.replace(CRD_NAME, &PostParams::default(), &crd)
        .await
        .unwrap();
    let v1_api: Api<v1::CronTab> = Api::namespaced(client.clone(), &ns);
    let mut read = 0;
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(250);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = v1_api.list(&params).await.unwrap();
        read += page.items.len();
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(read, COUNT);
    let one = v1_api.get("old-7").await.unwrap();
    assert_eq!((one.spec.host.as_str(), one.spec.port), ("cache-7", 6379));
}
