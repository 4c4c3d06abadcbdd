//! The stash stores only what is lost: no annotation on lossless objects (whatever `null`,
//! empty collections or number spellings the round trip changes), only the lost fields on lossy
//! ones, one stash per lost version along a chain, and no stale status brought back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use kube::CustomResource;
use kube::core::conversion::ConversionRequest;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stackable_conversion::{ConversionRouter, KindConverter, check_response};

const STASH_V2: &str = "conversion.stackable.tech/stash.v2";
const STASH_V1: &str = "conversion.stackable.tech/stash.v1";

mod v1 {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "stash.io",
        version = "v1",
        kind = "Job",
        namespaced,
        status = "JobStatus"
    )]
    #[serde(rename_all = "camelCase")]
    pub struct JobSpec {
        pub host_port: String,
        pub ratio: f64,
    }
    #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    pub struct JobStatus {
        pub active: Option<i32>,
    }
}
mod v2 {
    use super::*;
    /// Like the crate README's type: `Option`s serialised as `null`, a defaulted list.
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "stash.io",
        version = "v2",
        kind = "Job",
        namespaced,
        status = "JobStatus"
    )]
    #[serde(rename_all = "camelCase")]
    pub struct JobSpec {
        pub host: String,
        pub port: u16,
        pub ratio: f64,
        pub time_zone: Option<String>,
        #[serde(default)]
        pub tags: Vec<String>,
    }
    #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct JobStatus {
        pub active: Option<i32>,
        pub conditions: Option<Vec<String>>,
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

fn router() -> ConversionRouter {
    ConversionRouter::from(
        KindConverter::builder()
            .hub::<v2::Job>()
            .step::<v1::Job, v2::Job>()
            .build()
            .unwrap(),
    )
}

fn convert(objects: Vec<Value>, desired: &str) -> Vec<Value> {
    let request = ConversionRequest {
        types: None,
        uid: "uid".to_owned(),
        desired_api_version: desired.to_owned(),
        objects,
    };
    let response = router().convert_request(request.clone());
    check_response(&request, &response).unwrap();
    assert!(response.result.is_success(), "{}", response.result.message);
    response.converted_objects
}

fn v2_job(spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "stash.io/v2", "kind": "Job",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u-1", "resourceVersion": "5"},
        "spec": spec, "status": status
    })
}

#[test]
fn lossless_objects_get_no_stash_whatever_the_spelling() {
    // `timeZone: null` and absent, `tags: []` and absent, `ratio: 1` and `1.0`, an empty
    // status: the round trip spells them differently but loses nothing.
    for spec in [
        json!({"host": "db", "port": 80, "ratio": 1}),
        json!({"host": "db", "port": 80, "ratio": 1.0, "timeZone": null, "tags": []}),
        json!({"host": "db", "port": 80, "ratio": 0.5}),
    ] {
        for status in [
            json!({}),
            json!({"active": 2, "conditions": []}),
            json!(null),
        ] {
            let down = convert(vec![v2_job(spec.clone(), status.clone())], "stash.io/v1");
            assert!(
                down[0]["metadata"].get("annotations").is_none(),
                "{spec} / {status} got {}",
                down[0]["metadata"]
            );
        }
    }
}

#[test]
fn a_lossy_object_stashes_only_the_lost_fields_and_gets_them_back() {
    let original = v2_job(
        json!({"host": "db", "port": 80, "ratio": 2, "timeZone": "UTC", "tags": ["a"]}),
        json!({"active": 1}),
    );
    let down = convert(vec![original.clone()], "stash.io/v1");
    assert_eq!(
        down[0]["metadata"]["annotations"],
        json!({STASH_V2: r#"{"lost":{"spec":{"tags":["a"],"timeZone":"UTC"}}}"#})
    );
    let up = convert(down, "stash.io/v2");
    assert_eq!(up[0]["spec"]["timeZone"], "UTC");
    assert_eq!(up[0]["spec"]["tags"], json!(["a"]));
    assert!(up[0]["metadata"].get("annotations").is_none());
}

#[test]
fn a_stash_of_the_source_version_on_a_source_object_is_dropped() {
    // A v1 object carrying a v1 stash (e.g. copied from a v2 view): meaningless, removed.
    let mut object = convert(
        vec![v2_job(
            json!({"host": "db", "port": 80, "ratio": 1}),
            json!({}),
        )],
        "stash.io/v1",
    )
    .remove(0);
    object["metadata"]["annotations"] = json!({STASH_V1: r#"{"lost":{"spec":{"x":1}}}"#});
    let up = convert(vec![object], "stash.io/v2");
    assert!(up[0]["metadata"].get("annotations").is_none());
}

#[test]
fn a_status_written_through_the_other_version_does_not_bring_back_a_stale_field() {
    let original = v2_job(
        json!({"host": "db", "port": 80, "ratio": 1}),
        json!({"active": 1, "conditions": ["Ready"]}),
    );
    let down = convert(vec![original.clone()], "stash.io/v1");
    let stash: Value = serde_json::from_str(
        down[0]["metadata"]["annotations"][STASH_V2]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stash["lost"], json!({"status": {"conditions": ["Ready"]}}));
    assert!(stash["statusDigest"].is_string());

    // Untouched: the v2-only condition comes back.
    let up = convert(down.clone(), "stash.io/v2");
    assert_eq!(
        up[0]["status"],
        json!({"active": 1, "conditions": ["Ready"]})
    );

    // The status subresource written through v1 (a new status, the rest kept, stash included):
    // the condition of the old status is not brought back.
    let mut written = down[0].clone();
    written["status"] = json!({"active": 0});
    let up = convert(vec![written], "stash.io/v2");
    assert_eq!(up[0]["status"]["active"], 0);
    assert!(
        up[0]["status"]["conditions"].is_null(),
        "{}",
        up[0]["status"]
    );

    // A spec edit through v1 keeps the status part (the status did not change).
    let mut edited = down[0].clone();
    edited["spec"]["hostPort"] = json!("db2:81");
    let up = convert(vec![edited], "stash.io/v2");
    assert_eq!(up[0]["spec"]["host"], "db2");
    assert_eq!(up[0]["status"]["conditions"], json!(["Ready"]));
}

#[test]
fn a_value_held_differently_comes_back_only_while_the_other_version_agrees() {
    // v1's `hostPort: "db:0080"` is `port: 80` in v2; the spelling is stashed.
    let original = json!({
        "apiVersion": "stash.io/v1", "kind": "Job",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u-1"},
        "spec": {"hostPort": "db:0080", "ratio": 1.5}
    });
    let up = convert(vec![original.clone()], "stash.io/v2");
    assert_eq!(
        up[0]["metadata"]["annotations"][STASH_V1],
        r#"{"lost":{"spec":{"hostPort":"db:0080"}}}"#
    );
    // Back unchanged: exactly the original.
    assert_eq!(convert(up.clone(), "stash.io/v1"), vec![original]);
    // The port edited through v2: the edit wins over the stashed spelling.
    let mut edited = up[0].clone();
    edited["spec"]["port"] = json!(81);
    let down = convert(vec![edited], "stash.io/v1");
    assert_eq!(down[0]["spec"]["hostPort"], "db:81");
    assert!(down[0]["metadata"].get("annotations").is_none());
}

/// Through stackable-webhook's route, the router takes each object's members as the route noted
/// them while validating the body (or reads the object itself when the route noted none): the
/// answer is byte for byte what the router writes reading every object itself.
#[cfg(feature = "webhook")]
#[test]
fn the_route_s_notes_convert_as_reading_the_objects_does() {
    use serde_json::value::RawValue;

    let lossy = r#"{"apiVersion":"stash.io/v2","kind":"Job","metadata":{"name":"j","namespace":"ns","labels":{"a":"b"},"annotations":{"x":"y"},"managedFields":[{"manager":"m","fieldsV1":{"f:spec":{}}}]},"spec":{"host":"db","port":80,"ratio":0.5,"timeZone":"UTC","tags":["t"]},"status":{"active":1}}"#;
    let objects = [
        lossy.to_owned(),
        // Spaces, a repeated `metadata` (the last counts), `metadata` inside the spec.
        r#" { "kind" : "Job" , "metadata" : {"name":"old"}, "apiVersion":"stash.io/v2", "spec" : { "host" : "h" , "port" : 1 , "ratio" : 1 } , "metadata" : { "name" : "n" , "uid" : "u" } } "#.to_owned(),
        // A key with escapes at the top level and in `metadata`: not noted, read by the router.
        r#"{"apiVersion":"stash.io/v2","kind":"Job","metadata":{"n\u0061me":"e","labels":{"\"q\"":"v"}},"sp\u0065c":{"host":"h","port":2,"ratio":2}}"#.to_owned(),
        v2_job(json!({"host": "db", "port": 80, "ratio": 1}), json!(null)).to_string(),
    ];
    for desired in ["stash.io/v1", "stash.io/v2"] {
        let body = format!(
            r#"{{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{{"uid":"u","desiredAPIVersion":"{desired}","objects":[{}]}}}}"#,
            objects.join(",")
        );
        let (status, answer) =
            stackable_webhook::fuzzing::conversion_review(&router(), body.as_bytes());
        let answer = String::from_utf8(answer).unwrap();
        assert_eq!(status, 200, "{answer}");
        let raw: Vec<Box<RawValue>> = objects
            .iter()
            .map(|object| RawValue::from_string(object.trim().to_owned()).unwrap())
            .collect();
        let raw: Vec<&RawValue> = raw.iter().map(AsRef::as_ref).collect();
        let mut expected = Vec::new();
        router().convert_raw(&raw, desired, &mut expected).unwrap();
        let expected = String::from_utf8(expected).unwrap();
        let converted = answer
            .split_once(r#""convertedObjects":"#)
            .and_then(|(_, rest)| rest.strip_suffix("}}"))
            .unwrap();
        assert_eq!(converted, expected);
        let converted: Vec<Value> = serde_json::from_str(converted).unwrap();
        assert_eq!(converted.len(), objects.len());
        assert_eq!(converted[1]["metadata"]["name"], "n");
        assert_eq!(converted[2]["metadata"]["name"], "e");
    }
}
