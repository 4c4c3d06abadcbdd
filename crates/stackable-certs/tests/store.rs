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
    // Someone filled the Secret with garbage first.
    let mut garbage = StoredData::new();
    garbage.insert(TLS_CRT_KEY.into(), b"not a certificate".to_vec());
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
        StoredData::from([
            (TLS_CRT_KEY.to_string(), b"\x00\xff garbage".to_vec()),
            (
                TLS_KEY_KEY.to_string(),
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
            ),
            (CA_CRT_KEY.to_string(), b"junk".to_vec()),
        ]),
    ] {
        let store = InMemoryStore::with_data(garbage.clone());
        let running = driver(store.clone()).start().await.unwrap();
        let data = store.snapshot().unwrap();
        assert_ne!(data, garbage);
        assert!(data.contains_key(STATE_KEY));
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
    assert!(stored.contains_key(STATE_KEY) && stored.contains_key(TLS_CRT_KEY));
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

    // Restart: same bundle, same leaf, no third CA.
    let restarted = start().await.unwrap();
    assert_eq!(
        *restarted.current(),
        *staged,
        "restart changed the material"
    );
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
