//! The file certificate source: kubelet-style `..data` symlink swaps are picked up, a bad
//! pair is refused while the previous certificate keeps serving, OLM's SEC1 EC keys load, and an
//! idle server leaves its files alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::{TestCa, client_config, get, local_builder, start_local, stop};
use stackable_webhook::{CertSource, FileSource, RunningServer};

/// Writes `dir/<version>/{tls.crt,tls.key}` and points `dir/..data` at it atomically, the way
/// the kubelet updates Secret volumes.
fn kubelet_publish(dir: &Path, version: &str, cert: &str, key: &str) {
    let versioned = dir.join(version);
    std::fs::create_dir(&versioned).unwrap();
    std::fs::write(versioned.join("tls.crt"), cert).unwrap();
    std::fs::write(versioned.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

async fn served_serial(server: &RunningServer, ca_pem: &str) -> Vec<u8> {
    get(&client_config(ca_pem), server.local_addr(), "/livez")
        .await
        .unwrap()
        .serial
}

async fn start(source: FileSource) -> RunningServer {
    start_local(CertSource::Files(source)).await
}

#[tokio::test]
async fn kubelet_symlink_swap_and_bad_pair() {
    let ca = TestCa::new("file-ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_pem(1);
    kubelet_publish(dir.path(), "..2026_01_01_00_00_00.000000001", &cert, &key);
    let server =
        start(FileSource::dir(dir.path()).with_poll_interval(Duration::from_secs(1))).await;
    assert_eq!(served_serial(&server, &ca.pem).await, vec![1]);

    // A good update through the ..data swap.
    let (cert, key) = ca.leaf_pem(2);
    let swapped = Instant::now();
    kubelet_publish(dir.path(), "..2026_01_02_00_00_00.000000002", &cert, &key);
    loop {
        if served_serial(&server, &ca.pem).await == vec![2] {
            break;
        }
        assert!(
            swapped.elapsed() < Duration::from_secs(10),
            "the new pair was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "file source: symlink swap visible after {:?}",
        swapped.elapsed()
    );

    // A mismatched pair (key of another certificate) is refused; serial 2 keeps serving.
    let (cert3, _) = ca.leaf_pem(3);
    let (_, other_key) = ca.leaf_pem(4);
    kubelet_publish(
        dir.path(),
        "..2026_01_03_00_00_00.000000003",
        &cert3,
        &other_key,
    );
    let refused = Instant::now();
    while server.metrics().cert_reload_errors() == 0 {
        assert!(
            refused.elapsed() < Duration::from_secs(10),
            "the bad pair was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(served_serial(&server, &ca.pem).await, vec![2]);

    // A half-written key file is refused too.
    let (cert5, key5) = ca.leaf_pem(5);
    kubelet_publish(
        dir.path(),
        "..2026_01_04_00_00_00.000000004",
        &cert5,
        &key5[..key5.len() / 2],
    );
    while server.metrics().cert_reload_errors() < 2 {
        assert!(
            refused.elapsed() < Duration::from_secs(20),
            "the half-written key was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(served_serial(&server, &ca.pem).await, vec![2]);

    // And a correct pair afterwards is taken.
    kubelet_publish(dir.path(), "..2026_01_05_00_00_00.000000005", &cert5, &key5);
    let fixed = Instant::now();
    while served_serial(&server, &ca.pem).await != vec![5] {
        assert!(
            fixed.elapsed() < Duration::from_secs(10),
            "the fixed pair was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.metrics().cert_reload_errors(), 2);
    stop(server).await;
}

#[tokio::test]
async fn olm_style_sec1_ec_key_loads() {
    let ca = TestCa::new("olm-ca");
    let (cert, pkcs8_pem) = ca.leaf_pem(9);
    // Re-encode the PKCS#8 key as SEC1 ("EC PRIVATE KEY"), as OLM mounts it.
    let pkcs8 = pem::parse(&pkcs8_pem).unwrap();
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.contents(),
    )
    .unwrap();
    use aws_lc_rs::encoding::AsDer;
    let sec1: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der<'_> =
        pair.private_key().as_der().unwrap();
    let sec1_pem = pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1.as_ref().to_vec()));
    assert!(sec1_pem.contains("BEGIN EC PRIVATE KEY"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("apiserver.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("apiserver.key"), &sec1_pem).unwrap();
    let server = start(FileSource::paths(
        dir.path().join("apiserver.crt"),
        dir.path().join("apiserver.key"),
    ))
    .await;
    assert_eq!(served_serial(&server, &ca.pem).await, vec![9]);
    stop(server).await;
}

#[tokio::test]
async fn mismatched_pair_at_start_is_an_error() {
    let ca = TestCa::new("ca");
    let (cert, _) = ca.leaf_pem(1);
    let (_, key) = ca.leaf_pem(2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), key).unwrap();
    let result = local_builder()
        .certificates(CertSource::Files(FileSource::dir(dir.path())))
        .build()
        .unwrap()
        .start()
        .await;
    let error = result.unwrap_err();
    let report = snafu::Report::from_error(error).to_string();
    assert!(report.contains("does not match"), "{report}");
}

/// An idle server does not read its certificate files: the watch re-reads them on file-system
/// events, and reading a file is itself an event (`open`) that must not count, or every re-read
/// causes the next one (before the fix: ~20 reads of each file a second, forever). Plain files
/// in the watched directory, as written by hand or by an init container (a Secret volume's
/// files are opened through `..data` in another directory, so its watch did not see them).
/// Counted with a second inotify watch on the directory, as any process could see it.
#[tokio::test]
async fn an_idle_server_does_not_reread_its_files() {
    use notify::{EventKind, RecursiveMode, Watcher, event::AccessKind};
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    let ca = TestCa::new("file-ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_pem(1);
    std::fs::write(dir.path().join("tls.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &key).unwrap();
    let opens = Arc::new(AtomicUsize::new(0));
    let counter = opens.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| matches!(event.kind, EventKind::Access(AccessKind::Open(_)))) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    })
    .unwrap();
    watcher
        .watch(dir.path(), RecursiveMode::NonRecursive)
        .unwrap();
    // No periodic re-read in this test: only events could make the server read again.
    let server =
        start(FileSource::dir(dir.path()).with_poll_interval(Duration::from_secs(3600))).await;
    assert_eq!(served_serial(&server, &ca.pem).await, vec![1]);
    // The start reads each file (and the watch's first tick once more); let that settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = opens.load(Ordering::SeqCst);
    assert!(settled > 0, "the second watch saw the server's own reads");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = opens.load(Ordering::SeqCst) - settled;
    assert_eq!(
        idle, 0,
        "the idle server opened its files {idle} times in 1 s"
    );

    // Still follows a change written in place after that.
    let (cert, key) = ca.leaf_pem(2);
    std::fs::write(dir.path().join("tls.key"), &key).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &cert).unwrap();
    let written = Instant::now();
    while served_serial(&server, &ca.pem).await != vec![2] {
        assert!(
            written.elapsed() < Duration::from_secs(10),
            "the new pair was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(watcher);
    stop(server).await;
}
