//! How often the rotation re-issues, for lifetimes from a year down to seconds.
//!
//! The state machine is run on a fake clock exactly as the driver runs it (wake at the next
//! deadline, but at least every `max_sleep`), and the driver itself on tokio's paused clock.
//! Every issuance is counted and checked against what the policy implies: a leaf is renewed
//! when less than `renew_remaining_fraction` of the lifetime it was issued for remains (within
//! the one-second resolution of certificate times), so over a span `S` about
//! `S / ((1 - fraction) * leaf_validity)` leaves are issued, not one per wake-up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{driver_on, leaf, lifetimes, paused_clock};
use stackable_certs::{
    Certificate,
    rotation::{
        InMemoryStore, PolicyError, RotationPolicy, RotationState, Step, Store, StoreError,
        advance,
        state::LeafReason,
        store::{StoredData, StoredObject, WriteOutcome},
    },
};
use time::OffsetDateTime;

const SECOND: time::Duration = time::Duration::SECOND;

/// A start time with a fractional second, as a real clock has.
fn start() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap() + time::Duration::milliseconds(370)
}

fn secs(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap()
}

fn ceil_second(t: OffsetDateTime) -> OffsetDateTime {
    if t.nanosecond() == 0 {
        t
    } else {
        whole_seconds(t) + SECOND
    }
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap()
}

/// What a simulated run did.
#[derive(Debug, Default)]
struct Tally {
    wakeups: u64,
    leaves: u64,
    renewals: u64,
    ca_rotations: u64,
    /// Renewals outside their window (early or late), described.
    violations: Vec<String>,
}

/// Runs `advance` like the driver does for `span` and checks every renewal: it happens when
/// less than the renewal window of the lifetime the certificate was issued for remains, and
/// at most one second (the resolution of certificate times) after that point.
fn simulate(policy: &RotationPolicy, span: time::Duration) -> Tally {
    policy.validate().unwrap();
    let f = policy.renew_remaining_fraction;
    let window_of = |lifetime: time::Duration, absolute: Option<Duration>| -> time::Duration {
        match absolute {
            Some(w) if secs(w) < lifetime => secs(w),
            _ => lifetime * f,
        }
    };
    let t0 = start();
    let end = t0 + span;
    let mut now = t0;
    let mut state = RotationState::empty();
    let mut tally = Tally::default();
    // The served leaf and the (whole-second) time it was issued at.
    let mut served: Option<(Certificate, OffsetDateTime)> = None;
    // Creation times of the CAs, by serial.
    let mut ca_issued: Vec<(String, OffsetDateTime)> = Vec::new();
    while now < end {
        let adv = advance(&state, policy, &leaf(), now).unwrap();
        tally.wakeups += 1;
        for step in &adv.steps {
            match step {
                Step::IssuedLeaf { reason, .. } => {
                    tally.leaves += 1;
                    if *reason == LeafReason::DueForRenewal {
                        tally.renewals += 1;
                        let (old, issued_at) = served.as_ref().unwrap();
                        let not_after = old.info().not_after;
                        let window = window_of(not_after - *issued_at, policy.leaf_renew_before);
                        let remaining = not_after - now;
                        if remaining > window || remaining <= window - SECOND {
                            tally.violations.push(format!(
                                "leaf renewed at {now} with {remaining} of its {} left; the window is {window}",
                                not_after - *issued_at
                            ));
                        }
                        // Renewals happen at deadlines, which are whole seconds: the new leaf
                        // gets the full validity (certificate times are truncated to the
                        // second, so a fractional wake-up would cut it short every cycle).
                        let new = &adv.state.leaf().unwrap().certificate;
                        let ca_end = adv
                            .state
                            .active_authority()
                            .unwrap()
                            .ca
                            .certificate()
                            .info()
                            .not_after;
                        let valid_for = new.info().not_after - now;
                        if new.info().not_after < ca_end && valid_for < secs(policy.leaf_validity) {
                            tally.violations.push(format!(
                                "leaf renewed at {now} is valid for {valid_for} from now, less than the {:?} asked for",
                                policy.leaf_validity
                            ));
                        }
                    }
                }
                Step::StagedNewCa { .. } => {
                    tally.ca_rotations += 1;
                    // The CA that became due: the newest one before this step.
                    let due = state.authorities().last().and_then(|a| {
                        let cert = a.ca.certificate();
                        let serial = cert.info().serial_hex();
                        let issued_at = ca_issued.iter().find(|(s, _)| *s == serial)?.1;
                        Some((cert.info().not_after, issued_at))
                    });
                    match due {
                        Some((not_after, issued_at)) => {
                            let window = window_of(not_after - issued_at, policy.ca_renew_before);
                            let remaining = not_after - now;
                            if remaining > window || remaining <= window - SECOND {
                                tally.violations.push(format!(
                                    "CA rotation at {now} with {remaining} of its {} left; the window is {window}",
                                    not_after - issued_at
                                ));
                            }
                        }
                        None => tally.violations.push(format!(
                            "CA rotation at {now} of a CA created in the same step"
                        )),
                    }
                }
                _ => {}
            }
        }
        for a in adv.state.authorities() {
            let serial = a.ca.certificate().info().serial_hex();
            if !ca_issued.iter().any(|(s, _)| *s == serial) {
                ca_issued.push((serial, whole_seconds(now)));
            }
        }
        let leaf = &adv.state.leaf().unwrap().certificate;
        assert!(
            leaf.info().is_valid_at(now),
            "served leaf not valid at {now}"
        );
        if served.as_ref().map(|(c, _)| c) != Some(leaf) {
            served = Some((leaf.clone(), whole_seconds(now)));
        }
        state = adv.state;
        let until = adv.next_deadline - now;
        assert!(until > time::Duration::ZERO);
        // Like the driver: at the deadline, or after max_sleep rounded up to a whole second.
        now = adv
            .next_deadline
            .min(ceil_second(now + secs(policy.max_sleep)));
    }
    tally
}

/// Checks the counts against the policy: `span / ((1 - f) * leaf_validity)` renewals, less
/// at most one second per renewal period (certificate times are whole seconds), plus one leaf
/// per CA switch and the first one.
fn assert_counts(name: &str, policy: &RotationPolicy, span: time::Duration, tally: &Tally) {
    let f = policy.renew_remaining_fraction;
    let period = |validity: Duration, absolute: Option<Duration>| match absolute {
        Some(w) => secs(validity) - secs(w),
        None => secs(validity) * (1.0 - f),
    };
    let leaf_period = period(policy.leaf_validity, policy.leaf_renew_before);
    let ca_period = period(policy.ca_validity, policy.ca_renew_before);
    let most = (span / leaf_period).ceil() as u64 + tally.ca_rotations + 1;
    let least = (span / (leaf_period + SECOND)).floor() as u64;
    let ca_most = (span / ca_period).ceil() as u64;
    let ca_least = (span / (ca_period + secs(policy.propagation_delay) + SECOND)).floor() as u64;
    println!(
        "{name}: {} leaves ({} renewals) and {} CA rotations in {span} over {} wake-ups; policy implies {least}..={most} leaves, {ca_least}..={ca_most} CA rotations",
        tally.leaves, tally.renewals, tally.ca_rotations, tally.wakeups
    );
    assert!(
        tally.violations.is_empty(),
        "{name}: {} renewals outside their window, for example {:#?}",
        tally.violations.len(),
        &tally.violations[..tally.violations.len().min(3)]
    );
    assert!(
        (least..=most).contains(&tally.leaves),
        "{name}: {} leaves issued, expected {least}..={most}",
        tally.leaves
    );
    assert!(
        (ca_least..=ca_most).contains(&tally.ca_rotations),
        "{name}: {} CA rotations, expected {ca_least}..={ca_most}",
        tally.ca_rotations
    );
}

fn check(name: &str, policy: RotationPolicy, leaf_lifetimes: i32) {
    let span = secs(policy.leaf_validity) * leaf_lifetimes;
    let tally = simulate(&policy, span);
    assert_counts(name, &policy, span, &tally);
}

#[test]
fn default_lifetimes() {
    // 30-day leaves, 365-day CAs. One wake-up per hour is enough to count issuances (the
    // 60 s default only adds wake-ups that change nothing, which the other cases cover).
    check(
        "default (CA 365 d, leaf 30 d)",
        RotationPolicy {
            max_sleep: Duration::from_secs(3600),
            overlap: Duration::from_secs(3600),
            ..RotationPolicy::default()
        },
        24,
    );
}

#[test]
fn hours() {
    check(
        "hours (CA 24 h, leaf 4 h)",
        RotationPolicy {
            ca_validity: Duration::from_secs(24 * 3600),
            leaf_validity: Duration::from_secs(4 * 3600),
            ..RotationPolicy::default()
        },
        30,
    );
}

#[test]
fn minutes() {
    check(
        "minutes (CA 30 min, leaf 5 min)",
        lifetimes(30 * 60, 5 * 60, 60, 60),
        30,
    );
    check(
        "one-minute leaves (CA 10 min, leaf 1 min)",
        lifetimes(10 * 60, 60, 30, 30),
        30,
    );
}

fn seconds_policy() -> RotationPolicy {
    lifetimes(12, 4, 1, 1)
}

#[test]
fn seconds() {
    check("seconds (CA 12 s, leaf 4 s)", seconds_policy(), 100);
    check(
        "seconds, renew at half (CA 12 s, leaf 4 s)",
        RotationPolicy {
            renew_remaining_fraction: 0.5,
            ..seconds_policy()
        },
        100,
    );
    check(
        "seconds, absolute window (CA 12 s, leaf 6 s, renew 2 s before)",
        RotationPolicy {
            leaf_validity: Duration::from_secs(6),
            leaf_renew_before: Some(Duration::from_secs(2)),
            ..seconds_policy()
        },
        100,
    );
}

#[test]
fn leaf_as_long_as_the_ca() {
    // Leaves are clamped to the CA's notAfter; a clamped leaf must not be due on issue.
    check(
        "leaf = CA (CA 6 h, leaf 6 h)",
        lifetimes(6 * 3600, 6 * 3600, 600, 600),
        10,
    );
}

#[test]
fn windows_shorter_than_a_second_are_rejected() {
    // Certificate times have a resolution of one second and the driver sleeps at least a
    // second between wake-ups, so a shorter window could let the leaf expire unrenewed.
    for policy in [
        lifetimes(12, 2, 1, 1),
        RotationPolicy {
            leaf_renew_before: Some(Duration::from_millis(500)),
            ..RotationPolicy::default()
        },
    ] {
        let err = policy.validate().unwrap_err();
        assert!(
            matches!(err, PolicyError::RenewWindowTooShort { which: "leaf", .. }),
            "{err}"
        );
    }
    seconds_policy().validate().unwrap();
}

/// A store that counts wake-ups (reads).
#[derive(Clone, Default)]
struct Counting {
    inner: InMemoryStore,
    reads: Arc<Mutex<u64>>,
}

impl Store for Counting {
    fn describe(&self) -> String {
        "counting store".to_string()
    }

    async fn read(&self) -> Result<Option<StoredObject>, StoreError> {
        *self.reads.lock().unwrap() += 1;
        self.inner.read().await
    }

    async fn create(&self, data: StoredData) -> Result<WriteOutcome, StoreError> {
        self.inner.create(data).await
    }

    async fn replace(&self, data: StoredData, v: &str) -> Result<WriteOutcome, StoreError> {
        self.inner.replace(data, v).await
    }
}

/// The driver itself on tokio's paused clock with the engineer's test policy (CA 12 s,
/// leaf 4 s): about one leaf per 2/3 of a leaf lifetime, not one per wake-up.
#[tokio::test(start_paused = true)]
async fn driver_with_second_lifetimes_renews_at_two_thirds() {
    let policy = seconds_policy();
    let (_, clock) = paused_clock();
    let store = Counting::default();
    let running = driver_on(policy.clone(), store.clone(), &clock)
        .start()
        .await
        .unwrap();
    // Every leaf this replica served (each replica issues its own; the store holds none).
    let mut rx = running.subscribe();
    let served = tokio::spawn(async move {
        let mut leaves = HashSet::new();
        leaves.insert(rx.borrow_and_update().leaf().der().to_vec());
        while rx.changed().await.is_ok() {
            leaves.insert(rx.borrow_and_update().leaf().der().to_vec());
        }
        leaves
    });
    let span = Duration::from_secs(400);
    tokio::time::sleep(span).await;
    running.shutdown().await;
    let leaves = served.await.unwrap().len() as u64;
    let wakeups = *store.reads.lock().unwrap();
    // The CA rotates every 8 s (2/3 of 12 s); the leaf switches to the new CA 1 s later and
    // is renewed every 2/3 * 4 s, rounded up to whole seconds: 3 s. So per 8 s: the switch and
    // two renewals, 3 leaves (2 if the driver lagged), plus the first leaf. Renewing at
    // fractional deadlines (leaves cut short by the truncation of certificate times) gives
    // 200, one per wake-up (the 5 min backdate counted in the lifetime) 400.
    let least = 400 / 8 * 2;
    let most = 400 / 8 * 3 + 1;
    println!(
        "driver, CA 12 s / leaf 4 s: {leaves} leaves over {wakeups} wake-ups in {span:?}; expected {least}..={most}"
    );
    assert!(
        (least..=most).contains(&leaves),
        "{leaves} leaves in {span:?}, expected {least}..={most}"
    );
}
