//! The version list of a declaration: `version(v1beta1, deprecated = "…"), version(v1, storage)`.
//!
//! Versions are listed oldest first; every action names one of them with `since = <version>`.
//! The flags are those of a CRD version
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#specify-multiple-versions>):
//! `storage`, `served = false`, `deprecated` (with an optional warning) and extra `#[kube]`
//! arguments for this version only (`kube(printcolumn = …)`); `hub` makes the converter go
//! through this version instead of along the chain.

use proc_macro2::{Span, TokenStream};
use syn::{Ident, LitBool, LitStr, Token, meta::ParseNestedMeta, parenthesized};

/// One declared version.
pub(crate) struct Version {
    /// The version name, also the name of its Rust module (`v1beta1`).
    pub(crate) ident: Ident,
    /// The storage version of the CRD.
    pub(crate) storage: bool,
    /// The hub of the converter (else the versions form a chain).
    pub(crate) hub: bool,
    /// Served by the API server (default true).
    pub(crate) served: bool,
    /// `deprecated` (None inside: the API server's default warning) or not deprecated.
    pub(crate) deprecated: Option<Option<LitStr>>,
    /// Extra `#[kube(…)]` arguments for this version.
    pub(crate) kube: TokenStream,
}

impl Version {
    /// The version name as a string.
    pub(crate) fn name(&self) -> String {
        self.ident.to_string()
    }
}

/// The versions of a declaration, oldest first.
pub(crate) struct Versions {
    pub(crate) list: Vec<Version>,
    /// Where the list was written, for errors about the list as a whole.
    pub(crate) span: Span,
}

impl Versions {
    /// The position of `ident` in the list, or an error at `ident` naming the declared versions.
    pub(crate) fn index_of(&self, ident: &Ident) -> syn::Result<usize> {
        self.list
            .iter()
            .position(|v| v.ident == *ident)
            .ok_or_else(|| {
                syn::Error::new(
                    ident.span(),
                    format!(
                        "unknown version `{ident}`; the declared versions are {}",
                        self.names().join(", ")
                    ),
                )
            })
    }

    /// The names, oldest first.
    pub(crate) fn names(&self) -> Vec<String> {
        self.list.iter().map(Version::name).collect()
    }

    /// The number of versions.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Checks the list: at least one version, no duplicates, at most one storage version.
    pub(crate) fn check(&self) -> syn::Result<()> {
        if self.list.is_empty() {
            return Err(syn::Error::new(
                self.span,
                "declare the versions, oldest first: `#[versioned(version(v1alpha1), version(v1, storage))]`",
            ));
        }
        for (i, version) in self.list.iter().enumerate() {
            if self.list[..i].iter().any(|v| v.ident == version.ident) {
                return Err(syn::Error::new(
                    version.ident.span(),
                    format!("version `{}` is declared twice", version.ident),
                ));
            }
        }
        let mut storage = self.list.iter().filter(|v| v.storage);
        if let (Some(_), Some(second)) = (storage.next(), storage.next()) {
            return Err(syn::Error::new(
                second.ident.span(),
                format!(
                    "a second storage version `{}`; a CRD stores exactly one version",
                    second.ident
                ),
            ));
        }
        self.check_hub()
    }

    /// A hub converts to and from every other version, and the generated conversions join
    /// adjacent versions: so every other version must be next to it.
    fn check_hub(&self) -> syn::Result<()> {
        let mut hubs = self.list.iter().enumerate().filter(|(_, v)| v.hub);
        let Some((at, hub)) = hubs.next() else {
            return Ok(());
        };
        if let Some((_, second)) = hubs.next() {
            return Err(syn::Error::new(
                second.ident.span(),
                "a second hub; a converter has at most one",
            ));
        }
        if let Some(far) = self
            .list
            .iter()
            .enumerate()
            .find(|(i, _)| i.abs_diff(at) > 1)
            .map(|(_, v)| v)
        {
            return Err(syn::Error::new(
                hub.ident.span(),
                format!(
                    "`{}` cannot be the hub: the generated conversions join adjacent versions, and `{}` is not next to it; leave out `hub` to chain the versions",
                    hub.ident, far.ident
                ),
            ));
        }
        Ok(())
    }

    /// The hub, if one is declared.
    pub(crate) fn hub(&self) -> Option<&Version> {
        self.list.iter().find(|v| v.hub)
    }

    /// The storage version, required for a CRD.
    pub(crate) fn storage(&self) -> syn::Result<&Version> {
        self.list.iter().find(|v| v.storage).ok_or_else(|| {
            let at = self.list.first().map_or(self.span, |v| v.ident.span());
            syn::Error::new(
                at,
                "a CRD needs a storage version: mark one version `storage`, e.g. `version(v1, storage)`",
            )
        })
    }
}

/// Parses the inside of one `version(…)`.
pub(crate) fn parse_version(meta: &ParseNestedMeta<'_>) -> syn::Result<Version> {
    let content;
    parenthesized!(content in meta.input);
    let ident: Ident = content.parse()?;
    check_version_name(&ident)?;
    let mut version = Version {
        ident,
        storage: false,
        hub: false,
        served: true,
        deprecated: None,
        kube: TokenStream::new(),
    };
    while !content.is_empty() {
        content.parse::<Token![,]>()?;
        if content.is_empty() {
            break;
        }
        let key: Ident = content.parse()?;
        match key.to_string().as_str() {
            "storage" => version.storage = true,
            "hub" => version.hub = true,
            "served" => {
                content.parse::<Token![=]>()?;
                version.served = content.parse::<LitBool>()?.value;
            }
            "deprecated" => {
                let warning = if content.peek(Token![=]) {
                    content.parse::<Token![=]>()?;
                    Some(content.parse::<LitStr>()?)
                } else {
                    None
                };
                version.deprecated = Some(warning);
            }
            "kube" => {
                let args;
                parenthesized!(args in content);
                version.kube = args.parse()?;
            }
            _ => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "unknown version option `{key}`; expected `storage`, `hub`, `served = false`, `deprecated`, `deprecated = \"warning\"` or `kube(…)`"
                    ),
                ));
            }
        }
    }
    Ok(version)
}

/// A Kubernetes version name is a DNS label: lowercase letters and digits here (a Rust
/// identifier cannot hold `-`).
fn check_version_name(ident: &Ident) -> syn::Result<()> {
    let name = ident.to_string();
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(syn::Error::new(
            ident.span(),
            format!(
                "`{name}` is not a Kubernetes version name; use lowercase letters and digits, like v1, v1beta1 or v2alpha3"
            ),
        ))
    }
}
