//! The injector binary against a real API server, logging JSON: a refusal is one JSON line
//! inside the `inject` span, whose `target` names the object, with kube-runtime's
//! `reconciling object` span around it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{ca_pem, create, put_secret, webhook_configuration};
use serde_json::{Value, json};
use stackable_cainject::TargetKind;
use stackable_testenv::TestEnv;

/// Kills the injector when the test ends, however it ends.
struct Injector(Child);

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_a_json_line_in_the_span_of_its_target() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    let ns = env.create_namespace("logging").await.unwrap();

    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stackable-cainjector"))
        .args(["--log-format", "json", "--metrics-address", ""])
        .env_clear()
        .env("HOME", home.path())
        .env("KUBECONFIG", env.kubeconfig_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _injector = Injector(child);
    let (lines, received) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });

    // A Secret not marked for direct injection: the injector must refuse it.
    put_secret(&client, &ns, "unmarked", &[], &ca_pem("logging-ca")).await;
    create(
        &client,
        TargetKind::ValidatingWebhookConfiguration,
        None,
        webhook_configuration(
            "ValidatingWebhookConfiguration",
            "logging-unmarked",
            json!({ "cert-manager.io/inject-ca-from-secret": format!("{ns}/unmarked") }),
        ),
    )
    .await;

    let start = Instant::now();
    let mut seen = Vec::new();
    let refusal = loop {
        let remaining = Duration::from_secs(30).saturating_sub(start.elapsed());
        let Ok(line) = received.recv_timeout(remaining) else {
            panic!("no refusal logged within 30 s; lines:\n{}", seen.join("\n"));
        };
        let parsed: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(!line.contains('\u{1b}'), "{line:?}");
        seen.push(line);
        if parsed["fields"]["message"] == "refused to inject; the previous caBundle stays" {
            break parsed;
        }
    };
    println!("{}", seen.join("\n"));

    assert_eq!(refusal["level"], "WARN");
    assert_eq!(refusal["target"], "stackable_cainjector::reconcile");
    assert!(
        refusal["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("is not marked cert-manager.io/allow-direct-injection"),
        "{refusal}"
    );
    assert_eq!(
        refusal["spans"],
        json!(["reconciling object", "inject"]),
        "{refusal}"
    );
    assert_eq!(
        refusal["span"]["target"],
        "ValidatingWebhookConfiguration logging-unmarked"
    );
    assert!(
        refusal["span"]["object.ref"]
            .as_str()
            .unwrap()
            .ends_with("/logging-unmarked"),
        "{refusal}"
    );
    // Every line before it was a JSON object with the documented fields.
    for line in &seen {
        let line: Value = serde_json::from_str(line).unwrap();
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(
            line["level"].is_string() && line["target"].is_string(),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
}
