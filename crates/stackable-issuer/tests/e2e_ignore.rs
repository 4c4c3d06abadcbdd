//! The ignore hooks (issuer-lib's `IgnoreIssuer` and `IgnoreCertificateRequest`) against a
//! real kube-apiserver: an issuer and requests the user's hooks ignore are asked about and then
//! left untouched (no condition, no Event, no `check`, no `sign`), while their neighbours are
//! checked and signed; a hook that fails is asked again (backoff) and writes nothing either.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use kube::api::PostParams;
use stackable_issuer::IssuerResource as _;

#[tokio::test]
async fn ignored_issuers_and_requests_are_left_untouched() {
    let harness = Harness::start(|c| c).await;
    let ns = harness.env.create_namespace("ignore").await.unwrap();
    let issuers = harness.issuers(&ns);
    let requests = harness.requests(&ns);

    // An issuer the hook ignores, created before the one it does not.
    let mut ignored = TestIssuer::new("ignored", TestIssuerSpec::default());
    ignored.metadata.namespace = Some(ns.clone());
    ignored.metadata.annotations = Some([(IGNORE_ANNOTATION.into(), "true".into())].into());
    issuers
        .create(&PostParams::default(), &ignored)
        .await
        .unwrap();
    harness.create_issuer(&ns, "ca", "ok").await;
    wait_issuer(&issuers, "ca", "True", "Checked").await;
    wait_for(
        "the hook asked about the ignored issuer",
        Duration::from_secs(10),
        || async { (harness.script.ignores("ignored") >= 1).then_some(()) },
    )
    .await;

    // Requests to the Ready issuer: one signed, one ignored, one whose hook fails.
    let issuer_ref = ("TestIssuer", GROUP, "ca");
    for name in ["signed", "ignored-request", "hook-fails"] {
        let request = harness
            .create_request(&ns, name, issuer_ref, "", None)
            .await;
        let mut request = request;
        let annotations = request.metadata.annotations.get_or_insert_default();
        match name {
            "ignored-request" => annotations.insert(IGNORE_ANNOTATION.into(), "true".into()),
            "hook-fails" => annotations.insert(IGNORE_ANNOTATION.into(), "error".into()),
            _ => None,
        };
        requests
            .replace(name, &PostParams::default(), &request)
            .await
            .unwrap();
        harness.decide(&ns, name, true).await;
    }
    wait_ready(&requests, "signed", "True", "Issued").await;
    wait_for(
        "the hook asked about the ignored request",
        Duration::from_secs(10),
        || async { (harness.script.ignores("ignored-request") >= 1).then_some(()) },
    )
    .await;
    // A failing hook is retried with backoff (100 ms doubling in the harness).
    wait_for(
        "the failing hook asked three times",
        Duration::from_secs(10),
        || async { (harness.script.ignores("hook-fails") >= 3).then_some(()) },
    )
    .await;

    // Longer than the re-check interval (1 s) and several backoff steps: still untouched.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let issuer = issuers.get("ignored").await.unwrap();
    assert!(
        issuer
            .issuer_status()
            .is_none_or(|s| s.conditions.is_empty()),
        "{:?}",
        issuer.status
    );
    assert_eq!(harness.script.checks("ignored"), 0);
    assert!(
        harness
            .events(&ns, "TestIssuer", "ignored")
            .await
            .is_empty()
    );
    for name in ["ignored-request", "hook-fails"] {
        let request = requests.get(name).await.unwrap();
        assert_eq!(ready_of(&request), None, "{name}: {:?}", request.status);
        assert!(
            request.condition("Approved").is_some(),
            "{name}: the approver's condition stays"
        );
        assert_eq!(harness.script.signs(name), 0, "{name}");
        assert!(
            harness
                .events(&ns, "CertificateRequest", name)
                .await
                .is_empty(),
            "{name}"
        );
    }
    // The signed request had its Events, so the absence above is not a slow recorder.
    assert!(
        !harness
            .events(&ns, "CertificateRequest", "signed")
            .await
            .is_empty()
    );
}
