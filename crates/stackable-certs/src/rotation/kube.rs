//! A [`Store`] backed by a Kubernetes Secret (feature `kube`).
//!
//! The Secret (type `Opaque` when this store creates it) holds the keys listed in
//! [`super::store`]; other keys of an existing Secret are kept. Creation uses `create` (fails
//! with 409 if the Secret exists), updates use `replace` with the `resourceVersion` read
//! before, so a concurrent writer makes the write fail with 409 Conflict
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/#concurrency-control-and-consistency>);
//! the driver then re-reads and adopts what the winner wrote. The Secret is watched (by name),
//! so every replica notices a change, a deletion or a hand edit at once.
//!
//! RBAC, in the Secret's namespace: `get`, `update`, `list` and `watch` on this Secret by name
//! (`resourceNames`; the watch selects `metadata.name`, which the API server authorizes
//! against `resourceNames`), and `create` on Secrets (a create cannot be restricted by name).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use futures::StreamExt as _;
use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::PostParams,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::watch;

use super::store::{Store, StoreChanges, StoreError, StoredData, StoredObject, WriteOutcome};

/// The backoff of every watch of this workspace (the Secret store's, the injectors'): after a
/// failure it retries quickly, 0.1 s doubling to at most 2 s (with jitter, reset after a
/// minute of quiet), so a restarted API server is noticed within about 2 s instead of the up
/// to 30 s of kube-runtime's default. A watch is one request per retry; this costs nothing.
pub fn watch_backoff() -> impl kube::runtime::utils::Backoff {
    kube::runtime::utils::ResetTimerBackoff::new(
        QuickBackoff::default(),
        std::time::Duration::from_secs(60),
    )
}

const FIRST_WATCH_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_WATCH_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// 0.1 s doubling to 2 s, each wait scaled by a random factor in [0.5, 1.0].
#[derive(Debug)]
struct QuickBackoff {
    next: std::time::Duration,
}

impl Default for QuickBackoff {
    fn default() -> Self {
        QuickBackoff {
            next: FIRST_WATCH_RETRY,
        }
    }
}

impl Iterator for QuickBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        use std::hash::{BuildHasher as _, Hasher as _};
        let current = self.next;
        self.next = (self.next * 2).min(MAX_WATCH_RETRY);
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let factor = 0.5 + (random % 1000) as f64 / 2000.0;
        Some(current.mul_f64(factor))
    }
}

impl kube::runtime::utils::Backoff for QuickBackoff {
    fn reset(&mut self) {
        self.next = FIRST_WATCH_RETRY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_retries_are_quick_and_bounded() {
        let waits: Vec<_> = QuickBackoff::default().take(8).collect();
        assert!(waits[0] <= FIRST_WATCH_RETRY);
        assert!(waits.iter().all(|w| *w <= MAX_WATCH_RETRY), "{waits:?}");
        assert!(waits[7] >= MAX_WATCH_RETRY / 2, "{waits:?}");
    }
}

/// The Secret type written for new Secrets. (Releases before 0.2 wrote `kubernetes.io/tls`;
/// such Secrets keep their type and their `tls.crt`/`tls.key`.)
pub const SECRET_TYPE: &str = "Opaque";

/// Field manager name used for writes.
pub const FIELD_MANAGER: &str = "stackable-certs";

/// A [`Store`] keeping the rotation state in one Secret.
pub struct SecretStore {
    api: Api<Secret>,
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    /// Metadata and type of the Secret as last read, reused when replacing so that labels,
    /// annotations, owner references and the (immutable) type survive. (Keys this crate does
    /// not write are kept by the driver, see `store::encode_onto`.)
    last: Mutex<Option<Last>>,
    /// The watch of the Secret, started on the first [`Store::changes`].
    changes: Mutex<Option<Arc<watch::Sender<u64>>>>,
}

#[derive(Clone, Default)]
struct Last {
    metadata: ObjectMeta,
    type_: Option<String>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish()
    }
}

impl SecretStore {
    /// A store for Secret `namespace/name`.
    pub fn new(client: Client, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        let namespace = namespace.into();
        SecretStore {
            api: Api::namespaced(client, &namespace),
            namespace,
            name: name.into(),
            labels: BTreeMap::new(),
            last: Mutex::new(None),
            changes: Mutex::new(None),
        }
    }

    /// Labels put on a Secret this store creates.
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    fn remember(&self, secret: &Secret) {
        let mut metadata = secret.metadata.clone();
        metadata.managed_fields = None;
        let mut guard = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *guard = Some(Last {
            metadata,
            type_: secret.type_.clone(),
        });
    }

    fn to_object(secret: &Secret) -> StoredObject {
        StoredObject {
            data: secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            version: secret.metadata.resource_version.clone().unwrap_or_default(),
        }
    }

    fn error(&self, action: &str, e: kube::Error) -> StoreError {
        StoreError::new(
            format!("{action} Secret {}/{}", self.namespace, self.name),
            Some(Box::new(e)),
        )
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == code)
}

fn to_data(data: StoredData) -> BTreeMap<String, ByteString> {
    data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()
}

impl Store for SecretStore {
    fn describe(&self) -> String {
        format!("Secret {}/{}", self.namespace, self.name)
    }

    async fn read(&self) -> Result<Option<StoredObject>, StoreError> {
        match self.api.get_opt(&self.name).await {
            Ok(Some(secret)) => {
                self.remember(&secret);
                Ok(Some(Self::to_object(&secret)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.error("read", e)),
        }
    }

    async fn create(&self, data: StoredData) -> Result<WriteOutcome, StoreError> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: (!self.labels.is_empty()).then(|| self.labels.clone()),
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.to_string()),
            data: Some(to_data(data)),
            ..Secret::default()
        };
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match self.api.create(&pp, &secret).await {
            Ok(created) => {
                self.remember(&created);
                Ok(WriteOutcome::Written {
                    version: created.metadata.resource_version.unwrap_or_default(),
                })
            }
            Err(e) if is_status(&e, 409) => Ok(WriteOutcome::Conflict),
            Err(e) => Err(self.error("create", e)),
        }
    }

    async fn replace(
        &self,
        data: StoredData,
        expected_version: &str,
    ) -> Result<WriteOutcome, StoreError> {
        let Last {
            mut metadata,
            type_,
            ..
        } = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        metadata.name = Some(self.name.clone());
        metadata.namespace = Some(self.namespace.clone());
        metadata.resource_version = Some(expected_version.to_string());
        let secret = Secret {
            metadata,
            type_: type_.or_else(|| Some(SECRET_TYPE.to_string())),
            data: Some(to_data(data)),
            ..Secret::default()
        };
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match self.api.replace(&self.name, &pp, &secret).await {
            Ok(replaced) => {
                self.remember(&replaced);
                Ok(WriteOutcome::Written {
                    version: replaced.metadata.resource_version.unwrap_or_default(),
                })
            }
            // 409: someone wrote in between; 404: someone deleted it (re-read creates it).
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(WriteOutcome::Conflict),
            Err(e) => Err(self.error("replace", e)),
        }
    }

    fn changes(&self) -> Option<StoreChanges> {
        let mut guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = guard.as_ref()
            && !tx.is_closed()
        {
            return Some(tx.subscribe());
        }
        let (tx, rx) = watch::channel(0u64);
        let tx = Arc::new(tx);
        *guard = Some(tx.clone());
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let mut events = watcher::watcher(self.api.clone(), config)
            .backoff(watch_backoff())
            .boxed();
        let describe = self.describe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)) => {
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => {
                            tracing::debug!(store = %describe, %error, "watching the Secret failed; retrying");
                        }
                        None => break,
                    },
                    () = tx.closed() => break,
                }
            }
        });
        Some(rx)
    }
}
