//! The stash through a real kube-apiserver (stackable-testenv): objects stored as v1beta1 carry
//! no stash when nothing is lost and only the lost field otherwise; status updates through the
//! non-storage version (v1) and the storage version (v1beta1) keep the spec's stashed field and
//! never bring back an old status.
//!
//! The status subresource (`/status`) keeps the stored object and takes only `status` from the
//! request (`statusStrategy.PrepareForUpdate` in the apiextensions-apiserver): through v1, the
//! stored v1beta1 object is converted to v1 (its stash put back), the new status set, and the
//! result converted to v1beta1 again (a fresh stash).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::collections::BTreeMap;

use cluster::{Cluster, meta, retrying};
use crontab_operator::{v1, v1beta1};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

const STASH_V1: &str = "conversion.stackable.tech/stash.v1";

/// The annotations of the object as stored (v1beta1 is the storage version: no conversion).
async fn stored_annotations(old: &Api<v1beta1::CronTab>, name: &str) -> BTreeMap<String, String> {
    old.get(name)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default()
}

fn spec(time_zone: Option<&str>) -> v1::CronTabSpec {
    v1::CronTabSpec {
        schedule: "0 3 * * *".into(),
        image: "busybox:1".into(),
        replicas: Some(1),
        host: "db.example.org".into(),
        port: 5432,
        time_zone: time_zone.map(str::to_owned),
    }
}

#[tokio::test]
async fn the_stash_holds_only_what_is_lost_and_no_stale_status() {
    let cluster = Cluster::start("crontab-stash").await;
    let ns = cluster.namespace.clone();
    let new: Api<v1::CronTab> = cluster.api();
    let old: Api<v1beta1::CronTab> = cluster.api();

    // Lossless: created as v1 without a time zone, and as v1beta1.
    let lossless = v1::CronTab {
        metadata: meta("lossless", &ns),
        spec: spec(None),
        status: None,
    };
    let post = PostParams::default();
    retrying("create as v1", || new.create(&post, &lossless)).await;
    old.create(
        &PostParams::default(),
        &v1beta1::CronTab {
            metadata: meta("stored-as-v1beta1", &ns),
            spec: v1beta1::CronTabSpec {
                cron_spec: "@daily".into(),
                image: "busybox:2".into(),
                replicas: None,
                host_port: "cache:6379".into(),
            },
            status: None,
        },
    )
    .await
    .unwrap();
    // A round trip through v1 (read, replace as v1: converted back into storage).
    let read = new.get("stored-as-v1beta1").await.unwrap();
    new.replace("stored-as-v1beta1", &PostParams::default(), &read)
        .await
        .unwrap();
    for name in ["lossless", "stored-as-v1beta1"] {
        assert!(
            stored_annotations(&old, name).await.is_empty(),
            "{name} carries annotations in storage"
        );
        assert!(
            new.get(name)
                .await
                .unwrap()
                .metadata
                .annotations
                .is_none_or(|a| a.is_empty())
        );
    }

    // Lossy: the time zone, and only it, is stashed in storage.
    let lossy = v1::CronTab {
        metadata: meta("lossy", &ns),
        spec: spec(Some("Europe/Berlin")),
        status: None,
    };
    new.create(&PostParams::default(), &lossy).await.unwrap();
    assert_eq!(
        stored_annotations(&old, "lossy").await,
        BTreeMap::from([(
            STASH_V1.to_owned(),
            r#"{"lost":{"spec":{"timeZone":"Europe/Berlin"}}}"#.to_owned()
        )])
    );

    // A status update through v1, the non-storage version.
    new.patch_status(
        "lossy",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"activeJobs": 5, "lastScheduleTime": "2026-01-01T00:00:00Z"}}),
        ),
    )
    .await
    .unwrap();
    let after = new.get("lossy").await.unwrap();
    assert_eq!(after.spec.time_zone.as_deref(), Some("Europe/Berlin"));
    let status = after.status.unwrap();
    assert_eq!(status.active_jobs, Some(5));
    let stored = old.get("lossy").await.unwrap();
    assert_eq!(stored.status.unwrap().active, Some(5));
    assert_eq!(
        stored.metadata.annotations.unwrap(),
        BTreeMap::from([(
            STASH_V1.to_owned(),
            r#"{"lost":{"spec":{"timeZone":"Europe/Berlin"}}}"#.to_owned()
        )]),
        "the stash still holds only the lost field"
    );

    // A status update through v1beta1, the storage version (no conversion on the way in; the
    // stored stash is kept as it was): v1 shows the new status, not the old one.
    old.patch_status(
        "lossy",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"active": 7}})),
    )
    .await
    .unwrap();
    let after = new.get("lossy").await.unwrap();
    assert_eq!(after.status.unwrap().active_jobs, Some(7));
    assert_eq!(after.spec.time_zone.as_deref(), Some("Europe/Berlin"));

    // A status replace through v1 that drops a field: it stays dropped.
    let mut current = new.get("lossy").await.unwrap();
    current.status = Some(v1::CronTabStatus {
        last_schedule_time: None,
        active_jobs: Some(1),
    });
    new.replace_status("lossy", &PostParams::default(), &current)
        .await
        .unwrap();
    let after = new.get("lossy").await.unwrap();
    let status = after.status.unwrap();
    assert_eq!(
        (status.active_jobs, status.last_schedule_time),
        (Some(1), None)
    );
    assert_eq!(after.spec.time_zone.as_deref(), Some("Europe/Berlin"));

    cluster.stop().await;
}
