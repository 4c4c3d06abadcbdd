//! `release check --semver`: cargo-semver-checks against each crate's previous release tag.
//!
//! Optional and not run by CI: it needs `cargo install cargo-semver-checks` and builds rustdoc
//! JSON of two versions of every crate. A crate with no release tag yet is skipped (first release).

use std::process::Command;

use semver::Version;
use snafu::ensure;

use super::{
    Error, SemverChecksSnafu, git,
    workspace::{Crate, Workspace},
};

/// Runs cargo-semver-checks for every publishable library with an earlier release tag.
pub(crate) fn run(workspace: &Workspace) -> Result<(), Error> {
    let installed = Command::new(env!("CARGO"))
        .args(["semver-checks", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    ensure!(
        installed,
        SemverChecksSnafu {
            message: "--semver needs cargo-semver-checks, which is not installed: \
                      `cargo install cargo-semver-checks --locked` (see docs/releasing.md)"
                .to_string()
        }
    );
    println!("  semver checks against the previous release tags (cargo-semver-checks):");
    let mut failed = Vec::new();
    for krate in workspace.publish_order() {
        if !krate.has_lib {
            continue;
        }
        let Some(baseline) = previous_tag(workspace, krate)? else {
            println!("    - {}: no earlier release tag, skipped", krate.name);
            continue;
        };
        println!("    {} {} against {baseline}", krate.name, krate.version);
        let status = Command::new(env!("CARGO"))
            .args(["semver-checks", "check-release", "--package", &krate.name])
            .args(["--baseline-rev", &baseline])
            .current_dir(&workspace.root)
            .status();
        if !status.is_ok_and(|status| status.success()) {
            failed.push(krate.name.clone());
        }
    }
    ensure!(
        failed.is_empty(),
        SemverChecksSnafu {
            message: format!(
                "cargo-semver-checks found breaking changes (or could not run) in: {}; bump the \
                 major version (minor before 1.0) or undo the change",
                failed.join(", ")
            )
        }
    );
    Ok(())
}

/// The newest `<crate>-v<version>` tag up to the crate's version: the release the code in the
/// tree changes (after `prepare`, the one before the new version).
fn previous_tag(workspace: &Workspace, krate: &Crate) -> Result<Option<String>, Error> {
    let prefix = format!("{}-v", krate.name);
    let tags = git::tags(&workspace.root, &format!("{prefix}*"))?;
    Ok(tags
        .iter()
        .filter_map(|tag| {
            let version = Version::parse(tag.strip_prefix(&prefix)?).ok()?;
            (version <= krate.version).then_some((version, tag))
        })
        .max()
        .map(|(_, tag)| tag.clone()))
}
