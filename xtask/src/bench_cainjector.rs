//! `cargo xtask bench-cainjector`: the standalone `stackable-cainjector` against cert-manager's
//! cainjector, one after the other on one real control plane, printing a table of figures.
//!
//! Both injectors (see [`crate::bench_cainjector_peer`]) run as processes against the same
//! stackable-testenv control plane (kube-apiserver + etcd on 127.0.0.1, cert-manager's
//! Certificate CRD installed so that both follow Certificates as they do by default). Both act on
//! the annotation they share, `cert-manager.io/inject-ca-from-secret: <ns>/<name>` on a
//! ValidatingWebhookConfiguration, the Secret carrying `cert-manager.io/allow-direct-injection:
//! "true"` and a `ca.crt`. For each injector, in turn:
//!
//! 1. start-up: a fresh annotated target is created, the injector started; the time from the
//!    spawned process (timed when spawning returns) to the target's caBundle, seen by a watch
//!    in this process;
//! 2. RSS idle (`VmRSS`, `VmHWM` from `/proc`) after a settle time;
//! 3. injection latency: the Secret's `ca.crt` is switched between three CAs `--updates`
//!    times; each time from sending the update to the watch event carrying the new bundle;
//! 4. `--secrets` unrelated Secrets of `--secret-bytes` are created while it runs; its CPU
//!    time meanwhile, its RSS and peak after, and the injection latency again;
//! 5. restart with those Secrets present: start-up to first injection and RSS again;
//! 6. the injector is stopped, its targets and the unrelated Secrets deleted, so the next one
//!    starts from the same cluster state.
//!
//! The measuring client runs in this process, built in release (`cargo xtask bench-cainjector`
//! builds the release xtask and re-runs itself from it). Injection into webhook configurations
//! is described at
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    pin::Pin,
    process::ExitCode,
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt as _};
use k8s_openapi::{
    ByteString,
    api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{
        DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
        WatchParams,
    },
};
use serde_json::json;
use stackable_certs::{CaOptions, CertificateAuthority};
use stackable_testenv::TestEnv;

use crate::{
    Result,
    bench_cainjector_peer::{self, Injector, Process},
    bench_peer::{self, Memory},
};

/// Arguments of `cargo xtask bench-cainjector`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Unrelated Secrets created while each injector runs.
    #[arg(long, default_value_t = 5_000, value_name = "N")]
    secrets: usize,
    /// Data bytes in each unrelated Secret.
    #[arg(long, default_value_t = 4_096, value_name = "BYTES")]
    secret_bytes: usize,
    /// Secret updates timed per injector and phase.
    #[arg(long, default_value_t = 30, value_name = "N")]
    updates: usize,
    /// Seconds to wait before reading memory (after start-up and after creating the Secrets).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    settle: f64,
    /// Injectors to run, in this order (default: ours, then cert-manager's).
    #[arg(long, value_enum, value_delimiter = ',')]
    peer: Vec<Injector>,
    /// A smoke run: 500 Secrets, 5 updates, 1 s settle time.
    #[arg(long)]
    quick: bool,
    /// Also write the figures as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// Runs the benchmark (from the release build of xtask).
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    if cfg!(debug_assertions) {
        return bench_peer::reexec_release("bench-cainjector");
    }
    let injectors = wanted(&args);
    let mut binaries = Vec::new();
    for injector in injectors {
        let binary = match injector {
            Injector::Ours => bench_cainjector_peer::build_ours()?,
            Injector::Go => bench_cainjector_peer::build_go_peer()?,
        };
        binaries.push((injector, binary));
    }
    let work = tempfile::Builder::new()
        .prefix("stackable-bench-cainjector-")
        .tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench_peer::unless_interrupted(bench(
        &args, &binaries, &work,
    )))?;
    Ok(ExitCode::SUCCESS)
}

fn wanted(args: &Args) -> Vec<Injector> {
    if args.peer.is_empty() {
        vec![Injector::Ours, Injector::Go]
    } else {
        args.peer.clone()
    }
}

/// The Secret annotation allowing its `ca.crt` to be injected directly.
const ALLOW_DIRECT_INJECTION: &str = "cert-manager.io/allow-direct-injection";
/// The target annotation naming the Secret.
const INJECT_FROM_SECRET: &str = "cert-manager.io/inject-ca-from-secret";
/// The label of the unrelated Secrets (to delete them in one call).
const UNRELATED_LABEL: &str = "bench.stackable.tech/unrelated";
/// The injection source.
const SOURCE_SECRET: &str = "bench-ca";
/// The wait between opening a watch and the first action it times.
const WATCH_WARMUP: Duration = Duration::from_millis(500);
/// How long one injection may take before the run fails.
const INJECTION_TIMEOUT: Duration = Duration::from_secs(60);

impl Context<'_> {
    /// Makes a new CA for the next Secret update.
    fn next_ca(&mut self) -> Result {
        let ca =
            CertificateAuthority::new(&CaOptions::new(format!("bench-injected-ca-{}", self.made)))?;
        self.made += 1;
        self.current = ca.certificate().to_pem();
        Ok(())
    }
}

/// Latency figures over a number of updates, in milliseconds.
#[derive(Debug, Default, serde::Serialize)]
struct Stats {
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_ms: f64,
    /// Every latency, in the order of the updates.
    samples_ms: Vec<f64>,
}

impl Stats {
    fn of(samples: Vec<f64>) -> Self {
        let mut values = samples.clone();
        values.sort_by(f64::total_cmp);
        let count = values.len();
        if count == 0 {
            return Self::default();
        }
        let rank = |q: f64| values[((q * count as f64).ceil() as usize).clamp(1, count) - 1];
        Self {
            count,
            p50_ms: rank(0.5),
            p99_ms: rank(0.99),
            max_ms: values[count - 1],
            mean_ms: values.iter().sum::<f64>() / count as f64,
            samples_ms: samples,
        }
    }
}

/// The figures of one injector.
#[derive(Debug, serde::Serialize)]
struct Figures {
    injector: &'static str,
    flags: Vec<&'static str>,
    binary_bytes: u64,
    startup_ms: f64,
    rss_idle_bytes: u64,
    hwm_idle_bytes: u64,
    latency: Stats,
    secrets_created: usize,
    secrets_created_seconds: f64,
    cpu_seconds_while_created: f64,
    rss_loaded_bytes: u64,
    hwm_loaded_bytes: u64,
    latency_loaded: Stats,
    startup_loaded_ms: f64,
    rss_restarted_bytes: u64,
    hwm_restarted_bytes: u64,
    errors_in_log: usize,
}

/// Everything one injector's measurement needs.
struct Context<'a> {
    client: Client,
    kubeconfig: &'a Path,
    namespace: String,
    unrelated_namespace: String,
    log_dir: &'a Path,
    /// The CA (PEM) the Secret carries now; every update brings a new one.
    current: String,
    /// How many CAs were made.
    made: usize,
    updates: usize,
    secrets: usize,
    secret_bytes: usize,
    settle: Duration,
    ticks: f64,
}

async fn bench(args: &Args, binaries: &[(Injector, PathBuf)], work: &tempfile::TempDir) -> Result {
    let (secrets, updates, settle) = if args.quick {
        (args.secrets.min(500), args.updates.min(5), 1.0)
    } else {
        (args.secrets, args.updates, args.settle)
    };
    if updates == 0 || settle.is_nan() || settle < 0.0 {
        return Err("--updates must be positive and --settle not negative".into());
    }
    eprintln!("bench-cainjector: starting the test control plane (stackable-testenv)");
    let started = Instant::now();
    let env = TestEnv::builder()
        .crds([certificate_crd()?])
        .start()
        .await?;
    eprintln!(
        "bench-cainjector: control plane at {} up in {:.1} s",
        env.server_url(),
        started.elapsed().as_secs_f64()
    );
    let client = env.client()?;
    let namespace = env.create_namespace("cainjector-bench").await?;
    let unrelated_namespace = env.create_namespace("unrelated").await?;
    let log_dir = work.path().join("logs");
    std::fs::create_dir_all(&log_dir)?;
    let mut context = Context {
        client,
        kubeconfig: env.kubeconfig_path(),
        namespace,
        unrelated_namespace,
        log_dir: &log_dir,
        current: String::new(),
        made: 0,
        updates,
        secrets,
        secret_bytes: args.secret_bytes,
        settle: Duration::from_secs_f64(settle),
        ticks: bench_peer::clock_ticks(),
    };
    context.next_ca()?;
    put_source(&context).await?;

    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    let how = format!(
        "{cores} cores (load average {load_average} at start); one stackable-testenv control plane \
         (kube-apiserver + etcd {}, 127.0.0.1), cert-manager's Certificate CRD installed; the \
         injectors run one after the other as processes, in the order {}, info-level logs to a \
         file, GOMAXPROCS and tokio workers at their defaults; target: a ValidatingWebhookConfiguration \
         annotated {INJECT_FROM_SECRET}: <ns>/{SOURCE_SECRET}, the Secret marked {ALLOW_DIRECT_INJECTION}; \
         {updates} timed updates per phase (each puts a new CA into ca.crt; done when the \
         target's bundle holds it: cert-manager appends to the bundle, ours replaces it), seen by a \
         watch in this process (release build); {secrets} unrelated Secrets of {} B created with 32 \
         requests in flight while each injector runs, deleted before the next; settle {settle} s \
         before memory readings",
        stackable_testenv::KUBERNETES_VERSION,
        binaries
            .iter()
            .map(|(injector, _)| injector.label())
            .collect::<Vec<_>>()
            .join(", "),
        args.secret_bytes,
    );
    eprintln!("bench-cainjector: {how}");

    let mut figures = Vec::new();
    for (injector, binary) in binaries {
        figures.push(measure(*injector, binary, &mut context).await?);
    }
    drop(context);
    env.stop();

    let report = render(&how, &figures);
    println!("{report}");
    if let Some(path) = &args.json {
        let document = json!({
            "date": bench_peer::report_date(),
            "how": how,
            "cores": cores,
            "secrets": secrets,
            "secret_bytes": args.secret_bytes,
            "updates": updates,
            "settle_seconds": settle,
            "injectors": figures,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&document)?)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("bench-cainjector: wrote {}", path.display());
    }
    Ok(())
}

/// A minimal `certificates.cert-manager.io` CRD: served as v1, any content.
fn certificate_crd() -> Result<CustomResourceDefinition> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "certificates.cert-manager.io" },
        "spec": {
            "group": "cert-manager.io", "scope": "Namespaced",
            "names": { "kind": "Certificate", "listKind": "CertificateList",
                       "plural": "certificates", "singular": "certificate" },
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }]
        }
    }))?)
}

/// Writes the source Secret with the current CA.
async fn put_source(context: &Context<'_>) -> Result {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(SOURCE_SECRET.to_owned()),
            namespace: Some(context.namespace.clone()),
            annotations: Some(BTreeMap::from([(
                ALLOW_DIRECT_INJECTION.to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "ca.crt".to_owned(),
            ByteString(context.current.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(context.client.clone(), &context.namespace)
        .patch(
            SOURCE_SECRET,
            &PatchParams::apply("bench-cainjector").force(),
            &Patch::Apply(&secret),
        )
        .await
        .map_err(|e| {
            format!(
                "cannot write Secret {}/{SOURCE_SECRET}: {e}",
                context.namespace
            )
        })?;
    Ok(())
}

/// Creates an annotated ValidatingWebhookConfiguration without a caBundle.
async fn create_target(context: &Context<'_>, name: &str) -> Result {
    let target: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": { "name": name, "annotations": {
            INJECT_FROM_SECRET: format!("{}/{SOURCE_SECRET}", context.namespace) } },
        "webhooks": [{
            "name": "bench.cainjector.stackable.tech",
            "clientConfig": { "service": { "name": "hooks", "namespace": context.namespace } },
            "rules": [{ "apiGroups": ["bench.stackable.tech"], "apiVersions": ["v1"],
                        "operations": ["CREATE"], "resources": ["gadgets"] }],
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore"
        }]
    }))?;
    Api::<ValidatingWebhookConfiguration>::all(context.client.clone())
        .create(&PostParams::default(), &target)
        .await
        .map_err(|e| format!("cannot create ValidatingWebhookConfiguration {name}: {e}"))?;
    Ok(())
}

async fn delete_target(context: &Context<'_>, name: &str) -> Result {
    Api::<ValidatingWebhookConfiguration>::all(context.client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .map_err(|e| format!("cannot delete ValidatingWebhookConfiguration {name}: {e}"))?;
    Ok(())
}

/// The base64 body of the PEM blocks in `bytes`, whitespace and armour removed: equal for the
/// same certificates however the PEM is wrapped.
fn pem_body(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|line| !line.trim_start().starts_with("-----"))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect()
}

fn bundle_of(target: &ValidatingWebhookConfiguration) -> Option<String> {
    target
        .webhooks
        .as_ref()?
        .first()?
        .client_config
        .ca_bundle
        .as_ref()
        .map(|bundle| pem_body(&bundle.0))
}

type WatchStream =
    Pin<Box<dyn Stream<Item = kube::Result<WatchEvent<ValidatingWebhookConfiguration>>> + Send>>;

/// A watch on one target, opened before the action whose effect it times.
struct TargetWatch {
    name: String,
    stream: WatchStream,
    /// The bundle when the watch was opened.
    initial: Option<String>,
}

impl TargetWatch {
    async fn open(client: &Client, name: &str) -> Result<Self> {
        let api = Api::<ValidatingWebhookConfiguration>::all(client.clone());
        let current = api
            .get(name)
            .await
            .map_err(|e| format!("cannot read ValidatingWebhookConfiguration {name}: {e}"))?;
        let version = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(290);
        let stream = api
            .watch(&params, &version)
            .await
            .map_err(|e| format!("cannot watch ValidatingWebhookConfiguration {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            stream: Box::pin(stream),
            initial: bundle_of(&current),
        })
    }

    /// Waits until the target's bundle holds `expected` (a [`pem_body`]; cert-manager merges
    /// the new CA into the bundle, ours replaces it); returns when it was seen.
    async fn wait_for(&mut self, expected: &str, process: &mut Process) -> Result<Instant> {
        let holds = |bundle: Option<String>| bundle.is_some_and(|b| b.contains(expected));
        if holds(self.initial.clone()) {
            return Ok(Instant::now());
        }
        let deadline = Instant::now() + INJECTION_TIMEOUT;
        loop {
            match tokio::time::timeout(Duration::from_millis(500), self.stream.next()).await {
                Ok(Some(Ok(WatchEvent::Added(target) | WatchEvent::Modified(target)))) => {
                    if holds(bundle_of(&target)) {
                        return Ok(Instant::now());
                    }
                }
                Ok(Some(Ok(WatchEvent::Deleted(_)))) => {
                    return Err(format!("{} was deleted while being watched", self.name).into());
                }
                Ok(Some(Ok(WatchEvent::Bookmark(_)))) => {}
                Ok(Some(Ok(WatchEvent::Error(error)))) => {
                    return Err(format!("watch of {} failed: {error}", self.name).into());
                }
                Ok(Some(Err(error))) => {
                    return Err(format!("watch of {} failed: {error}", self.name).into());
                }
                Ok(None) => {
                    return Err(format!("the watch of {} ended", self.name).into());
                }
                Err(_) => {}
            }
            process.check_alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not get the expected caBundle within {} s; injector log:\n{}",
                    self.name,
                    INJECTION_TIMEOUT.as_secs(),
                    process.log_tail()
                )
                .into());
            }
        }
    }
}

/// Starts the injector with a fresh target present; returns it and the time to its first
/// injection.
async fn start_injector(
    context: &Context<'_>,
    injector: Injector,
    binary: &Path,
    target: &str,
    tag: &str,
) -> Result<(Process, f64)> {
    create_target(context, target).await?;
    let mut watch = TargetWatch::open(&context.client, target).await?;
    tokio::time::sleep(WATCH_WARMUP).await;
    let log = context
        .log_dir
        .join(format!("{}-{tag}.log", injector.tag()));
    let mut process = Process::spawn(injector, binary, context.kubeconfig, log)?;
    let seen = watch
        .wait_for(&pem_body(context.current.as_bytes()), &mut process)
        .await?;
    let startup = seen.duration_since(process.spawned).as_secs_f64() * 1000.0;
    Ok((process, startup))
}

/// Times `context.updates` Secret updates to the target's new caBundle, in milliseconds.
async fn latencies(
    context: &mut Context<'_>,
    target: &str,
    process: &mut Process,
) -> Result<Stats> {
    let mut values = Vec::with_capacity(context.updates);
    // One watch for all updates, given time to become live first: a watch opened at the
    // latest resourceVersion may wait for the API server's watch cache to catch up, which
    // is not the injector's time.
    let mut watch = TargetWatch::open(&context.client, target).await?;
    tokio::time::sleep(WATCH_WARMUP).await;
    for _ in 0..context.updates {
        context.next_ca()?;
        let expected = pem_body(context.current.as_bytes());
        let sent = Instant::now();
        put_source(context).await?;
        let seen = watch.wait_for(&expected, process).await?;
        values.push(seen.duration_since(sent).as_secs_f64() * 1000.0);
    }
    Ok(Stats::of(values))
}

/// Creates the unrelated Secrets, 32 requests in flight; returns the seconds it took.
async fn create_unrelated(context: &Context<'_>) -> Result<f64> {
    let api = Api::<Secret>::namespaced(context.client.clone(), &context.unrelated_namespace);
    let payload = ByteString(vec![b'x'; context.secret_bytes]);
    let start = Instant::now();
    let results: Vec<Result<(), String>> = futures::stream::iter(0..context.secrets)
        .map(|index| {
            let api = api.clone();
            let payload = payload.clone();
            async move {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("unrelated-{index}")),
                        labels: Some(BTreeMap::from([(
                            UNRELATED_LABEL.to_owned(),
                            "true".to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    data: Some(BTreeMap::from([("blob".to_owned(), payload)])),
                    ..Secret::default()
                };
                api.create(&PostParams::default(), &secret)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("cannot create Secret unrelated-{index}: {e}"))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    if let Some(error) = results.into_iter().find_map(Result::err) {
        return Err(error.into());
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Deletes the unrelated Secrets, 500 at a time (one deletecollection of 20,000 answers with
/// every deleted object, ~90 MB, which the connection did not survive), and waits until none is
/// left.
async fn delete_unrelated(context: &Context<'_>) -> Result {
    let api = Api::<Secret>::namespaced(context.client.clone(), &context.unrelated_namespace);
    let selector = ListParams::default().labels(&format!("{UNRELATED_LABEL}=true"));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = api.list_metadata(&selector.clone().limit(1)).await?;
        if left.items.is_empty() {
            break;
        }
        api.delete_collection(&DeleteParams::default(), &selector.clone().limit(500))
            .await
            .map_err(|e| format!("cannot delete the unrelated Secrets: {e}"))?;
        if Instant::now() > deadline {
            return Err("the unrelated Secrets were not deleted within 300 s".into());
        }
    }
    loop {
        let left = api.list_metadata(&selector.clone().limit(1)).await?;
        if left.items.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the unrelated Secrets were not deleted within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn measure(injector: Injector, binary: &Path, context: &mut Context<'_>) -> Result<Figures> {
    let label = injector.label();
    let first_target = format!("bench-{}-start", injector.tag());
    let second_target = format!("bench-{}-restart", injector.tag());
    eprintln!("bench-cainjector: {label}: starting ({})", binary.display());
    let (mut process, startup_ms) =
        start_injector(context, injector, binary, &first_target, "start").await?;
    eprintln!("bench-cainjector: {label}: first injection {startup_ms:.0} ms after spawn");
    tokio::time::sleep(context.settle).await;
    process.check_alive()?;
    let idle = bench_peer::memory(process.pid())?;
    eprintln!(
        "bench-cainjector: {label}: timing {} Secret updates",
        context.updates
    );
    let latency = latencies(context, &first_target, &mut process).await?;

    eprintln!(
        "bench-cainjector: {label}: creating {} unrelated Secrets of {} B",
        context.secrets, context.secret_bytes
    );
    let cpu_before = bench_peer::cpu_seconds(Some(process.pid()), context.ticks)?;
    let secrets_created_seconds = create_unrelated(context).await?;
    tokio::time::sleep(context.settle).await;
    process.check_alive()?;
    let cpu_while_created =
        bench_peer::cpu_seconds(Some(process.pid()), context.ticks)? - cpu_before;
    let loaded = bench_peer::memory(process.pid())?;
    eprintln!(
        "bench-cainjector: {label}: created in {secrets_created_seconds:.1} s; timing {} updates again",
        context.updates
    );
    let latency_loaded = latencies(context, &first_target, &mut process).await?;
    let loaded_end = bench_peer::memory(process.pid())?;
    process.stop();
    let mut errors_in_log = count_errors(&process.log);

    eprintln!("bench-cainjector: {label}: restarting with the Secrets present");
    let (mut restarted, startup_loaded_ms) =
        start_injector(context, injector, binary, &second_target, "restart").await?;
    tokio::time::sleep(context.settle).await;
    restarted.check_alive()?;
    let restarted_memory: Memory = bench_peer::memory(restarted.pid())?;
    restarted.stop();
    errors_in_log += count_errors(&restarted.log);

    eprintln!("bench-cainjector: {label}: cleaning up (targets, unrelated Secrets)");
    delete_target(context, &first_target).await?;
    delete_target(context, &second_target).await?;
    delete_unrelated(context).await?;

    Ok(Figures {
        injector: label,
        flags: injector.flags().to_vec(),
        binary_bytes: std::fs::metadata(binary).map_or(0, |m| m.len()),
        startup_ms,
        rss_idle_bytes: idle.rss,
        hwm_idle_bytes: idle.hwm,
        latency,
        secrets_created: context.secrets,
        secrets_created_seconds,
        cpu_seconds_while_created: cpu_while_created,
        rss_loaded_bytes: loaded.rss,
        hwm_loaded_bytes: loaded.hwm.max(loaded_end.hwm),
        latency_loaded,
        startup_loaded_ms,
        rss_restarted_bytes: restarted_memory.rss,
        hwm_restarted_bytes: restarted_memory.hwm,
        errors_in_log,
    })
}

/// Lines of a log that report an error (either logger's format); the first two are printed.
fn count_errors(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("ERROR") || line.contains("\"level\":\"error\""))
        // A request cut short by the stop signal (SIGTERM) is not an injector fault.
        .filter(|line| !line.contains("context canceled"))
        .collect();
    for line in errors.iter().take(2) {
        let line: String = line.chars().take(400).collect();
        eprintln!(
            "bench-cainjector:   error line in {}: {line}",
            log.display()
        );
    }
    errors.len()
}

/// The report: how it was run, then one row per figure and one column per injector.
fn render(how: &str, figures: &[Figures]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nCA injector benchmark, {}",
        bench_peer::report_date()
    );
    let _ = writeln!(out, "How: {how}\n");
    for f in figures {
        let _ = writeln!(
            out,
            "{:<24} binary {}; flags: {}",
            f.injector,
            bench_peer::mib(f.binary_bytes),
            if f.flags.is_empty() {
                "(none)".to_owned()
            } else {
                f.flags.join(" ")
            }
        );
    }
    let secrets = figures.first().map_or(0, |f| f.secrets_created);
    type Cell = fn(&Figures) -> String;
    let lines: Vec<(String, Cell)> = vec![
        ("start-up to first injection".into(), |f| {
            format!("{:.0} ms", f.startup_ms)
        }),
        ("RSS idle".into(), |f| bench_peer::mib(f.rss_idle_bytes)),
        ("RSS peak (VmHWM) idle".into(), |f| {
            bench_peer::mib(f.hwm_idle_bytes)
        }),
        ("inject latency p50".into(), |f| {
            format!("{:.1} ms", f.latency.p50_ms)
        }),
        ("inject latency p99".into(), |f| {
            format!("{:.1} ms", f.latency.p99_ms)
        }),
        ("inject latency max".into(), |f| {
            format!("{:.1} ms", f.latency.max_ms)
        }),
        (format!("CPU while {secrets} Secrets created"), |f| {
            format!("{:.2} s", f.cpu_seconds_while_created)
        }),
        (format!("RSS after {secrets} Secrets"), |f| {
            bench_peer::mib(f.rss_loaded_bytes)
        }),
        (format!("RSS peak after {secrets} Secrets"), |f| {
            bench_peer::mib(f.hwm_loaded_bytes)
        }),
        (format!("inject latency p50, {secrets} Secrets"), |f| {
            format!("{:.1} ms", f.latency_loaded.p50_ms)
        }),
        (format!("inject latency p99, {secrets} Secrets"), |f| {
            format!("{:.1} ms", f.latency_loaded.p99_ms)
        }),
        (format!("inject latency max, {secrets} Secrets"), |f| {
            format!("{:.1} ms", f.latency_loaded.max_ms)
        }),
        (format!("start-up with {secrets} Secrets present"), |f| {
            format!("{:.0} ms", f.startup_loaded_ms)
        }),
        (format!("RSS, started with {secrets} Secrets"), |f| {
            bench_peer::mib(f.rss_restarted_bytes)
        }),
        (format!("RSS peak, started with {secrets}"), |f| {
            bench_peer::mib(f.hwm_restarted_bytes)
        }),
        ("error lines in its logs (not shutdown)".into(), |f| {
            f.errors_in_log.to_string()
        }),
    ];
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["figure".to_owned()];
    header.extend(figures.iter().map(|f| f.injector.to_owned()));
    table.push(header);
    for (name, cell) in &lines {
        let mut row = vec![name.clone()];
        row.extend(figures.iter().map(cell));
        table.push(row);
    }
    let _ = writeln!(out);
    bench_peer::write_table(&mut out, &table, 1);
    let count = figures.first().map_or(0, |f| f.latency.count);
    let _ = writeln!(
        out,
        "\nLatency: from sending the Secret update to the watch event in this process showing the \
         new caBundle on the target, {count} updates per phase (with so few samples p99 is the \
         second largest or the largest). The watch is opened once per phase, 0.5 s before the \
         first update. Start-up: the process spawned (timed when spawning returns) to the watch \
         event showing the first injection into a target created just before. RSS from /proc (VmRSS; peak = VmHWM since \
         the process started), read after the settle time. CPU: the injector's user+system time \
         from the first Secret created to the end of the settle time."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_body_ignores_wrapping_and_armour() {
        let wide = b"-----BEGIN CERTIFICATE-----\nQUJD\nREVG\n-----END CERTIFICATE-----\n";
        let narrow = b"-----BEGIN CERTIFICATE-----\r\nQUJDREVG\r\n-----END CERTIFICATE-----";
        assert_eq!(pem_body(wide), "QUJDREVG");
        assert_eq!(pem_body(wide), pem_body(narrow));
        assert_ne!(pem_body(wide), pem_body(b"QUJD"));
    }

    #[test]
    fn percentiles_by_rank() {
        let stats = Stats::of((1..=100).map(f64::from).rev().collect());
        assert_eq!(stats.count, 100);
        assert_eq!(stats.p50_ms, 50.0);
        assert_eq!(stats.p99_ms, 99.0);
        assert_eq!(stats.max_ms, 100.0);
        let few = Stats::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((few.p50_ms, few.p99_ms), (2.0, 3.0));
        assert_eq!(Stats::of(Vec::new()).count, 0);
    }
}
