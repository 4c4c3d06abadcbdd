//! Two `ca-issuer` processes against a real kube-apiserver, as the ServiceAccount of
//! `deploy/rbac.yaml` (whose Role grants the Lease by name): one holds the Lease and signs, the
//! other stands by (ready, leader gauge 0, no reconciliation); the leader is SIGKILLed and the
//! other takes over once the Lease expires and signs a new request; then that leader gets
//! SIGTERM, exits cleanly after releasing the Lease, and a third process takes over and signs;
//! the Lease is taken from under that one, which stops its controllers, then leads again.
//! `/livez`, `/healthz`, `/readyz` and `/metrics` (OpenMetrics) over plain HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{net::SocketAddr, time::Duration};

use ca_issuer::api::{CAIssuer, CAIssuerSpec, CaIssuerConfig};
use common::{control_plane, csr, http_get, root_ca, sample, start_issuer_named, wait_for};
use k8s_openapi::{
    ByteString,
    api::{coordination::v1::Lease, core::v1::Secret},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use stackable_certs::Certificate;
use stackable_issuer::{IssuerResource as _, api::CertificateRequest};

/// The Lease duration the processes get: the standby takes over at most 4 s (plus a third)
/// after the leader died.
const LEASE: &str = "4s";

async fn metrics(address: SocketAddr) -> String {
    let (status, body) = http_get(address, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF: {body}"
    );
    body
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("ca-issuer")
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

async fn signed_request(api: &Api<CertificateRequest>, name: &str) -> CertificateRequest {
    let request: CertificateRequest = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "team"},
        "spec": {
            "request": ByteString(csr(name, |_| {}).into_bytes()),
            "issuerRef": {"kind": "CAIssuer", "name": "team-ca", "group": "ca-issuer.stackable.tech"},
            "usages": ["digital signature", "key encipherment", "server auth"],
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &request).await.unwrap();
    let now = k8s_openapi::jiff::Timestamp::now();
    let now = k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap();
    let approval = serde_json::json!({
        "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
        "metadata": {"name": name, "namespace": "team"},
        "status": {"conditions": [{"type": "Approved", "status": "True", "reason": "e2e",
            "message": "by the test", "lastTransitionTime": now.to_string()}]},
    });
    api.patch_status(
        name,
        &PatchParams::apply("e2e-approver").force(),
        &Patch::Apply(&approval),
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let request = api.get(name).await.unwrap();
        if request.condition("Ready").is_some_and(|ready| {
            ready.status == "True" && ready.reason.as_deref() == Some("Issued")
        }) {
            return request;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} not Issued after 30 s: {:?}",
            request.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_replica_signs_and_the_other_takes_over_when_it_dies() {
    let (env, client) = control_plane(&["team"]).await;
    let (team_secret, team_root) = root_ca("team-ca", "team");
    Api::<Secret>::namespaced(client.clone(), "team")
        .create(&PostParams::default(), &team_secret)
        .await
        .unwrap();
    let args = ["--lease-duration", LEASE, "--recheck-interval", "2s"];
    let mut a = start_issuer_named(&env, "issuer-a", &args);
    let mut b = start_issuer_named(&env, "issuer-b", &args);

    // Both serve /livez and /healthz, and both become ready: the leader once its watches have
    // synced, the standby as a standby.
    for process in [&a, &b] {
        for path in ["/livez", "/healthz", "/readyz"] {
            wait_for(
                &format!("{path} 200 on {}", process.health),
                Duration::from_secs(30),
                || async { (http_get(process.health, path).await?.0 == 200).then_some(()) },
            )
            .await;
        }
        assert_eq!(http_get(process.health, "/nope").await.unwrap().0, 404);
    }

    // One of them holds the Lease.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "ca-issuer");
    let leader = wait_for("a Lease holder", Duration::from_secs(30), || {
        holder(&leases)
    })
    .await;
    assert!(leader == "issuer-a" || leader == "issuer-b", "{leader}");
    let (leading, standby) = if leader == "issuer-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let standby_address = standby.health;

    // The leader checks the issuer and signs.
    let issuers: Api<CAIssuer> = Api::namespaced(client.clone(), "team");
    let mut team = CAIssuer::new(
        "team-ca",
        CAIssuerSpec {
            config: CaIssuerConfig {
                secret_name: "team-ca".into(),
                allow_ca: false,
                max_duration: None,
            },
        },
    );
    team.metadata.namespace = Some("team".into());
    issuers.create(&PostParams::default(), &team).await.unwrap();
    let requests: Api<CertificateRequest> = Api::namespaced(client.clone(), "team");
    let first = signed_request(&requests, "first").await;
    let pem = first.status.unwrap().certificate.unwrap().0;
    let chain = Certificate::all_from_pem(std::str::from_utf8(&pem).unwrap()).unwrap();
    assert!(chain[0].is_issued_by(&team_root));

    let leader_metrics = metrics(leading.health).await;
    assert_eq!(sample(&leader_metrics, "issuer_leader"), Some(1.0));
    assert_eq!(
        sample(
            &leader_metrics,
            "issuer_signed_total{kind=\"CertificateRequest\"}"
        ),
        Some(1.0),
        "{leader_metrics}"
    );
    assert!(
        sample(
            &leader_metrics,
            "issuer_reconciles_total{kind=\"CertificateRequest\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "{leader_metrics}"
    );
    assert!(
        sample(
            &leader_metrics,
            "issuer_reconciles_total{kind=\"CAIssuer\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{leader_metrics}"
    );
    // The standby reconciled nothing: no second writer.
    let standby_metrics = metrics(standby_address).await;
    assert_eq!(sample(&standby_metrics, "issuer_leader"), Some(0.0));
    assert!(
        !standby_metrics.contains("issuer_reconciles_total{"),
        "{standby_metrics}"
    );

    // SIGKILL: the Lease is not released; the standby takes over once it expires.
    leading.kill();
    let killed_at = std::time::Instant::now();
    let new_leader = wait_for("a new Lease holder", Duration::from_secs(30), || async {
        holder(&leases).await.filter(|h| *h != leader)
    })
    .await;
    println!(
        "{new_leader} took over {:?} after {leader} was killed",
        killed_at.elapsed()
    );
    let second = signed_request(&requests, "second").await;
    assert!(second.status.unwrap().certificate.is_some());
    let new_metrics = metrics(standby_address).await;
    assert_eq!(sample(&new_metrics, "issuer_leader"), Some(1.0));
    assert_eq!(
        sample(
            &new_metrics,
            "issuer_signed_total{kind=\"CertificateRequest\"}"
        ),
        Some(1.0),
        "{new_metrics}"
    );
    assert_eq!(http_get(standby_address, "/readyz").await.unwrap().0, 200);
    // The issuer's condition survives the handover (the new leader re-checks it).
    let team = issuers.get("team-ca").await.unwrap();
    assert_eq!(team.ready_condition().unwrap().status, "True");

    // SIGTERM to the new leader (the former standby): it stops its controllers, releases the
    // Lease and exits 0; a third process, standing by meanwhile, takes over and signs.
    let c = start_issuer_named(&env, "issuer-c", &args);
    wait_for("issuer-c ready", Duration::from_secs(30), || async {
        (http_get(c.health, "/readyz").await?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(sample(&metrics(c.health).await, "issuer_leader"), Some(0.0));
    let status = standby
        .terminate(Duration::from_secs(10))
        .expect("the leader exits within 10 s of SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        standby.log().contains("released the leader Lease"),
        "{}",
        standby.log()
    );
    let terminated_at = std::time::Instant::now();
    wait_for(
        "issuer-c holds the Lease",
        Duration::from_secs(30),
        || async { (holder(&leases).await? == "issuer-c").then_some(()) },
    )
    .await;
    println!(
        "issuer-c took over {:?} after {new_leader} exited on SIGTERM",
        terminated_at.elapsed()
    );
    signed_request(&requests, "third").await;
    assert_eq!(sample(&metrics(c.health).await, "issuer_leader"), Some(1.0));

    // The Lease taken from under the leader (another holder that never renews): at its next
    // renewal it sees the holder, stops its controllers and stands by (issuer_leader 0, logged);
    // once that Lease expires it leads again, with controllers started afresh, and signs.
    let stolen = serde_json::json!({"spec": {
        "holderIdentity": "intruder",
        "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
        "leaseDurationSeconds": 4,
    }});
    leases
        .patch("ca-issuer", &PatchParams::default(), &Patch::Merge(&stolen))
        .await
        .unwrap();
    wait_for(
        "issuer-c stops leading",
        Duration::from_secs(15),
        || async { (sample(&metrics(c.health).await, "issuer_leader")? == 0.0).then_some(()) },
    )
    .await;
    assert!(
        c.log().contains("no longer leading: stopping the term"),
        "{}",
        c.log()
    );
    wait_for("issuer-c leads again", Duration::from_secs(30), || async {
        (sample(&metrics(c.health).await, "issuer_leader")? == 1.0).then_some(())
    })
    .await;
    assert_eq!(holder(&leases).await.as_deref(), Some("issuer-c"));
    signed_request(&requests, "fourth").await;
}
