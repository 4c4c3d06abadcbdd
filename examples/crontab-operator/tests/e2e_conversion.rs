//! End to end against a real kube-apiserver (stackable-testenv): the generated CronTab CRD with
//! its conversion webhook pointing at the example's server (in process, generated certificates);
//! objects created as v1 and as v1beta1, read, listed, watched and updated in both versions, the
//! stored version checked, and a conversion failure surfacing to the client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::time::Duration;

use cluster::{Cluster, meta, retrying};
use crontab_operator::{v1, v1beta1};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{ListParams, PostParams, WatchEvent, WatchParams},
};

/// Retries while the API server cannot reach the webhook yet.
async fn get_retrying<K>(api: &Api<K>, name: &str) -> K
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    retrying(&format!("get {name}"), || api.get(name)).await
}

#[tokio::test]
async fn crontab_conversion_through_a_real_api_server() {
    let cluster = Cluster::start("crontab-e2e").await;
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let new: Api<v1::CronTab> = cluster.api();
    let old: Api<v1beta1::CronTab> = cluster.api();

    // Create as v1 (not the storage version: converted to v1beta1 on the way in).
    let created = v1::CronTab {
        metadata: meta("from-v1", &ns),
        spec: v1::CronTabSpec {
            schedule: "0 3 * * *".into(),
            image: "busybox:1".into(),
            replicas: Some(2),
            host: "db.example.org".into(),
            port: 5432,
            time_zone: Some("Europe/Berlin".into()),
        },
        status: None,
    };
    let post = PostParams::default();
    let created = retrying("create as v1", || new.create(&post, &created)).await;
    assert_eq!(created.spec.time_zone.as_deref(), Some("Europe/Berlin"));

    // Create as v1beta1 (the storage version).
    old.create(
        &PostParams::default(),
        &v1beta1::CronTab {
            metadata: meta("from-v1beta1", &ns),
            spec: v1beta1::CronTabSpec {
                cron_spec: "*/5 * * * *".into(),
                image: "busybox:2".into(),
                replicas: None,
                host_port: "cache:6379".into(),
            },
            status: None,
        },
    )
    .await
    .unwrap();

    // Read each back in both versions.
    let a_old = get_retrying(&old, "from-v1").await;
    assert_eq!(a_old.spec.host_port, "db.example.org:5432");
    assert_eq!(a_old.spec.cron_spec, "0 3 * * *");
    assert!(
        a_old
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("conversion.stackable.tech/stash.v1")),
        "the v1beta1 view carries the stash"
    );
    let a_new = get_retrying(&new, "from-v1").await;
    assert_eq!(a_new.spec.host, "db.example.org");
    assert_eq!(a_new.spec.port, 5432);
    assert_eq!(a_new.spec.time_zone.as_deref(), Some("Europe/Berlin"));
    assert!(a_new.metadata.annotations.is_none_or(|a| a.is_empty()));
    assert_eq!(a_new.metadata.uid, a_old.metadata.uid);
    assert_eq!(
        a_new.metadata.resource_version,
        a_old.metadata.resource_version
    );

    let b_new = get_retrying(&new, "from-v1beta1").await;
    assert_eq!((b_new.spec.host.as_str(), b_new.spec.port), ("cache", 6379));
    assert_eq!(b_new.spec.schedule, "*/5 * * * *");
    let b_old = old.get("from-v1beta1").await.unwrap();
    assert_eq!(b_old.spec.host_port, "cache:6379");

    // List and watch in the non-storage version.
    let listed = new.list(&ListParams::default()).await.unwrap();
    let mut names: Vec<_> = listed
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["from-v1", "from-v1beta1"]);
    assert!(listed.items.iter().all(|c| c.spec.port > 0));

    let mut watch = new
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), watch.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(crontab)))) => {
                seen.push((crontab.metadata.name.unwrap(), crontab.spec.port))
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("watch in v1 ended early: {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("from-v1".to_owned(), 5432),
            ("from-v1beta1".to_owned(), 6379)
        ]
    );

    // Update through the non-storage version; the storage view follows.
    let mut b = new.get("from-v1beta1").await.unwrap();
    b.spec.port = 6380;
    b.spec.time_zone = Some("UTC".into());
    new.replace("from-v1beta1", &PostParams::default(), &b)
        .await
        .unwrap();
    assert_eq!(
        old.get("from-v1beta1").await.unwrap().spec.host_port,
        "cache:6380"
    );
    assert_eq!(
        new.get("from-v1beta1")
            .await
            .unwrap()
            .spec
            .time_zone
            .as_deref(),
        Some("UTC")
    );

    // Edit through v1beta1: the edit wins, the stashed time zone survives.
    let mut a = old.get("from-v1").await.unwrap();
    a.spec.host_port = "db2.example.org:5433".into();
    old.replace("from-v1", &PostParams::default(), &a)
        .await
        .unwrap();
    let a_new = new.get("from-v1").await.unwrap();
    assert_eq!(
        (a_new.spec.host.as_str(), a_new.spec.port),
        ("db2.example.org", 5433)
    );
    assert_eq!(a_new.spec.time_zone.as_deref(), Some("Europe/Berlin"));

    // v1beta1 is deprecated: the API server warns every client that uses it.
    let request = http::Request::get(format!(
        "/apis/example.com/v1beta1/namespaces/{ns}/crontabs/from-v1"
    ))
    .body(kube::client::Body::empty())
    .unwrap();
    let response = client.send(request).await.unwrap();
    let warning = response
        .headers()
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        warning.contains(crontab_operator::crd::V1BETA1_DEPRECATION),
        "warning header: {warning:?}"
    );

    // The storage version is v1beta1.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let stored = crds.get("crontabs.example.com").await.unwrap();
    assert_eq!(
        stored.status.unwrap().stored_versions,
        Some(vec!["v1beta1".to_owned()])
    );

    // A conversion failure reaches the client as the API server's error with our message.
    old.create(
        &PostParams::default(),
        &v1beta1::CronTab {
            metadata: meta("broken", &ns),
            spec: v1beta1::CronTabSpec {
                cron_spec: "@daily".into(),
                image: "busybox".into(),
                replicas: None,
                host_port: "no-port-here".into(),
            },
            status: None,
        },
    )
    .await
    .unwrap();
    let error = new.get("broken").await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("spec.hostPort \\\"no-port-here\\\" is not of the form host:port")
            || message.contains("spec.hostPort \"no-port-here\" is not of the form host:port"),
        "{message}"
    );
    assert!(message.contains(&format!("{ns}/broken")), "{message}");
    assert!(
        new.list(&ListParams::default()).await.is_err(),
        "a list with a broken object fails"
    );

    cluster.stop().await;
}
