//! Through the real kube-apiserver (stackable-testenv): which `traceparent` the API server sends
//! on its webhook calls, as recorded by the `webhook` span (`trace_id`, `parent_span_id`).
//!
//! With tracing on (`--tracing-config-file`, every request sampled):
//! - A client in `system:masters` (the test environment's admin) that sends its own
//!   `traceparent` has its trace continued: the webhook sees the client's `trace_id`, and as
//!   `parent_span_id` a span of the API server's (not the client's span).
//! - A request without a `traceparent` gets a trace of the API server's own.
//! - The trust is decided on the authenticated user, before impersonation: the admin
//!   impersonating a plain user is still continued.
//! - A client outside `system:masters`/`system:monitoring` (a ServiceAccount token) does not
//!   choose the trace: the API server starts a new one (k8s.io/apiserver's `WithTracing` filter,
//!   `otelhttp.WithPublicEndpointFn(notSystemPrivilegedGroup)`, sits right inside
//!   `WithAuthentication`; the client's context is only a link of the new root span).
//!
//! Without a tracing configuration the API server has a no-op tracer but still propagates: any
//! client's `traceparent` reaches the webhook unchanged (the client's own span as the parent),
//! and a request without one has none.
//!
//! With the `otel` feature, the span's OpenTelemetry parent is the remote API server span, in
//! the client's trace, sampled or not as the client's flags say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::HashMap, net::TcpListener, time::Duration};

use common::{Captured, local_builder, start, stop};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration,
    authentication::v1::TokenRequest,
    core::v1::{ConfigMap, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client,
    api::PostParams,
    client::Body,
    core::{Request, admission::AdmissionRequest},
};
use serde_json::{Value, json};
use stackable_telemetry::{LogFilter, LogFormat, Telemetry};
use stackable_testenv::{
    TestEnv,
    webhooks::{LocalWebhook, create_until, namespace_with_service, validating_configuration},
};
use stackable_webhook::{CertSource, Validation, WebhookServerBuilder};
use tempfile::TempDir;

/// The trace and span of the "client" (this test) that calls the API server.
const CLIENT_TRACE_ID: &str = "5f0d6a7c1e2b4c3d8e9fa0b1c2d3e4f5";
const CLIENT_SPAN_ID: &str = "1a2b3c4d5e6f7081";

/// A user outside `system:masters`, allowed by RBAC to create ConfigMaps in the test namespace
/// (the admin impersonates it).
const PLAIN_USER: &str = "trace-e2e-user";

/// A ServiceAccount allowed to create ConfigMaps in the test namespace (a client of its own).
const SERVICE_ACCOUNT: &str = "trace-e2e";

/// The API server's tracing configuration (`apiserver.config.k8s.io/v1`, served since 1.34):
/// every request sampled, spans exported over OTLP/gRPC to `endpoint`. Nothing listens there in
/// these tests: the API server starts and serves all the same (its exporter dials lazily), and
/// the propagation to webhooks does not depend on the export.
fn tracing_configuration(endpoint: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\n\
         kind: TracingConfiguration\n\
         endpoint: {endpoint}\n\
         samplingRatePerMillion: 1000000\n"
    )
}

/// A loopback address nothing listens on (bound once to get a free port, then released).
fn unused_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The `--tracing-config-file` flag of an API server that traces every request, with the
/// configuration file written in `dir` (which must live as long as the API server).
fn tracing_flag(dir: &TempDir) -> String {
    let config = dir.path().join("tracing.yaml");
    std::fs::write(&config, tracing_configuration(&unused_endpoint())).unwrap();
    format!("--tracing-config-file={}", config.display())
}

/// Registers `server`'s `/validate` for creating ConfigMaps in `namespace` and waits until the
/// API server calls it (the handler refuses ConfigMaps named `probe`).
async fn register(client: &Client, namespace: &str, port: u16, ca_bundle: &str) {
    let webhook = LocalWebhook::service(
        "trace.validate.example.com",
        namespace,
        "hook",
        port,
        "/validate",
    )
    .ca_bundle(ca_bundle)
    .rule("", "v1", "configmaps", &["CREATE"])
    .in_namespace(namespace)
    .timeout_seconds(10);
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &validating_configuration(&format!("{namespace}-trace"), [webhook]),
        )
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let probe: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "probe"}})).unwrap();
    create_until(
        &config_maps,
        &probe,
        Duration::from_secs(60),
        |outcome| matches!(outcome, Err(error) if error.to_string().contains("probe refused")),
    )
    .await
    .expect("the webhook never became active")
    .unwrap_err();
}

/// The validating handler: refuses the probe, admits the rest, and logs a line in its span.
fn validating(builder: WebhookServerBuilder) -> WebhookServerBuilder {
    builder.validating(
        "/validate",
        |request: AdmissionRequest<ConfigMap>| async move {
            tracing::info!("validating");
            if request.name == "probe" {
                Validation::deny("probe refused")
            } else {
                Validation::allow()
            }
        },
    )
}

/// Creates the ConfigMap `name` with a raw request carrying `headers` (a `traceparent`,
/// `Impersonate-User`), which kube's typed API cannot add per request.
async fn create_with_headers(
    client: &Client,
    namespace: &str,
    name: &str,
    headers: &[(&str, &str)],
) {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    let mut request = Request::new(format!("/api/v1/namespaces/{namespace}/configmaps"))
        .create(&PostParams::default(), serde_json::to_vec(&body).unwrap())
        .unwrap()
        .map(Body::from);
    for (header, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let response = client.send(request).await.unwrap();
    assert!(
        response.status().is_success(),
        "creating {name}: {:?}",
        response.status()
    );
}

/// Lets [`PLAIN_USER`] and the ServiceAccount [`SERVICE_ACCOUNT`] create ConfigMaps in
/// `namespace` (RBAC), and returns a client authenticated as that ServiceAccount (a token of a
/// TokenRequest; groups `system:serviceaccounts`, `system:authenticated`).
async fn unprivileged_client(env: &TestEnv, admin: &Client, namespace: &str) -> Client {
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": SERVICE_ACCOUNT}})).unwrap();
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), namespace);
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "create-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "create-configmaps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "create-configmaps"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": PLAIN_USER},
            {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
        ]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let token_request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .unwrap();
    let token = accounts
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &token_request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let mut config = env.config().clone();
    // The token alone: no client certificate of the admin's.
    config.auth_info = serde_json::from_value(json!({"token": token})).unwrap();
    Client::try_from(config).unwrap()
}

fn client_traceparent(flags: &str) -> String {
    format!("00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-{flags}")
}

fn is_id(value: &Value, len: usize) -> bool {
    value.as_str().is_some_and(|id| {
        id.len() == len
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && id.bytes().any(|b| b != b'0')
    })
}

/// The `webhook` spans (by ConfigMap name) of four creations through an API server started with
/// `apiserver_flags`, each sent with the client's `traceparent` except `untraced`:
/// `traced` (the admin, in `system:masters`), `untraced` (the admin, no header), `impersonated`
/// (the admin impersonating [`PLAIN_USER`]) and `service-account` (a ServiceAccount's token).
///
/// Runs on the caller's thread, whose default subscriber captures the server's lines (the
/// caller's runtime must be `current_thread`).
async fn webhook_spans(apiserver_flags: Vec<String>) -> HashMap<String, Value> {
    let captured = Captured::default();
    let writer = captured.clone();
    let (dispatch, _guard) = Telemetry::new("test")
        .format(LogFormat::Json)
        .filter(LogFilter::new("warn,stackable_webhook=info,e2e_traceparent=info").unwrap())
        .dispatch(move || writer.clone())
        .unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);

    let mut builder = TestEnv::builder();
    for flag in apiserver_flags {
        builder = builder.apiserver_flag(flag);
    }
    let env = builder.start().await.unwrap();
    let (namespace, leaf) = namespace_with_service(&env, "trace-e2e", "hook")
        .await
        .unwrap();
    let server = start(validating(
        local_builder().certificates(CertSource::in_memory(leaf)),
    ))
    .await;
    let client = env.client().unwrap();
    register(
        &client,
        &namespace,
        server.local_addr().port(),
        &server.ca_bundle_pem().unwrap(),
    )
    .await;
    let service_account = unprivileged_client(&env, &client, &namespace).await;

    let traceparent = client_traceparent("01");
    let with_traceparent = [("traceparent", traceparent.as_str())];
    let impersonating = [
        ("traceparent", traceparent.as_str()),
        ("impersonate-user", PLAIN_USER),
    ];
    for (client, name, headers) in [
        (&client, "traced", &with_traceparent[..]),
        (&client, "untraced", &[][..]),
        (&client, "impersonated", &impersonating[..]),
        (&service_account, "service-account", &with_traceparent[..]),
    ] {
        create_with_headers(client, &namespace, name, headers).await;
    }
    stop(server).await;

    let lines = captured.lines();
    ["traced", "untraced", "impersonated", "service-account"]
        .into_iter()
        .map(|name| {
            let line = lines
                .iter()
                .find(|l| l["span"]["name"] == name && l["fields"]["message"] == "validating")
                .unwrap_or_else(|| panic!("no handler line of {name}: {lines:#?}"));
            (name.to_owned(), line["span"].clone())
        })
        .collect()
}

// One thread: the server's tasks run on the thread whose default subscriber captures them.
#[tokio::test(flavor = "current_thread")]
async fn the_api_server_continues_a_privileged_clients_trace_to_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let spans = webhook_spans(vec![tracing_flag(&dir)]).await;

    // The admin's trace is continued: same trace, the parent is a span of the API server's.
    let traced = &spans["traced"];
    assert_eq!(traced["trace_id"], CLIENT_TRACE_ID, "{traced}");
    assert!(is_id(&traced["parent_span_id"], 16), "{traced}");
    assert_ne!(traced["parent_span_id"], CLIENT_SPAN_ID, "{traced}");

    // Without a traceparent the API server starts a trace of its own.
    let untraced = &spans["untraced"];
    assert!(is_id(&untraced["trace_id"], 32), "{untraced}");
    assert_ne!(untraced["trace_id"], CLIENT_TRACE_ID, "{untraced}");
    assert!(is_id(&untraced["parent_span_id"], 16), "{untraced}");

    // The API server decides whether to trust the client's trace on the authenticated user, before
    // impersonation: the admin impersonating a plain user still continues its trace.
    let impersonated = &spans["impersonated"];
    assert_eq!(impersonated["trace_id"], CLIENT_TRACE_ID, "{impersonated}");
    assert!(is_id(&impersonated["parent_span_id"], 16), "{impersonated}");
    assert_ne!(
        impersonated["parent_span_id"], CLIENT_SPAN_ID,
        "{impersonated}"
    );

    // A client outside system:masters/system:monitoring does not choose the trace: a new one.
    let outsider = &spans["service-account"];
    assert!(is_id(&outsider["trace_id"], 32), "{outsider}");
    assert_ne!(outsider["trace_id"], CLIENT_TRACE_ID, "{outsider}");
    assert_ne!(outsider["trace_id"], untraced["trace_id"], "{outsider}");
    assert!(is_id(&outsider["parent_span_id"], 16), "{outsider}");
}

// One thread: the server's tasks run on the thread whose default subscriber captures them.
#[tokio::test(flavor = "current_thread")]
async fn without_a_tracing_configuration_the_api_server_only_passes_the_clients_traceparent_on() {
    let spans = webhook_spans(Vec::new()).await;
    // No tracer of its own (a no-op OpenTelemetry provider), but the propagators still run: the
    // client's header reaches the webhook unchanged, whoever the client is...
    for name in ["traced", "impersonated", "service-account"] {
        let span = &spans[name];
        assert_eq!(span["trace_id"], CLIENT_TRACE_ID, "{name}: {span}");
        assert_eq!(span["parent_span_id"], CLIENT_SPAN_ID, "{name}: {span}");
    }
    // ...and without one there is none.
    let untraced = &spans["untraced"];
    assert!(untraced.get("trace_id").is_none(), "{untraced}");
    assert!(untraced.get("parent_span_id").is_none(), "{untraced}");
}

/// With the `otel` feature the span's OpenTelemetry parent is the API server's span: remote, in
/// the client's trace, and sampled as the client's flags say (the API server samples by parent).
#[cfg(feature = "otel")]
#[tokio::test(flavor = "current_thread")]
async fn the_request_span_continues_the_api_servers_trace_in_opentelemetry() {
    use opentelemetry::trace::{SpanContext, TraceContextExt as _};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer());
    let _default = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let env = TestEnv::builder()
        .apiserver_flag(tracing_flag(&dir))
        .start()
        .await
        .unwrap();
    let (namespace, leaf) = namespace_with_service(&env, "trace-otel-e2e", "hook")
        .await
        .unwrap();
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, SpanContext)>>> =
        std::sync::Arc::default();
    let record = seen.clone();
    let server = start(
        local_builder()
            .certificates(CertSource::in_memory(leaf))
            .validating("/validate", move |request: AdmissionRequest<ConfigMap>| {
                let context = tracing::Span::current().context();
                let span_context = context.span().span_context().clone();
                record
                    .lock()
                    .unwrap()
                    .push((request.name.clone(), span_context));
                let name = request.name;
                async move {
                    if name == "probe" {
                        Validation::deny("probe refused")
                    } else {
                        Validation::allow()
                    }
                }
            }),
    )
    .await;
    let client = env.client().unwrap();
    register(
        &client,
        &namespace,
        server.local_addr().port(),
        &server.ca_bundle_pem().unwrap(),
    )
    .await;
    create_with_headers(
        &client,
        &namespace,
        "sampled",
        &[("traceparent", &client_traceparent("01"))],
    )
    .await;
    create_with_headers(
        &client,
        &namespace,
        "unsampled",
        &[("traceparent", &client_traceparent("00"))],
    )
    .await;
    stop(server).await;

    let seen = seen.lock().unwrap();
    let context = |name: &str| {
        seen.iter()
            .find(|(seen_name, _)| seen_name == name)
            .unwrap_or_else(|| panic!("the handler did not see {name}"))
            .1
            .clone()
    };
    for (name, sampled) in [("sampled", true), ("unsampled", false)] {
        let parent = context(name);
        assert_eq!(parent.trace_id().to_string(), CLIENT_TRACE_ID, "{name}");
        assert_ne!(parent.span_id().to_string(), CLIENT_SPAN_ID, "{name}");
        assert!(parent.is_valid(), "{name}");
        assert!(parent.is_remote(), "{name}");
        assert_eq!(parent.is_sampled(), sampled, "{name}");
    }
}
