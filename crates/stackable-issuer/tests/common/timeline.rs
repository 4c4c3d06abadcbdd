//! Recording what a watch sees: every distinct `Ready` state of each object, in order, so a
//! test can assert transitions that last only a moment (`Initializing`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use kube::{Api, Resource, ResourceExt};
use stackable_issuer::api::CertificateRequest;

use super::ready_of;

/// Every distinct `Ready` (status, reason) each object of a kind went through, in order, as a
/// watch saw them.
#[derive(Clone, Debug, Default)]
pub struct Timeline(Arc<Mutex<States>>);

/// The (status, reason) pairs seen per object name.
type States = HashMap<String, Vec<(String, String)>>;

impl Timeline {
    pub fn record<K>(
        api: Api<K>,
        ready: fn(&K) -> Option<(String, String)>,
    ) -> (Self, tokio::task::JoinHandle<()>)
    where
        K: Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        use futures::StreamExt as _;
        use kube::runtime::{WatchStreamExt as _, watcher};
        let timeline = Timeline::default();
        let states = timeline.0.clone();
        let task = tokio::spawn(async move {
            let mut stream =
                std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
            while let Some(Ok(object)) = stream.next().await {
                let Some(state) = ready(&object) else {
                    continue;
                };
                let mut states = states.lock().unwrap();
                let seen = states.entry(object.name_any()).or_default();
                if seen.last() != Some(&state) {
                    seen.push(state);
                }
            }
        });
        (timeline, task)
    }

    fn of(&self, name: &str) -> Vec<(String, String)> {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Asserts that `name` went through exactly `expected`, in order. The watch may lag behind
    /// the GET that saw the last state, so this waits (up to 10 s) for the watch to deliver
    /// that last state before comparing: events of one object arrive in order, so by then every
    /// state before it has arrived too.
    pub async fn assert_states(&self, name: &str, expected: &[(&str, &str)]) {
        let expected = states(expected);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.of(name).last() != expected.last() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(
            self.of(name),
            expected,
            "the Ready states {name} went through"
        );
    }
}

/// `(status, reason)` pairs, for comparing timelines.
pub fn states(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(s, r)| (s.to_string(), r.to_string()))
        .collect()
}

pub fn request_ready(request: &CertificateRequest) -> Option<(String, String)> {
    ready_of(request).map(|(s, r, _)| (s, r))
}

pub fn issuer_ready<K: stackable_issuer::IssuerResource>(issuer: &K) -> Option<(String, String)> {
    issuer
        .ready_condition()
        .map(|c| (c.status.clone(), c.reason.clone()))
}
