//! Where the rotation state lives, and how several replicas agree on one CA.
//!
//! A [`Store`] holds one object (a Kubernetes Secret, or memory) as a map of keys to bytes
//! plus an opaque version (the Secret's `resourceVersion`). Writes are conditional: create
//! only if absent, replace only if the version is unchanged
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/#concurrency-control-and-consistency>).
//! A replica whose write loses re-reads and adopts the winner's material.
//!
//! The layout (type `kubernetes.io/tls`, see
//! <https://kubernetes.io/docs/concepts/configuration/secret/#tls-secrets>):
//!
//! | key | content |
//! |---|---|
//! | `tls.crt` | the served leaf (PEM) |
//! | `tls.key` | its key (PKCS#8 PEM) |
//! | `ca.crt` | the trust bundle: every CA in the rotation (PEM) |
//! | `ca.key` | the key of the CA that currently signs leaves (PKCS#8 PEM) |
//! | [`STATE_KEY`] | the full rotation state (JSON: stage, every CA with key) |

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
};

use time::OffsetDateTime;

use crate::{
    CaBundle, Certificate, PrivateKey, ServingMaterial,
    ca::CertificateAuthority,
    rotation::state::{RotationState, ServedLeaf},
};

/// Key of the leaf certificate.
pub const TLS_CRT_KEY: &str = "tls.crt";
/// Key of the leaf's private key.
pub const TLS_KEY_KEY: &str = "tls.key";
/// Key of the trust bundle.
pub const CA_CRT_KEY: &str = "ca.crt";
/// Key of the active CA's private key.
pub const CA_KEY_KEY: &str = "ca.key";
/// Key of the serialised rotation state.
pub const STATE_KEY: &str = "rotation-state.json";

/// The stored data: key to bytes (as in a Secret's `data`).
pub type StoredData = BTreeMap<String, Vec<u8>>;

/// An object read from a [`Store`].
#[derive(Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The data.
    pub data: StoredData,
    /// Opaque version for conditional replace (`resourceVersion`).
    pub version: String,
}

impl std::fmt::Debug for StoredObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredObject")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("version", &self.version)
            .finish()
    }
}

/// The outcome of a conditional write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written; the new version.
    Written {
        /// The new version.
        version: String,
    },
    /// Someone else wrote first (already exists / version changed).
    Conflict,
}

/// A store failure (network, permissions, ...).
#[derive(Debug)]
pub struct StoreError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl StoreError {
    /// A store error with a message and an optional cause.
    pub fn new(
        message: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            message: message.into(),
            source,
        }
    }
}

/// A place that holds one object with conditional writes.
pub trait Store: Send + Sync + 'static {
    /// A human-readable name for logs (for example `Secret ops/webhook-tls`).
    fn describe(&self) -> String;

    /// Reads the object; `None` if it does not exist.
    fn read(&self) -> impl Future<Output = Result<Option<StoredObject>, StoreError>> + Send;

    /// Creates the object unless it exists ([`WriteOutcome::Conflict`] then).
    fn create(
        &self,
        data: StoredData,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Replaces the object if its version is still `expected_version`.
    fn replace(
        &self,
        data: StoredData,
        expected_version: &str,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;
}

/// An in-memory [`Store`]; clones share the same object (like replicas sharing a Secret).
#[derive(Clone, Debug, Default)]
pub struct InMemoryStore {
    inner: Arc<Mutex<Option<(StoredData, u64)>>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store pre-filled with `data` (as if a user created the Secret).
    pub fn with_data(data: StoredData) -> Self {
        InMemoryStore {
            inner: Arc::new(Mutex::new(Some((data, 1)))),
        }
    }

    /// The current data (for tests).
    pub fn snapshot(&self) -> Option<StoredData> {
        self.lock().as_ref().map(|(d, _)| d.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(StoredData, u64)>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for InMemoryStore {
    fn describe(&self) -> String {
        "in-memory store".to_string()
    }

    async fn read(&self) -> Result<Option<StoredObject>, StoreError> {
        Ok(self.lock().as_ref().map(|(data, v)| StoredObject {
            data: data.clone(),
            version: v.to_string(),
        }))
    }

    async fn create(&self, data: StoredData) -> Result<WriteOutcome, StoreError> {
        let mut guard = self.lock();
        if guard.is_some() {
            return Ok(WriteOutcome::Conflict);
        }
        *guard = Some((data, 1));
        Ok(WriteOutcome::Written {
            version: "1".to_string(),
        })
    }

    async fn replace(
        &self,
        data: StoredData,
        expected_version: &str,
    ) -> Result<WriteOutcome, StoreError> {
        let mut guard = self.lock();
        match guard.as_mut() {
            Some((current, v)) if v.to_string() == expected_version => {
                *v += 1;
                *current = data;
                Ok(WriteOutcome::Written {
                    version: v.to_string(),
                })
            }
            _ => Ok(WriteOutcome::Conflict),
        }
    }
}

/// Encodes a state into the stored layout.
pub fn encode(state: &RotationState) -> StoredData {
    let mut data = StoredData::new();
    data.insert(STATE_KEY.to_string(), state.to_json().into_bytes());
    if let Some(bundle) = state.trust_bundle() {
        data.insert(CA_CRT_KEY.to_string(), bundle.to_pem().into_bytes());
    }
    if let Some(active) = state.active_authority() {
        data.insert(
            CA_KEY_KEY.to_string(),
            active.ca.key().to_pem().into_bytes(),
        );
    }
    if let Some(leaf) = state.leaf() {
        data.insert(
            TLS_CRT_KEY.to_string(),
            leaf.certificate.to_pem().into_bytes(),
        );
        data.insert(TLS_KEY_KEY.to_string(), leaf.key.to_pem().into_bytes());
    }
    data
}

/// What a stored object turned out to hold.
#[derive(Debug)]
pub enum Classified {
    /// Our own rotation state.
    Managed(RotationState),
    /// A CA (certificate + key) someone provided, without rotation state: adopted and rotated.
    ProvidedCa(RotationState),
    /// Serving material someone provided without a CA key: served as is, never replaced.
    UserProvided(ServingMaterial),
    /// Certificate material someone provided that is incomplete (for example `tls.crt` and
    /// `tls.key` without `ca.crt`): neither usable nor to be overwritten.
    Incomplete {
        /// What is missing.
        reason: String,
    },
    /// Nothing usable (empty or garbage): to be repaired.
    Garbage {
        /// Why it is unusable.
        reason: String,
    },
}

fn text<'a>(data: &'a StoredData, key: &str) -> Option<&'a str> {
    data.get(key)
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|s| !s.trim().is_empty())
}

/// Classifies stored data. Never fails; garbage is reported as [`Classified::Garbage`].
pub fn classify(data: &StoredData, now: OffsetDateTime) -> Classified {
    let mut reasons = Vec::new();

    if let Some(json) = text(data, STATE_KEY) {
        match RotationState::from_json(json) {
            Ok(state) if !state.authorities().is_empty() => return Classified::Managed(state),
            Ok(_) => reasons.push(format!("{STATE_KEY} holds no CA")),
            Err(e) => reasons.push(format!("{STATE_KEY}: {}", snafu::Report::from_error(e))),
        }
    }

    let leaf = match (text(data, TLS_CRT_KEY), text(data, TLS_KEY_KEY)) {
        (Some(crt), Some(key)) => match (Certificate::all_from_pem(crt), PrivateKey::from_pem(key))
        {
            (Ok(chain), Ok(key)) if chain[0].matches_key(&key) => Some((chain, key)),
            (Ok(_), Ok(_)) => {
                reasons.push(format!("{TLS_KEY_KEY} does not belong to {TLS_CRT_KEY}"));
                None
            }
            (Err(e), _) => {
                reasons.push(format!("{TLS_CRT_KEY}: {e}"));
                None
            }
            (_, Err(e)) => {
                reasons.push(format!("{TLS_KEY_KEY}: {e}"));
                None
            }
        },
        _ => None,
    };

    let ca_certs = text(data, CA_CRT_KEY).and_then(|pem| match CaBundle::from_pem(pem) {
        Ok(b) => Some(b),
        Err(e) => {
            reasons.push(format!("{CA_CRT_KEY}: {e}"));
            None
        }
    });

    if let (Some(bundle), Some(key_pem)) = (&ca_certs, text(data, CA_KEY_KEY)) {
        match PrivateKey::from_pem(key_pem) {
            Ok(key) => {
                let ca = bundle
                    .certificates()
                    .iter()
                    .find(|c| c.matches_key(&key))
                    .cloned()
                    .map(|cert| CertificateAuthority::from_parts(cert, key));
                match ca {
                    Some(Ok(ca)) => {
                        let served = leaf.as_ref().and_then(|(chain, key)| {
                            chain[0].is_issued_by(ca.certificate()).then(|| ServedLeaf {
                                certificate: chain[0].clone(),
                                key: key.clone(),
                            })
                        });
                        return Classified::ProvidedCa(RotationState::adopt(ca, served, now));
                    }
                    Some(Err(e)) => reasons.push(format!("{CA_KEY_KEY}: {e}")),
                    None => reasons.push(format!(
                        "{CA_KEY_KEY} belongs to no certificate in {CA_CRT_KEY}"
                    )),
                }
            }
            Err(e) => reasons.push(format!("{CA_KEY_KEY}: {e}")),
        }
    }

    if let Some((chain, key)) = leaf {
        let Some(bundle) = ca_certs else {
            return Classified::Incomplete {
                reason: format!(
                    "{TLS_CRT_KEY} and {TLS_KEY_KEY} are valid but {CA_CRT_KEY} is missing or invalid"
                ),
            };
        };
        match ServingMaterial::new(chain, key, bundle) {
            Ok(material) => return Classified::UserProvided(material),
            Err(e) => reasons.push(e.to_string()),
        }
    }

    if reasons.is_empty() {
        reasons.push(if data.is_empty() {
            "the object is empty".to_string()
        } else {
            "no usable certificate material".to_string()
        });
    }
    Classified::Garbage {
        reason: reasons.join("; "),
    }
}
