//! What the sidecar-injector's API-server tests share: the Pods they create, and the
//! deployment of `deploy/` (namespace, RBAC, a Service on this machine behind a forwarder)
//! that the replicas run against.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use serde_json::json;
use sidecar_injector::INJECT_LABEL;
use stackable_testenv::{TestEnv, forwarder::Forwarder};

/// The namespace of `deploy/`.
pub const NAMESPACE: &str = "sidecar-injector";
/// The Service of `deploy/` the webhook configurations call.
pub const SERVICE: &str = "sidecar-injector";
/// The ServiceAccount of `deploy/`, as the API server names it.
pub const SERVICE_ACCOUNT: &str = "system:serviceaccount:sidecar-injector:sidecar-injector";

/// A Pod with one container, labelled for injection or not, with resource limits or not
/// (the validating webhook refuses a labelled Pod without limits).
pub fn pod(name: &str, labelled: bool, limits: bool) -> Pod {
    let labels = if labelled {
        json!({INJECT_LABEL: "true"})
    } else {
        json!({})
    };
    let resources = if limits {
        json!({"limits": {"cpu": "200m", "memory": "128Mi"}})
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1", "resources": resources}]}
    }))
    .unwrap()
}

/// `deploy/namespace.yaml` and `deploy/rbac.yaml` applied, the Service `SERVICE` pointing at
/// this machine, a forwarder on its port (playing kube-proxy for the replicas), and a
/// namespace of its own for the test's Pods (the webhooks exclude their own namespace).
#[allow(missing_debug_implementations)]
pub struct Deployed {
    /// The cluster admin's client.
    pub client: Client,
    /// A kubeconfig impersonating the deployment's ServiceAccount, for the replicas.
    pub kubeconfig: std::path::PathBuf,
    /// The namespace for the test's Pods.
    pub namespace: String,
    /// The forwarder in front of the replicas.
    pub forwarder: Forwarder,
    /// The forwarder's (and the Service's) port.
    pub port: u16,
}

/// See [`Deployed`].
pub async fn deploy(env: &TestEnv) -> Deployed {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    env.kubectl_apply(format!("{deploy}/namespace.yaml"))
        .unwrap();
    env.kubectl_apply(format!("{deploy}/rbac.yaml")).unwrap();
    let kubeconfig = env.kubeconfig_as(SERVICE_ACCOUNT).unwrap();
    let namespace = env.create_namespace("apps").await.unwrap();
    env.create_external_name_service(NAMESPACE, SERVICE)
        .await
        .unwrap();
    let forwarder = Forwarder::kube_proxy().await.unwrap();
    let port = forwarder.local_addr().port();
    Deployed {
        client: env.client().unwrap(),
        kubeconfig,
        namespace,
        forwarder,
        port,
    }
}
