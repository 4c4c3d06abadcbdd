//! The rotation state machine on a fake clock: at every stage a client holding the
//! published bundle verifies the served leaf (the one just published and the next one),
//! including across a restart in the middle of a rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{SERVICE_NAME, leaf, lifetimes};
use stackable_certs::rotation::{RotationPolicy, RotationState, Stage, Step, advance};
use time::OffsetDateTime;

fn policy() -> RotationPolicy {
    lifetimes(30 * 24 * 3600, 3 * 24 * 3600, 3600, 1800)
}

fn start() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

/// Runs the state machine from `state` at `now` until `end`, jumping from deadline to
/// deadline, and checks trust at every step. Optionally serialises and reloads the state
/// whenever `restart_in` matches the stage (a restart mid-rotation). Returns the final state
/// and every step taken.
fn run(
    mut state: RotationState,
    mut now: OffsetDateTime,
    end: OffsetDateTime,
    restart_in_propagating: bool,
) -> (RotationState, Vec<(OffsetDateTime, Step, String)>) {
    let policy = policy();
    policy.validate().unwrap();
    let mut log = Vec::new();
    let mut previous_bundle = None;
    let mut restarts = 0;
    while now < end {
        let adv = advance(&state, &policy, &leaf(), now).unwrap();
        assert!(adv.next_deadline > now, "deadline must be in the future");
        for step in &adv.steps {
            log.push((now, step.clone(), adv.state.stage().to_string()));
        }
        let material = adv
            .state
            .serving_material()
            .expect("material after advance");
        // The bundle published now verifies the leaf served now.
        common::webpki_verify(material.ca_bundle(), material.leaf(), SERVICE_NAME, now)
            .unwrap_or_else(|e| panic!("at {now} ({}): {e}", adv.state.stage()));
        // A client still holding the previously published bundle verifies it too, unless
        // the change was a bootstrap. This is the "never breaks trust" property.
        if let Some(prev) = &previous_bundle {
            common::webpki_verify(prev, material.leaf(), SERVICE_NAME, now).unwrap_or_else(|e| {
                panic!(
                    "client with the previous bundle rejects the new leaf at {now} ({}): {e}",
                    adv.state.stage()
                )
            });
        }
        // Nothing is due right after advancing.
        let again = advance(&adv.state, &policy, &leaf(), now).unwrap();
        assert!(
            again.steps.is_empty(),
            "advance is not idempotent: {:?}",
            again.steps
        );

        previous_bundle = Some(material.ca_bundle().clone());
        state = adv.state;
        if restart_in_propagating
            && matches!(state.stage(), Stage::Propagating { .. })
            && restarts < 3
        {
            // Simulated restart: serialise, reload, continue.
            let json = state.to_json();
            assert!(!json.contains("redacted"));
            state = RotationState::from_json(&json).unwrap();
            restarts += 1;
        }
        now = adv.next_deadline;
    }
    if restart_in_propagating {
        assert!(restarts > 0, "never restarted mid-rotation");
    }
    (state, log)
}

#[test]
fn full_ca_rotation_never_breaks_trust() {
    let t0 = start();
    let end = t0 + time::Duration::days(75);
    let (state, log) = run(RotationState::empty(), t0, end, false);

    let staged: Vec<_> = log
        .iter()
        .filter(|(_, s, _)| matches!(s, Step::StagedNewCa { .. }))
        .collect();
    let retired: Vec<_> = log
        .iter()
        .filter(|(_, s, _)| matches!(s, Step::RetiredCa { .. }))
        .collect();
    // 30-day CAs renewed at 2/3 of their life: rotations at ~day 20, 40, 60.
    assert_eq!(staged.len(), 3, "{log:#?}");
    assert_eq!(retired.len(), 3, "{log:#?}");
    assert!(
        !log.iter()
            .any(|(_, s, _)| matches!(s, Step::PrunedExpiredCa { .. })),
        "no CA may expire while in use: {log:#?}"
    );
    // The first rotation starts when a third of the CA lifetime remains.
    let first = staged[0].0;
    let lifetime = time::Duration::days(30) + time::Duration::minutes(5);
    assert!(first >= t0 + time::Duration::days(20) - time::Duration::minutes(10));
    assert!(first <= t0 + lifetime);
    // Leaves switch only after the propagation delay, old CA leaves only after the overlap.
    let switch = log
        .iter()
        .find(|(t, s, _)| *t > first && matches!(s, Step::IssuedLeaf { .. }))
        .unwrap();
    assert!(switch.0 >= first + time::Duration::hours(1));
    assert!(retired[0].0 >= switch.0 + time::Duration::minutes(30));
    // Leaves are renewed regularly (3-day leaves over 75 days).
    let leaves = log
        .iter()
        .filter(|(_, s, _)| matches!(s, Step::IssuedLeaf { .. }))
        .count();
    assert!(leaves >= 25, "only {leaves} leaves issued");
    assert_eq!(state.authorities().len(), 1);
}

#[test]
fn restart_mid_rotation_resumes() {
    let t0 = start();
    let (state, log) = run(
        RotationState::empty(),
        t0,
        t0 + time::Duration::days(45),
        true,
    );
    // The rotation completed despite restarts in the propagating stage, and the reloaded
    // state did not start a second rotation.
    let staged = log
        .iter()
        .filter(|(_, s, _)| matches!(s, Step::StagedNewCa { .. }))
        .count();
    let retired = log
        .iter()
        .filter(|(_, s, _)| matches!(s, Step::RetiredCa { .. }))
        .count();
    assert_eq!(staged, 2, "{log:#?}");
    assert_eq!(retired, 2, "{log:#?}");
    assert_eq!(*state.stage(), Stage::Stable);
}

#[test]
fn stages_in_order_with_bundle_sizes() {
    let policy = policy();
    let t0 = start();
    let s0 = advance(&RotationState::empty(), &policy, &leaf(), t0).unwrap();
    assert_eq!(*s0.state.stage(), Stage::Stable);
    assert_eq!(s0.state.authorities().len(), 1);
    let ca1 = s0.state.authorities()[0].ca.certificate().clone();

    // Jump to the CA renewal point.
    let t1 = t0 + time::Duration::days(21);
    let s1 = advance(&s0.state, &policy, &leaf(), t1).unwrap();
    let Stage::Propagating { issue_after } = *s1.state.stage() else {
        panic!("expected propagating, got {}", s1.state.stage());
    };
    assert_eq!(issue_after, t1 + time::Duration::hours(1));
    assert_eq!(s1.state.trust_bundle().unwrap().len(), 2);
    let leaf1 = &s1.state.leaf().unwrap().certificate;
    assert!(
        leaf1.is_issued_by(&ca1),
        "leaf must stay on the old CA while propagating"
    );

    // Before the delay: nothing changes.
    let early = advance(
        &s1.state,
        &policy,
        &leaf(),
        t1 + time::Duration::minutes(59),
    )
    .unwrap();
    assert!(early.steps.is_empty(), "{:?}", early.steps);

    // After the delay: leaf from the new CA, both CAs still trusted.
    let t2 = issue_after;
    let s2 = advance(&s1.state, &policy, &leaf(), t2).unwrap();
    assert!(matches!(s2.state.stage(), Stage::Overlap { .. }));
    let ca2 = s2.state.authorities()[1].ca.certificate().clone();
    assert!(s2.state.leaf().unwrap().certificate.is_issued_by(&ca2));
    assert_eq!(s2.state.trust_bundle().unwrap().len(), 2);

    // After the overlap: old CA gone.
    let s3 = advance(
        &s2.state,
        &policy,
        &leaf(),
        t2 + time::Duration::minutes(30),
    )
    .unwrap();
    assert_eq!(*s3.state.stage(), Stage::Stable);
    assert_eq!(s3.state.trust_bundle().unwrap().certificates(), [ca2]);
}

#[test]
fn leaf_reissued_when_wanted_sans_change() {
    let policy = policy();
    let t0 = start();
    let s0 = advance(&RotationState::empty(), &policy, &leaf(), t0).unwrap();
    let more = leaf().dns_name("extra.example.com");
    let s1 = advance(&s0.state, &policy, &more, t0 + time::Duration::minutes(1)).unwrap();
    assert!(
        matches!(s1.steps.as_slice(), [Step::IssuedLeaf { .. }]),
        "{:?}",
        s1.steps
    );
    assert!(
        s1.state
            .leaf()
            .unwrap()
            .certificate
            .info()
            .dns_names
            .contains(&"extra.example.com".to_string())
    );
    let client = leaf().client_auth(true);
    let s2 = advance(&s1.state, &policy, &client, t0 + time::Duration::minutes(2)).unwrap();
    assert_eq!(s2.steps.len(), 1);
    assert!(s2.state.leaf().unwrap().certificate.info().client_auth);
}

#[test]
fn expired_everything_recovers() {
    let policy = policy();
    let t0 = start();
    let s0 = advance(&RotationState::empty(), &policy, &leaf(), t0).unwrap();
    // The machine was off for a year.
    let later = t0 + time::Duration::days(365);
    let s1 = advance(&s0.state, &policy, &leaf(), later).unwrap();
    assert!(matches!(s1.steps[0], Step::PrunedExpiredCa { .. }));
    assert!(s1.steps.iter().any(|s| matches!(s, Step::CreatedCa { .. })));
    let m = s1.state.serving_material().unwrap();
    common::webpki_verify(m.ca_bundle(), m.leaf(), SERVICE_NAME, later).unwrap();
}
