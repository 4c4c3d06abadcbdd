//! End to end against a real kube-apiserver (stackable-testenv): the generated CronTab CRD with
//! its conversion webhook pointing at the example's server (in process, generated certificates);
//! objects created as v1 and as v1beta1, read, listed, watched and updated in both versions, the
//! stored version checked; the third version v2 (through the hub v1): objects created as v1beta1
//! read as v2 and created as v2 read as v1beta1 and v1, the renamed status field and the
//! `concurrencyPolicy` enum checked; and a conversion failure surfacing to the client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::time::Duration;

use cluster::{Cluster, meta, retrying};
use crontab_operator::{v1, v1beta1, v2};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
};
use serde_json::json;

const STASH_V2: &str = "conversion.stackable.tech/stash.v2";

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

    // The storage version is v1beta1; all three versions are served.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let stored = crds.get("crontabs.example.com").await.unwrap();
    let served: Vec<_> = stored
        .spec
        .versions
        .iter()
        .map(|v| (v.name.as_str(), v.served, v.storage))
        .collect();
    assert_eq!(
        served,
        [
            ("v1beta1", true, true),
            ("v1", true, false),
            ("v2", true, false)
        ]
    );
    assert_eq!(
        stored.status.unwrap().stored_versions,
        Some(vec!["v1beta1".to_owned()])
    );

    // The third version, v2: every conversion goes through v1 (the hub), twice to or from the
    // storage version.
    let newest: Api<v2::CronTab> = cluster.api();
    // Created as v1beta1 (and edited through v1), read as v2: split, renamed, the enum defaulted.
    let b_v2 = newest.get("from-v1beta1").await.unwrap();
    assert_eq!((b_v2.spec.host.as_str(), b_v2.spec.port), ("cache", 6380));
    assert_eq!(b_v2.spec.schedule, "*/5 * * * *");
    assert_eq!(b_v2.spec.concurrency_policy, v2::ConcurrencyPolicy::Allow);
    // The time zone set through v1 is in the stash of v1 and comes back only into v1.
    assert_eq!(b_v2.spec.time_zone, None);

    // Created as v2, with a value of the enum only v2 holds.
    let from_v2 = v2::CronTab {
        metadata: meta("from-v2", &ns),
        spec: v2::CronTabSpec {
            schedule: "30 1 * * *".into(),
            image: "busybox:4".into(),
            replicas: Some(3),
            host: "queue.example.org".into(),
            port: 5672,
            time_zone: Some("Asia/Tokyo".into()),
            concurrency_policy: v2::ConcurrencyPolicy::Forbid,
        },
        status: None,
    };
    let created = newest
        .create(&PostParams::default(), &from_v2)
        .await
        .unwrap();
    assert_eq!(created.spec, from_v2.spec);
    // Status written through v2 (the renamed field of the nested status).
    newest
        .patch_status(
            "from-v2",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"runningJobs": 2, "lastScheduleTime": "2025-06-01T01:30:00Z"}}),
            ),
        )
        .await
        .unwrap();

    // Read back as v1beta1 (the storage version): joined, renamed, the rest in the stash of v2.
    let c_old = old.get("from-v2").await.unwrap();
    assert_eq!(c_old.spec.host_port, "queue.example.org:5672");
    assert_eq!(c_old.spec.cron_spec, "30 1 * * *");
    assert_eq!(c_old.status.as_ref().and_then(|s| s.active), Some(2));
    let stash: serde_json::Value =
        serde_json::from_str(&c_old.metadata.annotations.as_ref().unwrap()[STASH_V2]).unwrap();
    assert_eq!(
        stash,
        json!({"lost": {"spec": {"timeZone": "Asia/Tokyo", "concurrencyPolicy": "Forbid"}}})
    );
    // Read back as v1: host and port as they are, the status field under its v1 name. The stash
    // belongs to v2 and is put back only on the way into v2, so this view has no time zone
    // although v1 could hold one (the controller, which watches v1, does not see it).
    let c_new = new.get("from-v2").await.unwrap();
    assert_eq!(
        (c_new.spec.host.as_str(), c_new.spec.port),
        ("queue.example.org", 5672)
    );
    assert_eq!(c_new.spec.schedule, "30 1 * * *");
    assert_eq!(c_new.spec.time_zone, None);
    assert!(
        c_new
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(STASH_V2)),
        "the v1 view carries the v2 stash as a plain annotation"
    );
    let status = c_new.status.unwrap();
    assert_eq!(status.active_jobs, Some(2));
    assert_eq!(
        status.last_schedule_time.as_deref(),
        Some("2025-06-01T01:30:00Z")
    );
    // And as v2 again: nothing lost.
    let c_v2 = newest.get("from-v2").await.unwrap();
    assert_eq!(c_v2.spec, from_v2.spec);
    assert_eq!(c_v2.status.and_then(|s| s.running_jobs), Some(2));
    assert_eq!(c_v2.metadata.uid, c_old.metadata.uid);

    // An edit through v1beta1 wins; the v2-only enum value survives it.
    let mut c = old.get("from-v2").await.unwrap();
    c.spec.host_port = "queue2.example.org:5673".into();
    old.replace("from-v2", &PostParams::default(), &c)
        .await
        .unwrap();
    let c_v2 = newest.get("from-v2").await.unwrap();
    assert_eq!(
        (c_v2.spec.host.as_str(), c_v2.spec.port),
        ("queue2.example.org", 5673)
    );
    assert_eq!(c_v2.spec.concurrency_policy, v2::ConcurrencyPolicy::Forbid);
    assert_eq!(c_v2.spec.time_zone.as_deref(), Some("Asia/Tokyo"));

    // An edit through v2 of the enum reaches storage (in the stash) and comes back.
    let mut c = c_v2;
    c.spec.concurrency_policy = v2::ConcurrencyPolicy::Replace;
    newest
        .replace("from-v2", &PostParams::default(), &c)
        .await
        .unwrap();
    assert_eq!(
        newest.get("from-v2").await.unwrap().spec.concurrency_policy,
        v2::ConcurrencyPolicy::Replace
    );

    // Listed as v2: every object, converted.
    let mut listed: Vec<_> = newest
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| {
            (
                c.metadata.name.unwrap(),
                c.spec.port,
                c.spec.concurrency_policy,
            )
        })
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        listed,
        [
            ("from-v1".to_owned(), 5433, v2::ConcurrencyPolicy::Allow),
            (
                "from-v1beta1".to_owned(),
                6380,
                v2::ConcurrencyPolicy::Allow
            ),
            ("from-v2".to_owned(), 5673, v2::ConcurrencyPolicy::Replace),
        ]
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
