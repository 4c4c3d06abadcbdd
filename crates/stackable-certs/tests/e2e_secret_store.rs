//! The Secret store against a real API server (stackable-testenv): replicas starting at the
//! same time converge on one CA, a deleted or damaged Secret is restored with the same CA at
//! once (the Secret is watched), user material is left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, time::Duration};

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
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(
        keys,
        [CA_CRT_KEY, CA_KEY_KEY, STATE_KEY],
        "each replica's leaf stays its own"
    );
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

    // 2. A damaged state is repaired; keys of others are kept.
    let garbage = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("garbage".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            (STATE_KEY.to_string(), ByteString(b"nonsense".to_vec())),
            ("someone-elses".to_string(), ByteString(b"kept".to_vec())),
        ])),
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
    assert_eq!(text(&repaired, "someone-elses"), "kept");
    let bundle = running.current().ca_bundle_pem();

    // 3. The Secret deleted, then damaged, while the driver runs: it is watched, so the driver
    //    writes back the state it holds at once (not after max_sleep), with the same CA.
    for damage in ["delete", "empty"] {
        match damage {
            "delete" => {
                secrets
                    .delete("garbage", &Default::default())
                    .await
                    .unwrap();
            }
            _ => {
                let mut secret = secrets.get("garbage").await.unwrap();
                secret.data = Some(BTreeMap::new());
                secrets
                    .replace("garbage", &PostParams::default(), &secret)
                    .await
                    .unwrap();
            }
        }
        let started = std::time::Instant::now();
        let restored = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(Some(secret)) = secrets.get_opt("garbage").await
                    && secret
                        .data
                        .as_ref()
                        .is_some_and(|d| d.contains_key(CA_CRT_KEY))
                {
                    break secret;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{damage}: not restored within 10 s"));
        println!("{damage}: restored after {:?}", started.elapsed());
        assert_eq!(
            text(&restored, CA_CRT_KEY),
            bundle,
            "{damage}: the CA changed"
        );
        assert_eq!(running.current().ca_bundle_pem(), bundle);
    }
    running.shutdown().await;

    // 4. Certificate material a user put there that cannot be used is never overwritten.
    let broken = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("broken".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            TLS_CRT_KEY.to_string(),
            ByteString(b"nonsense".to_vec()),
        )])),
        ..Default::default()
    };
    let created = secrets
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();
    let store = SecretStore::new(env.client().unwrap(), ns.clone(), "broken");
    let error = driver(store).start().await.unwrap_err();
    assert!(error.to_string().contains("left untouched"), "{error}");
    let after = secrets.get("broken").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        created.metadata.resource_version
    );

    // 5. Material a user provided is served and never replaced.
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
