//! Leaf renewal and staged, trust-preserving CA rotation.
//!
//! See `docs/certificates.md` for the stages and a timeline. The trust bundle always holds
//! every CA that still signs a served leaf, so clients holding the published `caBundle`
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>)
//! never see a leaf they cannot verify.

mod driver;
mod policy;

pub use driver::{MaterialReceiver, RotationDriver, RunningRotation};
pub use policy::{PolicyError, RotationPolicy};
