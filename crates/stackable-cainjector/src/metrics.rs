//! Prometheus metrics of the standalone injector, served as text on a small HTTP port.
//!
//! The format is Prometheus' text exposition format
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>); `GET /metrics` returns
//! it and any other path returns `ok`, which serves as a liveness probe.

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

type Labels = Vec<(String, String)>;

/// The injector's counters, labelled by target `kind`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    injections: Family<Labels, Counter>,
    refusals: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    registry: Arc<std::sync::Mutex<Option<Arc<Registry>>>>,
}

fn labels(kind: &str) -> Labels {
    vec![("kind".to_owned(), kind.to_owned())]
}

impl Metrics {
    /// Counters registered in a fresh registry.
    pub fn new() -> Self {
        let metrics = Self::default();
        let mut registry = Registry::with_prefix("cainjector");
        registry.register(
            "injections",
            "caBundle writes (objects that did not carry the bundle yet)",
            metrics.injections.clone(),
        );
        registry.register(
            "refusals",
            "bundles refused (bad PEM, anti-hijack rules, missing source)",
            metrics.refusals.clone(),
        );
        registry.register(
            "errors",
            "failed API requests while injecting",
            metrics.errors.clone(),
        );
        if let Ok(mut slot) = metrics.registry.lock() {
            *slot = Some(Arc::new(registry));
        }
        metrics
    }

    /// Counts one injection into an object of `kind`.
    pub fn injected(&self, kind: &str) {
        self.injections.get_or_create(&labels(kind)).inc();
    }

    /// Counts one refusal for an object of `kind`.
    pub fn refused(&self, kind: &str) {
        self.refusals.get_or_create(&labels(kind)).inc();
    }

    /// Counts one error for an object of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&labels(kind)).inc();
    }

    /// Total injections so far (all kinds).
    pub fn injections_total(&self) -> u64 {
        sum(&self.injections)
    }

    /// Total refusals so far (all kinds).
    pub fn refusals_total(&self) -> u64 {
        sum(&self.refusals)
    }

    /// Total errors so far (all kinds).
    pub fn errors_total(&self) -> u64 {
        sum(&self.errors)
    }

    /// The metrics in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().ok().and_then(|r| r.clone());
        if let Some(registry) = registry
            && encode(&mut out, &registry).is_err()
        {
            out.clear();
        }
        out
    }

    /// Serves `GET /metrics` (and `ok` on other paths) on `address` until the task is dropped.
    pub async fn serve(self, address: SocketAddr) -> std::io::Result<()> {
        let listener = TcpListener::bind(address).await?;
        tracing::info!(%address, "serving metrics");
        loop {
            let (mut stream, _) = listener.accept().await?;
            let metrics = self.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let body = if request.starts_with("GET /metrics") {
                    metrics.render()
                } else {
                    "ok\n".to_owned()
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    }
}

fn sum(family: &Family<Labels, Counter>) -> u64 {
    [
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
        "ConfigMap",
    ]
    .iter()
    .map(|kind| family.get_or_create(&labels(kind)).get())
    .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let metrics = Metrics::new();
        metrics.injected("ConfigMap");
        metrics.injected("ConfigMap");
        metrics.refused("APIService");
        assert_eq!(metrics.injections_total(), 2);
        assert_eq!(metrics.refusals_total(), 1);
        assert_eq!(metrics.errors_total(), 0);
        let text = metrics.render();
        assert!(
            text.contains("cainjector_injections_total{kind=\"ConfigMap\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cainjector_refusals_total{kind=\"APIService\"} 1"),
            "{text}"
        );
    }
}
