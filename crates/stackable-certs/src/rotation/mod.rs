//! Leaf renewal and staged, trust-preserving CA rotation.
//!
//! See `docs/certificates.md` for the stages and a timeline. The trust bundle always holds
//! every CA that still signs a served leaf, so clients holding the published `caBundle`
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>)
//! never see a leaf they cannot verify.
//!
//! - [`RotationPolicy`]: when to renew, how to pace a CA rotation,
//! - [`state`]: the pure state machine ([`advance`] for one process, [`advance_cas`] for the
//!   CA stages shared by replicas, [`serving_authority`] for a replica's own leaf),
//! - [`PublishedTrust`]: which CAs every target's `caBundle` holds, read back from the API
//!   server, which gates a rotation,
//! - [`store`]: where the state lives ([`InMemoryStore`], a Kubernetes Secret with the
//!   `kube` feature) and how replicas converge,
//! - [`RotationDriver`]: the tokio task publishing [`MaterialReceiver`].

mod driver;
#[cfg(feature = "kube")]
pub mod kube;
mod policy;
mod published;
pub mod state;
pub mod store;

use snafu::Snafu;

pub use driver::{Clock, MaterialReceiver, RotationDriver, RotationStatus, RunningRotation};
pub use policy::{MIN_PROPAGATION_DELAY, MIN_RENEW_WINDOW, PolicyError, RotationPolicy};
pub use published::PublishedTrust;
pub use state::{Advance, RotationState, Stage, Step, advance, advance_cas, serving_authority};
pub use store::{InMemoryStore, Store, StoreError};

/// Errors of the rotation machinery.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// The policy is invalid.
    #[snafu(display("invalid rotation policy"))]
    InvalidPolicy {
        /// What is wrong.
        source: PolicyError,
    },

    /// Generating or checking certificates failed.
    #[snafu(display("certificate operation failed for {store}"))]
    Certificates {
        /// The store being worked on.
        store: String,
        /// The cause.
        source: crate::Error,
    },

    /// Reading or writing the store failed.
    #[snafu(display("failed to {action} {store}"))]
    Store {
        /// What was attempted (`read`, `create`, `replace`).
        action: &'static str,
        /// The store.
        store: String,
        /// The cause.
        source: StoreError,
    },

    /// The store holds user-provided material that is incomplete; it is not overwritten.
    #[snafu(display(
        "{store} holds user-provided certificate material that cannot be used ({reason}); it is left untouched: fix or delete it"
    ))]
    IncompleteUserMaterial {
        /// The store.
        store: String,
        /// What is wrong.
        reason: String,
    },

    /// The store holds rotation state written by a newer release; it is left untouched.
    #[snafu(display(
        "{store} holds rotation state of format version {version}, written by a newer release; it is left untouched (this replica keeps what it serves, or waits)"
    ))]
    NewerState {
        /// The store.
        store: String,
        /// The format version found.
        version: u32,
    },

    /// The store held nothing usable and the published bundle holds CAs: another replica
    /// probably holds the state and is about to restore it.
    #[snafu(display(
        "{store} holds no usable state while the published caBundle trusts CAs: waiting for a replica that holds them to restore it"
    ))]
    WaitingForRestore {
        /// The store.
        store: String,
    },

    /// Other writers kept winning.
    #[snafu(display("gave up after {attempts} conflicting writes to {store}"))]
    TooManyConflicts {
        /// The store.
        store: String,
        /// Attempts made.
        attempts: u32,
    },
}
