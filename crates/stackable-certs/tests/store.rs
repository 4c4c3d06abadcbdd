//! The store logic against in-memory and fake stores: replicas converge on one CA, the
//! loser of a write race adopts the winner's material, garbage is repaired, user material
//! is never replaced. And the driver on a paused tokio clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{
    SERVICE_NAME, driver, driver_on, jumping_clock, leaf, lifetimes, paused_clock, start_replicas,
};
use stackable_certs::{
    ServingMaterial,
    ca::{CaOptions, CertificateAuthority},
    rotation::{
        InMemoryStore, RotationDriver, RotationPolicy, RotationState, Store, StoreError, advance,
        store::{
            CA_CRT_KEY, CA_KEY_KEY, STATE_KEY, StoredData, StoredObject, TLS_CRT_KEY, TLS_KEY_KEY,
            WriteOutcome, encode,
        },
    },
};
use time::OffsetDateTime;

fn ca_pem(data: &StoredData) -> String {
    String::from_utf8(data[CA_CRT_KEY].clone()).unwrap()
}

/// A store where another replica sneaks in a write right before each of our first `races`
/// writes, so every such write is a conflict.
#[derive(Clone)]
struct RacingStore {
    inner: InMemoryStore,
    rival: Arc<Mutex<Option<StoredData>>>,
    races: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
}

impl RacingStore {
    fn new(rival: StoredData, races: usize) -> Self {
        RacingStore {
            inner: InMemoryStore::new(),
            rival: Arc::new(Mutex::new(Some(rival))),
            races: Arc::new(AtomicUsize::new(races)),
            writes: Arc::new(AtomicUsize::new(0)),
        }
    }

    async fn sneak(&self) {
        if self.races.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.races.fetch_sub(1, Ordering::SeqCst);
        let rival = self.rival.lock().unwrap().clone().unwrap();
        match self.inner.read().await.unwrap() {
            None => {
                self.inner.create(rival).await.unwrap();
            }
            Some(obj) => {
                self.inner.replace(rival, &obj.version).await.unwrap();
            }
        }
    }
}

impl Store for RacingStore {
    fn describe(&self) -> String {
        "racing store".into()
    }

    async fn read(&self) -> Result<Option<StoredObject>, StoreError> {
        self.inner.read().await
    }

    async fn create(&self, data: StoredData) -> Result<WriteOutcome, StoreError> {
        self.sneak().await;
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.create(data).await
    }

    async fn replace(&self, data: StoredData, v: &str) -> Result<WriteOutcome, StoreError> {
        self.sneak().await;
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.replace(data, v).await
    }
}

fn rival_state() -> StoredData {
    let adv = advance(
        &RotationState::empty(),
        &RotationPolicy::default(),
        &leaf(),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    encode(&adv.state)
}

#[tokio::test]
async fn loser_of_create_race_adopts_the_winner() {
    let rival = rival_state();
    let store = RacingStore::new(rival.clone(), 1);
    let running = driver(store.clone()).start().await.unwrap();
    let material = running.current();
    // We lost the create; the stored CA is the rival's and we serve it.
    assert_eq!(material.ca_bundle_pem(), ca_pem(&rival));
    assert_eq!(ca_pem(&store.inner.snapshot().unwrap()), ca_pem(&rival));
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        1,
        "no second write after adopting"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn loser_of_repair_race_adopts_the_winner() {
    let rival = rival_state();
    let store = RacingStore::new(rival.clone(), 1);
    // Our own state got damaged first.
    let mut garbage = StoredData::new();
    garbage.insert(STATE_KEY.into(), b"{\"version\": 1, \"stage\":".to_vec());
    store.inner.create(garbage).await.unwrap();
    let running = driver(store.clone()).start().await.unwrap();
    assert_eq!(running.current().ca_bundle_pem(), ca_pem(&rival));
    running.shutdown().await;
}

#[tokio::test]
async fn rival_rewriting_the_same_state_is_adopted_without_writing() {
    let store = RacingStore::new(rival_state(), 100);
    let running = driver(store.clone()).start().await.unwrap();
    assert_eq!(store.writes.load(Ordering::SeqCst), 1);
    running.shutdown().await;
}

/// A store that is always empty and where every write conflicts.
struct AlwaysConflict;

impl Store for AlwaysConflict {
    fn describe(&self) -> String {
        "always-conflicting store".into()
    }
    async fn read(&self) -> Result<Option<StoredObject>, StoreError> {
        Ok(None)
    }
    async fn create(&self, _: StoredData) -> Result<WriteOutcome, StoreError> {
        Ok(WriteOutcome::Conflict)
    }
    async fn replace(&self, _: StoredData, _: &str) -> Result<WriteOutcome, StoreError> {
        Ok(WriteOutcome::Conflict)
    }
}

#[tokio::test]
async fn endless_conflicts_give_up_with_an_error() {
    let err = driver(AlwaysConflict).start().await.unwrap_err();
    assert!(err.to_string().contains("conflicting writes"), "{err}");
}

#[tokio::test]
async fn concurrent_replicas_converge_on_one_ca() {
    let store = InMemoryStore::new();
    let bundles = start_replicas(vec![store.clone(); 4]).await;
    let stored = ca_pem(&store.snapshot().unwrap());
    assert!(
        bundles.iter().all(|b| *b == stored),
        "replicas disagree on the CA"
    );
}

#[tokio::test]
async fn garbage_is_repaired() {
    for garbage in [
        StoredData::new(),
        StoredData::from([(STATE_KEY.to_string(), b"{not json".to_vec())]),
        // Our state damaged along with the CA next to it.
        StoredData::from([
            (STATE_KEY.to_string(), b"{\"version\": 1}".to_vec()),
            (CA_CRT_KEY.to_string(), b"junk".to_vec()),
        ]),
        // Only keys this crate does not use: they are kept.
        StoredData::from([("someone-elses".to_string(), b"value".to_vec())]),
    ] {
        let store = InMemoryStore::with_data(garbage.clone());
        let running = driver(store.clone()).start().await.unwrap();
        let data = store.snapshot().unwrap();
        assert_ne!(data, garbage);
        assert!(data.contains_key(STATE_KEY));
        if let Some(value) = garbage.get("someone-elses") {
            assert_eq!(
                data.get("someone-elses"),
                Some(value),
                "a foreign key was lost"
            );
        }
        let m = running.current();
        common::webpki_verify(
            m.ca_bundle(),
            m.leaf(),
            SERVICE_NAME,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        running.shutdown().await;
    }
}

#[tokio::test]
async fn user_material_is_never_replaced() {
    let user = ServingMaterial::generate(&CaOptions::new("user CA"), &leaf()).unwrap();
    let data = StoredData::from([
        (TLS_CRT_KEY.to_string(), user.chain_pem().into_bytes()),
        (TLS_KEY_KEY.to_string(), user.key().to_pem().into_bytes()),
        (CA_CRT_KEY.to_string(), user.ca_bundle_pem().into_bytes()),
    ]);
    let store = InMemoryStore::with_data(data.clone());
    let running = driver(store.clone()).start().await.unwrap();
    assert_eq!(*running.current(), user);
    assert_eq!(
        store.snapshot().unwrap(),
        data,
        "user material was modified"
    );
    running.shutdown().await;

    // Incomplete user material (no ca.crt) is an error, not overwritten.
    let mut incomplete = data.clone();
    incomplete.remove(CA_CRT_KEY);
    let store = InMemoryStore::with_data(incomplete.clone());
    let err = driver(store.clone()).start().await.unwrap_err();
    assert!(err.to_string().contains("left untouched"), "{err}");
    assert_eq!(store.snapshot().unwrap(), incomplete);
}

/// Every shape of user-provided material that cannot be used is left as it is, with an error
/// that names what is wrong and never quotes the material.
#[tokio::test]
async fn unusable_user_material_is_never_overwritten() {
    let ca = CertificateAuthority::new(&CaOptions::new("provided CA")).unwrap();
    let other = CertificateAuthority::new(&CaOptions::new("other CA")).unwrap();
    let ca_crt = (
        CA_CRT_KEY.to_string(),
        ca.certificate().to_pem().into_bytes(),
    );
    // A DSA key: an algorithm nobody supports.
    let dsa = "-----BEGIN DSA PRIVATE KEY-----\nMIIBuwIBAAKBgQDoSECRETSECRET\n-----END DSA PRIVATE KEY-----\n";
    let cases: [(&str, StoredData, &str); 6] = [
        (
            "ca.key that is not a key",
            StoredData::from([
                ca_crt.clone(),
                (CA_KEY_KEY.to_string(), b"SECRETSECRET not pem".to_vec()),
            ]),
            "ca.key",
        ),
        (
            "ca.key of an unsupported algorithm",
            StoredData::from([ca_crt.clone(), (CA_KEY_KEY.to_string(), dsa.into())]),
            "ca.key",
        ),
        (
            "ca.key of another CA",
            StoredData::from([
                ca_crt.clone(),
                (CA_KEY_KEY.to_string(), other.key().to_pem().into_bytes()),
            ]),
            "belongs to no certificate",
        ),
        (
            "ca.key without ca.crt",
            StoredData::from([(CA_KEY_KEY.to_string(), ca.key().to_pem().into_bytes())]),
            "ca.key without a usable ca.crt",
        ),
        (
            "ca.crt that is garbage",
            StoredData::from([(CA_CRT_KEY.to_string(), b"SECRETSECRET".to_vec())]),
            "ca.crt",
        ),
        (
            "tls.crt that is garbage, with a key and a junk ca.crt",
            StoredData::from([
                (TLS_CRT_KEY.to_string(), b"\x00\xff SECRETSECRET".to_vec()),
                (
                    TLS_KEY_KEY.to_string(),
                    b"-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n"
                        .to_vec(),
                ),
                (CA_CRT_KEY.to_string(), b"junk".to_vec()),
            ]),
            "tls.crt",
        ),
    ];
    for (name, data, names) in cases {
        let store = InMemoryStore::with_data(data.clone());
        let err = driver(store.clone()).start().await.unwrap_err();
        let report = snafu::Report::from_error(&err).to_string();
        assert!(report.contains("left untouched"), "{name}: {report}");
        assert!(report.contains(names), "{name}: {report}");
        assert!(
            !report.contains("SECRET"),
            "{name}: the error quotes the material: {report}"
        );
        assert_eq!(store.snapshot().unwrap(), data, "{name}: overwritten");
    }
}

/// A state written by a newer release (a newer replica during a rolling update) is kept, and
/// a replica that already serves keeps serving its material.
#[tokio::test]
async fn newer_state_is_kept_not_rewritten() {
    let newer = StoredData::from([(
        STATE_KEY.to_string(),
        br#"{"version": 2, "layout": "SECRETSECRET"}"#.to_vec(),
    )]);
    let store = InMemoryStore::with_data(newer.clone());
    let err = driver(store.clone()).start().await.unwrap_err();
    let report = snafu::Report::from_error(&err).to_string();
    assert!(report.contains("newer release"), "{report}");
    assert!(!report.contains("SECRET"), "{report}");
    assert_eq!(store.snapshot().unwrap(), newer);

    // A running replica sees the newer state appear: it keeps serving, reports, writes nothing.
    let store = InMemoryStore::new();
    let running = driver(store.clone()).start().await.unwrap();
    let served = running.current();
    let mut status = running.status();
    store.set(Some(newer.clone()));
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| {
            s.error
                .as_deref()
                .is_some_and(|e| e.contains("newer release"))
        }),
    )
    .await
    .expect("the newer state was not reported")
    .unwrap();
    assert_eq!(*running.current(), *served);
    assert_eq!(store.snapshot().unwrap(), newer);
    running.shutdown().await;
}

/// A parse error of the state never quotes what was in it (serde quotes offending values).
#[test]
fn state_errors_do_not_quote_the_material() {
    let json = r#"{"version": 1, "stage": "stable", "authorities": [{"certificate": 7, "key": "-----BEGIN PRIVATE KEY-----SECRET", "addedAt": "SECRET"}]}"#;
    let err = RotationState::from_json(json).unwrap_err();
    let report = snafu::Report::from_error(&err).to_string();
    assert!(!report.contains("SECRET"), "{report}");
    assert!(report.contains("line 1"), "{report}");
}

/// The Secret lost while replicas run: the replica that repairs it writes back the state it
/// holds, so the CA keeps its identity (never a fresh CA while a replica holds one).
#[tokio::test]
async fn lost_store_is_restored_with_the_same_ca() {
    let store = InMemoryStore::new();
    let a = driver(store.clone()).start().await.unwrap();
    let b = driver(store.clone()).start().await.unwrap();
    let bundle = a.current().ca_bundle().clone();
    assert_eq!(b.current().ca_bundle(), &bundle);
    for loss in [
        None,
        Some(StoredData::new()),
        Some(StoredData::from([(
            STATE_KEY.to_string(),
            b"garbage".to_vec(),
        )])),
    ] {
        store.set(loss.clone());
        let restored = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(data) = store.snapshot()
                    && data.get(CA_CRT_KEY).map(|v| v.as_slice())
                        == Some(bundle.to_pem().as_bytes())
                {
                    break data;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{loss:?} was not restored with the same CA"));
        assert!(restored.contains_key(STATE_KEY));
        assert_eq!(a.current().ca_bundle(), &bundle);
        assert_eq!(b.current().ca_bundle(), &bundle);
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn provided_ca_is_adopted() {
    let ca = CertificateAuthority::new(&CaOptions::new("provided CA")).unwrap();
    let data = StoredData::from([
        (
            CA_CRT_KEY.to_string(),
            ca.certificate().to_pem().into_bytes(),
        ),
        (CA_KEY_KEY.to_string(), ca.key().to_pem().into_bytes()),
    ]);
    let store = InMemoryStore::with_data(data);
    let running = driver(store.clone()).start().await.unwrap();
    let m = running.current();
    assert!(m.leaf().is_issued_by(ca.certificate()));
    assert_eq!(m.ca_bundle().certificates(), [ca.certificate().clone()]);
    let stored = store.snapshot().unwrap();
    // The shared state is stored; the leaf is this replica's own and is not.
    assert!(stored.contains_key(STATE_KEY) && !stored.contains_key(TLS_CRT_KEY));
    running.shutdown().await;
}

#[tokio::test]
async fn invalid_policy_is_rejected() {
    let policy = RotationPolicy {
        renew_remaining_fraction: 1.5,
        ..RotationPolicy::default()
    };
    let err = RotationDriver::new(policy, leaf())
        .start()
        .await
        .unwrap_err();
    assert!(
        snafu::Report::from_error(err)
            .to_string()
            .contains("strictly between 0 and 1")
    );
}

/// 1-day CAs with 4-hour leaves, 10 minutes of overlap.
fn one_day_ca(propagation_delay: Duration, max_sleep: Duration) -> RotationPolicy {
    RotationPolicy {
        max_sleep,
        ..lifetimes(24 * 3600, 4 * 3600, propagation_delay.as_secs(), 600)
    }
}

/// The driver on a paused tokio clock: two simulated days with 1-day CAs. Every published
/// material verifies with its own bundle and with the previously published one.
#[tokio::test(start_paused = true)]
async fn driver_publishes_rotations() {
    let policy = one_day_ca(Duration::from_secs(600), Duration::from_secs(600));
    let (base, clock) = paused_clock();
    let running = driver_on(policy, InMemoryStore::new(), &clock)
        .start()
        .await
        .unwrap();
    let mut rx = running.subscribe();
    let mut previous = rx.borrow_and_update().clone();
    let mut updates = 0;
    let mut cas = std::collections::HashSet::new();
    while clock() < base + time::Duration::days(2) {
        tokio::time::timeout(Duration::from_secs(24 * 3600), rx.changed())
            .await
            .expect("no update within a day")
            .unwrap();
        let current = rx.borrow_and_update().clone();
        let now = clock();
        common::webpki_verify(current.ca_bundle(), current.leaf(), SERVICE_NAME, now).unwrap();
        common::webpki_verify(previous.ca_bundle(), current.leaf(), SERVICE_NAME, now)
            .unwrap_or_else(|e| panic!("previous bundle rejects the new leaf at {now}: {e}"));
        for ca in current.ca_bundle().certificates() {
            cas.insert(ca.der().to_vec());
        }
        previous = current;
        updates += 1;
    }
    assert!(updates >= 10, "only {updates} updates in two days");
    assert!(
        cas.len() >= 3,
        "expected at least two CA rotations, saw {} CAs",
        cas.len()
    );
    running.shutdown().await;
}

/// A wall-clock jump (suspend/resume, NTP step) is noticed within `max_sleep`, even though
/// the monotonic clock barely moved: the CA rotation that became due is started.
#[tokio::test(start_paused = true)]
async fn wall_clock_jump_is_noticed_within_max_sleep() {
    let policy = RotationPolicy {
        max_sleep: Duration::from_secs(60),
        ..RotationPolicy::default()
    };
    let (_, clock, jump) = jumping_clock();
    let running = driver_on(policy, InMemoryStore::new(), &clock)
        .start()
        .await
        .unwrap();
    let mut rx = running.subscribe();
    let first = rx.borrow_and_update().clone();
    assert_eq!(first.ca_bundle().len(), 1);
    // Nothing happens for an hour of monotonic time.
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), rx.changed())
            .await
            .is_err()
    );
    // The machine was suspended for 300 days: the CA (365 days) is due for rotation.
    jump.store(300 * 24 * 3600, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(61), rx.changed())
        .await
        .expect("the jump was not noticed within max_sleep")
        .unwrap();
    let after = rx.borrow_and_update().clone();
    assert_eq!(after.ca_bundle().len(), 2, "new CA staged into the bundle");
    assert!(
        after
            .ca_bundle()
            .contains(first.ca_bundle().certificates().first().unwrap())
    );
    running.shutdown().await;
}

/// A driver restarted in the middle of a CA rotation (sharing the store, as a restarted pod
/// shares the Secret) resumes the rotation instead of starting another one.
#[tokio::test(start_paused = true)]
async fn driver_restart_mid_rotation_resumes() {
    let policy = one_day_ca(Duration::from_secs(3600), Duration::from_secs(60));
    let (base, clock) = paused_clock();
    let store = InMemoryStore::new();
    let start = || driver_on(policy.clone(), store.clone(), &clock).start();

    let running = start().await.unwrap();
    let first_ca = running.current().ca_bundle().certificates()[0].clone();
    let mut rx = running.subscribe();
    // Run until the new CA is staged (two CAs in the bundle, leaf still from the first).
    loop {
        tokio::time::timeout(Duration::from_secs(24 * 3600), rx.changed())
            .await
            .unwrap()
            .unwrap();
        if rx.borrow_and_update().ca_bundle().len() == 2 {
            break;
        }
    }
    let staged = running.current();
    assert!(staged.leaf().is_issued_by(&first_ca));
    running.shutdown().await;

    // Restart: same bundle, a leaf from the same CA (each replica issues its own), no third
    // CA.
    let restarted = start().await.unwrap();
    assert_eq!(
        restarted.current().ca_bundle(),
        staged.ca_bundle(),
        "restart changed the bundle"
    );
    assert!(restarted.current().leaf().is_issued_by(&first_ca));
    let mut rx = restarted.subscribe();
    // The rotation continues: leaf from the new CA, then the old CA leaves the bundle.
    let second_ca = staged.ca_bundle().certificates()[1].clone();
    let mut switched = false;
    loop {
        tokio::time::timeout(Duration::from_secs(2 * 3600), rx.changed())
            .await
            .expect("rotation did not continue after the restart")
            .unwrap();
        let m = rx.borrow_and_update().clone();
        assert!(m.ca_bundle().len() <= 2, "a third CA appeared");
        if m.leaf().is_issued_by(&second_ca) {
            switched = true;
            assert!(
                clock() >= base + time::Duration::hours(16),
                "switched before the propagation delay"
            );
        }
        if m.ca_bundle().len() == 1 {
            assert!(switched);
            assert_eq!(
                m.ca_bundle().certificates(),
                std::slice::from_ref(&second_ca)
            );
            break;
        }
    }
    restarted.shutdown().await;
}

/// A replica that starts while its targets' watch has not published the CA yet (the CA is in
/// the store, the caBundle read back is still empty) serves a leaf at once and reports the
/// CA as published as soon as the watch says so, without waiting for `max_sleep`.
#[tokio::test]
async fn published_trust_arriving_after_start_is_seen_at_once() {
    use stackable_certs::rotation::PublishedTrust;
    use tokio::sync::watch;

    // The default max_sleep (60 s) is far beyond the 10 s this test waits.
    let policy = RotationPolicy::default();
    let store = InMemoryStore::new();
    // The first replica creates the CA (no targets observed).
    let first = RotationDriver::with_store(policy.clone(), leaf(), store.clone())
        .start()
        .await
        .unwrap();
    let ca = first.subscribe().borrow().ca_bundle().certificates()[0].clone();

    let (published_tx, published_rx) = watch::channel(PublishedTrust::observed([]));
    let second = RotationDriver::with_store(policy, leaf(), store.clone())
        .with_published_trust(published_rx)
        .start()
        .await
        .unwrap();
    let mut status = second.status();
    assert!(!status.borrow().issuer_published, "{:?}", *status.borrow());
    published_tx.send_replace(PublishedTrust::observed([ca]));
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.issuer_published),
    )
    .await
    .expect("the published CA was not seen within 10 s")
    .unwrap();
    second.shutdown().await;
    first.shutdown().await;
}
