//! Every CRD `cargo xtask gen-crds` writes (`examples/*/deploy/crds/*.yaml`) is created on a real
//! API server without a single warning. Before, schemars' integer formats (`format: uint16`)
//! made every apply warn `unrecognized format "uint16"`; `MultiVersionCrd` now drops formats the
//! API server does not know and keeps the bounds they implied.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use http_body_util::BodyExt as _;
use stackable_testenv::TestEnv;

fn generated_crds() -> Vec<PathBuf> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for example in std::fs::read_dir(examples).unwrap().flatten() {
        let dir = example.path().join("deploy/crds");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "yaml")),
            );
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_crd_is_created_without_a_warning() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    let files = generated_crds();
    assert!(!files.is_empty(), "no generated CRDs found");
    for file in files {
        let yaml = std::fs::read_to_string(&file).unwrap();
        let crd: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        let request =
            http::Request::post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(kube::client::Body::from(serde_json::to_vec(&crd).unwrap()))
                .unwrap();
        let response = client.send(request).await.unwrap();
        let status = response.status();
        let warnings: Vec<String> = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            status.is_success(),
            "{}: {status} {}",
            file.display(),
            String::from_utf8_lossy(&body)
        );
        println!("{}: created, warnings: {warnings:?}", file.display());
        assert!(
            warnings.is_empty(),
            "{} made the API server warn: {warnings:?}",
            file.display()
        );
    }
}
