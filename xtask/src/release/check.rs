//! `cargo xtask release check`: could the workspace be published as it is?
//!
//! Fails, naming the crate and the fix, when a publishable crate lacks package metadata, its
//! changelog is malformed or has no entry for its version, an inter-crate requirement does not
//! match the version in the workspace, a dev-dependency on a workspace crate keeps a version
//! (which ties publishing to a cycle), or cargo cannot package it.

use std::fmt;

use semver::VersionReq;
use snafu::ensure;

use super::{
    CheckFailedSnafu, Error,
    changelog::Changelog,
    git, package, semver_checks,
    workspace::{Crate, Workspace},
};

/// Arguments of `cargo xtask release check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Package without building each packaged crate (fast; what CI runs). The release workflow
    /// runs the check without it.
    #[arg(long)]
    no_verify: bool,
    /// Skip `cargo publish --dry-run` altogether (offline use, the xtask tests).
    #[arg(long)]
    no_package: bool,
    /// The tag being released (`<crate>-v<version>`): it must name a publishable crate at that
    /// version, with a changelog entry for it.
    #[arg(long, value_name = "TAG")]
    tag: Option<String>,
    /// Also run cargo-semver-checks against each crate's previous release tag (needs
    /// `cargo install cargo-semver-checks`; not run by CI).
    #[arg(long)]
    semver: bool,
}

/// One thing to fix.
#[derive(Debug)]
struct Problem {
    crate_name: String,
    message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  ✗ {}: {}", self.crate_name, self.message)
    }
}

/// Runs every check, prints what it found and fails when anything is to fix.
pub(crate) fn run(args: Args) -> Result<(), Error> {
    let workspace = Workspace::load()?;
    let order: Vec<&str> = workspace
        .publish_order()
        .iter()
        .map(|krate| krate.name.as_str())
        .collect();
    let unpublished: Vec<&str> = workspace
        .crates
        .iter()
        .filter(|krate| !krate.publishable)
        .map(|krate| krate.name.as_str())
        .collect();
    println!(
        "release check: {} publishable crates, in publish order: {}",
        order.len(),
        order.join(", ")
    );
    println!("  publish = false: {}", unpublished.join(", "));

    let mut problems = Vec::new();

    report_into(
        &mut problems,
        "publish flags",
        publish_flags(&workspace),
        Vec::new(),
    );
    report_into(
        &mut problems,
        "package metadata (description, license, repository, readme, keywords, categories, docs.rs)",
        metadata(&workspace),
        Vec::new(),
    );
    let (found, notes) = changelogs(&workspace, args.tag.as_deref());
    report_into(&mut problems, "changelogs", found, notes);
    report_into(
        &mut problems,
        "inter-crate requirements match the versions",
        requirements(&workspace),
        Vec::new(),
    );
    report_into(
        &mut problems,
        "README code blocks are doc-tested",
        readmes(&workspace),
        Vec::new(),
    );
    if let Some(tag) = &args.tag {
        report_into(
            &mut problems,
            &format!("tag {tag}"),
            tag_matches(&workspace, tag),
            Vec::new(),
        );
    }
    if args.no_package {
        println!("  - packaging skipped (--no-package)");
    } else if problems.is_empty() {
        let found = package::dry_run(&workspace.root, !args.no_verify)?
            .map(|failure| Problem {
                crate_name: failure.crate_name,
                message: format!("cannot be packaged: {}\n      cargo: {}", failure.fix, {
                    failure.cargo_error.replace('\n', "\n      ")
                }),
            })
            .into_iter()
            .collect();
        let title = if args.no_verify {
            "every publishable crate packages (without verification builds)"
        } else {
            "every publishable crate packages and builds on its own"
        };
        report_into(&mut problems, title, found, Vec::new());
    } else {
        println!("  - packaging not tried: fix the problems above first");
    }
    println!(
        "  - doc examples (`//!` and the READMEs included as docs) compile: checked by \
         `cargo test --doc`, which `cargo xtask test` runs; not re-run here"
    );
    if args.semver {
        semver_checks::run(&workspace)?;
    }
    ensure!(
        problems.is_empty(),
        CheckFailedSnafu {
            count: problems.len()
        }
    );
    println!("release check: ok");
    Ok(())
}

/// Prints one check's outcome and keeps its problems.
fn report_into(problems: &mut Vec<Problem>, title: &str, found: Vec<Problem>, notes: Vec<String>) {
    if found.is_empty() {
        println!("  ✓ {title}");
    } else {
        println!("  {title}:");
        for problem in &found {
            println!("  {problem}");
        }
    }
    for note in notes {
        println!("      {note}");
    }
    problems.extend(found);
}

fn problem(krate: &Crate, message: impl Into<String>) -> Problem {
    Problem {
        crate_name: krate.name.clone(),
        message: message.into(),
    }
}

/// Examples and xtask are never published.
fn publish_flags(workspace: &Workspace) -> Vec<Problem> {
    workspace
        .crates
        .iter()
        .filter(|krate| krate.publishable)
        .filter(|krate| {
            let dir = krate.dir();
            krate.name == "xtask" || dir.starts_with(workspace.root.join("examples"))
        })
        .map(|krate| {
            problem(
                krate,
                "an example or xtask is publishable: add `publish = false` to its [package]",
            )
        })
        .collect()
}

/// What crates.io and docs.rs need from every publishable crate.
fn metadata(workspace: &Workspace) -> Vec<Problem> {
    let mut problems = Vec::new();
    for krate in workspace.crates.iter().filter(|krate| krate.publishable) {
        let mut missing = Vec::new();
        for (field, value) in [
            ("description", &krate.description),
            ("license", &krate.license),
            ("repository", &krate.repository),
            ("readme", &krate.readme),
        ] {
            if value.as_deref().is_none_or(|value| value.trim().is_empty()) {
                missing.push(field);
            }
        }
        if krate.keywords.is_empty() {
            missing.push("keywords");
        }
        if krate.categories.is_empty() {
            missing.push("categories");
        }
        if krate.docs_rs.is_none() {
            missing.push("[package.metadata.docs.rs]");
        }
        if !missing.is_empty() {
            problems.push(problem(
                krate,
                format!(
                    "missing {} in {} (license and repository come from [workspace.package])",
                    missing.join(", "),
                    workspace.relative(&krate.manifest).display()
                ),
            ));
        }
        if let Some(readme) = &krate.readme
            && !krate.dir().join(readme).is_file()
        {
            problems.push(problem(krate, format!("readme {readme} does not exist")));
        }
        if krate.keywords.len() > 5 || krate.categories.len() > 5 {
            problems.push(problem(
                krate,
                "crates.io takes at most 5 keywords and 5 categories",
            ));
        }
        for keyword in &krate.keywords {
            let valid = keyword.len() <= 20
                && keyword.starts_with(|c: char| c.is_ascii_alphabetic())
                && keyword
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'));
            if !valid {
                problems.push(problem(
                    krate,
                    format!("keyword {keyword:?}: crates.io wants ASCII letters, digits, -, _ or +, at most 20"),
                ));
            }
        }
        problems.extend(docs_rs_version_feature(krate));
    }
    problems
}

/// A library on k8s-openapi enables no version feature; docs.rs must enable one to build it.
fn docs_rs_version_feature(krate: &Crate) -> Option<Problem> {
    let uses_kube = krate
        .dependencies
        .iter()
        .any(|dep| !dep.is_dev() && (dep.name == "kube" || dep.name == "k8s-openapi"));
    let docs_rs = krate.docs_rs.as_ref()?;
    if !uses_kube || !krate.has_lib {
        return None;
    }
    let enables_latest = docs_rs
        .get("features")
        .and_then(|features| features.as_array())
        .is_some_and(|features| {
            features
                .iter()
                .any(|feature| feature.as_str() == Some("k8s-openapi/latest"))
        });
    let depends_on_openapi = krate
        .dependencies
        .iter()
        .any(|dep| !dep.is_dev() && dep.name == "k8s-openapi");
    if enables_latest && depends_on_openapi {
        return None;
    }
    Some(problem(
        krate,
        "docs.rs builds it without a k8s-openapi version: depend on `k8s-openapi.workspace = true` \
         and put \"k8s-openapi/latest\" in [package.metadata.docs.rs] features",
    ))
}

/// Every changelog parses; every released version has its entry.
fn changelogs(workspace: &Workspace, tag: Option<&str>) -> (Vec<Problem>, Vec<String>) {
    let mut problems = Vec::new();
    let mut first_releases = Vec::new();
    for krate in workspace.crates.iter().filter(|krate| krate.publishable) {
        let full_path = krate.changelog();
        let path = workspace.relative(&full_path);
        let text = match std::fs::read_to_string(&full_path) {
            Ok(text) => text,
            Err(error) => {
                problems.push(problem(
                    krate,
                    format!("cannot read {}: {error}", path.display()),
                ));
                continue;
            }
        };
        let changelog = match Changelog::parse(&text) {
            Ok(changelog) => changelog,
            Err(error) => {
                problems.push(problem(krate, format!("{}: {error}", path.display())));
                continue;
            }
        };
        if changelog.entry(&krate.version).is_some() {
            continue;
        }
        let never_tagged = git::tags(&workspace.root, &format!("{}-v*", krate.name))
            .unwrap_or_default()
            .is_empty();
        let being_released = tag == Some(krate.tag().as_str());
        if changelog.released.is_empty() && never_tagged && !being_released {
            first_releases.push(format!("{} {}", krate.name, krate.version));
            continue;
        }
        problems.push(problem(
            krate,
            format!(
                "{} has no `## [{}] - YYYY-MM-DD` section for its version {}; run `cargo xtask \
                 release prepare` (or fix the version in Cargo.toml)",
                path.display(),
                krate.version,
                krate.version
            ),
        ));
    }
    let notes = if first_releases.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "not released yet (no version section, no tag; the first release is \
             `cargo xtask release prepare <version>`): {}",
            first_releases.join(", ")
        )]
    };
    (problems, notes)
}

/// Requirements between workspace crates: normal ones match the versions, dev ones are
/// path-only (cargo strips them when packaging, so a dev cycle never blocks publishing).
fn requirements(workspace: &Workspace) -> Vec<Problem> {
    let mut problems = Vec::new();
    for krate in workspace.crates.iter().filter(|krate| krate.publishable) {
        for dep in &krate.dependencies {
            let Some(target) = workspace.member(&dep.name) else {
                continue;
            };
            if dep.path.is_none() || target.name == krate.name {
                continue;
            }
            if dep.is_dev() {
                if dep.req != "*" {
                    problems.push(problem(
                        krate,
                        format!(
                            "dev-dependency {} has a version ({}): make it path-only \
                             (`{} = {{ path = \"…\" }}`) so packaging strips it",
                            dep.name, dep.req, dep.name
                        ),
                    ));
                }
                continue;
            }
            if !target.publishable {
                problems.push(problem(
                    krate,
                    format!("depends on {}, which is `publish = false`", dep.name),
                ));
                continue;
            }
            let matches = VersionReq::parse(&dep.req)
                .is_ok_and(|req| dep.req != "*" && req.matches(&target.version));
            if !matches {
                problems.push(problem(
                    krate,
                    format!(
                        "requires {} {} but the workspace has {}: set its version in \
                         [workspace.dependencies] to \"{}\" (`cargo xtask release prepare` does)",
                        dep.name, dep.req, target.version, target.version
                    ),
                ));
            }
        }
    }
    problems
}

/// A README with Rust code is included as documentation, so `cargo test --doc` compiles it.
fn readmes(workspace: &Workspace) -> Vec<Problem> {
    let mut problems = Vec::new();
    for krate in workspace
        .crates
        .iter()
        .filter(|krate| krate.publishable && krate.has_lib)
    {
        let Some(readme) = &krate.readme else {
            continue;
        };
        let has_rust = std::fs::read_to_string(krate.dir().join(readme))
            .is_ok_and(|text| text.lines().any(|line| line.starts_with("```rust")));
        let included = std::fs::read_to_string(krate.dir().join("src/lib.rs"))
            .is_ok_and(|lib| lib.contains(&format!("include_str!(\"../{readme}\")")));
        if has_rust && !included {
            problems.push(problem(
                krate,
                format!(
                    "{readme} has Rust code that no test compiles: add \
                     `#[doc = include_str!(\"../{readme}\")] #[cfg(doctest)] pub struct ReadmeDoctests;` \
                     to src/lib.rs"
                ),
            ));
        }
    }
    problems
}

/// The tag of a release names a publishable crate at its current, changelogged version.
fn tag_matches(workspace: &Workspace, tag: &str) -> Vec<Problem> {
    let found = workspace
        .crates
        .iter()
        .filter(|krate| krate.publishable)
        .find(|krate| tag.starts_with(&format!("{}-v", krate.name)));
    let Some(krate) = found else {
        return vec![Problem {
            crate_name: tag.to_string(),
            message: "the tag names no publishable crate (tags are `<crate>-v<version>`)"
                .to_string(),
        }];
    };
    if krate.tag() != tag {
        return vec![problem(
            krate,
            format!(
                "the tag is {tag} but the crate's version is {} (tag {})",
                krate.version,
                krate.tag()
            ),
        )];
    }
    Vec::new()
}
