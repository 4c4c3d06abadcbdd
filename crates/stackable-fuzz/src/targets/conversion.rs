//! stackable-webhook's conversion route with stackable-conversion's `ConversionRouter` behind it:
//! the `ConversionReview` body, each object's raw JSON (metadata copied as text) and the stash
//! annotations (`conversion.stackable.tech/stash.<version>`) that carry lost fields back.

use std::{sync::OnceLock, time::Duration};

use kube::{
    CustomResource,
    core::conversion::{ConversionRequest, ConversionResponse, ConversionReview},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stackable_conversion::{ConversionRouter, KindConverter, check_response};

use super::head;
use crate::Target;

/// See the module docs.
pub const CONVERSION_REVIEW: Target = Target {
    name: "conversion_review",
    about: "stackable-webhook + stackable-conversion: a ConversionReview body answered by a \
            ConversionRouter of three versions (hub and two spokes, fields lost to the stash); \
            the answer must be JSON and, when it converts, pass the API server's checks",
    run: conversion_review,
    seeds,
    dictionary: &[
        "ConversionReview",
        "apiextensions.k8s.io/v1",
        "apiextensions.k8s.io/v1beta1",
        "desiredAPIVersion",
        "objects",
        "uid",
        "request",
        "fuzz.io/v1",
        "fuzz.io/v2",
        "fuzz.io/v3",
        "Job",
        "conversion.stackable.tech/stash.v1",
        "conversion.stackable.tech/stash.v2",
        "conversion.stackable.tech/stash.v3",
        "lost",
        "statusDigest",
        "annotations",
        "metadata",
        "spec",
        "status",
        "hostPort",
    ],
    max_len: 256 * 1024,
    slow: Duration::from_millis(500),
};

mod v1 {
    use super::*;
    /// The oldest version: host and port in one string.
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "fuzz.io",
        version = "v1",
        kind = "Job",
        namespaced,
        status = "JobStatus"
    )]
    #[serde(rename_all = "camelCase")]
    pub(super) struct JobSpec {
        /// `host:port`.
        pub host_port: String,
        /// A ratio.
        pub ratio: f64,
    }
    /// The status.
    #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    pub(super) struct JobStatus {
        /// Active runs.
        pub active: Option<i32>,
    }
}

mod v2 {
    use super::*;
    /// The hub: more fields than v1 holds.
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "fuzz.io",
        version = "v2",
        kind = "Job",
        namespaced,
        status = "JobStatus"
    )]
    #[serde(rename_all = "camelCase")]
    pub(super) struct JobSpec {
        /// The host.
        pub host: String,
        /// The port.
        pub port: u16,
        /// A ratio.
        pub ratio: f64,
        /// A time zone v1 cannot hold.
        pub time_zone: Option<String>,
        /// Tags v1 cannot hold.
        #[serde(default)]
        pub tags: Vec<String>,
    }
    /// The status.
    #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct JobStatus {
        /// Active runs.
        pub active: Option<i32>,
        /// Conditions v1 cannot hold.
        pub conditions: Option<Vec<String>>,
    }
}

mod v3 {
    use super::*;
    /// The newest: the port as a number of a larger type, tags as a map.
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(group = "fuzz.io", version = "v3", kind = "Job", namespaced)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct JobSpec {
        /// `host:port` as an endpoint.
        pub endpoint: Endpoint,
        /// A ratio in percent.
        pub percent: f64,
    }
    /// An endpoint.
    #[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
    pub(super) struct Endpoint {
        /// The host.
        pub host: String,
        /// The port.
        pub port: u32,
    }
}

impl TryFrom<v1::Job> for v2::Job {
    type Error = String;
    fn try_from(job: v1::Job) -> Result<Self, String> {
        let (host, port) = job.spec.host_port.rsplit_once(':').ok_or("no port")?;
        Ok(v2::Job {
            metadata: job.metadata,
            spec: v2::JobSpec {
                host: host.to_owned(),
                port: port.parse().map_err(|_| "bad port")?,
                ratio: job.spec.ratio,
                time_zone: None,
                tags: Vec::new(),
            },
            status: job.status.map(|s| v2::JobStatus {
                active: s.active,
                conditions: None,
            }),
        })
    }
}

impl From<v2::Job> for v1::Job {
    fn from(job: v2::Job) -> Self {
        v1::Job {
            metadata: job.metadata,
            spec: v1::JobSpec {
                host_port: format!("{}:{}", job.spec.host, job.spec.port),
                ratio: job.spec.ratio,
            },
            status: job.status.map(|s| v1::JobStatus { active: s.active }),
        }
    }
}

impl TryFrom<v3::Job> for v2::Job {
    type Error = String;
    fn try_from(job: v3::Job) -> Result<Self, String> {
        Ok(v2::Job {
            metadata: job.metadata,
            spec: v2::JobSpec {
                host: job.spec.endpoint.host,
                port: u16::try_from(job.spec.endpoint.port).map_err(|_| "port out of range")?,
                ratio: job.spec.percent / 100.0,
                time_zone: None,
                tags: Vec::new(),
            },
            status: None,
        })
    }
}

impl From<v2::Job> for v3::Job {
    fn from(job: v2::Job) -> Self {
        v3::Job {
            metadata: job.metadata,
            spec: v3::JobSpec {
                endpoint: v3::Endpoint {
                    host: job.spec.host,
                    port: u32::from(job.spec.port),
                },
                percent: job.spec.ratio * 100.0,
            },
        }
    }
}

fn router() -> &'static ConversionRouter {
    static ROUTER: OnceLock<ConversionRouter> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let jobs = KindConverter::builder()
            .hub::<v2::Job>()
            .step::<v1::Job, v2::Job>()
            .step::<v3::Job, v2::Job>()
            .build();
        match jobs {
            Ok(jobs) => ConversionRouter::from(jobs),
            Err(error) => panic!("the fuzz target's converter is inconsistent: {error}"),
        }
    })
}

/// The fields of a review as serde_json reads them (what the route read before it had its own
/// validating pass): `apiVersion`, `kind`, uid, desiredAPIVersion, each object's text.
fn read_by_serde(text: &str) -> Option<(String, String, String, String, Vec<String>)> {
    #[derive(Deserialize)]
    struct In<'a> {
        #[serde(rename = "apiVersion", borrow)]
        api_version: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        request: Option<RequestIn<'a>>,
    }
    #[derive(Deserialize)]
    struct RequestIn<'a> {
        #[serde(borrow)]
        uid: std::borrow::Cow<'a, str>,
        #[serde(rename = "desiredAPIVersion", borrow)]
        desired: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        objects: Vec<&'a serde_json::value::RawValue>,
    }
    let review: In<'_> = serde_json::from_str(text).ok()?;
    let request = review.request?;
    Some((
        review.api_version.into_owned(),
        review.kind.into_owned(),
        request.uid.into_owned(),
        request.desired.into_owned(),
        request.objects.iter().map(|o| o.get().to_owned()).collect(),
    ))
}

/// The route's own validating read of the body agrees with serde_json: it takes exactly the
/// JSON serde_json takes, and reads a review only as serde_json reads it.
fn check_fast_read(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let serde_takes = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    assert_eq!(
        stackable_webhook::fuzzing::conversion_json_is_valid(text),
        serde_takes,
        "the route's JSON validator and serde_json disagree"
    );
    if let Some(fields) = stackable_webhook::fuzzing::conversion_review_fields(text) {
        let Some(notes) = stackable_webhook::fuzzing::conversion_review_notes(text) else {
            panic!("the route read the review's fields but took no notes");
        };
        assert_eq!(notes.len(), fields.4.len(), "one note per object");
        if let Err(message) = stackable_webhook::fuzzing::conversion_notes_agree(text) {
            panic!("the route's notes and serde_json disagree: {message}");
        }
        assert_eq!(
            Some(fields),
            read_by_serde(text),
            "the route read a review serde_json reads otherwise"
        );
    }
}

/// Answers `input`; the answer must be JSON, a `ConversionReview` when the status is 200, and
/// pass the API server's checks when it converts. The route's own read of the body must agree
/// with serde_json's.
pub fn conversion_review(input: &[u8]) -> String {
    check_fast_read(input);
    let (status, body) = stackable_webhook::fuzzing::conversion_review(router(), input);
    let answer: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|error| panic!("the answer (HTTP {status}) is not JSON: {error}"));
    match status {
        200 => {
            assert_eq!(answer["kind"], "ConversionReview", "{answer}");
            let outcome = answer
                .pointer("/response/result/status")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
                .to_owned();
            if let Ok(review) = serde_json::from_slice::<ConversionReview>(input)
                && let Some(request) = review.request
                && answer["apiVersion"] == "apiextensions.k8s.io/v1"
            {
                check(&request, &answer);
            }
            let message = answer
                .pointer("/response/result/message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            format!("200:{outcome}:{}", head(message))
        }
        _ => {
            assert_eq!(answer["kind"], "Status", "{answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            format!("{status}:{}", head(message))
        }
    }
}

/// The API server's checks on the answer to `request`.
fn check(request: &ConversionRequest, answer: &Value) {
    let Some(response) = answer.get("response") else {
        panic!("a ConversionReview answer without response: {answer}");
    };
    let response: ConversionResponse = match serde_json::from_value(response.clone()) {
        Ok(response) => response,
        Err(error) => panic!("the response does not decode: {error}"),
    };
    assert_eq!(response.uid, request.uid, "the answer is for another uid");
    // Objects the API server would never send (labels that are not strings, no metadata map,
    // an invalid annotation key) fail its checks however they are converted: the router
    // copies metadata as received. Only answers to objects whose unconverted copy passes the
    // checks are held to them.
    let unconverted = ConversionResponse {
        converted_objects: request
            .objects
            .iter()
            .map(|object| {
                let mut object = object.clone();
                if let Some(map) = object.as_object_mut() {
                    map.insert(
                        "apiVersion".to_owned(),
                        Value::String(request.desired_api_version.clone()),
                    );
                }
                object
            })
            .collect(),
        result: kube::core::Status::success(),
        ..response.clone()
    };
    if check_response(request, &unconverted).is_err() {
        return;
    }
    if let Err(violation) = check_response(request, &response) {
        panic!("the API server would refuse the answer: {violation}");
    }
}

fn job(version: &str, spec: Value, status: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": format!("fuzz.io/{version}"),
        "kind": "Job",
        "metadata": {
            "name": "j", "namespace": "ns", "uid": "2d1c-77", "resourceVersion": "5",
            "generation": 2, "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "j"}, "annotations": annotations,
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": format!("fuzz.io/{version}"),
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]
        },
        "spec": spec,
        "status": status
    })
}

fn review(desired: &str, objects: Vec<Value>) -> Vec<u8> {
    let review = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "a4f1-99", "desiredAPIVersion": desired, "objects": objects}
    });
    serde_json::to_vec(&review).unwrap_or_default()
}

fn seeds() -> Vec<Vec<u8>> {
    let v2 = job(
        "v2",
        json!({"host": "db", "port": 80, "ratio": 0.5, "timeZone": "Europe/Berlin", "tags": ["a"]}),
        json!({"active": 1, "conditions": ["Ready"]}),
        json!({}),
    );
    let v1_with_stash = job(
        "v1",
        json!({"hostPort": "db:80", "ratio": 0.5}),
        json!({"active": 1}),
        json!({"conversion.stackable.tech/stash.v2":
            r#"{"lost":{"spec":{"timeZone":"Europe/Berlin","tags":["a"]},"status":{"conditions":["Ready"]}},"statusDigest":"00000000deadbeef"}"#}),
    );
    let v3 = job(
        "v3",
        json!({"endpoint": {"host": "db", "port": 80}, "percent": 50.0}),
        Value::Null,
        json!({"conversion.stackable.tech/stash.v2": r#"{"lost":{"spec":{"tags":["b"]}}}"#}),
    );
    vec![
        review("fuzz.io/v1", vec![v2.clone()]),
        review("fuzz.io/v2", vec![v1_with_stash.clone()]),
        review("fuzz.io/v3", vec![v1_with_stash.clone(), v2.clone()]),
        review("fuzz.io/v2", vec![v3.clone()]),
        review("fuzz.io/v1", vec![v3, v2, v1_with_stash]),
        br#"{"apiVersion":"apiextensions.k8s.io/v1beta1","kind":"ConversionReview","request":{"uid":"1","desiredAPIVersion":"fuzz.io/v1","objects":[]}}"#.to_vec(),
    ]
}
