//! A cert-manager external issuer whose CA lives in a Secret: `CAIssuer` (namespaced, the
//! Secret in its namespace) and `ClusterCAIssuer` (cluster-scoped, the Secret in the
//! cluster resource namespace). [stackable-issuer](stackable_issuer) runs the controllers;
//! [stackable-certs](stackable_certs) parses the request and signs.

pub mod api;
pub mod signer;
