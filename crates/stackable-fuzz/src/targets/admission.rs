//! stackable-webhook's admission routes: the body of an `AdmissionReview` as the API server
//! sends it, decoded into the handler's type (here `Pod`) or refused with a definite answer.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::head;
use crate::Target;

/// See the module docs.
pub const ADMISSION_REVIEW: Target = Target {
    name: "admission_review",
    about: "stackable-webhook: an AdmissionReview body decoded into AdmissionRequest<Pod>, or \
            refused with allowed: false and code 400 in an AdmissionReview answering its uid",
    run: admission_review,
    seeds,
    dictionary: &[
        "AdmissionReview",
        "admission.k8s.io/v1",
        "admission.k8s.io/v1beta1",
        "request",
        "object",
        "oldObject",
        "uid",
        "operation",
        "CREATE",
        "UPDATE",
        "DELETE",
        "CONNECT",
        "kind",
        "apiVersion",
        "Pod",
        "PodExecOptions",
        "dryRun",
        "containers",
        "metadata",
        "managedFields",
    ],
    max_len: 256 * 1024,
    slow: Duration::from_millis(200),
};

/// Decodes `input`; a refusal must be an `AdmissionReview` with `allowed: false`, code 400 and
/// the request's uid (when the body has a readable one).
pub fn admission_review(input: &[u8]) -> String {
    match stackable_webhook::fuzzing::admission_review::<Pod>(input) {
        Ok(request) => {
            // What a handler reads must be there.
            let _ = (&request.uid, &request.kind, request.object.as_ref());
            "decoded".to_owned()
        }
        Err((status, body)) => {
            assert_eq!(
                status, 200,
                "a refusal is an AdmissionReview, not HTTP {status}"
            );
            let answer: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|error| panic!("the refusal is not JSON: {error}"));
            assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
            let response = &answer["response"];
            assert_eq!(response["allowed"], false, "{answer}");
            assert_eq!(response["status"]["code"], 400, "{answer}");
            if let Ok(review) = serde_json::from_slice::<Value>(input)
                && let Some(uid) = review.pointer("/request/uid").and_then(Value::as_str)
            {
                assert_eq!(response["uid"], uid, "the refusal answers another uid");
            }
            let message = response["status"]["message"].as_str().unwrap_or_default();
            format!("refused:{}", head(message))
        }
    }
}

fn review(api_version: &str, operation: &str, object: Value, old: Value) -> Vec<u8> {
    let review = json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web-0",
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin", "uid": "014fbff9a07c", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    });
    serde_json::to_vec(&review).unwrap_or_default()
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app": "web"},
            "annotations": {"example.com/note": "x"},
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}
            }],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]
        },
        "status": {"phase": "Pending"}
    })
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        review("admission.k8s.io/v1", "CREATE", pod("web-0"), Value::Null),
        review("admission.k8s.io/v1", "UPDATE", pod("web-0"), pod("web-0")),
        review("admission.k8s.io/v1", "DELETE", Value::Null, pod("web-0")),
        review(
            "admission.k8s.io/v1beta1",
            "CREATE",
            pod("web-1"),
            Value::Null,
        ),
        review(
            "admission.k8s.io/v1",
            "CONNECT",
            json!({"apiVersion": "v1", "kind": "PodExecOptions", "command": ["sh"], "stdin": true}),
            Value::Null,
        ),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
    ]
}
