//! Shared set-up of the end-to-end tests: the CronTab conversion webhook (in process, generated
//! certificates) and a real kube-apiserver (stackable-testenv) with the generated CRD pointing
//! at it by URL.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use crontab_operator::{
    crd,
    server::{ServerOptions, webhook_server},
};
use k8s_openapi::{
    ByteString, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api,
    core::{
        Status,
        conversion::{ConversionRequest, ConversionResponse},
    },
};
use stackable_certs::LeafOptions;
use stackable_conversion::{ConversionRouter, WebhookTarget};
use stackable_testenv::TestEnv;
use stackable_webhook::{
    CertSource, Converter, RawConversionRequest, RunningServer, WebhookServer,
};

/// The webhook and the control plane using it.
pub struct Cluster {
    pub server: RunningServer,
    pub env: TestEnv,
    pub client: kube::Client,
    /// A fresh namespace.
    pub namespace: String,
}

impl Cluster {
    /// Starts the CronTab webhook on a free port and a control plane with the CronTab CRD, and
    /// creates a namespace `<prefix>-xxxxx`.
    pub async fn start(prefix: &str) -> Self {
        Self::start_with_apiserver_flags(prefix, &[]).await
    }

    /// [`Cluster::start`] with extra kube-apiserver flags.
    pub async fn start_with_apiserver_flags(prefix: &str, flags: &[&str]) -> Self {
        let mut options = ServerOptions::in_memory(
            "127.0.0.1:0".parse().unwrap(),
            "crontab-operator",
            "e2e",
            &["127.0.0.1".parse().unwrap()],
        );
        options.handle_signals = false;
        let server = webhook_server(options).unwrap().start().await.unwrap();
        Self::start_with(prefix, server, flags).await
    }

    /// [`Cluster::start`] with another converter on the conversion path.
    pub async fn start_serving(prefix: &str, converter: impl Converter) -> Self {
        Self::start_serving_with_apiserver_flags(prefix, converter, &[]).await
    }

    /// [`Cluster::start_serving`] with extra kube-apiserver flags.
    pub async fn start_serving_with_apiserver_flags(
        prefix: &str,
        converter: impl Converter,
        flags: &[&str],
    ) -> Self {
        let leaf = LeafOptions::for_service("crontab-operator", "e2e")
            .ip_address("127.0.0.1".parse().unwrap());
        let server = WebhookServer::builder()
            .bind("127.0.0.1:0".parse().unwrap())
            .handle_signals(false)
            .certificates(CertSource::in_memory(leaf))
            .conversion(crontab_operator::crd::CONVERT_PATH, converter)
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        Self::start_with(prefix, server, flags).await
    }

    async fn start_with(prefix: &str, server: RunningServer, flags: &[&str]) -> Self {
        let port = server.local_addr().port();
        let ca_bundle = server
            .ca_bundle_pem()
            .expect("generated certificates have a CA");

        // The generated CRD, pointed at the webhook by URL, with the CA bundle filled in.
        let mut crd: CustomResourceDefinition = crd(WebhookTarget::Url(format!(
            "https://127.0.0.1:{port}{}",
            crontab_operator::crd::CONVERT_PATH
        )))
        .unwrap();
        let client_config = crd
            .spec
            .conversion
            .as_mut()
            .and_then(|c| c.webhook.as_mut())
            .and_then(|w| w.client_config.as_mut())
            .unwrap();
        client_config.ca_bundle = Some(ByteString(ca_bundle.into_bytes()));

        let env = flags
            .iter()
            .fold(TestEnv::builder().crds([crd]), |builder, flag| {
                builder.apiserver_flag(*flag)
            })
            .start()
            .await
            .unwrap();
        let namespace = env.create_namespace(prefix).await.unwrap();
        let client = env.client().unwrap();
        Self {
            server,
            env,
            client,
            namespace,
        }
    }

    /// A namespaced API for `K` in the test namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Stops the webhook and the control plane.
    pub async fn stop(self) {
        self.server.shutdown();
        self.server.wait().await.unwrap();
        self.env.stop();
    }
}

/// Metadata with a name and a namespace.
pub fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..ObjectMeta::default()
    }
}

/// Retries a fallible async call while the API server cannot reach the webhook yet (the first
/// calls after start-up), up to 10 s.
pub async fn retrying<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut last = None;
    for _ in 0..50 {
        match call().await {
            Ok(value) => return value,
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what} kept failing: {last:?}");
}

/// One `ConversionReview` a [`Recording`] answered.
#[derive(Debug, Clone)]
pub struct Review {
    /// How many objects it held.
    pub objects: usize,
    /// The `apiVersion`s they came in.
    pub from: BTreeSet<String>,
}

/// The CronTab router, remembering each review it answers (for [`Cluster::start_serving`]).
pub struct Recording {
    router: ConversionRouter,
    reviews: Mutex<Vec<Review>>,
}

impl Recording {
    /// Answers with `crontab_operator::router()`.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            router: crontab_operator::router().unwrap(),
            reviews: Mutex::new(Vec::new()),
        })
    }

    /// The reviews answered since the last call.
    pub fn take(&self) -> Vec<Review> {
        std::mem::take(&mut *self.reviews.lock().unwrap())
    }

    fn record(&self, objects: usize, from: BTreeSet<String>) {
        self.reviews.lock().unwrap().push(Review { objects, from });
    }
}

/// An object's `apiVersion`, read without building the rest of it.
#[derive(serde::Deserialize)]
struct ApiVersion<'a> {
    #[serde(rename = "apiVersion", borrow)]
    api_version: Option<std::borrow::Cow<'a, str>>,
}

impl Converter for Recording {
    fn convert(&self, request: ConversionRequest) -> ConversionResponse {
        let from = request
            .objects
            .iter()
            .map(|object| object["apiVersion"].as_str().unwrap_or_default().to_owned())
            .collect();
        self.record(request.objects.len(), from);
        self.router.convert_request(request)
    }

    fn convert_raw(
        &self,
        request: &RawConversionRequest<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Box<Status>> {
        let from = request
            .objects
            .iter()
            .map(|object| {
                serde_json::from_str::<ApiVersion<'_>>(object)
                    .ok()
                    .and_then(|read| read.api_version)
                    .unwrap_or_default()
                    .into_owned()
            })
            .collect();
        self.record(request.objects.len(), from);
        Converter::convert_raw(&self.router, request, out)
    }
}
