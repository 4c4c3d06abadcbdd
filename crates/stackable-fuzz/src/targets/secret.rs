//! stackable-certs' shared store: the data of the Secret replicas share (whatever a user or an
//! earlier release left there), classified, and the rotation state JSON inside it, read and
//! then advanced by the rotation state machine.

use std::{collections::BTreeMap, sync::OnceLock, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;
use stackable_certs::{
    LeafOptions,
    rotation::{
        RotationPolicy, RotationState, advance,
        store::{CA_CRT_KEY, CA_KEY_KEY, Classified, STATE_KEY, StoredData, classify, encode},
    },
};
use time::OffsetDateTime;

use super::text;
use crate::{Target, seeds::material, variant};

const STORE_WORDS: &[&str] = &[
    "rotation-state.json",
    "ca.crt",
    "ca.key",
    "tls.crt",
    "tls.key",
    "kubernetes.io/tls",
    "version",
    "authorities",
    "retained",
    "stage",
    "addedAt",
    "Stable",
    "Staged",
    "Switched",
    "2026-01-01T00:00:00Z",
    "+999999-01-01T00:00:00Z",
    "-----BEGIN CERTIFICATE-----\n",
    "-----BEGIN PRIVATE KEY-----\n",
];

/// The data of the shared Secret.
pub const SECRET_DATA: Target = Target {
    name: "secret_data",
    about: "stackable-certs: rotation::store::classify of a Secret's data (JSON of a Secret as \
            the API server serves it); reasons never quote the material, and rotation state \
            that classifies as ours encodes and classifies back to the same CAs",
    run: secret_data,
    seeds: secret_seeds,
    dictionary: STORE_WORDS,
    max_len: 128 * 1024,
    slow: Duration::from_millis(500),
};

/// The rotation state JSON.
pub const ROTATION_STATE: Target = Target {
    name: "rotation_state",
    about: "stackable-certs: RotationState::from_json (the rotation-state.json key), its JSON \
            read back the same, and rotation::advance on it (timestamps from the input meet the \
            policy's durations)",
    run: rotation_state,
    seeds: state_seeds,
    dictionary: STORE_WORDS,
    max_len: 64 * 1024,
    slow: Duration::from_millis(500),
};

fn now() -> OffsetDateTime {
    // A fixed clock: an input's outcome does not depend on when it runs.
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// See [`SECRET_DATA`].
pub fn secret_data(input: &[u8]) -> String {
    let Ok(secret) = serde_json::from_slice::<Secret>(input) else {
        return "not-a-secret".to_owned();
    };
    let data: StoredData = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, bytes)| (key, bytes.0))
        .collect();
    let classified = classify(&data, now());
    let reason = match &classified {
        Classified::Incomplete { reason }
        | Classified::Corrupt { reason }
        | Classified::Garbage { reason } => Some(reason.as_str()),
        _ => None,
    };
    if let Some(reason) = reason {
        assert!(
            !reason.contains("-----BEGIN"),
            "a reason quotes PEM: {reason}"
        );
        for bytes in data.values() {
            let value = String::from_utf8_lossy(bytes);
            for line in value.lines().map(str::trim) {
                if line.len() >= 24 && !line.starts_with("-----") && !line.contains(' ') {
                    assert!(
                        !reason.contains(line),
                        "a reason quotes the material: {reason}"
                    );
                }
            }
        }
    }
    if let Classified::Managed(state) = &classified {
        match classify(&encode(state), now()) {
            Classified::Managed(again) => assert!(
                again.same_cas_as(state),
                "stored state does not read back the same"
            ),
            other => panic!("stored state reads back as {}", variant(&other)),
        }
    }
    variant(&classified)
}

/// See [`ROTATION_STATE`].
pub fn rotation_state(input: &[u8]) -> String {
    let json = match text(input) {
        Ok(json) => json,
        Err(label) => return label,
    };
    let state = match RotationState::from_json(json) {
        Ok(state) => state,
        Err(error) => return variant(&error),
    };
    let again = RotationState::from_json(&state.to_json());
    assert!(
        again.as_ref().is_ok_and(|again| again.same_as(&state)),
        "the state's JSON does not read back the same: {:?}",
        again.err()
    );
    let _ = (
        state.trust_bundle(),
        state.serving_material(),
        state.active_authority(),
    );
    let wanted = LeafOptions::for_service("fuzz", "default");
    match advance(&state, &RotationPolicy::default(), &wanted, now()) {
        Ok(advanced) => {
            assert!(
                advanced.state.serving_material().is_some(),
                "an advanced state has nothing to serve"
            );
            format!("advanced:{}", advanced.steps.len().min(4))
        }
        Err(error) => format!("advance:{}", variant(&error)),
    }
}

/// States along a rotation: fresh, renewed, staged, switched (advanced at later times).
fn states() -> &'static Vec<RotationState> {
    static STATES: OnceLock<Vec<RotationState>> = OnceLock::new();
    STATES.get_or_init(|| {
        let policy = RotationPolicy::default();
        let wanted = LeafOptions::for_service("fuzz", "default");
        let mut state = RotationState::empty();
        let mut out = Vec::new();
        let mut at = now() - time::Duration::days(800);
        for _ in 0..12 {
            if let Ok(advanced) = advance(&state, &policy, &wanted, at) {
                state = advanced.state;
                out.push(state.clone());
                at = advanced.next_deadline.max(at + time::Duration::seconds(1));
            }
        }
        out
    })
}

fn secret(data: BTreeMap<&str, &[u8]>, type_: &str) -> Vec<u8> {
    let data: BTreeMap<&str, String> = data
        .into_iter()
        .map(|(key, bytes)| (key, STANDARD.encode(bytes)))
        .collect();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": type_,
        "metadata": {"name": "webhook-ca", "namespace": "default", "resourceVersion": "7"},
        "data": data
    });
    serde_json::to_vec(&secret).unwrap_or_default()
}

fn secret_seeds() -> Vec<Vec<u8>> {
    let m = material();
    let mut seeds: Vec<Vec<u8>> = states()
        .iter()
        .step_by(3)
        .map(|state| {
            let data = encode(state);
            let data = data
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            secret(data, "Opaque")
        })
        .collect();
    seeds.push(secret(
        BTreeMap::from([
            ("tls.crt", m.leaf_chain_pem.as_bytes()),
            ("tls.key", m.leaf_key_pem.as_bytes()),
            (CA_CRT_KEY, m.ca_pem.as_bytes()),
        ]),
        "kubernetes.io/tls",
    ));
    seeds.push(secret(
        BTreeMap::from([
            (CA_CRT_KEY, m.ca_pem.as_bytes()),
            (CA_KEY_KEY, m.ca_key_pem.as_bytes()),
        ]),
        "Opaque",
    ));
    seeds.push(secret(
        BTreeMap::from([(STATE_KEY, &b"{\"version\":99}"[..])]),
        "Opaque",
    ));
    seeds
}

fn state_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = states()
        .iter()
        .map(|state| state.to_json().into_bytes())
        .collect();
    seeds.dedup();
    seeds.push(
        serde_json::to_vec(
            &json!({"version": 1, "authorities": [], "retained": [], "stage": "Stable"}),
        )
        .unwrap_or_default(),
    );
    seeds.retain(|seed| !seed.is_empty());
    seeds
}
