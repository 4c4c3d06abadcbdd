//! Shared helpers of the integration tests: certificates made with rcgen, a server on a free
//! loopback port, and a TLS client that trusts only a given CA bundle and opens a new
//! connection per request.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SerialNumber};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, ServerName};
use stackable_webhook::{CertSource, RunningServer, WebhookServer, WebhookServerBuilder};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

/// A server builder bound to a free port on 127.0.0.1, not reacting to signals.
pub fn local_builder() -> WebhookServerBuilder {
    WebhookServer::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .handle_signals(false)
}

/// Builds and starts the server; panics on any error.
pub async fn start(builder: WebhookServerBuilder) -> RunningServer {
    builder.build().unwrap().start().await.unwrap()
}

/// A server on a free loopback port with the given certificates and no routes.
pub async fn start_local(certificates: CertSource) -> RunningServer {
    start(local_builder().certificates(certificates)).await
}

/// Shuts the server down and waits until it has stopped without error.
pub async fn stop(server: RunningServer) {
    server.shutdown();
    server.wait().await.unwrap();
}

/// A TLS connection to `addr` (server name `localhost`), for tests that write raw bytes or
/// keep one connection open.
pub async fn connect_tls(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> Result<TlsStream<TcpStream>, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect(addr).await?;
    // Without this, Nagle + delayed ACK add ~40 ms to every new connection on loopback.
    tcp.set_nodelay(true)?;
    Ok(TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?)
}

/// A CA able to issue serving certificates.
pub struct TestCa {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Self { issuer, pem }
    }

    /// A leaf for localhost/127.0.0.1 with the given serial: (cert PEM, key PEM).
    pub fn leaf_pem(&self, serial: u64) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.is_ca = IsCa::ExplicitNoCa;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn leaf(&self, serial: u64) -> Arc<CertifiedKey> {
        let (cert, key) = self.leaf_pem(serial);
        Arc::new(
            stackable_webhook::certified_key_from_pem(cert.as_bytes(), key.as_bytes(), "test")
                .unwrap(),
        )
    }
}

/// A client config trusting only the given PEM bundle (one or more CAs).
pub fn client_config(ca_bundle_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_bundle_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// The answer of one request, with the serial of the certificate the server presented.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub serial: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

/// One request over a new TLS connection.
pub async fn request(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    request_with_headers(config, addr, method, path, content_type, &[], body).await
}

/// One request with extra headers over a new TLS connection.
pub async fn request_with_headers(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let tls = connect_tls(config, addr).await?;
    let serial = {
        let certs = tls
            .get_ref()
            .1
            .peer_certificates()
            .ok_or("no peer certificate")?;
        stackable_certs::Certificate::from_der(certs[0].as_ref())?
            .info()
            .serial
            .clone()
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("host", "localhost");
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
        serial,
    })
}

/// GET without a body over a new TLS connection.
pub async fn get(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    request(config, addr, "GET", path, None, Vec::new()).await
}

/// POST a body with the given content type; panics when the request fails.
pub async fn post(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Answer {
    request(config, addr, "POST", path, Some(content_type), body)
        .await
        .unwrap()
}

/// POST JSON.
pub async fn post_json(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> Answer {
    post(
        config,
        addr,
        path,
        "application/json",
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

/// An AdmissionReview for a Pod.
pub fn pod_review(uid: &str, operation: &str, pod: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"],
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "tester"},
            "object": pod,
            "oldObject": null,
            "dryRun": false
        }
    })
}

/// A CronTab as the API server sends it in a LIST (labels, `managedFields`; ~800 bytes).
pub fn crontab(i: usize, api_version: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": api_version, "kind": "CronTab",
        "metadata": {
            "creationTimestamp": "2026-11-02T09:14:27Z", "generation": 1,
            "labels": {"app.kubernetes.io/instance": format!("reports-{i}"), "app.kubernetes.io/name": "reports"},
            "managedFields": [{"apiVersion": api_version, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/instance": {}, "f:app.kubernetes.io/name": {}}},
                             "f:spec": {".": {}, "f:cronSpec": {}, "f:hostPort": {}, "f:image": {}, "f:replicas": {}}},
                "manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-11-02T09:14:27Z"}],
            "name": format!("crontab-{i:05}"), "namespace": "shop", "resourceVersion": format!("{}", 184_000 + i),
            "uid": format!("6b1c3e2a-4d5f-4a6b-9c7d-{i:012}")
        },
        "spec": {"cronSpec": "*/5 * * * *", "hostPort": format!("db-{i}.example.org:5432"),
                 "image": "registry.example.com/shop/report-runner:3.2.1", "replicas": 1 + (i % 3)},
        "status": {"active": i % 4, "lastScheduleTime": "2026-11-02T09:20:00Z"}
    })
}

/// An `apiextensions.k8s.io/v1` `ConversionReview` of `count` CronTabs in
/// `example.com/v1beta1`, asking for `example.com/v1`, as JSON bytes.
pub fn crontab_review(uid: &str, count: usize) -> Vec<u8> {
    let objects: Vec<serde_json::Value> = (0..count)
        .map(|i| crontab(i, "example.com/v1beta1"))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": uid, "desiredAPIVersion": "example.com/v1", "objects": objects}
    }))
    .unwrap()
}

/// A converter that only sets `apiVersion` to the desired version (enough for tests of the
/// server: the route, limits and scheduling, not the conversion itself).
pub fn relabel_converter(
    mut request: kube::core::conversion::ConversionRequest,
) -> kube::core::conversion::ConversionResponse {
    let desired = request.desired_api_version.clone();
    let mut objects = std::mem::take(&mut request.objects);
    for object in &mut objects {
        object["apiVersion"] = serde_json::Value::String(desired.clone());
    }
    kube::core::conversion::ConversionResponse::for_request(request).success(objects)
}

impl TestCa {
    /// A client certificate (extendedKeyUsage clientAuth) with common name `cn`: (cert PEM,
    /// key PEM).
    pub fn client_pem(&self, cn: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A client config trusting only `ca_bundle_pem`, speaking only `versions`, offering `alpn`
/// and presenting the client certificate `client` (cert PEM, key PEM) when given.
pub fn custom_client_config(
    ca_bundle_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
    client: Option<&(String, String)>,
) -> Arc<rustls::ClientConfig> {
    stackable_testenv::webhooks::client_auth::tls_client_config(
        ca_bundle_pem,
        versions,
        alpn,
        client.map(|(cert, key)| (cert.as_str(), key.as_str())),
    )
    .unwrap()
}

/// The server's count of failed TLS handshakes.
pub fn handshake_failure_count(server: &RunningServer) -> u64 {
    server
        .metrics()
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix("webhook_tls_handshake_failures_total "))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// Waits (up to 2 s) until the server counted at least `expected` failed TLS handshakes, and returns
/// the count it saw last: the server counts a failure just after its alert reached the client.
pub async fn handshake_failures(server: &RunningServer, expected: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let count = handshake_failure_count(server);
        if count >= expected || std::time::Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A log writer for a test's subscriber that keeps every byte, to read back the JSON lines.
#[derive(Clone, Default)]
pub struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The JSON lines written so far (other lines are skipped).
    pub fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}
