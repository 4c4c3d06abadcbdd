//! `helm`, built from its Go module like the control plane, for testing Helm charts against a
//! [`TestEnv`].
//!
//! The crate ships a second small Go module (`go-helm/` next to `Cargo.toml`) whose `go.mod`
//! names `helm.sh/helm/v4` at [`HELM_VERSION`] as a `tool`. [`Helm::ensure`] finds `helm`:
//!
//! 1. `TEST_ASSET_HELM` names a binary (the user's own, or the one `cargo xtask test` built);
//! 2. the cache `$XDG_CACHE_HOME/stackable-webhook-kit/helm-<version>/helm` (`~/.cache/...`)
//!    holds a complete build;
//! 3. otherwise it builds it there with the local Go toolchain (about 6 minutes on 2 cores the
//!    first time; the same lock file, staging folder and stamp as [`crate::build`]), unless
//!    `STACKABLE_TESTENV_NO_BUILD=1`.
//!
//! [`Helm::command`] runs `helm` against a control plane with its own configuration, cache and
//! data folders inside the control plane's work folder, so a test never reads or writes the
//! user's Helm repositories or plugins. [`release`] has what a chart test needs next to it:
//! `helm lint`, `helm template` with a server-side dry run, `helm install`/`uninstall`, and the
//! command line of the chart's container, to run the operator binary with it.
//!
//! See <https://helm.sh/docs/helm/helm/>.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use snafu::{ResultExt, Snafu};

use crate::{
    TestEnv, assets,
    assets::{ENV_NO_BUILD, STAMP_FILE, is_executable},
    build::{self, install_staging, lock_out_dir, progress, run, secs},
};

pub mod release;

/// The helm release this crate builds.
pub const HELM_VERSION: &str = "v4.3.1";

/// Environment variable naming a `helm` binary to use instead of building one.
pub const ENV_HELM: &str = "TEST_ASSET_HELM";

/// Errors of finding, building and running `helm`.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    /// `TEST_ASSET_HELM` names something that is not an executable file.
    #[snafu(display("{ENV_HELM}={path:?} is not an executable file"))]
    NotExecutable {
        /// Its value.
        path: PathBuf,
    },

    /// The cache folder is unknown.
    #[snafu(display("cannot find the cache folder for helm"))]
    CacheDir {
        /// The cause.
        source: assets::Error,
    },

    /// No helm was found and building is switched off.
    #[snafu(display(
        "no helm found (set {ENV_HELM} or run `cargo xtask testenv build`), and \
         {ENV_NO_BUILD}=1 forbids building it"
    ))]
    BuildDisabled,

    /// Building helm failed.
    #[snafu(display("building helm {HELM_VERSION} from its Go module failed"))]
    Build {
        /// The cause.
        source: build::Error,
    },

    /// A command could not be started.
    #[snafu(display("cannot run `{command}`"))]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        source: std::io::Error,
    },

    /// A command failed.
    #[snafu(display("`{command}` failed ({status}):\n{stderr}"))]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error (and output).
        stderr: String,
    },

    /// A file could not be written.
    #[snafu(display("cannot write {path:?}"))]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// A request to the control plane failed.
    #[snafu(display("cannot {action}"))]
    Request {
        /// What was asked.
        action: String,
        /// The cause.
        source: kube::Error,
    },

    /// The control plane could not do what was asked (no client, no kubeconfig, ...).
    #[snafu(display("cannot {action}"))]
    Env {
        /// What was asked.
        action: String,
        /// The cause (boxed: the control plane's error is large).
        #[snafu(source(from(crate::Error, Box::new)))]
        source: Box<crate::Error>,
    },

    /// The chart's workload is not what a chart test can run.
    #[snafu(display("{what}: {reason}"))]
    Workload {
        /// The object.
        what: String,
        /// Why it cannot be run.
        reason: String,
    },
}

/// A `helm` binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helm {
    binary: PathBuf,
}

impl Helm {
    /// The binary named by `TEST_ASSET_HELM`, or a complete build in the cache; `Ok(None)`
    /// when there is neither.
    pub fn locate() -> Result<Option<Self>, Error> {
        if let Some(path) = std::env::var_os(ENV_HELM).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(path);
            if !is_executable(&path) {
                return NotExecutableSnafu { path }.fail();
            }
            return Ok(Some(Self { binary: path }));
        }
        Ok(Self::from_cache_dir(&cache_dir()?))
    }

    /// Like [`Helm::locate`], and builds into the cache when nothing is found.
    pub fn ensure() -> Result<Self, Error> {
        if let Some(helm) = Self::locate()? {
            return Ok(helm);
        }
        if std::env::var_os(ENV_NO_BUILD).is_some_and(|v| v == "1") {
            return BuildDisabledSnafu.fail();
        }
        build(&cache_dir()?, Path::new("go"), false).context(BuildSnafu)
    }

    /// The build in `dir` (a cache folder), if it is complete.
    pub fn from_cache_dir(dir: &Path) -> Option<Self> {
        let binary = dir.join("helm");
        (dir.join(STAMP_FILE).is_file() && is_executable(&binary)).then_some(Self { binary })
    }

    /// The binary.
    pub fn path(&self) -> &Path {
        &self.binary
    }

    /// The environment variable that makes [`Helm::locate`] in another process find it.
    pub fn env_var(&self) -> (&'static str, PathBuf) {
        (ENV_HELM, self.binary.clone())
    }

    /// `helm --kubeconfig <env's admin kubeconfig>`, with its configuration, cache and data
    /// folders in the control plane's work folder.
    pub fn command(&self, env: &TestEnv) -> Command {
        let home = env.work_dir().join("helm");
        let mut command = Command::new(&self.binary);
        command
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT")
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(env.kubeconfig_path());
        command
    }

    /// Runs `helm <args>` against `env`; its standard output, or an error with its output.
    pub fn run<I, S>(&self, env: &TestEnv, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = self.command(env);
        command.args(args);
        output(&mut command)
    }
}

/// Runs `command`; its standard output, or an error with its standard error and output.
pub(crate) fn output(command: &mut Command) -> Result<String, Error> {
    let line = format!("{command:?}");
    let output = command.output().context(SpawnSnafu { command: &line })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        stderr.push_str(&stdout);
        return FailedSnafu {
            command: line,
            status: output.status,
            stderr,
        }
        .fail();
    }
    Ok(stdout)
}

/// The cache folder for [`HELM_VERSION`]: `$XDG_CACHE_HOME/stackable-webhook-kit/helm-<version>`,
/// beside the control plane's.
pub fn cache_dir() -> Result<PathBuf, Error> {
    let k8s = assets::cache_dir().context(CacheDirSnafu)?;
    let base = k8s.parent().map(Path::to_path_buf).unwrap_or(k8s);
    Ok(base.join(format!("helm-{HELM_VERSION}")))
}

/// This crate's helm Go module folder.
pub fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go-helm")
}

/// Builds `helm` from [`module_dir`] into `out_dir` with the `go` command, printing each step
/// to stderr; reuses a complete build there unless `force`.
pub fn build(out_dir: &Path, go: &Path, force: bool) -> Result<Helm, build::Error> {
    let started = Instant::now();
    let parent = out_dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).context(build::IoSnafu {
        step: "create cache folder",
        path: parent,
    })?;
    let lock = lock_out_dir(out_dir)?;
    if !force && let Some(helm) = Helm::from_cache_dir(out_dir) {
        return Ok(helm);
    }
    let module = module_dir();
    if !module.join("go.mod").is_file() {
        return build::ModuleMissingSnafu { dir: module }.fail();
    }
    progress(format_args!(
        "building helm {HELM_VERSION} from its Go module into {out_dir:?} (about 6 minutes on \
         2 cores the first time, seconds once Go's build cache is warm)"
    ));
    let go_version = Command::new(go)
        .arg("version")
        .output()
        .context(build::GoNotFoundSnafu { go })?;
    let go_version = String::from_utf8_lossy(&go_version.stdout)
        .trim()
        .to_owned();
    progress(format_args!("[1/4] check Go toolchain: {go_version}"));

    let go_command = || {
        let mut command = Command::new(go);
        command
            .current_dir(&module)
            .env("CGO_ENABLED", "0")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-buildvcs=false -mod=readonly");
        command
    };
    let step = "download Go modules";
    progress(format_args!("[2/4] {step} (go mod download)"));
    let t = Instant::now();
    run(step, go_command().args(["mod", "download"]))?;
    progress(format_args!("      done in {}", secs(t.elapsed())));

    let staging = out_dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).context(build::IoSnafu {
        step: "create staging folder",
        path: &staging,
    })?;
    let step = "build helm";
    progress(format_args!("[3/4] {step}"));
    let t = Instant::now();
    let built = run(
        step,
        go_command()
            .args(["build", "-trimpath", "-ldflags", &ldflags(), "-o"])
            .arg(staging.join("helm"))
            .arg("helm.sh/helm/v4/cmd/helm"),
    )
    .and_then(|_| {
        progress(format_args!("      done in {}", secs(t.elapsed())));
        let output = run(
            "check helm version",
            Command::new(staging.join("helm")).args(["version", "--short"]),
        )?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !text.starts_with(HELM_VERSION) {
            return build::WrongVersionSnafu {
                binary: "helm",
                output: text,
                expected: HELM_VERSION,
            }
            .fail();
        }
        progress(format_args!("[4/4] check version: helm {text}"));
        Ok(())
    });
    if let Err(error) = built {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(error);
    }
    let stamp = format!(
        "helm {HELM_VERSION}\n{go_version}\nbuilt in {}\n",
        secs(started.elapsed())
    );
    install_staging(&staging, out_dir, &stamp)?;
    progress(format_args!(
        "built helm {HELM_VERSION} in {}",
        secs(started.elapsed())
    ));
    drop(lock);
    Ok(Helm {
        binary: out_dir.join("helm"),
    })
}

/// The `-ldflags` that stamp the release into `helm version`, as helm's Makefile does for a
/// tagged build (there is no git checkout, so no commit).
fn ldflags() -> String {
    let package = "helm.sh/helm/v4/internal/version";
    format!("-s -w -X {package}.version={HELM_VERSION} -X {package}.gitTreeState=clean")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_names_the_version_as_a_tool() {
        let go_mod = std::fs::read_to_string(module_dir().join("go.mod")).unwrap();
        assert!(go_mod.contains("tool helm.sh/helm/v4/cmd/helm"), "{go_mod}");
        assert!(
            go_mod.contains(&format!("helm.sh/helm/v4 {HELM_VERSION}")),
            "go.mod does not require helm {HELM_VERSION}"
        );
    }

    #[test]
    fn ldflags_stamp_the_version() {
        let flags = ldflags();
        assert!(
            flags.contains(&format!(
                "-X helm.sh/helm/v4/internal/version.version={HELM_VERSION} "
            )),
            "{flags}"
        );
    }

    #[test]
    fn incomplete_cache_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let helm = tmp.path().join("helm");
        std::fs::write(&helm, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&helm, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert_eq!(Helm::from_cache_dir(tmp.path()), None, "no stamp yet");
        std::fs::write(tmp.path().join(STAMP_FILE), "done").unwrap();
        assert_eq!(Helm::from_cache_dir(tmp.path()).unwrap().path(), helm);
    }

    #[test]
    fn missing_go_names_the_step() {
        let tmp = tempfile::tempdir().unwrap();
        let err = build(
            &tmp.path().join("out"),
            &tmp.path().join("no-such-go"),
            false,
        )
        .unwrap_err();
        assert!(matches!(err, build::Error::GoNotFound { .. }), "{err}");
        assert!(!tmp.path().join("out").exists());
    }
}
