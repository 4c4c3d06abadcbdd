//! Converts ConversionReviews the way the webhook does (raw JSON in, raw JSON out, see
//! `ConversionRouter::convert_raw`) and prints wall and CPU time: one review of 10,000 CronTabs
//! with `managedFields` (~8.9 MB, the shape of a LIST from the API server) and 2,000 reviews of
//! 100. Correctness is checked first (every answer passes `check_response_strict`, the round
//! trip gives the objects back). Run on one core:
//!
//! ```text
//! cargo build --release -p stackable-conversion --example bench_10k
//! taskset -c 1 target/release/examples/bench_10k [all|big|small] [objects] [rounds]
//! ```
//!
//! With `--features webhook`, each review is answered by stackable-webhook's conversion route
//! (its validating read of the body, the router, the answer's envelope; no HTTP) instead of a
//! serde_json parse of the review and the router.
//!
//! Figures and where the time goes: `docs/conversion.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::time::{Duration, Instant};

use kube::{CustomResource, core::conversion::ConversionRequest};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stackable_conversion::{ConversionRouter, KindConverter, check_response_strict};

mod v1beta1 {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "bench.io",
        version = "v1beta1",
        kind = "CronTab",
        namespaced,
        status = "Status"
    )]
    #[serde(rename_all = "camelCase")]
    pub struct CronTabSpec {
        pub cron_spec: String,
        pub image: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replicas: Option<i32>,
        pub host_port: String,
    }
    #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub active: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub last_schedule_time: Option<String>,
    }
}
mod v1 {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "bench.io",
        version = "v1",
        kind = "CronTab",
        namespaced,
        status = "Status"
    )]
    #[serde(rename_all = "camelCase")]
    pub struct CronTabSpec {
        pub schedule: String,
        pub image: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replicas: Option<i32>,
        pub host: String,
        pub port: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub time_zone: Option<String>,
    }
    #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub active_jobs: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub last_schedule_time: Option<String>,
    }
}

impl TryFrom<v1beta1::CronTab> for v1::CronTab {
    type Error = String;
    fn try_from(j: v1beta1::CronTab) -> Result<Self, String> {
        let (host, port) = j.spec.host_port.rsplit_once(':').ok_or("no port")?;
        let port = port.parse().map_err(|_| "bad port")?;
        Ok(v1::CronTab {
            metadata: j.metadata,
            spec: v1::CronTabSpec {
                schedule: j.spec.cron_spec,
                image: j.spec.image,
                replicas: j.spec.replicas,
                host: host.into(),
                port,
                time_zone: None,
            },
            status: j.status.map(|s| v1::Status {
                active_jobs: s.active,
                last_schedule_time: s.last_schedule_time,
            }),
        })
    }
}
impl From<v1::CronTab> for v1beta1::CronTab {
    fn from(j: v1::CronTab) -> Self {
        v1beta1::CronTab {
            metadata: j.metadata,
            spec: v1beta1::CronTabSpec {
                cron_spec: j.spec.schedule,
                image: j.spec.image,
                replicas: j.spec.replicas,
                host_port: format!("{}:{}", j.spec.host, j.spec.port),
            },
            status: j.status.map(|s| v1beta1::Status {
                active: s.active_jobs,
                last_schedule_time: s.last_schedule_time,
            }),
        }
    }
}

/// A v1beta1 CronTab as the API server lists it.
fn object(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "bench.io/v1beta1", "kind": "CronTab",
        "metadata": {
            "creationTimestamp": "2026-11-02T09:14:27Z", "generation": 1,
            "labels": {"app.kubernetes.io/instance": format!("reports-{i}"), "app.kubernetes.io/name": "reports"},
            "managedFields": [{"apiVersion": "bench.io/v1beta1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/instance": {}, "f:app.kubernetes.io/name": {}}},
                             "f:spec": {".": {}, "f:cronSpec": {}, "f:hostPort": {}, "f:image": {}, "f:replicas": {}}},
                "manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-11-02T09:14:27Z"}],
            "name": format!("crontab-{i:05}"), "namespace": "shop", "resourceVersion": format!("{}", 184_000 + i),
            "uid": format!("6b1c3e2a-4d5f-4a6b-9c7d-{i:012}")
        },
        "spec": {"cronSpec": "*/5 * * * *", "hostPort": format!("db-{i}.example.org:5432"), "image": "registry.example.com/shop/report-runner:3.2.1", "replicas": 1 + (i % 3)},
        "status": {"active": i % 4, "lastScheduleTime": "2026-11-02T09:20:00Z"}
    })
}

fn review(n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "request": {"uid": "u", "desiredAPIVersion": "bench.io/v1",
                    "objects": (0..n).map(object).collect::<Vec<_>>()}
    }))
    .unwrap()
}

/// The envelope, as the webhook route read it with serde_json: objects stay raw JSON.
#[cfg(not(feature = "webhook"))]
#[derive(Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    request: Request<'a>,
}

#[cfg(not(feature = "webhook"))]
#[derive(Deserialize)]
struct Request<'a> {
    #[serde(rename = "desiredAPIVersion")]
    desired: &'a str,
    #[serde(borrow)]
    objects: Vec<&'a serde_json::value::RawValue>,
}

#[cfg(feature = "webhook")]
fn answer(router: &ConversionRouter, body: &[u8]) -> Vec<u8> {
    let (status, out) = stackable_webhook::fuzzing::conversion_review(router, body);
    assert_eq!(status, 200);
    out
}

#[cfg(not(feature = "webhook"))]
fn answer(router: &ConversionRouter, body: &[u8]) -> Vec<u8> {
    let review: Review<'_> = serde_json::from_str(std::str::from_utf8(body).unwrap()).unwrap();
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    router
        .convert_raw(&review.request.objects, review.request.desired, &mut out)
        .unwrap();
    out
}

/// CPU time of this thread (`/proc/thread-self/schedstat`, nanoseconds on CPU).
fn cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(
        text.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    )
}

fn check(router: &ConversionRouter) {
    let objects: Vec<Value> = (0..50).map(object).collect();
    let request = ConversionRequest {
        types: None,
        uid: "check".into(),
        desired_api_version: "bench.io/v1".into(),
        objects: objects.clone(),
    };
    let up = router.convert_request(request.clone());
    check_response_strict(&request, &up).unwrap();
    let request = ConversionRequest {
        types: None,
        uid: "check".into(),
        desired_api_version: "bench.io/v1beta1".into(),
        objects: up.converted_objects,
    };
    let down = router.convert_request(request.clone());
    check_response_strict(&request, &down).unwrap();
    assert_eq!(down.converted_objects, objects);
}

fn main() {
    let router = ConversionRouter::from(
        KindConverter::builder()
            .hub::<v1::CronTab>()
            .step::<v1beta1::CronTab, v1::CronTab>()
            .build()
            .unwrap(),
    );
    check(&router);
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "all".to_owned());
    let count: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    if mode != "small" {
        let big = review(count);
        println!("review of {count} objects: {} bytes", big.len());
        for _ in 0..rounds {
            let (wall, cpu0) = (Instant::now(), cpu());
            let out = answer(&router, &big);
            let (wall, cpu) = (wall.elapsed(), cpu() - cpu0);
            assert!(out.len() > big.len() / 2);
            println!("  {count} objects: {wall:.1?} wall, {cpu:.1?} CPU");
        }
    }
    if mode != "big" {
        let small = review(100);
        let n = 2_000u32;
        let (wall, cpu0) = (Instant::now(), cpu());
        for _ in 0..n {
            std::hint::black_box(answer(&router, &small));
        }
        let (wall, cpu) = (wall.elapsed() / n, (cpu() - cpu0) / n);
        println!(
            "review of 100 objects ({} bytes): {wall:.1?} wall, {cpu:.1?} CPU per review",
            small.len()
        );
    }
}
