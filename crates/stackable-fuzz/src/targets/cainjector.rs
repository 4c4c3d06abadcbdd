//! stackable-cainjector: the annotations users put on injection targets
//! (`cert-manager.io/inject-ca-from`, `inject-ca-from-secret`, `inject-apiserver-ca`,
//! OpenShift's `inject-cabundle`) and the injector's own record of retired CAs
//! (`cainjector.stackable.tech/retired-cas`), read and merged into a bundle.

use std::{collections::BTreeMap, sync::OnceLock, time::Duration};

use serde_json::json;
use stackable_cainject::TargetKind;
use stackable_cainjector::{
    annotations::{allows_direct_injection, belongs_to_certificate, parse_source},
    grace::{MAX_RETAINED, RETIRED_ANNOTATION, merge, parse_retired},
};
use stackable_certs::{CaBundle, Certificate};
use time::OffsetDateTime;

use crate::{Target, seeds::material, variant};

/// See the module docs.
pub const INJECTION_ANNOTATIONS: Target = Target {
    name: "injection_annotations",
    about: "stackable-cainjector: annotations::parse_source for every target kind, and \
            grace::parse_retired + grace::merge of the retired-CAs record (the input is the \
            annotations as a JSON object); a merged record must read back",
    run: injection_annotations,
    seeds,
    dictionary: &[
        "cert-manager.io/inject-ca-from",
        "cert-manager.io/inject-ca-from-secret",
        "cert-manager.io/inject-apiserver-ca",
        "cert-manager.io/allow-direct-injection",
        "cert-manager.io/certificate-name",
        "service.beta.openshift.io/inject-cabundle",
        "cainjector.stackable.tech/retired-cas",
        "true",
        "false",
        "default/webhook-cert",
        "9999-12-31T23:59:59Z",
        "-9999-01-01T00:00:00Z",
        "2026-01-01T00:00:00.999999999+23:59",
    ],
    max_len: 32 * 1024,
    slow: Duration::from_millis(200),
};

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The source's bundle and what a target carries: the seed CA, and OpenSSL-made CAs.
fn bundles() -> &'static (CaBundle, Vec<Certificate>) {
    static BUNDLES: OnceLock<(CaBundle, Vec<Certificate>)> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        let m = material();
        let source = CaBundle::from_certificates([m.ca.certificate().clone()])
            .unwrap_or_else(|error| panic!("the seed CA makes no bundle: {error}"));
        let current = m
            .openssl_certificates
            .iter()
            .filter_map(|pem| Certificate::from_pem(pem).ok())
            .collect();
        (source, current)
    })
}

/// See the module docs.
pub fn injection_annotations(input: &[u8]) -> String {
    let Ok(annotations) = serde_json::from_slice::<BTreeMap<String, String>>(input) else {
        return "not-annotations".to_owned();
    };
    let mut label = String::new();
    for kind in TargetKind::ALL {
        for own_namespace in [None, Some("default")] {
            let outcome = match parse_source(kind, own_namespace, &annotations) {
                Ok(None) => "none".to_owned(),
                Ok(Some(source)) => variant(&source),
                Err(error) => variant(&error),
            };
            if label.is_empty() {
                label = outcome;
            }
        }
    }
    let _ = allows_direct_injection(&annotations);
    let _ = belongs_to_certificate(&annotations, "webhook-cert");
    let retired = parse_retired(annotations.get(RETIRED_ANNOTATION).map(String::as_str));
    let (source, current) = bundles();
    let merged = merge(source, current, &retired, Duration::from_secs(3600), now());
    for certificate in source.certificates() {
        assert!(
            merged.bundle.contains(certificate),
            "the merged bundle lost a source CA"
        );
    }
    assert!(merged.bundle.len() <= source.len() + MAX_RETAINED);
    if let Some(record) = &merged.annotation {
        let again = parse_retired(Some(record));
        assert_eq!(
            again.len(),
            merged.bundle.len() - source.len(),
            "the retired-CAs record does not read back: {record}"
        );
    }
    format!("{label}/retired:{}", retired.len().min(3))
}

fn seeds() -> Vec<Vec<u8>> {
    let fingerprint = bundles()
        .1
        .first()
        .map(|c| c.info().fingerprint_hex())
        .unwrap_or_default();
    let retired = json!({ fingerprint: "2026-01-01T00:00:00Z" }).to_string();
    [
        json!({"cert-manager.io/inject-ca-from": "default/webhook-cert"}),
        json!({"cert-manager.io/inject-ca-from-secret": "webhook-ca", RETIRED_ANNOTATION: retired}),
        json!({"cert-manager.io/inject-apiserver-ca": "true", "other": "x"}),
        json!({"service.beta.openshift.io/inject-cabundle": "true",
            "cert-manager.io/allow-direct-injection": "true",
            "cert-manager.io/certificate-name": "webhook-cert"}),
        json!({"cert-manager.io/inject-ca-from": "a/b", "cert-manager.io/inject-apiserver-ca": "true"}),
    ]
    .iter()
    .map(|value| serde_json::to_vec(value).unwrap_or_default())
    .collect()
}
