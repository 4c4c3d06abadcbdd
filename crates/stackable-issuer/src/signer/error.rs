//! What `check` and `sign` return when they fail: [`SignerError`], classified as issuer-lib
//! classifies its errors (`signer.PermanentError`, `signer.PendingError`, `signer.IssuerError`,
//! `signer.SetCertificateRequestConditionError`, any other error).

use std::{fmt, time::Duration};

/// A boxed error from the user's code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How the controllers treat a [`SignerError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Retried with backoff: for a request until the maximum retry duration since its
    /// creation has passed (then it fails), for an issuer without end.
    Retryable,
    /// Never retried: the request is `Failed` (a new request is needed), the issuer is
    /// `Failed` until its spec changes (a new generation).
    Permanent,
    /// Signing is in progress elsewhere: the request stays `Pending` and is looked at again
    /// after `requeue_after`; this does not count against the maximum retry duration.
    /// (From `check`, treated as [`ErrorKind::Retryable`].)
    Pending {
        /// When to look again.
        requeue_after: Duration,
    },
    /// The issuer, not the request, is at fault: the issuer is marked not `Ready` and checked
    /// again; the request waits for it. (From `check`, treated as [`ErrorKind::Retryable`].)
    Issuer,
}

/// An extra condition that [`SignerError::with_condition`] sets on the request beside
/// `Ready` (issuer-lib's `SetCertificateRequestConditionError`), to keep state across attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestCondition {
    /// The condition type (not `Ready`, `Approved`, `Denied` or `Failed`).
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
}

/// A failure of `check` or `sign`, with what the controllers should do about it.
///
/// The message of the error (with its sources) goes into the condition message and the Event:
/// never put key material or secrets into it.
#[derive(Debug)]
pub struct SignerError {
    kind: ErrorKind,
    source: BoxError,
    condition: Option<RequestCondition>,
}

/// The default delay of a pending request (issuer-lib's 1 s).
pub const DEFAULT_PENDING_DELAY: Duration = Duration::from_secs(1);

impl SignerError {
    fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        SignerError {
            kind,
            source: source.into(),
            condition: None,
        }
    }

    /// An error that may pass: retried with backoff.
    pub fn retryable(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Retryable, source)
    }

    /// An error that will not pass by retrying.
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Permanent, source)
    }

    /// Signing is still in progress; look again after [`DEFAULT_PENDING_DELAY`] (change it
    /// with [`Self::requeue_after`]).
    pub fn pending(reason: impl Into<BoxError>) -> Self {
        Self::new(
            ErrorKind::Pending {
                requeue_after: DEFAULT_PENDING_DELAY,
            },
            reason,
        )
    }

    /// The issuer is at fault (its CA is gone, its credentials are refused...).
    pub fn issuer(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Issuer, source)
    }

    /// For a pending error: when to look again (zero means the default of 1 s).
    #[must_use]
    pub fn requeue_after(mut self, delay: Duration) -> Self {
        if let ErrorKind::Pending { requeue_after } = &mut self.kind {
            *requeue_after = if delay.is_zero() {
                DEFAULT_PENDING_DELAY
            } else {
                delay
            };
        }
        self
    }

    /// Also sets the condition `type_` with `status` and `reason` (and this error's message) on
    /// the request. When that condition changes its status, the change itself brings the
    /// request back, so a retryable error is not requeued with backoff in addition.
    #[must_use]
    pub fn with_condition(
        mut self,
        type_: impl Into<String>,
        status: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        self.condition = Some(RequestCondition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
        });
        self
    }

    /// How the controllers treat this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The extra condition to set on the request, if any.
    pub fn condition(&self) -> Option<&RequestCondition> {
        self.condition.as_ref()
    }

    /// The message with the chain of sources (`outer: inner: innermost`).
    pub fn message(&self) -> String {
        let mut message = self.source.to_string();
        let mut next = self.source.source();
        while let Some(source) = next {
            let text = source.to_string();
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            next = source.source();
        }
        message
    }
}

impl fmt::Display for SignerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// The Display already holds the whole chain of sources (see [`SignerError::message`]), so
/// `source()` is `None` and reports do not repeat it.
impl std::error::Error for SignerError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading the CA Secret")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn kinds_delays_and_messages() {
        let e = SignerError::pending("queued at the CA").requeue_after(Duration::ZERO);
        assert_eq!(
            e.kind(),
            ErrorKind::Pending {
                requeue_after: DEFAULT_PENDING_DELAY
            }
        );
        let e = SignerError::pending("queued").requeue_after(Duration::from_secs(7));
        assert_eq!(
            e.kind(),
            ErrorKind::Pending {
                requeue_after: Duration::from_secs(7)
            }
        );
        // requeue_after means nothing for other kinds.
        let e = SignerError::permanent("no").requeue_after(Duration::from_secs(7));
        assert_eq!(e.kind(), ErrorKind::Permanent);
        let e = SignerError::retryable(Outer(std::io::Error::other("connection refused")))
            .with_condition("CAQueued", "True", "Queued");
        assert_eq!(e.message(), "reading the CA Secret: connection refused");
        assert_eq!(e.to_string(), e.message());
        assert_eq!(e.condition().map(|c| c.reason.as_str()), Some("Queued"));
        assert_eq!(SignerError::issuer("CA gone").kind(), ErrorKind::Issuer);
    }
}
