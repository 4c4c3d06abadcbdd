//! Acting as someone else, and applying manifests as users do.
//!
//! An operator's deploy manifests grant its ServiceAccount exactly what it needs; a test that
//! runs the operator as that ServiceAccount (impersonated:
//! <https://kubernetes.io/docs/reference/access-authn-authz/authentication/#user-impersonation>)
//! shows that the RBAC is enough, and `kubectl apply` of the manifests shows that the API
//! server accepts them.

use std::{path::PathBuf, process::Command};

use snafu::{OptionExt, ResultExt};

use super::{Error, KubectlFailedSnafu, NoKubectlSnafu, ReadFileSnafu, TestEnv, WriteFileSnafu};

impl TestEnv {
    /// A kubeconfig file (in the work folder) for this control plane that impersonates `user`,
    /// for example `system:serviceaccount:<namespace>:<name>`: hand it to an operator process
    /// (`KUBECONFIG`) to run it with exactly the rights of that ServiceAccount.
    pub fn kubeconfig_as(&self, user: &str) -> Result<PathBuf, Error> {
        let path = self.kubeconfig_path();
        let text = std::fs::read_to_string(path).context(ReadFileSnafu { path })?;
        let mut config: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if let Some(users) = config.get_mut("users").and_then(|u| u.as_array_mut()) {
            for entry in users {
                entry["user"]["as"] = serde_json::Value::String(user.to_owned());
            }
        }
        let file = format!(
            "kubeconfig-as-{}",
            user.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        let out = self.work_dir().join(file);
        std::fs::write(&out, config.to_string()).context(WriteFileSnafu { path: &out })?;
        Ok(out)
    }

    /// `kubectl apply --server-side -f <path>` as the cluster admin, with this control plane's
    /// kubectl; returns kubectl's output.
    pub fn kubectl_apply(&self, path: impl AsRef<std::path::Path>) -> Result<String, Error> {
        let kubectl = self.binaries().kubectl.clone().context(NoKubectlSnafu)?;
        let path = path.as_ref();
        let output = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .args(["apply", "--server-side", "-f"])
            .arg(path)
            .output()
            .context(ReadFileSnafu { path: &kubectl })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return KubectlFailedSnafu {
                path,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
            .fail();
        }
        Ok(stdout)
    }
}
