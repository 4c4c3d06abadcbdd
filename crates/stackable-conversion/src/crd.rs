//! One multi-version CRD from the single-version CRDs that kube-derive generates per version.
//!
//! Each `#[derive(CustomResource)]` type yields a CRD with one version. [`MultiVersionCrd`]
//! merges them into one, checks that group, kind, scope and names agree, that exactly one version
//! is the storage version and at least one is served, sets the `served`, `deprecated` and
//! `deprecationWarning` flags, removes schema formats the API server does not know (the bounds
//! they implied become `minimum`/`maximum`, see [`crate::schema`]), and fills `spec.conversion`
//! with strategy `Webhook`,
//! `conversionReviewVersions: ["v1"]` and a `clientConfig` (service or URL) whose `caBundle` is left
//! empty for a CA injector to fill.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, CustomResourceDefinitionVersion,
    ServiceReference, WebhookClientConfig, WebhookConversion,
};
use kube::core::CustomResourceExt;
use snafu::Snafu;

/// Why the versions could not be merged into one CRD.
#[derive(Debug, Snafu, PartialEq, Eq)]
pub enum CrdError {
    /// No version was given.
    #[snafu(display("no versions given"))]
    NoVersions,

    /// An input CRD does not hold exactly one version.
    #[snafu(display("CRD {name} holds {count} versions; give one CRD per version"))]
    NotSingleVersion {
        /// The CRD's name.
        name: String,
        /// How many versions it holds.
        count: usize,
    },

    /// A property differs between versions.
    #[snafu(display(
        "version {version} has {property} {found}, but version {first_version} has {expected}"
    ))]
    Mismatch {
        /// `group`, `scope`, `names.kind`, `names.plural`, ...
        property: String,
        /// The first version.
        first_version: String,
        /// The value in the first version.
        expected: String,
        /// The offending version.
        version: String,
        /// Its value.
        found: String,
    },

    /// A version name appears twice.
    #[snafu(display("version {version} is given twice"))]
    DuplicateVersion {
        /// The version.
        version: String,
    },

    /// Not exactly one storage version.
    #[snafu(display(
        "exactly one version must be the storage version, found {} ({})",
        versions.len(),
        versions.join(", ")
    ))]
    StorageVersionCount {
        /// The versions marked as storage.
        versions: Vec<String>,
    },

    /// No version is served.
    #[snafu(display("no version is served"))]
    NoServedVersion,
}

/// One version of the merged CRD: the single-version CRD kube-derive generated, and its flags.
#[derive(Debug, Clone)]
#[must_use]
pub struct CrdVersion {
    crd: CustomResourceDefinition,
    served: bool,
    storage: bool,
    deprecation: Option<Option<String>>,
}

impl CrdVersion {
    /// A served, non-storage, non-deprecated version from a single-version CRD.
    pub fn new(crd: CustomResourceDefinition) -> Self {
        Self {
            crd,
            served: true,
            storage: false,
            deprecation: None,
        }
    }

    /// The version of a `#[derive(CustomResource)]` type.
    pub fn of<K: CustomResourceExt>() -> Self {
        Self::new(K::crd())
    }

    /// Marks this version as the storage version.
    pub fn storage(mut self) -> Self {
        self.storage = true;
        self
    }

    /// Sets whether the API server serves this version (default: served).
    pub fn served(mut self, served: bool) -> Self {
        self.served = served;
        self
    }

    /// Marks this version as deprecated; clients get `warning` (or the API server's default
    /// warning when `None`) on every request.
    pub fn deprecated(mut self, warning: Option<&str>) -> Self {
        self.deprecation = Some(warning.map(str::to_owned));
        self
    }
}

/// Where the API server sends `ConversionReview`s.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum WebhookTarget {
    /// A Service in the cluster.
    Service {
        /// Service name.
        name: String,
        /// Service namespace.
        namespace: String,
        /// URL path, e.g. `/convert`.
        path: Option<String>,
        /// Service port (the API server's default is 443).
        port: Option<i32>,
    },
    /// A URL (`https://host:port/path`), e.g. for a webhook outside the cluster.
    Url(String),
}

impl WebhookTarget {
    /// A Service in the cluster, without path or port yet.
    pub fn service(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self::Service {
            name: name.into(),
            namespace: namespace.into(),
            path: None,
            port: None,
        }
    }

    /// Sets the path (for a Service target; a URL carries its own).
    pub fn path(mut self, new_path: impl Into<String>) -> Self {
        if let Self::Service { path, .. } = &mut self {
            *path = Some(new_path.into());
        }
        self
    }

    /// Sets the Service port.
    pub fn port(mut self, new_port: i32) -> Self {
        if let Self::Service { port, .. } = &mut self {
            *port = Some(new_port);
        }
        self
    }

    fn client_config(&self) -> WebhookClientConfig {
        match self {
            WebhookTarget::Service {
                name,
                namespace,
                path,
                port,
            } => WebhookClientConfig {
                ca_bundle: None,
                service: Some(ServiceReference {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    path: path.clone(),
                    port: *port,
                }),
                url: None,
            },
            WebhookTarget::Url(url) => WebhookClientConfig {
                ca_bundle: None,
                service: None,
                url: Some(url.clone()),
            },
        }
    }
}

/// Builds one multi-version CRD; see the [module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct MultiVersionCrd {
    versions: Vec<CrdVersion>,
    webhook: Option<WebhookTarget>,
}

impl MultiVersionCrd {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a version; the versions appear in the CRD in the order given.
    pub fn version(mut self, version: CrdVersion) -> Self {
        self.versions.push(version);
        self
    }

    /// Converts through a webhook at `target` (without one, the strategy is `None`).
    pub fn webhook(mut self, target: WebhookTarget) -> Self {
        self.webhook = Some(target);
        self
    }

    /// Checks and merges the versions.
    pub fn build(self) -> Result<CustomResourceDefinition, CrdError> {
        let mut merged: Option<CustomResourceDefinition> = None;
        let mut versions: Vec<CustomResourceDefinitionVersion> = Vec::new();
        for version in self.versions {
            let CrdVersion {
                crd,
                served,
                storage,
                deprecation,
            } = version;
            let [single] = crd.spec.versions.as_slice() else {
                return NotSingleVersionSnafu {
                    name: crd.metadata.name.clone().unwrap_or_default(),
                    count: crd.spec.versions.len(),
                }
                .fail();
            };
            let mut single = single.clone();
            if let Some(first) = &merged {
                check_same(first, &versions[0].name, &crd, &single.name)?;
            }
            if versions.iter().any(|v| v.name == single.name) {
                return DuplicateVersionSnafu {
                    version: single.name,
                }
                .fail();
            }
            single.served = served;
            single.storage = storage;
            if let Some(schema) = single.schema.take() {
                single.schema = Some(normalized(schema));
            }
            match deprecation {
                Some(warning) => {
                    single.deprecated = Some(true);
                    single.deprecation_warning = warning;
                }
                None => {
                    single.deprecated = None;
                    single.deprecation_warning = None;
                }
            }
            versions.push(single);
            if merged.is_none() {
                merged = Some(crd);
            }
        }
        let Some(mut crd) = merged else {
            return NoVersionsSnafu.fail();
        };
        let storage: Vec<String> = versions
            .iter()
            .filter(|v| v.storage)
            .map(|v| v.name.clone())
            .collect();
        if storage.len() != 1 {
            return StorageVersionCountSnafu { versions: storage }.fail();
        }
        if !versions.iter().any(|v| v.served) {
            return NoServedVersionSnafu.fail();
        }
        crd.spec.versions = versions;
        crd.spec.conversion = Some(match &self.webhook {
            Some(target) => CustomResourceConversion {
                strategy: "Webhook".to_owned(),
                webhook: Some(WebhookConversion {
                    client_config: Some(target.client_config()),
                    conversion_review_versions: vec!["v1".to_owned()],
                }),
            },
            None => CustomResourceConversion {
                strategy: "None".to_owned(),
                webhook: None,
            },
        });
        Ok(crd)
    }
}

/// The schema without formats the API server does not know (see [`crate::schema`]).
fn normalized(
    schema: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceValidation,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceValidation {
    let Ok(mut value) = serde_json::to_value(&schema) else {
        return schema;
    };
    crate::schema::normalize_formats(&mut value);
    serde_json::from_value(value).unwrap_or(schema)
}

fn check_same(
    first: &CustomResourceDefinition,
    first_version: &str,
    other: &CustomResourceDefinition,
    version: &str,
) -> Result<(), CrdError> {
    let (a, b) = (&first.spec, &other.spec);
    let properties: [(&str, String, String); 9] = [
        (
            "metadata.name",
            format!("{:?}", first.metadata.name),
            format!("{:?}", other.metadata.name),
        ),
        ("group", a.group.clone(), b.group.clone()),
        ("scope", a.scope.clone(), b.scope.clone()),
        ("names.kind", a.names.kind.clone(), b.names.kind.clone()),
        (
            "names.plural",
            a.names.plural.clone(),
            b.names.plural.clone(),
        ),
        (
            "names.singular",
            format!("{:?}", a.names.singular),
            format!("{:?}", b.names.singular),
        ),
        (
            "names.listKind",
            format!("{:?}", a.names.list_kind),
            format!("{:?}", b.names.list_kind),
        ),
        (
            "names.shortNames",
            format!("{:?}", a.names.short_names),
            format!("{:?}", b.names.short_names),
        ),
        (
            "names.categories",
            format!("{:?}", a.names.categories),
            format!("{:?}", b.names.categories),
        ),
    ];
    for (property, expected, found) in properties {
        if expected != found {
            return MismatchSnafu {
                property,
                first_version,
                expected,
                version,
                found,
            }
            .fail();
        }
    }
    Ok(())
}
