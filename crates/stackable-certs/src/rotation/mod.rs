//! Leaf renewal and staged, trust-preserving CA rotation.
//!
//! See `docs/certificates.md` for the stages and a timeline. The trust bundle always holds
//! every CA that still signs a served leaf, so clients holding the published `caBundle`
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>)
//! never see a leaf they cannot verify.
//!
//! - [`RotationPolicy`]: when to renew, how to pace a CA rotation,
//! - [`state`]: the pure state machine ([`advance`]),
//! - [`store`]: where the state lives ([`InMemoryStore`], a Kubernetes Secret with the
//!   `kube` feature) and how replicas converge,
//! - [`RotationDriver`]: the tokio task publishing [`MaterialReceiver`].

mod driver;
#[cfg(feature = "kube")]
pub mod kube;
mod policy;
pub mod state;
pub mod store;

use snafu::Snafu;

pub use driver::{Clock, MaterialReceiver, RotationDriver, RunningRotation};
pub use policy::{MIN_RENEW_WINDOW, PolicyError, RotationPolicy};
pub use state::{Advance, RotationState, Stage, Step, advance};
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

    /// Other writers kept winning.
    #[snafu(display("gave up after {attempts} conflicting writes to {store}"))]
    TooManyConflicts {
        /// The store.
        store: String,
        /// Attempts made.
        attempts: u32,
    },
}
