//! Definite answers: a review whose object does not decode into the handler's type, or a body
//! that is not an `AdmissionReview` at all, is refused with `allowed: false` and code 400 in an
//! `AdmissionReview` (as controller-runtime answers), never with a bare HTTP error that a
//! `failurePolicy: Ignore` would turn into an admission.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use common::{TestCa, client_config, local_builder, pod_review, post, post_json, start, stop};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionRequest;
use serde_json::{Value, json};
use stackable_webhook::{CertSource, Mutation, RunningServer, Validation};

/// A server with an allowing validating and mutating route for Pods; the counter counts
/// handler calls (a refused review must never reach the handler).
async fn start_pod_routes() -> (RunningServer, Arc<rustls::ClientConfig>, Arc<AtomicU64>) {
    let ca = TestCa::new("answers-ca");
    let calls = Arc::new(AtomicU64::new(0));
    let (v, m) = (calls.clone(), calls.clone());
    let builder = local_builder()
        .certificates(CertSource::Static(ca.leaf(1)))
        .validating("/validate", move |_: AdmissionRequest<Pod>| {
            v.fetch_add(1, Ordering::Relaxed);
            async { Validation::allow() }
        })
        .mutating("/mutate", move |request: AdmissionRequest<Pod>| {
            m.fetch_add(1, Ordering::Relaxed);
            async move {
                match request.object {
                    Some(pod) => Mutation::patched(pod),
                    None => Mutation::unchanged(),
                }
            }
        });
    (start(builder).await, client_config(&ca.pem), calls)
}

/// Checks a refusal: HTTP 200, an AdmissionReview answering `uid`, `allowed: false`, code 400,
/// and a message containing every part of `says`. Returns the message.
fn assert_refused(
    status: u16,
    review: &Value,
    api_version: &str,
    uid: &str,
    says: &[&str],
) -> String {
    assert_eq!(status, 200, "{review}");
    assert_eq!(review["apiVersion"], api_version, "{review}");
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    let response = &review["response"];
    assert_eq!(response["uid"], uid, "{review}");
    assert_eq!(response["allowed"], false, "{review}");
    assert_eq!(response["status"]["code"], 400, "{review}");
    assert_eq!(response["status"]["status"], "Failure", "{review}");
    assert_eq!(response["status"]["reason"], "BadRequest", "{review}");
    let message = response["status"]["message"].as_str().unwrap().to_owned();
    for part in says {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    message
}

fn connect_review(uid: &str) -> Value {
    // What the API server sends for `kubectl exec` when a webhook's rules include CONNECT on
    // pods/exec: the object is a PodExecOptions, not a Pod.
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "PodExecOptions"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": "exec",
            "name": "web-0",
            "namespace": "default",
            "operation": "CONNECT",
            "userInfo": {"username": "tester"},
            "object": {"apiVersion": "v1", "kind": "PodExecOptions", "stdin": true, "command": ["sh"]},
            "oldObject": null,
            "dryRun": false
        }
    })
}

#[tokio::test]
async fn objects_that_do_not_decode_are_refused_with_the_uid() {
    let (server, client, calls) = start_pod_routes().await;
    let addr = server.local_addr();
    for path in ["/validate", "/mutate"] {
        // CONNECT options instead of a Pod.
        let answer = post_json(&client, addr, path, &connect_review("connect-1")).await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1",
            "connect-1",
            &["request.object", "PodExecOptions", "CONNECT", "Pod"],
        );

        // A Pod of a schema newer than the type: a field with another JSON type.
        let behind = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": {"main": {"image": "nginx"}}}
        });
        let answer = post_json(
            &client,
            addr,
            path,
            &pod_review("behind-1", "CREATE", behind),
        )
        .await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1",
            "behind-1",
            &["request.object", "CREATE"],
        );

        // Another kind than the handler's.
        let deployment =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
        let answer = post_json(
            &client,
            addr,
            path,
            &pod_review("kind-1", "CREATE", deployment),
        )
        .await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1",
            "kind-1",
            &["request.object", "Deployment"],
        );

        // An UPDATE whose oldObject does not decode (v1beta1: the answer keeps the version).
        let mut update = pod_review(
            "old-1",
            "UPDATE",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
        );
        update["apiVersion"] = json!("admission.k8s.io/v1beta1");
        update["request"]["oldObject"] =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": "broken"});
        let answer = post_json(&client, addr, path, &update).await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1beta1",
            "old-1",
            &["request.oldObject"],
        );

        // An envelope the API server would never send: no operation.
        let mut envelope = pod_review(
            "envelope-1",
            "CREATE",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
        );
        envelope["request"]
            .as_object_mut()
            .unwrap()
            .remove("operation");
        let answer = post_json(&client, addr, path, &envelope).await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1",
            "envelope-1",
            &["operation"],
        );
    }
    assert_eq!(
        calls.load(Ordering::Relaxed),
        0,
        "a refused review reached a handler"
    );
    stop(server).await;
}

#[tokio::test]
async fn bodies_that_are_not_reviews_are_refused_in_a_review() {
    let (server, client, calls) = start_pod_routes().await;
    let addr = server.local_addr();
    for path in ["/validate", "/mutate"] {
        let answer = post(
            &client,
            addr,
            path,
            "application/json",
            b"{not json".to_vec(),
        )
        .await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1",
            "",
            &["not valid JSON"],
        );

        // A review that is JSON but for one byte that is not UTF-8 inside a string (the fast
        // path checks UTF-8 once for the whole body): refused as not JSON, the handler not called.
        let mut not_utf8 = serde_json::to_vec(&connect_review("utf8-1")).unwrap();
        let at = not_utf8
            .windows(6)
            .position(|window| window == b"utf8-1")
            .unwrap();
        not_utf8[at + 4] = 0xff;
        let answer = post(&client, addr, path, "application/json", not_utf8).await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1",
            "",
            &["not valid JSON"],
        );

        let answer = post(&client, addr, path, "application/json", b"[1, 2]".to_vec()).await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1",
            "",
            &["AdmissionReview"],
        );

        // Not an AdmissionReview, but the uid is readable: it is echoed.
        let mut not_a_review = connect_review("kind-2");
        not_a_review["kind"] = json!("ConversionReview");
        let answer = post_json(&client, addr, path, &not_a_review).await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1",
            "kind-2",
            &["expected kind AdmissionReview", "ConversionReview"],
        );

        let mut unsupported = connect_review("version-1");
        unsupported["apiVersion"] = json!("admission.k8s.io/v2");
        let answer = post_json(&client, addr, path, &unsupported).await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1",
            "version-1",
            &["admission.k8s.io/v2", "admission.k8s.io/v1beta1"],
        );

        let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
        let answer = post_json(&client, addr, path, &no_request).await;
        assert_refused(
            answer.status,
            &answer.json(),
            "admission.k8s.io/v1",
            "",
            &["no request"],
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    stop(server).await;
}

/// A Pod as far as a label check looks: its metadata (`#[derive(Resource)]` inherits Pod's
/// group, version and kind). serde skips the rest of the object without building it.
#[derive(kube::Resource, Clone, Debug, serde::Deserialize, serde::Serialize)]
#[resource(inherit = "Pod")]
struct PodMetadata {
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
}

/// A handler type holding only what it checks answers like the whole type would (a mutation
/// patches only what it changed), and what is
/// not such an object (here CONNECT's `PodExecOptions`, which has no `metadata`) is still refused.
#[tokio::test]
async fn a_handler_type_with_only_metadata_validates_mutates_and_refuses_the_rest() {
    let ca = TestCa::new("answers-ca");
    let builder = local_builder()
        .certificates(CertSource::Static(ca.leaf(1)))
        .validating(
            "/labels",
            |request: AdmissionRequest<PodMetadata>| async move {
                let labels = request.object.and_then(|pod| pod.metadata.labels);
                match labels.as_ref().and_then(|labels| labels.get("tier")) {
                    Some(tier) if tier == "forbidden" => Validation::deny("tier forbidden"),
                    _ => Validation::allow(),
                }
            },
        )
        .mutating(
            "/label",
            |request: AdmissionRequest<PodMetadata>| async move {
                let Some(mut pod) = request.object else {
                    return Mutation::unchanged();
                };
                pod.metadata
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert("checked".to_owned(), "yes".to_owned());
                Mutation::patched(pod)
            },
        );
    let server = start(builder).await;
    let config = client_config(&ca.pem);
    let pod = |tier: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default", "labels": {"tier": tier}},
            "spec": {"containers": [{"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}]}]},
            "status": {"phase": "Pending"}
        })
    };
    let post = |path: &'static str, review: Value| {
        let config = config.clone();
        let addr = server.local_addr();
        async move {
            let answer = post_json(&config, addr, path, &review).await;
            let review: Value = serde_json::from_slice(&answer.body).unwrap();
            (answer.status, review)
        }
    };
    let (_, review) = post("/labels", pod_review("u-allowed", "CREATE", pod("web"))).await;
    assert_eq!(review["response"]["uid"], "u-allowed", "{review}");
    assert_eq!(review["response"]["allowed"], true, "{review}");

    let (_, review) = post(
        "/labels",
        pod_review("u-denied", "CREATE", pod("forbidden")),
    )
    .await;
    assert_eq!(review["response"]["uid"], "u-denied", "{review}");
    assert_eq!(review["response"]["allowed"], false, "{review}");
    assert_eq!(review["response"]["status"]["message"], "tier forbidden");

    // What the type does not hold (spec, status) is not touched by the patch.
    let (_, review) = post("/label", pod_review("u-label", "CREATE", pod("web"))).await;
    assert_eq!(review["response"]["allowed"], true, "{review}");
    let patch = review["response"]["patch"].as_str().unwrap();
    use base64::Engine as _;
    let patch: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/metadata/labels/checked", "value": "yes"}])
    );

    let (status, review) = post("/labels", connect_review("u-connect")).await;
    assert_refused(
        status,
        &review,
        "admission.k8s.io/v1",
        "u-connect",
        &["PodExecOptions", "PodMetadata", "metadata"],
    );
    stop(server).await;
}
