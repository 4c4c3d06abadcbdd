//! End to end against a real kube-apiserver (stackable-testenv): the CronTab chain
//! v1beta1 - v1 - v2 declared once (`common/crontab.rs`), its generated CRD installed with webhook
//! conversion through `clientConfig.service` to a stackable-webhook server that serves the
//! generated converter. Objects are created in each version and read, listed, updated (spec and
//! status) in every other; fields an older version cannot hold survive the storage version in
//! the stash; the deprecated version warns; a conversion failure reaches the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The versions declared once.
#[path = "common/crontab.rs"]
pub mod declared;

use std::{net::SocketAddr, time::Duration};

use declared::crontab::{CronTabVersions, v1, v1beta1, v2};
use k8s_openapi::{
    ByteString, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use stackable_conversion::WebhookTarget;
use stackable_testenv::{TestEnv, webhooks::namespace_with_service};
use stackable_webhook::{CertSource, WebhookServer};

const SERVICE: &str = "crontab-webhook";
const STASH_V2: &str = "conversion.stackable.tech/stash.v2";

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..ObjectMeta::default()
    }
}

fn annotations(meta: &ObjectMeta) -> Vec<String> {
    let mut keys: Vec<String> = meta
        .annotations
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys
}

/// Creates until the API server reaches the webhook (it learns the Service from an informer).
async fn create_retrying<K>(api: &Api<K>, object: &K) -> K
where
    K: Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut last = None;
    for _ in 0..100 {
        match api.create(&PostParams::default(), object).await {
            Ok(created) => return created,
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("create kept failing: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crontab_chain_through_a_real_api_server() {
    let env = TestEnv::start().await.unwrap();
    let (ns, leaf) = namespace_with_service(&env, "versioned", SERVICE)
        .await
        .unwrap();

    // The generated converter, served on a free loopback port.
    let server = WebhookServer::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .handle_signals(false)
        .certificates(CertSource::in_memory(leaf))
        .conversion("/convert", CronTabVersions::router().unwrap())
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let port = server.local_addr().port();

    // The generated CRD, converting through the Service, trusting the server's CA.
    let mut crd: CustomResourceDefinition = CronTabVersions::crd(
        WebhookTarget::service(SERVICE, &ns)
            .path("/convert")
            .port(i32::from(port)),
    )
    .unwrap();
    let client_config = crd
        .spec
        .conversion
        .as_mut()
        .and_then(|c| c.webhook.as_mut())
        .and_then(|w| w.client_config.as_mut())
        .unwrap();
    client_config.ca_bundle = Some(ByteString(server.ca_bundle_pem().unwrap().into_bytes()));
    env.install_crds([crd]).await.unwrap();

    let client = env.client().unwrap();
    let beta: Api<v1beta1::CronTab> = Api::namespaced(client.clone(), &ns);
    let one: Api<v1::CronTab> = Api::namespaced(client.clone(), &ns);
    let two: Api<v2::CronTab> = Api::namespaced(client.clone(), &ns);

    // Created as v2: stored as v1beta1, through v1, with a stash of what v1beta1 cannot hold.
    let created = create_retrying(
        &two,
        &v2::CronTab {
            metadata: meta("from-v2", &ns),
            spec: v2::CronTabSpec {
                schedule: "0 3 * * *".into(),
                image: "busybox:1".into(),
                replicas: Some(2),
                host: "db.example.org".into(),
                port: 5432,
                time_zone: Some("Europe/Berlin".into()),
                concurrency_policy: v2::ConcurrencyPolicy::Forbid,
            },
            status: None,
        },
    )
    .await;
    assert_eq!(
        created.spec.concurrency_policy,
        v2::ConcurrencyPolicy::Forbid
    );
    assert_eq!(annotations(&created.metadata), Vec::<String>::new());

    // Created as v1beta1, the storage version.
    beta.create(
        &PostParams::default(),
        &v1beta1::CronTab {
            metadata: meta("from-v1beta1", &ns),
            spec: v1beta1::CronTabSpec {
                cron_spec: "*/5 * * * *".into(),
                image: "busybox:2".into(),
                replicas: None,
                host_port: "cache:6379".into(),
            },
            status: None,
        },
    )
    .await
    .unwrap();

    // from-v2 in each version.
    let as_beta = beta.get("from-v2").await.unwrap();
    assert_eq!(as_beta.spec.host_port, "db.example.org:5432");
    assert_eq!(as_beta.spec.cron_spec, "0 3 * * *");
    assert_eq!(annotations(&as_beta.metadata), [STASH_V2]);
    let stash: serde_json::Value =
        serde_json::from_str(&as_beta.metadata.annotations.as_ref().unwrap()[STASH_V2]).unwrap();
    assert_eq!(
        stash,
        json!({"lost": {"spec": {"timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid"}}})
    );
    let as_one = one.get("from-v2").await.unwrap();
    assert_eq!(
        (as_one.spec.host.as_str(), as_one.spec.port),
        ("db.example.org", 5432)
    );
    // The stash belongs to the version the object was written in (v2) and comes back only on
    // the way into v2 (stackable-conversion keeps one stash per source version along a chain):
    // the v1 view of this object has no time zone although v1 could hold one.
    assert_eq!(as_one.spec.time_zone, None);
    assert_eq!(annotations(&as_one.metadata), [STASH_V2]);
    let as_two = two.get("from-v2").await.unwrap();
    assert_eq!(as_two.spec, created.spec);
    assert_eq!(as_two.metadata.uid, as_beta.metadata.uid);

    // from-v1beta1 in v2: split, renamed, defaulted.
    let b = two.get("from-v1beta1").await.unwrap();
    assert_eq!((b.spec.host.as_str(), b.spec.port), ("cache", 6379));
    assert_eq!(b.spec.schedule, "*/5 * * * *");
    assert_eq!(b.spec.concurrency_policy, v2::ConcurrencyPolicy::Allow);
    assert_eq!(b.spec.time_zone, None);

    // Listed in the newest version.
    let mut listed: Vec<_> = two
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| {
            (
                c.metadata.name.unwrap(),
                c.spec.port,
                c.spec.concurrency_policy,
            )
        })
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        listed,
        [
            (
                "from-v1beta1".to_owned(),
                6379,
                v2::ConcurrencyPolicy::Allow
            ),
            ("from-v2".to_owned(), 5432, v2::ConcurrencyPolicy::Forbid),
        ]
    );

    // Status written through v2 (the nested, renamed field) is read through every version.
    two.patch_status(
        "from-v2",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"runningJobs": 3, "lastScheduleTime": "2024-05-01T03:00:00Z"}}),
        ),
    )
    .await
    .unwrap();
    let status = beta.get_status("from-v2").await.unwrap().status.unwrap();
    assert_eq!(status.active, Some(3));
    let status = one.get_status("from-v2").await.unwrap().status.unwrap();
    assert_eq!(status.active_jobs, Some(3));
    assert_eq!(
        status.last_schedule_time.as_deref(),
        Some("2024-05-01T03:00:00Z")
    );

    // An edit through v1beta1 wins; what v1beta1 cannot hold survives in the stash.
    let mut edited = beta.get("from-v2").await.unwrap();
    edited.spec.image = "busybox:3".into();
    edited.spec.host_port = "db2.example.org:5433".into();
    beta.replace("from-v2", &PostParams::default(), &edited)
        .await
        .unwrap();
    let after = two.get("from-v2").await.unwrap();
    assert_eq!(after.spec.image, "busybox:3");
    assert_eq!(
        (after.spec.host.as_str(), after.spec.port),
        ("db2.example.org", 5433)
    );
    assert_eq!(after.spec.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(after.spec.concurrency_policy, v2::ConcurrencyPolicy::Forbid);
    assert_eq!(after.status.as_ref().and_then(|s| s.running_jobs), Some(3));

    // An edit through v2 of a field only v2 holds.
    let mut edited = after;
    edited.spec.concurrency_policy = v2::ConcurrencyPolicy::Replace;
    edited.status = None;
    two.replace("from-v2", &PostParams::default(), &edited)
        .await
        .unwrap();
    assert_eq!(
        two.get("from-v2").await.unwrap().spec.concurrency_policy,
        v2::ConcurrencyPolicy::Replace
    );

    // The flags of the declaration, as the API server keeps them.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let stored = crds.get("crontabs.example.com").await.unwrap();
    let flags: Vec<_> = stored
        .spec
        .versions
        .iter()
        .map(|v| {
            (
                v.name.as_str(),
                v.storage,
                v.served,
                v.deprecated.unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("v1beta1", true, true, true),
            ("v1", false, true, false),
            ("v2", false, true, false)
        ]
    );
    assert_eq!(
        stored.status.unwrap().stored_versions,
        Some(vec!["v1beta1".to_owned()])
    );

    // The deprecated version warns every client that uses it.
    let request = http::Request::get(format!(
        "/apis/example.com/v1beta1/namespaces/{ns}/crontabs/from-v2"
    ))
    .body(kube::client::Body::empty())
    .unwrap();
    let response = client.send(request).await.unwrap();
    let warning = response
        .headers()
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        warning.contains("example.com/v1beta1 CronTab is deprecated; use example.com/v2"),
        "warning header: {warning:?}"
    );

    // A conversion failure reaches the client with the field and the reason.
    beta.create(
        &PostParams::default(),
        &v1beta1::CronTab {
            metadata: meta("broken", &ns),
            spec: v1beta1::CronTabSpec {
                cron_spec: "@daily".into(),
                image: "busybox".into(),
                replicas: None,
                host_port: "no-port-here".into(),
            },
            status: None,
        },
    )
    .await
    .unwrap();
    let message = two.get("broken").await.unwrap_err().to_string();
    assert!(
        message.contains(r#"spec: hostPort \"no-port-here\" is not of the form host:port"#)
            || message.contains(r#"spec: hostPort "no-port-here" is not of the form host:port"#),
        "{message}"
    );
    assert!(message.contains(&format!("{ns}/broken")), "{message}");

    server.shutdown();
    server.wait().await.unwrap();
    env.stop();
}
