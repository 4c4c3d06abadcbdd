//! The buffers of a large conversion review (the body and the answer, megabytes each) are kept
//! for two seconds after the review and taken by the next one, whose pages are then already
//! resident (the kernel does not fault in and zero ~2,300 fresh pages per buffer again); then they
//! are freed and resident memory goes back to idle. Through HTTPS: reviews back to back get
//! exact answers (a kept buffer is cleared before it is used again), and the thread that frees
//! kept buffers runs after a large review and stops once it has freed them. Its own test binary,
//! so that no other test's conversion shares the process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    TestCa, client_config, crontab_review, local_builder, post, relabel_converter, start, stop,
};
use stackable_webhook::CertSource;

/// Whether a thread of this process is named `name`.
fn thread_named(name: &str) -> bool {
    std::fs::read_dir("/proc/self/task").unwrap().any(|task| {
        std::fs::read_to_string(task.unwrap().path().join("comm"))
            .is_ok_and(|comm| comm.trim_end() == name)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_reviews_buffers_serve_the_next_one_then_are_freed() {
    let ca = TestCa::new("ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .conversion("/convert", relabel_converter),
    )
    .await;
    let client = client_config(&ca.pem);
    // Larger first, so that the second review's answer is written over the first one's.
    for (uid, count) in [("first", 10_000), ("second", 9_000)] {
        let body = crontab_review(uid, count);
        assert!(body.len() > 6_000_000, "a review of {} bytes", body.len());
        let answer = post(
            &client,
            server.local_addr(),
            "/convert",
            "application/json",
            body,
        )
        .await;
        assert_eq!(answer.status, 200);
        let review = answer.json();
        assert_eq!(review["response"]["uid"], uid);
        assert_eq!(review["response"]["result"]["status"], "Success");
        let objects = review["response"]["convertedObjects"].as_array().unwrap();
        assert_eq!(objects.len(), count);
        assert!(objects.iter().all(|o| o["apiVersion"] == "example.com/v1"));
        assert_eq!(
            objects[count - 1]["metadata"]["name"],
            format!("crontab-{:05}", count - 1)
        );
    }

    // Kept buffers are freed two seconds after their last use, and the thread that frees them
    // stops.
    assert!(
        thread_named("webhook-buffers"),
        "buffers are kept after a large review"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while thread_named("webhook-buffers") {
        assert!(
            Instant::now() < deadline,
            "kept buffers not freed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(server).await;
}
