//! Setting a condition as issuer-lib does (`conditions.Set*StatusCondition`): the new status,
//! reason and message, and a `lastTransitionTime` that moves only when the status changes.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// `status` values.
pub(crate) const TRUE: &str = "True";
pub(crate) const FALSE: &str = "False";
pub(crate) const UNKNOWN: &str = "Unknown";

/// The longest condition message metav1.Condition allows.
const MAX_MESSAGE: usize = 32 * 1024;

/// The current time, in whole seconds (as the API server stores condition times).
pub(crate) fn now() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The transition time of a condition that goes to `status`: the old one if the status does
/// not change, else `now`.
pub(crate) fn transition_time(
    old_status: Option<&str>,
    old_time: Option<&Time>,
    status: &str,
    now: &Time,
) -> Time {
    match (old_status, old_time) {
        (Some(old), Some(time)) if old == status => time.clone(),
        _ => now.clone(),
    }
}

/// The issuer condition `type_` as it becomes, given the `existing` one.
pub(crate) fn issuer_condition(
    existing: Option<&Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: truncate(message, MAX_MESSAGE),
        observed_generation: generation,
        last_transition_time: transition_time(
            existing.map(|c| c.status.as_str()),
            existing.map(|c| &c.last_transition_time),
            status,
            now,
        ),
    }
}

/// Whether writing `new` over `old` changes nothing but (at most) the transition time.
pub(crate) fn same_issuer_condition(old: Option<&Condition>, new: &Condition) -> bool {
    old.is_some_and(|old| {
        old.status == new.status
            && old.reason == new.reason
            && old.message == new.message
            && old.observed_generation == new.observed_generation
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let then = Time(Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH));
        let now = now();
        let old = issuer_condition(None, "Ready", TRUE, "Checked", "ok", Some(1), &then);
        assert_eq!(old.last_transition_time, then);
        let same = issuer_condition(Some(&old), "Ready", TRUE, "Checked", "ok", Some(2), &now);
        assert_eq!(same.last_transition_time, then);
        assert!(
            !same_issuer_condition(Some(&old), &same),
            "generation differs"
        );
        let changed = issuer_condition(Some(&old), "Ready", FALSE, "Pending", "x", Some(2), &now);
        assert_eq!(changed.last_transition_time, now);
        assert!(same_issuer_condition(Some(&changed), &changed.clone()));
    }

    #[test]
    fn truncates_on_a_character_boundary() {
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
