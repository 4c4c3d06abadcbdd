//! The Kubernetes `CertificateSigningRequest` controller against a real kube-apiserver:
//! `signerName` `<plural>.<group>/<name>` of the cluster issuer kind, approval through the
//! `/approval` subresource, `status.certificate` or the `Failed` condition, Events in the
//! `default` namespace; denied, unapproved, foreign and ignored (`ignore_certificate_request`)
//! CSRs left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use kube::api::PostParams;
use stackable_certs::Certificate;
use stackable_issuer::{IssuerControllers, IssuerResource as _};

fn csr(name: &str, signer: &str, script: &str) -> CertificateSigningRequest {
    let mut object = CertificateSigningRequest {
        metadata: meta(name),
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(csr_for(name).into_bytes()),
            signer_name: signer.into(),
            expiration_seconds: Some(3600),
            usages: Some(vec![
                "digital signature".into(),
                "key encipherment".into(),
                "client auth".into(),
            ]),
            ..Default::default()
        },
        status: None,
    };
    object.metadata.annotations = Some([(SIGN_ANNOTATION.to_string(), script.to_string())].into());
    object
}

async fn approve_csr(harness: &Harness, name: &str, approve: bool) {
    let api = harness.csrs();
    let mut csr = api.get(name).await.unwrap();
    let type_ = if approve { "Approved" } else { "Denied" };
    csr.status = Some(CertificateSigningRequestStatus {
        conditions: Some(vec![CertificateSigningRequestCondition {
            type_: type_.into(),
            status: "True".into(),
            reason: Some("E2E".into()),
            message: Some(format!("{type_} by the test")),
            ..Default::default()
        }]),
        certificate: None,
    });
    api.replace_subresource("approval", name, &PostParams::default(), &csr)
        .await
        .unwrap();
}

fn csr_certificate(csr: &CertificateSigningRequest) -> Option<Certificate> {
    let pem = csr.status.as_ref()?.certificate.as_ref()?;
    Some(Certificate::from_pem(std::str::from_utf8(&pem.0).ok()?).unwrap())
}

#[tokio::test]
async fn kubernetes_csrs_are_signed_by_cluster_issuers() {
    let harness = Harness::start(|c| c.certificate_requests(false)).await;
    let api = harness.csrs();
    let ns = harness.env.create_namespace("csrs").await.unwrap();
    harness.create_cluster_issuer("cluster", "ok").await;
    harness.create_issuer(&ns, "namespaced", "ok").await;
    wait_issuer(&harness.cluster_issuers(), "cluster", "True", "Checked").await;
    let signer = IssuerControllers::<ScriptedSigner>::signer_name("cluster");
    assert_eq!(
        signer,
        "testclusterissuers.test.issuer.stackable.tech/cluster"
    );

    let create = |object: CertificateSigningRequest| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), &object).await.unwrap() }
    };
    create(csr("approved", &signer, "ok")).await;
    create(csr("denied", &signer, "ok")).await;
    create(csr("unapproved", &signer, "ok")).await;
    create(csr("foreign", "example.com/other", "ok")).await;
    create(csr(
        "namespaced",
        &format!("testissuers.{GROUP}/{ns}.namespaced"),
        "ok",
    ))
    .await;
    create(csr("permanent", &signer, "permanent")).await;
    // One the user's ignore_certificate_request hook ignores (as it would a CertificateRequest).
    let mut ignored = csr("ignored", &signer, "ok");
    ignored
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(IGNORE_ANNOTATION.into(), "true".into());
    create(ignored).await;
    create(csr(
        "waits",
        &IssuerControllers::<ScriptedSigner>::signer_name("late"),
        "ok",
    ))
    .await;
    for name in [
        "approved",
        "foreign",
        "namespaced",
        "permanent",
        "waits",
        "ignored",
    ] {
        approve_csr(&harness, name, true).await;
    }
    approve_csr(&harness, "denied", false).await;

    // Approved through /approval and signed: status.certificate, the CSR's key and names,
    // the requested usages and expirationSeconds.
    let signed = wait_for(
        "the approved CSR signed",
        Duration::from_secs(20),
        || async { csr_certificate(&api.get("approved").await.ok()?) },
    )
    .await;
    assert!(signed.is_issued_by(harness.script.ca.certificate()));
    assert_eq!(signed.info().dns_names, ["approved.example.com"]);
    assert!(signed.info().client_auth && !signed.info().server_auth);
    let lifetime = signed.info().lifetime().whole_seconds();
    assert!((3600..=3600 + 300 + 1).contains(&lifetime), "{lifetime}");
    wait_for("an Issued event", Duration::from_secs(10), || async {
        let events = harness
            .events("default", "CertificateSigningRequest", "approved")
            .await;
        events
            .iter()
            .any(|(t, r, _)| t == "Normal" && r == "Issued")
            .then_some(())
    })
    .await;

    // A permanent error: the Failed condition.
    let failed = wait_for("the Failed condition", Duration::from_secs(20), || async {
        let csr = api.get("permanent").await.ok()?;
        csr.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Failed" && c.status == "True")
    })
    .await;
    assert_eq!(failed.reason.as_deref(), Some("Failed"));
    assert_eq!(
        failed.message.as_deref(),
        Some("CertificateSigningRequest has failed permanently: the CA refused the request")
    );

    // A missing cluster issuer: an Event, then signed once it exists.
    wait_for("WaitingForIssuerExist", Duration::from_secs(10), || async {
        let events = harness
            .events("default", "CertificateSigningRequest", "waits")
            .await;
        events
            .iter()
            .any(|(_, r, _)| r == "WaitingForIssuerExist")
            .then_some(())
    })
    .await;
    assert!(csr_certificate(&api.get("waits").await.unwrap()).is_none());
    harness.create_cluster_issuer("late", "ok").await;
    wait_for("the late CSR signed", Duration::from_secs(20), || async {
        csr_certificate(&api.get("waits").await.ok()?)
    })
    .await;

    // Denied, unapproved, foreign, namespaced-issuer and ignored CSRs are left alone; the
    // ignored one was asked about, and has no Event.
    wait_for(
        "the hook asked about it",
        Duration::from_secs(10),
        || async { (harness.script.ignores("ignored") >= 1).then_some(()) },
    )
    .await;
    assert!(
        harness
            .events("default", "CertificateSigningRequest", "ignored")
            .await
            .is_empty()
    );
    for name in ["denied", "unapproved", "foreign", "namespaced", "ignored"] {
        let csr = api.get(name).await.unwrap();
        assert!(csr_certificate(&csr).is_none(), "{name} was signed");
        let failed = csr
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Failed");
        assert!(!failed, "{name} was failed");
        assert_eq!(harness.script.signs(name), 0, "{name} reached sign");
    }
    let issuer = harness.issuers(&ns).get("namespaced").await.unwrap();
    assert!(issuer.ready_condition().is_some());
}
