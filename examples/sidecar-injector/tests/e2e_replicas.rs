//! Two `sidecar-injector` processes behind a round-robin forwarder (playing kube-proxy and the
//! endpoints controller), sharing one CA through a Secret and injecting its bundle into both
//! webhook configurations, while labelled Pods are created in a loop and the replicas are
//! rolled (a new one started and ready, then the old one SIGTERMed) twice over. Every Pod must
//! be admitted and carry the sidecar: 0 refused for webhook errors (`failurePolicy: Fail`).
//! The replicas run as the ServiceAccount of `deploy/rbac.yaml` (impersonated), in its
//! namespace, so the deploy RBAC is shown to be enough.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
    core::v1::Pod,
};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use sidecar_injector::{CONFIGURATION_NAME as CONFIGURATION, INJECT_LABEL, has_sidecar};
use stackable_testenv::{
    TestEnv,
    replicas::{ReplicaInfo, Replicas},
    webhooks::{LocalWebhook, create_until, mutating_configuration, validating_configuration},
};

use crate::common::{Deployed, NAMESPACE, SERVICE, deploy, pod};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_admitted_while_two_replicas_are_rolled() {
    let env = TestEnv::start().await.unwrap();
    let Deployed {
        client,
        kubeconfig,
        namespace,
        forwarder,
        port,
    } = deploy(&env).await;
    let hook = |name: &str, path: &str| {
        LocalWebhook::service(name, NAMESPACE, SERVICE, port, path)
            .rule("", "v1", "pods", &["CREATE"])
            .in_namespace(&namespace)
            .object_label(INJECT_LABEL, "true")
    };
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &mutating_configuration(
                CONFIGURATION,
                [hook("inject.sidecar.example.com", "/mutate")],
            ),
        )
        .await
        .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &validating_configuration(
                CONFIGURATION,
                [hook("validate.sidecar.example.com", "/validate")],
            ),
        )
        .await
        .unwrap();

    let mut replicas = Replicas::builder(env!("CARGO_BIN_EXE_sidecar-injector"))
        .test_env(&env)
        .kubeconfig(kubeconfig)
        .name_prefix("sidecar-injector")
        .behind(&forwarder)
        .readiness_path("/readyz")
        .probe_period(Duration::from_millis(200))
        .endpoint_removal_delay(Duration::from_millis(500))
        .env("RUST_LOG", "info,kube=warn,stackable_cainject=debug")
        .args(move |r: &ReplicaInfo| {
            vec![
                format!("--bind={}", r.https),
                format!("--health-bind={}", r.health),
                format!("--service-name={SERVICE}"),
                format!("--namespace={NAMESPACE}"),
                "--inject-ca-bundle".to_owned(),
                format!("--webhook-configuration={CONFIGURATION}"),
                "--drain-period=2s".to_owned(),
            ]
        })
        .start(2)
        .unwrap();
    let started = Instant::now();
    if let Err(error) = replicas.wait_all_ready(Duration::from_secs(60)).await {
        panic!("{error}\n{}", replicas.log_tails(30));
    }
    println!("two replicas ready after {:?}", started.elapsed());

    // The API server calls the webhooks once its informer has the bundle.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    create_until(
        &pods,
        &pod("warm-up", true, true),
        Duration::from_secs(30),
        |outcome| matches!(outcome, Ok(pod) if has_sidecar(pod)),
    )
    .await
    .unwrap()
    .unwrap();
    // The validating webhook answers too: no limits, refused (a denial, not a failed call).
    let denied = pods
        .create(&PostParams::default(), &pod("no-limits", true, false))
        .await
        .unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.message.contains("denied the request")),
        "{denied}"
    );

    // Create Pods in a loop while both replicas are rolled twice over.
    let creator = {
        let pods = pods.clone();
        tokio::spawn(async move {
            let (mut created, mut refused, mut errors) = (0u32, 0u32, Vec::new());
            for i in 0.. {
                let name = format!("app-{i}");
                match pods
                    .create(&PostParams::default(), &pod(&name, true, true))
                    .await
                {
                    Ok(pod) => {
                        assert!(has_sidecar(&pod), "{name} has no sidecar");
                        created += 1;
                        let _ = pods.delete(&name, &DeleteParams::default()).await;
                    }
                    Err(error) => {
                        refused += 1;
                        if errors.len() < 10 {
                            errors.push(error.to_string());
                        }
                    }
                }
                if STOP.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (created, refused, errors)
        })
    };
    let rolling = Instant::now();
    for _round in 0..2 {
        for id in replicas.running() {
            match replicas.roll(id, Duration::from_secs(60)).await {
                Ok((_, termination)) => assert!(
                    !termination.killed,
                    "the old replica needed SIGKILL\n{}",
                    replicas.log_tails(30)
                ),
                Err(error) => panic!("{error}\n{}", replicas.log_tails(30)),
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
    let (created, refused, errors) = creator.await.unwrap();
    println!(
        "4 replacements in {:?}: {created} Pods created with the sidecar, {refused} refused; forwarder {:?}",
        rolling.elapsed(),
        forwarder.stats()
    );
    assert_eq!(refused, 0, "Pods refused during the rollout: {errors:#?}");
    assert!(created > 20, "too few Pods: {created}");
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
