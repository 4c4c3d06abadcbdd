//! Two replicas sharing the stackable-certs Secret store serve leaves from one CA: a client
//! that trusts the bundle published by one replica can talk to the other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{client_config, get, start_local, stop};
use stackable_certs::{
    LeafOptions,
    rotation::{RotationDriver, RotationPolicy, kube::SecretStore},
};
use stackable_testenv::TestEnv;
use stackable_webhook::{CertSource, RunningServer};

async fn replica(env: &TestEnv, namespace: &str) -> RunningServer {
    let leaf = LeafOptions::new()
        .dns_name("localhost")
        .ip_address("127.0.0.1".parse().unwrap());
    let store = SecretStore::new(env.client().unwrap(), namespace, "webhook-serving-ca");
    let rotation = RotationDriver::with_store(RotationPolicy::default(), leaf, store)
        .start()
        .await
        .unwrap();
    start_local(CertSource::Rotation(rotation)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_ca_from_the_secret() {
    let env = TestEnv::start().await.unwrap();
    let namespace = env.create_namespace("webhook-secret").await.unwrap();
    let first = replica(&env, &namespace).await;
    let second = replica(&env, &namespace).await;
    let bundle = first.ca_bundle_pem().unwrap();
    assert_eq!(Some(bundle.clone()), second.ca_bundle_pem());

    let client = client_config(&bundle);
    let a = get(&client, first.local_addr(), "/readyz").await.unwrap();
    let b = get(&client, second.local_addr(), "/readyz").await.unwrap();
    assert_eq!((a.status, b.status), (200, 200));
    println!("replica leaves: {:02x?} / {:02x?}", a.serial, b.serial);
    for server in [first, second] {
        stop(server).await;
    }
}
