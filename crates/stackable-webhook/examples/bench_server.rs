//! The stackable-webhook side of `cargo xtask bench`: the same three handlers as the Go peer
//! (`xtask/bench/go-peer`, controller-runtime's webhook server), served over TLS from PEM files.
//!
//! - `POST /validate`: a validating webhook for Pods; denies a Pod labelled
//!   `bench.stackable.tech/deny=true`.
//! - `POST /mutate`: a mutating webhook for Pods; adds the label
//!   `bench.stackable.tech/mutated=true` (the server computes the JSON Patch).
//! - `POST /convert`: CRD conversion
//!   (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>)
//!   between `bench.stackable.tech/v1` and `v2` CronTabs, typed, through a hand-written
//!   [`Converter`].
//!
//! ```text
//! cargo run --release -p stackable-webhook --example bench_server -- \
//!     --cert tls.crt --key tls.key --addr 127.0.0.1:9443
//! ```
//!
//! Logs at info level to stderr (`RUST_LOG` overrides), as an operator would run it.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::core::{
    Status,
    admission::AdmissionRequest,
    conversion::{ConversionRequest, ConversionResponse},
    response::StatusSummary,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use snafu::{ResultExt, Snafu};
use stackable_webhook::{CertSource, Converter, FileSource, Mutation, Validation, WebhookServer};

const DENY_LABEL: &str = "bench.stackable.tech/deny";
const MUTATED_LABEL: &str = "bench.stackable.tech/mutated";
const V1: &str = "bench.stackable.tech/v1";
const V2: &str = "bench.stackable.tech/v2";

/// The v1 spec: a cron expression, an image and a replica count.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct CronTabSpecV1 {
    cron_spec: String,
    image: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    replicas: i32,
}

/// v2's structured schedule.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Schedule {
    cron: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    time_zone: String,
}

/// The v2 spec: the cron expression moved into a schedule object.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct CronTabSpecV2 {
    schedule: Schedule,
    image: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    replicas: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A CronTab in either version (`apiVersion` picks the spec type).
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct CronTab<S> {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    spec: S,
}

/// Converts CronTabs between v1 and v2 (typed, one object at a time).
#[derive(Debug)]
struct CronTabConverter;

impl CronTabConverter {
    fn convert_one(object: Value, desired: &str) -> Result<Value, String> {
        let version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let converted = match (version.as_str(), desired) {
            (V1, V2) => {
                let old: CronTab<CronTabSpecV1> =
                    serde_json::from_value(object).map_err(|e| format!("bad v1 CronTab: {e}"))?;
                serde_json::to_value(CronTab {
                    api_version: V2.to_owned(),
                    kind: old.kind,
                    metadata: old.metadata,
                    spec: CronTabSpecV2 {
                        schedule: Schedule {
                            cron: old.spec.cron_spec,
                            time_zone: "UTC".to_owned(),
                        },
                        image: old.spec.image,
                        replicas: old.spec.replicas,
                    },
                })
            }
            (V2, V1) => {
                let old: CronTab<CronTabSpecV2> =
                    serde_json::from_value(object).map_err(|e| format!("bad v2 CronTab: {e}"))?;
                serde_json::to_value(CronTab {
                    api_version: V1.to_owned(),
                    kind: old.kind,
                    metadata: old.metadata,
                    spec: CronTabSpecV1 {
                        cron_spec: old.spec.schedule.cron,
                        image: old.spec.image,
                        replicas: old.spec.replicas,
                    },
                })
            }
            (from, to) => return Err(format!("cannot convert {from:?} to {to:?}")),
        };
        converted.map_err(|e| format!("cannot serialise the converted CronTab: {e}"))
    }
}

impl Converter for CronTabConverter {
    fn convert(&self, mut request: ConversionRequest) -> ConversionResponse {
        let objects = std::mem::take(&mut request.objects);
        let desired = request.desired_api_version.clone();
        let converted: Result<Vec<Value>, String> = objects
            .into_iter()
            .map(|object| Self::convert_one(object, &desired))
            .collect();
        let response = ConversionResponse::for_request(request);
        match converted {
            Ok(objects) => response.success(objects),
            Err(message) => response.failure(Status {
                status: Some(StatusSummary::Failure),
                code: 400,
                message,
                metadata: None,
                reason: "BadRequest".to_owned(),
                details: None,
            }),
        }
    }
}

/// Command-line arguments (parsed by hand: the example needs no CLI crate).
struct Args {
    cert: PathBuf,
    key: PathBuf,
    addr: SocketAddr,
}

fn parse_args() -> Result<Args, String> {
    let mut cert = None;
    let mut key = None;
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 9443));
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--cert" => cert = Some(PathBuf::from(value()?)),
            "--key" => key = Some(PathBuf::from(value()?)),
            "--addr" => {
                let text = value()?;
                addr = text
                    .parse()
                    .map_err(|e| format!("bad --addr {text:?}: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        cert: cert.ok_or("--cert is required")?,
        key: key.ok_or("--key is required")?,
        addr,
    })
}

fn has_deny_label(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|labels| labels.get(DENY_LABEL))
        .is_some_and(|value| value == "true")
}

/// Why the server did not run.
#[derive(Debug, Snafu)]
enum Error {
    /// The command line is wrong.
    #[snafu(display("{message} (usage: bench_server --cert PEM --key PEM [--addr IP:PORT])"))]
    Usage {
        /// What is wrong.
        message: String,
    },
    /// The server failed to start or stopped with an error.
    #[snafu(display("the webhook server failed"))]
    Serve {
        /// The server error.
        source: stackable_webhook::ServerError,
    },
}

#[snafu::report]
#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = parse_args().map_err(|message| Error::Usage { message })?;

    WebhookServer::builder()
        .bind(args.addr)
        .certificates(CertSource::Files(FileSource::paths(args.cert, args.key)))
        .validating("/validate", |request: AdmissionRequest<Pod>| async move {
            match request.object.as_ref() {
                Some(pod) if has_deny_label(pod.metadata.labels.as_ref()) => {
                    Validation::deny(format!(
                        "pod {} carries {DENY_LABEL}=true",
                        pod.metadata.name.as_deref().unwrap_or_default()
                    ))
                }
                _ => Validation::allow(),
            }
        })
        .mutating("/mutate", |request: AdmissionRequest<Pod>| async move {
            let Some(mut pod) = request.object else {
                return Mutation::unchanged();
            };
            pod.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(MUTATED_LABEL.to_owned(), "true".to_owned());
            Mutation::patched(pod)
        })
        .conversion("/convert", CronTabConverter)
        .build()
        .context(ServeSnafu)?
        .run()
        .await
        .context(ServeSnafu)
}
