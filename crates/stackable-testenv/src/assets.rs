//! Finding the control-plane binaries: kube-apiserver, etcd and kubectl.
//!
//! Binaries the user already has win, in this order:
//!
//! 1. `TEST_ASSET_KUBE_APISERVER`, `TEST_ASSET_ETCD`, `TEST_ASSET_KUBECTL`: one file each
//!    (the variables [controller-runtime's envtest] reads).
//! 2. `KUBEBUILDER_ASSETS`: a folder holding `kube-apiserver`, `etcd` and maybe `kubectl`
//!    (what `setup-envtest use -p path` prints).
//! 3. The build cache, `$XDG_CACHE_HOME/stackable-webhook-kit/k8s-<version>/`
//!    (`~/.cache/...` without `XDG_CACHE_HOME`), filled by [`crate::build`] from Go modules.
//!
//! [`Binaries::ensure`] falls back to building when none of them has the binaries.
//!
//! [controller-runtime's envtest]: https://book.kubebuilder.io/reference/envtest.html

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use snafu::{ResultExt, Snafu};

use crate::{KUBERNETES_VERSION, build};

/// Environment variable naming the kube-apiserver binary.
pub const ENV_KUBE_APISERVER: &str = "TEST_ASSET_KUBE_APISERVER";
/// Environment variable naming the etcd binary.
pub const ENV_ETCD: &str = "TEST_ASSET_ETCD";
/// Environment variable naming the kubectl binary.
pub const ENV_KUBECTL: &str = "TEST_ASSET_KUBECTL";
/// Environment variable naming a folder with `kube-apiserver`, `etcd` (and maybe `kubectl`).
pub const ENV_KUBEBUILDER_ASSETS: &str = "KUBEBUILDER_ASSETS";
/// Set to `1` to forbid [`Binaries::ensure`] from building (it then fails instead).
pub const ENV_NO_BUILD: &str = "STACKABLE_TESTENV_NO_BUILD";

/// The name of the file written into a cache folder once a build completed.
pub(crate) const STAMP_FILE: &str = ".complete";

/// Errors while locating binaries.
#[derive(Debug, Snafu)]
pub enum Error {
    /// An environment variable names a file that is not an executable.
    #[snafu(display("{variable}={path:?} is not an executable file"))]
    NotExecutable {
        /// The variable.
        variable: String,
        /// Its value.
        path: PathBuf,
    },

    /// `KUBEBUILDER_ASSETS` lacks a binary.
    #[snafu(display("KUBEBUILDER_ASSETS={dir:?} has no executable {binary:?}"))]
    MissingInAssets {
        /// The folder.
        dir: PathBuf,
        /// The missing binary.
        binary: String,
    },

    /// Neither `XDG_CACHE_HOME` nor `HOME` is set.
    #[snafu(display("cannot find a cache folder: neither XDG_CACHE_HOME nor HOME is set"))]
    NoCacheDir,

    /// Nothing has the binaries and building is switched off.
    #[snafu(display(
        "no kube-apiserver/etcd found (set KUBEBUILDER_ASSETS or TEST_ASSET_*, or run \
         `cargo xtask testenv build`), and {ENV_NO_BUILD}=1 forbids building them"
    ))]
    BuildDisabled,

    /// Building failed.
    #[snafu(display("building the control-plane binaries failed"))]
    Build {
        /// The cause.
        source: build::Error,
    },
}

/// Where the control-plane binaries are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binaries {
    /// The kube-apiserver binary.
    pub kube_apiserver: PathBuf,
    /// The etcd binary.
    pub etcd: PathBuf,
    /// The kubectl binary, when one is known.
    pub kubectl: Option<PathBuf>,
    /// Where they were found (for messages).
    pub origin: Origin,
}

/// Where [`Binaries`] were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `TEST_ASSET_*` variables.
    TestAssetVariables,
    /// The `KUBEBUILDER_ASSETS` folder.
    KubebuilderAssets,
    /// The build cache.
    Cache,
}

impl Binaries {
    /// Finds binaries the user already has or a complete earlier build; `Ok(None)` when there are none.
    pub fn locate() -> Result<Option<Self>, Error> {
        Self::locate_with(|name| std::env::var_os(name))
    }

    /// Like [`Binaries::locate`], and builds into the cache when nothing is found.
    ///
    /// A build prints its steps to stderr and takes many minutes the first time.
    pub fn ensure() -> Result<Self, Error> {
        if let Some(binaries) = Self::locate()? {
            return Ok(binaries);
        }
        if std::env::var_os(ENV_NO_BUILD).is_some_and(|v| v == "1") {
            return BuildDisabledSnafu.fail();
        }
        let dir = cache_dir()?;
        build::build(&build::BuildOptions::new(dir)).context(BuildSnafu)
    }

    /// The binaries of a complete build in `dir` (a cache folder), if it is complete.
    pub fn from_cache_dir(dir: &Path) -> Option<Self> {
        if !dir.join(STAMP_FILE).is_file() {
            return None;
        }
        let binaries = Self {
            kube_apiserver: dir.join("kube-apiserver"),
            etcd: dir.join("etcd"),
            kubectl: Some(dir.join("kubectl")),
            origin: Origin::Cache,
        };
        binaries.all_executable().then_some(binaries)
    }

    /// Environment variables that make [`Binaries::locate`] in another process find these binaries.
    pub fn env_vars(&self) -> Vec<(&'static str, PathBuf)> {
        let mut vars = vec![
            (ENV_KUBE_APISERVER, self.kube_apiserver.clone()),
            (ENV_ETCD, self.etcd.clone()),
        ];
        if let Some(kubectl) = &self.kubectl {
            vars.push((ENV_KUBECTL, kubectl.clone()));
        }
        vars
    }

    /// Whether these are binaries built by this crate, whose etcd and kube-apiserver exit
    /// when the process that started them dies (see `go/internal/watchdog`).
    pub fn has_watchdog(&self) -> bool {
        [&self.kube_apiserver, &self.etcd]
            .iter()
            .all(|b| b.parent().is_some_and(|dir| dir.join(STAMP_FILE).is_file()))
    }

    fn all_executable(&self) -> bool {
        is_executable(&self.kube_apiserver)
            && is_executable(&self.etcd)
            && self.kubectl.as_deref().is_none_or(is_executable)
    }

    fn locate_with(
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Option<Self>, Error> {
        let checked = |name: &str| -> Result<Option<PathBuf>, Error> {
            match var(name) {
                Some(value) if !value.is_empty() => {
                    let path = PathBuf::from(value);
                    if is_executable(&path) {
                        Ok(Some(path))
                    } else {
                        NotExecutableSnafu {
                            variable: name,
                            path,
                        }
                        .fail()
                    }
                }
                _ => Ok(None),
            }
        };
        let apiserver = checked(ENV_KUBE_APISERVER)?;
        let etcd = checked(ENV_ETCD)?;
        let kubectl = checked(ENV_KUBECTL)?;
        let cache = match var("XDG_CACHE_HOME").or_else(|| var("HOME")) {
            Some(_) => cache_dir_with(&var)
                .ok()
                .and_then(|d| Self::from_cache_dir(&d)),
            None => None,
        };

        if let (Some(kube_apiserver), Some(etcd)) = (apiserver.clone(), etcd.clone()) {
            let kubectl = kubectl.or_else(|| cache.as_ref().and_then(|c| c.kubectl.clone()));
            return Ok(Some(Self {
                kube_apiserver,
                etcd,
                kubectl,
                origin: Origin::TestAssetVariables,
            }));
        }

        if let Some(dir) = var(ENV_KUBEBUILDER_ASSETS).filter(|v| !v.is_empty()) {
            let dir = PathBuf::from(dir);
            let find = |binary: &str, set: Option<PathBuf>| -> Result<PathBuf, Error> {
                if let Some(path) = set {
                    return Ok(path);
                }
                let path = dir.join(binary);
                if is_executable(&path) {
                    Ok(path)
                } else {
                    MissingInAssetsSnafu {
                        dir: dir.clone(),
                        binary,
                    }
                    .fail()
                }
            };
            let kube_apiserver = find("kube-apiserver", apiserver)?;
            let etcd = find("etcd", etcd)?;
            let kubectl = kubectl
                .or_else(|| Some(dir.join("kubectl")).filter(|p| is_executable(p)))
                .or_else(|| cache.as_ref().and_then(|c| c.kubectl.clone()));
            return Ok(Some(Self {
                kube_apiserver,
                etcd,
                kubectl,
                origin: Origin::KubebuilderAssets,
            }));
        }

        Ok(cache.map(|cached| Self {
            kube_apiserver: apiserver.unwrap_or(cached.kube_apiserver),
            etcd: etcd.unwrap_or(cached.etcd),
            kubectl: kubectl.or(cached.kubectl),
            origin: Origin::Cache,
        }))
    }
}

/// The cache folder for [`KUBERNETES_VERSION`]:
/// `$XDG_CACHE_HOME/stackable-webhook-kit/k8s-<version>`, or `~/.cache/...`.
pub fn cache_dir() -> Result<PathBuf, Error> {
    cache_dir_with(|name| std::env::var_os(name))
}

fn cache_dir_with(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<PathBuf, Error> {
    let base = match var("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(xdg) => PathBuf::from(xdg),
        None => match var("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".cache"),
            None => return NoCacheDirSnafu.fail(),
        },
    };
    Ok(base
        .join("stackable-webhook-kit")
        .join(format!("k8s-{KUBERNETES_VERSION}")))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, ffi::OsString, fs};

    use super::*;

    fn fake_binary(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn vars(pairs: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn cache_dir_respects_xdg_cache_home() {
        let dir = cache_dir_with(vars(&[
            ("XDG_CACHE_HOME", Path::new("/x")),
            ("HOME", Path::new("/h")),
        ]))
        .unwrap();
        assert_eq!(
            dir,
            PathBuf::from(format!("/x/stackable-webhook-kit/k8s-{KUBERNETES_VERSION}"))
        );
        let dir = cache_dir_with(vars(&[("HOME", Path::new("/h"))])).unwrap();
        assert_eq!(
            dir,
            PathBuf::from(format!(
                "/h/.cache/stackable-webhook-kit/k8s-{KUBERNETES_VERSION}"
            ))
        );
        assert!(matches!(cache_dir_with(vars(&[])), Err(Error::NoCacheDir)));
    }

    #[test]
    fn incomplete_cache_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = cache_dir_with(vars(&[("XDG_CACHE_HOME", tmp.path())])).unwrap();
        fs::create_dir_all(&dir).unwrap();
        for name in ["kube-apiserver", "etcd", "kubectl"] {
            fake_binary(&dir, name);
        }
        let env = vars(&[("XDG_CACHE_HOME", tmp.path())]);
        assert_eq!(Binaries::locate_with(&env).unwrap(), None, "no stamp yet");
        fs::write(dir.join(STAMP_FILE), "done").unwrap();
        let found = Binaries::locate_with(&env).unwrap().unwrap();
        assert_eq!(found.origin, Origin::Cache);
        assert_eq!(found.kube_apiserver, dir.join("kube-apiserver"));
        // A binary that lost its executable bit makes the cache incomplete again.
        fs::set_permissions(dir.join("etcd"), fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(Binaries::locate_with(&env).unwrap(), None);
    }

    #[test]
    fn user_binaries_win_over_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let assets = tmp.path().join("assets");
        fs::create_dir_all(&assets).unwrap();
        let apiserver = fake_binary(&assets, "kube-apiserver");
        let etcd = fake_binary(&assets, "etcd");

        let found = Binaries::locate_with(vars(&[(ENV_KUBEBUILDER_ASSETS, &assets)]))
            .unwrap()
            .unwrap();
        assert_eq!(found.origin, Origin::KubebuilderAssets);
        assert_eq!(found.kube_apiserver, apiserver);
        assert_eq!(found.kubectl, None);

        let found = Binaries::locate_with(vars(&[
            (ENV_KUBE_APISERVER, &apiserver),
            (ENV_ETCD, &etcd),
            (ENV_KUBEBUILDER_ASSETS, Path::new("/nonexistent")),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(found.origin, Origin::TestAssetVariables);
        assert_eq!(found.etcd, etcd);
    }

    #[test]
    fn bad_user_paths_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Binaries::locate_with(vars(&[(ENV_KUBEBUILDER_ASSETS, tmp.path())])).unwrap_err();
        assert!(
            matches!(&err, Error::MissingInAssets { binary, .. } if binary == "kube-apiserver"),
            "{err}"
        );
        let missing = tmp.path().join("nope");
        let err = Binaries::locate_with(vars(&[(ENV_ETCD, &missing)])).unwrap_err();
        assert!(matches!(err, Error::NotExecutable { .. }), "{err}");
    }

    #[test]
    fn env_vars_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let binaries = Binaries {
            kube_apiserver: fake_binary(tmp.path(), "a"),
            etcd: fake_binary(tmp.path(), "e"),
            kubectl: Some(fake_binary(tmp.path(), "k")),
            origin: Origin::Cache,
        };
        let pairs = binaries.env_vars();
        let refs: Vec<(&str, &Path)> = pairs.iter().map(|(k, v)| (*k, v.as_path())).collect();
        let found = Binaries::locate_with(vars(&refs)).unwrap().unwrap();
        assert_eq!(found.kube_apiserver, binaries.kube_apiserver);
        assert_eq!(found.etcd, binaries.etcd);
        assert_eq!(found.kubectl, binaries.kubectl);
    }
}
