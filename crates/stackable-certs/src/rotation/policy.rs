//! [`RotationPolicy`]: when leaves are renewed and how CA rotation is paced.
//!
//! The defaults follow cert-manager's renewal at 2/3 of the lifetime and leave time for a new
//! `caBundle` to reach the API server
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>)
//! before leaves switch CA.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use snafu::{Snafu, ensure};

use crate::{KeyAlgorithm, ca::DEFAULT_CA_VALIDITY, leaf::DEFAULT_LEAF_VALIDITY};

/// A policy that makes no sense.
#[derive(Debug, Snafu, PartialEq)]
#[snafu(visibility(pub(crate)))]
pub enum PolicyError {
    /// The renewal fraction is not strictly between 0 and 1.
    #[snafu(display("renew_remaining_fraction must be strictly between 0 and 1, got {fraction}"))]
    FractionOutOfRange {
        /// The value given.
        fraction: f64,
    },

    /// A validity is zero.
    #[snafu(display("{which} validity must be positive"))]
    ZeroValidity {
        /// `CA` or `leaf`.
        which: &'static str,
    },

    /// The leaf validity exceeds the CA validity.
    #[snafu(display(
        "leaf validity {leaf:?} is longer than the CA validity {ca:?}; leaves are clamped to the CA's notAfter"
    ))]
    LeafOutlivesCa {
        /// Leaf validity.
        leaf: Duration,
        /// CA validity.
        ca: Duration,
    },

    /// The absolute renewal window is not shorter than the validity.
    #[snafu(display(
        "renew_before {renew_before:?} is not shorter than the {which} validity {validity:?}; the certificate would be due as soon as it is issued"
    ))]
    RenewWindowTooLong {
        /// `CA` or `leaf`.
        which: &'static str,
        /// The window.
        renew_before: Duration,
        /// The validity.
        validity: Duration,
    },

    /// A renewal window is shorter than the driver can honour ([`MIN_RENEW_WINDOW`]).
    #[snafu(display(
        "the {which} renewal window {window:?} is shorter than {minimum:?}: certificate times have a resolution of one second and the driver sleeps at least a second between wake-ups, so the {which} could expire before it is renewed; use a longer {which} validity, a larger renew_remaining_fraction or a longer {which}_renew_before"
    ))]
    RenewWindowTooShort {
        /// `CA` or `leaf`.
        which: &'static str,
        /// The window.
        window: Duration,
        /// The shortest window accepted.
        minimum: Duration,
    },

    /// Propagation delay plus overlap do not fit into the CA's renewal window.
    #[snafu(display(
        "propagation_delay {propagation:?} + overlap {overlap:?} must be shorter than the CA renewal window {window:?} (the time between starting a CA rotation and the old CA's expiry)"
    ))]
    RotationDoesNotFit {
        /// Propagation delay.
        propagation: Duration,
        /// Overlap.
        overlap: Duration,
        /// The CA renewal window.
        window: Duration,
    },

    /// The CA validity exceeds [`crate::ca::MAX_VALIDITY`].
    #[snafu(display("CA validity {validity:?} is longer than the maximum of 100 years"))]
    TooLong {
        /// The validity given.
        validity: Duration,
    },

    /// The wake-up cap is zero.
    #[snafu(display("max_sleep must be positive"))]
    ZeroMaxSleep,

    /// The propagation delay is shorter than [`MIN_PROPAGATION_DELAY`].
    #[snafu(display(
        "propagation_delay {delay:?} is shorter than {minimum:?}: a new CA must be in every caBundle before leaves come from it, and the API server needs a moment to pick up a changed caBundle; use at least {minimum:?} (default 10 min)"
    ))]
    PropagationTooShort {
        /// The delay given.
        delay: Duration,
        /// The shortest delay accepted.
        minimum: Duration,
    },

    /// The overlap is shorter than the time replicas may take to notice a change.
    #[snafu(display(
        "overlap {overlap:?} is shorter than max_sleep {max_sleep:?}: a replica notices a new stage within max_sleep (sooner when it watches the store), so the old CA could leave the bundle while a replica still serves a leaf from it; make overlap at least max_sleep"
    ))]
    OverlapShorterThanNotice {
        /// The overlap given.
        overlap: Duration,
        /// The wake-up cap.
        max_sleep: Duration,
    },
}

/// The shortest propagation delay a policy may have.
pub const MIN_PROPAGATION_DELAY: Duration = Duration::from_secs(1);

/// The shortest renewal window a policy may have: certificate times have a resolution of one
/// second, and the driver wakes at deadlines rounded up to a whole second and at least a
/// second apart, so a renewal can happen up to a second after it became due.
pub const MIN_RENEW_WINDOW: Duration = Duration::from_secs(1);

/// When certificates are renewed and how a CA rotation is paced.
///
/// "Lifetime" is the lifetime a certificate was issued for, from its issuance to its
/// notAfter. The clock-skew backdate of notBefore ([`crate::ca::CLOCK_SKEW_BACKDATE`], 5 min)
/// is not part of it, so a 4 s leaf is renewed when less than 1⅓ s of it remains, not at
/// once. A leaf clamped to its CA's notAfter is renewed at the fraction of its clamped
/// lifetime, and so is any certificate whose absolute window is not shorter than its
/// lifetime. Every renewal window must be at least [`MIN_RENEW_WINDOW`] (1 s).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `ca_validity` | 365 days | lifetime of a new CA |
/// | `leaf_validity` | 30 days | lifetime of a new leaf (clamped to the CA's notAfter) |
/// | `renew_remaining_fraction` | 1/3 | renew when less than this fraction of the lifetime remains (at 2/3 of the lifetime, like cert-manager) |
/// | `leaf_renew_before` / `ca_renew_before` | none | absolute windows that replace the fraction |
/// | `propagation_delay` | 10 min | time between adding a new CA to the bundle and issuing leaves from it |
/// | `overlap` | 10 min | time the old CA stays in the bundle after the leaf switched to the new CA |
/// | `max_sleep` | 60 s | the driver re-checks the wall clock and re-reads the store at least this often |
///
/// Replicas sharing a store notice a new stage within `max_sleep` (at once when the store is
/// watched), so `overlap` must be at least `max_sleep`, and `propagation_delay` at least
/// [`MIN_PROPAGATION_DELAY`]. Beyond the delays, a new CA signs leaves only once it is observed
/// in every target's `caBundle` when a [`super::PublishedTrust`] is given to the driver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RotationPolicy {
    /// Lifetime of a new CA.
    pub ca_validity: Duration,
    /// Lifetime of a new leaf.
    pub leaf_validity: Duration,
    /// Renew when less than this fraction of the lifetime remains.
    pub renew_remaining_fraction: f64,
    /// Absolute renewal window for leaves (overrides the fraction).
    pub leaf_renew_before: Option<Duration>,
    /// Absolute renewal window for CAs (overrides the fraction).
    pub ca_renew_before: Option<Duration>,
    /// Delay between publishing a new CA in the bundle and issuing leaves from it.
    pub propagation_delay: Duration,
    /// How long the old CA stays in the bundle after the served leaf switched.
    pub overlap: Duration,
    /// Key algorithm for new CAs.
    pub ca_key_algorithm: KeyAlgorithm,
    /// Common name for new CAs.
    pub ca_common_name: String,
    /// Upper bound for one sleep of the driver (wall-clock jumps are noticed within it).
    pub max_sleep: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            ca_validity: DEFAULT_CA_VALIDITY,
            leaf_validity: DEFAULT_LEAF_VALIDITY,
            renew_remaining_fraction: 1.0 / 3.0,
            leaf_renew_before: None,
            ca_renew_before: None,
            propagation_delay: Duration::from_secs(10 * 60),
            overlap: Duration::from_secs(10 * 60),
            ca_key_algorithm: KeyAlgorithm::default(),
            ca_common_name: crate::ca::DEFAULT_CA_COMMON_NAME.to_string(),
            max_sleep: Duration::from_secs(60),
        }
    }
}

impl RotationPolicy {
    /// Checks that the policy makes sense.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let f = self.renew_remaining_fraction;
        ensure!(f > 0.0 && f < 1.0, FractionOutOfRangeSnafu { fraction: f });
        ensure!(
            !self.ca_validity.is_zero(),
            ZeroValiditySnafu { which: "CA" }
        );
        ensure!(
            !self.leaf_validity.is_zero(),
            ZeroValiditySnafu { which: "leaf" }
        );
        ensure!(
            self.leaf_validity <= self.ca_validity,
            LeafOutlivesCaSnafu {
                leaf: self.leaf_validity,
                ca: self.ca_validity
            }
        );
        for (which, before, validity) in [
            ("leaf", self.leaf_renew_before, self.leaf_validity),
            ("CA", self.ca_renew_before, self.ca_validity),
        ] {
            if let Some(renew_before) = before {
                ensure!(
                    renew_before < validity,
                    RenewWindowTooLongSnafu {
                        which,
                        renew_before,
                        validity
                    }
                );
            }
        }
        for (which, validity, before) in [
            ("leaf", self.leaf_validity, self.leaf_renew_before),
            ("CA", self.ca_validity, self.ca_renew_before),
        ] {
            let window = self.renew_window(validity, before);
            ensure!(
                window >= MIN_RENEW_WINDOW,
                RenewWindowTooShortSnafu {
                    which,
                    window,
                    minimum: MIN_RENEW_WINDOW
                }
            );
        }
        let window = self.renew_window(self.ca_validity, self.ca_renew_before);
        ensure!(
            self.propagation_delay.saturating_add(self.overlap) < window,
            RotationDoesNotFitSnafu {
                propagation: self.propagation_delay,
                overlap: self.overlap,
                window
            }
        );
        ensure!(!self.max_sleep.is_zero(), ZeroMaxSleepSnafu);
        ensure!(
            self.propagation_delay >= MIN_PROPAGATION_DELAY,
            PropagationTooShortSnafu {
                delay: self.propagation_delay,
                minimum: MIN_PROPAGATION_DELAY
            }
        );
        ensure!(
            self.overlap >= self.max_sleep,
            OverlapShorterThanNoticeSnafu {
                overlap: self.overlap,
                max_sleep: self.max_sleep
            }
        );
        ensure!(
            self.ca_validity <= crate::ca::MAX_VALIDITY,
            TooLongSnafu {
                validity: self.ca_validity
            }
        );
        Ok(())
    }

    /// The renewal window for a lifetime (as issued, without the notBefore backdate):
    /// `renew_before` if set, else the fraction of it.
    pub fn renew_window(&self, lifetime: Duration, renew_before: Option<Duration>) -> Duration {
        renew_before.unwrap_or_else(|| {
            let fraction = if self.renew_remaining_fraction.is_finite() {
                self.renew_remaining_fraction.clamp(0.0, 1.0)
            } else {
                0.0
            };
            Duration::try_from_secs_f64(lifetime.as_secs_f64() * fraction).unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        RotationPolicy::default().validate().unwrap();
    }

    #[test]
    fn rejects_nonsense() {
        let bad = [
            RotationPolicy {
                renew_remaining_fraction: 0.0,
                ..Default::default()
            },
            RotationPolicy {
                renew_remaining_fraction: 1.0,
                ..Default::default()
            },
            RotationPolicy {
                renew_remaining_fraction: f64::NAN,
                ..Default::default()
            },
            RotationPolicy {
                leaf_renew_before: Some(DEFAULT_LEAF_VALIDITY),
                ..Default::default()
            },
            RotationPolicy {
                propagation_delay: DEFAULT_CA_VALIDITY,
                ..Default::default()
            },
            RotationPolicy {
                leaf_validity: DEFAULT_CA_VALIDITY * 2,
                ..Default::default()
            },
            RotationPolicy {
                max_sleep: Duration::ZERO,
                ..Default::default()
            },
            RotationPolicy {
                propagation_delay: Duration::ZERO,
                ..Default::default()
            },
            RotationPolicy {
                overlap: Duration::from_secs(59),
                ..Default::default()
            },
            RotationPolicy {
                leaf_validity: Duration::from_secs(2),
                ..Default::default()
            },
            RotationPolicy {
                ca_renew_before: Some(Duration::from_millis(999)),
                ..Default::default()
            },
            RotationPolicy {
                propagation_delay: Duration::MAX,
                overlap: Duration::MAX,
                ..Default::default()
            },
            RotationPolicy {
                ca_validity: Duration::MAX,
                leaf_validity: Duration::MAX,
                ..Default::default()
            },
        ];
        for policy in bad {
            assert!(policy.validate().is_err(), "{policy:?} should be rejected");
        }
    }
}
