//! A Helm chart under test on a [`TestEnv`]: `helm lint`, `helm template` checked with a
//! server-side dry run, `helm install` and `helm uninstall`, and the command line of the
//! chart's Deployment, to run the operator binary with exactly the flags, environment and
//! ServiceAccount the chart gives it.
//!
//! The test control plane has no kubelet, so a chart's Pods never run; a chart test checks
//! what the API server can: that it accepts every object, that they exist after
//! `helm install` and are gone after `helm uninstall`, and, with the binary run as a process
//! impersonating the chart's ServiceAccount (see [`TestEnv::kubeconfig_as`]), that the chart's
//! RBAC allows what the binary does.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use snafu::{OptionExt, ResultExt};

use super::{EnvSnafu, Error, Helm, RequestSnafu, WorkloadSnafu, WriteFileSnafu, output};
use crate::{
    TestEnv,
    replicas::{ReplicaInfo, Replicas, ReplicasBuilder},
};

/// Which of a replica's free ports a listen flag gets (see [`ContainerCommand::replicas`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// [`ReplicaInfo::https`].
    Https,
    /// [`ReplicaInfo::health`]: the address [`Replicas::wait_ready`] probes.
    Health,
}

/// A chart folder, tested with one `helm` on one control plane.
#[derive(Debug)]
pub struct Chart<'a> {
    helm: &'a Helm,
    env: &'a TestEnv,
    dir: PathBuf,
}

impl<'a> Chart<'a> {
    /// The chart in `dir`.
    pub fn new(helm: &'a Helm, env: &'a TestEnv, dir: impl Into<PathBuf>) -> Self {
        Self {
            helm,
            env,
            dir: dir.into(),
        }
    }

    /// The chart folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `helm lint --strict` with these `--set` values; helm's output.
    pub fn lint(&self, sets: &[&str]) -> Result<String, Error> {
        let mut args: Vec<std::ffi::OsString> =
            vec!["lint".into(), "--strict".into(), self.dir.clone().into()];
        args.extend(set_args(sets));
        self.helm.run(self.env, args)
    }

    /// `helm template` of release `release` in `namespace` with these `--set` values; the
    /// rendered manifest.
    pub fn template(&self, release: &str, namespace: &str, sets: &[&str]) -> Result<String, Error> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "template".into(),
            release.into(),
            self.dir.clone().into(),
            "--namespace".into(),
            namespace.into(),
        ];
        args.extend(set_args(sets));
        self.helm.run(self.env, args)
    }

    /// Renders like [`Chart::template`] and applies the result with
    /// `kubectl apply --server-side --dry-run=server`: the API server validates and admits
    /// every object, then stores none. The objects as `kind.group/name` (kubectl's `-o name`),
    /// sorted (compare with [`sorted_names`]). `namespace` must exist.
    pub fn dry_run(
        &self,
        release: &str,
        namespace: &str,
        sets: &[&str],
    ) -> Result<Vec<String>, Error> {
        let manifest = self.template(release, namespace, sets)?;
        let file = self.write_manifest(release, &manifest)?;
        let names = self.kubectl(&[
            "apply".as_ref(),
            "--server-side".as_ref(),
            "--dry-run=server".as_ref(),
            "-o".as_ref(),
            "name".as_ref(),
            "-f".as_ref(),
            file.as_os_str(),
        ])?;
        Ok(sorted_lines(&names))
    }

    /// `helm install` of release `release` in `namespace` (created when missing) with these
    /// `--set` values, without waiting for the Pods (no kubelet runs them); returns the
    /// installed manifest (`helm get manifest`), written to a file in the work folder too.
    pub fn install(
        &self,
        release: &str,
        namespace: &str,
        sets: &[&str],
    ) -> Result<Manifest, Error> {
        self.release("install", "--create-namespace", release, namespace, sets)
    }

    /// `helm upgrade` of release `release` in `namespace`, keeping the values it was installed
    /// with (`--reuse-values`) and setting these on top, without waiting for the Pods; returns
    /// the new manifest like [`Chart::install`].
    pub fn upgrade(
        &self,
        release: &str,
        namespace: &str,
        sets: &[&str],
    ) -> Result<Manifest, Error> {
        self.release("upgrade", "--reuse-values", release, namespace, sets)
    }

    /// `helm <verb> <release> <chart> --namespace <namespace> <flag> --set ..`, then the
    /// release's manifest (`helm get manifest`), also written to the work folder.
    fn release(
        &self,
        verb: &str,
        flag: &str,
        release: &str,
        namespace: &str,
        sets: &[&str],
    ) -> Result<Manifest, Error> {
        let mut args: Vec<std::ffi::OsString> = vec![
            verb.into(),
            release.into(),
            self.dir.clone().into(),
            "--namespace".into(),
            namespace.into(),
            flag.into(),
        ];
        args.extend(set_args(sets));
        self.helm.run(self.env, args)?;
        let text = self.helm.run(
            self.env,
            ["get", "manifest", release, "--namespace", namespace],
        )?;
        let path = self.write_manifest(release, &text)?;
        Ok(Manifest { path, text })
    }

    /// `helm uninstall` of `release` in `namespace`, waiting until its objects are deleted.
    pub fn uninstall(&self, release: &str, namespace: &str) -> Result<String, Error> {
        self.helm.run(
            self.env,
            [
                "uninstall",
                release,
                "--namespace",
                namespace,
                "--wait",
                "--timeout",
                "60s",
            ],
        )
    }

    /// [`Chart::install`] with `service.port=<port>` added to `sets`, checked (every object
    /// of the manifest exists), then the release's Service (named like the release) served on
    /// this machine by [`serve_service_locally`]: the chart's webhook configurations and CRDs
    /// reach `localhost:<port>`, e.g. a [`crate::forwarder::Forwarder`] in front of replicas.
    pub async fn install_served_locally(
        &self,
        release: &str,
        namespace: &str,
        sets: &[&str],
        port: u16,
    ) -> Result<Manifest, Error> {
        let port = format!("service.port={port}");
        let sets: Vec<&str> = sets.iter().copied().chain([port.as_str()]).collect();
        let manifest = self.install(release, namespace, &sets)?;
        let existing = self.existing(&manifest)?;
        if existing.len() != manifest.object_count() {
            return WorkloadSnafu {
                what: format!("release {namespace}/{release}"),
                reason: format!(
                    "{} objects installed, {} exist ({existing:?}); manifest {}",
                    manifest.object_count(),
                    existing.len(),
                    manifest.path.display()
                ),
            }
            .fail();
        }
        serve_service_locally(self.env, namespace, release).await?;
        Ok(manifest)
    }

    /// The objects of `manifest` that exist, as `kind.group/name` (`kubectl get -o name`),
    /// sorted.
    pub fn existing(&self, manifest: &Manifest) -> Result<Vec<String>, Error> {
        let names = self.kubectl(&[
            "get".as_ref(),
            "--ignore-not-found".as_ref(),
            "-o".as_ref(),
            "name".as_ref(),
            "-f".as_ref(),
            manifest.path.as_os_str(),
        ])?;
        Ok(sorted_lines(&names))
    }

    fn kubectl(&self, args: &[&std::ffi::OsStr]) -> Result<String, Error> {
        let kubectl = self.env.binaries().kubectl.clone().context(WorkloadSnafu {
            what: "kubectl",
            reason: "the control plane's binaries have no kubectl",
        })?;
        let mut command = std::process::Command::new(kubectl);
        command
            .arg("--kubeconfig")
            .arg(self.env.kubeconfig_path())
            .args(args);
        output(&mut command)
    }

    fn write_manifest(&self, release: &str, text: &str) -> Result<PathBuf, Error> {
        let dir = self.env.work_dir().join("helm").join("manifests");
        std::fs::create_dir_all(&dir).context(WriteFileSnafu { path: &dir })?;
        let mut n = 0;
        let path = loop {
            let path = dir.join(format!("{release}-{n}.yaml"));
            if !path.exists() {
                break path;
            }
            n += 1;
        };
        std::fs::write(&path, text).context(WriteFileSnafu { path: &path })?;
        Ok(path)
    }
}

/// A release's manifest: its text, and the file it was written to.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The file in the control plane's work folder.
    pub path: PathBuf,
    /// The YAML documents, as `helm get manifest` printed them.
    pub text: String,
}

impl Manifest {
    /// How many objects it holds (its documents with a top-level `kind:`).
    pub fn object_count(&self) -> usize {
        self.text
            .lines()
            .filter(|line| line.starts_with("kind: "))
            .count()
    }
}

/// The command line of a Deployment's first container, as the kubelet would start it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerCommand {
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment, `fieldRef`s resolved (`metadata.namespace`; `metadata.name` as
    /// `<deployment>-0`, see [`ContainerCommand::pod_name_env`]).
    pub env: Vec<(String, String)>,
    /// The variables of [`ContainerCommand::env`] that hold the Pod's name (`fieldRef`
    /// `metadata.name`): [`ContainerCommand::replicas`] gives each replica its own.
    pub pod_name_env: Vec<String>,
    /// The Pod's ServiceAccount as a user name (`system:serviceaccount:<namespace>:<name>`),
    /// for [`TestEnv::kubeconfig_as`].
    pub service_account: String,
    /// The Deployment's `spec.replicas` (1 when unset).
    pub replica_count: usize,
}

impl ContainerCommand {
    /// Reads the Deployment `namespace/name` from the control plane.
    pub async fn of_deployment(env: &TestEnv, namespace: &str, name: &str) -> Result<Self, Error> {
        let what = format!("Deployment {namespace}/{name}");
        let client = env.client().context(EnvSnafu {
            action: "build a client",
        })?;
        let deployment = Api::<Deployment>::namespaced(client, namespace)
            .get(name)
            .await
            .context(RequestSnafu {
                action: format!("read {what}"),
            })?;
        // As JSON: which fields are optional differs between k8s-openapi's Kubernetes versions.
        let deployment = serde_json::to_value(&deployment).unwrap_or_default();
        let pod = deployment.pointer("/spec/template/spec");
        let container = pod
            .and_then(|p| p.pointer("/containers/0"))
            .context(WorkloadSnafu {
                what: &what,
                reason: "no container in the Pod template",
            })?;
        let strings = |value: Option<&serde_json::Value>| -> Vec<String> {
            value
                .and_then(|v| v.as_array())
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let pod_name = format!("{name}-0");
        let mut env = Vec::new();
        let mut pod_name_env = Vec::new();
        for var in container
            .get("env")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            let key = var.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            let value = match (
                var.get("value").and_then(|v| v.as_str()),
                var.get("valueFrom"),
            ) {
                (Some(value), _) => value.to_owned(),
                (None, Some(from)) => {
                    match from.pointer("/fieldRef/fieldPath").and_then(|p| p.as_str()) {
                        Some("metadata.namespace") => namespace.to_owned(),
                        Some("metadata.name") => {
                            pod_name_env.push(key.to_owned());
                            pod_name.clone()
                        }
                        _ => {
                            return WorkloadSnafu {
                                what: &what,
                                reason: format!("env {key} comes from {from}"),
                            }
                            .fail();
                        }
                    }
                }
                (None, None) => String::new(),
            };
            env.push((key.to_owned(), value));
        }
        let account = pod
            .and_then(|p| p.get("serviceAccountName"))
            .and_then(|a| a.as_str())
            .unwrap_or("default");
        let replica_count = deployment
            .pointer("/spec/replicas")
            .and_then(serde_json::Value::as_u64)
            .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(Self {
            args: strings(container.get("args")),
            env,
            pod_name_env,
            service_account: format!("system:serviceaccount:{namespace}:{account}"),
            replica_count,
        })
    }

    /// The arguments with `--<flag>=<anything>` replaced by `--<flag>=<value>` (a listen
    /// address of the Pod made a free port on 127.0.0.1); `false` when no argument set it.
    pub fn replace_flag(&mut self, flag: &str, value: &str) -> bool {
        let prefix = format!("--{flag}=");
        let mut found = false;
        for arg in &mut self.args {
            if arg.starts_with(&prefix) {
                *arg = format!("{prefix}{value}");
                found = true;
            }
        }
        found
    }

    /// [`Replicas`] of `program` started as the kubelet would start this container: its
    /// arguments, its environment (the Pod's name is the replica's name, so give the builder a
    /// [`ReplicasBuilder::name_prefix`] that looks like the Deployment's Pods), `KUBECONFIG`
    /// impersonating its ServiceAccount, and each listen address named in `listen`
    /// (`--<flag>=…`, which the arguments must set) moved to the replica's free port on
    /// 127.0.0.1. Start [`ContainerCommand::replica_count`] of them for what the Deployment
    /// runs.
    pub fn replicas(
        &self,
        env: &TestEnv,
        program: impl Into<PathBuf>,
        listen: &[(&str, Listen)],
    ) -> Result<ReplicasBuilder, Error> {
        for (flag, _) in listen {
            let prefix = format!("--{flag}=");
            if !self.args.iter().any(|a| a.starts_with(&prefix)) {
                return WorkloadSnafu {
                    what: "the container",
                    reason: format!("no argument sets --{flag} ({:?})", self.args),
                }
                .fail();
            }
        }
        let kubeconfig = env.kubeconfig_as(&self.service_account).context(EnvSnafu {
            action: format!("write a kubeconfig as {}", self.service_account),
        })?;
        let command = self.clone();
        let listen: Vec<(String, Listen)> =
            listen.iter().map(|(f, l)| ((*f).to_owned(), *l)).collect();
        let mut builder = Replicas::builder(program)
            .test_env(env)
            .kubeconfig(kubeconfig)
            .args(move |info: &ReplicaInfo| {
                let mut command = command.clone();
                for (flag, which) in &listen {
                    let addr = match which {
                        Listen::Https => info.https,
                        Listen::Health => info.health,
                    };
                    command.replace_flag(flag, &addr.to_string());
                }
                command.args
            });
        for (key, value) in &self.env {
            builder = builder.env(key, value);
        }
        for key in &self.pod_name_env {
            builder = builder.name_env(key);
        }
        Ok(builder)
    }

    /// The value of environment variable `name`.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Replaces the Service `namespace/name` (a chart's, with a selector and a cluster IP that
/// nothing routes on a test control plane) by an ExternalName Service of the same name,
/// labels and annotations that points at `localhost` (see
/// [`TestEnv::create_external_name_service`]): a webhook configuration or CRD of the chart
/// that calls the Service then reaches a server on this machine at
/// `localhost:<clientConfig.service.port>`; install the chart with that port. Helm still
/// owns the replacement (`meta.helm.sh/*` annotations), so `helm uninstall` deletes it.
pub async fn serve_service_locally(
    env: &TestEnv,
    namespace: &str,
    name: &str,
) -> Result<(), Error> {
    let what = format!("Service {namespace}/{name}");
    let client = env.client().context(EnvSnafu {
        action: "build a client",
    })?;
    let services: Api<Service> = Api::namespaced(client, namespace);
    let original = services.get(name).await.context(RequestSnafu {
        action: format!("read {what}"),
    })?;
    services
        .delete(name, &DeleteParams::default())
        .await
        .context(RequestSnafu {
            action: format!("delete {what}"),
        })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while services
        .get_opt(name)
        .await
        .context(RequestSnafu {
            action: format!("read {what}"),
        })?
        .is_some()
    {
        if Instant::now() > deadline {
            return WorkloadSnafu {
                what,
                reason: "still there 10 s after it was deleted",
            }
            .fail();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replacement: Service = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": original.metadata.labels,
            "annotations": original.metadata.annotations,
        },
        "spec": { "type": "ExternalName", "externalName": "localhost" },
    }))
    .unwrap_or_default();
    services
        .create(&PostParams::default(), &replacement)
        .await
        .context(RequestSnafu {
            action: format!("create ExternalName {what}"),
        })?;
    Ok(())
}

fn set_args(sets: &[&str]) -> Vec<std::ffi::OsString> {
    sets.iter()
        .flat_map(|set| ["--set".into(), (*set).into()])
        .collect()
}

/// Object names such as `deployment.apps/x`, sorted: what [`Chart::dry_run`] and
/// [`Chart::existing`] return for them.
pub fn sorted_names(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    names.sort();
    names
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_flag_replaces_every_occurrence_and_reports_a_missing_one() {
        let mut command = ContainerCommand {
            args: vec!["--bind=0.0.0.0:8443".into(), "--inject-ca-bundle".into()],
            ..ContainerCommand::default()
        };
        assert!(command.replace_flag("bind", "127.0.0.1:1"));
        assert_eq!(command.args[0], "--bind=127.0.0.1:1");
        assert!(!command.replace_flag("health-bind", "127.0.0.1:2"));
        assert_eq!(command.args.len(), 2);
    }

    #[test]
    fn set_args_pairs_each_value_with_its_flag() {
        assert_eq!(
            set_args(&["a=1", "b.c=x"]),
            ["--set", "a=1", "--set", "b.c=x"].map(std::ffi::OsString::from)
        );
    }
}
