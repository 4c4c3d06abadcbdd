//! [`TestEnv`]: etcd and kube-apiserver on free loopback ports, stopped on drop.
//!
//! The flags follow what controller-runtime's [envtest] passes: a single etcd member with
//! its data in a temporary folder, and an API server with generated certificates, RBAC
//! authorization, a service-account signing key and no controller-manager or scheduler
//! (so nothing reconciles: Pods stay Pending, namespaces are never finalized). The
//! `ServiceAccount` admission plugin is off because no controller creates the `default`
//! ServiceAccount that it would require.
//!
//! [envtest]: https://book.kubebuilder.io/reference/envtest.html

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use base64::Engine as _;
use k8s_openapi::{
    api::core::v1::{Namespace, Service},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use snafu::{OptionExt, ResultExt, Snafu};
use tokio::net::TcpStream;

use crate::{assets, assets::Binaries, pki, ports::free_port, process::ManagedProcess};

mod faults;
mod identity;

/// The field manager used for server-side apply.
pub const FIELD_MANAGER: &str = "stackable-testenv";

/// The name prefix of every harness's temporary folder.
const WORK_DIR_PREFIX: &str = "stackable-testenv-";

/// The file in a temporary folder naming the process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// How many log lines a startup error shows.
const LOG_TAIL_LINES: usize = 40;

/// Errors of [`TestEnv`].
#[derive(Debug, Snafu)]
pub enum Error {
    /// No binaries could be found or built.
    #[snafu(display("cannot find or build kube-apiserver and etcd"))]
    Binaries {
        /// The cause.
        source: assets::Error,
    },

    /// The temporary folder could not be created.
    #[snafu(display("cannot create the temporary folder"))]
    TempDir {
        /// The cause.
        source: std::io::Error,
    },

    /// Generating the certificates failed.
    #[snafu(display("cannot generate the control-plane certificates"))]
    Pki {
        /// The cause.
        source: pki::Error,
    },

    /// Writing a file failed.
    #[snafu(display("cannot write {path:?}"))]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// No free port was found.
    #[snafu(display("cannot find a free port on 127.0.0.1"))]
    FreePort {
        /// The cause.
        source: std::io::Error,
    },

    /// A process could not be started.
    #[snafu(display("cannot start {name} ({path:?})"))]
    Spawn {
        /// `etcd` or `kube-apiserver`.
        name: String,
        /// The binary.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// A process exited during startup.
    #[snafu(display(
        "{name} exited during startup ({status})\ncommand: {command_line}\nlog ({log:?}) ends with:\n{tail}"
    ))]
    Exited {
        /// `etcd` or `kube-apiserver`.
        name: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The program and flags.
        command_line: String,
        /// The log file (removed with the temporary folder).
        log: PathBuf,
        /// The last lines of its output.
        tail: String,
    },

    /// A process did not become ready in time.
    #[snafu(display(
        "{name} was not ready after {timeout:?} (last check: {last_error})\ncommand: {command_line}\nlog ends with:\n{tail}"
    ))]
    NotReady {
        /// `etcd` or `kube-apiserver`.
        name: String,
        /// The timeout.
        timeout: Duration,
        /// What the last readiness check saw.
        last_error: String,
        /// The program and flags.
        command_line: String,
        /// The last lines of its output.
        tail: String,
    },

    /// The generated kubeconfig was not accepted by kube.
    #[snafu(display("cannot load the generated kubeconfig"))]
    Kubeconfig {
        /// The cause.
        source: kube::config::KubeconfigError,
    },

    /// The kube client could not be built.
    #[snafu(display("cannot build a kube client"))]
    Client {
        /// The cause.
        source: kube::Error,
    },

    /// A request to the API server failed.
    #[snafu(display("cannot {action}"))]
    Request {
        /// What was attempted, naming the object.
        action: String,
        /// The cause.
        source: kube::Error,
    },

    /// A CRD did not become Established.
    #[snafu(display("CRD {name} was not Established after {timeout:?}"))]
    CrdNotEstablished {
        /// The CRD's name.
        name: String,
        /// The timeout.
        timeout: Duration,
    },

    /// [`TestEnv::start_apiserver`] was called while kube-apiserver runs.
    #[snafu(display("kube-apiserver is already running (pid {pid}); stop it first"))]
    ApiserverRunning {
        /// Its process id.
        pid: u32,
    },

    /// A file could not be read (or kubectl could not be run).
    #[snafu(display("cannot read {path:?}"))]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// The binaries have no kubectl.
    #[snafu(display("the test control plane has no kubectl (see stackable_testenv::build)"))]
    NoKubectl,

    /// `kubectl apply` failed.
    #[snafu(display("kubectl apply -f {path:?} failed: {stderr}"))]
    KubectlFailed {
        /// The manifest.
        path: PathBuf,
        /// What kubectl printed on stderr.
        stderr: String,
    },

    /// A CRD without a name was given.
    #[snafu(display("a CRD has no metadata.name"))]
    CrdWithoutName,

    /// The API server answered without a name for a created object.
    #[snafu(display("the API server returned a {kind} without a name"))]
    NoName {
        /// The kind.
        kind: String,
    },
}

/// Builder for [`TestEnv`].
#[derive(Debug, Clone)]
pub struct TestEnvBuilder {
    binaries: Option<Binaries>,
    startup_timeout: Duration,
    extra_apiserver_flags: Vec<String>,
    crds: Vec<CustomResourceDefinition>,
}

impl Default for TestEnvBuilder {
    fn default() -> Self {
        Self {
            binaries: None,
            startup_timeout: Duration::from_secs(90),
            extra_apiserver_flags: Vec::new(),
            crds: Vec::new(),
        }
    }
}

impl TestEnvBuilder {
    /// Uses these binaries instead of [`Binaries::ensure`].
    pub fn binaries(mut self, binaries: Binaries) -> Self {
        self.binaries = Some(binaries);
        self
    }

    /// How long etcd and kube-apiserver may each take to become ready (default 90 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Adds a kube-apiserver flag (`--name=value`); later flags override earlier ones.
    pub fn apiserver_flag(mut self, flag: impl Into<String>) -> Self {
        self.extra_apiserver_flags.push(flag.into());
        self
    }

    /// Installs these CRDs (and waits until they are Established) before [`Self::start`] returns.
    pub fn crds(mut self, crds: impl IntoIterator<Item = CustomResourceDefinition>) -> Self {
        self.crds.extend(crds);
        self
    }

    /// Starts etcd and kube-apiserver and waits until `/readyz` answers 200.
    pub async fn start(self) -> Result<TestEnv, Error> {
        let binaries = match self.binaries {
            Some(binaries) => binaries,
            None => tokio::task::spawn_blocking(Binaries::ensure)
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
                .context(BinariesSnafu)?,
        };
        remove_stale_work_dirs(&std::env::temp_dir());
        let dir = tempfile::Builder::new()
            .prefix(WORK_DIR_PREFIX)
            .tempdir()
            .context(TempDirSnafu)?;
        let root = dir.path().to_owned();
        let owner = root.join(OWNER_FILE);
        std::fs::write(&owner, std::process::id().to_string())
            .context(WriteFileSnafu { path: &owner })?;

        let pki = pki::generate(&root.join("pki")).context(PkiSnafu)?;

        let launch = Launch {
            binaries: &binaries,
            root: &root,
            pki: &pki,
            extra_apiserver_flags: &self.extra_apiserver_flags,
            startup_timeout: self.startup_timeout,
        };
        let launched = launch.on_free_ports(free_port).await?;

        let env = TestEnv {
            apiserver: launched.apiserver,
            etcd: launched.etcd,
            apiserver_args: launched.apiserver_args,
            startup_timeout: self.startup_timeout,
            binaries,
            config: launched.config,
            server_url: launched.server_url,
            kubeconfig_path: launched.kubeconfig_path,
            ca_pem: pki.ca_pem,
            dir,
        };
        if !self.crds.is_empty() {
            env.install_crds(self.crds).await?;
        }
        tracing::info!(server = %env.server_url, dir = ?env.work_dir(), "test control plane ready");
        Ok(env)
    }
}

/// A running etcd + kube-apiserver on 127.0.0.1. Both stop, and the temporary folder
/// is removed, when this is dropped (also when a test panics).
#[derive(Debug)]
pub struct TestEnv {
    // Drop order matters: the processes are stopped in `Drop`, then the folder is removed.
    apiserver: ManagedProcess,
    etcd: ManagedProcess,
    /// The flags kube-apiserver was started with, for a restart.
    apiserver_args: Vec<String>,
    startup_timeout: Duration,
    binaries: Binaries,
    config: Config,
    server_url: String,
    kubeconfig_path: PathBuf,
    ca_pem: String,
    dir: tempfile::TempDir,
}

impl TestEnv {
    /// A builder, for CRDs, a timeout, extra flags or given binaries.
    pub fn builder() -> TestEnvBuilder {
        TestEnvBuilder::default()
    }

    /// Starts a control plane with the defaults: see [`TestEnvBuilder::start`].
    pub async fn start() -> Result<Self, Error> {
        Self::builder().start().await
    }

    /// A new client, authenticated as `admin` in group `system:masters`.
    ///
    /// Each call builds a fresh client, so one `TestEnv` can serve tests that run on
    /// different tokio runtimes.
    pub fn client(&self) -> Result<Client, Error> {
        Client::try_from(self.config.clone()).context(ClientSnafu)
    }

    /// The client configuration (server URL, CA, admin client certificate).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// A kubeconfig file for this control plane (inside [`Self::work_dir`]).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Copies the kubeconfig to `path` (which outlives this `TestEnv`).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        std::fs::copy(&self.kubeconfig_path, path)
            .map(|_| ())
            .context(WriteFileSnafu { path })
    }

    /// The PEM of the CA that signed the API server's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The binaries in use (kubectl among them, when known).
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// The temporary folder: certificates, etcd data, logs, kubeconfig. Removed on drop.
    pub fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process ids of kube-apiserver and etcd (the apiserver's last one while it is
    /// stopped, see [`Self::stop_apiserver`]).
    pub fn pids(&self) -> [u32; 2] {
        [self.apiserver.id(), self.etcd.id()]
    }

    /// Stops the control plane and removes the temporary folder (what drop does).
    pub fn stop(self) {
        drop(self);
    }

    /// Applies CRDs (server-side apply) and waits until each is Established.
    pub async fn install_crds(
        &self,
        crds: impl IntoIterator<Item = CustomResourceDefinition>,
    ) -> Result<(), Error> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client()?);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut names = Vec::new();
        for mut crd in crds {
            let name = crd.metadata.name.clone().context(CrdWithoutNameSnafu)?;
            crd.metadata.managed_fields = None;
            crd.metadata.resource_version = None;
            crd.status = None;
            api.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .context(RequestSnafu {
                    action: format!("apply CRD {name}"),
                })?;
            names.push(name);
        }
        let timeout = Duration::from_secs(30);
        for name in names {
            let deadline = Instant::now() + timeout;
            loop {
                let crd = api.get(&name).await.context(RequestSnafu {
                    action: format!("get CRD {name}"),
                })?;
                if is_established(&crd) {
                    break;
                }
                if Instant::now() > deadline {
                    return CrdNotEstablishedSnafu { name, timeout }.fail();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Creates a namespace with a unique name starting with `prefix` and returns its name.
    ///
    /// Nothing deletes namespaces here (there is no namespace controller); they go away
    /// with the control plane.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String, Error> {
        let api: Api<Namespace> = Api::all(self.client()?);
        let prefix = sanitize_prefix(prefix);
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_owned(),
                        FIELD_MANAGER.to_owned(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = api
            .create(&PostParams::default(), &namespace)
            .await
            .context(RequestSnafu {
                action: format!("create a namespace named {prefix}-*"),
            })?;
        created
            .metadata
            .name
            .context(NoNameSnafu { kind: "Namespace" })
    }

    /// Creates the namespace `name` (a fixed name, e.g. the one a chart or manifest names;
    /// see [`Self::create_namespace`] for a unique one).
    pub async fn create_namespace_named(&self, name: &str) -> Result<(), Error> {
        let api: Api<Namespace> = Api::all(self.client()?);
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &namespace)
            .await
            .context(RequestSnafu {
                action: format!("create namespace {name}"),
            })?;
        Ok(())
    }

    /// Creates a Service `name` in `namespace` of type ExternalName pointing at `localhost`,
    /// so a webhook configured with `clientConfig.service` reaches a server on this machine.
    ///
    /// The API server then dials `localhost:<clientConfig.service.port>` and verifies the
    /// serving certificate for the name `<name>.<namespace>.svc` (see
    /// [`webhook_service_dns_names`]). The server must listen on 127.0.0.1 (or `[::1]`).
    /// Create the Service before the webhook configuration: the API server reads Services
    /// from an informer, which needs a moment to see a new one.
    pub async fn create_external_name_service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Service, Error> {
        let api: Api<Service> = Api::namespaced(self.client()?, namespace);
        let service: Service = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": name, "namespace": namespace },
            "spec": { "type": "ExternalName", "externalName": "localhost" },
        }))
        .unwrap_or_default();
        api.create(&PostParams::default(), &service)
            .await
            .context(RequestSnafu {
                action: format!("create ExternalName Service {namespace}/{name}"),
            })
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.apiserver.stop();
        self.etcd.stop();
        tracing::debug!(dir = ?self.dir.path(), "test control plane stopped");
    }
}

/// The DNS names the API server verifies when it calls a webhook through the Service
/// `name` in `namespace`: put them in the webhook's serving certificate.
pub fn webhook_service_dns_names(namespace: &str, name: &str) -> Vec<String> {
    vec![
        format!("{name}.{namespace}.svc"),
        format!("{name}.{namespace}.svc.cluster.local"),
        "localhost".to_owned(),
    ]
}

/// Removes temporary folders left by harnesses whose process died without dropping them
/// (killed, or `std::process::exit` with a `TestEnv` alive). Best effort: errors are ignored.
fn remove_stale_work_dirs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(WORK_DIR_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        let Some(pid) = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::debug!(?path, pid, "removing the folder of a dead harness");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

fn sanitize_prefix(prefix: &str) -> String {
    let mut out: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(40);
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "test".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// How often [`TestEnvBuilder::start`] starts the control plane on fresh ports when a port
/// it picked was taken before etcd or kube-apiserver bound it.
const PORT_ATTEMPTS: u32 = 3;

/// Starting etcd and kube-apiserver.
struct Launch<'a> {
    binaries: &'a Binaries,
    root: &'a Path,
    pki: &'a pki::Pki,
    extra_apiserver_flags: &'a [String],
    startup_timeout: Duration,
}

/// etcd and kube-apiserver, running and ready.
#[derive(Debug)]
struct Launched {
    etcd: ManagedProcess,
    apiserver: ManagedProcess,
    apiserver_args: Vec<String>,
    server_url: String,
    kubeconfig_path: PathBuf,
    config: Config,
}

impl Launch<'_> {
    /// Starts the control plane on ports from `pick` (etcd's client and peer ports, then
    /// kube-apiserver's).
    ///
    /// The ports were free when picked, but another process (a test's helper starting its
    /// own control plane, an outgoing connection) may bind one before etcd or kube-apiserver
    /// does: the process then exits with "address already in use", and the control plane is
    /// started again on fresh ports, up to [`PORT_ATTEMPTS`] times.
    async fn on_free_ports(
        &self,
        mut pick: impl FnMut() -> std::io::Result<u16>,
    ) -> Result<Launched, Error> {
        let mut attempt = 1;
        loop {
            let mut port = || pick().context(FreePortSnafu);
            let ports = [port()?, port()?, port()?];
            match self.on_ports(ports).await {
                Err(error) if attempt < PORT_ATTEMPTS && error.is_port_taken() => {
                    tracing::warn!(
                        attempt,
                        %error,
                        "a port was taken before the control plane bound it; starting again on fresh ports"
                    );
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One attempt: etcd on `etcd_client_port` and `etcd_peer_port`, kube-apiserver on
    /// `apiserver_port`.
    async fn on_ports(
        &self,
        [etcd_client_port, etcd_peer_port, apiserver_port]: [u16; 3],
    ) -> Result<Launched, Error> {
        let server_url = format!("https://127.0.0.1:{apiserver_port}");

        // etcd, with the data of an earlier attempt removed
        let data_dir = self.root.join("etcd");
        match std::fs::remove_dir_all(&data_dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error).context(WriteFileSnafu { path: &data_dir });
            }
            _ => {}
        }
        let etcd_args = etcd_flags(&data_dir, etcd_client_port, etcd_peer_port);
        let mut etcd = spawn(
            "etcd",
            &self.binaries.etcd,
            &etcd_args,
            self.root.join("etcd.log"),
        )?;
        wait_for_port(&mut etcd, etcd_client_port, self.startup_timeout).await?;

        // kube-apiserver
        let mut apiserver_args = apiserver_flags(&self.pki.files, apiserver_port, etcd_client_port);
        apiserver_args.extend(self.extra_apiserver_flags.iter().cloned());
        let mut apiserver = spawn(
            "kube-apiserver",
            &self.binaries.kube_apiserver,
            &apiserver_args,
            self.root.join("kube-apiserver.log"),
        )?;

        let kubeconfig_json = kubeconfig_json(&server_url, self.pki);
        let kubeconfig_path = self.root.join("kubeconfig");
        std::fs::write(&kubeconfig_path, &kubeconfig_json).context(WriteFileSnafu {
            path: &kubeconfig_path,
        })?;
        let kubeconfig = Kubeconfig::from_yaml(&kubeconfig_json).context(KubeconfigSnafu)?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .context(KubeconfigSnafu)?;

        wait_for_apiserver(&mut apiserver, &mut etcd, &config, self.startup_timeout).await?;
        Ok(Launched {
            etcd,
            apiserver,
            apiserver_args,
            server_url,
            kubeconfig_path,
            config,
        })
    }
}

/// Starts `name` (etcd or kube-apiserver), its output appended to `log`.
pub(crate) fn spawn(
    name: &'static str,
    program: &Path,
    args: &[String],
    log: PathBuf,
) -> Result<ManagedProcess, Error> {
    ManagedProcess::spawn(name, program, args, log).context(SpawnSnafu {
        name,
        path: program,
    })
}

impl Error {
    /// Whether etcd or kube-apiserver exited because a port it was to listen on was taken.
    fn is_port_taken(&self) -> bool {
        matches!(self, Error::Exited { tail, .. } if tail.contains("address already in use"))
    }
}

fn etcd_flags(data_dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=testenv".to_owned(),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=testenv={peer}"),
        "--initial-cluster-state=new".to_owned(),
        "--unsafe-no-fsync=true".to_owned(),
        "--log-level=warn".to_owned(),
    ]
}

fn apiserver_flags(files: &pki::Files, port: u16, etcd_port: u16) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        "--advertise-address=127.0.0.1".to_owned(),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        format!("--cert-dir={}", path(&files.dir)),
        format!("--tls-cert-file={}", path(&files.serving_cert)),
        format!("--tls-private-key-file={}", path(&files.serving_key)),
        format!("--client-ca-file={}", path(&files.ca_cert)),
        format!(
            "--service-account-key-file={}",
            path(&files.service_account_key)
        ),
        format!(
            "--service-account-signing-key-file={}",
            path(&files.service_account_key)
        ),
        "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
        "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
        "--authorization-mode=RBAC".to_owned(),
        "--disable-admission-plugins=ServiceAccount".to_owned(),
        "--allow-privileged=true".to_owned(),
        // The lease reconciler refuses a loopback advertise address (1.37 validates it).
        "--endpoint-reconciler-type=none".to_owned(),
        "--profiling=false".to_owned(),
    ]
}

fn kubeconfig_json(server_url: &str, pki: &pki::Pki) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "testenv",
            "cluster": {
                "server": server_url,
                "certificate-authority-data": b64(&pki.ca_pem),
            },
        }],
        "users": [{
            "name": "admin",
            "user": {
                "client-certificate-data": b64(&pki.admin_cert_pem),
                "client-key-data": b64(pki.admin_key_pem()),
            },
        }],
        "contexts": [{
            "name": "testenv",
            "context": { "cluster": "testenv", "user": "admin", "namespace": "default" },
        }],
        "current-context": "testenv",
    })
    .to_string()
}

fn startup_error(process: &mut ManagedProcess) -> Option<Error> {
    let status = process.exited()?;
    Some(Error::Exited {
        name: process.name().to_owned(),
        status,
        command_line: process.command_line().to_owned(),
        log: process.log_path().to_owned(),
        tail: process.log_tail(LOG_TAIL_LINES),
    })
}

async fn wait_for_port(
    process: &mut ManagedProcess,
    port: u16,
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(error) = startup_error(process) {
            return Err(error);
        }
        let last_error = match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(_) => return Ok(()),
            Err(error) => error.to_string(),
        };
        if Instant::now() > deadline {
            return NotReadySnafu {
                name: process.name(),
                timeout,
                last_error,
                command_line: process.command_line(),
                tail: process.log_tail(LOG_TAIL_LINES),
            }
            .fail();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_apiserver(
    apiserver: &mut ManagedProcess,
    etcd: &mut ManagedProcess,
    config: &Config,
    timeout: Duration,
) -> Result<(), Error> {
    let mut probe_config = config.clone();
    probe_config.connect_timeout = Some(Duration::from_secs(1));
    probe_config.read_timeout = Some(Duration::from_secs(5));
    let client = Client::try_from(probe_config).context(ClientSnafu)?;
    let deadline = Instant::now() + timeout;
    loop {
        for process in [&mut *etcd, &mut *apiserver] {
            if let Some(error) = startup_error(process) {
                return Err(error);
            }
        }
        let last_error = match readyz(&client).await {
            Ok(()) => {
                // /readyz is green once the bootstrap controller ran; the default
                // namespace is the last thing tests rely on.
                let namespaces: Api<Namespace> = Api::all(client.clone());
                match namespaces.get_opt("default").await {
                    Ok(Some(_)) => return Ok(()),
                    Ok(None) => "namespace default does not exist yet".to_owned(),
                    Err(error) => error.to_string(),
                }
            }
            Err(error) => error,
        };
        if Instant::now() > deadline {
            return NotReadySnafu {
                name: apiserver.name(),
                timeout,
                last_error,
                command_line: apiserver.command_line(),
                tail: apiserver.log_tail(LOG_TAIL_LINES),
            }
            .fail();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn readyz(client: &Client) -> Result<(), String> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(6), client.request_text(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("GET /readyz timed out".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_folders_of_dead_owners_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let make = |name: &str, owner: Option<String>| {
            let dir = tmp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            if let Some(owner) = owner {
                std::fs::write(dir.join(OWNER_FILE), owner).unwrap();
            }
            dir
        };
        // pid_max is at most 2^22, so this pid never exists.
        let dead = make("stackable-testenv-dead", Some("99999999".into()));
        let alive = make(
            "stackable-testenv-alive",
            Some(std::process::id().to_string()),
        );
        let no_owner = make("stackable-testenv-no-owner", None);
        let other = make("someone-else", Some("99999999".into()));
        remove_stale_work_dirs(tmp.path());
        assert!(!dead.exists());
        assert!(alive.exists());
        assert!(no_owner.exists());
        assert!(other.exists());
    }

    #[test]
    fn prefixes_become_valid_namespace_names() {
        assert_eq!(sanitize_prefix("My_Test::case"), "my-test--case");
        assert_eq!(sanitize_prefix("---"), "test");
        assert_eq!(sanitize_prefix(&"a".repeat(100)).len(), 40);
    }

    #[test]
    fn etcd_listens_on_loopback_only() {
        let flags = etcd_flags(Path::new("/tmp/x"), 1000, 1001);
        assert!(flags.contains(&"--listen-client-urls=http://127.0.0.1:1000".to_owned()));
        assert!(flags.contains(&"--listen-peer-urls=http://127.0.0.1:1001".to_owned()));
        assert!(flags.contains(&"--unsafe-no-fsync=true".to_owned()));
        assert!(flags.iter().all(|f| !f.contains("0.0.0.0")));
    }

    #[test]
    fn apiserver_binds_to_loopback_and_uses_the_generated_files() {
        let files = pki::Files::in_dir(Path::new("/p"));
        let flags = apiserver_flags(&files, 6443, 2379);
        for expected in [
            "--bind-address=127.0.0.1",
            "--secure-port=6443",
            "--etcd-servers=http://127.0.0.1:2379",
            "--client-ca-file=/p/ca.crt",
            "--tls-cert-file=/p/apiserver.crt",
            "--service-account-signing-key-file=/p/service-account.key",
        ] {
            assert!(
                flags.contains(&expected.to_owned()),
                "{expected} missing: {flags:?}"
            );
        }
    }

    /// A port taken between picking it and etcd binding it: the control plane starts again
    /// on fresh ports; taken every time, the error names etcd and the conflict.
    #[tokio::test]
    async fn a_port_taken_before_etcd_binds_it_is_replaced_by_a_fresh_one() {
        let binaries = tokio::task::spawn_blocking(Binaries::ensure)
            .await
            .unwrap()
            .unwrap();
        let taken = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let root = tempfile::tempdir().unwrap();
        let pki = pki::generate(&root.path().join("pki")).unwrap();
        let launch = Launch {
            binaries: &binaries,
            root: root.path(),
            pki: &pki,
            extra_apiserver_flags: &[],
            startup_timeout: Duration::from_secs(90),
        };

        // Taken once: the first attempt's etcd fails to bind, the second starts.
        let mut picked = 0;
        let launched = launch
            .on_free_ports(|| {
                picked += 1;
                if picked == 1 {
                    Ok(taken_port)
                } else {
                    free_port()
                }
            })
            .await
            .unwrap();
        assert_eq!(picked, 6, "two attempts of three ports each");
        let etcd_log = std::fs::read_to_string(root.path().join("etcd.log")).unwrap();
        assert!(
            etcd_log.contains("address already in use"),
            "the first attempt met the taken port: {etcd_log}"
        );
        assert!(
            !launched
                .apiserver_args
                .contains(&format!("--etcd-servers=http://127.0.0.1:{taken_port}"))
        );
        let client = Client::try_from(launched.config.clone()).unwrap();
        readyz(&client).await.unwrap();
        drop(launched);

        // Taken every time: after the last attempt, the error says which and why.
        let mut attempts = 0;
        let error = launch
            .on_free_ports(|| {
                attempts += 1;
                if attempts % 3 == 1 {
                    Ok(taken_port)
                } else {
                    free_port()
                }
            })
            .await
            .unwrap_err();
        assert_eq!(attempts, 3 * PORT_ATTEMPTS);
        assert!(error.is_port_taken(), "{error}");
        assert!(
            matches!(&error, Error::Exited { name, .. } if name == "etcd"),
            "{error}"
        );
        drop(taken);
    }

    #[test]
    fn webhook_names_include_the_service_dns_name() {
        let names = webhook_service_dns_names("ns1", "hook");
        assert_eq!(names[0], "hook.ns1.svc");
    }
}
