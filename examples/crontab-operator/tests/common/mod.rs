//! The harness of the replica tests: a real control plane, the CronTab CRD whose conversion
//! webhook points (through an ExternalName Service) at a round-robin forwarder playing
//! kube-proxy, replicas of the `crontab-operator` binary as processes behind it, readers that
//! list and get CronTabs in the non-storage version (every read is a conversion call the API
//! server makes to some replica), and a watch of the CRD that records every caBundle.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crontab_operator::{crd, v1beta1};
use futures::StreamExt as _;
use k8s_openapi::{
    api::core::v1::Secret,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams},
    runtime::{WatchStreamExt as _, watcher},
};
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use stackable_certs::{CaBundle, Certificate};
use stackable_conversion::WebhookTarget;
use stackable_testenv::{
    TestEnv,
    forwarder::Forwarder,
    replicas::{ReplicaInfo, Replicas},
};
use tokio::task::JoinHandle;

/// The Service the CRD's conversion webhook points at.
pub const SERVICE: &str = "crontab-operator";
/// The namespace of `deploy/rbac.yaml`.
pub const NAMESPACE: &str = "crontab-operator";
/// The ServiceAccount of `deploy/rbac.yaml`; the replicas run as it.
pub const SERVICE_ACCOUNT: &str = "system:serviceaccount:crontab-operator:crontab-operator";
/// The Secret the replicas share.
pub const CA_SECRET: &str = "crontab-operator-webhook-ca";
/// CronTabs created for the readers.
pub const OBJECTS: usize = 5;

/// A control plane with the CRD, the forwarder and replicas of the operator.
pub struct Harness {
    pub env: TestEnv,
    pub client: Client,
    pub namespace: String,
    pub forwarder: Forwarder,
    pub replicas: Replicas,
    pub crd: CrdWatch,
}

impl Harness {
    /// Starts the control plane, applies `deploy/rbac.yaml`, creates the Service, the
    /// forwarder, the CRD (empty caBundle) and `replicas` processes of the operator at the
    /// same moment, each with `extra_args`, running as the deploy ServiceAccount (so its RBAC
    /// is shown to be enough).
    pub async fn start(replicas: usize, extra_args: &[&str]) -> Harness {
        Self::start_with(replicas, OBJECTS, extra_args).await
    }

    /// [`Harness::start`] with `objects` CronTabs (named `crontab-<n>`) created before the
    /// replicas start.
    pub async fn start_with(replicas: usize, objects: usize, extra_args: &[&str]) -> Harness {
        Self::start_full(replicas, objects, false, extra_args).await
    }

    /// Like [`Harness::start`] on a control plane without the CRD: the replicas install it
    /// themselves (`--install-crd`, the Service port of the forwarder). The CRD watch runs from
    /// before the replicas start.
    pub async fn start_installing(replicas: usize, extra_args: &[&str]) -> Harness {
        Self::start_full(replicas, 0, true, extra_args).await
    }

    async fn start_full(
        replicas: usize,
        objects: usize,
        install: bool,
        extra_args: &[&str],
    ) -> Harness {
        let env = TestEnv::start().await.expect("control plane");
        let client = env.client().unwrap();
        env.kubectl_apply(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml"))
            .unwrap();
        let namespace = NAMESPACE.to_owned();
        let kubeconfig = env.kubeconfig_as(SERVICE_ACCOUNT).unwrap();
        env.create_external_name_service(&namespace, SERVICE)
            .await
            .unwrap();
        // Like kube-proxy: a failed dial is not retried on another endpoint.
        let forwarder = Forwarder::kube_proxy().await.unwrap();
        let target = WebhookTarget::service(SERVICE, &namespace)
            .path(crontab_operator::crd::CONVERT_PATH)
            .port(i32::from(forwarder.local_addr().port()));
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd_watch = CrdWatch::start(client.clone());
        if !install {
            let crd = crd::crd(target).unwrap();
            crds.create(&PostParams::default(), &crd).await.unwrap();
            // Objects stored as v1beta1 (the storage version: no conversion to create them).
            wait_established(&crds).await;
        }
        let api: Api<v1beta1::CronTab> = Api::namespaced(client.clone(), &namespace);
        let creates = (0..objects).map(|i| {
            let api = api.clone();
            let namespace = namespace.clone();
            async move {
                let object = v1beta1::CronTab {
                    metadata: ObjectMeta {
                        name: Some(format!("crontab-{i}")),
                        namespace: Some(namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: v1beta1::CronTabSpec {
                        cron_spec: "*/5 * * * *".into(),
                        image: "busybox:1".into(),
                        replicas: Some(1),
                        host_port: format!("cache-{i}:6379"),
                    },
                    status: None,
                };
                create_retrying(&api, &object).await;
            }
        });
        futures::stream::iter(creates)
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;

        let mut args: Vec<String> = extra_args.iter().map(|s| (*s).to_owned()).collect();
        if install {
            args.push("--install-crd".to_owned());
            args.push(format!(
                "--webhook-service-port={}",
                forwarder.local_addr().port()
            ));
        }
        let ns = namespace.clone();
        let replicas = Replicas::builder(env!("CARGO_BIN_EXE_crontab-operator"))
            .test_env(&env)
            .kubeconfig(kubeconfig)
            .name_prefix("crontab-operator")
            .behind(&forwarder)
            .readiness_path("/readyz")
            .probe_period(Duration::from_millis(200))
            .endpoint_removal_delay(ENDPOINT_REMOVAL_DELAY)
            .termination_grace(Duration::from_secs(30))
            .env(
                "RUST_LOG",
                std::env::var("REPLICA_RUST_LOG")
                    .unwrap_or_else(|_| "info,kube=warn,hyper=warn".to_owned()),
            )
            .args(move |r: &ReplicaInfo| {
                let mut all = vec![
                    format!("--bind={}", r.https),
                    format!("--health-bind={}", r.health),
                    format!("--service-name={SERVICE}"),
                    format!("--namespace={ns}"),
                    "--inject-ca-bundle".to_owned(),
                    "--drain-period=2s".to_owned(),
                ];
                all.extend(args.iter().cloned());
                all
            })
            .start(replicas)
            .unwrap();
        Harness {
            env,
            client,
            namespace,
            forwarder,
            replicas,
            crd: crd_watch,
        }
    }

    /// Waits until every running replica is ready (its leaf's CA in the CRD).
    pub async fn wait_all_ready(&mut self, timeout: Duration) {
        if let Err(error) = self.replicas.wait_all_ready(timeout).await {
            panic!("{error}\n{}", self.replicas.log_tails(30));
        }
    }

    /// The shared Secret's `ca.crt`.
    pub async fn secret_bundle(&self) -> Option<String> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = secrets.get_opt(CA_SECRET).await.ok()??;
        let bytes = secret.data?.get("ca.crt")?.0.clone();
        String::from_utf8(bytes).ok()
    }

    /// The leaf each running replica serves right now (read over TLS from its own port).
    pub async fn served_leaves(&mut self) -> Vec<(String, Certificate)> {
        let running = self.replicas.running();
        let mut leaves = Vec::new();
        for id in running {
            let Some(replica) = self.replicas.get(id) else {
                continue;
            };
            let name = replica.name().to_owned();
            let addr = replica.info().https;
            if let Ok(leaf) = served_leaf(addr, &format!("{SERVICE}.{}.svc", self.namespace)).await
            {
                leaves.push((name, leaf));
            }
        }
        leaves
    }

    /// Fails with the replicas' logs.
    pub fn fail(&self, message: &str) -> ! {
        panic!("{message}\n{}", self.replicas.log_tails(40));
    }
}

async fn wait_established(crds: &Api<CustomResourceDefinition>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds.get(crontab_operator::CRD_NAME).await.unwrap();
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(Instant::now() < deadline, "CRD not Established");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_retrying(api: &Api<v1beta1::CronTab>, object: &v1beta1::CronTab) {
    for _ in 0..50 {
        match api.create(&PostParams::default(), object).await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("could not create {:?}", object.metadata.name);
}

// === CRD watch ===

/// Every caBundle the CRD held, and how often it was written.
#[derive(Clone)]
pub struct CrdWatch {
    inner: Arc<Mutex<CrdHistory>>,
    _task: Arc<JoinHandle<()>>,
}

#[derive(Default)]
pub struct CrdHistory {
    /// (when, bundle PEM) for every change of the caBundle (the first entry: first seen).
    pub bundles: Vec<(Instant, String)>,
    /// Modifications of the CRD seen (every write by anyone: API server status updates too).
    pub modifications: u64,
    /// Events that showed the CRD without a caBundle.
    pub without_bundle: u64,
}

impl CrdWatch {
    fn start(client: Client) -> Self {
        let inner = Arc::new(Mutex::new(CrdHistory::default()));
        let api: Api<CustomResourceDefinition> = Api::all(client);
        let config = watcher::Config::default()
            .fields(&format!("metadata.name={}", crontab_operator::CRD_NAME));
        let history = inner.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let Ok(crd) = event else { continue };
                let bundle = ca_bundle(&crd).unwrap_or_default();
                let mut h = history.lock().unwrap();
                h.modifications += 1;
                if bundle.is_empty() {
                    h.without_bundle += 1;
                }
                if h.bundles.last().map(|(_, b)| b) != Some(&bundle) {
                    h.bundles.push((Instant::now(), bundle));
                }
            }
        });
        CrdWatch {
            inner,
            _task: Arc::new(task),
        }
    }

    /// The caBundle as last seen.
    pub fn current(&self) -> String {
        self.inner
            .lock()
            .unwrap()
            .bundles
            .last()
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    }

    /// Number of distinct caBundle values seen, including the empty one at the start.
    pub fn bundle_changes(&self) -> usize {
        self.inner.lock().unwrap().bundles.len()
    }

    /// Every distinct CA that was in the caBundle.
    pub fn distinct_cas(&self) -> usize {
        let mut cas = std::collections::HashSet::new();
        for (_, bundle) in &self.inner.lock().unwrap().bundles {
            for ca in Certificate::all_from_pem(bundle).unwrap_or_default() {
                cas.insert(ca.der().to_vec());
            }
        }
        cas.len()
    }

    pub fn modifications(&self) -> u64 {
        self.inner.lock().unwrap().modifications
    }

    /// How many watch events showed the CRD without a caBundle.
    pub fn seen_without_bundle(&self) -> u64 {
        self.inner.lock().unwrap().without_bundle
    }

    /// Waits until the caBundle is non-empty.
    pub async fn wait_for_bundle(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let current = self.current();
            if !current.is_empty() {
                return current;
            }
            assert!(Instant::now() < deadline, "no caBundle within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn ca_bundle(crd: &CustomResourceDefinition) -> Option<String> {
    let encoded = crd
        .spec
        .conversion
        .as_ref()?
        .webhook
        .as_ref()?
        .client_config
        .as_ref()?
        .ca_bundle
        .as_ref()?;
    // k8s-openapi decodes the base64 into the ByteString.
    String::from_utf8(encoded.0.clone()).ok()
}

/// How long a replica's endpoint stays in the forwarder after it was killed or terminated.
pub const ENDPOINT_REMOVAL_DELAY: Duration = Duration::from_millis(500);

// === readers ===

/// Counts of reads through the API server (each a conversion call to some replica).
#[derive(Default)]
pub struct Reads {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    paused: AtomicBool,
    stop: AtomicBool,
    /// The first ten failures, each with when it was seen.
    errors: Mutex<Vec<(Instant, String)>>,
}

impl Reads {
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Stops counting (while the API server itself is down).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// The first ten failures.
    pub fn errors(&self) -> Vec<String> {
        self.errors_at().into_iter().map(|(_, e)| e).collect()
    }

    /// The first ten failures, each with when it was seen.
    pub fn errors_at(&self) -> Vec<(Instant, String)> {
        self.errors.lock().unwrap().clone()
    }

    /// `(ok, failed)` since `before`.
    pub fn since(&self, before: (u64, u64)) -> (u64, u64) {
        (self.ok() - before.0, self.failed() - before.1)
    }

    pub fn snapshot(&self) -> (u64, u64) {
        (self.ok(), self.failed())
    }
}

/// Readers that get and list CronTabs as v1 (the non-storage version) in a loop.
pub struct Readers {
    pub reads: Arc<Reads>,
    tasks: Vec<JoinHandle<()>>,
}

impl Readers {
    pub fn start(client: &Client, namespace: &str, readers: usize) -> Readers {
        let reads = Arc::new(Reads::default());
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("example.com", "v1", "CronTab"),
            "crontabs",
        );
        let tasks = (0..readers)
            .map(|n| {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), namespace, &resource);
                let reads = reads.clone();
                tokio::spawn(async move {
                    let mut i = n;
                    while !reads.stop.load(Ordering::SeqCst) {
                        if reads.paused.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        i += 1;
                        let result = if i % 2 == 0 {
                            api.list(&ListParams::default()).await.map(|list| {
                                assert!(
                                    list.items.len() >= OBJECTS,
                                    "{} CronTabs",
                                    list.items.len()
                                );
                            })
                        } else {
                            api.get(&format!("crontab-{}", i % OBJECTS))
                                .await
                                .map(|_| ())
                        };
                        if reads.paused.load(Ordering::SeqCst) {
                            continue;
                        }
                        match result {
                            Ok(()) => {
                                reads.ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(error) => {
                                reads.failed.fetch_add(1, Ordering::SeqCst);
                                let mut errors = reads.errors.lock().unwrap();
                                if errors.len() < 10 {
                                    errors.push((Instant::now(), error.to_string()));
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                })
            })
            .collect();
        Readers { reads, tasks }
    }

    pub async fn stop(self) -> Arc<Reads> {
        self.reads.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            let _ = task.await;
        }
        self.reads
    }
}

// === TLS ===

/// Accepts any server certificate and keeps the end-entity one (it is verified separately,
/// against the caBundle of the moment).
#[derive(Debug)]
struct Capture(Mutex<Option<Vec<u8>>>);

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The leaf a TLS server at `addr` serves for `name`.
pub async fn served_leaf(addr: std::net::SocketAddr, name: &str) -> Result<Certificate, String> {
    let capture = Arc::new(Capture(Mutex::new(None)));
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .dangerous()
    .with_custom_certificate_verifier(capture.clone())
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(2), connector.connect(server_name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let der = capture.0.lock().unwrap().take().ok_or("no certificate")?;
    Certificate::from_der(&der).map_err(|e| e.to_string())
}

/// Whether `leaf` verifies for `name` against the PEM `bundle` (rustls' webpki verifier, as
/// a client holding that caBundle would).
pub fn trusted_by(bundle: &str, leaf: &Certificate, name: &str) -> Result<(), String> {
    use rustls::client::WebPkiServerVerifier;
    let bundle = CaBundle::from_pem(bundle).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in bundle.certificates() {
        roots.add(ca.to_rustls()).map_err(|e| e.to_string())?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(&leaf.to_rustls(), &[], &server_name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}
