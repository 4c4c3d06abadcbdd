//! Memory of the standalone injector as unrelated Secrets pile up: it watches Secret
//! metadata only, so 5,000 Secrets of 4 KiB (20 MiB of data) must not show in its RSS.
//! Prints the figures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::{Api, ObjectMeta, PostParams};
use stackable_testenv::TestEnv;

const SECRETS: usize = 5_000;
const SECRET_BYTES: usize = 4_096;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Injector(Child);

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_injector(env: &TestEnv) -> Injector {
    Injector(
        Command::new(env!("CARGO_BIN_EXE_stackable-cainjector"))
            .env("KUBECONFIG", env.kubeconfig_path())
            .env("RUST_LOG", "warn")
            .arg("--metrics-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_with_many_unrelated_secrets() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    let ns = env.create_namespace("memory").await.unwrap();

    let early = spawn_injector(&env);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let early_before = rss_kib(early.0.id());

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let payload = ByteString(vec![b'x'; SECRET_BYTES]);
    let start = Instant::now();
    futures::stream::iter(0..SECRETS)
        .map(|i| {
            let secrets = secrets.clone();
            let payload = payload.clone();
            async move {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("unrelated-{i}")),
                        ..ObjectMeta::default()
                    },
                    data: Some(BTreeMap::from([("blob".to_owned(), payload)])),
                    ..Secret::default()
                };
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let created_in = start.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let early_after = rss_kib(early.0.id());

    // A second injector that starts when the Secrets exist lists them (metadata only).
    let late = spawn_injector(&env);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let late_rss = rss_kib(late.0.id());

    println!(
        "created {SECRETS} Secrets of {SECRET_BYTES} B ({} MiB of data) in {created_in:?}",
        SECRETS * SECRET_BYTES / (1024 * 1024)
    );
    println!(
        "injector RSS: running before: {early_before} KiB, after: {early_after} KiB (+{} KiB); \
         started after the Secrets exist: {late_rss} KiB",
        early_after.saturating_sub(early_before)
    );
    let budget_kib = 8 * 1024;
    assert!(
        early_after.saturating_sub(early_before) < budget_kib,
        "RSS grew by more than {budget_kib} KiB"
    );
    assert!(
        late_rss.saturating_sub(early_before) < budget_kib,
        "an injector started with {SECRETS} Secrets uses {late_rss} KiB vs {early_before} KiB"
    );
}
