//! The Secret store against a real API server (stackable-testenv): replicas starting at the
//! same time converge on one CA, garbage is repaired, user material is left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{driver, leaf, start_replicas};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{Api, api::PostParams};
use stackable_certs::{
    ServingMaterial,
    ca::CaOptions,
    rotation::{
        kube::SecretStore,
        store::{CA_CRT_KEY, CA_KEY_KEY, STATE_KEY, TLS_CRT_KEY, TLS_KEY_KEY},
    },
};
use stackable_testenv::TestEnv;

fn text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[tokio::test]
async fn secret_store_against_a_real_api_server() {
    let env = TestEnv::builder().start().await.unwrap();
    let ns = env.create_namespace("certs-e2e").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(env.client().unwrap(), &ns);

    // 1. Several replicas start at once, each with its own client: one CA wins.
    let stores = (0..3).map(|_| SecretStore::new(env.client().unwrap(), ns.clone(), "webhook-tls"));
    let bundles = start_replicas(stores.collect::<Vec<_>>()).await;
    let secret = secrets.get("webhook-tls").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    for key in [TLS_CRT_KEY, TLS_KEY_KEY, CA_CRT_KEY, CA_KEY_KEY, STATE_KEY] {
        assert!(
            secret.data.as_ref().unwrap().contains_key(key),
            "missing {key}"
        );
    }
    let stored_ca = text(&secret, CA_CRT_KEY);
    assert!(
        bundles.iter().all(|b| *b == stored_ca),
        "replicas ended with different CAs"
    );

    // A later start adopts the stored material without writing.
    let version = secret.metadata.resource_version.clone();
    let store = SecretStore::new(env.client().unwrap(), ns.clone(), "webhook-tls");
    let running = driver(store).start().await.unwrap();
    assert_eq!(running.current().ca_bundle_pem(), stored_ca);
    running.shutdown().await;
    let again = secrets.get("webhook-tls").await.unwrap();
    assert_eq!(again.metadata.resource_version, version);

    // 2. A Secret someone filled with garbage is repaired (type kept).
    let garbage = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("garbage".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "tls.crt".to_string(),
            ByteString(b"nonsense".to_vec()),
        )])),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &garbage)
        .await
        .unwrap();
    let store = SecretStore::new(env.client().unwrap(), ns.clone(), "garbage");
    let running = driver(store).start().await.unwrap();
    let repaired = secrets.get("garbage").await.unwrap();
    assert_eq!(
        text(&repaired, CA_CRT_KEY),
        running.current().ca_bundle_pem()
    );
    running.shutdown().await;

    // 3. Material a user provided is served and never replaced.
    let user = ServingMaterial::generate(&CaOptions::new("user CA"), &leaf()).unwrap();
    let provided = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("user".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                TLS_CRT_KEY.to_string(),
                ByteString(user.chain_pem().into_bytes()),
            ),
            (
                TLS_KEY_KEY.to_string(),
                ByteString(user.key().to_pem().into_bytes()),
            ),
            (
                CA_CRT_KEY.to_string(),
                ByteString(user.ca_bundle_pem().into_bytes()),
            ),
        ])),
        ..Default::default()
    };
    let created = secrets
        .create(&PostParams::default(), &provided)
        .await
        .unwrap();
    let store = SecretStore::new(env.client().unwrap(), ns.clone(), "user");
    let running = driver(store).start().await.unwrap();
    assert_eq!(*running.current(), user);
    running.shutdown().await;
    let after = secrets.get("user").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        created.metadata.resource_version
    );
}
