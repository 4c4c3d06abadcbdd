//! Webhook routes as tower services, and layers on them.
//!
//! Every webhook route is a [`tower::Service`] taking an `http::Request<Bytes>` (the `POST`ed
//! JSON body, already read under the route's body limit) and answering an
//! `http::Response<Bytes>`, the way linkerd2's policy controller implements
//! `Service<Request<Body>>` for its admission handler. The typed handlers of
//! [`WebhookServerBuilder::validating`](crate::WebhookServerBuilder::validating),
//! [`mutating`](crate::WebhookServerBuilder::mutating) and
//! [`conversion`](crate::WebhookServerBuilder::conversion) are such services; a [`Route`] wraps
//! one (or your own) so that tower layers can be added to it, and
//! [`WebhookServerBuilder::layer`](crate::WebhookServerBuilder::layer) adds a layer to every
//! webhook route.
//!
//! The body is collected before the route is called because every webhook request is one JSON
//! document that must be read whole before it can be decoded, and reading it is where the
//! server bounds memory and time: the body limit of the route's kind (or
//! [`Route::max_body_bytes`]) and [`Limits::header_read_timeout`](crate::Limits) apply before
//! any layer runs, so that no layer or service has to repeat them, and layers see a request
//! they can inspect (and clone: `Bytes` is reference-counted) without consuming a stream.
//!
//! What the server does around every route, outside all layers: `POST` and
//! `Content-Type: application/json` are checked, the body is read, the request runs in the
//! `webhook` span (with the API server's `traceparent`, see [`crate::traceparent`]), the API
//! server's `?timeout=` deadline is enforced (504 `Status` just before it), a panic anywhere in
//! the route is caught (500 `Status`, counted), the metrics are recorded, and while draining
//! the answer carries `Connection: close`. An error a layer returns becomes a Kubernetes
//! `Status` answer, never a dropped connection: tower's `timeout::error::Elapsed` a 504,
//! `load_shed::error::Overloaded` a 503, anything else a 500.

use std::{
    fmt,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures::{
    FutureExt as _,
    future::{BoxFuture, Map},
};
use http::{Request, Response};
use kube::core::Resource;
use serde::{Serialize, de::DeserializeOwned};
use tower::{Layer, Service, ServiceExt as _, util::BoxCloneSyncService};

use crate::{
    admission::{MutatingHandler, ValidatingHandler, mutating_route, validating_route},
    conversion::{Converter, conversion_route},
    router::{BoxError, BoxHandler, Reply},
};

/// The request a webhook route receives: the `POST` with its JSON body read.
pub type WebhookRequest = Request<Bytes>;

/// The answer of a webhook route.
pub type WebhookResponse = Response<Bytes>;

/// A type-erased webhook route with its layers.
pub type RouteService = BoxCloneSyncService<WebhookRequest, WebhookResponse, BoxError>;

/// The `outcome` label of a route's answer in the metrics and the `webhook` span (`allowed`,
/// `denied`, `patched`, `converted`, ...), carried as an extension of the response.
///
/// A service of your own may set it (`response.extensions_mut().insert(Outcome::new("ok"))`);
/// without it the outcome is `answered` for a 2xx/3xx answer and `error` otherwise. Keep the
/// set of values small: each is a metric label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome(&'static str);

impl Outcome {
    /// An outcome label.
    pub const fn new(label: &'static str) -> Self {
        Self(label)
    }

    /// The label.
    pub const fn as_str(&self) -> &'static str {
        self.0
    }

    /// The outcome of `response`: its [`Outcome`] extension, else `answered` or `error` by
    /// its status.
    pub(crate) fn of<B>(response: &Response<B>) -> &'static str {
        match response.extensions().get::<Outcome>() {
            Some(outcome) => outcome.0,
            None if response.status().is_client_error() || response.status().is_server_error() => {
                "error"
            }
            None => "answered",
        }
    }
}

/// Which kind of webhook a route serves (for logs and its default body limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteKind {
    Validating,
    Mutating,
    Conversion,
    Service,
}

/// One webhook route: a service plus its layers, to mount with
/// [`WebhookServerBuilder::route`](crate::WebhookServerBuilder::route).
///
/// ```
/// use std::time::Duration;
/// use k8s_openapi::api::core::v1::Pod;
/// use kube::core::admission::AdmissionRequest;
/// use stackable_webhook::{Route, Validation};
///
/// // At most 8 requests at once on this route, each answered within 2 s (a 504 `Status`
/// // after that); the other routes are not limited.
/// let route = Route::validating(|_request: AdmissionRequest<Pod>| async { Validation::allow() })
///     .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(2)))
///     .layer(tower::limit::ConcurrencyLimitLayer::new(8));
/// ```
#[derive(Clone)]
pub struct Route {
    pub(crate) kind: RouteKind,
    pub(crate) max_body_bytes: Option<usize>,
    pub(crate) service: RouteService,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("kind", &self.kind)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Route {
    fn from_handler(kind: RouteKind, handler: BoxHandler) -> Self {
        Self {
            kind,
            max_body_bytes: None,
            service: RouteService::new(HandlerService(handler)),
        }
    }

    /// A validating admission route for objects of type `K` (what
    /// [`WebhookServerBuilder::validating`](crate::WebhookServerBuilder::validating) mounts).
    pub fn validating<K, H>(handler: H) -> Self
    where
        K: Resource + DeserializeOwned + Send + 'static,
        H: ValidatingHandler<K>,
    {
        Self::from_handler(RouteKind::Validating, validating_route::<K, H>(handler))
    }

    /// A mutating admission route for objects of type `K` (what
    /// [`WebhookServerBuilder::mutating`](crate::WebhookServerBuilder::mutating) mounts).
    pub fn mutating<K, H>(handler: H) -> Self
    where
        K: Resource + DeserializeOwned + Serialize + Send + 'static,
        H: MutatingHandler<K>,
    {
        Self::from_handler(RouteKind::Mutating, mutating_route::<K, H>(handler))
    }

    /// A CRD conversion route (what
    /// [`WebhookServerBuilder::conversion`](crate::WebhookServerBuilder::conversion) mounts);
    /// its body limit is [`Limits::max_conversion_body_bytes`](crate::Limits).
    pub fn conversion(converter: impl Converter) -> Self {
        Self::from_handler(RouteKind::Conversion, conversion_route(converter))
    }

    /// A route answered by a service of your own. It receives the `POST`ed JSON body, read
    /// under [`Limits::max_body_bytes`](crate::Limits) (see [`Route::max_body_bytes`]); its
    /// errors are answered with a `Status` (see the [module docs](self)).
    pub fn service<S, B, E>(service: S) -> Self
    where
        S: Service<WebhookRequest, Response = Response<B>, Error = E>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: Into<Bytes> + 'static,
        E: Into<BoxError> + 'static,
    {
        Self {
            kind: RouteKind::Service,
            max_body_bytes: None,
            service: boxed(service),
        }
    }

    /// Wraps the route in `layer`. Each call wraps what is there: the layer added last runs
    /// first. A layer's error is answered with a `Status` (see the [module docs](self)).
    #[must_use]
    pub fn layer<L, B, E>(self, layer: L) -> Self
    where
        L: Layer<RouteService>,
        L::Service: Service<WebhookRequest, Response = Response<B>, Error = E>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<WebhookRequest>>::Future: Send + 'static,
        B: Into<Bytes> + 'static,
        E: Into<BoxError> + 'static,
    {
        Self {
            service: boxed(layer.layer(self.service)),
            ..self
        }
    }

    /// The largest request body this route accepts, instead of the limit of its kind
    /// ([`Limits::max_body_bytes`](crate::Limits), or
    /// [`Limits::max_conversion_body_bytes`](crate::Limits) for conversion). A larger body is
    /// answered 413 before the route runs.
    #[must_use]
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = Some(bytes);
        self
    }
}

/// Boxes a route service, converting its body and error types.
pub(crate) fn boxed<S, B, E>(service: S) -> RouteService
where
    S: Service<WebhookRequest, Response = Response<B>, Error = E> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    B: Into<Bytes> + 'static,
    E: Into<BoxError> + 'static,
{
    RouteService::new(
        service
            .map_response(|response: Response<B>| response.map(Into::into))
            .map_err(Into::into),
    )
}

/// A layer for every route, stored type-erased by the builder.
pub(crate) type BoxRouteLayer = std::sync::Arc<dyn Fn(RouteService) -> RouteService + Send + Sync>;

/// Type-erases `layer` as a function from route to route.
pub(crate) fn box_layer<L, B, E>(layer: L) -> BoxRouteLayer
where
    L: Layer<RouteService> + Send + Sync + 'static,
    L::Service:
        Service<WebhookRequest, Response = Response<B>, Error = E> + Clone + Send + Sync + 'static,
    <L::Service as Service<WebhookRequest>>::Future: Send + 'static,
    B: Into<Bytes> + 'static,
    E: Into<BoxError> + 'static,
{
    std::sync::Arc::new(move |service| boxed(layer.layer(service)))
}

/// A typed route (validating, mutating, conversion) as a service: the body goes to the
/// handler, its reply becomes the response.
#[derive(Clone)]
struct HandlerService(BoxHandler);

impl Service<WebhookRequest> for HandlerService {
    type Response = WebhookResponse;
    type Error = BoxError;
    /// The handler's boxed future, mapped in place (no second box per request).
    type Future = Map<BoxFuture<'static, Reply>, fn(Reply) -> Result<WebhookResponse, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: WebhookRequest) -> Self::Future {
        (self.0)(request.into_body()).map(answer)
    }
}

/// A handler's reply as the route's answer.
fn answer(reply: Reply) -> Result<WebhookResponse, BoxError> {
    Ok(reply.into_route_response())
}

impl Reply {
    /// The reply as a route's answer, its outcome in an [`Outcome`] extension.
    pub(crate) fn into_route_response(self) -> WebhookResponse {
        let mut response = Response::new(self.body);
        *response.status_mut() = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response.extensions_mut().insert(Outcome(self.outcome));
        response
    }
}
