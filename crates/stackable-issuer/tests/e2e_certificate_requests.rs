//! The `CertificateRequest` controller against a real kube-apiserver with cert-manager's CRDs:
//! every rule of issuer-lib's order (unapproved, denied, foreign, missing, not-ready and
//! outdated issuers, malformed CSRs, every kind of `sign` error, the retry window, custom
//! conditions), the conditions' transitions as a watch sees them, Events, and the field owner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use kube::{
    ResourceExt as _,
    api::{Patch, PatchParams},
};
use stackable_certs::Certificate;
use stackable_issuer::{IssuerResource as _, api::CertificateRequest};

const NS_KIND: (&str, &str) = ("TestIssuer", GROUP);

fn issued_certificate(request: &CertificateRequest) -> Certificate {
    let pem = request
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .expect("status.certificate");
    Certificate::from_pem(std::str::from_utf8(&pem.0).unwrap()).unwrap()
}

fn failure_time(request: &CertificateRequest) -> Option<i64> {
    request
        .status
        .as_ref()
        .and_then(|s| s.failure_time.as_ref())
        .map(|t| t.0.as_second())
}

#[tokio::test]
async fn certificate_requests_follow_issuer_libs_order() {
    let harness = Harness::start(|c| c.certificate_signing_requests(false)).await;
    let ns = harness.env.create_namespace("requests").await.unwrap();
    let requests = harness.requests(&ns);
    let (timeline, _watch) = Timeline::record(requests.clone(), request_ready);
    harness.create_issuer(&ns, "ready", "ok").await;
    wait_issuer(&harness.issuers(&ns), "ready", "True", "Checked").await;
    let ours = |name| (NS_KIND.0, NS_KIND.1, name);

    // Not approved: untouched; once approved: Initializing, then Issued.
    harness
        .create_request(&ns, "unapproved", ours("ready"), "ok", None)
        .await;
    // A foreign issuerRef (cert-manager's own kind, or our group with another kind) is never
    // touched, approved or not.
    harness
        .create_request(
            &ns,
            "foreign",
            ("Issuer", "cert-manager.io", "ready"),
            "ok",
            None,
        )
        .await;
    harness.decide(&ns, "foreign", true).await;
    harness
        .create_request(&ns, "foreign-kind", ("Other", GROUP, "ready"), "ok", None)
        .await;
    harness.decide(&ns, "foreign-kind", true).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for name in ["unapproved", "foreign", "foreign-kind"] {
        let request = requests.get(name).await.unwrap();
        assert_eq!(ready_of(&request), None, "{name} was touched");
        assert_eq!(harness.script.signs(name), 0, "{name} was signed");
    }
    harness.decide(&ns, "unapproved", true).await;
    let request = wait_ready(&requests, "unapproved", "True", "Issued").await;
    timeline
        .assert_states(
            "unapproved",
            &[("Unknown", "Initializing"), ("True", "Issued")],
        )
        .await;
    let certificate = issued_certificate(&request);
    assert!(certificate.is_issued_by(harness.script.ca.certificate()));
    assert_eq!(certificate.info().dns_names, ["unapproved.example.com"]);
    assert!(certificate.info().server_auth && !certificate.info().client_auth);
    assert_eq!(failure_time(&request), None);
    assert!(
        request.status.as_ref().unwrap().ca.is_none(),
        "status.ca is off by default"
    );
    assert_eq!(
        ready_of(&request).unwrap().2,
        "Succeeded signing the CertificateRequest"
    );
    // The approver's condition survives our server-side applies; each owner has its fields.
    assert!(request.has_true("Approved"));
    let managers: Vec<_> = request
        .managed_fields()
        .iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&FIELD_OWNER.to_string())
            && managers.contains(&"e2e-approver".to_string()),
        "{managers:?}"
    );
    // A status write does not wake the controller again: signed exactly once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(harness.script.signs("unapproved"), 1);
    harness
        .wait_event(&ns, "CertificateRequest", "unapproved", |(t, r, _)| {
            t == "Normal" && r == "Issued"
        })
        .await;

    // Denied: Ready=False/Denied with failureTime, never signed.
    harness
        .create_request(&ns, "denied", ours("ready"), "ok", None)
        .await;
    harness.decide(&ns, "denied", false).await;
    let request = wait_ready(&requests, "denied", "False", "Denied").await;
    assert!(failure_time(&request).is_some());
    timeline
        .assert_states("denied", &[("False", "Denied")])
        .await;
    assert_eq!(harness.script.signs("denied"), 0);
    harness
        .wait_event(&ns, "CertificateRequest", "denied", |(t, r, _)| {
            t == "Warning" && r == "PermanentError"
        })
        .await;

    // The issuer is missing, then not ready, then ready: Pending all along, woken by the
    // issuer's watch each time (nothing touches the request).
    harness
        .create_request(&ns, "waits", ours("later"), "ok", None)
        .await;
    harness.decide(&ns, "waits", true).await;
    let request = wait_ready(&requests, "waits", "False", "Pending").await;
    assert_eq!(
        ready_of(&request).unwrap().2,
        "TestIssuer.test.issuer.stackable.tech \"later\" not found. Waiting for it to be created."
    );
    harness
        .wait_event(&ns, "CertificateRequest", "waits", |(t, r, _)| {
            t == "Normal" && r == "WaitingForIssuerExist"
        })
        .await;
    harness
        .create_issuer(&ns, "later", "retryable:warming up")
        .await;
    wait_for("waiting for a not-ready issuer", Duration::from_secs(20), || async {
        let request = requests.get("waits").await.ok()?;
        (ready_of(&request)?.2
            == "Waiting for issuer to become ready. Current issuer ready condition is \"Pending\": Not ready yet: warming up.")
            .then_some(())
    })
    .await;
    assert_eq!(harness.script.signs("waits"), 0);
    harness
        .issuers(&ns)
        .patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"check": "ok"}})),
        )
        .await
        .unwrap();
    wait_ready(&requests, "waits", "True", "Issued").await;
    assert_eq!(harness.script.signs("waits"), 1);
    timeline
        .assert_states(
            "waits",
            &[
                ("Unknown", "Initializing"),
                ("False", "Pending"),
                ("True", "Issued"),
            ],
        )
        .await;
    harness
        .wait_event(&ns, "CertificateRequest", "waits", |(_, r, _)| {
            r == "WaitingForIssuerReady"
        })
        .await;

    // The issuer's Ready condition is behind its generation while a slow check runs: the
    // request waits, and is woken when the condition catches up (its status stays True).
    harness
        .issuers(&ns)
        .patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"check": "slow"}})),
        )
        .await
        .unwrap();
    harness
        .create_request(&ns, "outdated", ours("later"), "ok", None)
        .await;
    harness.decide(&ns, "outdated", true).await;
    let request = wait_ready(&requests, "outdated", "False", "Pending").await;
    assert_eq!(
        ready_of(&request).unwrap().2,
        "Waiting for issuer to become ready. Current issuer ready condition is outdated."
    );
    let issuer = harness.issuers(&ns).get("later").await.unwrap();
    assert_eq!(issuer.ready_condition().unwrap().status, "True");
    wait_ready(&requests, "outdated", "True", "Issued").await;
    let issuer = harness.issuers(&ns).get("later").await.unwrap();
    assert_eq!(
        issuer.ready_condition().unwrap().observed_generation,
        issuer.metadata.generation
    );

    // A malformed CSR fails permanently.
    let garbage =
        "-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n";
    harness
        .create_request(&ns, "malformed", ours("ready"), "ok", Some(garbage))
        .await;
    harness.decide(&ns, "malformed", true).await;
    let request = wait_ready(&requests, "malformed", "False", "Failed").await;
    let message = ready_of(&request).unwrap().2;
    assert!(
        message.starts_with(
            "Failed permanently to sign CertificateRequest: the request's CSR is unusable"
        ),
        "{message}"
    );
    assert!(failure_time(&request).is_some());

    // A permanent error: Failed at once, signed once.
    harness
        .create_request(&ns, "permanent", ours("ready"), "permanent", None)
        .await;
    harness.decide(&ns, "permanent", true).await;
    let request = wait_ready(&requests, "permanent", "False", "Failed").await;
    assert_eq!(
        ready_of(&request).unwrap().2,
        "Failed permanently to sign CertificateRequest: the CA refused the request"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(harness.script.signs("permanent"), 1);

    // A retryable error: Pending and retried with backoff until the maximum retry duration
    // since creation has passed; then Failed.
    let created = harness
        .create_request(&ns, "retryable", ours("ready"), "retryable", None)
        .await;
    harness.decide(&ns, "retryable", true).await;
    let request = wait_ready(&requests, "retryable", "False", "Pending").await;
    assert_eq!(
        ready_of(&request).unwrap().2,
        "Failed to sign CertificateRequest, will retry: the CA is busy"
    );
    let request = wait_ready(&requests, "retryable", "False", "Failed").await;
    let created = created.metadata.creation_timestamp.unwrap().0.as_second();
    let failed = failure_time(&request).unwrap();
    assert!(
        failed - created >= MAX_RETRY.as_secs() as i64,
        "failed after {} s",
        failed - created
    );
    assert!(
        harness.script.signs("retryable") >= 3,
        "{} attempts",
        harness.script.signs("retryable")
    );
    harness
        .wait_event(&ns, "CertificateRequest", "retryable", |(t, r, _)| {
            t == "Warning" && r == "RetryableError"
        })
        .await;

    // Pending: requeued after its delay, beyond the retry window, then issued.
    harness
        .create_request(&ns, "pending", ours("ready"), "pending-6", None)
        .await;
    harness.decide(&ns, "pending", true).await;
    let request = wait_ready(&requests, "pending", "False", "Pending").await;
    assert_eq!(
        ready_of(&request).unwrap().2,
        "Signing still in progress. Reason: queued at the CA"
    );
    wait_ready(&requests, "pending", "True", "Issued").await;
    assert_eq!(harness.script.signs("pending"), 7);

    // An issuer error: the issuer is marked not Ready and checked again; the request waits
    // for it and is then signed.
    let checks = harness.script.checks("ready");
    harness
        .create_request(&ns, "issuer-error", ours("ready"), "issuer-once", None)
        .await;
    harness.decide(&ns, "issuer-error", true).await;
    wait_ready(&requests, "issuer-error", "True", "Issued").await;
    assert_eq!(harness.script.signs("issuer-error"), 2);
    assert!(harness.script.checks("ready") > checks);
    harness
        .wait_event(&ns, "TestIssuer", "ready", |(t, r, n)| {
            t == "Warning"
                && r == "RetryableError"
                && n == "Not ready yet: the CA key was rotated away"
        })
        .await;
    wait_issuer(&harness.issuers(&ns), "ready", "True", "Checked").await;

    // A custom condition beside Ready, and no requeue: the condition's change wakes it.
    harness
        .create_request(&ns, "custom", ours("ready"), "custom-hold", None)
        .await;
    harness.decide(&ns, "custom", true).await;
    let request = wait_for("the custom condition", Duration::from_secs(20), || async {
        let request = requests.get("custom").await.ok()?;
        request.has_true("Queued").then_some(request)
    })
    .await;
    let queued = request.condition("Queued").unwrap();
    assert_eq!(queued.reason.as_deref(), Some("AtCA"));
    assert_eq!(queued.message.as_deref(), Some("waiting for a human"));
    assert_eq!(ready_of(&request).unwrap().1, "Pending");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        harness.script.signs("custom"),
        2,
        "signed again once for the condition's change, then left alone"
    );

    // A cluster issuer, and an issuerRef without a kind (the first kind, the namespaced one).
    harness.create_cluster_issuer("cluster", "ok").await;
    harness
        .create_request(
            &ns,
            "to-cluster",
            ("TestClusterIssuer", GROUP, "cluster"),
            "ok",
            None,
        )
        .await;
    harness.decide(&ns, "to-cluster", true).await;
    wait_ready(&requests, "to-cluster", "True", "Issued").await;
    harness
        .create_request(&ns, "no-kind", ("", GROUP, "ready"), "ok", None)
        .await;
    harness.decide(&ns, "no-kind", true).await;
    wait_ready(&requests, "no-kind", "True", "Issued").await;
}
