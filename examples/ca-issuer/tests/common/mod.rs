//! What the CA issuer's e2e tests share: child processes whose log is printed when a test
//! fails, a control plane with cert-manager's and the issuer's CRDs and `deploy/rbac.yaml`,
//! root CAs as Secrets, CSRs, namespaces and polling.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ca_issuer::api::{CAIssuer, ClusterCAIssuer};
use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Secret},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Api, Client, CustomResourceExt as _, api::PostParams};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use stackable_certs::Certificate;
use stackable_testenv::TestEnv;

/// The ServiceAccount of `deploy/rbac.yaml`, as which the issuer runs.
pub const SERVICE_ACCOUNT: &str = "system:serviceaccount:ca-issuer:ca-issuer";

/// A child process, killed on drop; the end of its log is printed when the test fails.
pub struct Process {
    name: &'static str,
    child: std::process::Child,
    log: PathBuf,
    /// The address of its health and metrics endpoint (the issuer's).
    pub health: SocketAddr,
}

impl Process {
    /// Kills it (SIGKILL: no Lease released, nothing finished) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (as the kubelet does) and waits at most `timeout` for it to exit: its
    /// exit status, `None` when it did not exit in time.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- {} log (last lines) ---", self.name);
            for line in &lines[lines.len().saturating_sub(200)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// Starts `command` with stdout and stderr into `log`.
pub fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Process {
    let file = std::fs::File::create(&log).unwrap();
    let child = command
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    Process {
        name,
        child,
        log,
        health: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// A port on 127.0.0.1 that was free a moment ago, outside the kernel's ephemeral range
/// (`stackable_testenv::ports::free_port`).
pub fn free_port() -> SocketAddr {
    SocketAddr::from((
        [127, 0, 0, 1],
        stackable_testenv::ports::free_port().unwrap(),
    ))
}

/// The `ca-issuer` binary as the ServiceAccount of `deploy/rbac.yaml` (`CA_ISSUER_LOG` sets
/// its `RUST_LOG`), its endpoint on a free port of 127.0.0.1.
pub fn start_issuer(env: &TestEnv, args: &[&str]) -> Process {
    start_issuer_named(env, "ca-issuer", args)
}

/// As [`start_issuer`], with `name` as its election identity and log file name.
pub fn start_issuer_named(env: &TestEnv, name: &'static str, args: &[&str]) -> Process {
    let kubeconfig = env.kubeconfig_as(SERVICE_ACCOUNT).unwrap();
    let health = free_port();
    let mut process = spawn(
        name,
        Command::new(env!("CARGO_BIN_EXE_ca-issuer"))
            .args(args)
            .args(["--health-bind", &health.to_string(), "--pod-name", name])
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("CA_ISSUER_LOG")
                    .unwrap_or_else(|_| "info,stackable_issuer=debug".into()),
            ),
        env.work_dir().join(format!("{name}.log")),
    );
    process.health = health;
    process
}

/// `GET http://<address><path>` (HTTP/1.0, no keep-alive): the status code and the body.
pub async fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The value of the sample `name` (with its labels, as rendered) in an OpenMetrics text.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok())?
    })
}

/// A control plane with cert-manager's CRDs (from its Go module), the issuer's CRDs and
/// `deploy/rbac.yaml` applied with kubectl (which shows the API server accepts it), and the
/// namespaces `namespaces`.
pub async fn control_plane(namespaces: &[&str]) -> (TestEnv, Client) {
    let env = TestEnv::start().await.unwrap();
    let mut crds = stackable_issuer::testing::cert_manager_crds().unwrap();
    crds.push(CAIssuer::crd());
    crds.push(ClusterCAIssuer::crd());
    env.install_crds(crds).await.unwrap();
    env.kubectl_apply(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml"))
        .unwrap();
    let client = env.client().unwrap();
    for name in namespaces {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some((*name).into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    (env, client)
}

/// A root CA without a path length limit (so that it may sign CA certificates), as the
/// Secret `name` in `namespace`.
pub fn root_ca(name: &str, namespace: &str) -> (Secret, Certificate) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_string(), ByteString(cert.pem().into_bytes())),
                (
                    "tls.key".to_string(),
                    ByteString(key.serialize_pem().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    (secret, Certificate::from_der(cert.der()).unwrap())
}

/// A PEM CSR for `<name>.example.com`, edited by `edit`.
pub fn csr(name: &str, edit: impl FnOnce(&mut CertificateParams)) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![format!("{name}.example.com")]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    edit(&mut params);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// Polls `probe` until it returns `Some`, for at most `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
