//! Prometheus metrics of the webhook server, served in the text exposition format on `/metrics`
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Counted: requests per route and outcome, request latency per route, handler panics,
//! certificate swaps, certificate reload errors, and the `notAfter` of the served certificate.
//!
//! Alongside, the metrics of controller-runtime's webhook server under its names and labels
//! (`sigs.k8s.io/controller-runtime/pkg/webhook/internal/metrics`), so that dashboards and alerts
//! written for Go operators work unchanged: `controller_runtime_webhook_requests_total{webhook,code}`
//! (`webhook` is the route path, `code` the HTTP status), `controller_runtime_webhook_latency_seconds{webhook}`,
//! `controller_runtime_webhook_requests_in_flight{webhook}` and `controller_runtime_webhook_panics_total`.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of the per-request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// The route path (bounded: only mounted routes, or "unknown").
    pub(crate) route: String,
    /// "allowed", "denied", "patched", "converted", "error", "panic", ...
    pub(crate) outcome: String,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    /// The route path.
    pub(crate) route: String,
}

/// Labels of controller-runtime's request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WebhookCodeLabels {
    /// The route path.
    pub(crate) webhook: String,
    /// The HTTP status code of the answer.
    pub(crate) code: String,
}

/// Labels of controller-runtime's latency histogram and in-flight gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WebhookLabels {
    /// The route path.
    pub(crate) webhook: String,
}

/// The metrics controller-runtime's webhook server exports, under its names.
#[derive(Clone, Debug)]
pub(crate) struct ControllerRuntime {
    pub(crate) requests: Family<WebhookCodeLabels, Counter>,
    pub(crate) latency: Family<WebhookLabels, Histogram, fn() -> Histogram>,
    pub(crate) in_flight: Family<WebhookLabels, Gauge>,
    pub(crate) panics: Counter,
}

/// Counts one request in flight on a route until dropped (also when the connection is cut).
#[derive(Debug)]
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The metric handles of one mounted webhook route, looked up in their families on the route's
/// first request and kept, so that a request records without building label strings or looking
/// them up (before: 7 small allocations and 5 map look-ups per request). The series appear on
/// `/metrics` when they did before: with the first request that records them.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    /// The route path (the `route` and `webhook` label).
    pub(crate) route: String,
    in_flight: OnceLock<Gauge>,
    latency: OnceLock<Histogram>,
    controller_runtime_latency: OnceLock<Histogram>,
    /// `webhook_requests_total` by outcome (few values: a linear search).
    by_outcome: Mutex<Vec<(&'static str, Counter)>>,
    /// `controller_runtime_webhook_requests_total` by HTTP status code.
    by_code: Mutex<Vec<(u16, Counter)>>,
}

impl RouteMetrics {
    pub(crate) fn new(route: &str) -> Self {
        Self {
            route: route.to_owned(),
            in_flight: OnceLock::new(),
            latency: OnceLock::new(),
            controller_runtime_latency: OnceLock::new(),
            by_outcome: Mutex::new(Vec::new()),
            by_code: Mutex::new(Vec::new()),
        }
    }
}

/// The counter cached under `key`, else `create`d and cached.
fn cached<K: PartialEq + Copy>(
    cache: &Mutex<Vec<(K, Counter)>>,
    key: K,
    create: impl FnOnce() -> Counter,
) -> Counter {
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, counter)) = cache.iter().find(|(cached, _)| *cached == key) {
        return counter.clone();
    }
    let counter = create();
    cache.push((key, counter.clone()));
    counter
}

/// Labels of the readiness gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CheckLabels {
    /// The readiness check (`certificate`, `not-draining`, or a named check).
    pub(crate) check: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~4 s: webhook calls time out after 10 s at most in the API server.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// The metric handles of one server. Cheap to clone (all handles are `Arc`s inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub(crate) panics: Counter,
    pub(crate) cert_swaps: Counter,
    pub(crate) cert_reload_errors: Counter,
    pub(crate) cert_expiry: Gauge<i64>,
    pub(crate) tls_handshake_failures: Counter,
    pub(crate) ready: Family<CheckLabels, Gauge>,
    pub(crate) controller_runtime: ControllerRuntime,
    registry: Arc<Mutex<Registry>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metrics and a registry holding them: ours with the prefix `webhook`, and
    /// controller-runtime's under their own names.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let controller_runtime = ControllerRuntime {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Family::default(),
            panics: Counter::default(),
        };
        {
            let registry = root.sub_registry_with_prefix("controller_runtime_webhook");
            registry.register(
                "requests",
                "Total number of admission requests by HTTP status code (controller-runtime's name)",
                controller_runtime.requests.clone(),
            );
            registry.register(
                "latency_seconds",
                "Histogram of the latency of processing admission requests (controller-runtime's name)",
                controller_runtime.latency.clone(),
            );
            registry.register(
                "requests_in_flight",
                "Current number of admission requests being served (controller-runtime's name)",
                controller_runtime.in_flight.clone(),
            );
            registry.register(
                "panics",
                "Webhook handler panics (controller-runtime's name)",
                controller_runtime.panics.clone(),
            );
        }
        let registry = root.sub_registry_with_prefix("webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let panics = Counter::default();
        let cert_swaps = Counter::default();
        let cert_reload_errors = Counter::default();
        let cert_expiry = Gauge::<i64>::default();
        let tls_handshake_failures = Counter::default();
        let ready = Family::<CheckLabels, Gauge>::default();
        registry.register(
            "ready",
            "Readiness checks of /readyz (1 passing, 0 failing), as last evaluated",
            ready.clone(),
        );
        registry.register(
            "requests",
            "Webhook requests by route and outcome",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Webhook request latency by route",
            latency.clone(),
        );
        registry.register(
            "handler_panics",
            "Panics caught in user handlers",
            panics.clone(),
        );
        registry.register(
            "cert_swaps",
            "Serving certificate swaps",
            cert_swaps.clone(),
        );
        registry.register(
            "cert_reload_errors",
            "Certificate reloads refused (unreadable, half-written or mismatched pairs)",
            cert_reload_errors.clone(),
        );
        registry.register(
            "cert_expiry_timestamp_seconds",
            "notAfter of the currently served leaf certificate (Unix seconds)",
            cert_expiry.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_handshake_failures.clone(),
        );
        Self {
            requests,
            latency,
            panics,
            cert_swaps,
            cert_reload_errors,
            cert_expiry,
            tls_handshake_failures,
            ready,
            controller_runtime,
            registry: Arc::new(Mutex::new(root)),
        }
    }

    /// Registers an extra metric of the operator so it is served on the same `/metrics` route.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sub_registry_with_prefix("webhook")
            .register(name, help, metric);
    }

    pub(crate) fn observe(&self, route: &str, outcome: &str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts a request on a webhook route as in flight until the returned guard is dropped.
    pub(crate) fn start_webhook_request(&self, route: &RouteMetrics) -> InFlight {
        let gauge = route
            .in_flight
            .get_or_init(|| {
                self.controller_runtime
                    .in_flight
                    .get_or_create(&WebhookLabels {
                        webhook: route.route.clone(),
                    })
                    .clone()
            })
            .clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Records an answered request of a webhook route: ours by outcome, controller-runtime's
    /// by HTTP status code.
    pub(crate) fn observe_webhook(
        &self,
        route: &RouteMetrics,
        outcome: &'static str,
        status: u16,
        seconds: f64,
    ) {
        cached(&route.by_outcome, outcome, || {
            self.requests
                .get_or_create(&RequestLabels {
                    route: route.route.clone(),
                    outcome: outcome.to_owned(),
                })
                .clone()
        })
        .inc();
        route
            .latency
            .get_or_init(|| {
                self.latency
                    .get_or_create(&RouteLabels {
                        route: route.route.clone(),
                    })
                    .clone()
            })
            .observe(seconds);
        cached(&route.by_code, status, || {
            self.controller_runtime
                .requests
                .get_or_create(&WebhookCodeLabels {
                    webhook: route.route.clone(),
                    code: status.to_string(),
                })
                .clone()
        })
        .inc();
        route
            .controller_runtime_latency
            .get_or_init(|| {
                self.controller_runtime
                    .latency
                    .get_or_create(&WebhookLabels {
                        webhook: route.route.clone(),
                    })
                    .clone()
            })
            .observe(seconds);
        if outcome == "panic" {
            self.panics.inc();
            self.controller_runtime.panics.inc();
        }
    }

    pub(crate) fn set_ready(&self, check: &str, ready: bool) {
        self.ready
            .get_or_create(&CheckLabels {
                check: check.to_owned(),
            })
            .set(i64::from(ready));
    }

    /// Number of certificate swaps so far.
    pub fn cert_swaps(&self) -> u64 {
        self.cert_swaps.get()
    }

    /// Number of refused certificate reloads so far.
    pub fn cert_reload_errors(&self) -> u64 {
        self.cert_reload_errors.get()
    }

    /// Number of handler panics caught so far.
    pub fn handler_panics(&self) -> u64 {
        self.panics.get()
    }

    /// Encodes all metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
