//! The CronTab chain v1beta1 - v1 - v2 declared once (`common/crontab.rs`): the generated types,
//! conversions, converter and CRD agree with the same three versions written by hand
//! (`common/crontab_by_hand.rs`), round trips through the router are lossless for every pair
//! of versions (proptest, `check_round_trip`), and failures name the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The versions written by hand.
#[path = "common/crontab_by_hand.rs"]
pub mod by_hand;
/// The versions declared once.
#[path = "common/crontab.rs"]
pub mod declared;

use declared::crontab::{self, CronTabVersions, v1, v1beta1, v2};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::{option, prelude::*};
use serde_json::{Value, json};
use stackable_conversion::{ConversionRouter, WebhookTarget, testing::check_round_trip};

const CASES: u32 = 128;

fn target() -> WebhookTarget {
    WebhookTarget::service("crontab-operator", "ops")
        .path("/convert")
        .port(443)
}

fn router() -> ConversionRouter {
    CronTabVersions::router().expect("the declared versions form a chain")
}

fn by_hand_router() -> ConversionRouter {
    ConversionRouter::from(by_hand::crontab::converter().expect("hand-written chain"))
}

fn meta() -> impl Strategy<Value = ObjectMeta> {
    ("[a-z][a-z0-9-]{0,10}", option::of("[a-z ]{0,6}")).prop_map(|(name, note)| ObjectMeta {
        name: Some(name),
        namespace: Some("jobs".into()),
        annotations: note.map(|n| [("example.com/note".to_owned(), n)].into()),
        ..ObjectMeta::default()
    })
}

fn status<S: std::fmt::Debug>(
    make: impl Fn(Option<String>, Option<i32>) -> S + Clone,
) -> impl Strategy<Value = Option<S>> {
    option::of(
        (
            option::of("2024-0[1-9]-1[0-9]T0[0-9]:00:00Z"),
            option::of(0..50i32),
        )
            .prop_map(move |(time, jobs)| make(time, jobs)),
    )
}

fn v1beta1_crontab() -> impl Strategy<Value = v1beta1::CronTab> {
    (
        meta(),
        "[0-9*/ ]{1,12}",
        "[a-z:0-9./]{1,16}",
        option::of(0..10i32),
        "[a-z.:]{0,10}",
        "[0-9]{1,5}",
        status(|last_schedule_time, active| v1beta1::CronTabStatus {
            last_schedule_time,
            active,
        }),
    )
        .prop_filter_map(
            "a port number",
            |(metadata, cron_spec, image, replicas, host, port, status)| {
                port.parse::<u16>().ok()?;
                Some(v1beta1::CronTab {
                    metadata,
                    spec: v1beta1::CronTabSpec {
                        cron_spec,
                        image,
                        replicas,
                        host_port: format!("{host}:{port}"),
                    },
                    status,
                })
            },
        )
}

fn v1_crontab() -> impl Strategy<Value = v1::CronTab> {
    (
        meta(),
        "[0-9*/ ]{1,12}",
        "[a-z:0-9./]{1,16}",
        option::of(0..10i32),
        "[a-z.:]{0,10}",
        any::<u16>(),
        option::of("[A-Z][a-z]{2,6}/[A-Z][a-z]{2,6}"),
        status(|last_schedule_time, active_jobs| v1::CronTabStatus {
            last_schedule_time,
            active_jobs,
        }),
    )
        .prop_map(
            |(metadata, schedule, image, replicas, host, port, time_zone, status)| v1::CronTab {
                metadata,
                spec: v1::CronTabSpec {
                    schedule,
                    image,
                    replicas,
                    host,
                    port,
                    time_zone,
                },
                status,
            },
        )
}

fn policy() -> impl Strategy<Value = v2::ConcurrencyPolicy> {
    prop_oneof![
        Just(v2::ConcurrencyPolicy::Allow),
        Just(v2::ConcurrencyPolicy::Forbid),
        Just(v2::ConcurrencyPolicy::Replace),
    ]
}

fn v2_crontab() -> impl Strategy<Value = v2::CronTab> {
    (
        v1_crontab(),
        policy(),
        status(|last_schedule_time, running_jobs| v2::CronTabStatus {
            last_schedule_time,
            running_jobs,
        }),
    )
        .prop_map(|(v1, concurrency_policy, status)| v2::CronTab {
            metadata: v1.metadata,
            spec: v2::CronTabSpec {
                schedule: v1.spec.schedule,
                image: v1.spec.image,
                replicas: v1.spec.replicas,
                host: v1.spec.host,
                port: v1.spec.port,
                time_zone: v1.spec.time_zone,
                concurrency_policy,
            },
            status,
        })
}

#[test]
fn round_trips_between_every_two_versions_are_lossless() {
    let router = router();
    check_round_trip::<v1beta1::CronTab, v1::CronTab>(&router, v1beta1_crontab(), CASES);
    check_round_trip::<v1::CronTab, v1beta1::CronTab>(&router, v1_crontab(), CASES);
    check_round_trip::<v1::CronTab, v2::CronTab>(&router, v1_crontab(), CASES);
    check_round_trip::<v2::CronTab, v1::CronTab>(&router, v2_crontab(), CASES);
    check_round_trip::<v1beta1::CronTab, v2::CronTab>(&router, v1beta1_crontab(), CASES);
    check_round_trip::<v2::CronTab, v1beta1::CronTab>(&router, v2_crontab(), CASES);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every object, converted to every version, comes out of the generated converter exactly
    /// as it comes out of the hand-written one.
    #[test]
    fn generated_conversions_match_the_hand_written_ones(
        a in v1beta1_crontab(), b in v1_crontab(), c in v2_crontab()
    ) {
        let (generated, written) = (router(), by_hand_router());
        let objects = vec![
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(b).unwrap(),
            serde_json::to_value(c).unwrap(),
        ];
        for version in CronTabVersions::VERSIONS {
            let desired = format!("example.com/{version}");
            let ours = generated.convert_objects(objects.clone(), &desired).unwrap();
            let theirs = written.convert_objects(objects.clone(), &desired).unwrap();
            prop_assert_eq!(ours, theirs);
        }
    }
}

#[test]
fn the_crd_is_the_hand_written_one() {
    let generated = CronTabVersions::crd(target()).unwrap();
    let written = by_hand::crontab::crd(target()).unwrap();
    assert_eq!(
        serde_json::to_value(&generated).unwrap(),
        serde_json::to_value(&written).unwrap()
    );
}

#[test]
fn the_crd_carries_the_version_flags() {
    let crd = CronTabVersions::crd(target()).unwrap();
    let versions: Vec<_> = crd
        .spec
        .versions
        .iter()
        .map(|v| {
            (
                v.name.as_str(),
                v.served,
                v.storage,
                v.deprecated,
                v.deprecation_warning.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            (
                "v1beta1",
                true,
                true,
                Some(true),
                Some("example.com/v1beta1 CronTab is deprecated; use example.com/v2")
            ),
            ("v1", true, false, None, None),
            ("v2", true, false, None, None),
        ]
    );
    assert_eq!(CronTabVersions::VERSIONS, ["v1beta1", "v1", "v2"]);
    assert_eq!(CronTabVersions::STORAGE_VERSION, "v1beta1");
    // The #[kube] arguments of the declaration reach every version.
    assert_eq!(crd.spec.names.short_names, Some(vec!["ct".to_owned()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    assert!(
        crd.spec
            .versions
            .iter()
            .all(|v| v.subresources.as_ref().is_some_and(|s| s.status.is_some()))
    );
    // So do the flags, on each version's own CRD.
    let single = <v1beta1::CronTab as kube::CustomResourceExt>::crd();
    assert_eq!(single.spec.versions[0].deprecated, Some(true));
    assert!(single.spec.versions[0].storage);
    assert!(
        !<v2::CronTab as kube::CustomResourceExt>::crd()
            .spec
            .versions[0]
            .storage
    );
}

#[test]
fn the_converter_chains_adjacent_versions() {
    let converter = CronTabVersions::converter().unwrap();
    assert_eq!(converter.versions(), ["v1beta1", "v1", "v2"]);
    assert_eq!(converter.hub(), None);
    assert_eq!(converter.path("v1beta1", "v2").unwrap(), ["v1", "v2"]);
}

fn object(version: &str, spec: Value) -> Value {
    json!({
        "apiVersion": format!("example.com/{version}"),
        "kind": "CronTab",
        "metadata": {"name": "nightly", "namespace": "jobs", "uid": "1"},
        "spec": spec,
    })
}

#[test]
fn upgrades_rename_split_and_fill() {
    let out = router()
        .convert_objects(
            vec![object(
                "v1beta1",
                json!({"cronSpec": "0 3 * * *", "image": "busybox", "hostPort": "db:5432"}),
            )],
            "example.com/v2",
        )
        .unwrap();
    assert_eq!(
        out[0]["spec"],
        json!({
            "schedule": "0 3 * * *", "image": "busybox", "host": "db", "port": 5432,
            "concurrencyPolicy": "Allow"
        })
    );
}

#[test]
fn a_downgrade_keeps_what_the_older_version_cannot_hold_in_the_stash() {
    let router = router();
    let v2_object = object(
        "v2",
        json!({
            "schedule": "0 3 * * *", "image": "busybox", "host": "db", "port": 5432,
            "timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid"
        }),
    );
    let old = router
        .convert_objects(vec![v2_object.clone()], "example.com/v1beta1")
        .unwrap();
    assert_eq!(old[0]["spec"]["hostPort"], "db:5432");
    // Only what v1beta1 cannot hold, in one stash: the one of the version the object came from.
    let annotations = old[0]["metadata"]["annotations"].as_object().unwrap();
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        ["conversion.stackable.tech/stash.v2"]
    );
    let stash: Value = serde_json::from_str(
        annotations["conversion.stackable.tech/stash.v2"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        stash,
        json!({"lost": {"spec": {"timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid"}}})
    );
    let back = router.convert_objects(old, "example.com/v2").unwrap();
    assert_eq!(back[0], v2_object);

    // Nothing to lose, nothing stashed.
    let plain = object(
        "v2",
        json!({"schedule": "x", "image": "i", "host": "h", "port": 1, "concurrencyPolicy": "Allow"}),
    );
    let old = router
        .convert_objects(vec![plain], "example.com/v1beta1")
        .unwrap();
    assert!(old[0]["metadata"].get("annotations").is_none(), "{old:?}");
}

#[test]
fn a_failed_upgrade_names_the_field() {
    let error = router()
        .convert_objects(
            vec![object(
                "v1beta1",
                json!({"cronSpec": "x", "image": "i", "hostPort": "db"}),
            )],
            "example.com/v1",
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("spec: hostPort \"db\" is not of the form host:port"),
        "{error}"
    );
}

#[test]
fn generated_conversions_are_from_where_they_cannot_fail() {
    fn infallible<A, B: From<A>>() {}
    infallible::<v1::CronTab, v1beta1::CronTab>();
    infallible::<v1::CronTab, v2::CronTab>();
    infallible::<v2::CronTab, v1::CronTab>();
    infallible::<v2::CronTabStatus, v1::CronTabStatus>();
    infallible::<v1::CronTabStatus, v1beta1::CronTabStatus>();
    let upgraded: Result<v1::CronTabSpec, _> = v1::CronTabSpec::try_from(v1beta1::CronTabSpec {
        cron_spec: "x".into(),
        image: "i".into(),
        replicas: None,
        host_port: "h:80".into(),
    });
    assert_eq!(upgraded.unwrap().port, 80);
    assert_eq!(
        crontab::split_host_port("::1:443").unwrap(),
        ("::1".to_owned(), 443)
    );
}
