//! One ConversionReview of 10,000 CronTabs, each way: completes, passes the API server's checks,
//! round-trips exactly, and prints how long it took (no timed assertion; see also
//! `cargo run --release -p stackable-conversion --example bench_10k`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use kube::core::conversion::ConversionRequest;
use serde_json::{Value, json};
use stackable_conversion::check_response;

fn crontab(i: usize) -> Value {
    json!({
        "apiVersion": "example.com/v1", "kind": "CronTab",
        "metadata": {
            "name": format!("ct-{i}"), "namespace": "load", "uid": format!("uid-{i}"),
            "resourceVersion": i.to_string(), "generation": 1,
            "managedFields": [{"apiVersion": "example.com/v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:host": {}}}, "manager": "load", "operation": "Update"}]
        },
        "spec": {"schedule": "* * * * *", "image": "busybox", "host": format!("h{i}"), "port": i % 65536,
                 "timeZone": if i.is_multiple_of(3) { json!("UTC") } else { json!(null) }},
        "status": {"activeJobs": i % 7}
    })
}

fn clean(mut object: Value) -> Value {
    // `timeZone: null` is written as an absent field by the typed conversion.
    if object["spec"]["timeZone"].is_null() {
        object["spec"].as_object_mut().unwrap().remove("timeZone");
    }
    object
}

#[test]
fn ten_thousand_objects_each_way() {
    let router = crontab_operator::router().unwrap();
    let originals: Vec<Value> = (0..10_000).map(crontab).map(clean).collect();

    let down = ConversionRequest {
        types: None,
        uid: "down".into(),
        desired_api_version: "example.com/v1beta1".into(),
        objects: originals.clone(),
    };
    let start = Instant::now();
    let down_response = router.convert_request(down.clone());
    let down_time = start.elapsed();
    check_response(&down, &down_response).unwrap();
    assert!(
        down_response.result.is_success(),
        "{}",
        down_response.result.message
    );

    let up = ConversionRequest {
        types: None,
        uid: "up".into(),
        desired_api_version: "example.com/v1".into(),
        objects: down_response.converted_objects,
    };
    let start = Instant::now();
    let up_response = router.convert_request(up.clone());
    let up_time = start.elapsed();
    check_response(&up, &up_response).unwrap();
    assert_eq!(up_response.converted_objects, originals);

    println!(
        "10000 CronTabs v1 -> v1beta1: {down_time:?}; v1beta1 -> v1: {up_time:?} (this build's profile)"
    );
}
