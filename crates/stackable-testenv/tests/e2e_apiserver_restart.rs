//! E2E tier: kube-apiserver stopped and started again under clients built before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, api::PostParams};
use stackable_testenv::{Error, TestEnv};

fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    cm.data = Some([("key".to_owned(), name.to_owned())].into());
    cm
}

#[tokio::test]
async fn a_client_built_before_works_after_the_apiserver_returns_and_objects_survive() {
    let mut env = TestEnv::start().await.unwrap();
    let ns = env.create_namespace("restart").await.unwrap();
    let client = env.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(&PostParams::default(), &config_map("before"))
        .await
        .unwrap();
    let [first_pid, etcd_pid] = env.pids();

    env.stop_apiserver();
    assert!(!env.apiserver_running());
    let error = tokio::time::timeout(Duration::from_secs(30), cms.get("before"))
        .await
        .expect("a request to a stopped API server hung")
        .expect_err("a stopped API server answered");
    println!("while stopped: {error}");
    // Stopping twice is harmless; starting while it runs is an error.
    env.stop_apiserver();

    let started = Instant::now();
    env.start_apiserver().await.unwrap();
    println!("kube-apiserver ready again after {:?}", started.elapsed());
    assert!(env.apiserver_running());
    let [second_pid, etcd_pid_after] = env.pids();
    assert_ne!(first_pid, second_pid);
    assert_eq!(etcd_pid, etcd_pid_after);
    assert!(matches!(
        env.start_apiserver().await,
        Err(Error::ApiserverRunning { .. })
    ));

    // The same client, its pooled connections gone, dials again.
    let before = cms.get("before").await.unwrap();
    assert_eq!(before.data.unwrap()["key"], "before");
    cms.create(&PostParams::default(), &config_map("after"))
        .await
        .unwrap();
    assert_eq!(cms.list(&Default::default()).await.unwrap().items.len(), 2);

    // The log holds both runs.
    let log = std::fs::read_to_string(env.work_dir().join("kube-apiserver.log")).unwrap();
    assert!(
        log.contains("kube-apiserver restarted"),
        "no restart marker"
    );

    // And once more, with the convenience call.
    env.restart_apiserver_after(Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(
        cms.get("after").await.unwrap().data.unwrap()["key"],
        "after"
    );
}
