//! Writing a bundle into one target with server-side apply, with retries and errors that
//! name the missing RBAC rule.
//!
//! The write is a server-side apply
//! (<https://kubernetes.io/docs/reference/using-api/server-side-apply/>) of the minimal body
//! from [`crate::patch`], with a dedicated field manager and `force` so the injector always
//! owns the caBundle fields and nothing else. The object is read first and nothing is
//! written when it already carries the bundle.

use std::time::Duration;

use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    core::DynamicObject,
};
use serde_json::Value;
use snafu::{ResultExt, Snafu};
use stackable_certs::CaBundle;

use crate::{
    patch::{self, PatchError},
    target::Target,
};

/// Why a bundle could not be written into a target.
#[derive(Debug, Snafu)]
pub enum ApplyError {
    /// The API server refused the request for lack of RBAC permission.
    #[snafu(display(
        "forbidden to {verb} {target}: the injector's service account needs the RBAC rule \"{rule}\" ({message})"
    ))]
    Forbidden {
        /// The target.
        target: String,
        /// The verb refused.
        verb: String,
        /// The missing rule, `verb resource.group name`.
        rule: String,
        /// The API server's message.
        message: String,
    },

    /// The target does not exist.
    #[snafu(display("{target} does not exist (needed for: {rule})"))]
    NotFound {
        /// The target.
        target: String,
        /// The rule that was being exercised.
        rule: String,
    },

    /// The target has no field to inject into.
    #[snafu(display("cannot inject into {target}"))]
    InvalidTarget {
        /// The target.
        target: String,
        /// What is missing.
        source: PatchError,
    },

    /// The API server rejected the apply (e.g. validation failed).
    #[snafu(display("the API server rejected the caBundle apply to {target}: {message}"))]
    Rejected {
        /// The target.
        target: String,
        /// The API server's message.
        message: String,
    },

    /// A transient error persisted through every retry.
    #[snafu(display("{verb} {target} failed after {attempts} attempts"))]
    Transient {
        /// The target.
        target: String,
        /// The verb.
        verb: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        source: kube::Error,
    },

    /// The object could not be represented as JSON.
    #[snafu(display("cannot read {target} as JSON"))]
    Serialize {
        /// The target.
        target: String,
        /// The serde error.
        source: serde_json::Error,
    },
}

impl ApplyError {
    /// Whether retrying later without a change elsewhere can help (transient API errors).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApplyError::Transient { .. })
    }
}

/// What [`Writer::inject`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The object already carried the bundle; nothing was written.
    Unchanged,
    /// The bundle was applied.
    Written,
}

/// Classification of one API error.
enum Failure {
    Retry(kube::Error),
    Fatal(ApplyError),
}

fn classify(target: &Target, verb: &str, error: kube::Error) -> Failure {
    if let kube::Error::Api(status) = &error {
        match status.code {
            403 => {
                // A server-side apply is authorized as `create` when the object does not
                // exist: name the verb the API server checked.
                let verb = refused_verb(&status.message).unwrap_or(verb);
                return Failure::Fatal(ApplyError::Forbidden {
                    target: target.to_string(),
                    verb: verb.to_owned(),
                    rule: target.rbac_rule(verb),
                    message: status.message.clone(),
                });
            }
            404 => {
                return Failure::Fatal(ApplyError::NotFound {
                    target: target.to_string(),
                    rule: target.rbac_rule(verb),
                });
            }
            400 | 422 => {
                return Failure::Fatal(ApplyError::Rejected {
                    target: target.to_string(),
                    message: status.message.clone(),
                });
            }
            _ => {}
        }
    }
    Failure::Retry(error)
}

/// Writes bundles into targets with one field manager.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    field_manager: String,
    attempts: u32,
    first_backoff: Duration,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("field_manager", &self.field_manager)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer applying as `field_manager`.
    pub fn new(client: Client, field_manager: impl Into<String>) -> Self {
        Self {
            client,
            field_manager: field_manager.into(),
            attempts: 5,
            first_backoff: Duration::from_millis(100),
        }
    }

    /// The field manager.
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn api(&self, target: &Target) -> Api<DynamicObject> {
        let ar = target.kind().api_resource();
        match target.namespace() {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    async fn with_retries<T, F, Fut>(
        &self,
        target: &Target,
        verb: &str,
        mut f: F,
    ) -> Result<T, ApplyError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut delay = self.first_backoff;
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(value) => return Ok(value),
                Err(error) => match classify(target, verb, error) {
                    Failure::Fatal(error) => return Err(error),
                    Failure::Retry(error) if attempt >= self.attempts => {
                        return Err(ApplyError::Transient {
                            target: target.to_string(),
                            verb: verb.to_owned(),
                            attempts: attempt,
                            source: error,
                        });
                    }
                    Failure::Retry(error) => {
                        tracing::debug!(%target, verb, attempt, %error, "retrying after a transient error");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                        attempt += 1;
                    }
                },
            }
        }
    }

    /// Reads the target as JSON.
    pub async fn get(&self, target: &Target) -> Result<Value, ApplyError> {
        let api = self.api(target);
        let object = self
            .with_retries(target, "get", || api.get(target.name()))
            .await?;
        serde_json::to_value(&object).context(SerializeSnafu {
            target: target.to_string(),
        })
    }

    /// Writes `bundle` into `target` unless it is already there.
    pub async fn inject(&self, target: &Target, bundle: &CaBundle) -> Result<Outcome, ApplyError> {
        let current = self.get(target).await?;
        self.inject_into(target, &current, bundle).await
    }

    /// Writes `bundle` and the annotations this writer owns (`annotations` set, other keys of
    /// `owned` removed) into `target`, unless `current` already carries exactly that (see
    /// [`patch::apply_body_with_annotations`]).
    pub async fn inject_with_annotations(
        &self,
        target: &Target,
        current: &Value,
        bundle: &CaBundle,
        annotations: &std::collections::BTreeMap<String, String>,
        owned: &[&str],
    ) -> Result<Outcome, ApplyError> {
        let pem = bundle.to_pem();
        let body = patch::apply_body_with_annotations(target, current, &pem, annotations, owned)
            .context(InvalidTargetSnafu {
                target: target.to_string(),
            })?;
        self.apply(target, body, bundle.len()).await
    }

    /// Server-side applies a whole object the operator installs (see [`crate::install`]), with
    /// `force`: the operator owns every field of `body`, and only those.
    pub async fn apply_installed(&self, target: &Target, body: &Value) -> Result<(), ApplyError> {
        self.apply(target, Some(body.clone()), 0).await.map(|_| ())
    }

    /// Writes `bundle` into `target` unless `current` (the object as last read) already
    /// carries it.
    pub async fn inject_into(
        &self,
        target: &Target,
        current: &Value,
        bundle: &CaBundle,
    ) -> Result<Outcome, ApplyError> {
        let pem = bundle.to_pem();
        let body = patch::apply_body(target, current, &pem).context(InvalidTargetSnafu {
            target: target.to_string(),
        })?;
        self.apply(target, body, bundle.len()).await
    }

    async fn apply(
        &self,
        target: &Target,
        body: Option<Value>,
        certificates: usize,
    ) -> Result<Outcome, ApplyError> {
        let Some(body) = body else {
            return Ok(Outcome::Unchanged);
        };
        let api = self.api(target);
        let params = PatchParams::apply(&self.field_manager).force();
        let patch = Patch::Apply(&body);
        self.with_retries(target, "patch", || {
            api.patch(target.name(), &params, &patch)
        })
        .await?;
        tracing::info!(%target, field_manager = %self.field_manager, certificates, "injected caBundle");
        Ok(Outcome::Written)
    }
}

/// The verb in the API server's `User "x" cannot <verb> resource ...` message.
fn refused_verb(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once(" cannot ")?;
    let verb = rest.split(' ').next()?;
    (!verb.is_empty() && verb.chars().all(|c| c.is_ascii_lowercase())).then_some(verb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("no", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    /// A fake API server: answers each request from a script and records the calls.
    fn scripted_client(
        script: Vec<(u16, serde_json::Value)>,
    ) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let script = std::sync::Arc::new(std::sync::Mutex::new(
            script
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        let recorded = calls.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            recorded
                .lock()
                .unwrap()
                .push(format!("{} {}", request.method(), request.uri().path()));
            let (status, body) = script
                .lock()
                .unwrap()
                .pop_front()
                .expect("script exhausted");
            async move {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                )
            }
        });
        (Client::new(service, "default"), calls)
    }

    fn status_body(code: u16, reason: &str) -> serde_json::Value {
        serde_json::json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": format!("scripted {code}"), "reason": reason, "code": code })
    }

    fn api_service(ca_bundle: Option<&str>) -> serde_json::Value {
        let mut spec = serde_json::json!({ "group": "x.io", "version": "v1" });
        if let Some(b) = ca_bundle {
            spec["caBundle"] = serde_json::json!(b);
        }
        serde_json::json!({ "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                            "metadata": { "name": "v1.x.io", "resourceVersion": "1" }, "spec": spec })
    }

    fn ca() -> CaBundle {
        CaBundle::from_pem(include_str!("../tests/fixtures/ca-a.pem")).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_and_conflicts_are_retried() {
        let (client, calls) = scripted_client(vec![
            (500, status_body(500, "InternalError")),
            (200, api_service(None)),
            (409, status_body(409, "Conflict")),
            (429, status_body(429, "TooManyRequests")),
            (200, api_service(Some("x"))),
        ]);
        let outcome = Writer::new(client, "test")
            .inject(&Target::api_service("v1.x.io"), &ca())
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Written);
        let calls = calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![
                "GET /apis/apiregistration.k8s.io/v1/apiservices/v1.x.io",
                "GET /apis/apiregistration.k8s.io/v1/apiservices/v1.x.io",
                "PATCH /apis/apiregistration.k8s.io/v1/apiservices/v1.x.io",
                "PATCH /apis/apiregistration.k8s.io/v1/apiservices/v1.x.io",
                "PATCH /apis/apiregistration.k8s.io/v1/apiservices/v1.x.io",
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_write_when_already_injected_and_transient_gives_up() {
        let encoded = crate::patch::encode_ca_bundle(&ca().to_pem());
        let (client, calls) = scripted_client(vec![(200, api_service(Some(&encoded)))]);
        let outcome = Writer::new(client, "test")
            .inject(&Target::api_service("v1.x.io"), &ca())
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Unchanged);
        assert_eq!(calls.lock().unwrap().len(), 1, "only the GET");

        let (client, calls) =
            scripted_client(vec![(503, status_body(503, "ServiceUnavailable")); 5]);
        let error = Writer::new(client, "test")
            .inject(&Target::api_service("v1.x.io"), &ca())
            .await
            .unwrap_err();
        assert!(error.is_transient());
        assert_eq!(calls.lock().unwrap().len(), 5);
        assert!(error.to_string().contains("after 5 attempts"), "{error}");

        let (client, calls) = scripted_client(vec![
            (200, api_service(None)),
            (403, status_body(403, "Forbidden")),
        ]);
        let error = Writer::new(client, "test")
            .inject(&Target::api_service("v1.x.io"), &ca())
            .await
            .unwrap_err();
        assert!(matches!(error, ApplyError::Forbidden { .. }));
        assert_eq!(calls.lock().unwrap().len(), 2, "403 is not retried");
    }

    #[test]
    fn forbidden_names_the_verb_the_api_server_checked() {
        assert_eq!(
            refused_verb(
                r#"customresourcedefinitions.apiextensions.k8s.io "a.b" is forbidden: User "u" cannot create resource "customresourcedefinitions" in API group "apiextensions.k8s.io" at the cluster scope"#
            ),
            Some("create")
        );
        assert_eq!(refused_verb("Forbidden"), None);
        assert_eq!(refused_verb("x cannot Be"), None);
    }

    #[test]
    fn forbidden_names_the_rule() {
        let target = Target::crd("crontabs.example.com");
        let Failure::Fatal(error) = classify(&target, "patch", api_error(403)) else {
            panic!("403 must not be retried");
        };
        let message = error.to_string();
        assert!(
            message.contains(
                "\"patch customresourcedefinitions.apiextensions.k8s.io crontabs.example.com\""
            ),
            "{message}"
        );
        assert!(!error.is_transient());
    }

    #[test]
    fn not_found_and_rejected_are_permanent_others_retry() {
        let target = Target::config_map("ns", "trust");
        let Failure::Fatal(error) = classify(&target, "get", api_error(404)) else {
            panic!("404 must not be retried");
        };
        assert_eq!(
            error.to_string(),
            "ConfigMap ns/trust does not exist (needed for: get configmaps trust (namespace ns))"
        );
        assert!(matches!(
            classify(&target, "patch", api_error(422)),
            Failure::Fatal(ApplyError::Rejected { .. })
        ));
        for code in [409, 429, 500, 503] {
            assert!(matches!(
                classify(&target, "patch", api_error(code)),
                Failure::Retry(_)
            ));
        }
    }
}
