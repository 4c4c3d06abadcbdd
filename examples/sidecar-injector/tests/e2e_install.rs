//! The injector installs its own webhook configurations, rendered from its routes'
//! registrations, through a real API server: on a control plane without them, two replicas (as
//! the deploy ServiceAccount, behind the forwarder) server-side apply both with the caBundle in
//! the very first write (watches from before they start never see an entry without one), Pods
//! are mutated and validated through them, a field the injector owns that someone changed is
//! put back, a CA rotation reaches both, and a label a user added (a field the injector does not
//! own) survives a rolling restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use k8s_openapi::{
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        core::v1::Pod,
    },
    serde::{Serialize, de::DeserializeOwned},
};
use kube::{
    Api, Resource,
    api::{Patch, PatchParams, PostParams},
    runtime::{
        WatchStreamExt as _,
        watcher::{self, Event},
    },
};
use serde_json::json;
use sidecar_injector::{CONFIGURATION_NAME, has_sidecar};
use stackable_testenv::{
    TestEnv,
    replicas::{ReplicaInfo, Replicas},
    webhooks::create_until,
};

use crate::common::{Deployed, NAMESPACE, SERVICE, deploy, pod};

/// What a watch of one configuration saw.
#[derive(Default, Debug)]
struct Seen {
    /// Events showing an entry without a caBundle.
    without_bundle: u64,
    /// Distinct caBundle values (all entries' bundles joined).
    bundles: BTreeSet<String>,
    /// Events seen.
    events: u64,
}

/// Watches the configuration named [`CONFIGURATION_NAME`] of kind `K` from now on.
fn watch<K>(api: Api<K>) -> Arc<Mutex<Seen>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Serialize + Send + 'static,
{
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let config = watcher::Config::default().fields(&format!("metadata.name={CONFIGURATION_NAME}"));
    tokio::spawn(async move {
        // With a backoff: when the control plane stops at the end of the test, a watcher
        // without one retries in a loop that never yields, and the runtime cannot shut down
        // (CI hung here once).
        let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff());
        while let Some(event) = stream.next().await {
            let object = match event {
                Ok(Event::Apply(object) | Event::InitApply(object)) => object,
                _ => continue,
            };
            let value = serde_json::to_value(&object).unwrap();
            let bundles: Vec<String> = value["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| {
                    w["clientConfig"]["caBundle"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            let mut seen = record.lock().unwrap();
            seen.events += 1;
            if bundles.is_empty() || bundles.iter().any(String::is_empty) {
                seen.without_bundle += 1;
            } else {
                seen.bundles.insert(bundles.join(","));
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injector_installs_its_webhook_configurations_with_the_bundle_in_the_first_write() {
    let env = TestEnv::start().await.unwrap();
    let Deployed {
        client,
        kubeconfig,
        namespace,
        forwarder,
        port,
    } = deploy(&env).await;

    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    assert!(
        mutating
            .get_opt(CONFIGURATION_NAME)
            .await
            .unwrap()
            .is_none()
    );
    let seen_mutating = watch(mutating.clone());
    let seen_validating = watch(validating.clone());
    // Let both watches list (nothing) before the replicas start.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut replicas = Replicas::builder(env!("CARGO_BIN_EXE_sidecar-injector"))
        .test_env(&env)
        .kubeconfig(kubeconfig)
        .name_prefix("sidecar-injector")
        .behind(&forwarder)
        .readiness_path("/readyz")
        .probe_period(Duration::from_millis(200))
        .endpoint_removal_delay(Duration::from_millis(500))
        .env("RUST_LOG", "info,kube=warn")
        .args(move |r: &ReplicaInfo| {
            vec![
                format!("--bind={}", r.https),
                format!("--health-bind={}", r.health),
                format!("--service-name={SERVICE}"),
                format!("--namespace={NAMESPACE}"),
                "--install-webhooks".to_owned(),
                format!("--webhook-service-port={port}"),
                "--drain-period=1s".to_owned(),
                "--ca-validity=30s".to_owned(),
                "--leaf-validity=10s".to_owned(),
                "--ca-propagation-delay=2s".to_owned(),
                "--ca-overlap=2s".to_owned(),
                "--certificate-check-interval=2s".to_owned(),
            ]
        })
        .start(2)
        .unwrap();
    let started = Instant::now();
    if let Err(error) = replicas.wait_all_ready(Duration::from_secs(60)).await {
        panic!("{error}\n{}", replicas.log_tails(30));
    }
    println!("two replicas ready after {:?}", started.elapsed());
    let installed = mutating.get(CONFIGURATION_NAME).await.unwrap();
    let managers: Vec<String> = installed
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "sidecar-injector"),
        "{managers:?}"
    );
    assert!(
        validating
            .get_opt(CONFIGURATION_NAME)
            .await
            .unwrap()
            .is_some()
    );

    // The webhooks work through what was installed: mutated, and a denial.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let warm_up = Instant::now();
    create_until(
        &pods,
        &pod("warm-up", true, true),
        Duration::from_secs(30),
        |outcome| matches!(outcome, Ok(pod) if has_sidecar(pod)),
    )
    .await
    .unwrap()
    .unwrap();
    println!(
        "the first Pod was mutated {:?} after ready",
        warm_up.elapsed()
    );
    let denied = pods
        .create(&PostParams::default(), &pod("no-limits", true, false))
        .await
        .unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.message.contains("denied the request")),
        "{denied}"
    );

    // A user labels the configuration (not the injector's field) and changes the timeout (the
    // injector's field, owned with force): the label stays, the timeout is put back.
    mutating
        .patch(
            CONFIGURATION_NAME,
            &PatchParams::apply("a-user"),
            &Patch::Apply(json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": { "name": CONFIGURATION_NAME, "labels": { "team": "platform" } }
            })),
        )
        .await
        .unwrap();
    mutating
        .patch(
            CONFIGURATION_NAME,
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/webhooks/0/timeoutSeconds", "value": 29}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    let changed = Instant::now();
    loop {
        let current = mutating.get(CONFIGURATION_NAME).await.unwrap();
        if current.webhooks.as_ref().unwrap()[0].timeout_seconds == Some(5) {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(20),
            "the timeout was not put back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "a changed timeout was put back after {:?}",
        changed.elapsed()
    );

    // A CA rotation reaches both configurations (CA 30 s: staged at 20 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen_mutating.lock().unwrap().bundles.len() < 2
        || seen_validating.lock().unwrap().bundles.len() < 2
    {
        assert!(
            Instant::now() < deadline,
            "no CA rotation reached both configurations: {:?} {:?}\n{}",
            seen_mutating.lock().unwrap(),
            seen_validating.lock().unwrap(),
            replicas.log_tails(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Restart every replica: the label survives, Pods are still mutated.
    for id in replicas.running() {
        if let Err(error) = replicas.roll(id, Duration::from_secs(60)).await {
            panic!("{error}\n{}", replicas.log_tails(30));
        }
    }
    let current = mutating.get(CONFIGURATION_NAME).await.unwrap();
    let labels = current.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("team").map(String::as_str),
        Some("platform"),
        "the user's label was removed"
    );
    let after = pods
        .create(&PostParams::default(), &pod("after-restart", true, true))
        .await
        .unwrap();
    assert!(has_sidecar(&after));
    for (kind, seen) in [
        ("mutating", &seen_mutating),
        ("validating", &seen_validating),
    ] {
        let seen = seen.lock().unwrap();
        println!(
            "{kind}: {} events, {} bundles",
            seen.events,
            seen.bundles.len()
        );
        assert_eq!(
            seen.without_bundle, 0,
            "the API server held the {kind} configuration without a caBundle"
        );
    }
}
