//! The settings of the controllers, with issuer-lib's defaults where it has them.

use std::time::Duration;

/// Default maximum time a request is retried after retryable errors, counted from its
/// creation (then it fails).
pub const DEFAULT_MAX_RETRY_DURATION: Duration = Duration::from_secs(120);

/// Default interval at which `Ready` issuers are checked again (beyond issuer-lib, which
/// checks only on changes).
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(300);

/// Default first retry delay after a retryable error (doubling per failure).
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(500);

/// Default longest retry delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) field_owner: String,
    pub(crate) max_retry_duration: Duration,
    pub(crate) recheck_interval: Option<Duration>,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) certificate_requests: bool,
    pub(crate) certificate_signing_requests: bool,
    pub(crate) set_ca_on_certificate_request: bool,
}

impl Options {
    pub(crate) fn new(field_owner: String) -> Self {
        Options {
            field_owner,
            max_retry_duration: DEFAULT_MAX_RETRY_DURATION,
            recheck_interval: Some(DEFAULT_RECHECK_INTERVAL),
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            certificate_requests: true,
            certificate_signing_requests: true,
            set_ca_on_certificate_request: false,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.field_owner.trim().is_empty() || self.field_owner.len() > 128 {
            return Err("the field owner must be 1 to 128 characters".into());
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return Err("the backoff must start above zero and end at or after its start".into());
        }
        if self.recheck_interval.is_some_and(|i| i.is_zero()) {
            return Err("the re-check interval must be above zero (or off)".into());
        }
        if !self.certificate_requests && !self.certificate_signing_requests {
            return Err(
                "both the CertificateRequest and the CertificateSigningRequest controllers are off"
                    .into(),
            );
        }
        Ok(())
    }
}
