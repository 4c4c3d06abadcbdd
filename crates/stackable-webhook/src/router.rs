//! Request routing: webhook routes (exact paths, `POST` with a JSON body), health and metrics
//! routes, and any extra tower service mounted under a path prefix.
//!
//! Errors are answered with a Kubernetes `Status` JSON object
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/#response-status-kind>),
//! never with a panic.

use std::{
    any::Any,
    collections::BTreeMap,
    convert::Infallible,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{FutureExt as _, future::BoxFuture};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use tower::{ServiceExt, util::BoxCloneSyncService};
use tracing::Instrument;

use crate::{
    metrics::{Metrics, RouteMetrics},
    readiness::Readiness,
    route::{Outcome, Route, RouteKind, WebhookRequest, WebhookResponse},
    tls::CertResolver,
};

/// The error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of the server.
pub type ResponseBody = BoxBody<Bytes, BoxError>;

/// An extra service mounted next to the webhooks (see [`crate::WebhookServerBuilder::service`]).
pub type ExtraService = BoxCloneSyncService<Request<Incoming>, Response<ResponseBody>, Infallible>;

/// A type-erased webhook route: the collected request body in, a reply out.
pub(crate) type BoxHandler = Arc<dyn Fn(Bytes) -> BoxFuture<'static, Reply> + Send + Sync>;

/// The answer of a webhook route before it becomes an HTTP response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
    pub(crate) outcome: &'static str,
}

impl Reply {
    pub(crate) fn json(status: u16, body: impl Into<Bytes>, outcome: &'static str) -> Self {
        Self {
            status,
            body: body.into(),
            outcome,
        }
    }

    /// A Kubernetes `Status` (Failure) JSON body.
    pub(crate) fn status(
        status: u16,
        reason: &str,
        message: String,
        outcome: &'static str,
    ) -> Self {
        let body = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": status,
        });
        Self {
            status,
            body: body.to_string().into(),
            outcome,
        }
    }

    pub(crate) fn bad_request(message: String) -> Self {
        Self::status(400, "BadRequest", message, "bad_request")
    }

    pub(crate) fn internal(message: String) -> Self {
        tracing::error!(%message, "internal error while answering a webhook request");
        Self::status(500, "InternalError", message, "error")
    }

    fn into_response(self) -> Response<ResponseBody> {
        let mut response = Response::new(full(self.body));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

fn full(body: impl Into<Bytes>) -> ResponseBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Extracts a printable message from a caught panic payload.
pub(crate) fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A webhook route as mounted on its path, with the handles of its metrics.
#[derive(Debug)]
pub(crate) struct MountedRoute {
    pub(crate) route: Route,
    pub(crate) metrics: Arc<RouteMetrics>,
}

impl MountedRoute {
    pub(crate) fn new(path: &str, route: Route) -> Self {
        Self {
            route,
            metrics: Arc::new(RouteMetrics::new(path)),
        }
    }
}

/// The routing table plus everything a request needs.
#[derive(Clone)]
pub(crate) struct Router {
    pub(crate) webhooks: Arc<BTreeMap<String, MountedRoute>>,
    pub(crate) services: Arc<Vec<(String, ExtraService)>>,
    pub(crate) resolver: Arc<CertResolver>,
    pub(crate) metrics: Metrics,
    pub(crate) readiness: Readiness,
    pub(crate) max_body_bytes: usize,
    /// The body limit of conversion routes (`ConversionReview`s of whole lists).
    pub(crate) max_conversion_body_bytes: usize,
    pub(crate) body_timeout: Duration,
    /// Serve /livez, /readyz and /metrics on this listener.
    pub(crate) serve_health: bool,
    /// Serve webhooks and extra services on this listener.
    pub(crate) serve_webhooks: bool,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("webhooks", &self.webhooks.keys().collect::<Vec<_>>())
            .field(
                "services",
                &self.services.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn is_json(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

impl Router {
    /// Answers one request. Never fails: every error becomes a JSON response. While the
    /// server drains, every response asks the client to close the connection, so that no
    /// idle keep-alive connection is left to be cut when the server stops.
    pub(crate) async fn handle(
        self,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let readiness = self.readiness.clone();
        let mut response = self.route(request).await?;
        if readiness.is_draining() {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(response)
    }

    async fn route(self, request: Request<Incoming>) -> Result<Response<ResponseBody>, Infallible> {
        let path = request.uri().path();
        if self.serve_health {
            match path {
                "/livez" => return Ok(text(200, "ok")),
                "/readyz" => {
                    return Ok(match self.readiness.check(&self.resolver, &self.metrics) {
                        Ok(()) => text(200, "ok"),
                        Err(reasons) => text(503, reasons),
                    });
                }
                "/metrics" => {
                    // Refresh the readiness gauges.
                    let _ = self.readiness.check(&self.resolver, &self.metrics);
                    let mut response = text(200, self.metrics.encode());
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    return Ok(response);
                }
                _ => {}
            }
        }
        if self.serve_webhooks {
            if let Some(mounted) = self.webhooks.get(path) {
                let (route, metrics) = (mounted.route.clone(), mounted.metrics.clone());
                return Ok(self.webhook(route, &metrics, request).await);
            }
            if let Some((_, service)) = self
                .services
                .iter()
                .find(|(prefix, _)| path_has_prefix(path, prefix))
            {
                return service.clone().oneshot(request).await;
            }
        }
        self.metrics.observe("unknown", "not_found", 0.0);
        Ok(
            Reply::status(404, "NotFound", format!("no route for {path}"), "not_found")
                .into_response(),
        )
    }

    async fn webhook(
        self,
        route: Route,
        metrics: &RouteMetrics,
        request: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let path = metrics.route.as_str();
        let span = tracing::info_span!(
            "webhook",
            route = path,
            webhook = ?route.kind,
            uid = tracing::field::Empty,
            kind = tracing::field::Empty,
            namespace = tracing::field::Empty,
            name = tracing::field::Empty,
            operation = tracing::field::Empty,
            objects = tracing::field::Empty,
            outcome = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
        );
        crate::traceparent::continue_trace(&span, request.headers());
        let started = Instant::now();
        let in_flight = self.metrics.start_webhook_request(metrics);
        let response = self
            .webhook_answer(route, request)
            .instrument(span.clone())
            .await;
        let elapsed = started.elapsed();
        let outcome = Outcome::of(&response);
        let status = response.status().as_u16();
        crate::span_fields::record(
            &span,
            [
                ("outcome", Some(&outcome)),
                ("latency_ms", Some(&(elapsed.as_secs_f64() * 1000.0))),
            ],
        );
        span.in_scope(|| tracing::debug!(status, "webhook request answered"));
        drop(in_flight);
        self.metrics
            .observe_webhook(metrics, outcome, status, elapsed.as_secs_f64());
        response.map(full)
    }

    async fn webhook_answer(&self, route: Route, request: Request<Incoming>) -> WebhookResponse {
        let started = Instant::now();
        let deadline = request.uri().query().and_then(api_server_timeout);
        let request = match self.read_request(&route, request).await {
            Ok(request) => request,
            Err(reply) => return reply.into_route_response(),
        };
        let call = AssertUnwindSafe(route.service.oneshot(request)).catch_unwind();
        let Some(timeout) = deadline else {
            return route_answer(call.await);
        };
        let answer_within = answer_within(timeout).saturating_sub(started.elapsed());
        match tokio::time::timeout(answer_within, call).await {
            Ok(answer) => route_answer(answer),
            Err(_) => {
                tracing::warn!(
                    timeout = ?timeout,
                    "the handler did not answer before the API server's deadline; answering 504"
                );
                Reply::status(
                    504,
                    "Timeout",
                    format!(
                        "the webhook handler did not answer within the API server's timeout of \
                         {timeout:?} (answered after {:?} so that the API server sees this \
                         message; its failurePolicy decides)",
                        started.elapsed()
                    ),
                    "deadline",
                )
                .into_route_response()
            }
        }
    }

    /// Checks the method and media type and reads the body under the route's limit.
    async fn read_request(
        &self,
        route: &Route,
        request: Request<Incoming>,
    ) -> Result<WebhookRequest, Reply> {
        if request.method() != Method::POST {
            return Err(Reply::status(
                405,
                "MethodNotAllowed",
                format!("webhooks accept POST only, got {}", request.method()),
                "bad_method",
            ));
        }
        if !is_json(&request) {
            return Err(Reply::status(
                415,
                "UnsupportedMediaType",
                "Content-Type must be application/json".to_owned(),
                "bad_content_type",
            ));
        }
        let max_body_bytes = route.max_body_bytes.unwrap_or(match route.kind {
            RouteKind::Conversion => self.max_conversion_body_bytes,
            RouteKind::Validating | RouteKind::Mutating | RouteKind::Service => self.max_body_bytes,
        });
        let too_large = || {
            Reply::status(
                413,
                "RequestEntityTooLarge",
                format!("request body exceeds {max_body_bytes} bytes"),
                "too_large",
            )
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max_body_bytes as u64) {
            return Err(too_large());
        }
        let (parts, body) = request.into_parts();
        let body = Limited::new(body, max_body_bytes);
        let capacity = declared.map_or(0, |length| length.min(max_body_bytes as u64) as usize);
        match tokio::time::timeout(self.body_timeout, read_body(body, capacity)).await {
            Err(_) => Err(Reply::status(
                408,
                "Timeout",
                "timed out reading the request body".to_owned(),
                "timeout",
            )),
            Ok(Err(error)) => {
                if error.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                Err(Reply::bad_request(format!(
                    "failed to read the request body: {error}"
                )))
            }
            Ok(Ok(collected)) => Ok(Request::from_parts(parts, collected)),
        }
    }
}

/// What a route's call came to, as an answer: its response, or a `Status` for its error or
/// panic.
fn route_answer(answer: std::thread::Result<Result<WebhookResponse, BoxError>>) -> WebhookResponse {
    match answer {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error_reply(&*error).into_route_response(),
        Err(panic) => {
            let message = panic_message(&panic);
            tracing::error!(panic = %message, "webhook route panicked");
            Reply::status(
                500,
                "InternalError",
                format!("webhook route panicked: {message}"),
                "panic",
            )
            .into_route_response()
        }
    }
}

/// Whether `error` or one of its sources is a `T`.
fn caused_by<T: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<T>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// The `Status` answering a route's error: a timeout layer's 504, a load-shed layer's 503,
/// else 500.
fn error_reply(error: &(dyn std::error::Error + Send + Sync + 'static)) -> Reply {
    if caused_by::<tower::timeout::error::Elapsed>(error) {
        tracing::warn!("a timeout layer of the route expired; answering 504");
        return Reply::status(
            504,
            "Timeout",
            "the webhook route did not answer within the timeout of its TimeoutLayer".to_owned(),
            "timeout",
        );
    }
    if caused_by::<tower::load_shed::error::Overloaded>(error) {
        tracing::warn!("the route is overloaded and shed the request; answering 503");
        return Reply::status(
            503,
            "ServiceUnavailable",
            "the webhook route is at its concurrency limit and refused the request; retry later"
                .to_owned(),
            "overloaded",
        );
    }
    Reply::internal(format!("the webhook route failed: {error}"))
}

/// The `timeout` query parameter the API server adds to every webhook call (`?timeout=10s`,
/// the webhook's `timeoutSeconds`), in Go's duration format; `None` when absent or unreadable.
pub(crate) fn api_server_timeout(query: &str) -> Option<Duration> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "timeout")
        .and_then(|(_, value)| parse_go_duration(value))
        .filter(|timeout| !timeout.is_zero())
}

/// How long a handler may take so that the answer reaches the API server before it gives up:
/// the timeout less a tenth of it, at most 500 ms (9.5 s of 10 s, 0.9 s of 1 s).
pub(crate) fn answer_within(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_millis(500)))
}

/// Parses Go's `time.Duration` text (`10s`, `1m30s`, `1.5s`, `250ms`, `1h`), as written by
/// `Duration.String()`; negative and overflowing values are `None`.
fn parse_go_duration(text: &str) -> Option<Duration> {
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&end| end > 0)?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Reads the whole body. A body that arrives as one data frame (hyper hands out a request
/// that is already in its read buffer as one piece: every admission review of a few KB) is
/// taken as it is, without a copy; a body of more frames is joined into one buffer sized up
/// front from `Content-Length`, so that a large one (a review of a LIST is megabytes) is not
/// held twice while it is joined.
async fn read_body(body: Limited<Incoming>, capacity: usize) -> Result<Bytes, BoxError> {
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut buffer: Option<crate::buffers::Buffer<u8>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if let Some(buffer) = buffer.as_mut() {
            buffer.extend_from_slice(&data);
        } else if let Some(first) = first.take() {
            let mut joined = crate::buffers::buffer(capacity.max(first.len() + data.len()));
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&data);
            buffer = Some(joined);
        } else {
            first = Some(data);
        }
    }
    Ok(match (buffer, first) {
        (Some(buffer), _) => buffer.into_bytes(),
        (None, Some(first)) => first,
        (None, None) => Bytes::new(),
    })
}

fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn text(status: u16, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(path_has_prefix("/debug", "/debug"));
        assert!(path_has_prefix("/debug/x", "/debug/"));
        assert!(!path_has_prefix("/debugger", "/debug"));
        assert!(path_has_prefix("/anything", "/"));
    }

    #[test]
    fn the_api_server_timeout_is_read_from_the_query() {
        assert_eq!(
            api_server_timeout("timeout=10s"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            api_server_timeout("a=b&timeout=1m30s"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            api_server_timeout("timeout=1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            api_server_timeout("timeout=250ms"),
            Some(Duration::from_millis(250))
        );
        for unreadable in [
            "",
            "timeout=",
            "timeout=10",
            "timeout=-1s",
            "timeout=10x",
            "timeout=s",
            "timeout=0s",
        ] {
            assert_eq!(api_server_timeout(unreadable), None, "{unreadable}");
        }
        assert_eq!(
            answer_within(Duration::from_secs(10)),
            Duration::from_millis(9500)
        );
        assert_eq!(
            answer_within(Duration::from_secs(1)),
            Duration::from_millis(900)
        );
    }

    #[test]
    fn status_reply_is_kubernetes_status() {
        let reply = Reply::bad_request("broken".to_owned());
        let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(value["kind"], "Status");
        assert_eq!(value["code"], 400);
        assert_eq!(value["message"], "broken");
    }
}
