//! `check_response` agrees with the real kube-apiserver (stackable-testenv): a webhook answers
//! each CronTab's conversion with the right answer changed in one way (named after the object),
//! records what `check_response` says of that answer, and the test compares it with what the API
//! server did with it (the GET in v1 succeeds or fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use cluster::{Cluster, meta, retrying};
use crontab_operator::{v1, v1beta1};
use kube::{
    Api,
    api::PostParams,
    core::conversion::{ConversionRequest, ConversionResponse},
};
use serde_json::{Value, json};
use stackable_conversion::check_response;

/// Each case: the object's name, how its converted object is changed, and whether the API server
/// accepts that (from `webhook_converter.go`; checked here against the real one).
const CASES: [(&str, bool); 15] = [
    ("plain", true),
    ("upper-annotation-prefix", true),
    ("kelvin-annotation-key", true),
    ("long-prefix-label", true),
    ("resource-version-changed", true),
    ("labels-null", true),
    ("bad-label-value", false),
    ("long-label-value", false),
    ("upper-label-prefix", false),
    ("renamed", false),
    ("new-uid", false),
    ("no-metadata", false),
    ("number-annotation", false),
    ("wrong-kind", false),
    ("big-annotations", false),
];

fn tweak(object: &mut Value) {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let metadata = &mut object["metadata"];
    match name.as_str() {
        "upper-annotation-prefix" => metadata["annotations"]["Example.COM/Key"] = json!("v"),
        // U+212A KELVIN SIGN: Go's strings.ToLower makes it an ASCII `k`.
        "kelvin-annotation-key" => metadata["annotations"]["\u{212A}ey"] = json!("v"),
        "long-prefix-label" => {
            metadata["labels"][format!("{}.example.com/x", "a".repeat(64))] = json!("v")
        }
        "resource-version-changed" => metadata["resourceVersion"] = json!("1"),
        "labels-null" => metadata["labels"] = Value::Null,
        "bad-label-value" => metadata["labels"]["app"] = json!("-bad-"),
        "long-label-value" => metadata["labels"]["app"] = json!("a".repeat(64)),
        "upper-label-prefix" => metadata["labels"]["Example.com/x"] = json!("v"),
        "renamed" => metadata["name"] = json!("someone-else"),
        "new-uid" => metadata["uid"] = json!("00000000-0000-0000-0000-000000000000"),
        "no-metadata" => {
            object.as_object_mut().map(|o| o.remove("metadata"));
        }
        "number-annotation" => metadata["annotations"]["note"] = json!(1),
        "wrong-kind" => object["kind"] = json!("AtJob"),
        "big-annotations" => metadata["annotations"]["big"] = json!("x".repeat(256 * 1024)),
        _ => {}
    }
}

#[tokio::test]
async fn check_response_agrees_with_the_api_server() {
    let router = crontab_operator::router().unwrap();
    let verdicts: Arc<Mutex<BTreeMap<String, Result<(), String>>>> = Arc::default();
    let converter = {
        let verdicts = verdicts.clone();
        move |request: ConversionRequest| -> ConversionResponse {
            let mut response = router.convert_request(request.clone());
            response.converted_objects.iter_mut().for_each(tweak);
            let verdict = check_response(&request, &response).map_err(|e| e.to_string());
            for object in &request.objects {
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                verdicts
                    .lock()
                    .unwrap()
                    .insert(name.to_owned(), verdict.clone());
            }
            response
        }
    };
    let cluster = Cluster::start_serving("crontab-check", converter).await;
    let new: Api<v1::CronTab> = cluster.api();
    let old: Api<v1beta1::CronTab> = cluster.api();

    for (name, _) in CASES {
        let mut metadata = meta(name, &cluster.namespace);
        metadata.labels = Some([("app".to_owned(), "cron".to_owned())].into());
        metadata.annotations = Some([("note".to_owned(), "keep".to_owned())].into());
        // Created in the storage version: no conversion on the way in.
        old.create(
            &PostParams::default(),
            &v1beta1::CronTab {
                metadata,
                spec: v1beta1::CronTabSpec {
                    cron_spec: "@daily".into(),
                    image: "busybox".into(),
                    replicas: None,
                    host_port: "db:5432".into(),
                },
                status: None,
            },
        )
        .await
        .unwrap();
    }
    // The first call waits until the API server reaches the webhook.
    retrying("get plain as v1", || new.get("plain")).await;

    let mut disagreements = Vec::new();
    for (name, expected) in CASES {
        let read = new.get(name).await;
        let checked = verdicts.lock().unwrap().get(name).cloned();
        let Some(checked) = checked else {
            panic!("the webhook never saw {name}");
        };
        println!(
            "{name:<26} API server: {:<8} check_response: {:?}",
            if read.is_ok() { "accepts" } else { "refuses" },
            checked
        );
        if read.is_ok() != checked.is_ok() || read.is_ok() != expected {
            disagreements.push(format!(
                "{name}: API server {:?}, check_response {checked:?}, expected accepted={expected}",
                read.as_ref()
                    .map(|_| "accepted")
                    .map_err(ToString::to_string)
            ));
        }
        if let (Ok(read), "resource-version-changed") = (&read, name) {
            // Accepted, and the original restored.
            assert_ne!(read.metadata.resource_version.as_deref(), Some("1"));
        }
        if let (Ok(read), "labels-null") = (&read, name) {
            assert!(read.metadata.labels.as_ref().is_none_or(|l| l.is_empty()));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    cluster.stop().await;
}
