//! Unit tests of the CronTab conversions through the router: every path (v1beta1, v1, v2),
//! metadata preservation, failures, stash round trips and property tests. Every response is checked against the API
//! server's rules with `check_response` (through `convert_checked`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crontab_operator::{router, v1, v1beta1, v2};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::conversion::{ConversionRequest, ConversionReview};
use proptest::prelude::*;
use serde_json::{Value, json};
use stackable_conversion::{
    ConversionRouter, check_response, check_response_strict,
    testing::{check_round_trip, convert_checked, with_server_metadata},
};

const V1: &str = "example.com/v1";
const V1BETA1: &str = "example.com/v1beta1";
const V2: &str = "example.com/v2";
const STASH_V1: &str = "conversion.stackable.tech/stash.v1";
const STASH_V2: &str = "conversion.stackable.tech/stash.v2";

fn metadata(name: &str) -> Value {
    json!({
        "name": name,
        "namespace": "team-a",
        "uid": format!("uid-{name}"),
        "resourceVersion": "4711",
        "generation": 7,
        "creationTimestamp": "2025-05-05T05:05:05Z",
        "labels": {"app": "cron"},
        "annotations": {"note": "keep me"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "o-1"}],
        "finalizers": ["example.com/cleanup"],
        "managedFields": [{
            "apiVersion": "example.com/v1beta1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:hostPort": {}}}, "manager": "kubectl-client-side-apply",
            "operation": "Update", "time": "2025-05-05T05:05:05Z"
        }],
        "aFieldFromTheFuture": {"x": [1, 2.5, "3", null, {"y": true}]}
    })
}

fn beta(name: &str) -> Value {
    json!({
        "apiVersion": V1BETA1, "kind": "CronTab", "metadata": metadata(name),
        "spec": {"cronSpec": "*/5 * * * *", "image": "busybox:1", "replicas": 2, "hostPort": "db.example.org:5432"},
        "status": {"lastScheduleTime": "2025-05-05T05:10:00Z", "active": 1}
    })
}

fn v1_object(name: &str) -> Value {
    json!({
        "apiVersion": V1, "kind": "CronTab", "metadata": metadata(name),
        "spec": {"schedule": "0 3 * * *", "image": "busybox:2", "host": "::1", "port": 8080, "timeZone": "Europe/Berlin"},
        "status": {"activeJobs": 3}
    })
}

fn v2_object(name: &str) -> Value {
    json!({
        "apiVersion": V2, "kind": "CronTab", "metadata": metadata(name),
        "spec": {
            "schedule": "0 4 * * *", "image": "busybox:3", "replicas": 1, "host": "db", "port": 5432,
            "timeZone": "UTC", "concurrencyPolicy": "Forbid"
        },
        "status": {"lastScheduleTime": "2025-05-05T04:00:00Z", "runningJobs": 4}
    })
}

fn router_() -> ConversionRouter {
    router().expect("the CronTab versions are consistent")
}

fn convert_ok(objects: Vec<Value>, desired: &str) -> Vec<Value> {
    let response = convert_checked(&router_(), objects, desired);
    assert!(
        response.result.is_success(),
        "conversion failed: {}",
        response.result.message
    );
    response.converted_objects
}

fn convert_err(objects: Vec<Value>, desired: &str) -> String {
    let response = convert_checked(&router_(), objects, desired);
    assert!(
        response.result.is_failure(),
        "conversion unexpectedly succeeded"
    );
    assert!(response.converted_objects.is_empty());
    response.result.message
}

#[test]
fn v1beta1_to_v1_maps_every_field() {
    let out = convert_ok(vec![beta("a")], V1);
    assert_eq!(
        out[0],
        json!({
            "apiVersion": V1, "kind": "CronTab", "metadata": metadata("a"),
            "spec": {"schedule": "*/5 * * * *", "image": "busybox:1", "replicas": 2, "host": "db.example.org", "port": 5432},
            "status": {"lastScheduleTime": "2025-05-05T05:10:00Z", "activeJobs": 1}
        })
    );
}

#[test]
fn v1_to_v1beta1_maps_every_field_and_stashes_the_time_zone() {
    let out = convert_ok(vec![v1_object("b")], V1BETA1);
    let object = &out[0];
    assert_eq!(object["apiVersion"], V1BETA1);
    assert_eq!(
        object["spec"],
        json!({"cronSpec": "0 3 * * *", "image": "busybox:2", "hostPort": "::1:8080"})
    );
    assert_eq!(object["status"], json!({"active": 3}));
    // The stash holds the lost field and nothing else.
    assert_eq!(
        object["metadata"]["annotations"][STASH_V1],
        r#"{"lost":{"spec":{"timeZone":"Europe/Berlin"}}}"#
    );
    assert_eq!(object["metadata"]["annotations"]["note"], "keep me");
    // Everything else in metadata is exactly what was sent.
    let mut sent = metadata("b");
    let mut got = object["metadata"].clone();
    sent.as_object_mut().unwrap().remove("annotations");
    got.as_object_mut().unwrap().remove("annotations");
    assert_eq!(got, sent);
}

#[test]
fn lossless_v1_to_v1beta1_adds_no_annotation() {
    let mut object = v1_object("c");
    object["spec"].as_object_mut().unwrap().remove("timeZone");
    let out = convert_ok(vec![object], V1BETA1);
    assert_eq!(out[0]["metadata"], metadata("c"));
}

#[test]
fn same_version_is_returned_unchanged() {
    for (object, version) in [
        (beta("d"), V1BETA1),
        (v1_object("d"), V1),
        (v2_object("d"), V2),
    ] {
        let out = convert_ok(vec![object.clone()], version);
        assert_eq!(out, vec![object]);
    }
}

#[test]
fn mixed_versions_in_one_review_keep_their_order() {
    let objects = vec![
        beta("e1"),
        v1_object("e2"),
        v2_object("e3"),
        v1_object("e4"),
    ];
    for desired in [V1, V1BETA1, V2] {
        let out = convert_ok(objects.clone(), desired);
        let names: Vec<_> = out.iter().map(|o| o["metadata"]["name"].clone()).collect();
        assert_eq!(names, vec!["e1", "e2", "e3", "e4"]);
        assert!(out.iter().all(|o| o["apiVersion"] == desired));
    }
}

#[test]
fn v1_to_v2_renames_the_status_field_and_defaults_the_policy() {
    let out = convert_ok(vec![v1_object("v2a")], V2);
    assert_eq!(
        out[0],
        json!({
            "apiVersion": V2, "kind": "CronTab", "metadata": metadata("v2a"),
            "spec": {
                "schedule": "0 3 * * *", "image": "busybox:2", "host": "::1", "port": 8080,
                "timeZone": "Europe/Berlin", "concurrencyPolicy": "Allow"
            },
            "status": {"runningJobs": 3}
        })
    );
}

#[test]
fn v2_to_v1_stashes_the_policy_and_renames_the_status_field() {
    let out = convert_ok(vec![v2_object("v2b")], V1);
    let object = &out[0];
    assert_eq!(
        object["spec"],
        json!({"schedule": "0 4 * * *", "image": "busybox:3", "replicas": 1, "host": "db", "port": 5432, "timeZone": "UTC"})
    );
    assert_eq!(
        object["status"],
        json!({"lastScheduleTime": "2025-05-05T04:00:00Z", "activeJobs": 4})
    );
    assert_eq!(
        object["metadata"]["annotations"][STASH_V2],
        r#"{"lost":{"spec":{"concurrencyPolicy":"Forbid"}}}"#
    );
    let back = convert_ok(out, V2);
    assert_eq!(back, vec![v2_object("v2b")]);
}

#[test]
fn v1beta1_to_v2_goes_through_v1() {
    let out = convert_ok(vec![beta("v2c")], V2);
    assert_eq!(
        out[0],
        json!({
            "apiVersion": V2, "kind": "CronTab", "metadata": metadata("v2c"),
            "spec": {
                "schedule": "*/5 * * * *", "image": "busybox:1", "replicas": 2,
                "host": "db.example.org", "port": 5432, "concurrencyPolicy": "Allow"
            },
            "status": {"lastScheduleTime": "2025-05-05T05:10:00Z", "runningJobs": 1}
        })
    );
}

#[test]
fn v2_to_v1beta1_stashes_what_v1beta1_cannot_hold_and_comes_back() {
    let out = convert_ok(vec![v2_object("v2d")], V1BETA1);
    let object = &out[0];
    assert_eq!(
        object["spec"],
        json!({"cronSpec": "0 4 * * *", "image": "busybox:3", "replicas": 1, "hostPort": "db:5432"})
    );
    assert_eq!(
        object["status"],
        json!({"lastScheduleTime": "2025-05-05T04:00:00Z", "active": 4})
    );
    // One stash, the source version's, with only what v1beta1 cannot hold.
    let annotations = object["metadata"]["annotations"].as_object().unwrap();
    let mut keys: Vec<_> = annotations.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, [STASH_V2, "note"]);
    let stash: Value = serde_json::from_str(annotations[STASH_V2].as_str().unwrap()).unwrap();
    assert_eq!(
        stash,
        json!({"lost": {"spec": {"timeZone": "UTC", "concurrencyPolicy": "Forbid"}}})
    );
    let back = convert_ok(out, V2);
    assert_eq!(back, vec![v2_object("v2d")]);
}

#[test]
fn the_v1_view_of_a_v2_object_stored_as_v1beta1_lacks_the_stashed_time_zone() {
    // The stash belongs to the version the object was written in (v2) and is put back only on
    // the way into v2, not into v1, although v1 could hold `timeZone`: the controller (which
    // watches v1) does not see the time zone of a CronTab written through v2.
    let stored = convert_ok(vec![v2_object("v2e")], V1BETA1);
    let as_v1 = convert_ok(stored.clone(), V1);
    assert!(as_v1[0]["spec"].get("timeZone").is_none(), "{as_v1:?}");
    assert_eq!(
        as_v1[0]["metadata"]["annotations"][STASH_V2],
        stored[0]["metadata"]["annotations"][STASH_V2]
    );
    // From storage into v2 both come back.
    let back = convert_ok(stored, V2);
    assert_eq!(back, vec![v2_object("v2e")]);
}

#[test]
fn every_enum_value_survives_the_chain() {
    for policy in ["Allow", "Forbid", "Replace"] {
        let mut object = v2_object("policy");
        object["spec"]["concurrencyPolicy"] = json!(policy);
        let there = convert_ok(vec![object.clone()], V1BETA1);
        let back = convert_ok(there, V2);
        assert_eq!(back[0]["spec"]["concurrencyPolicy"], policy);
        assert_eq!(back, vec![object]);
    }
}

#[test]
fn an_unknown_policy_fails_naming_the_object() {
    let mut object = v2_object("bad-policy");
    object["spec"]["concurrencyPolicy"] = json!("Sometimes");
    let message = convert_err(vec![object], V1);
    assert!(message.contains("team-a/bad-policy"), "{message}");
    assert!(message.contains("Sometimes"), "{message}");
}

#[test]
fn time_zone_survives_v1_v1beta1_v1() {
    let original = v1_object("f");
    let there = convert_ok(vec![original.clone()], V1BETA1);
    let back = convert_ok(there, V1);
    assert_eq!(back, vec![original]);
}

#[test]
fn edit_through_v1beta1_keeps_the_edit_and_restores_the_time_zone() {
    let there = convert_ok(vec![v1_object("g")], V1BETA1);
    let mut edited = there[0].clone();
    edited["spec"]["hostPort"] = json!("other.example.org:9090");
    edited["spec"]["cronSpec"] = json!("@hourly");
    let back = convert_ok(vec![edited], V1);
    let spec = &back[0]["spec"];
    assert_eq!(spec["host"], "other.example.org");
    assert_eq!(spec["port"], 9090);
    assert_eq!(spec["schedule"], "@hourly");
    assert_eq!(spec["timeZone"], "Europe/Berlin");
    assert!(back[0]["metadata"]["annotations"].get(STASH_V1).is_none());
    assert_eq!(back[0]["metadata"]["annotations"]["note"], "keep me");
}

#[test]
fn a_non_canonical_host_port_round_trips_through_v1() {
    let mut object = beta("h");
    object["spec"]["hostPort"] = json!("db:0080");
    let there = convert_ok(vec![object.clone()], V1);
    assert_eq!(there[0]["spec"]["port"], 80);
    let back = convert_ok(there, V1BETA1);
    assert_eq!(back, vec![object]);
}

#[test]
fn metadata_is_carried_through_byte_for_byte() {
    // Keys and values the typed ObjectMeta would reorder, normalise or drop.
    let mut object = beta("i");
    object["metadata"]["creationTimestamp"] = json!("2025-05-05T05:05:05.123456789+02:00");
    object["metadata"]["managedFields"][0]["fieldsV1"] =
        json!({"f:spec": {"f:x": {"k:{\"a\":1}": {}}}});
    object["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    object["metadata"]["selfLink"] =
        json!("/apis/example.com/v1beta1/namespaces/team-a/crontabs/i");
    let sent = object["metadata"].clone();
    let out = convert_ok(vec![object], V1);
    assert_eq!(out[0]["metadata"], sent);
    assert_eq!(
        serde_json::to_string(&out[0]["metadata"]).unwrap(),
        serde_json::to_string(&sent).unwrap()
    );
}

#[test]
fn invalid_host_port_fails_the_review_naming_the_object() {
    let mut bad = beta("broken");
    bad["spec"]["hostPort"] = json!("no-port-here");
    let message = convert_err(vec![beta("fine"), bad], V1);
    assert!(message.contains("CronTab team-a/broken"), "{message}");
    assert!(message.contains(V1BETA1), "{message}");
    assert!(
        message.contains("spec.hostPort \"no-port-here\" is not of the form host:port"),
        "{message}"
    );
}

#[test]
fn an_object_not_matching_its_schema_fails() {
    let mut bad = beta("schema");
    bad["spec"].as_object_mut().unwrap().remove("image");
    let message = convert_err(vec![bad], V1);
    assert!(message.contains("team-a/schema"), "{message}");
    assert!(message.contains("missing field `image`"), "{message}");
}

#[test]
fn unknown_kind_version_and_group_fail() {
    let mut other_kind = beta("k");
    other_kind["kind"] = json!("AtJob");
    assert!(convert_err(vec![other_kind], V1).contains("no converter for kind AtJob"));

    let mut old_version = beta("k");
    old_version["apiVersion"] = json!("example.com/v1alpha1");
    let message = convert_err(vec![old_version], V1);
    assert!(
        message.contains("unknown version \"v1alpha1\""),
        "{message}"
    );
    assert!(message.contains("v1, v1beta1, v2"), "{message}");

    let message = convert_err(vec![beta("k")], "example.com/v3");
    assert!(message.contains("unknown version \"v3\""), "{message}");

    let message = convert_err(vec![beta("k")], "other.io/v1");
    assert!(message.contains("cannot convert from group"), "{message}");

    let message = convert_err(vec![beta("k")], "v1");
    assert!(message.contains("desiredAPIVersion"), "{message}");

    let mut no_kind = beta("k");
    no_kind.as_object_mut().unwrap().remove("kind");
    assert!(convert_err(vec![no_kind], V1).contains("has no kind"));
}

#[test]
fn empty_review_succeeds_with_no_objects() {
    assert!(convert_ok(Vec::new(), V1).is_empty());
}

#[test]
fn a_corrupt_stash_fails_with_the_annotation_key() {
    let mut object = beta("stash");
    object["metadata"]["annotations"][STASH_V1] = json!("{not json");
    let message = convert_err(vec![object], V1);
    assert!(message.contains(STASH_V1), "{message}");
}

#[test]
fn convert_review_echoes_the_uid_and_rejects_other_review_versions() {
    let review: ConversionReview = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "request": {"uid": "review-1", "desiredAPIVersion": V1, "objects": [beta("r")]}
    }))
    .unwrap();
    let request = ConversionRequest::from_review(review.clone()).unwrap();
    let answer = router_().convert_review(review);
    assert_eq!(answer.types.api_version, "apiextensions.k8s.io/v1");
    assert_eq!(answer.types.kind, "ConversionReview");
    let response = answer.response.expect("a response");
    check_response(&request, &response).unwrap();
    assert_eq!(response.uid, "review-1");
    assert_eq!(response.converted_objects.len(), 1);

    let old: ConversionReview = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "ConversionReview",
        "request": {"uid": "review-2", "desiredAPIVersion": V1, "objects": [beta("r")]}
    }))
    .unwrap();
    let response = router_().convert_review(old).response.unwrap();
    assert!(response.result.is_failure());
    assert_eq!(response.uid, "review-2");
    assert!(response.result.message.contains("conversionReviewVersions"));
}

#[test]
fn the_invariant_checker_catches_broken_answers() {
    let request = ConversionRequest {
        types: None,
        uid: "u".into(),
        desired_api_version: V1.into(),
        objects: vec![beta("x")],
    };
    let good = router_().convert_request(request.clone());
    check_response(&request, &good).unwrap();

    let mut bad = good.clone();
    bad.uid = "other".into();
    assert!(check_response(&request, &bad).is_err());

    // The API server restores other metadata silently; only the strict check refuses it.
    let mut restored = good.clone();
    restored.converted_objects[0]["metadata"]["resourceVersion"] = json!("1");
    assert!(check_response(&request, &restored).is_ok());
    assert!(check_response_strict(&request, &restored).is_err());

    let mut bad = good.clone();
    bad.converted_objects[0]["apiVersion"] = json!(V1BETA1);
    assert!(check_response(&request, &bad).is_err());

    let mut bad = good.clone();
    bad.converted_objects.push(beta("y"));
    assert!(check_response(&request, &bad).is_err());

    let mut bad = good;
    bad.converted_objects[0]["metadata"]["labels"]["app"] = json!(1);
    assert!(check_response(&request, &bad).is_err());
}

fn meta_strategy() -> impl Strategy<Value = ObjectMeta> {
    (
        "[a-z][a-z0-9-]{0,20}",
        proptest::option::of("[a-z]{1,8}"),
        // Label values as the API server allows them; annotation values anything.
        proptest::collection::btree_map(
            "[a-z]{1,8}",
            "([A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?)?",
            0..3,
        ),
        proptest::collection::btree_map("[a-z]{1,8}", ".{0,12}", 0..3),
    )
        .prop_map(|(name, namespace, labels, annotations)| ObjectMeta {
            name: Some(name),
            namespace,
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        })
}

fn v1_strategy() -> impl Strategy<Value = v1::CronTab> {
    (
        meta_strategy(),
        (
            any::<String>(),
            any::<String>(),
            any::<Option<i32>>(),
            any::<String>(),
            any::<u16>(),
            any::<Option<String>>(),
        ),
        proptest::option::of((any::<Option<String>>(), any::<Option<i32>>())),
    )
        .prop_map(
            |(metadata, (schedule, image, replicas, host, port, time_zone), status)| v1::CronTab {
                metadata,
                spec: v1::CronTabSpec {
                    schedule,
                    image,
                    replicas,
                    host,
                    port,
                    time_zone,
                },
                status: status.map(|(last_schedule_time, active_jobs)| v1::CronTabStatus {
                    last_schedule_time,
                    active_jobs,
                }),
            },
        )
}

fn v1beta1_strategy() -> impl Strategy<Value = v1beta1::CronTab> {
    let host_port = (any::<String>(), any::<u16>(), "0{0,2}")
        .prop_map(|(host, port, zeros)| format!("{host}:{zeros}{port}"));
    (
        meta_strategy(),
        (
            any::<String>(),
            any::<String>(),
            any::<Option<i32>>(),
            host_port,
        ),
        proptest::option::of((any::<Option<String>>(), any::<Option<i32>>())),
    )
        .prop_map(
            |(metadata, (cron_spec, image, replicas, host_port), status)| v1beta1::CronTab {
                metadata,
                spec: v1beta1::CronTabSpec {
                    cron_spec,
                    image,
                    replicas,
                    host_port,
                },
                status: status.map(|(last_schedule_time, active)| v1beta1::CronTabStatus {
                    last_schedule_time,
                    active,
                }),
            },
        )
}

fn v2_strategy() -> impl Strategy<Value = v2::CronTab> {
    let policy = prop_oneof![
        Just(v2::ConcurrencyPolicy::Allow),
        Just(v2::ConcurrencyPolicy::Forbid),
        Just(v2::ConcurrencyPolicy::Replace),
    ];
    (
        v1_strategy(),
        policy,
        proptest::option::of((any::<Option<String>>(), any::<Option<i32>>())),
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
            status: status.map(|(last_schedule_time, running_jobs)| v2::CronTabStatus {
                last_schedule_time,
                running_jobs,
            }),
        })
}

#[test]
fn property_v1_round_trips_through_v1beta1() {
    check_round_trip::<v1::CronTab, v1beta1::CronTab>(&router_(), v1_strategy(), 256);
}

#[test]
fn property_v1beta1_round_trips_through_v1() {
    check_round_trip::<v1beta1::CronTab, v1::CronTab>(&router_(), v1beta1_strategy(), 256);
}

#[test]
fn property_v1_round_trips_through_v2() {
    check_round_trip::<v1::CronTab, v2::CronTab>(&router_(), v1_strategy(), 256);
}

#[test]
fn property_v2_round_trips_through_v1() {
    check_round_trip::<v2::CronTab, v1::CronTab>(&router_(), v2_strategy(), 256);
}

#[test]
fn property_v2_round_trips_through_v1beta1() {
    check_round_trip::<v2::CronTab, v1beta1::CronTab>(&router_(), v2_strategy(), 256);
}

#[test]
fn property_v1beta1_round_trips_through_v2() {
    check_round_trip::<v1beta1::CronTab, v2::CronTab>(&router_(), v1beta1_strategy(), 256);
}

#[test]
fn with_server_metadata_keeps_what_is_there() {
    let object = with_server_metadata(json!({"metadata": {"uid": "mine"}}));
    assert_eq!(object["metadata"]["uid"], "mine");
    assert!(object["metadata"]["managedFields"].is_array());
}

#[test]
fn a_stash_over_the_annotation_limit_fails_clearly() {
    let mut object = v1_object("huge");
    object["spec"]["timeZone"] = json!("x".repeat(300 * 1024));
    let message = convert_err(vec![object], V1BETA1);
    assert!(message.contains("team-a/huge"), "{message}");
    assert!(message.contains("over the API server's limit"), "{message}");
}
