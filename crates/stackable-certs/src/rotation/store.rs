//! Where the rotation state lives, and how several replicas agree on one CA.
//!
//! A [`Store`] holds one object (a Kubernetes Secret, or memory) as a map of keys to bytes
//! plus an opaque version (the Secret's `resourceVersion`). Writes are conditional: create
//! only if absent, replace only if the version is unchanged
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/#concurrency-control-and-consistency>).
//! A replica whose write loses re-reads and adopts the winner's material.
//!
//! The store holds what replicas share: the CAs and the stage of a rotation. Each replica
//! issues its own leaf from the shared CA, so replicas asking for different leaves (SANs
//! changed across a rolling update) never re-issue each other's. The layout:
//!
//! | key | content |
//! |---|---|
//! | `ca.crt` | the trust bundle: every CA in the rotation (PEM) |
//! | `ca.key` | the key of the CA that currently signs leaves (PKCS#8 PEM) |
//! | [`STATE_KEY`] | the full rotation state (JSON: stage, every CA with key, retained CAs) |
//!
//! Other keys of an existing object (for example `tls.crt`/`tls.key` of a `kubernetes.io/tls`
//! Secret written by an earlier release) are left as they are.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
};

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{
    CaBundle, Certificate, PrivateKey, ServingMaterial,
    ca::CertificateAuthority,
    rotation::state::{RotationState, ServedLeaf, StateError},
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

/// The keys this crate writes; other keys of a stored object are left alone.
pub const OWN_KEYS: [&str; 3] = [STATE_KEY, CA_CRT_KEY, CA_KEY_KEY];

/// Ticks whenever the stored object may have changed (see [`Store::changes`]).
pub type StoreChanges = watch::Receiver<u64>;

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

    /// A channel that ticks when the object may have changed (written by another replica,
    /// deleted, edited by hand), so the driver reacts at once instead of at its next
    /// wake-up. `None` (the default) when the store cannot tell: the driver then notices
    /// within [`super::RotationPolicy::max_sleep`]. Called from within a tokio runtime.
    fn changes(&self) -> Option<StoreChanges> {
        None
    }
}

/// An in-memory [`Store`]; clones share the same object (like replicas sharing a Secret).
#[derive(Clone, Debug)]
pub struct InMemoryStore {
    inner: Arc<Mutex<Option<(StoredData, u64)>>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        InMemoryStore {
            inner: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store pre-filled with `data` (as if a user created the Secret).
    pub fn with_data(data: StoredData) -> Self {
        let store = Self::default();
        *store.lock() = Some((data, 1));
        store
    }

    /// The current data (for tests).
    pub fn snapshot(&self) -> Option<StoredData> {
        self.lock().as_ref().map(|(d, _)| d.clone())
    }

    /// Replaces or deletes the object behind the drivers' backs (a user or another program
    /// editing the Secret), bumping the version.
    pub fn set(&self, data: Option<StoredData>) {
        {
            let mut guard = self.lock();
            let version = guard.as_ref().map_or(0, |(_, v)| *v) + 1;
            *guard = data.map(|d| (d, version));
        }
        self.notify();
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
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
        let version = {
            let mut guard = self.lock();
            if guard.is_some() {
                return Ok(WriteOutcome::Conflict);
            }
            // Versions keep growing across delete and re-create, as resourceVersions do.
            let version = *self.changed.borrow() + 1;
            *guard = Some((data, version));
            version
        };
        self.notify();
        Ok(WriteOutcome::Written {
            version: version.to_string(),
        })
    }

    async fn replace(
        &self,
        data: StoredData,
        expected_version: &str,
    ) -> Result<WriteOutcome, StoreError> {
        let outcome = {
            let mut guard = self.lock();
            match guard.as_mut() {
                Some((current, v)) if v.to_string() == expected_version => {
                    *v += 1;
                    *current = data;
                    WriteOutcome::Written {
                        version: v.to_string(),
                    }
                }
                _ => WriteOutcome::Conflict,
            }
        };
        if matches!(outcome, WriteOutcome::Written { .. }) {
            self.notify();
        }
        Ok(outcome)
    }

    fn changes(&self) -> Option<StoreChanges> {
        Some(self.changed.subscribe())
    }
}

/// Encodes the shared part of a state (no leaf) into the stored layout.
pub fn encode(state: &RotationState) -> StoredData {
    let mut data = StoredData::new();
    data.insert(
        STATE_KEY.to_string(),
        state.without_leaf().to_json().into_bytes(),
    );
    if let Some(bundle) = state.trust_bundle() {
        data.insert(CA_CRT_KEY.to_string(), bundle.to_pem().into_bytes());
    }
    if let Some(active) = state.active_authority() {
        data.insert(
            CA_KEY_KEY.to_string(),
            active.ca.key().to_pem().into_bytes(),
        );
    }
    data
}

/// Encodes a state onto an existing object's data: the keys this crate writes
/// ([`OWN_KEYS`]) are replaced, every other key is kept as it was (for example `tls.crt` and
/// `tls.key`, which a `kubernetes.io/tls` Secret must keep).
pub fn encode_onto(existing: &StoredData, state: &RotationState) -> StoredData {
    let mut data: StoredData = existing
        .iter()
        .filter(|(key, _)| !OWN_KEYS.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    data.extend(encode(state));
    data
}

/// What a stored object turned out to hold.
#[derive(Debug)]
pub enum Classified {
    /// Our own rotation state.
    Managed(RotationState),
    /// A CA (certificate + key) someone provided, without rotation state: adopted and rotated.
    /// Also what a damaged state next to intact `ca.crt`/`ca.key` yields: the CA keeps its
    /// identity.
    ProvidedCa(RotationState),
    /// Serving material someone provided without a CA key: served as is, never replaced.
    UserProvided(ServingMaterial),
    /// Certificate material someone provided that cannot be used (a `ca.key` that does not
    /// parse, belongs to no certificate or uses an unsupported algorithm, `tls.crt` without
    /// `ca.crt`, ...): neither usable nor to be overwritten.
    Incomplete {
        /// What is wrong (never quotes the material).
        reason: String,
    },
    /// A rotation state written by a newer release (a newer replica during a rolling update):
    /// left as it is.
    Newer {
        /// The format version found.
        version: u32,
    },
    /// Our own rotation state, damaged (and no intact CA next to it): to be repaired, from the
    /// state a replica holds if any.
    Corrupt {
        /// What is wrong (never quotes the material).
        reason: String,
    },
    /// Nothing of ours (empty, or only keys this crate does not use): to be filled.
    Garbage {
        /// Why it is unusable.
        reason: String,
    },
}

impl Classified {
    /// Whether the object may be (re)written with rotation state.
    pub fn is_repairable(&self) -> bool {
        matches!(
            self,
            Classified::Corrupt { .. } | Classified::Garbage { .. }
        )
    }
}

fn text<'a>(data: &'a StoredData, key: &str) -> Option<&'a str> {
    data.get(key)
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|s| !s.trim().is_empty())
}

fn present(data: &StoredData, key: &str) -> bool {
    data.get(key)
        .is_some_and(|b| !b.iter().all(u8::is_ascii_whitespace))
}

/// Classifies stored data. Never fails, and never puts the stored material (which may hold
/// keys) into a reason: only what is wrong with which key.
pub fn classify(data: &StoredData, now: OffsetDateTime) -> Classified {
    let mut reasons = Vec::new();

    let has_state = present(data, STATE_KEY);
    if has_state {
        match text(data, STATE_KEY).map(RotationState::from_json) {
            Some(Ok(state)) if !state.authorities().is_empty() => {
                return Classified::Managed(state);
            }
            Some(Ok(_)) => reasons.push(format!("{STATE_KEY} holds no CA")),
            Some(Err(StateError::NewerVersion { version })) => {
                return Classified::Newer { version };
            }
            Some(Err(e)) => reasons.push(format!("{STATE_KEY}: {e}")),
            None => reasons.push(format!("{STATE_KEY} is not UTF-8")),
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
        (Some(_), None) => {
            reasons.push(format!("{TLS_CRT_KEY} without {TLS_KEY_KEY}"));
            None
        }
        (None, Some(_)) => {
            reasons.push(format!("{TLS_KEY_KEY} without {TLS_CRT_KEY}"));
            None
        }
        (None, None) => None,
    };

    let ca_certs = text(data, CA_CRT_KEY).and_then(|pem| match CaBundle::from_pem(pem) {
        Ok(b) => Some(b),
        Err(e) => {
            reasons.push(format!("{CA_CRT_KEY}: {e}"));
            None
        }
    });

    if let Some(key_pem) = text(data, CA_KEY_KEY) {
        match (&ca_certs, PrivateKey::from_pem(key_pem)) {
            (Some(bundle), Ok(key)) => {
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
            (None, Ok(_)) => reasons.push(format!("{CA_KEY_KEY} without a usable {CA_CRT_KEY}")),
            (_, Err(e)) => reasons.push(format!("{CA_KEY_KEY}: {e}")),
        }
    }

    if !has_state && let Some((chain, key)) = leaf {
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

    if has_state {
        // Ours, damaged: repaired from what a replica holds.
        return Classified::Corrupt {
            reason: reasons.join("; "),
        };
    }
    let material_keys = [TLS_CRT_KEY, TLS_KEY_KEY, CA_CRT_KEY, CA_KEY_KEY];
    if material_keys.iter().any(|key| present(data, key)) {
        // Someone put certificate material here that cannot be used: never overwrite it.
        return Classified::Incomplete {
            reason: reasons.join("; "),
        };
    }
    Classified::Garbage {
        reason: if data.is_empty() {
            "the object is empty".to_string()
        } else {
            "the object holds no certificate material".to_string()
        },
    }
}
