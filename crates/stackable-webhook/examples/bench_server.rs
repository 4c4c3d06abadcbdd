//! The stackable-webhook side of `cargo xtask bench`: the same three handlers as the Go peer
//! (`xtask/bench/go-peer`, controller-runtime's webhook server), served over TLS from PEM files.
//!
//! - `POST /validate`: a validating webhook for Pods; denies a Pod labelled
//!   `bench.stackable.tech/deny=true`.
//! - `POST /validate-metadata`: the same check, with a handler type holding only the Pod's
//!   metadata (`PodMetadata` below): serde skips the rest of the object without building it. Not a
//!   `cargo xtask bench` scenario (the Go peer decodes whole Pods); measured in
//!   `docs/webhook-server.md`, "Decode only what you check".
//! - `POST /mutate`: a mutating webhook for Pods; adds the label
//!   `bench.stackable.tech/mutated=true` (the server computes the JSON Patch).
//! - `POST /convert`: CRD conversion
//!   (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>)
//!   between `bench.stackable.tech/v1` and `v2` CronTabs, typed, through stackable-conversion's
//!   `ConversionRouter` (what an operator built with this kit serves).
//!
//! ```text
//! cargo run --release -p stackable-webhook --example bench_server -- \
//!     --cert tls.crt --key tls.key --addr 127.0.0.1:9443
//! ```
//!
//! Logs at info level to stderr (`RUST_LOG` overrides), as an operator would run it.
//!
//! Its allocator is the system's (glibc's on this project's machines); `bench_server_mimalloc`
//! is this same server with mimalloc as the global allocator (`cargo xtask bench --peer
//! ours-mimalloc`, docs/webhook-server.md, "The allocator").

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{Resource, core::admission::AdmissionRequest};
use serde::Deserialize;
use snafu::{ResultExt, Snafu};
use stackable_conversion::{BuildError, ConversionRouter, KindConverter};
use stackable_webhook::{CertSource, FileSource, Mutation, Validation, WebhookServer};

const DENY_LABEL: &str = "bench.stackable.tech/deny";
const MUTATED_LABEL: &str = "bench.stackable.tech/mutated";

/// A Pod as far as the validating handler looks: its metadata. The `Resource` impl is Pod's.
#[derive(Resource, Clone, Debug, Deserialize)]
#[resource(inherit = "Pod")]
struct PodMetadata {
    metadata: ObjectMeta,
}

mod v1 {
    //! `bench.stackable.tech/v1` CronTab: a cron expression, an image and a replica count.
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// The v1 spec.
    #[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "bench.stackable.tech",
        version = "v1",
        kind = "CronTab",
        namespaced
    )]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct CronTabSpec {
        pub(crate) cron_spec: String,
        pub(crate) image: String,
        #[serde(default, skip_serializing_if = "super::is_zero")]
        pub(crate) replicas: i32,
    }
}

mod v2 {
    //! `bench.stackable.tech/v2` CronTab (the hub): the cron expression moved into a schedule.
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// v2's structured schedule.
    #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Schedule {
        pub(crate) cron: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub(crate) time_zone: String,
    }

    /// The v2 spec.
    #[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "bench.stackable.tech",
        version = "v2",
        kind = "CronTab",
        namespaced
    )]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct CronTabSpec {
        pub(crate) schedule: Schedule,
        pub(crate) image: String,
        #[serde(default, skip_serializing_if = "super::is_zero")]
        pub(crate) replicas: i32,
    }
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

// The same conversions as the Go peer's ConvertTo/ConvertFrom.
impl From<v1::CronTab> for v2::CronTab {
    fn from(old: v1::CronTab) -> Self {
        v2::CronTab {
            metadata: old.metadata,
            spec: v2::CronTabSpec {
                schedule: v2::Schedule {
                    cron: old.spec.cron_spec,
                    time_zone: "UTC".to_owned(),
                },
                image: old.spec.image,
                replicas: old.spec.replicas,
            },
        }
    }
}

impl From<v2::CronTab> for v1::CronTab {
    fn from(new: v2::CronTab) -> Self {
        v1::CronTab {
            metadata: new.metadata,
            spec: v1::CronTabSpec {
                cron_spec: new.spec.schedule.cron,
                image: new.spec.image,
                replicas: new.spec.replicas,
            },
        }
    }
}

/// The CronTab conversions, v2 as the hub, served by stackable-conversion's router (metadata
/// carried through as raw JSON, lossless round trips through the stash annotation).
fn converter() -> Result<ConversionRouter, BuildError> {
    KindConverter::builder()
        .hub::<v2::CronTab>()
        .step::<v1::CronTab, v2::CronTab>()
        .build()
        .map(ConversionRouter::from)
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

/// The validating handlers' check: deny a Pod labelled `DENY_LABEL=true`.
fn verdict(metadata: Option<&ObjectMeta>) -> Validation {
    match metadata {
        Some(metadata) if has_deny_label(metadata.labels.as_ref()) => Validation::deny(format!(
            "pod {} carries {DENY_LABEL}=true",
            metadata.name.as_deref().unwrap_or_default()
        )),
        _ => Validation::allow(),
    }
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
    /// The CronTab versions are inconsistent (a programming error).
    #[snafu(display("the CronTab conversion graph is invalid"))]
    Conversion {
        /// What is wrong.
        source: BuildError,
    },
    /// The server failed to start or stopped with an error.
    #[snafu(display("the webhook server failed"))]
    Serve {
        /// The server error.
        source: stackable_webhook::ServerError,
    },
}

/// Serves until killed (also the entry point of `bench_server_mimalloc`, which imports it).
#[snafu::report]
#[tokio::main]
pub(crate) async fn main() -> Result<(), Error> {
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
            verdict(request.object.as_ref().map(|pod| &pod.metadata))
        })
        .validating(
            "/validate-metadata",
            |request: AdmissionRequest<PodMetadata>| async move {
                verdict(request.object.as_ref().map(|pod| &pod.metadata))
            },
        )
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
        .conversion("/convert", converter().context(ConversionSnafu)?)
        .build()
        .context(ServeSnafu)?
        .run()
        .await
        .context(ServeSnafu)
}
