//! What a leaf certificate should contain: [`LeafOptions`].
//!
//! For a webhook behind a Service, the API server connects to
//! `<service>.<namespace>.svc` (see
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#service-reference>),
//! so [`LeafOptions::for_service`] puts every name a client may use into the SANs.

use std::{net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::KeyAlgorithm;

/// Default leaf validity: 30 days (renewed after 20 days with the default policy).
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Default cluster domain.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// Options for a leaf certificate, built with chained setters.
///
/// Defaults: no SANs, serverAuth on, clientAuth off, validity [`DEFAULT_LEAF_VALIDITY`]
/// (clamped to the CA's notAfter when issued), key algorithm [`KeyAlgorithm::EcdsaP256`].
///
/// ```
/// use stackable_certs::LeafOptions;
/// let opts = LeafOptions::for_service("webhook", "ops")
///     .cluster_domain("example.internal")
///     .ip_address("127.0.0.1".parse().unwrap());
/// assert_eq!(
///     opts.dns_names(),
///     ["webhook", "webhook.ops", "webhook.ops.svc", "webhook.ops.svc.example.internal"]
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafOptions {
    service: Option<(String, String)>,
    cluster_domain: String,
    extra_dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    common_name: Option<String>,
    organizations: Vec<String>,
    server_auth: bool,
    client_auth: bool,
    validity: Duration,
    key_algorithm: KeyAlgorithm,
}

impl Default for LeafOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl LeafOptions {
    /// Options without any SAN (add some with [`Self::dns_name`] / [`Self::ip_address`], or
    /// set a subject for a client certificate).
    pub fn new() -> Self {
        LeafOptions {
            service: None,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            extra_dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            common_name: None,
            organizations: Vec::new(),
            server_auth: true,
            client_auth: false,
            validity: DEFAULT_LEAF_VALIDITY,
            key_algorithm: KeyAlgorithm::default(),
        }
    }

    /// Options for a Service: SANs `name`, `name.namespace`, `name.namespace.svc` and
    /// `name.namespace.svc.<cluster domain>` (default `cluster.local`).
    pub fn for_service(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        LeafOptions {
            service: Some((name.into(), namespace.into())),
            ..Self::new()
        }
    }

    /// Sets the cluster domain used for the fully qualified Service name.
    pub fn cluster_domain(mut self, domain: impl Into<String>) -> Self {
        self.cluster_domain = domain.into().trim_matches('.').to_string();
        self
    }

    /// Adds a DNS SAN.
    pub fn dns_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.extra_dns_names.contains(&name) {
            self.extra_dns_names.push(name);
        }
        self
    }

    /// Adds an IP address SAN.
    pub fn ip_address(mut self, ip: IpAddr) -> Self {
        if !self.ip_addresses.contains(&ip) {
            self.ip_addresses.push(ip);
        }
        self
    }

    /// Sets the subject common name (default: the first DNS name).
    pub fn common_name(mut self, cn: impl Into<String>) -> Self {
        self.common_name = Some(cn.into());
        self
    }

    /// Adds a subject organisation (O). Kubernetes maps O to groups, for example
    /// `CN=admin, O=system:masters` with clientAuth for a cluster admin client.
    pub fn organization(mut self, o: impl Into<String>) -> Self {
        self.organizations.push(o.into());
        self
    }

    /// Whether to include the serverAuth EKU (default true).
    pub fn server_auth(mut self, on: bool) -> Self {
        self.server_auth = on;
        self
    }

    /// Whether to include the clientAuth EKU (default false).
    pub fn client_auth(mut self, on: bool) -> Self {
        self.client_auth = on;
        self
    }

    /// Requested validity (clamped to the CA's notAfter when issued).
    pub fn validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Key algorithm of the leaf key.
    pub fn key_algorithm(mut self, algorithm: KeyAlgorithm) -> Self {
        self.key_algorithm = algorithm;
        self
    }

    /// All DNS SANs: the Service names first, then the extra names, without duplicates.
    pub fn dns_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if let Some((name, ns)) = &self.service {
            names.push(name.clone());
            names.push(format!("{name}.{ns}"));
            names.push(format!("{name}.{ns}.svc"));
            if !self.cluster_domain.is_empty() {
                names.push(format!("{name}.{ns}.svc.{}", self.cluster_domain));
            }
        }
        for extra in &self.extra_dns_names {
            if !names.contains(extra) {
                names.push(extra.clone());
            }
        }
        names
    }

    /// The IP SANs.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.ip_addresses
    }

    /// The explicit common name, if set.
    pub fn get_common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The organisations.
    pub fn organizations(&self) -> &[String] {
        &self.organizations
    }

    /// Whether serverAuth is requested.
    pub fn wants_server_auth(&self) -> bool {
        self.server_auth
    }

    /// Whether clientAuth is requested.
    pub fn wants_client_auth(&self) -> bool {
        self.client_auth
    }

    /// The requested validity.
    pub fn get_validity(&self) -> Duration {
        self.validity
    }

    /// The requested key algorithm.
    pub fn get_key_algorithm(&self) -> KeyAlgorithm {
        self.key_algorithm
    }

    /// Whether `cert` has exactly the SANs, EKUs, key algorithm and subject these options ask
    /// for (the validity is not compared).
    pub fn matches(&self, cert: &crate::Certificate) -> bool {
        let info = cert.info();
        let mut want_dns = self.dns_names();
        want_dns.sort();
        let mut have_dns = info.dns_names.clone();
        have_dns.sort();
        let mut want_ip = self.ip_addresses.clone();
        want_ip.sort();
        let mut have_ip = info.ip_addresses.clone();
        have_ip.sort();
        let cn_ok = match &self.common_name {
            Some(cn) => info.common_names.iter().any(|c| c == cn),
            None => true,
        };
        let mut want_o = self.organizations.clone();
        want_o.sort();
        let mut have_o = info.organizations.clone();
        have_o.sort();
        want_dns == have_dns
            && want_ip == have_ip
            && cn_ok
            && want_o == have_o
            && ((!self.server_auth && !self.client_auth)
                || (info.server_auth == self.server_auth && info.client_auth == self.client_auth))
            && info.key_algorithm == Some(self.key_algorithm)
            && !info.is_ca
    }
}
