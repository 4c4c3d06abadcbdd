//! Where the serving certificate comes from, and how it is kept current.
//!
//! Every source feeds the same [`CertResolver`]: a swap affects new TLS handshakes only.
//! The file source follows Kubernetes Secret volume mounts
//! (<https://kubernetes.io/docs/concepts/configuration/secret/#mounted-secrets-are-updated-automatically>),
//! where the kubelet swaps a `..data` symlink atomically; OLM's
//! `/apiserver.local.config/certificates/apiserver.{crt,key}` and cert-manager Secrets
//! (`tls.crt`/`tls.key`) are plain instances of it.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use notify::{
    EventKind, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode},
};
use rustls::sign::CertifiedKey;
use snafu::{ResultExt, Snafu};
use stackable_certs::{
    LeafOptions, MaterialReceiver, ServingMaterial,
    rotation::{RotationDriver, RotationPolicy, RunningRotation},
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::Metrics,
    readiness::Readiness,
    tls::{CertResolver, TlsError, certified_key_from_pem},
};

/// Errors of certificate sources.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum SourceError {
    /// A certificate or key file could not be read.
    #[snafu(display("failed to read {}", path.display()))]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },

    /// The files were read but do not form a usable pair.
    #[snafu(display("the certificate pair {} / {} is unusable", cert.display(), key.display()))]
    BadPair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        #[snafu(source(from(TlsError, Box::new)))]
        source: Box<TlsError>,
    },

    /// The client CA bundle (of [`ClientAuth`](crate::ClientAuth)) is unusable.
    #[snafu(display("the client CA bundle from {} is unusable", path.display()))]
    BadClientCa {
        /// The file ("memory" for a bundle given in code).
        path: PathBuf,
        /// Why.
        #[snafu(source(from(TlsError, Box::new)))]
        source: Box<TlsError>,
    },

    /// The file watcher could not be set up.
    #[snafu(display("failed to watch {} for certificate changes", path.display()))]
    Watch {
        /// The watched directory.
        path: PathBuf,
        /// The notify error.
        source: notify::Error,
    },

    /// Serving material from stackable-certs could not be turned into a rustls key.
    #[snafu(display("the serving material from stackable-certs is unusable"))]
    Material {
        /// The stackable-certs error.
        #[snafu(source(from(stackable_certs::Error, Box::new)))]
        source: Box<stackable_certs::Error>,
    },

    /// The in-memory rotation driver could not start.
    #[snafu(display("failed to start the certificate rotation driver"))]
    StartRotation {
        /// The stackable-certs rotation error.
        #[snafu(source(from(stackable_certs::rotation::Error, Box::new)))]
        source: Box<stackable_certs::rotation::Error>,
    },

    /// The shared serving certificates could not start (an invalid policy).
    #[cfg(feature = "cainject")]
    #[snafu(display("failed to start the shared serving certificates"))]
    StartShared {
        /// The stackable-cainject error.
        source: stackable_cainject::serving::Error,
    },
}

/// A certificate pair read from files, reloaded when they change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSource {
    /// The PEM certificate chain (leaf first).
    pub cert_path: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// How often the files are compared even without a file-system event (default 10 s).
    pub poll_interval: Duration,
}

impl FileSource {
    /// `tls.crt` and `tls.key` in `dir`: a `kubernetes.io/tls` Secret volume, as cert-manager
    /// and most charts mount it.
    pub fn dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self::paths(dir.join("tls.crt"), dir.join("tls.key"))
    }

    /// OLM's mount: `/apiserver.local.config/certificates/apiserver.crt` and `.key`.
    pub fn olm() -> Self {
        let dir = Path::new("/apiserver.local.config/certificates");
        Self::paths(dir.join("apiserver.crt"), dir.join("apiserver.key"))
    }

    /// Explicit certificate and key paths.
    pub fn paths(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        Self {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            poll_interval: Duration::from_secs(10),
        }
    }

    /// Changes the periodic check interval.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    fn watched(&self) -> Vec<PathBuf> {
        vec![self.cert_path.clone(), self.key_path.clone()]
    }

    fn parse(&self, cert: &[u8], key: &[u8]) -> Result<CertifiedKey, SourceError> {
        certified_key_from_pem(cert, key, &self.cert_path.display().to_string()).context(
            BadPairSnafu {
                cert: self.cert_path.clone(),
                key: self.key_path.clone(),
            },
        )
    }
}

/// Where the server gets its certificate.
// Built once per server and consumed at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum CertSource {
    /// One fixed certificate (tests; a caller that renews it swaps a new one in with
    /// [`RunningServer::resolver`](crate::RunningServer::resolver)).
    Static(Arc<CertifiedKey>),
    /// Files, reloaded on change (see [`FileSource`]).
    Files(FileSource),
    /// Serving material published by stackable-certs (e.g. `RunningRotation::subscribe()`);
    /// every new value is swapped in and its CA bundle published.
    Material(MaterialReceiver),
    /// A running stackable-certs rotation (any store, e.g. the Kubernetes Secret store so all
    /// replicas share one CA); it is shut down with the server.
    Rotation(RunningRotation),
    /// A CA and leaf held in this process's memory by a stackable-certs rotation driver,
    /// renewed and rotated in the background, no files. Every process gets a CA of its own
    /// and a restart starts with a new one: for tests, demos and a single process. Replicas
    /// use [`CertSource::Shared`].
    InMemory {
        /// Validity and renewal policy.
        policy: RotationPolicy,
        /// Names of the leaf (e.g. `LeafOptions::for_service("my-webhook", "my-namespace")`).
        leaf: LeafOptions,
    },
    /// The safe path for operators with replicas (feature `cainject`): stackable-cainject's
    /// [`ServingCertificates`](stackable_cainject::ServingCertificates), started with the
    /// server. The CA lives in a Secret every replica shares, each replica serves its own
    /// leaf, the bundle is injected into the configured targets, and `/readyz` answers 200
    /// only while the served leaf's CA is in every target's `caBundle`. The server starts
    /// listening (health included) before the first certificate exists, and stops the
    /// certificates when it stops.
    #[cfg(feature = "cainject")]
    Shared(stackable_cainject::ServingCertificates),
}

impl CertSource {
    /// A CA and leaf in this process's memory with the default rotation policy: for tests,
    /// demos and a single process (see [`CertSource::InMemory`]).
    pub fn in_memory(leaf: LeafOptions) -> Self {
        Self::InMemory {
            policy: RotationPolicy::default(),
            leaf,
        }
    }
}

#[cfg(feature = "cainject")]
impl From<stackable_cainject::ServingCertificates> for CertSource {
    fn from(certificates: stackable_cainject::ServingCertificates) -> Self {
        Self::Shared(certificates)
    }
}

impl fmt::Debug for CertSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        match self {
            Self::Static(_) => f.write_str("CertSource::Static(..)"),
            Self::Files(files) => f.debug_tuple("CertSource::Files").field(files).finish(),
            Self::Material(_) => f.write_str("CertSource::Material(..)"),
            Self::Rotation(_) => f.write_str("CertSource::Rotation(..)"),
            Self::InMemory { leaf, .. } => f
                .debug_struct("CertSource::InMemory")
                .field("leaf", leaf)
                .finish_non_exhaustive(),
            #[cfg(feature = "cainject")]
            Self::Shared(certificates) => f
                .debug_tuple("CertSource::Shared")
                .field(certificates)
                .finish(),
        }
    }
}

impl CertSource {
    /// Loads the first certificate into `resolver` and starts whatever keeps it current.
    pub(crate) async fn start(
        self,
        resolver: Arc<CertResolver>,
        metrics: Metrics,
        readiness: &Readiness,
        token: CancellationToken,
    ) -> Result<(), SourceError> {
        // Only the shared source adds a readiness check.
        #[cfg(not(feature = "cainject"))]
        let _ = readiness;
        match self {
            Self::Static(key) => {
                resolver.swap(key);
                Ok(())
            }
            Self::Files(files) => start_file_source(files, resolver, metrics, token).await,
            Self::Material(receiver) => {
                start_material(receiver, present, Owned::Nothing, resolver, metrics, token)
            }
            Self::Rotation(running) => {
                let receiver = running.subscribe();
                start_material(
                    receiver,
                    present,
                    Owned::Rotation(running),
                    resolver,
                    metrics,
                    token,
                )
            }
            Self::InMemory { policy, leaf } => {
                let running = RotationDriver::new(policy, leaf)
                    .start()
                    .await
                    .context(StartRotationSnafu)?;
                let receiver = running.subscribe();
                start_material(
                    receiver,
                    present,
                    Owned::Rotation(running),
                    resolver,
                    metrics,
                    token,
                )
            }
            #[cfg(feature = "cainject")]
            Self::Shared(certificates) => {
                let running = certificates.start().context(StartSharedSnafu)?;
                let status = running.status();
                readiness.add_check(
                    "certificates",
                    Arc::new(move || {
                        let status = status.borrow();
                        if status.ready {
                            Ok(())
                        } else {
                            Err(status
                                .reason
                                .clone()
                                .unwrap_or_else(|| "not ready".to_owned()))
                        }
                    }),
                );
                let receiver = running.material();
                start_material(
                    receiver,
                    Clone::clone,
                    Owned::Shared(running),
                    resolver,
                    metrics,
                    token,
                )
            }
        }
    }
}

fn present(material: &Arc<ServingMaterial>) -> Option<Arc<ServingMaterial>> {
    Some(material.clone())
}

/// What a material source owns and stops with the server.
enum Owned {
    Nothing,
    Rotation(RunningRotation),
    #[cfg(feature = "cainject")]
    Shared(stackable_cainject::RunningCertificates),
}

impl Owned {
    async fn shutdown(self) {
        match self {
            Owned::Nothing => {}
            Owned::Rotation(running) => running.shutdown().await,
            #[cfg(feature = "cainject")]
            Owned::Shared(running) => running.shutdown(),
        }
    }
}

fn swap_material(resolver: &CertResolver, material: &ServingMaterial) -> Result<(), SourceError> {
    let key = material.certified_key().context(MaterialSnafu)?;
    resolver.set_ca_bundle_pem(material.ca_bundle_pem());
    resolver.swap(key);
    Ok(())
}

/// Swaps in the first material (an error when it is unusable), then every new one. `get`
/// reads the material out of what the channel holds (`None`: nothing to serve yet).
fn start_material<T, F>(
    mut receiver: watch::Receiver<T>,
    get: F,
    owned: Owned,
    resolver: Arc<CertResolver>,
    metrics: Metrics,
    token: CancellationToken,
) -> Result<(), SourceError>
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Option<Arc<ServingMaterial>> + Send + 'static,
{
    let first = get(&receiver.borrow_and_update());
    if let Some(first) = first {
        swap_material(&resolver, &first)?;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = receiver.changed() => {
                    if changed.is_err() {
                        tracing::warn!("serving material channel closed; keeping the last certificate");
                        break;
                    }
                    let Some(next) = get(&receiver.borrow_and_update()) else {
                        continue;
                    };
                    if let Err(error) = swap_material(&resolver, &next) {
                        metrics.cert_reload_errors.inc();
                        tracing::warn!(
                            error = %snafu::Report::from_error(error),
                            "refused new serving material; the previous certificate keeps serving"
                        );
                    }
                }
                _ = token.cancelled() => break,
            }
        }
        owned.shutdown().await;
    });
    Ok(())
}

async fn start_file_source(
    files: FileSource,
    resolver: Arc<CertResolver>,
    metrics: Metrics,
    token: CancellationToken,
) -> Result<(), SourceError> {
    let paths = files.watched();
    let first = read_files(&paths).await?;
    resolver.swap(Arc::new(files.parse(&first[0], &first[1])?));
    tracing::info!(cert = %files.cert_path.display(), key = %files.key_path.display(), "serving certificate loaded from files");
    let poll_interval = files.poll_interval;
    watch_files(
        paths,
        poll_interval,
        first,
        token,
        move |contents| match files.parse(&contents[0], &contents[1]) {
            Ok(certified) => {
                resolver.swap(Arc::new(certified));
                tracing::info!(cert = %files.cert_path.display(), "reloaded serving certificate from files");
            }
            Err(error) => {
                metrics.cert_reload_errors.inc();
                tracing::warn!(
                    error = %snafu::Report::from_error(error),
                    "refused a certificate reload; the previous certificate keeps serving"
                );
            }
        },
    )
}

/// Reads every file of `paths`, in order.
pub(crate) async fn read_files(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, SourceError> {
    let mut contents = Vec::with_capacity(paths.len());
    for path in paths {
        contents.push(
            tokio::fs::read(path)
                .await
                .context(ReadFileSnafu { path: path.clone() })?,
        );
    }
    Ok(contents)
}

/// Whether a file-system event in a watched directory may have changed a file's contents:
/// anything but reading. notify's inotify backend reports `open` (and a read-only `close`) as
/// `Access` events, and the watch re-reads the files on every event: counting those, each
/// re-read caused the next one, and an idle server read its certificate files ~20 times a second
/// forever. A write that ends (`close` after writing) still counts: it follows the last
/// `modify` of a slow writer.
fn may_change_files(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Calls `apply` with the contents of `paths` (in order) whenever they differ from what was
/// seen last (`first` at the start), checked on file-system events in the files' directories
/// and every `poll_interval`, until `token` is cancelled. Each distinct content is applied
/// once, so a bad file is reported once, not at every tick.
pub(crate) fn watch_files<F>(
    paths: Vec<PathBuf>,
    poll_interval: Duration,
    first: Vec<Vec<u8>>,
    token: CancellationToken,
    mut apply: F,
) -> Result<(), SourceError>
where
    F: FnMut(&[Vec<u8>]) + Send + 'static,
{
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| may_change_files(&event.kind)) {
            // The receiver only disappears at shutdown.
            let _ = events_tx.send(());
        }
    })
    .context(WatchSnafu {
        path: paths.first().cloned().unwrap_or_default(),
    })?;
    // Watch the directories, not the files: the kubelet replaces a `..data` symlink, which
    // a watch on the file itself would miss.
    let mut dirs: Vec<PathBuf> = paths
        .iter()
        .filter_map(|path| path.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .context(WatchSnafu { path: dir.clone() })?;
    }

    tokio::spawn(async move {
        // Keep the watcher alive as long as the task.
        let _watcher = watcher;
        let mut last_seen = first;
        let mut interval = tokio::time::interval(poll_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events_rx.recv() => {
                    if event.is_none() {
                        break;
                    }
                    // Let a burst of events (symlink swap, two files written) settle.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while events_rx.try_recv().is_ok() {}
                }
                _ = interval.tick() => {}
                _ = token.cancelled() => break,
            }
            let contents = match read_files(&paths).await {
                Ok(contents) => contents,
                Err(error) => {
                    // Mid-swap a file may be briefly missing; the next event or tick retries.
                    tracing::debug!(error = %snafu::Report::from_error(error), "watched files not readable right now");
                    continue;
                }
            };
            if contents == last_seen {
                continue;
            }
            apply(&contents);
            last_seen = contents;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn reading_a_watched_file_is_not_a_change() {
        for read in [
            AccessKind::Open(AccessMode::Read),
            AccessKind::Open(AccessMode::Any),
            AccessKind::Read,
            AccessKind::Close(AccessMode::Read),
            AccessKind::Any,
        ] {
            assert!(!may_change_files(&EventKind::Access(read)), "{read:?}");
        }
        for change in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
            EventKind::Other,
        ] {
            assert!(may_change_files(&change), "{change:?}");
        }
    }
}
