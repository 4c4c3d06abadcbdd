//! The HTTPS server: builder, accept loop, per-connection limits and graceful shutdown.
//!
//! HTTP/1.1 by default; HTTP/2 is offered through ALPN only when enabled (kubebuilder turned it
//! off by default after the HTTP/2 Rapid Reset CVEs, CVE-2023-44487). TLS 1.2 and 1.3 via
//! rustls with the aws-lc-rs provider ([`TlsOptions`] narrows them), optionally requiring the
//! API server's client certificate ([`ClientAuth`]). See
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>.

use std::{collections::BTreeMap, net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kube::core::Resource;
use serde::{Serialize, de::DeserializeOwned};
use snafu::{ResultExt, Snafu};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::{Layer, Service};

use crate::{
    admission::{MutatingHandler, ValidatingHandler},
    client_auth::{ClientAuth, ClientCaVerifier},
    conversion::Converter,
    idle::{HeaderDeadline, HeadersRead},
    metrics::Metrics,
    readiness::{Readiness, ReadinessCheck},
    registration::{AdmissionConfigurations, Endpoint, RegisteredKind, Registration, render},
    route::{BoxRouteLayer, Route, RouteKind, RouteService, WebhookRequest, box_layer},
    router::{BoxError, ExtraService, MountedRoute, ResponseBody, Router},
    source::{CertSource, SourceError},
    tls::{CertResolver, TlsError, TlsOptions, server_config},
};

/// Errors starting the server.
#[derive(Debug, Snafu)]
pub enum ServerError {
    /// No certificate source was configured.
    #[snafu(display("no certificate source configured: call WebhookServerBuilder::certificates"))]
    NoCertificateSource,

    /// The TLS configuration could not be built.
    #[snafu(display("failed to build the TLS configuration"))]
    Tls {
        /// The TLS error.
        #[snafu(source(from(TlsError, Box::new)))]
        source: Box<TlsError>,
    },

    /// The client CA bundle could not be loaded.
    #[snafu(display("failed to load the client CA bundle"))]
    ClientCa {
        /// The source error.
        #[snafu(source(from(SourceError, Box::new)))]
        source: Box<SourceError>,
    },

    /// Client certificates are required on a server with a conversion route: the API server
    /// presents none to conversion webhooks, so every conversion would fail.
    #[snafu(display(
        "the conversion route {path} cannot be served with client authentication: the API server presents no client certificate to CRD conversion webhooks; serve conversion from a server without ClientAuth"
    ))]
    ClientAuthWithConversion {
        /// The conversion route.
        path: String,
    },

    /// The certificate source failed to deliver its first certificate.
    #[snafu(display("failed to load the serving certificate"))]
    Certificate {
        /// The source error.
        #[snafu(source(from(SourceError, Box::new)))]
        source: Box<SourceError>,
    },

    /// The listening socket could not be bound.
    #[snafu(display("failed to bind {address}"))]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The IO error.
        source: std::io::Error,
    },

    /// Two routes were mounted on the same path.
    #[snafu(display("the path {path} is mounted twice"))]
    DuplicateRoute {
        /// The path.
        path: String,
    },

    /// An admission route's registration would be rejected by the API server.
    #[snafu(display("the registration of the route {path} is invalid: {reason}"))]
    InvalidRegistration {
        /// The route's path.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// A layer was added to a path no webhook route is mounted on.
    #[snafu(display(
        "a layer was added to {path}, but no webhook route is mounted there (mount it first)"
    ))]
    UnknownRoute {
        /// The path.
        path: String,
    },

    /// Two registered admission routes of the same kind share an entry name.
    #[snafu(display("two admission routes are registered as {name}; entry names must be unique"))]
    DuplicateRegistration {
        /// The entry name.
        name: String,
    },

    /// The server task ended abnormally.
    #[snafu(display("the server task failed"))]
    Join {
        /// The join error.
        source: tokio::task::JoinError,
    },
}

/// Limits against slow or malicious clients.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time allowed for a TLS handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers, from its first byte (default 10 s), and
    /// separately its body.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may stay idle between requests (default 120 s). Keep
    /// it above the API server's own idle timeout (90 s, Go's `http.Transport` default): then
    /// the API server closes idle connections, not this server. A connection closed by the
    /// server just as the API server sends a request on it fails that call with `EOF` (a
    /// `POST` is not retried), and a conversion failed that way while the API server fills its
    /// watch cache leaves the object unreadable from the cache until it is written again.
    pub idle_timeout: Duration,
    /// Largest accepted request body of admission routes and extra checks (default 6 MiB). The
    /// API server accepts request bodies up to 3 MiB; an UPDATE review carries `object` (up to
    /// 3 MiB) plus `oldObject` (up to etcd's 1.5 MiB) plus the envelope, so 6 MiB never refuses
    /// a legitimate review while bounding memory per request.
    pub max_body_bytes: usize,
    /// Largest accepted request body of conversion routes (default 128 MiB). When a client
    /// lists a custom resource in a version other than the storage version, the API server puts
    /// every object of the list into one `ConversionReview`, with no size limit: 100,000
    /// CronTab-like objects with `managedFields` are about 85 MB.
    pub max_conversion_body_bytes: usize,
    /// Connections served at once (default 1024); further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Time in-flight requests get to finish after shutdown starts (default 10 s).
    pub shutdown_grace: Duration,
    /// After SIGTERM (or [`RunningServer::drain_and_shutdown`]): how long `/readyz` answers
    /// 503 while the HTTPS listener still accepts connections, so that the endpoints
    /// controller takes the Pod out of the Service before it stops accepting (default 5 s).
    /// Responses in that time carry `Connection: close`. Then in-flight requests get
    /// [`Limits::shutdown_grace`].
    pub drain_period: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_body_bytes: 6 * 1024 * 1024,
            max_conversion_body_bytes: 128 * 1024 * 1024,
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
            drain_period: Duration::from_secs(5),
        }
    }
}

/// Builds a [`WebhookServer`]. Start with [`WebhookServer::builder`].
pub struct WebhookServerBuilder {
    bind: SocketAddr,
    health_bind: Option<SocketAddr>,
    http2: bool,
    limits: Limits,
    tls: TlsOptions,
    client_auth: Option<ClientAuth>,
    certificates: Option<CertSource>,
    token: Option<CancellationToken>,
    handle_signals: bool,
    webhooks: BTreeMap<String, Route>,
    services: Vec<(String, ExtraService)>,
    layers: Vec<BoxRouteLayer>,
    duplicate: Option<String>,
    unknown: Option<String>,
    registrations: Vec<(String, RegisteredKind, Registration)>,
    metrics: Metrics,
    readiness: Readiness,
}

impl std::fmt::Debug for WebhookServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookServerBuilder")
            .field("bind", &self.bind)
            .field("health_bind", &self.health_bind)
            .field("http2", &self.http2)
            .field("limits", &self.limits)
            .field("tls", &self.tls)
            .field("client_auth", &self.client_auth)
            .field("certificates", &self.certificates)
            .field("routes", &self.webhooks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for WebhookServerBuilder {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 8443)),
            health_bind: None,
            http2: false,
            limits: Limits::default(),
            tls: TlsOptions::default(),
            client_auth: None,
            certificates: None,
            token: None,
            handle_signals: true,
            webhooks: BTreeMap::new(),
            services: Vec::new(),
            layers: Vec::new(),
            duplicate: None,
            unknown: None,
            registrations: Vec::new(),
            metrics: Metrics::new(),
            readiness: Readiness::default(),
        }
    }
}

impl WebhookServerBuilder {
    /// The HTTPS address (default `0.0.0.0:8443`; port 0 picks a free port, see
    /// [`RunningServer::local_addr`]).
    #[must_use]
    pub fn bind(mut self, address: SocketAddr) -> Self {
        self.bind = address;
        self
    }

    /// Serve `/livez`, `/readyz` and `/metrics` on a separate plain-HTTP address instead of
    /// the HTTPS one.
    #[must_use]
    pub fn health_bind(mut self, address: SocketAddr) -> Self {
        self.health_bind = Some(address);
        self
    }

    /// Offer HTTP/2 through ALPN (off by default).
    #[must_use]
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }

    /// Replaces the limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// TLS versions, cipher suites and ALPN (default: [`TlsOptions::default`]); checked by
    /// [`Self::build`].
    #[must_use]
    pub fn tls_options(mut self, options: TlsOptions) -> Self {
        self.tls = options;
        self
    }

    /// Require a client certificate from the CA of `auth` at the TLS handshake (off by
    /// default): only the API server, configured with such a certificate, gets through. See
    /// [`crate::client_auth`]; not possible with conversion routes.
    #[must_use]
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = Some(auth);
        self
    }

    /// Where the serving certificate comes from (a [`CertSource`], or with the `cainject`
    /// feature stackable-cainject's `ServingCertificates`).
    #[must_use]
    pub fn certificates(mut self, source: impl Into<CertSource>) -> Self {
        self.certificates = Some(source.into());
        self
    }

    /// Adds a readiness check: `/readyz` answers 503, naming it and its reason, while the
    /// check returns an error (for example: the operator's caches are not synced yet).
    #[must_use]
    pub fn readiness_check(
        self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        let check: ReadinessCheck = Arc::new(check);
        self.readiness.add_check(name, check);
        self
    }

    /// Shut down when this token is cancelled (in addition to signals, if enabled).
    #[must_use]
    pub fn shutdown_token(mut self, token: CancellationToken) -> Self {
        self.token = Some(token);
        self
    }

    /// Shut down on SIGTERM/SIGINT (default true; turn off in tests and when the operator
    /// handles signals itself).
    #[must_use]
    pub fn handle_signals(mut self, enabled: bool) -> Self {
        self.handle_signals = enabled;
        self
    }

    /// Mounts a webhook route on `path`: a typed route ([`Route::validating`],
    /// [`Route::mutating`], [`Route::conversion`]) or a service of your own
    /// ([`Route::service`]), with the layers added to it ([`Route::layer`]).
    #[must_use]
    pub fn route(mut self, path: &str, route: Route) -> Self {
        if self.webhooks.insert(path.to_owned(), route).is_some() {
            self.duplicate = Some(path.to_owned());
        }
        self
    }

    /// Mounts a tower service as a webhook route on `path` (short for
    /// `.route(path, Route::service(service))`). It gets the `POST`ed JSON body, read under
    /// [`Limits::max_body_bytes`], and the server's deadline, span, metrics and panic catching
    /// (see [`crate::route`]).
    #[must_use]
    pub fn route_service<S, B, E>(self, path: &str, service: S) -> Self
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
        self.route(path, Route::service(service))
    }

    /// Wraps the webhook route already mounted on `path` in `layer` (as [`Route::layer`]);
    /// [`Self::build`] fails when no route is mounted there.
    #[must_use]
    pub fn route_layer<L, B, E>(mut self, path: &str, layer: L) -> Self
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
        match self.webhooks.remove(path) {
            Some(route) => {
                self.webhooks.insert(path.to_owned(), route.layer(layer));
            }
            None => self.unknown = Some(path.to_owned()),
        }
        self
    }

    /// Wraps every webhook route (those mounted before and after this call; not health,
    /// metrics and [`Self::service`] routes) in `layer`, outside the route's own layers. Each
    /// call wraps what is there: the layer added last runs first.
    #[must_use]
    pub fn layer<L, B, E>(mut self, layer: L) -> Self
    where
        L: Layer<RouteService> + Send + Sync + 'static,
        L::Service: Service<WebhookRequest, Response = Response<B>, Error = E>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<WebhookRequest>>::Future: Send + 'static,
        B: Into<Bytes> + 'static,
        E: Into<BoxError> + 'static,
    {
        self.layers.push(box_layer(layer));
        self
    }

    /// Mounts a validating webhook for objects of type `K` on `path`.
    #[must_use]
    pub fn validating<K, H>(self, path: &str, handler: H) -> Self
    where
        K: Resource + DeserializeOwned + Send + 'static,
        H: ValidatingHandler<K>,
    {
        self.route(path, Route::validating::<K, H>(handler))
    }

    /// Mounts a mutating webhook for objects of type `K` on `path`.
    #[must_use]
    pub fn mutating<K, H>(self, path: &str, handler: H) -> Self
    where
        K: Resource + DeserializeOwned + Serialize + Send + 'static,
        H: MutatingHandler<K>,
    {
        self.route(path, Route::mutating::<K, H>(handler))
    }

    /// Mounts a validating webhook for objects of type `K` on `path`, registered with the API
    /// server as `registration` says (see [`crate::registration`] and
    /// [`Self::admission_configurations`]).
    #[must_use]
    pub fn validating_registered<K, H>(
        mut self,
        path: &str,
        registration: Registration,
        handler: H,
    ) -> Self
    where
        K: Resource + DeserializeOwned + Send + 'static,
        H: ValidatingHandler<K>,
    {
        self.registrations
            .push((path.to_owned(), RegisteredKind::Validating, registration));
        self.validating(path, handler)
    }

    /// Mounts a mutating webhook for objects of type `K` on `path`, registered with the API
    /// server as `registration` says (see [`crate::registration`]).
    #[must_use]
    pub fn mutating_registered<K, H>(
        mut self,
        path: &str,
        registration: Registration,
        handler: H,
    ) -> Self
    where
        K: Resource + DeserializeOwned + Serialize + Send + 'static,
        H: MutatingHandler<K>,
    {
        self.registrations
            .push((path.to_owned(), RegisteredKind::Mutating, registration));
        self.mutating(path, handler)
    }

    /// The `ValidatingWebhookConfiguration` and `MutatingWebhookConfiguration` named `name`
    /// that send the API server's requests to the registered routes through `endpoint`, in the
    /// order the routes were mounted (without `caBundle`: the injector fills it in). Routes
    /// mounted without a registration are not in them.
    pub fn admission_configurations(
        &self,
        name: &str,
        endpoint: &Endpoint,
    ) -> AdmissionConfigurations {
        render(
            name,
            endpoint,
            self.registrations
                .iter()
                .map(|(path, kind, registration)| (path.as_str(), *kind, registration)),
        )
    }

    /// Mounts a CRD conversion webhook on `path`.
    #[must_use]
    pub fn conversion(self, path: &str, converter: impl Converter) -> Self {
        self.route(path, Route::conversion(converter))
    }

    /// Mounts any tower service under a path prefix (matched on `/` boundaries), after the
    /// webhook routes. It gets the raw request; no body limit is applied for it.
    #[must_use]
    pub fn service(mut self, prefix: &str, service: ExtraService) -> Self {
        if self.services.iter().any(|(p, _)| p == prefix) {
            self.duplicate = Some(prefix.to_owned());
        }
        self.services.push((prefix.to_owned(), service));
        self
    }

    /// The metrics of this server (register the operator's own metrics on them to serve
    /// everything on one `/metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Finishes the builder.
    pub fn build(self) -> Result<WebhookServer, ServerError> {
        if let Some(path) = self.duplicate {
            return DuplicateRouteSnafu { path }.fail();
        }
        if let Some(path) = self.unknown {
            return UnknownRouteSnafu { path }.fail();
        }
        for (path, _, registration) in &self.registrations {
            if let Some(reason) = registration.problem() {
                return InvalidRegistrationSnafu { path, reason }.fail();
            }
        }
        for kind in [RegisteredKind::Validating, RegisteredKind::Mutating] {
            let names = self
                .registrations
                .iter()
                .filter(|(_, k, _)| *k == kind)
                .map(|(_, _, r)| r.name());
            if let Some(name) = crate::registration::duplicate_names(names) {
                return DuplicateRegistrationSnafu { name }.fail();
            }
        }
        self.tls.validate(self.http2).context(TlsSnafu)?;
        if self.client_auth.is_some()
            && let Some((path, _)) = self
                .webhooks
                .iter()
                .find(|(_, route)| matches!(route.kind, RouteKind::Conversion))
        {
            return ClientAuthWithConversionSnafu { path }.fail();
        }
        let certificates = self.certificates.ok_or(ServerError::NoCertificateSource)?;
        Ok(WebhookServer {
            bind: self.bind,
            health_bind: self.health_bind,
            http2: self.http2,
            limits: self.limits,
            tls: self.tls,
            client_auth: self.client_auth,
            certificates,
            token: self.token.unwrap_or_default(),
            handle_signals: self.handle_signals,
            webhooks: Arc::new(
                apply_layers(self.webhooks, &self.layers)
                    .into_iter()
                    .map(|(path, route)| {
                        let mounted = MountedRoute::new(&path, route);
                        (path, mounted)
                    })
                    .collect(),
            ),
            services: Arc::new(self.services),
            metrics: self.metrics,
            readiness: self.readiness,
        })
    }
}

/// Wraps every route in the layers for all routes, the first added innermost.
fn apply_layers(
    mut webhooks: BTreeMap<String, Route>,
    layers: &[BoxRouteLayer],
) -> BTreeMap<String, Route> {
    for route in webhooks.values_mut() {
        for layer in layers {
            route.service = layer(route.service.clone());
        }
    }
    webhooks
}

/// A configured webhook server; [`WebhookServer::start`] binds and serves it.
pub struct WebhookServer {
    bind: SocketAddr,
    health_bind: Option<SocketAddr>,
    http2: bool,
    limits: Limits,
    tls: TlsOptions,
    client_auth: Option<ClientAuth>,
    certificates: CertSource,
    token: CancellationToken,
    handle_signals: bool,
    webhooks: Arc<BTreeMap<String, MountedRoute>>,
    services: Arc<Vec<(String, ExtraService)>>,
    metrics: Metrics,
    readiness: Readiness,
}

impl std::fmt::Debug for WebhookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookServer")
            .field("bind", &self.bind)
            .field("health_bind", &self.health_bind)
            .field("http2", &self.http2)
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

/// A server that is accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    health_addr: Option<SocketAddr>,
    token: CancellationToken,
    resolver: Arc<CertResolver>,
    client_ca: Option<Arc<ClientCaVerifier>>,
    metrics: Metrics,
    readiness: Readiness,
    drain_period: Duration,
    fips: bool,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// The bound HTTPS address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound plain-HTTP health address, if one was configured.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// The certificate resolver (to inspect or swap the served certificate).
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// The client certificate verifier, when [`WebhookServerBuilder::client_auth`] is set (to
    /// swap the trusted bundle by hand).
    pub fn client_ca(&self) -> Option<&Arc<ClientCaVerifier>> {
        self.client_ca.as_ref()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether every connection is served with FIPS-approved cryptography
    /// ([`rustls::ServerConfig::fips`]): true only in a build with this crate's `fips` feature
    /// (aws-lc-rs' FIPS module, FIPS cipher suites and key exchanges, extended master secret
    /// required for TLS 1.2). Also logged when the server starts.
    pub fn fips(&self) -> bool {
        self.fips
    }

    /// The CA bundle (PEM) for the `caBundle` of webhook configurations, when the certificate
    /// source knows it (in-memory, shared, material and rotation sources; not files or `Static`).
    pub fn ca_bundle_pem(&self) -> Option<String> {
        self.resolver.ca_bundle_pem()
    }

    /// The server's readiness (checks, draining).
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// What `/readyz` would answer now: `Ok` when ready, else one line per failing check.
    pub fn ready(&self) -> Result<(), String> {
        self.readiness.check(&self.resolver, &self.metrics)
    }

    /// Resolves once [`RunningServer::ready`] is `Ok` (checked every 100 ms): a certificate is
    /// served and every readiness check passes, e.g. the shared certificates' bundle is in
    /// every target. Start what needs the webhook trusted (a controller watching a
    /// non-storage version) after it.
    pub async fn wait_ready(&self) {
        while self.ready().is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a graceful shutdown at once, without draining (returns at once; see
    /// [`RunningServer::wait`]).
    pub fn shutdown(&self) {
        self.token.cancel();
    }

    /// What SIGTERM does: `/readyz` answers 503 at once, connections are still accepted for
    /// [`Limits::drain_period`], then the graceful shutdown starts (returns at once).
    pub fn drain_and_shutdown(&self) {
        tokio::spawn(drain_then_cancel(
            self.readiness.clone(),
            self.token.clone(),
            self.drain_period,
        ));
    }

    /// Waits until the server stopped (after a shutdown finished in-flight requests).
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task.await.context(JoinSnafu)
    }
}

/// Draws one random byte through the crypto provider before the port is bound.
///
/// aws-lc seeds its random generator on first use (CPU jitter entropy, ~40 ms); without this the
/// first TLS handshake pays for it. Paying before binding means a server that accepts
/// connections (and answers `/readyz`) handshakes at full speed from the first request.
async fn warm_up_random() {
    let warm = tokio::task::spawn_blocking(|| {
        let mut byte = [0u8; 1];
        crate::tls::provider().secure_random.fill(&mut byte).is_ok()
    })
    .await;
    if !matches!(warm, Ok(true)) {
        tracing::warn!("could not draw from the random generator before serving");
    }
}

impl WebhookServer {
    /// The server's metrics (register more on them to serve everything on one `/metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The server's readiness: add checks (e.g. a controller's cache sync) before `start`.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// A builder with the defaults: `0.0.0.0:8443`, HTTP/1.1 only, [`Limits::default`],
    /// signal handling on.
    pub fn builder() -> WebhookServerBuilder {
        WebhookServerBuilder::default()
    }

    /// Binds, loads the first certificate and serves in the background.
    pub async fn start(self) -> Result<RunningServer, ServerError> {
        let resolver = Arc::new(CertResolver::with_metrics(self.metrics.clone()));
        self.certificates
            .start(
                resolver.clone(),
                self.metrics.clone(),
                &self.readiness,
                self.token.clone(),
            )
            .await
            .context(CertificateSnafu)?;
        let client_ca = match self.client_auth {
            Some(auth) => Some(
                auth.start(self.metrics.clone(), self.token.clone())
                    .await
                    .context(ClientCaSnafu)?,
            ),
            None => None,
        };
        let config = server_config(
            resolver.clone(),
            client_ca
                .clone()
                .map(|verifier| verifier as Arc<dyn rustls::server::danger::ClientCertVerifier>),
            &self.tls,
            self.http2,
        )
        .context(TlsSnafu)?;
        let fips = config.fips();
        warm_up_random().await;
        let listener = TcpListener::bind(self.bind)
            .await
            .context(BindSnafu { address: self.bind })?;
        let local_addr = listener
            .local_addr()
            .context(BindSnafu { address: self.bind })?;
        let health = match self.health_bind {
            Some(address) => {
                let listener = TcpListener::bind(address)
                    .await
                    .context(BindSnafu { address })?;
                let bound = listener.local_addr().context(BindSnafu { address })?;
                Some((listener, bound))
            }
            None => None,
        };
        let health_addr = health.as_ref().map(|(_, address)| *address);

        if self.handle_signals {
            let token = self.token.clone();
            let readiness = self.readiness.clone();
            let drain = self.limits.drain_period;
            tokio::spawn(async move {
                wait_for_signal().await;
                drain_then_cancel(readiness, token, drain).await;
            });
        }

        let router = Router {
            webhooks: self.webhooks,
            services: self.services,
            resolver: resolver.clone(),
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
            max_body_bytes: self.limits.max_body_bytes,
            max_conversion_body_bytes: self.limits.max_conversion_body_bytes,
            body_timeout: self.limits.header_read_timeout,
            serve_health: health.is_none(),
            serve_webhooks: true,
        };
        let tracker = TaskTracker::new();
        let force = CancellationToken::new();
        if let Some((listener, _)) = health {
            let health_router = Router {
                serve_health: true,
                serve_webhooks: false,
                ..router.clone()
            };
            tracker.spawn(serve_plain(
                listener,
                health_router,
                self.token.clone(),
                force.clone(),
                self.limits.clone(),
            ));
        }
        let acceptor = TlsAcceptor::from(config);
        let token = self.token.clone();
        let limits = self.limits.clone();
        let metrics = self.metrics.clone();
        let task = tokio::spawn(async move {
            serve_tls(
                listener,
                acceptor,
                router,
                token,
                force.clone(),
                limits.clone(),
                metrics,
                tracker.clone(),
            )
            .await;
            tracker.close();
            if tokio::time::timeout(limits.shutdown_grace, tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!("shutdown grace period over; closing remaining connections");
                force.cancel();
                tracker.wait().await;
            }
            tracing::info!("webhook server stopped");
        });
        tracing::info!(%local_addr, ?health_addr, fips, "webhook server listening");
        Ok(RunningServer {
            local_addr,
            health_addr,
            token: self.token,
            resolver,
            client_ca,
            metrics: self.metrics,
            readiness: self.readiness,
            drain_period: self.limits.drain_period,
            fips,
            task,
        })
    }

    /// Starts the server and waits until it stopped (signal or token).
    pub async fn run(self) -> Result<(), ServerError> {
        self.start().await?.wait().await
    }
}

/// Reports not ready, keeps serving for `drain`, then starts the graceful shutdown. A
/// shutdown started elsewhere in the meantime ends the wait.
async fn drain_then_cancel(readiness: Readiness, token: CancellationToken, drain: Duration) {
    tracing::info!(
        ?drain,
        "shutting down: /readyz answers 503 and connections are still accepted while endpoints are updated"
    );
    readiness.start_draining();
    tokio::select! {
        _ = tokio::time::sleep(drain) => {}
        _ = token.cancelled() => {}
    }
    token.cancel();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                tokio::select! {
                    _ = sigterm.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The TCP stream as rustls reads it: through a buffer of one TLS record. rustls reads at
/// most 4 KiB per call, so a 4.5 KB admission review took two `recvfrom` calls and a 50 KB
/// conversion review seven; with the buffer they take one and three (`perf trace -s` of the
/// bench server under load), for one more copy of the bytes in memory.
fn tls_reads(tcp: TcpStream) -> tokio::io::BufReader<TcpStream> {
    /// The largest TLS 1.3 record on the wire: a 5-byte header and 2^14 + 256 bytes.
    const RECORD: usize = 5 + (1 << 14) + 256;
    tokio::io::BufReader::with_capacity(RECORD, tcp)
}

#[allow(clippy::too_many_arguments)]
async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    token: CancellationToken,
    force: CancellationToken,
    limits: Limits,
    metrics: Metrics,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = token.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // E.g. EMFILE: back off a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = token.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let token = token.clone();
        let force = force.clone();
        let limits = limits.clone();
        let metrics = metrics.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(
                limits.handshake_timeout,
                acceptor.accept(tls_reads(tcp)),
            )
            .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    metrics.tls_handshake_failures.inc();
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.tls_handshake_failures.inc();
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            serve_connection(TokioIo::new(tls), h2, router, token, force, limits).await;
        });
    }
    tracing::info!("no longer accepting connections");
}

async fn serve_plain(
    listener: TcpListener,
    router: Router,
    token: CancellationToken,
    force: CancellationToken,
    limits: Limits,
) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed on the health listener");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = token.cancelled() => break,
        };
        let router = router.clone();
        let token = token.clone();
        let force = force.clone();
        let limits = limits.clone();
        tokio::spawn(serve_connection(
            TokioIo::new(tcp),
            false,
            router,
            token,
            force,
            limits,
        ));
    }
}

/// Drives one connection; on shutdown asks it to finish gracefully, and drops it when the
/// grace period is over.
macro_rules! drive {
    ($conn:expr, $token:expr, $force:expr) => {{
        let mut conn = pin!($conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
            _ = $token.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = $force.cancelled() => {}
                }
            }
        }
    }};
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    h2: bool,
    router: Router,
    token: CancellationToken,
    force: CancellationToken,
    limits: Limits,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let headers_read = HeadersRead::default();
    let mark = headers_read.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        mark.mark();
        let router = router.clone();
        async move {
            let response: Result<Response<ResponseBody>, std::convert::Infallible> =
                router.handle(request).await;
            response
        }
    });
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(100)
            .serve_connection(io, service);
        drive!(conn, token, force);
    } else {
        // hyper's header timer runs from the moment the connection waits for a request, so it
        // is the idle timeout; the header deadline proper is armed at each request's first byte.
        let io = TokioIo::new(HeaderDeadline::new(
            io.into_inner(),
            limits.header_read_timeout,
            headers_read,
        ));
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle_timeout.max(limits.header_read_timeout))
            .serve_connection(io, service);
        drive!(conn, token, force);
    }
}
