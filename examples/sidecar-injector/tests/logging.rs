//! The sidecar injector's log lines as a container runtime captures them: the real binary
//! (`--in-memory`, no cluster), stdout through a pipe, `--log-format json`. A request to each
//! webhook is answered, and the line logged for it carries the request's identity.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sidecar_injector::INJECT_LABEL;

/// Kills the injector when the test ends, however it ends.
struct Injector(Child);

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of the child's stdout, in order, each checked to be JSON without an escape byte.
struct Lines {
    received: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Lines {
    /// Waits (10 s at most) for the first line `wanted` accepts.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let remaining = Duration::from_secs(10).saturating_sub(start.elapsed());
            let Ok(line) = self.received.recv_timeout(remaining) else {
                panic!("no {what} within 10 s; lines: {:#?}", self.seen);
            };
            assert!(!line.contains('\u{1b}'), "{line:?}");
            let parsed: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line:?}"));
            for key in ["timestamp", "level", "target"] {
                assert!(parsed[key].is_string(), "{key}: {line}");
            }
            assert!(parsed["fields"]["message"].is_string(), "{line}");
            self.seen.push(parsed.clone());
            if wanted(&parsed) {
                return parsed;
            }
        }
    }
}

fn review(uid: &str, pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"],
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": pod,
            "dryRun": false
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_each_requests_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sidecar-injector"))
        .args(["--in-memory", "--bind", "127.0.0.1:0", "--ca-bundle-out"])
        .arg(&ca_path)
        .env_clear()
        .env("HOME", dir.path())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info,stackable_webhook=debug")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _injector = Injector(child);
    let (send, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if send.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Lines {
        received,
        seen: Vec::new(),
    };

    let listening = lines.wait_for("listening line", |l| {
        l["fields"]["message"] == "webhook server listening"
    });
    let address = listening["fields"]["local_addr"]
        .as_str()
        .unwrap()
        .to_owned();
    lines.wait_for("CA bundle line", |l| {
        l["fields"]["message"] == "wrote the CA bundle"
    });
    let ca =
        stackable_certs::CaBundle::from_pem(&std::fs::read_to_string(&ca_path).unwrap()).unwrap();
    let mut config = kube::Config::new(format!("https://{address}").parse().unwrap());
    config.root_cert = Some(ca.certificates().iter().map(|c| c.der().to_vec()).collect());
    config.tls_server_name = Some("sidecar-injector.default.svc".to_owned());
    let client = kube::Client::try_from(config).unwrap();
    let post = |path: &str, body: Vec<u8>| {
        let client = client.clone();
        let request = http::Request::post(path)
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        async move { client.request_text(request).await.unwrap() }
    };

    // A labelled Pod without limits: mutated, then refused by the validation.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "labels": {INJECT_LABEL: "true"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}
    });
    let mutated = post("/mutate", review("m-1", pod.clone())).await;
    assert!(mutated.contains("\"patch\""), "{mutated}");
    let refused = post("/validate", review("v-1", pod)).await;
    assert!(refused.contains("\"allowed\":false"), "{refused}");

    for (uid, route, outcome) in [
        ("m-1", "/mutate", "patched"),
        ("v-1", "/validate", "denied"),
    ] {
        let line = lines.wait_for("answered line", |l| {
            l["span"]["uid"] == uid && l["fields"]["message"] == "webhook request answered"
        });
        assert_eq!(line["level"], "DEBUG");
        assert_eq!(line["target"], "stackable_webhook::router");
        assert_eq!(line["spans"], json!(["webhook"]));
        for (field, value) in [
            ("route", route),
            ("kind", "Pod"),
            ("namespace", "team-a"),
            ("name", "web-0"),
            ("operation", "Create"),
            ("outcome", outcome),
        ] {
            assert_eq!(line["span"][field], value, "{field}: {line}");
        }
    }
}

#[test]
fn an_unknown_format_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_sidecar-injector"))
        .args(["--in-memory", "--log-format", "xml"])
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'xml' for '--log-format <LOG_FORMAT>'"),
        "{stderr}"
    );
    assert!(stderr.contains("[possible values: text, json]"), "{stderr}");
}
