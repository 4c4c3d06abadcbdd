//! What the injector is told: field manager, scope, where the API server and service CAs
//! come from, how often everything is re-checked.

use std::{path::PathBuf, time::Duration};

use kube::runtime::events::Reporter;

use crate::annotations::ObjectKey;

/// Where `service.beta.openshift.io/inject-cabundle` takes its CA from. Nothing is injected
/// for that annotation unless one is configured: OpenShift's service CA signs Service serving
/// certificates, and no CA is a safe guess for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServiceCa {
    /// Not configured: objects with the annotation are refused with an Event saying so.
    #[default]
    None,
    /// `ca.crt` of this Secret (operator-configured, so no annotation is required on it).
    Secret(ObjectKey),
    /// The API server CA (explicitly chosen).
    ApiServerCa,
}

/// Where the API server CA (for `cert-manager.io/inject-apiserver-ca`) comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ApiServerCa {
    /// Unknown: the annotation is refused.
    #[default]
    Unknown,
    /// A fixed PEM bundle (from the kubeconfig).
    Pem(String),
    /// A file, re-read when it changes (in a Pod:
    /// `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`, which the kubelet updates when
    /// the cluster CA rotates).
    File(PathBuf),
}

/// The controller's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server-side apply field manager.
    pub field_manager: String,
    /// Namespaces whose Secrets, ConfigMaps and Certificates are watched; empty for all.
    pub namespaces: Vec<String>,
    /// The API server CA, for `inject-apiserver-ca`.
    pub api_server_ca: ApiServerCa,
    /// The CA of `inject-cabundle`.
    pub service_ca: ServiceCa,
    /// Whether ConfigMaps are targets (off by default: its RBAC, `patch` on ConfigMaps, is in a
    /// separate manifest). A ConfigMap only ever gets sources of its own namespace.
    pub config_maps: bool,
    /// Every target is re-checked this often (with ±10 % jitter), so nothing missed (an
    /// event lost while the injector was down, an error) stays wrong (default 10 minutes).
    pub resync_period: Duration,
    /// Reconciliations running at once (default 4).
    pub concurrency: u16,
    /// How often an API server CA file is compared with what was last read (default 30 s).
    pub api_server_ca_poll: Duration,
    /// How long a certificate that left the source stays in the bundle, so that Pods still
    /// serving a certificate it signed are trusted until their Secret volume refreshes
    /// (default 1 h; zero replaces the bundle at once). See [`crate::grace`].
    pub grace_period: Duration,
    /// Who publishes the Events.
    pub reporter: Reporter,
}

impl Config {
    /// The defaults, with this field manager and reporter.
    pub fn new(field_manager: impl Into<String>, reporter: Reporter) -> Self {
        Config {
            field_manager: field_manager.into(),
            namespaces: Vec::new(),
            api_server_ca: ApiServerCa::Unknown,
            service_ca: ServiceCa::None,
            config_maps: false,
            resync_period: Duration::from_secs(600),
            concurrency: 4,
            api_server_ca_poll: Duration::from_secs(30),
            grace_period: Duration::from_secs(3600),
            reporter,
        }
    }

    /// Whether objects in `namespace` are watched.
    pub fn in_scope(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }
}
