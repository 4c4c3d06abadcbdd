//! The operator binary against a real API server, its stdout through a pipe as a container
//! runtime captures it: text without escape bytes, and with `--log-format json` one object per
//! line, the answered conversion's line carrying the review's `uid`, the converted `kind`, the
//! object's `namespace`/`name` and the desired version.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crontab_operator::crd::CONVERT_PATH;
use serde_json::{Value, json};
use stackable_testenv::TestEnv;

/// Kills the operator when the test ends, however it ends.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the operator (one process, no controller) and returns it with its stdout lines.
fn start(env: &TestEnv, log_format: &str) -> (Operator, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crontab-operator"))
        .args([
            "--single-process",
            "--controller=false",
            "--bind=127.0.0.1:0",
            "--health-bind=127.0.0.1:0",
            "--ip-address=127.0.0.1",
            "--namespace=default",
            "--log-format",
            log_format,
        ])
        .env_clear()
        .env("KUBECONFIG", env.kubeconfig_path())
        .env("RUST_LOG", "info,stackable_webhook=debug")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if send.send(line).is_err() {
                return;
            }
        }
    });
    (Operator(child), lines)
}

/// Lines until one contains `needle` (20 s at most); all of them, that one last.
fn until(lines: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let remaining = Duration::from_secs(20).saturating_sub(start.elapsed());
        let Ok(line) = lines.recv_timeout(remaining) else {
            panic!("no line with {needle:?} within 20 s: {seen:#?}");
        };
        let found = line.contains(needle);
        seen.push(line);
        if found {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_through_a_pipe_have_no_escape_bytes_and_json_names_the_request() {
    let env = TestEnv::start().await.unwrap();

    let (text, lines) = start(&env, "text");
    let seen = until(&lines, "webhook server listening");
    drop(text);
    assert!(seen.iter().any(|l| l.contains(" INFO ")), "{seen:#?}");
    assert!(seen.iter().all(|l| !l.contains('\u{1b}')), "{seen:#?}");

    let (_json, lines) = start(&env, "json");
    // The operator's line (the server logs one with `local_addr` before it).
    let seen = until(&lines, "\"address\":\"");
    let parsed: Vec<Value> = seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let listening = parsed.last().unwrap();
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "crontab_operator::operator");
    let address = listening["fields"]["address"].as_str().unwrap().to_owned();

    // A conversion, as the API server would send it (TLS verified against nothing: this test
    // is about the log line, the certificates have their own).
    let mut config = kube::Config::new(format!("https://{address}").parse().unwrap());
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config).unwrap();
    let review = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "request": {"uid": "review-7", "desiredAPIVersion": "example.com/v1", "objects": [{
            "apiVersion": "example.com/v1beta1", "kind": "CronTab",
            "metadata": {"name": "nightly", "namespace": "team-a", "uid": "u-1"},
            "spec": {"cronSpec": "0 3 * * *", "image": "busybox:1", "replicas": 1, "hostPort": "db:5432"}
        }]}
    });
    let request = http::Request::post(CONVERT_PATH)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review).unwrap())
        .unwrap();
    let answer = client.request_text(request).await.unwrap();
    assert!(answer.contains("\"status\":\"Success\""), "{answer}");

    let seen = until(&lines, "\"uid\":\"review-7\"");
    let line: Value = serde_json::from_str(seen.last().unwrap()).unwrap();
    assert_eq!(
        line["fields"]["message"], "webhook request answered",
        "{line}"
    );
    assert_eq!(line["spans"], json!(["webhook"]));
    for (field, value) in [
        ("route", json!("/convert")),
        ("kind", json!("CronTab")),
        ("namespace", json!("team-a")),
        ("name", json!("nightly")),
        ("operation", json!("example.com/v1")),
        ("objects", json!(1)),
        ("outcome", json!("converted")),
    ] {
        assert_eq!(line["span"][field], value, "{field}: {line}");
    }
}
