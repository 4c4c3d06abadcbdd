//! The harness of the e2e tests: a real control plane with cert-manager's CRDs (from its Go
//! module) and two test issuer kinds, a scripted [`Signer`] whose behaviour each test picks
//! (the issuer's `spec.check`, the request's `test.stackable.tech/sign` annotation), counters
//! of its calls, and helpers to create, approve and wait for requests and to read Events.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{certificates::v1::CertificateSigningRequest, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, CustomResource, CustomResourceExt, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stackable_certs::{CaOptions, CertificateAuthority};
use stackable_issuer::{
    AnyIssuer, BoxError, IssuerControllers, IssuerRef, PemBundle, Signer, SignerError,
    SigningRequest,
    api::{CertificateRequest, IssuerStatus},
};
use stackable_testenv::TestEnv;

mod timeline;
#[allow(unused_imports)]
pub use timeline::*;

pub const GROUP: &str = "test.issuer.stackable.tech";
pub const FIELD_OWNER: &str = "e2e.issuer.stackable.tech";
pub const SIGN_ANNOTATION: &str = "test.stackable.tech/sign";
/// On an issuer or a request: `true` makes the ignore hooks ignore it, `error` makes them fail.
pub const IGNORE_ANNOTATION: &str = "test.stackable.tech/ignore";
/// The request controllers' maximum retry duration in these tests.
pub const MAX_RETRY: Duration = Duration::from_secs(4);
/// The re-check interval of Ready issuers in these tests.
pub const RECHECK: Duration = Duration::from_secs(1);

/// A namespaced test issuer; `check` does what `spec.check` says.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "test.issuer.stackable.tech",
    version = "v1",
    kind = "TestIssuer",
    namespaced,
    status = "IssuerStatus"
)]
pub struct TestIssuerSpec {
    /// `ok` (or empty), `slow` (ok after 3 s), `retryable:<message>` or `permanent:<message>`.
    #[serde(default)]
    pub check: String,
}

/// A cluster-scoped test issuer.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "test.issuer.stackable.tech",
    version = "v1",
    kind = "TestClusterIssuer",
    status = "IssuerStatus"
)]
pub struct TestClusterIssuerSpec {
    /// As [`TestIssuerSpec::check`].
    #[serde(default)]
    pub check: String,
}

/// What the scripted signer was asked, and a switch that breaks every check.
#[derive(Debug)]
pub struct Script {
    pub ca: CertificateAuthority,
    pub checks: Mutex<HashMap<String, u32>>,
    pub signs: Mutex<HashMap<String, u32>>,
    /// Calls of the ignore hooks, by object name.
    pub ignores: Mutex<HashMap<String, u32>>,
    /// While set, every check fails with a retryable "CA unreachable".
    pub ca_unreachable: AtomicBool,
}

impl Script {
    pub fn checks(&self, name: &str) -> u32 {
        self.checks.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    pub fn signs(&self, name: &str) -> u32 {
        self.signs.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    pub fn ignores(&self, name: &str) -> u32 {
        self.ignores.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
pub struct ScriptedSigner(pub Arc<Script>);

fn count(map: &Mutex<HashMap<String, u32>>, key: &str) -> u32 {
    let mut map = map.lock().unwrap();
    let n = map.entry(key.to_owned()).or_insert(0);
    *n += 1;
    *n
}

impl Signer for ScriptedSigner {
    type Issuer = TestIssuer;
    type ClusterIssuer = TestClusterIssuer;

    async fn check(
        &self,
        issuer: AnyIssuer<'_, TestIssuer, TestClusterIssuer>,
    ) -> Result<(), SignerError> {
        count(&self.0.checks, issuer.name());
        if self.0.ca_unreachable.load(Ordering::SeqCst) {
            return Err(SignerError::retryable("CA unreachable"));
        }
        let script = match issuer {
            AnyIssuer::Issuer(i) => i.spec.check.clone(),
            AnyIssuer::ClusterIssuer(c) => c.spec.check.clone(),
        };
        if script == "slow" {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return Ok(());
        }
        match script.split_once(':') {
            Some(("retryable", message)) => Err(SignerError::retryable(message.to_owned())),
            Some(("permanent", message)) => Err(SignerError::permanent(message.to_owned())),
            _ => Ok(()),
        }
    }

    async fn ignore_issuer(
        &self,
        issuer: AnyIssuer<'_, TestIssuer, TestClusterIssuer>,
    ) -> Result<bool, BoxError> {
        count(&self.0.ignores, issuer.name());
        ignore_script(issuer.metadata())
    }

    async fn ignore_certificate_request(
        &self,
        request: SigningRequest<'_>,
        _issuer: &IssuerRef,
    ) -> Result<bool, BoxError> {
        count(
            &self.0.ignores,
            request.metadata().name.as_deref().unwrap_or_default(),
        );
        ignore_script(request.metadata())
    }

    async fn sign(
        &self,
        request: SigningRequest<'_>,
        _issuer: AnyIssuer<'_, TestIssuer, TestClusterIssuer>,
    ) -> Result<PemBundle, SignerError> {
        let name = request.metadata().name.clone().unwrap_or_default();
        let n = count(&self.0.signs, &name);
        let script = request
            .metadata()
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGN_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        match script.as_str() {
            "permanent" => return Err(SignerError::permanent("the CA refused the request")),
            "retryable" => return Err(SignerError::retryable("the CA is busy")),
            "pending-6" if n <= 6 => {
                return Err(
                    SignerError::pending("queued at the CA").requeue_after(Duration::from_secs(1))
                );
            }
            "issuer-once" if n == 1 => {
                return Err(SignerError::issuer("the CA key was rotated away"));
            }
            "custom-hold" => {
                return Err(SignerError::pending("waiting for a human")
                    .requeue_after(Duration::from_secs(3600))
                    .with_condition("Queued", "True", "AtCA"));
            }
            _ => {}
        }
        let details = request.details()?;
        let csr = details.parse_csr()?;
        let certificate = self
            .0
            .ca
            .sign_request(&csr, &details.signing_options())
            .map_err(SignerError::permanent)?;
        Ok(PemBundle {
            chain_pem: certificate.to_pem(),
            ca_pem: Some(self.0.ca.certificate().to_pem()),
        })
    }
}

/// What [`IGNORE_ANNOTATION`] on an object tells the ignore hooks.
fn ignore_script(meta: &ObjectMeta) -> Result<bool, BoxError> {
    match meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(IGNORE_ANNOTATION))
        .map(String::as_str)
    {
        Some("true") => Ok(true),
        Some("error") => Err("the ignore hook cannot reach its database".into()),
        _ => Ok(false),
    }
}

/// A control plane with cert-manager's and the test kinds' CRDs, and the controllers running
/// in this process.
pub struct Harness {
    pub env: TestEnv,
    pub client: Client,
    pub script: Arc<Script>,
    controllers: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.controllers.abort();
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "stackable_issuer=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

impl Harness {
    pub async fn start(
        configure: impl FnOnce(IssuerControllers<ScriptedSigner>) -> IssuerControllers<ScriptedSigner>,
    ) -> Self {
        init_tracing();
        let env = TestEnv::start().await.expect("test control plane");
        let mut crds = stackable_issuer::testing::cert_manager_crds().expect("cert-manager's CRDs");
        crds.push(TestIssuer::crd());
        crds.push(TestClusterIssuer::crd());
        env.install_crds(crds).await.expect("install CRDs");
        let client = env.client().unwrap();
        let script = Arc::new(Script {
            ca: CertificateAuthority::new(&CaOptions::new("e2e issuer CA")).unwrap(),
            checks: Mutex::default(),
            signs: Mutex::default(),
            ignores: Mutex::default(),
            ca_unreachable: AtomicBool::new(false),
        });
        let controllers = configure(
            IssuerControllers::new(client.clone(), ScriptedSigner(script.clone()), FIELD_OWNER)
                .max_retry_duration(MAX_RETRY)
                .recheck_interval(Some(RECHECK))
                .backoff(Duration::from_millis(100), Duration::from_secs(1)),
        );
        let controllers = tokio::spawn(async move {
            if let Err(error) = controllers.run().await {
                panic!("controllers stopped: {error}");
            }
        });
        Harness {
            env,
            client,
            script,
            controllers,
        }
    }

    pub fn issuers(&self, namespace: &str) -> Api<TestIssuer> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn cluster_issuers(&self) -> Api<TestClusterIssuer> {
        Api::all(self.client.clone())
    }

    pub fn requests(&self, namespace: &str) -> Api<CertificateRequest> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn csrs(&self) -> Api<CertificateSigningRequest> {
        Api::all(self.client.clone())
    }

    pub async fn create_issuer(&self, namespace: &str, name: &str, check: &str) -> TestIssuer {
        let mut issuer = TestIssuer::new(
            name,
            TestIssuerSpec {
                check: check.into(),
            },
        );
        issuer.metadata.namespace = Some(namespace.into());
        self.issuers(namespace)
            .create(&PostParams::default(), &issuer)
            .await
            .unwrap()
    }

    pub async fn create_cluster_issuer(&self, name: &str, check: &str) -> TestClusterIssuer {
        let issuer = TestClusterIssuer::new(
            name,
            TestClusterIssuerSpec {
                check: check.into(),
            },
        );
        self.cluster_issuers()
            .create(&PostParams::default(), &issuer)
            .await
            .unwrap()
    }

    /// Creates a CertificateRequest for `issuer_ref` (kind, group, name) with a fresh CSR,
    /// the sign script `script`, and optionally already approved or denied.
    pub async fn create_request(
        &self,
        namespace: &str,
        name: &str,
        issuer_ref: (&str, &str, &str),
        script: &str,
        csr_pem: Option<&str>,
    ) -> CertificateRequest {
        let csr = csr_pem.map(str::to_owned).unwrap_or_else(|| csr_for(name));
        let request: CertificateRequest = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {SIGN_ANNOTATION: script},
            },
            "spec": {
                "request": k8s_openapi::ByteString(csr.into_bytes()),
                "issuerRef": {"kind": issuer_ref.0, "group": issuer_ref.1, "name": issuer_ref.2},
                "usages": ["digital signature", "key encipherment", "server auth"],
            },
        }))
        .unwrap();
        self.requests(namespace)
            .create(&PostParams::default(), &request)
            .await
            .unwrap()
    }

    /// Sets `Approved` (or `Denied`) as cert-manager's approver does, as another field manager.
    pub async fn decide(&self, namespace: &str, name: &str, approve: bool) {
        let type_ = if approve { "Approved" } else { "Denied" };
        let body = serde_json::json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "CertificateRequest",
            "metadata": {"name": name, "namespace": namespace},
            "status": {"conditions": [{
                "type": type_, "status": "True", "reason": "e2e",
                "message": format!("{type_} by the test"),
                "lastTransitionTime": stackable_issuer_now(),
            }]},
        });
        self.requests(namespace)
            .patch_status(
                name,
                &PatchParams::apply("e2e-approver").force(),
                &Patch::Apply(&body),
            )
            .await
            .unwrap();
    }

    /// The reasons of the Events about `kind`/`name`, with their notes.
    pub async fn events(&self, namespace: &str, kind: &str, name: &str) -> Vec<EventRow> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let mut events: Vec<_> = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
                })
            })
            .collect();
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The object's Events once one of them matches `wanted` (polled for at most 20 s).
    ///
    /// The controller posts an Event after the status write it explains, so a read right
    /// after the status is seen can come before the Event.
    pub async fn wait_event(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        wanted: impl Fn(&EventRow) -> bool,
    ) -> Vec<EventRow> {
        let what = format!("an Event of {kind} {namespace}/{name}");
        let wanted = &wanted;
        wait_for(&what, Duration::from_secs(20), || async move {
            let events = self.events(namespace, kind, name).await;
            events.iter().any(wanted).then_some(events)
        })
        .await
    }
}

/// One recorded Event of an object: `(type, reason, note)`.
pub type EventRow = (String, String, String);

pub fn stackable_issuer_now() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap()
        .to_string()
}

/// A PEM CSR for `<name>.example.com`, as cert-manager would send (ECDSA P-256).
pub fn csr_for(name: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![format!("{name}.example.com")]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `timeout`.
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
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `Ready` condition of a request as (status, reason, message).
pub fn ready_of(request: &CertificateRequest) -> Option<(String, String, String)> {
    request.condition("Ready").map(|c| {
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    })
}

/// Waits until the request's `Ready` condition has `status` and `reason`.
pub async fn wait_ready(
    api: &Api<CertificateRequest>,
    name: &str,
    status: &str,
    reason: &str,
) -> CertificateRequest {
    wait_for(
        &format!("{name}: Ready={status}/{reason}"),
        Duration::from_secs(20),
        || async {
            let request = api.get(name).await.ok()?;
            let (s, r, _) = ready_of(&request)?;
            (s == status && r == reason).then_some(request)
        },
    )
    .await
}

/// Waits until an issuer's `Ready` condition has `status` and `reason` (for its current
/// generation).
pub async fn wait_issuer<K>(api: &Api<K>, name: &str, status: &str, reason: &str) -> K
where
    K: stackable_issuer::IssuerResource,
{
    wait_for(
        &format!("issuer {name}: Ready={status}/{reason}"),
        Duration::from_secs(20),
        || async {
            let issuer = api.get(name).await.ok()?;
            let ready = issuer.ready_condition()?;
            (ready.status == status
                && ready.reason == reason
                && ready.observed_generation == issuer.meta().generation)
                .then_some(issuer)
        },
    )
    .await
}

pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

pub fn name_of<K: Resource>(object: &K) -> String {
    object.name_any()
}
