//! Converts one ConversionReview of 10,000 objects (the API server's large LIST case) in both
//! directions and prints how long each took. Run with
//! `cargo run --release -p stackable-conversion --example bench_10k`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::time::Instant;

use kube::{CustomResource, core::conversion::ConversionRequest};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use stackable_conversion::{ConversionRouter, KindConverter, check_response};

mod v1beta1 {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(group = "bench.io", version = "v1beta1", kind = "Job", namespaced)]
    #[serde(rename_all = "camelCase")]
    pub struct JobSpec {
        pub host_port: String,
        pub image: String,
    }
}
mod v1 {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(group = "bench.io", version = "v1", kind = "Job", namespaced)]
    #[serde(rename_all = "camelCase")]
    pub struct JobSpec {
        pub host: String,
        pub port: u16,
        pub image: String,
        pub time_zone: Option<String>,
    }
}

impl TryFrom<v1beta1::Job> for v1::Job {
    type Error = String;
    fn try_from(j: v1beta1::Job) -> Result<Self, String> {
        let (host, port) = j.spec.host_port.rsplit_once(':').ok_or("no port")?;
        let port = port.parse().map_err(|_| "bad port")?;
        Ok(v1::Job {
            metadata: j.metadata,
            spec: v1::JobSpec {
                host: host.into(),
                port,
                image: j.spec.image,
                time_zone: None,
            },
        })
    }
}
impl From<v1::Job> for v1beta1::Job {
    fn from(j: v1::Job) -> Self {
        v1beta1::Job {
            metadata: j.metadata,
            spec: v1beta1::JobSpec {
                host_port: format!("{}:{}", j.spec.host, j.spec.port),
                image: j.spec.image,
            },
        }
    }
}

fn object(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "bench.io/v1", "kind": "Job",
        "metadata": {
            "name": format!("job-{i}"), "namespace": "bench", "uid": format!("uid-{i}"),
            "resourceVersion": i.to_string(), "generation": 1,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"app": "bench", "index": i.to_string()},
            "managedFields": [{"apiVersion": "bench.io/v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:host": {}, "f:port": {}}}, "manager": "bench",
                "operation": "Update", "time": "2025-01-01T00:00:00Z"}]
        },
        "spec": {"host": format!("host-{i}.example.org"), "port": 8000 + (i % 1000),
                 "image": "busybox:1", "timeZone": if i.is_multiple_of(2) { json!("UTC") } else { json!(null) }}
    })
}

fn main() {
    let router = ConversionRouter::from(
        KindConverter::builder()
            .hub::<v1::Job>()
            .step::<v1beta1::Job, v1::Job>()
            .build()
            .unwrap(),
    );
    let objects: Vec<_> = (0..10_000).map(object).collect();

    let request = ConversionRequest {
        types: None,
        uid: "bench-down".into(),
        desired_api_version: "bench.io/v1beta1".into(),
        objects,
    };
    let start = Instant::now();
    let down = router.convert_request(request.clone());
    let down_time = start.elapsed();
    check_response(&request, &down).unwrap();
    assert!(down.result.is_success(), "{}", down.result.message);

    let request = ConversionRequest {
        types: None,
        uid: "bench-up".into(),
        desired_api_version: "bench.io/v1".into(),
        objects: down.converted_objects,
    };
    let start = Instant::now();
    let up = router.convert_request(request.clone());
    let up_time = start.elapsed();
    check_response(&request, &up).unwrap();
    assert!(up.result.is_success(), "{}", up.result.message);
    assert_eq!(
        up.converted_objects,
        (0..10_000).map(object).collect::<Vec<_>>()
    );

    println!("10000 objects v1 -> v1beta1 (half of them stashing timeZone): {down_time:?}");
    println!("10000 objects v1beta1 -> v1 (restoring the stash):            {up_time:?}");
}
