//! Request bodies of `cargo xtask bench`: an `AdmissionReview` carrying a realistic Pod
//! (~4 KiB, as the API server sends it after defaulting) and a `ConversionReview` of CronTabs.
//!
//! The shapes follow
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request>
//! and
//! <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-request-and-response>.

use serde_json::{Value, json};

/// The label the validating handlers of both peers deny on.
pub(crate) const DENY_LABEL: &str = "bench.stackable.tech/deny";
/// The label the mutating handlers of both peers add.
pub(crate) const MUTATED_LABEL: &str = "bench.stackable.tech/mutated";
/// The UID of every benchmark review.
pub(crate) const REVIEW_UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";
/// The version the conversion review asks for.
pub(crate) const DESIRED_VERSION: &str = "bench.stackable.tech/v2";

/// A Pod as a validating or mutating webhook receives it on CREATE: defaulted, two
/// containers, probes, volumes, an owner reference. `deny` adds the label the validating
/// handlers refuse.
pub(crate) fn pod(deny: bool) -> Value {
    let mut labels = json!({
        "app.kubernetes.io/name": "checkout",
        "app.kubernetes.io/instance": "checkout-prod",
        "app.kubernetes.io/component": "api",
        "app.kubernetes.io/part-of": "shop",
        "app.kubernetes.io/managed-by": "shop-operator",
        "pod-template-hash": "7d9f8b6c5d"
    });
    if deny {
        labels[DENY_LABEL] = json!("true");
    }
    let env: Vec<Value> = [
        ("LOG_LEVEL", "info"),
        ("HTTP_PORT", "8080"),
        ("METRICS_PORT", "9090"),
        ("DATABASE_HOST", "postgres.shop.svc.cluster.local"),
        ("DATABASE_NAME", "checkout"),
        ("CACHE_URL", "redis://redis.shop.svc.cluster.local:6379/0"),
        ("FEATURE_FLAGS", "new-cart,fast-checkout,async-payments"),
    ]
    .into_iter()
    .map(|(name, value)| json!({"name": name, "value": value}))
    .collect();
    let probe = |path: &str, delay: u32| {
        json!({
            "httpGet": {"path": path, "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": delay, "timeoutSeconds": 1, "periodSeconds": 10,
            "successThreshold": 1, "failureThreshold": 3
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "checkout-api-7d9f8b6c5d-",
            "namespace": "shop",
            "creationTimestamp": null,
            "labels": labels,
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                "kubectl.kubernetes.io/default-container": "api"
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-api-7d9f8b6c5d",
                "uid": "3f1c2a4e-9b7d-4c6e-8a1f-2d3b4c5e6f70",
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": "checkout-config", "defaultMode": 420}},
                {"name": "tls", "secret": {"secretName": "checkout-tls", "defaultMode": 420}},
                {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]}}
            ],
            "containers": [
                {
                    "name": "api",
                    "image": "registry.example.com/shop/checkout-api:2.14.3",
                    "args": ["--config=/etc/checkout/config.yaml", "--tls-dir=/etc/tls"],
                    "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
                    ],
                    "env": env,
                    "resources": {
                        "limits": {"cpu": "2", "memory": "1Gi"},
                        "requests": {"cpu": "500m", "memory": "512Mi"}
                    },
                    "volumeMounts": [
                        {"name": "config", "readOnly": true, "mountPath": "/etc/checkout"},
                        {"name": "tls", "readOnly": true, "mountPath": "/etc/tls"},
                        {"name": "kube-api-access-x7k2p", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
                    ],
                    "livenessProbe": probe("/healthz", 10),
                    "readinessProbe": probe("/readyz", 5),
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                    "securityContext": {
                        "capabilities": {"drop": ["ALL"]},
                        "runAsNonRoot": true,
                        "readOnlyRootFilesystem": true,
                        "allowPrivilegeEscalation": false
                    }
                },
                {
                    "name": "log-shipper",
                    "image": "registry.example.com/infra/log-shipper:1.9.0",
                    "args": ["--input=/var/log/app", "--output=loki"],
                    "resources": {
                        "limits": {"cpu": "200m", "memory": "128Mi"},
                        "requests": {"cpu": "50m", "memory": "64Mi"}
                    },
                    "volumeMounts": [
                        {"name": "kube-api-access-x7k2p", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
                    ],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent"
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "checkout",
            "serviceAccount": "checkout",
            "securityContext": {"fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {}
    })
}

/// An `admission.k8s.io/v1` `AdmissionReview` for a Pod CREATE.
pub(crate) fn pod_review(deny: bool) -> Value {
    let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": REVIEW_UID,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "a1b2c3d4-0000-4000-8000-000000000001",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
            },
            "object": pod(deny),
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// The `managedFields` the API server keeps on a CronTab created with `kubectl apply` (most
/// of the bytes of an object in a LIST).
fn managed_fields(i: usize) -> Value {
    json!([{
        "apiVersion": "bench.stackable.tech/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {
                "f:annotations": {".": {}, "f:shop.example.com/owner": {}},
                "f:labels": {".": {}, "f:app.kubernetes.io/instance": {}, "f:app.kubernetes.io/name": {}, "f:tier": {}}
            },
            "f:spec": {".": {}, "f:cronSpec": {}, "f:image": {}, "f:replicas": {}}
        },
        "manager": "kubectl-client-side-apply",
        "operation": "Update",
        "time": format!("2026-11-02T09:{:02}:27Z", i % 60)
    }])
}

/// An `apiextensions.k8s.io/v1` `ConversionReview` of `count` v1 CronTabs with their
/// `managedFields`, asking for v2: what the API server sends when a client lists CronTabs
/// stored as v1 in version v2 (~800 bytes per object).
pub(crate) fn conversion_review_of_list(count: usize) -> Value {
    let mut review = conversion_review(count);
    if let Some(objects) = review["request"]["objects"].as_array_mut() {
        for (i, object) in objects.iter_mut().enumerate() {
            object["metadata"]["managedFields"] = managed_fields(i);
        }
    }
    review
}

/// An `apiextensions.k8s.io/v1` `ConversionReview` of `count` v1 CronTabs, asking for v2.
pub(crate) fn conversion_review(count: usize) -> Value {
    let objects: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "apiVersion": "bench.stackable.tech/v1",
                "kind": "CronTab",
                "metadata": {
                    "name": format!("crontab-{i:03}"),
                    "namespace": "shop",
                    "uid": format!("6b1c3e2a-4d5f-4a6b-9c7d-{i:012}"),
                    "resourceVersion": format!("{}", 184_000 + i),
                    "generation": 3,
                    "creationTimestamp": "2026-11-02T09:14:27Z",
                    "labels": {
                        "app.kubernetes.io/name": "reports",
                        "app.kubernetes.io/instance": format!("reports-{i}"),
                        "tier": "batch"
                    },
                    "annotations": {"shop.example.com/owner": "team-reports"}
                },
                "spec": {
                    "cronSpec": "*/5 * * * *",
                    "image": "registry.example.com/shop/report-runner:3.2.1",
                    "replicas": 1 + (i % 3)
                }
            })
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {
            "uid": REVIEW_UID,
            "desiredAPIVersion": DESIRED_VERSION,
            "objects": objects
        }
    })
}
