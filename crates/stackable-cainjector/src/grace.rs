//! Renewals without an outage: a CA that leaves the source stays in the bundle for a while.
//!
//! When cert-manager renews a webhook's certificate (a selfSigned Issuer re-issues the leaf,
//! which is also its `ca.crt`; a CA Issuer rotates its CA), the webhook's Pods keep serving the
//! old certificate until the kubelet refreshes their Secret volume (up to a minute or two) and
//! the server reloads it. Replacing the `caBundle` at once would fail every call in between.
//! So the injected bundle is the source's certificates plus those the target already trusted
//! that are still valid, each for a grace period (default 1 h) after it left the source, never
//! past its own expiry, and at most [`MAX_RETAINED`] of them.
//!
//! When each certificate left the source is recorded on the target itself, in the annotation
//! [`RETIRED_ANNOTATION`] (`{"<sha256 fingerprint>": "<RFC 3339 time>"}`, written in the same
//! server-side apply as the bundle), so an injector restarted mid-grace keeps the deadline and
//! several injector replicas compute byte-identical bundles.

use std::{collections::BTreeMap, time::Duration};

use stackable_certs::{CaBundle, Certificate};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// The annotation recording when each retained certificate left the source.
pub const RETIRED_ANNOTATION: &str = "cainjector.stackable.tech/retired-cas";

/// At most this many certificates are kept after they left the source (the newest ones), so a
/// source renewed very often cannot grow the bundle without bound within a grace period.
pub const MAX_RETAINED: usize = 8;

/// The bundle to inject and what to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The source's certificates (in its order), then the retained ones, newest first.
    pub bundle: CaBundle,
    /// The value of [`RETIRED_ANNOTATION`], `None` when nothing is retained.
    pub annotation: Option<String>,
    /// When a retained certificate leaves the bundle next (grace over or expired).
    pub next_change: Option<OffsetDateTime>,
}

/// Parses the annotation; anything unreadable counts as no record (the certificates then get
/// a fresh grace period, which errs on the side of trust).
pub fn parse_retired(annotation: Option<&str>) -> BTreeMap<String, OffsetDateTime> {
    annotation
        .and_then(|text| serde_json::from_str::<BTreeMap<String, String>>(text).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(fingerprint, since)| {
            OffsetDateTime::parse(&since, &Rfc3339)
                .ok()
                .map(|since| (fingerprint, since))
        })
        .collect()
}

/// Merges the source's bundle with what the target carries (`current`), keeping each
/// certificate that left the source for `grace` after it left (as `retired` records, else from
/// `now`), never past its expiry.
pub fn merge(
    source: &CaBundle,
    current: &[Certificate],
    retired: &BTreeMap<String, OffsetDateTime>,
    grace: Duration,
    now: OffsetDateTime,
) -> Merged {
    let grace = time::Duration::try_from(grace).unwrap_or(time::Duration::MAX);
    let mut kept: Vec<(Certificate, OffsetDateTime)> = Vec::new();
    for certificate in current {
        if source.contains(certificate)
            || kept.iter().any(|(c, _)| c == certificate)
            || certificate.info().not_after <= now
        {
            continue;
        }
        let fingerprint = certificate.info().fingerprint_hex();
        let since = retired.get(&fingerprint).copied().unwrap_or(now).min(now);
        if since.saturating_add(grace) > now {
            kept.push((certificate.clone(), since));
        }
    }
    // Newest first; ties broken by fingerprint so that every replica orders alike.
    kept.sort_by(|(a, _), (b, _)| {
        b.info()
            .not_before
            .cmp(&a.info().not_before)
            .then_with(|| a.info().fingerprint_hex().cmp(&b.info().fingerprint_hex()))
    });
    kept.truncate(MAX_RETAINED);

    let mut bundle = source.clone();
    for (certificate, _) in &kept {
        bundle.push_any(certificate.clone());
    }
    let record: BTreeMap<String, String> = kept
        .iter()
        .filter_map(|(c, since)| Some((c.info().fingerprint_hex(), since.format(&Rfc3339).ok()?)))
        .collect();
    let next_change = kept
        .iter()
        .map(|(c, since)| since.saturating_add(grace).min(c.info().not_after))
        .min();
    Merged {
        bundle,
        annotation: (!record.is_empty())
            .then(|| serde_json::to_string(&record).unwrap_or_default()),
        next_change,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use stackable_certs::ca::{CaOptions, CertificateAuthority};

    use super::*;

    fn ca(name: &str) -> Certificate {
        CertificateAuthority::new(&CaOptions::new(name))
            .unwrap()
            .certificate()
            .clone()
    }

    fn bundle(certs: &[&Certificate]) -> CaBundle {
        CaBundle::from_certificates(certs.iter().map(|c| (*c).clone())).unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_certificate_that_left_the_source_stays_for_the_grace_period() {
        let (old, new) = (ca("old"), ca("new"));
        let t0 = OffsetDateTime::now_utc();
        // Renewed: the target still trusts `old`; it is kept, recorded from now.
        let merged = merge(
            &bundle(&[&new]),
            std::slice::from_ref(&old),
            &BTreeMap::new(),
            HOUR,
            t0,
        );
        assert_eq!(merged.bundle.certificates(), [new.clone(), old.clone()]);
        let record = parse_retired(merged.annotation.as_deref());
        assert_eq!(record.len(), 1);
        let next = merged.next_change.unwrap();
        assert!(
            next > t0 + time::Duration::minutes(59) && next <= t0 + HOUR,
            "{next}"
        );
        // Later, with the record: the same bundle (a restarted or second injector agrees).
        let later = t0 + time::Duration::minutes(30);
        let again = merge(
            &bundle(&[&new]),
            merged.bundle.certificates(),
            &record,
            HOUR,
            later,
        );
        assert_eq!(again.bundle, merged.bundle);
        assert_eq!(again.annotation, merged.annotation);
        // After the grace period: gone, and so is the record.
        let after = t0 + time::Duration::minutes(61);
        let done = merge(
            &bundle(&[&new]),
            merged.bundle.certificates(),
            &record,
            HOUR,
            after,
        );
        assert_eq!(done.bundle.certificates(), std::slice::from_ref(&new));
        assert_eq!(done.annotation, None);
        assert_eq!(done.next_change, None);
    }

    #[test]
    fn no_grace_replaces_at_once_and_back_in_the_source_is_not_retired() {
        let (old, new) = (ca("old"), ca("new"));
        let now = OffsetDateTime::now_utc();
        let merged = merge(
            &bundle(&[&new]),
            std::slice::from_ref(&old),
            &BTreeMap::new(),
            Duration::ZERO,
            now,
        );
        assert_eq!(merged.bundle.certificates(), std::slice::from_ref(&new));
        // A certificate that is back in the source is simply in the source.
        let merged = merge(
            &bundle(&[&old, &new]),
            std::slice::from_ref(&old),
            &BTreeMap::new(),
            HOUR,
            now,
        );
        assert_eq!(merged.annotation, None);
        assert_eq!(merged.bundle.len(), 2);
    }

    #[test]
    fn renewals_in_a_row_stay_bounded() {
        let mut current: Vec<Certificate> = Vec::new();
        let mut record = BTreeMap::new();
        let t0 = OffsetDateTime::now_utc();
        let grace = Duration::from_secs(3);
        let mut largest = 0;
        for i in 0..10 {
            let now = t0 + time::Duration::seconds(i);
            let fresh = ca(&format!("ca-{i}"));
            let merged = merge(&bundle(&[&fresh]), &current, &record, grace, now);
            largest = largest.max(merged.bundle.len());
            current = merged.bundle.certificates().to_vec();
            record = parse_retired(merged.annotation.as_deref());
        }
        // One renewal per second, 3 s of grace: the new one and at most 3 retained.
        assert!(largest <= 4, "{largest}");
        // A long grace period is capped by MAX_RETAINED.
        let mut current: Vec<Certificate> = Vec::new();
        let mut record = BTreeMap::new();
        for i in 0..(MAX_RETAINED as i64 + 5) {
            let now = t0 + time::Duration::seconds(i);
            let fresh = ca(&format!("ca-{i}"));
            let merged = merge(&bundle(&[&fresh]), &current, &record, HOUR, now);
            assert!(merged.bundle.len() <= MAX_RETAINED + 1);
            current = merged.bundle.certificates().to_vec();
            record = parse_retired(merged.annotation.as_deref());
        }
    }

    #[test]
    fn expired_and_unreadable_records() {
        assert!(parse_retired(Some("garbage")).is_empty());
        assert!(parse_retired(None).is_empty());
        let fresh = ca("fresh");
        let old = ca("old");
        // Far in the future the old one has expired: not kept whatever the grace.
        let far = OffsetDateTime::now_utc() + time::Duration::days(366 * 200);
        let merged = merge(&bundle(&[&fresh]), &[old], &BTreeMap::new(), HOUR, far);
        assert_eq!(merged.bundle.len(), 1);
    }
}
