//! E2E tier: a real kube-apiserver + etcd, started by the harness.
//!
//! The binaries come from `TEST_ASSET_*` / `KUBEBUILDER_ASSETS` (set by `cargo xtask test`)
//! or the build cache; a missing build is built first (minutes, once).

// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command, time::Duration};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{
        ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams, WatchEvent,
        WatchParams,
    },
};
use stackable_testenv::{KUBERNETES_VERSION, TestEnv};

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.testenv.stackable.tech" },
        "spec": {
            "group": "testenv.stackable.tech",
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "properties": { "size": { "type": "integer" } },
                    }},
                }},
            }],
        },
    }))
    .unwrap()
}

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("testenv.stackable.tech", "v1", "Widget"),
        "widgets",
    )
}

fn widget(name: &str, size: i64) -> DynamicObject {
    DynamicObject::new(name, &widget_resource())
        .data(serde_json::json!({ "spec": { "size": size } }))
}

/// A process is gone when /proc has no entry for it or it is a zombie.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn version_reports_the_built_release() {
    let env = TestEnv::start().await.unwrap();
    let version = env.client().unwrap().apiserver_version().await.unwrap();
    assert_eq!(version.git_version, KUBERNETES_VERSION);
    assert_eq!(version.major, "1");

    // kubectl from the same build talks to it with the written kubeconfig.
    if let Some(kubectl) = &env.binaries().kubectl {
        let output = Command::new(kubectl)
            .args(["version", "-o", "json"])
            .env("KUBECONFIG", env.kubeconfig_path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["serverVersion"]["gitVersion"], KUBERNETES_VERSION);
    }
}

#[tokio::test]
async fn crd_round_trip_create_get_list_watch() {
    let env = TestEnv::builder()
        .crds([widget_crd()])
        .start()
        .await
        .unwrap();
    let namespace = env.create_namespace("crd-round-trip").await.unwrap();
    assert!(namespace.starts_with("crd-round-trip-"), "{namespace}");
    let api: Api<DynamicObject> =
        Api::namespaced_with(env.client().unwrap(), &namespace, &widget_resource());

    // Watch from the start, then create: the watch must deliver an ADDED event.
    let mut events = api
        .watch(&WatchParams::default().timeout(20), "0")
        .await
        .unwrap()
        .boxed();

    api.create(&PostParams::default(), &widget("first", 3))
        .await
        .unwrap();
    api.create(&PostParams::default(), &widget("second", 5))
        .await
        .unwrap();

    let fetched = api.get("first").await.unwrap();
    assert_eq!(fetched.data["spec"]["size"], 3);

    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|w| w.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, ["first", "second"]);

    let added = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.try_next().await.unwrap() {
            if let WatchEvent::Added(object) = event {
                return object.metadata.name;
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(added.as_deref(), Some("first"));

    // The schema is enforced: a string where an integer belongs is rejected.
    let bad = DynamicObject::new("bad", &widget_resource())
        .data(serde_json::json!({ "spec": { "size": "big" } }));
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(err.to_string().contains("size"), "{err}");
}

#[tokio::test]
async fn two_harnesses_side_by_side_do_not_collide() {
    let (a, b) = tokio::join!(TestEnv::start(), TestEnv::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.server_url(), b.server_url());
    assert_ne!(a.work_dir(), b.work_dir());

    let namespace = a.create_namespace("only-in-a").await.unwrap();
    let in_a: Api<Namespace> = Api::all(a.client().unwrap());
    let in_b: Api<Namespace> = Api::all(b.client().unwrap());
    assert!(in_a.get_opt(&namespace).await.unwrap().is_some());
    assert!(in_b.get_opt(&namespace).await.unwrap().is_none());

    // Same object name in both, different contents.
    for (env, value) in [(&a, "a"), (&b, "b")] {
        let api: Api<ConfigMap> = Api::namespaced(env.client().unwrap(), "default");
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("who".into());
        cm.data = Some([("who".to_owned(), value.to_owned())].into());
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let read = |env: &TestEnv| {
        let api: Api<ConfigMap> = Api::namespaced(env.client().unwrap(), "default");
        async move { api.get("who").await.unwrap().data.unwrap()["who"].clone() }
    };
    assert_eq!(read(&a).await, "a");
    assert_eq!(read(&b).await, "b");
}

#[tokio::test]
async fn drop_stops_both_processes_and_removes_the_files() {
    let env = TestEnv::start().await.unwrap();
    let pids = env.pids();
    let dir = env.work_dir().to_owned();
    assert!(pids.iter().all(|pid| !process_gone(*pid)));
    assert!(dir.join("kubeconfig").is_file());
    drop(env);
    for pid in pids {
        assert!(process_gone(pid), "process {pid} survived the drop");
    }
    assert!(!dir.exists(), "{dir:?} was not removed");
}

#[tokio::test]
async fn startup_failure_reports_flags_and_log_tail() {
    let err = TestEnv::builder()
        .apiserver_flag("--no-such-flag=1")
        .startup_timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("kube-apiserver exited during startup"),
        "{message}"
    );
    assert!(
        message.contains("--secure-port="),
        "flags missing: {message}"
    );
    assert!(
        message.contains("no-such-flag"),
        "log tail missing: {message}"
    );
}

/// Not a test on its own: `children_die_with_the_test_process` runs the test binary again
/// with this one selected; it starts a control plane and exits without dropping it.
#[tokio::test]
async fn helper_exit_without_drop() {
    if std::env::var_os("STACKABLE_TESTENV_E2E_HELPER").is_none() {
        return;
    }
    let env = TestEnv::start().await.unwrap();
    let [a, b] = env.pids();
    println!("DIR {}", env.work_dir().display());
    println!("PIDS {a} {b}");
    std::process::exit(0);
}

#[tokio::test]
async fn children_die_with_the_test_process() {
    let binaries = stackable_testenv::Binaries::ensure().unwrap();
    if !binaries.has_watchdog() {
        eprintln!("skipped: binaries not built by stackable-testenv have no watchdog");
        return;
    }
    let output = tokio::task::spawn_blocking(|| {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_exit_without_drop",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("STACKABLE_TESTENV_E2E_HELPER", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pids: Vec<u32> = stdout
        .lines()
        .find_map(|l| l.split_once("PIDS ").map(|(_, pids)| pids))
        .unwrap_or_else(|| panic!("helper printed no pids: {output:?}"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !pids.iter().all(|pid| process_gone(*pid)) {
        assert!(
            std::time::Instant::now() < deadline,
            "control plane {pids:?} outlived its test process"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The helper never dropped its TestEnv, so its folder is still there: clean it up.
    if let Some(dir) = stdout
        .lines()
        .find_map(|l| l.split_once("DIR ").map(|(_, d)| d))
    {
        let _ = std::fs::remove_dir_all(dir.trim());
    }
}

#[test]
fn kubeconfig_is_written_where_asked() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("kubeconfig");
    runtime.block_on(async {
        let env = TestEnv::start().await.unwrap();
        env.write_kubeconfig(&target).unwrap();
    });
    let text = std::fs::read_to_string(&target).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        json["clusters"][0]["cluster"]["server"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert!(Path::new(&target).exists());
}
