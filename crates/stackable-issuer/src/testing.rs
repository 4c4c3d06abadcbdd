//! Test support (feature `testing`): cert-manager's real CRDs for a test control plane.
//!
//! The CRDs come from the `deploy/crds` folder of the cert-manager Go module
//! [`CERT_MANAGER_VERSION`], which the Go module proxy serves: `go mod download` puts the
//! module into Go's module cache, and the CRDs are copied once into
//! `~/.cache/stackable-webhook-kit/cert-manager-<version>/crds` (next to the control-plane
//! binaries), where later runs find them without Go or a network.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use snafu::{OptionExt as _, ResultExt as _, Snafu};

/// The cert-manager release whose CRDs the tests install (the one the workspace's other Go
/// peers build against).
pub const CERT_MANAGER_VERSION: &str = "v1.21.2";

/// The cert-manager Go module.
pub const CERT_MANAGER_MODULE: &str = "github.com/cert-manager/cert-manager";

/// What can go wrong while getting cert-manager's CRDs.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum Error {
    /// No cache folder is known.
    #[snafu(display("cannot find the cache folder"))]
    CacheDir {
        /// The cause.
        source: stackable_testenv::assets::Error,
    },
    /// `go mod download` could not run or failed.
    #[snafu(display(
        "`go mod download {CERT_MANAGER_MODULE}@{CERT_MANAGER_VERSION}` failed (is Go >= 1.26 on PATH, and the Go module proxy reachable?): {detail}"
    ))]
    GoModDownload {
        /// What went wrong.
        detail: String,
    },
    /// A file could not be read or written.
    #[snafu(display("cannot access {}", path.display()))]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A CRD file does not parse.
    #[snafu(display("cannot parse the CRD file {}: {reason}", path.display()))]
    ParseCrd {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The cache folder of cert-manager's CRDs.
pub fn crds_dir() -> Result<PathBuf, Error> {
    let k8s = stackable_testenv::assets::cache_dir().context(CacheDirSnafu)?;
    let base = k8s.parent().map(Path::to_path_buf).unwrap_or(k8s);
    Ok(base
        .join(format!("cert-manager-{CERT_MANAGER_VERSION}"))
        .join("crds"))
}

/// cert-manager's CRDs of the `cert-manager.io` group (Certificate, CertificateRequest,
/// Issuer, ClusterIssuer), from the cache, downloading the Go module on first use.
pub fn cert_manager_crds() -> Result<Vec<CustomResourceDefinition>, Error> {
    let dir = crds_dir()?;
    if !dir.is_dir() {
        fill_cache(&dir)?;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .context(IoSnafu { path: &dir })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cert-manager.io_") && n.ends_with(".yaml"))
        })
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).context(IoSnafu { path: &path })?;
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| {
                ParseCrdSnafu {
                    path: &path,
                    reason: e.to_string(),
                }
                .build()
            })?;
        for document in documents.into_iter().filter(|d| !d.is_null()) {
            let crd = serde_json::from_value(document).map_err(|e| {
                ParseCrdSnafu {
                    path: &path,
                    reason: e.to_string(),
                }
                .build()
            })?;
            crds.push(crd);
        }
    }
    if crds.is_empty() {
        return ParseCrdSnafu {
            path: dir,
            reason: "no cert-manager.io CRD found".to_string(),
        }
        .fail();
    }
    Ok(crds)
}

/// Downloads the module (Go's module cache) and copies its `deploy/crds` into `dir`.
fn fill_cache(dir: &Path) -> Result<(), Error> {
    let module = format!("{CERT_MANAGER_MODULE}@{CERT_MANAGER_VERSION}");
    let output = Command::new("go")
        .args(["mod", "download", "-json", &module])
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .current_dir(std::env::temp_dir())
        .output()
        .map_err(|e| {
            GoModDownloadSnafu {
                detail: e.to_string(),
            }
            .build()
        })?;
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let source = info["Dir"]
        .as_str()
        .map(PathBuf::from)
        .context(GoModDownloadSnafu {
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stderr),
                info["Error"].as_str().unwrap_or_default()
            ),
        })?;
    let crds = source.join("deploy").join("crds");
    let staging = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).context(IoSnafu { path: &staging })?;
    for entry in std::fs::read_dir(&crds).context(IoSnafu { path: &crds })? {
        let path = entry.context(IoSnafu { path: &crds })?.path();
        if path.extension().is_some_and(|e| e == "yaml")
            && let Some(name) = path.file_name()
        {
            std::fs::copy(&path, staging.join(name)).context(IoSnafu { path: &path })?;
        }
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).context(IoSnafu { path: parent })?;
    }
    // Another test may have filled the cache meanwhile: theirs is as good as ours.
    if std::fs::rename(&staging, dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(())
}
