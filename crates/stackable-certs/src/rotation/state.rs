//! The rotation state machine: a pure function of (state, policy, now).
//!
//! [`advance`] performs every step that is due at `now` and returns the new state, the steps
//! taken and the next deadline. It does no I/O and reads no clock, so it is unit-tested with
//! a fake clock; the [driver](super::RotationDriver) calls it with the wall clock.
//!
//! Stages of a CA rotation (see `docs/certificates.md`):
//!
//! 1. [`Stage::Stable`]: one CA; it signs the served leaf. When less than the renewal window
//!    of its lifetime remains, a new CA is created and *added* to the bundle →
//! 2. [`Stage::Propagating`]: both CAs are in the bundle, the leaf is still signed by the old
//!    CA. After `propagation_delay` (time for the new bundle to reach every client) the leaf
//!    is re-issued by the new CA →
//! 3. [`Stage::Overlap`]: both CAs are in the bundle, the leaf is signed by the new CA. After
//!    `overlap` (time for every replica to serve the new leaf) the old CA leaves the bundle →
//!    back to [`Stage::Stable`].
//!
//! Expired CAs are pruned at any stage. The bundle is what ends up in `caBundle`
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>).
//!
//! With several replicas the state is shared (a Secret) and the leaf is not: [`advance_cas`]
//! performs the CA stages only, gated on [`PublishedTrust`] (the stage moves on only once the
//! new CA is observed in every target's `caBundle`), and each replica issues its own leaf from
//! [`serving_authority`]. [`advance`] composes both for a single process.

use std::fmt;

use serde::{Deserialize, Serialize};
use snafu::{ResultExt as _, Snafu};
use time::OffsetDateTime;

use crate::{
    CaBundle, Certificate, LeafOptions, PrivateKey, ServingMaterial,
    ca::{CLOCK_SKEW_BACKDATE, CaOptions, CertificateAuthority},
    rotation::{PublishedTrust, RotationPolicy},
};

/// The stage of a CA rotation (serialised into the stored state, so a restart resumes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "camelCase")]
pub enum Stage {
    /// One CA signs the served leaf; nothing in flight.
    Stable,
    /// The newest CA is in the bundle; leaves are issued by it from `issue_after` on.
    #[serde(rename_all = "camelCase")]
    Propagating {
        /// When the leaf switches to the new CA.
        #[serde(with = "time::serde::rfc3339")]
        issue_after: OffsetDateTime,
    },
    /// The leaf is signed by the newest CA; older CAs leave the bundle at `retire_after`.
    #[serde(rename_all = "camelCase")]
    Overlap {
        /// When the older CAs leave the bundle.
        #[serde(with = "time::serde::rfc3339")]
        retire_after: OffsetDateTime,
    },
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Stable => f.write_str("stable"),
            Stage::Propagating { issue_after } => write!(f, "propagating (until {issue_after})"),
            Stage::Overlap { retire_after } => write!(f, "overlap (until {retire_after})"),
        }
    }
}

/// A CA in the trust bundle.
#[derive(Clone, Debug)]
pub struct Authority {
    /// The CA.
    pub ca: CertificateAuthority,
    /// When it was added to the bundle.
    pub added_at: OffsetDateTime,
}

/// A CA kept in the trust bundle without its key: it was trusted by the published bundle when
/// this state had to be created afresh (the stored state was lost and no replica held it), so
/// leaves it signed may still be served somewhere. It leaves the bundle at `until`.
#[derive(Clone, Debug)]
pub struct RetainedCa {
    /// The CA certificate.
    pub certificate: Certificate,
    /// When it leaves the bundle (at the latest; earlier if it expires).
    pub until: OffsetDateTime,
}

/// The leaf currently served.
#[derive(Clone, Debug)]
pub struct ServedLeaf {
    /// The leaf certificate.
    pub certificate: Certificate,
    /// Its key.
    pub key: PrivateKey,
}

/// Everything the rotation needs to resume: the CAs (oldest first), CAs retained without a key,
/// the stage and, for a single process, the served leaf. Serialises to JSON with PEM-encoded
/// certificates and keys. The shared store holds it without a leaf: each replica issues its own.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "StateRepr", into = "StateRepr")]
pub struct RotationState {
    authorities: Vec<Authority>,
    retained: Vec<RetainedCa>,
    leaf: Option<ServedLeaf>,
    stage: Stage,
}

/// Why the serialised state could not be loaded.
///
/// No variant carries the parser's message: serde's messages quote the offending value, which
/// in this document can be key material. Only the kind of error and its position are kept.
#[derive(Debug, Snafu)]
pub enum StateError {
    /// The JSON is malformed or does not have the shape of this format version.
    #[snafu(display(
        "rotation state is not valid JSON for format version {STATE_VERSION} ({category} at line {line}, column {column})"
    ))]
    Json {
        /// `syntax`, `data` (wrong shape), `eof` or `io`.
        category: &'static str,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
    },
    /// The state was written by a newer release (a newer replica during a rolling update): it
    /// is left as it is, never rewritten.
    #[snafu(display(
        "rotation state has format version {version}, written by a newer release; this build understands {STATE_VERSION} and leaves it untouched"
    ))]
    NewerVersion {
        /// The version found.
        version: u32,
    },
    /// The state has a format version that no release wrote.
    #[snafu(display("rotation state has format version {version}, which no release writes"))]
    UnknownVersion {
        /// The version found.
        version: u32,
    },
    /// A certificate or key in the state is invalid.
    #[snafu(display("rotation state holds an invalid {what}"))]
    Material {
        /// Which item.
        what: String,
        /// The parse error.
        source: crate::Error,
    },
}

/// The format version this build writes and reads.
pub const STATE_VERSION: u32 = 1;

fn json_error(error: &serde_json::Error) -> StateError {
    StateError::Json {
        category: match error.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        },
        line: error.line(),
        column: error.column(),
    }
}

#[derive(Deserialize)]
struct VersionOnly {
    version: Option<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateRepr {
    version: u32,
    #[serde(flatten)]
    stage: Stage,
    authorities: Vec<AuthorityRepr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retained: Vec<RetainedRepr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    leaf: Option<LeafRepr>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetainedRepr {
    certificate: String,
    #[serde(with = "time::serde::rfc3339")]
    until: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorityRepr {
    certificate: String,
    key: String,
    #[serde(with = "time::serde::rfc3339")]
    added_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct LeafRepr {
    certificate: String,
    key: String,
}

impl From<RotationState> for StateRepr {
    fn from(state: RotationState) -> Self {
        StateRepr {
            version: STATE_VERSION,
            stage: state.stage,
            authorities: state
                .authorities
                .iter()
                .map(|a| AuthorityRepr {
                    certificate: a.ca.certificate().to_pem(),
                    key: a.ca.key().to_pem(),
                    added_at: a.added_at,
                })
                .collect(),
            retained: state
                .retained
                .iter()
                .map(|r| RetainedRepr {
                    certificate: r.certificate.to_pem(),
                    until: r.until,
                })
                .collect(),
            leaf: state.leaf.map(|l| LeafRepr {
                certificate: l.certificate.to_pem(),
                key: l.key.to_pem(),
            }),
        }
    }
}

impl TryFrom<StateRepr> for RotationState {
    type Error = StateError;

    fn try_from(repr: StateRepr) -> Result<Self, StateError> {
        check_version(Some(repr.version))?;
        let mut authorities = Vec::with_capacity(repr.authorities.len());
        for (i, a) in repr.authorities.into_iter().enumerate() {
            let what = || format!("CA #{i}");
            let cert =
                Certificate::from_pem(&a.certificate).context(MaterialSnafu { what: what() })?;
            let key = PrivateKey::from_pem(&a.key).context(MaterialSnafu { what: what() })?;
            let ca = CertificateAuthority::from_parts(cert, key)
                .context(MaterialSnafu { what: what() })?;
            authorities.push(Authority {
                ca,
                added_at: a.added_at,
            });
        }
        let mut retained = Vec::with_capacity(repr.retained.len());
        for (i, r) in repr.retained.into_iter().enumerate() {
            let certificate = Certificate::from_pem(&r.certificate).context(MaterialSnafu {
                what: format!("retained CA #{i}"),
            })?;
            retained.push(RetainedCa {
                certificate,
                until: r.until,
            });
        }
        let leaf = match repr.leaf {
            Some(l) => {
                let certificate = Certificate::from_pem(&l.certificate)
                    .context(MaterialSnafu { what: "leaf" })?;
                let key =
                    PrivateKey::from_pem(&l.key).context(MaterialSnafu { what: "leaf key" })?;
                Some(ServedLeaf { certificate, key })
            }
            None => None,
        };
        Ok(RotationState {
            authorities,
            retained,
            leaf,
            stage: repr.stage,
        })
    }
}

fn check_version(version: Option<u32>) -> Result<(), StateError> {
    match version {
        Some(STATE_VERSION) => Ok(()),
        Some(version) if version > STATE_VERSION => NewerVersionSnafu { version }.fail(),
        Some(version) => UnknownVersionSnafu { version }.fail(),
        // Let the full parse report the missing field.
        None => Ok(()),
    }
}

impl Default for RotationState {
    fn default() -> Self {
        Self::empty()
    }
}

impl RotationState {
    /// No CA, no leaf.
    pub fn empty() -> Self {
        RotationState {
            authorities: Vec::new(),
            retained: Vec::new(),
            leaf: None,
            stage: Stage::Stable,
        }
    }

    /// A state adopting an existing CA (and optionally a leaf it issued).
    pub fn adopt(ca: CertificateAuthority, leaf: Option<ServedLeaf>, now: OffsetDateTime) -> Self {
        RotationState {
            authorities: vec![Authority { ca, added_at: now }],
            retained: Vec::new(),
            leaf,
            stage: Stage::Stable,
        }
    }

    /// The same state without the leaf: what a shared store holds (each replica issues its
    /// own leaf).
    pub fn without_leaf(&self) -> Self {
        RotationState {
            leaf: None,
            ..self.clone()
        }
    }

    /// The same state serving `leaf` (a replica's own leaf next to the shared CAs).
    pub fn with_leaf(&self, leaf: Option<ServedLeaf>) -> Self {
        RotationState {
            leaf,
            ..self.clone()
        }
    }

    /// Serialises to JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Loads from JSON. A newer format version is reported as
    /// [`StateError::NewerVersion`] before its shape is looked at.
    pub fn from_json(json: &str) -> Result<Self, StateError> {
        if let Ok(VersionOnly { version }) = serde_json::from_str::<VersionOnly>(json) {
            check_version(version)?;
        }
        serde_json::from_str(json).map_err(|e| json_error(&e))
    }

    /// The current stage.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// The CAs in the bundle, oldest first.
    pub fn authorities(&self) -> &[Authority] {
        &self.authorities
    }

    /// CAs kept in the bundle without their key (see [`RetainedCa`]).
    pub fn retained(&self) -> &[RetainedCa] {
        &self.retained
    }

    /// The served leaf.
    pub fn leaf(&self) -> Option<&ServedLeaf> {
        self.leaf.as_ref()
    }

    /// The CA that signs leaves in the current stage.
    pub fn active_authority(&self) -> Option<&Authority> {
        match self.stage {
            Stage::Propagating { .. } if self.authorities.len() >= 2 => {
                self.authorities.get(self.authorities.len() - 2)
            }
            _ => self.authorities.last(),
        }
    }

    /// The trust bundle: the retained CAs, then every CA of the state, oldest first. Replicas
    /// holding the same state compute byte-identical bundles.
    pub fn trust_bundle(&self) -> Option<CaBundle> {
        CaBundle::from_certificates(
            self.retained
                .iter()
                .map(|r| r.certificate.clone())
                .chain(self.authorities.iter().map(|a| a.ca.certificate().clone())),
        )
        .ok()
    }

    /// Whether `ca` is one of this state's CAs (with key) or retained CAs.
    pub fn holds_ca(&self, ca: &Certificate) -> bool {
        self.authorities.iter().any(|a| a.ca.certificate() == ca)
            || self.retained.iter().any(|r| &r.certificate == ca)
    }

    /// The serving material (leaf, key, bundle), if there is a leaf.
    pub fn serving_material(&self) -> Option<ServingMaterial> {
        let leaf = self.leaf.as_ref()?;
        ServingMaterial::new(
            vec![leaf.certificate.clone()],
            leaf.key.clone(),
            self.trust_bundle()?,
        )
        .ok()
    }

    /// Whether two states hold the same material and stage (compares DER, not keys' encoding).
    pub fn same_as(&self, other: &RotationState) -> bool {
        self.same_cas_as(other)
            && self.leaf.as_ref().map(|l| &l.certificate)
                == other.leaf.as_ref().map(|l| &l.certificate)
    }

    /// Whether two states hold the same CAs, retained CAs and stage (the shared part).
    pub fn same_cas_as(&self, other: &RotationState) -> bool {
        self.stage == other.stage
            && self.authorities.len() == other.authorities.len()
            && self
                .authorities
                .iter()
                .zip(&other.authorities)
                .all(|(a, b)| a.ca.certificate() == b.ca.certificate() && a.added_at == b.added_at)
            && self.retained.len() == other.retained.len()
            && self
                .retained
                .iter()
                .zip(&other.retained)
                .all(|(a, b)| a.certificate == b.certificate && a.until == b.until)
    }
}

/// One step the state machine took (for logs; never contains key material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A first CA was created (nothing to preserve trust for).
    CreatedCa {
        /// Serial of the new CA (hex).
        serial: String,
    },
    /// A CA of the published bundle was kept in the new state's bundle (without its key),
    /// because the state was created afresh while clients trusted it.
    RetainedPublishedCa {
        /// Serial of the retained CA (hex).
        serial: String,
        /// When it leaves the bundle.
        until: OffsetDateTime,
    },
    /// A new CA was added to the bundle; leaves switch to it later.
    StagedNewCa {
        /// Serial of the new CA (hex).
        serial: String,
        /// When leaves switch to it.
        issue_after: OffsetDateTime,
    },
    /// Leaves switch to the newest CA now (it is published everywhere and the delay passed).
    SwitchedToNewCa {
        /// Serial of the newest CA (hex).
        serial: String,
        /// When the older CAs leave the bundle.
        retire_after: OffsetDateTime,
    },
    /// A leaf was issued.
    IssuedLeaf {
        /// Serial of the leaf (hex).
        serial: String,
        /// Serial of the issuing CA (hex).
        issuer_serial: String,
        /// Why.
        reason: LeafReason,
    },
    /// An older CA left the bundle after the overlap.
    RetiredCa {
        /// Serial of the CA (hex).
        serial: String,
    },
    /// A retained CA left the bundle (its time was up).
    ReleasedRetainedCa {
        /// Serial of the CA (hex).
        serial: String,
    },
    /// An expired CA was pruned.
    PrunedExpiredCa {
        /// Serial of the CA (hex).
        serial: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreatedCa { serial } => write!(f, "created CA {serial}"),
            Step::RetainedPublishedCa { serial, until } => write!(
                f,
                "kept CA {serial} of the published bundle in the new bundle until {until}"
            ),
            Step::StagedNewCa {
                serial,
                issue_after,
            } => write!(
                f,
                "added new CA {serial} to the bundle; leaves switch to it once it is published everywhere, at {issue_after} at the earliest"
            ),
            Step::SwitchedToNewCa {
                serial,
                retire_after,
            } => write!(
                f,
                "leaves switch to CA {serial}; older CAs leave the bundle at {retire_after}"
            ),
            Step::IssuedLeaf {
                serial,
                issuer_serial,
                reason,
            } => write!(f, "issued leaf {serial} from CA {issuer_serial} ({reason})"),
            Step::RetiredCa { serial } => write!(f, "retired CA {serial} from the bundle"),
            Step::ReleasedRetainedCa { serial } => {
                write!(f, "retained CA {serial} left the bundle")
            }
            Step::PrunedExpiredCa { serial } => write!(f, "pruned expired CA {serial}"),
        }
    }
}

/// Why a leaf was (re-)issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafReason {
    /// There was none.
    Missing,
    /// Less than the renewal window of its lifetime remained (or it expired).
    DueForRenewal,
    /// SANs, subject, key usages or key algorithm differ from what is wanted.
    OptionsChanged,
    /// It was not signed by the CA that should sign leaves now.
    NotFromActiveCa,
}

impl fmt::Display for LeafReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeafReason::Missing => "no leaf yet",
            LeafReason::DueForRenewal => "due for renewal",
            LeafReason::OptionsChanged => "wanted SANs/usages changed",
            LeafReason::NotFromActiveCa => "not issued by the active CA",
        })
    }
}

/// The result of [`advance`] and [`advance_cas`].
#[derive(Clone, Debug)]
pub struct Advance {
    /// The new state.
    pub state: RotationState,
    /// When [`advance`] must run next (at the latest).
    pub next_deadline: OffsetDateTime,
    /// What was done (empty if nothing was due).
    pub steps: Vec<Step>,
}

fn to_time(d: std::time::Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// The lifetime a certificate was issued for: from its issuance to notAfter.
///
/// Certificates of this crate are backdated by [`CLOCK_SKEW_BACKDATE`] (notBefore = issuance
/// − 5 min), so that clients whose clocks lag accept them. That backdate is not part of the
/// lifetime the renewal window is a fraction of: counting it, a 4 s leaf would have a 304 s
/// lifetime, a third of which (101 s) is more than the whole leaf, and it would be due the
/// moment it is issued. The issuance is therefore taken as notBefore + the backdate. For a
/// certificate that is not backdated (made elsewhere) this underestimates the lifetime by
/// 5 minutes, which delays its renewal by at most `fraction × 5 min`; a certificate whose
/// whole validity is not longer than the backdate is taken at its full validity.
/// For a leaf clamped to its CA's notAfter this is the clamped lifetime.
pub fn issued_lifetime(cert: &Certificate) -> time::Duration {
    let info = cert.info();
    let full = info.lifetime();
    let backdate = to_time(CLOCK_SKEW_BACKDATE);
    if full > backdate {
        full - backdate
    } else {
        full
    }
}

/// When a certificate is due for renewal: notAfter minus the renewal window.
///
/// The window is `absolute` (`leaf_renew_before` / `ca_renew_before`) if set and shorter than
/// the [issued lifetime](issued_lifetime), else `renew_remaining_fraction` of that lifetime.
/// The fallback matters for leaves clamped to their CA's notAfter: an absolute window longer
/// than the clamped lifetime would make the leaf due as soon as it is issued (cert-manager
/// falls back to 2/3 of the duration in the same case).
pub fn renew_at(
    policy: &RotationPolicy,
    cert: &Certificate,
    absolute: Option<std::time::Duration>,
) -> OffsetDateTime {
    let lifetime = issued_lifetime(cert);
    let fraction_window = to_time(policy.renew_window(
        std::time::Duration::try_from(lifetime).unwrap_or_default(),
        None,
    ));
    let window = match absolute.map(to_time) {
        Some(window) if window < lifetime => window,
        _ => fraction_window,
    };
    cert.info().not_after - window
}

fn ca_renew_at(policy: &RotationPolicy, cert: &Certificate) -> OffsetDateTime {
    renew_at(policy, cert, policy.ca_renew_before)
}

/// When a leaf is due for renewal under `policy`.
pub fn leaf_renew_at(policy: &RotationPolicy, cert: &Certificate) -> OffsetDateTime {
    renew_at(policy, cert, policy.leaf_renew_before)
}

fn serial(cert: &Certificate) -> String {
    cert.info().serial_hex()
}

/// The CA a replica issues its leaf from, given what is published.
///
/// - Stable: the only (newest) CA.
/// - Propagating: the CA before the newest; the newest is not served before the switch.
/// - Overlap: the newest CA once `published` trusts it; until then the one before it, which
///   is still in the bundle. A replica whose own view of the targets lags therefore keeps a
///   leaf its clients trust.
pub fn serving_authority<'a>(
    state: &'a RotationState,
    published: &PublishedTrust,
) -> Option<&'a Authority> {
    let newest = state.authorities.last()?;
    let previous = state
        .authorities
        .len()
        .checked_sub(2)
        .and_then(|i| state.authorities.get(i));
    match (&state.stage, previous) {
        (Stage::Propagating { .. }, Some(previous)) => Some(previous),
        (Stage::Overlap { .. }, Some(previous)) if !published.trusts(newest.ca.certificate()) => {
            Some(previous)
        }
        _ => Some(newest),
    }
}

/// The newest CA, when the rotation waits for it to be published in every target: the
/// propagation delay has passed but `published` does not trust it yet. `None` when nothing
/// waits.
pub fn waiting_for_publication<'a>(
    state: &'a RotationState,
    published: &PublishedTrust,
    now: OffsetDateTime,
) -> Option<&'a Certificate> {
    let newest = state.authorities.last()?.ca.certificate();
    let waits = match state.stage {
        Stage::Propagating { issue_after } => now >= issue_after,
        Stage::Overlap { .. } => true,
        Stage::Stable => false,
    };
    (waits && !published.trusts(newest)).then_some(newest)
}

/// Whether `leaf` needs re-issuing by `issuer`, and why.
pub fn leaf_due_from(
    leaf: Option<&ServedLeaf>,
    issuer: Option<&Authority>,
    policy: &RotationPolicy,
    wanted: &LeafOptions,
    now: OffsetDateTime,
) -> Option<LeafReason> {
    let Some(leaf) = leaf else {
        return Some(LeafReason::Missing);
    };
    let Some(issuer) = issuer else {
        return Some(LeafReason::NotFromActiveCa);
    };
    if !leaf.certificate.is_issued_by(issuer.ca.certificate()) {
        return Some(LeafReason::NotFromActiveCa);
    }
    if !wanted.matches(&leaf.certificate) || !leaf.certificate.matches_key(&leaf.key) {
        return Some(LeafReason::OptionsChanged);
    }
    if now >= leaf_renew_at(policy, &leaf.certificate) {
        return Some(LeafReason::DueForRenewal);
    }
    None
}

/// Whether the served leaf needs re-issuing, and why (single process: nothing observed).
pub fn leaf_due(
    state: &RotationState,
    policy: &RotationPolicy,
    wanted: &LeafOptions,
    now: OffsetDateTime,
) -> Option<LeafReason> {
    leaf_due_from(
        state.leaf.as_ref(),
        state.active_authority(),
        policy,
        wanted,
        now,
    )
}

/// Issues the leaf `wanted` (validity from the policy) from `issuer` at `now`.
pub fn issue_leaf(
    issuer: &Authority,
    policy: &RotationPolicy,
    wanted: &LeafOptions,
    reason: LeafReason,
    now: OffsetDateTime,
) -> crate::Result<(ServedLeaf, Step)> {
    let wanted = wanted.clone().validity(policy.leaf_validity);
    let issued = issuer.ca.issue_at(&wanted, now)?;
    let step = Step::IssuedLeaf {
        serial: serial(&issued.certificate),
        issuer_serial: serial(issuer.ca.certificate()),
        reason,
    };
    Ok((
        ServedLeaf {
            certificate: issued.certificate,
            key: issued.key,
        },
        step,
    ))
}

/// Performs every step due at `now` in a single process: the CA stages (nothing observed, so
/// only the policy's delays pace them) and the leaf. Pure apart from key generation: no I/O,
/// no clock.
///
/// `wanted` describes the leaf; its validity is replaced by `policy.leaf_validity`.
pub fn advance(
    state: &RotationState,
    policy: &RotationPolicy,
    wanted: &LeafOptions,
    now: OffsetDateTime,
) -> crate::Result<Advance> {
    let published = PublishedTrust::unobserved();
    let Advance {
        mut state,
        mut steps,
        ..
    } = advance_cas(state, policy, &published, now)?;
    let wanted = wanted.clone().validity(policy.leaf_validity);
    let issuer = serving_authority(&state, &published);
    if let Some(reason) = leaf_due_from(state.leaf.as_ref(), issuer, policy, &wanted, now)
        && let Some(issuer) = issuer
    {
        let (leaf, step) = issue_leaf(issuer, policy, &wanted, reason, now)?;
        steps.push(step);
        state.leaf = Some(leaf);
    }
    let next_deadline = next_deadline(&state, policy, now);
    Ok(Advance {
        state,
        next_deadline,
        steps,
    })
}

/// Performs every CA step due at `now`: prune expired CAs, create the first CA, stage a new CA,
/// switch to it, retire the old one. The leaf (if any) is left as it is.
///
/// The switch to a staged CA and the retirement of the old one wait, beyond the policy's
/// delays, until `published` trusts the newest CA: a rotation never moves on while a target's
/// `caBundle` lacks the CA that leaves will come from. A state created afresh (nothing stored,
/// no replica holds one) keeps the CAs `published` trusts in its bundle (see [`RetainedCa`])
/// for `propagation_delay + overlap`.
pub fn advance_cas(
    state: &RotationState,
    policy: &RotationPolicy,
    published: &PublishedTrust,
    now: OffsetDateTime,
) -> crate::Result<Advance> {
    let mut state = state.clone();
    let mut steps = Vec::new();

    // 1. Prune expired CAs (a CA with notAfter <= now cannot anchor anything).
    let before = std::mem::take(&mut state.authorities);
    for a in before {
        if a.ca.certificate().info().not_after <= now {
            steps.push(Step::PrunedExpiredCa {
                serial: serial(a.ca.certificate()),
            });
        } else {
            state.authorities.push(a);
        }
    }
    if state.authorities.len() <= 1 && state.stage != Stage::Stable {
        state.stage = Stage::Stable;
    }

    // 2. Bootstrap: no CA at all.
    if state.authorities.is_empty() {
        let ca = CertificateAuthority::new_at(&ca_options(policy), now)?;
        steps.push(Step::CreatedCa {
            serial: serial(ca.certificate()),
        });
        // Whatever clients trust now may sign leaves still served somewhere: keep it.
        let until = now
            .saturating_add(to_time(policy.propagation_delay))
            .saturating_add(to_time(policy.overlap));
        for certificate in published.certificates() {
            let info = certificate.info();
            if info.is_ca && info.not_after > now && !state.holds_ca(certificate) {
                steps.push(Step::RetainedPublishedCa {
                    serial: serial(certificate),
                    until,
                });
                state.retained.push(RetainedCa {
                    certificate: certificate.clone(),
                    until,
                });
            }
        }
        state.authorities.push(Authority { ca, added_at: now });
        state.stage = Stage::Stable;
    }

    let newest_published = state
        .authorities
        .last()
        .is_some_and(|a| published.trusts(a.ca.certificate()));

    // 3. Retained CAs leave when their time is up (once the newest CA is published, so that
    //    the bundle that replaces theirs trusts the leaves served then) or when they expire.
    let before = std::mem::take(&mut state.retained);
    for r in before {
        let expired = r.certificate.info().not_after <= now;
        if expired || (now >= r.until && newest_published) {
            steps.push(Step::ReleasedRetainedCa {
                serial: serial(&r.certificate),
            });
        } else {
            state.retained.push(r);
        }
    }

    // 4. CA rotation stages.
    match state.stage.clone() {
        Stage::Stable => {
            let newest = state.authorities.last().map(|a| a.ca.certificate().clone());
            if let Some(newest) = newest
                && now >= ca_renew_at(policy, &newest)
            {
                let ca = CertificateAuthority::new_at(&ca_options(policy), now)?;
                let issue_after = now.saturating_add(to_time(policy.propagation_delay));
                steps.push(Step::StagedNewCa {
                    serial: serial(ca.certificate()),
                    issue_after,
                });
                state.authorities.push(Authority { ca, added_at: now });
                state.stage = Stage::Propagating { issue_after };
            }
        }
        Stage::Propagating { issue_after } => {
            if now >= issue_after && newest_published {
                let retire_after = now.saturating_add(to_time(policy.overlap));
                if let Some(newest) = state.authorities.last() {
                    steps.push(Step::SwitchedToNewCa {
                        serial: serial(newest.ca.certificate()),
                        retire_after,
                    });
                }
                state.stage = Stage::Overlap { retire_after };
            }
        }
        Stage::Overlap { retire_after } => {
            if now >= retire_after && newest_published {
                let keep = state.authorities.len().saturating_sub(1);
                for old in state.authorities.drain(..keep) {
                    steps.push(Step::RetiredCa {
                        serial: serial(old.ca.certificate()),
                    });
                }
                state.stage = Stage::Stable;
            }
        }
    }

    let next_deadline = next_cas_deadline(&state, policy, published, now);
    Ok(Advance {
        state,
        next_deadline,
        steps,
    })
}

fn ca_options(policy: &RotationPolicy) -> CaOptions {
    CaOptions::new(policy.ca_common_name.clone())
        .validity(policy.ca_validity)
        .key_algorithm(policy.ca_key_algorithm)
}

/// The earliest time at which [`advance`] has something to do, rounded up to a whole second
/// and at least one second after `now`.
///
/// Certificate times are whole seconds and a certificate issued at `now` starts at `now`
/// truncated to the second; waking at a fractional deadline would give every new certificate
/// up to a second less than asked for, and with second-scale lifetimes renewals would drift
/// earlier on every cycle (4 s leaves renewed every 2 s instead of every 2⅔–3 s).
pub fn next_deadline(
    state: &RotationState,
    policy: &RotationPolicy,
    now: OffsetDateTime,
) -> OffsetDateTime {
    let cas = next_cas_deadline(state, policy, &PublishedTrust::unobserved(), now);
    match &state.leaf {
        Some(leaf) => cas.min(round_deadline(
            leaf_renew_at(policy, &leaf.certificate),
            now,
        )),
        None => cas,
    }
}

/// The earliest time at which [`advance_cas`] has something to do (rounded like
/// [`next_deadline`]). A step that waits for `published` has no deadline: the caller wakes
/// when what is published changes.
pub fn next_cas_deadline(
    state: &RotationState,
    policy: &RotationPolicy,
    published: &PublishedTrust,
    now: OffsetDateTime,
) -> OffsetDateTime {
    let newest_published = state
        .authorities
        .last()
        .is_some_and(|a| published.trusts(a.ca.certificate()));
    let mut candidates: Vec<OffsetDateTime> = state
        .authorities
        .iter()
        .map(|a| a.ca.certificate().info().not_after)
        .chain(
            state
                .retained
                .iter()
                .map(|r| r.certificate.info().not_after),
        )
        .collect();
    if newest_published {
        candidates.extend(state.retained.iter().map(|r| r.until));
    }
    match &state.stage {
        Stage::Stable => {
            if let Some(newest) = state.authorities.last() {
                candidates.push(ca_renew_at(policy, newest.ca.certificate()));
            }
        }
        Stage::Propagating { issue_after } => {
            if newest_published || now < *issue_after {
                candidates.push(*issue_after);
            }
        }
        Stage::Overlap { retire_after } => {
            if newest_published {
                candidates.push(*retire_after);
            }
        }
    }
    let far = now.saturating_add(time::Duration::days(365 * 100));
    round_deadline(candidates.into_iter().min().unwrap_or(far), now)
}

/// Rounds a deadline up to a whole second, and to at least one second after `now`.
pub fn round_deadline(deadline: OffsetDateTime, now: OffsetDateTime) -> OffsetDateTime {
    ceil_second(deadline).max(now.saturating_add(time::Duration::SECOND))
}

fn ceil_second(t: OffsetDateTime) -> OffsetDateTime {
    if t.nanosecond() == 0 {
        return t;
    }
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .saturating_add(time::Duration::SECOND)
}
