//! Can the publishable crates be packaged? `cargo publish --workspace --dry-run` packages them
//! in publish order against a local overlay of the crates packaged before them, exactly what a
//! release would upload, and (unless `--no-verify`) builds each packaged crate on its own.

use std::{path::Path, process::Command, time::Instant};

use snafu::ResultExt;

use super::{Error, RunCommandSnafu};

/// The Kubernetes version the verification builds compile k8s-openapi for. Library crates
/// enable no k8s-openapi version feature (their users pick one), so a packaged library built on
/// its own needs one from the environment, as k8s-openapi's build script explains. It must be
/// the version of k8s-openapi's `latest` feature (the binaries enable it; two different versions
/// refuse to build): 1.37 for k8s-openapi 0.29. Keep it, and release.yml, in step.
const K8S_OPENAPI_VERSION_FOR_VERIFY: &str = "1.37";

/// One crate cargo could not package, with cargo's words and what to do.
#[derive(Debug)]
pub(crate) struct PackageFailure {
    pub(crate) crate_name: String,
    pub(crate) cargo_error: String,
    pub(crate) fix: &'static str,
}

/// Runs `cargo publish --workspace --dry-run`; `Ok(None)` when every crate packages.
pub(crate) fn dry_run(root: &Path, verify: bool) -> Result<Option<PackageFailure>, Error> {
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["publish", "--workspace", "--dry-run", "--allow-dirty"])
        .current_dir(root);
    if !verify {
        command.arg("--no-verify");
    }
    if std::env::var_os("K8S_OPENAPI_ENABLED_VERSION").is_none() {
        command.env(
            "K8S_OPENAPI_ENABLED_VERSION",
            K8S_OPENAPI_VERSION_FOR_VERIFY,
        );
    }
    let started = Instant::now();
    let output = command.output().context(RunCommandSnafu {
        command: "cargo publish --workspace --dry-run",
        dir: root,
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "  cargo publish --workspace --dry-run{}: {:.1} s",
        if verify { "" } else { " --no-verify" },
        started.elapsed().as_secs_f64()
    );
    if output.status.success() {
        return Ok(None);
    }
    Ok(Some(failure(&stderr)))
}

/// The crate cargo was working on when it failed (the last `Packaging`/`Verifying` line), its
/// error and a hint for the errors a workspace runs into.
fn failure(stderr: &str) -> PackageFailure {
    let crate_name = stderr
        .lines()
        .rev()
        .find_map(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix("Packaging ")
                .or_else(|| line.strip_prefix("Verifying "))
                .or_else(|| line.strip_prefix("Compiling "))?;
            rest.split_whitespace().next().map(str::to_string)
        })
        .unwrap_or_else(|| "(unknown crate)".to_string());
    let cargo_error = stderr
        .lines()
        .skip_while(|line| !line.starts_with("error"))
        .collect::<Vec<_>>()
        .join("\n");
    let fix = if cargo_error.contains("no matching package named") {
        "a dependency on a workspace crate that is not on crates.io yet: dev-dependencies on \
         workspace crates must be path-only (`{ path = \"../x\" }`, no version) so cargo strips \
         them; normal dependencies need the dependency published first (cargo orders them)"
    } else if cargo_error.contains("all dependencies must have a version") {
        "give the dependency a `version` in [workspace.dependencies], or mark the crate \
         `publish = false` (examples, xtask, test-only crates)"
    } else if cargo_error.contains("None of the v1_* features are enabled") {
        "a library crate on k8s-openapi built alone needs K8S_OPENAPI_ENABLED_VERSION"
    } else {
        "see cargo's error above"
    };
    PackageFailure {
        crate_name,
        cargo_error: if cargo_error.is_empty() {
            stderr.trim().to_string()
        } else {
            cargo_error
        },
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_crate_cargo_was_packaging() {
        let stderr = "   Packaging stackable-certs v0.1.0 (/ws/crates/stackable-certs)\n\
                      \x20   Updating crates.io index\n\
                      \x20  Packaging stackable-testenv v0.1.0 (/ws/crates/stackable-testenv)\n\
                      error: failed to prepare local package for uploading\n\n\
                      Caused by:\n  no matching package named `stackable-certs` found\n";
        let failure = failure(stderr);
        assert_eq!(failure.crate_name, "stackable-testenv");
        assert!(failure.cargo_error.starts_with("error: failed to prepare"));
        assert!(failure.fix.contains("path-only"), "{}", failure.fix);
    }
}
