//! Tier 2: cert-manager's own Certificate controllers side by side with the `ca-issuer`
//! binary on one test control plane. cert-manager's controllers come from the public packages
//! of its released Go module (`tests/cert-manager-controller`, built with the local Go
//! toolchain into `~/.cache/stackable-webhook-kit/cert-manager-controller-<hash>/` once and
//! reused while its sources and the Go version stay the same), with a short request backoff.
//! A `Certificate` for a `ClusterCAIssuer` becomes Ready, its Secret verifies against the
//! issuer's CA and holds the matching key, and renewal issues a new certificate.
//!
//! The first run builds cert-manager's controllers (about 3 minutes on 2 cores with the Go
//! modules already downloaded); later runs take about 30 s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use ca_issuer::api::{CaIssuerConfig, ClusterCAIssuer, ClusterCAIssuerSpec};
use common::{control_plane, root_ca, spawn, start_issuer, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
};
use stackable_certs::{Certificate, PrivateKey};

/// 64-bit FNV-1a over the module's sources and the Go version (the cache folder's name).
fn source_hash(module: &Path, go_version: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(go_version.as_bytes());
    for file in ["main.go", "go.mod", "go.sum"] {
        eat(file.as_bytes());
        eat(&std::fs::read(module.join(file)).unwrap());
    }
    hash
}

/// Builds cert-manager's controllers into the cache, or reuses an earlier build.
fn cert_manager_controller() -> PathBuf {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cert-manager-controller");
    let go = |args: &[&str]| {
        let mut command = Command::new("go");
        command
            .args(args)
            .current_dir(&module)
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-buildvcs=false -mod=readonly");
        command
    };
    let version = go(&["version"]).output().expect("Go >= 1.26 on PATH");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let cache = stackable_testenv::assets::cache_dir().unwrap();
    let cache = cache.parent().unwrap().to_path_buf();
    let dir = cache.join(format!(
        "cert-manager-controller-{:016x}",
        source_hash(&module, &version)
    ));
    let binary = dir.join("cert-manager-controller");
    if binary.is_file() {
        return binary;
    }
    eprintln!(
        "building cert-manager's controllers with {version} into {} (once)",
        dir.display()
    );
    let started = Instant::now();
    let staging = dir.with_extension(format!("partial-{}", std::process::id()));
    std::fs::create_dir_all(&staging).unwrap();
    let status = go(&["build", "-trimpath", "-ldflags", "-s -w", "-o"])
        .arg(staging.join("cert-manager-controller"))
        .arg(".")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "go build of cert-manager's controllers failed"
    );
    let _ = std::fs::rename(&staging, &dir);
    eprintln!("built in {:.0} s", started.elapsed().as_secs_f64());
    binary
}

/// The certificate and key of the Certificate's Secret, once both are there.
async fn secret_material(secrets: &Api<Secret>) -> Option<(Certificate, PrivateKey)> {
    let data = secrets.get_opt("web-tls").await.ok()??.data?;
    let crt = std::str::from_utf8(&data.get("tls.crt")?.0)
        .ok()?
        .to_owned();
    let key = std::str::from_utf8(&data.get("tls.key")?.0)
        .ok()?
        .to_owned();
    Some((
        Certificate::from_pem(&crt).ok()?,
        PrivateKey::from_pem(&key).ok()?,
    ))
}

#[tokio::test]
async fn cert_manager_issues_and_renews_a_certificate_through_the_ca_issuer() {
    let controller = cert_manager_controller();
    let (env, client) = control_plane(&["apps", "cert-manager"]).await;
    let (secret, root) = root_ca("root-ca", "ca-issuer");
    Api::<Secret>::namespaced(client.clone(), "ca-issuer")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let issuer = ClusterCAIssuer::new(
        "cluster-ca",
        ClusterCAIssuerSpec {
            config: CaIssuerConfig {
                secret_name: "root-ca".into(),
                ..Default::default()
            },
        },
    );
    Api::<ClusterCAIssuer>::all(client.clone())
        .create(&PostParams::default(), &issuer)
        .await
        .unwrap();

    let _ours = start_issuer(&env, &["--recheck-interval", "5s"]);
    // cert-manager's controllers as the admin (their approver approves every request).
    let _theirs = spawn(
        "cert-manager-controller",
        Command::new(&controller)
            .arg("--kubeconfig")
            .arg(env.kubeconfig_path())
            .args(["--request-min-backoff", "2s", "-v", "2"]),
        env.work_dir().join("cert-manager-controller.log"),
    );

    // A Certificate for the ClusterCAIssuer: renewed 15 s after each issuance.
    let certificates: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "apps",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "cert-manager.io",
            "v1",
            "Certificate",
        )),
    );
    let certificate: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {
            "secretName": "web-tls",
            "dnsNames": ["web.apps.svc", "web.apps.svc.cluster.local"],
            "duration": "1h",
            "renewBefore": "59m45s",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["digital signature", "key encipherment", "server auth"],
            "issuerRef": {"group": "ca-issuer.stackable.tech", "kind": "ClusterCAIssuer", "name": "cluster-ca"},
        },
    }))
    .unwrap();
    certificates
        .create(&PostParams::default(), &certificate)
        .await
        .unwrap();
    let created = Instant::now();

    let ready = |revision: i64| {
        let certificates = certificates.clone();
        async move {
            let certificate = certificates.get("web").await.ok()?;
            let status = &certificate.data["status"];
            let is_ready = status["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (is_ready && status["revision"].as_i64()? >= revision).then_some(())
        }
    };
    wait_for(
        "the Certificate Ready (revision 1)",
        Duration::from_secs(90),
        || ready(1),
    )
    .await;
    eprintln!(
        "Certificate Ready {:.1} s after its creation",
        created.elapsed().as_secs_f64()
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "apps");
    let (first, first_key) = secret_material(&secrets)
        .await
        .expect("tls.crt and tls.key");
    assert!(
        first.is_issued_by(&root),
        "the Secret's certificate verifies against the CA"
    );
    assert!(first.matches_key(&first_key), "tls.key belongs to tls.crt");
    assert_eq!(
        first.info().dns_names,
        ["web.apps.svc", "web.apps.svc.cluster.local"]
    );
    assert!(first.info().server_auth && !first.info().is_ca);

    // Renewal: a new CertificateRequest, a new key (rotationPolicy Always), a new certificate.
    let issued = Instant::now();
    wait_for("the renewal (revision 2)", Duration::from_secs(90), || {
        ready(2)
    })
    .await;
    eprintln!(
        "renewed (revision 2) {:.1} s after the first issuance (renewBefore leaves 15 s)",
        issued.elapsed().as_secs_f64()
    );
    let (second, second_key) = wait_for("the renewed Secret", Duration::from_secs(30), || async {
        let material = secret_material(&secrets).await?;
        (material.0.info().serial != first.info().serial).then_some(material)
    })
    .await;
    assert!(second.is_issued_by(&root));
    assert!(second.matches_key(&second_key));
    assert!(!second.matches_key(&first_key), "the key was rotated");
    assert!(second.info().not_after > first.info().not_after);
}
