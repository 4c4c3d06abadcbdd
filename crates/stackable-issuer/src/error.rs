//! Errors of the controllers (the Kubernetes side; the user's failures are
//! [`SignerError`](crate::SignerError)s).

use snafu::Snafu;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop the controllers or fail a reconciliation.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// A kind the controllers watch is not served by the API server.
    #[snafu(display(
        "the API server does not serve {kind} ({api_version}); install its CRD{hint}"
    ))]
    KindNotServed {
        /// The kind.
        kind: String,
        /// Its apiVersion.
        api_version: String,
        /// What to do besides.
        hint: &'static str,
    },

    /// Listing a kind at start-up failed for another reason than it not being served.
    #[snafu(display("cannot list {kind} at start-up"))]
    ListKind {
        /// The kind.
        kind: String,
        /// The API error.
        source: kube::Error,
    },

    /// Writing the status of an object failed.
    #[snafu(display("cannot write the status of {kind} {name}"))]
    WriteStatus {
        /// The kind.
        kind: String,
        /// `namespace/name` or `name`.
        name: String,
        /// The API error.
        source: kube::Error,
    },

    /// The user's ignore hook ([`Signer::ignore_issuer`](crate::Signer::ignore_issuer) or
    /// [`Signer::ignore_certificate_request`](crate::Signer::ignore_certificate_request))
    /// failed; the object is retried with backoff.
    #[snafu(display("cannot decide whether to ignore {kind} {name}"))]
    IgnoreHook {
        /// The kind.
        kind: String,
        /// `namespace/name` or `name`.
        name: String,
        /// The hook's error.
        source: crate::signer::BoxError,
    },

    /// Leader election could not start (the Lease cannot be read or created).
    #[snafu(display("leader election failed"))]
    LeaderElection {
        /// The cause.
        source: stackable_runtime::leader::Error,
    },

    /// The options are not usable.
    #[snafu(display("invalid issuer controller options: {reason}"))]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
}
