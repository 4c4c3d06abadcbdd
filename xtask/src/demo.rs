//! `cargo xtask demo`: the main job, end to end against a local control plane.
//!
//! It starts a real etcd and kube-apiserver (from `stackable-testenv`), runs the two
//! example operators as separate processes, and shows what the library is for:
//!
//! 1. the CronTab operator generates its own CA and serving certificate, injects the CA
//!    bundle into its CRD, and the API server converts CronTabs between `v1beta1` and `v1`
//!    through it;
//! 2. the sidecar injector does the same for its webhook configurations, and the API
//!    server calls it to inject a logging sidecar into a Pod and to refuse a Pod without
//!    resource limits.
//!
//! Every step checks its outcome: the demo exits non-zero when anything is not as shown.
//! The API server reaches the operators through `clientConfig.service` and a Service of
//! type `ExternalName` pointing at `localhost`, exactly as it would reach a Service in a
//! cluster (it verifies the name `<service>.<namespace>.svc`).

use std::{
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    },
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DynamicObject, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::json;
use stackable_conversion::WebhookTarget;
use stackable_testenv::{TestEnv, ports::free_port};
use tokio::process::{Child, Command};

use crate::Result;

/// The namespace everything of the demo lives in.
const NAMESPACE: &str = "webhook-demo";

/// Arguments of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Keep the control plane and the operators running after the demo, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
}

/// Runs the demo.
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(args))?;
    Ok(ExitCode::SUCCESS)
}

/// When the demo started, for the elapsed time each step prints.
static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn step(number: usize, text: &str) {
    let elapsed = STARTED.get_or_init(Instant::now).elapsed();
    println!("\n[{number}/6 at {:.1}s] {text}", elapsed.as_secs_f64());
}

fn show(text: &str) {
    for line in text.lines() {
        println!("      {line}");
    }
}

async fn demo(args: Args) -> Result {
    let started = *STARTED.get_or_init(Instant::now);

    step(
        1,
        "starting etcd and kube-apiserver on 127.0.0.1 (the first run builds them from Go modules)",
    );
    let env = TestEnv::start().await?;
    let client = env.client()?;
    show(&format!("API server {} is ready", env.server_url()));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
    let kubectl = Kubectl::new(&env);

    step(2, "building the example operators (cargo build)");
    let binaries = build_operators()?;

    step(
        3,
        "CronTab operator: CA in a Secret its replicas share, caBundle injected into its CRD, conversion webhook served",
    );
    let crontab = Operator::start(
        &env,
        &binaries.crontab_operator,
        "crontab-operator",
        &["--inject-ca-bundle"],
    )
    .await?;
    let target = WebhookTarget::service("crontab-operator", NAMESPACE)
        .path(crontab_operator::crd::CONVERT_PATH)
        .port(i32::from(crontab.port));
    let crd = crontab_operator::crd::crd(target)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd).await?;
    show("installed CRD crontabs.example.com (v1beta1 = storage, v1, v2), caBundle left empty");
    let bundle = wait_for(
        "the operator to inject its CA bundle into the CRD",
        Duration::from_secs(60),
        || async {
            let crd = crds.get("crontabs.example.com").await.ok()?;
            crd.spec
                .conversion?
                .webhook?
                .client_config?
                .ca_bundle
                .filter(|bundle| !bundle.0.is_empty())
        },
    )
    .await?;
    show(&format!(
        "caBundle injected: {} bytes of PEM",
        bundle.0.len()
    ));
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), NAMESPACE);
    let secret = secrets.get("crontab-operator-webhook-ca").await?;
    let keys: Vec<String> = secret.data.unwrap_or_default().into_keys().collect();
    show(&format!(
        "the CA lives in Secret {NAMESPACE}/crontab-operator-webhook-ca ({}): every replica serves a leaf from it",
        keys.join(", ")
    ));
    check(
        keys.iter().any(|k| k == "ca.crt") && keys.iter().any(|k| k == "rotation-state.json"),
        "the shared CA Secret holds ca.crt and the rotation state",
    )?;
    crontab.wait_ready().await?;

    step(
        4,
        "creating CronTabs as v1beta1 and as v1, reading each back in every version",
    );
    kubectl.apply(&format!(
        r#"apiVersion: example.com/v1beta1
kind: CronTab
metadata:
  name: legacy
  namespace: {NAMESPACE}
spec:
  cronSpec: "*/5 * * * *"
  image: busybox
  hostPort: "db.example.com:5432"
"#
    ))?;
    kubectl.apply(&format!(
        r#"apiVersion: example.com/v1
kind: CronTab
metadata:
  name: modern
  namespace: {NAMESPACE}
spec:
  schedule: "0 3 * * *"
  image: busybox
  host: backup.example.com
  port: 9000
  timeZone: Europe/Berlin
"#
    ))?;
    for (name, version) in [
        ("legacy", "v1"),
        ("legacy", "v2"),
        ("modern", "v1beta1"),
        ("modern", "v1"),
        ("modern", "v2"),
    ] {
        let spec = kubectl.output(&[
            "get",
            &format!("crontabs.{version}.example.com"),
            name,
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.spec}",
        ])?;
        show(&format!("{name} read as {version}: {spec}"));
    }
    show(
        "modern keeps its timeZone in the stash of v1 (its v1beta1 storage cannot hold it): read as v1 it is back, \
         read as v2 it is not (a stash comes back only into the version that wrote it)",
    );
    let v1 = crontab_api(&client, "v1");
    let legacy = v1.get("legacy").await?;
    check(
        legacy.data["spec"]["host"] == "db.example.com" && legacy.data["spec"]["port"] == 5432,
        "legacy (created as v1beta1 hostPort db.example.com:5432) reads as v1 host/port",
    )?;
    let modern = v1.get("modern").await?;
    check(
        modern.data["spec"]["timeZone"] == "Europe/Berlin",
        "modern (created as v1) keeps timeZone through its v1beta1 storage",
    )?;

    step(
        5,
        "sidecar injector: caBundle injected into its webhook configurations, Pods mutated and validated",
    );
    let injector = Operator::start(
        &env,
        &binaries.sidecar_injector,
        "sidecar-injector",
        &["--inject-ca-bundle"],
    )
    .await?;
    install_webhook_configurations(&client, injector.port).await?;
    injector.wait_ready().await?;
    let pod = r#"apiVersion: v1
kind: Pod
metadata:
  name: NAME
  namespace: NAMESPACE
  labels:
    example.com/inject-logging: "true"
spec:
  containers:
    - name: app
      image: busybox
RESOURCES"#
        .replace("NAMESPACE", NAMESPACE);
    // The API server's informers need a moment to see new webhook configurations: probe
    // with server-side dry runs (they call the webhooks too) until both answer.
    let dry_run = |manifest: String| {
        let kubectl = &kubectl;
        async move {
            kubectl.run(
                &[
                    "create",
                    "--dry-run=server",
                    "-o",
                    "jsonpath={.spec.containers[*].name}",
                    "-f",
                    "-",
                ],
                Some(&manifest),
            )
        }
    };
    let limited = pod.replace("NAME", "with-limits").replace(
        "RESOURCES",
        "      resources:\n        limits: {cpu: 100m, memory: 64Mi}\n",
    );
    let unlimited = pod
        .replace("NAME", "without-limits")
        .replace("RESOURCES", "");
    wait_for(
        "the API server to call the mutating webhook",
        Duration::from_secs(30),
        || async {
            let names = dry_run(limited.clone()).await.ok()?;
            names.contains("log-shipper").then_some(())
        },
    )
    .await?;
    let denied = wait_for(
        "the API server to call the validating webhook",
        Duration::from_secs(30),
        || async { dry_run(unlimited.clone()).await.err() },
    )
    .await?;
    kubectl.apply(&limited)?;
    let containers = kubectl.output(&[
        "get",
        "pod",
        "with-limits",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.containers[*].name}",
    ])?;
    show(&format!("pod with-limits has containers: {containers}"));
    check(
        containers.split_whitespace().any(|c| c == "log-shipper"),
        "the mutating webhook injected the log-shipper sidecar",
    )?;
    show(&format!("pod without-limits refused: {}", denied.trim()));
    check(
        kubectl.apply(&unlimited).is_err(),
        "the validating webhook refuses a Pod without resource limits",
    )?;

    step(6, "done");
    show(&format!(
        "the whole demo took {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    if args.keep_running {
        show(&format!(
            "still running; KUBECONFIG={} (Ctrl-C stops everything)",
            env.kubeconfig_path().display()
        ));
        tokio::signal::ctrl_c().await?;
    }
    injector.stop().await;
    crontab.stop().await;
    Ok(())
}

fn check(ok: bool, what: &str) -> Result {
    if ok {
        show(&format!("ok: {what}"));
        Ok(())
    } else {
        Err(format!("not as expected: {what}").into())
    }
}

/// Polls `probe` every 200 ms until it returns something or `timeout` passes.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn crontab_api(client: &Client, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("example.com", version, "CronTab");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "crontabs");
    Api::namespaced_with(client.clone(), NAMESPACE, &resource)
}

async fn install_webhook_configurations(client: &Client, port: u16) -> Result {
    let client_config = |path: &str| json!({"service": {"name": "sidecar-injector", "namespace": NAMESPACE, "path": path, "port": port}});
    let rules = json!([{
        "operations": ["CREATE", "UPDATE"],
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": ["pods"],
    }]);
    let selector = json!({"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}});
    let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "sidecar-injector"},
        "webhooks": [{
            "name": "inject-logging.example.com",
            "clientConfig": client_config("/mutate"),
            "rules": rules,
            "namespaceSelector": selector,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
        }],
    }))?;
    let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "sidecar-injector"},
        "webhooks": [{
            "name": "require-limits.example.com",
            "clientConfig": client_config("/validate"),
            "rules": rules,
            "namespaceSelector": selector,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
        }],
    }))?;
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &mutating)
        .await?;
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &validating)
        .await?;
    show("installed Mutating- and ValidatingWebhookConfiguration sidecar-injector, caBundle empty");
    let mutating_api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let validating_api = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    wait_for(
        "the operator to inject its CA bundle into both webhook configurations",
        Duration::from_secs(60),
        || async {
            let injected = |bundle: Option<&k8s_openapi::ByteString>| {
                bundle.is_some_and(|bundle| !bundle.0.is_empty())
            };
            let m = mutating_api.get("sidecar-injector").await.ok()?;
            let v = validating_api.get("sidecar-injector").await.ok()?;
            let all = m
                .webhooks?
                .iter()
                .all(|w| injected(w.client_config.ca_bundle.as_ref()))
                && v.webhooks?
                    .iter()
                    .all(|w| injected(w.client_config.ca_bundle.as_ref()));
            all.then_some(())
        },
    )
    .await?;
    show("caBundle injected into both webhook configurations");
    Ok(())
}

/// The operator binaries, built by `cargo build`.
struct OperatorBinaries {
    crontab_operator: PathBuf,
    sidecar_injector: PathBuf,
}

fn build_operators() -> Result<OperatorBinaries> {
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--locked",
            "-p",
            "crontab-operator",
            "-p",
            "sidecar-injector",
        ])
        .status()?;
    if !status.success() {
        return Err(format!("cargo build of the example operators failed ({status})").into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let debug = target.join("debug");
    Ok(OperatorBinaries {
        crontab_operator: debug.join("crontab-operator"),
        sidecar_injector: debug.join("sidecar-injector"),
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// An example operator running as a child process, reached through an ExternalName Service.
struct Operator {
    name: &'static str,
    child: Child,
    port: u16,
    health_port: u16,
    log: PathBuf,
}

impl Operator {
    async fn start(
        env: &TestEnv,
        binary: &Path,
        name: &'static str,
        extra_args: &[&str],
    ) -> Result<Self> {
        env.create_external_name_service(NAMESPACE, name).await?;
        let port = free_port()?;
        let health_port = free_port()?;
        let log = env.work_dir().join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--health-bind", &format!("127.0.0.1:{health_port}")])
            .args(["--service-name", name, "--namespace", NAMESPACE])
            .args(extra_args)
            .env("KUBECONFIG", env.kubeconfig_path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        show(&format!(
            "{name} started (pid {}), HTTPS on 127.0.0.1:{port}, Service {name}.{NAMESPACE}.svc -> localhost, log {}",
            child.id().unwrap_or_default(),
            log.display()
        ));
        Ok(Self {
            name,
            child,
            port,
            health_port,
            log,
        })
    }

    async fn wait_ready(&self) -> Result {
        let url = format!("127.0.0.1:{}", self.health_port);
        let ready = wait_for(
            &format!("{} to report ready on {url}/readyz", self.name),
            Duration::from_secs(60),
            || async { http_get_status(&url, "/readyz").await.filter(|s| *s == 200) },
        )
        .await;
        if let Err(error) = ready {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("{error}\n{} log tail:\n{}", self.name, tail.join("\n")).into());
        }
        show(&format!("{} reports ready", self.name));
        Ok(())
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM: the operator shuts down gracefully.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A minimal HTTP/1.0 GET, enough for a health probe; returns the status code.
async fn http_get_status(address: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// The kubectl built with the control plane (same version as the server).
struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(env: &TestEnv) -> Self {
        Self {
            program: env
                .binaries()
                .kubectl
                .clone()
                .unwrap_or_else(|| PathBuf::from("kubectl")),
            kubeconfig: env.kubeconfig_path().to_owned(),
        }
    }

    /// `kubectl apply -f -`, printing what kubectl says; Err holds kubectl's stderr.
    fn apply(&self, manifest: &str) -> Result<String, String> {
        let text = self.run(&["apply", "-f", "-"], Some(manifest))?;
        show(text.trim());
        Ok(text)
    }

    /// Runs kubectl with `stdin`; Ok holds stdout, Err stderr.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        use std::io::Write;
        let mut child = std::process::Command::new(&self.program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.unwrap_or_default().as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    fn output(&self, args: &[&str]) -> Result<String> {
        let output = std::process::Command::new(&self.program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()?;
        if !output.status.success() {
            return Err(format!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
