//! The `ca-issuer` binary against a real kube-apiserver with cert-manager's CRDs (from the
//! cert-manager Go module), running as the ServiceAccount of `deploy/rbac.yaml`: issuers whose
//! Secret is missing, then present, then deleted; `CertificateRequest`s pre-approved,
//! unapproved, denied and malformed; what a request asks (duration, usages, isCA, SANs)
//! honoured, and refused where the issuer does not allow it; a Kubernetes CSR approved through
//! `/approval` and signed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use ca_issuer::api::{
    CAIssuer, CAIssuerSpec, CaIssuerConfig, ClusterCAIssuer, ClusterCAIssuerSpec,
};
use common::{control_plane, csr, root_ca, start_issuer};
use k8s_openapi::{
    ByteString,
    api::{
        certificates::v1::{
            CertificateSigningRequest, CertificateSigningRequestCondition,
            CertificateSigningRequestSpec, CertificateSigningRequestStatus,
        },
        core::v1::Secret,
        events::v1::Event,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use rcgen::{BasicConstraints, IsCa, SanType};
use stackable_certs::Certificate;
use stackable_issuer::{IssuerResource as _, api::CertificateRequest};

async fn wait_for<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    common::wait_for(what, Duration::from_secs(30), probe).await
}

fn ready(request: &CertificateRequest) -> (String, String, String) {
    request
        .condition("Ready")
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
        .unwrap_or_default()
}

async fn wait_request(
    api: &Api<CertificateRequest>,
    name: &str,
    status: &str,
    reason: &str,
) -> CertificateRequest {
    wait_for(&format!("{name} Ready={status}/{reason}"), || async {
        let request = api.get(name).await.ok()?;
        let (s, r, m) = ready(&request);
        assert!(r != "Failed" || reason == "Failed", "{name} failed: {m}");
        (s == status && r == reason).then_some(request)
    })
    .await
}

async fn wait_issuer<K: stackable_issuer::IssuerResource>(
    api: &Api<K>,
    name: &str,
    status: &str,
) -> K {
    wait_for(&format!("issuer {name} Ready={status}"), || async {
        let issuer = api.get(name).await.ok()?;
        (issuer.ready_condition()?.status == status).then_some(issuer)
    })
    .await
}

struct Requests {
    api: Api<CertificateRequest>,
    namespace: String,
}

impl Requests {
    async fn create(
        &self,
        name: &str,
        issuer: (&str, &str),
        spec: serde_json::Value,
        csr_pem: String,
        decision: Option<bool>,
    ) {
        let mut spec = spec;
        spec["request"] = serde_json::json!(ByteString(csr_pem.into_bytes()));
        spec["issuerRef"] = serde_json::json!({"kind": issuer.0, "name": issuer.1, "group": "ca-issuer.stackable.tech"});
        let request: CertificateRequest = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }))
        .unwrap();
        self.api
            .create(&PostParams::default(), &request)
            .await
            .unwrap();
        if let Some(approve) = decision {
            self.decide(name, approve).await;
        }
    }

    /// As cert-manager's approver does (another field manager).
    async fn decide(&self, name: &str, approve: bool) {
        let type_ = if approve { "Approved" } else { "Denied" };
        let now = k8s_openapi::jiff::Timestamp::now();
        let now = k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap();
        let body = serde_json::json!({
            "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
            "metadata": {"name": name, "namespace": self.namespace},
            "status": {"conditions": [{"type": type_, "status": "True", "reason": "e2e",
                "message": "by the test", "lastTransitionTime": now.to_string()}]},
        });
        self.api
            .patch_status(
                name,
                &PatchParams::apply("e2e-approver").force(),
                &Patch::Apply(&body),
            )
            .await
            .unwrap();
    }
}

fn certificate_of(request: &CertificateRequest) -> Vec<Certificate> {
    let pem = &request
        .status
        .as_ref()
        .unwrap()
        .certificate
        .as_ref()
        .unwrap()
        .0;
    Certificate::all_from_pem(std::str::from_utf8(pem).unwrap()).unwrap()
}

#[tokio::test]
async fn the_ca_issuer_signs_what_its_issuers_allow() {
    let (env, client) = control_plane(&["team"]).await;
    let (root_secret, root) = root_ca("root-ca", "ca-issuer");
    Api::<Secret>::namespaced(client.clone(), "ca-issuer")
        .create(&PostParams::default(), &root_secret)
        .await
        .unwrap();
    let _issuer = start_issuer(
        &env,
        &["--recheck-interval", "1s", "--max-retry-duration", "20s"],
    );

    // A ClusterCAIssuer whose Secret exists (in the cluster resource namespace): Ready.
    let cluster_issuers: Api<ClusterCAIssuer> = Api::all(client.clone());
    let cluster = ClusterCAIssuer::new(
        "cluster-ca",
        ClusterCAIssuerSpec {
            config: CaIssuerConfig {
                secret_name: "root-ca".into(),
                allow_ca: true,
                max_duration: None,
            },
        },
    );
    cluster_issuers
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
    let cluster = wait_issuer(&cluster_issuers, "cluster-ca", "True").await;
    assert_eq!(cluster.ready_condition().unwrap().reason, "Checked");

    // A CAIssuer whose Secret is missing: not Ready, and a request for it waits.
    let issuers: Api<CAIssuer> = Api::namespaced(client.clone(), "team");
    let mut team = CAIssuer::new(
        "team-ca",
        CAIssuerSpec {
            config: CaIssuerConfig {
                secret_name: "team-ca".into(),
                allow_ca: false,
                max_duration: Some("720h".into()),
            },
        },
    );
    team.metadata.namespace = Some("team".into());
    issuers.create(&PostParams::default(), &team).await.unwrap();
    let team = wait_issuer(&issuers, "team-ca", "False").await;
    assert_eq!(
        team.ready_condition().unwrap().message,
        "Not ready yet: Secret team/team-ca not found"
    );
    let requests = Requests {
        api: Api::namespaced(client.clone(), "team"),
        namespace: "team".into(),
    };
    let plain =
        serde_json::json!({"usages": ["digital signature", "key encipherment", "server auth"]});
    requests
        .create(
            "early",
            ("CAIssuer", "team-ca"),
            plain.clone(),
            csr("early", |_| {}),
            Some(true),
        )
        .await;
    let early = wait_request(&requests.api, "early", "False", "Pending").await;
    assert!(
        ready(&early).2.contains("Secret team/team-ca not found"),
        "{:?}",
        ready(&early)
    );

    // The Secret appears: the re-check makes the issuer Ready, which wakes the request.
    let (team_secret, team_root) = root_ca("team-ca", "team");
    Api::<Secret>::namespaced(client.clone(), "team")
        .create(&PostParams::default(), &team_secret)
        .await
        .unwrap();
    wait_issuer(&issuers, "team-ca", "True").await;
    let early = wait_request(&requests.api, "early", "True", "Issued").await;
    let chain = certificate_of(&early);
    assert_eq!(chain.len(), 1, "a root CA is not part of the chain");
    assert!(chain[0].is_issued_by(&team_root));
    // No duration asked: the issuer's maxDuration (720 h) instead of the default 90 days.
    let lifetime = chain[0].info().lifetime().whole_seconds();
    assert!(
        (720 * 3600..=720 * 3600 + 301).contains(&lifetime),
        "lifetime {lifetime} s"
    );

    // What the request asks: duration, usages and the CSR's names.
    requests
        .create(
            "server",
            ("ClusterCAIssuer", "cluster-ca"),
            serde_json::json!({"duration": "1h", "usages": ["server auth", "digital signature", "key encipherment"]}),
            csr("server", |p| p.subject_alt_names.push(SanType::IpAddress("10.1.2.3".parse().unwrap()))),
            Some(true),
        )
        .await;
    let server = wait_request(&requests.api, "server", "True", "Issued").await;
    let leaf = &certificate_of(&server)[0];
    assert!(leaf.is_issued_by(&root));
    assert_eq!(leaf.info().dns_names, ["server.example.com"]);
    assert_eq!(
        leaf.info().ip_addresses,
        ["10.1.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(leaf.info().server_auth && !leaf.info().client_auth && !leaf.info().is_ca);
    let lifetime = leaf.info().lifetime().whole_seconds();
    assert!(
        (3600..=3600 + 301).contains(&lifetime),
        "lifetime {lifetime} s"
    );

    // A CA certificate where the issuer allows it, refused where it does not.
    let ca_spec =
        serde_json::json!({"isCA": true, "usages": ["digital signature", "key encipherment"]});
    requests
        .create(
            "sub-ca",
            ("ClusterCAIssuer", "cluster-ca"),
            ca_spec.clone(),
            csr("sub-ca", |_| {}),
            Some(true),
        )
        .await;
    let sub = wait_request(&requests.api, "sub-ca", "True", "Issued").await;
    let sub = &certificate_of(&sub)[0];
    assert!(sub.info().is_ca && sub.info().key_cert_sign);
    requests
        .create(
            "wants-ca",
            ("CAIssuer", "team-ca"),
            ca_spec,
            csr("wants-ca", |_| {}),
            Some(true),
        )
        .await;
    let refused = wait_request(&requests.api, "wants-ca", "False", "Failed").await;
    assert_eq!(
        ready(&refused).2,
        "Failed permanently to sign CertificateRequest: this issuer does not sign CA certificates (spec.allowCA is false)"
    );
    assert!(refused.status.as_ref().unwrap().failure_time.is_some());

    // A CSR whose extensions disagree with the spec, and a duration beyond maxDuration.
    let asks_ca = csr("mismatch", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
    });
    requests
        .create(
            "mismatch",
            ("ClusterCAIssuer", "cluster-ca"),
            plain.clone(),
            asks_ca,
            Some(true),
        )
        .await;
    let mismatch = wait_request(&requests.api, "mismatch", "False", "Failed").await;
    assert!(
        ready(&mismatch).2.contains("CA:TRUE"),
        "{:?}",
        ready(&mismatch)
    );
    requests
        .create(
            "too-long",
            ("CAIssuer", "team-ca"),
            serde_json::json!({"duration": "10000h"}),
            csr("too-long", |_| {}),
            Some(true),
        )
        .await;
    let too_long = wait_request(&requests.api, "too-long", "False", "Failed").await;
    assert!(
        ready(&too_long)
            .2
            .contains("longer than this issuer's maxDuration 30days"),
        "{:?}",
        ready(&too_long)
    );

    // Unapproved and foreign (a kind of the group that is not ours): untouched; denied:
    // Denied; malformed: Failed; for a missing issuer: Pending.
    requests
        .create(
            "foreign",
            ("Issuer", "team-ca"),
            plain.clone(),
            csr("foreign", |_| {}),
            Some(true),
        )
        .await;
    requests
        .create(
            "no-issuer",
            ("CAIssuer", "nobody"),
            plain.clone(),
            csr("no-issuer", |_| {}),
            Some(true),
        )
        .await;
    requests
        .create(
            "unapproved",
            ("CAIssuer", "team-ca"),
            plain.clone(),
            csr("unapproved", |_| {}),
            None,
        )
        .await;
    requests
        .create(
            "denied",
            ("CAIssuer", "team-ca"),
            plain.clone(),
            csr("denied", |_| {}),
            Some(false),
        )
        .await;
    let garbage =
        "-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n";
    requests
        .create(
            "malformed",
            ("CAIssuer", "team-ca"),
            plain.clone(),
            garbage.into(),
            Some(true),
        )
        .await;
    wait_request(&requests.api, "denied", "False", "Denied").await;
    wait_request(&requests.api, "malformed", "False", "Failed").await;
    let waiting = wait_request(&requests.api, "no-issuer", "False", "Pending").await;
    assert_eq!(
        ready(&waiting).2,
        "CAIssuer.ca-issuer.stackable.tech \"nobody\" not found. Waiting for it to be created."
    );
    assert_eq!(ready(&requests.api.get("unapproved").await.unwrap()).0, "");
    assert_eq!(ready(&requests.api.get("foreign").await.unwrap()).0, "");

    // Events, published as the issuer's ServiceAccount.
    let events: Api<Event> = Api::namespaced(client.clone(), "team");
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("early"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"WaitingForIssuerReady".to_string()),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"Issued".to_string()), "{reasons:?}");

    // A Kubernetes CSR for the ClusterCAIssuer, approved through /approval, signed.
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let kube_csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some("kube-client".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr("kube-client", |_| {}).into_bytes()),
            signer_name: "clustercaissuers.ca-issuer.stackable.tech/cluster-ca".into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            expiration_seconds: Some(7200),
            ..Default::default()
        },
        status: None,
    };
    let mut created = csrs
        .create(&PostParams::default(), &kube_csr)
        .await
        .unwrap();
    created.status = Some(CertificateSigningRequestStatus {
        conditions: Some(vec![CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("E2E".into()),
            message: Some("approved by the test".into()),
            ..Default::default()
        }]),
        certificate: None,
    });
    csrs.replace_subresource("approval", "kube-client", &PostParams::default(), &created)
        .await
        .unwrap();
    let signed = wait_for("the Kubernetes CSR signed", || async {
        let csr = csrs.get("kube-client").await.ok()?;
        let pem = csr.status?.certificate?;
        Certificate::from_pem(std::str::from_utf8(&pem.0).ok()?).ok()
    })
    .await;
    assert!(signed.is_issued_by(&root));
    assert!(signed.info().client_auth && !signed.info().server_auth);
    assert!((7200..=7200 + 301).contains(&signed.info().lifetime().whole_seconds()));

    // The CA Secret vanishes: the periodic re-check turns the issuer not Ready, and new
    // requests wait instead of failing.
    Api::<Secret>::namespaced(client.clone(), "team")
        .delete("team-ca", &Default::default())
        .await
        .unwrap();
    let team = wait_issuer(&issuers, "team-ca", "False").await;
    assert_eq!(team.ready_condition().unwrap().reason, "Pending");
    requests
        .create(
            "late",
            ("CAIssuer", "team-ca"),
            plain,
            csr("late", |_| {}),
            Some(true),
        )
        .await;
    let late = wait_request(&requests.api, "late", "False", "Pending").await;
    assert!(
        ready(&late).2.contains("Secret team/team-ca not found"),
        "{:?}",
        ready(&late)
    );
}
