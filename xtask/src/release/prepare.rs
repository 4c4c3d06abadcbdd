//! `cargo xtask release prepare <patch|minor|major|X.Y.Z> [--crate NAME…] [--dry-run]`.
//!
//! Prints the plan, then bumps the chosen crates' versions (in publish order), every
//! requirement on them (`[workspace.dependencies]` included), `Cargo.lock`, and moves each
//! chosen crate's `## Unreleased` entries under `## [X.Y.Z] - YYYY-MM-DD`. Everything is
//! computed and validated before the first file is written: a refusal changes nothing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use semver::Version;
use snafu::{ResultExt, ensure};
use toml_edit::DocumentMut;

use super::{
    AlreadyReleasedSnafu, ChangelogSnafu, EditManifestSnafu, EmptyUnreleasedSnafu, Error,
    NotPublishableSnafu, NothingToReleaseSnafu, ParseLevelSnafu, ParseTomlSnafu, ReadFileSnafu,
    UnknownCrateSnafu, VersionBackwardsSnafu, WriteFileSnafu,
    changelog::Changelog,
    git, manifest_edit,
    workspace::{Crate, Workspace},
};

/// Arguments of `cargo xtask release prepare`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `patch`, `minor`, `major`, or a version such as `1.2.3`.
    level: String,
    /// Only these crates (repeat the flag for several). Default: every publishable crate with
    /// entries in its changelog's Unreleased section.
    #[arg(long = "crate", value_name = "NAME")]
    crates: Vec<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// How far to bump.
#[derive(Debug, Clone)]
enum Level {
    Patch,
    Minor,
    Major,
    Exact(Version),
}

impl Level {
    fn parse(text: &str) -> Result<Self, Error> {
        Ok(match text {
            "patch" => Self::Patch,
            "minor" => Self::Minor,
            "major" => Self::Major,
            _ => Self::Exact(Version::parse(text).context(ParseLevelSnafu { level: text })?),
        })
    }

    fn apply(&self, from: &Version) -> Version {
        match self {
            Self::Patch => Version::new(from.major, from.minor, from.patch + 1),
            Self::Minor => Version::new(from.major, from.minor + 1, 0),
            Self::Major => Version::new(from.major + 1, 0, 0),
            Self::Exact(version) => version.clone(),
        }
    }
}

/// One crate of the plan.
struct Bump<'a> {
    krate: &'a Crate,
    to: Version,
    changelog: Changelog,
}

/// Plans the release, prints the plan and (without `--dry-run`) writes it.
pub(crate) fn run(args: Args) -> Result<(), Error> {
    let workspace = Workspace::load()?;
    let root = workspace.root.clone();
    let level = Level::parse(&args.level)?;
    let bumps = plan(&workspace, &level, &args.crates)?;
    if args.dry_run {
        if git::ensure_clean(&root).is_err() {
            println!(
                "note: the tree has uncommitted changes; prepare without --dry-run refuses it"
            );
        }
    } else {
        git::ensure_clean(&root)?;
    }
    let date = today();
    let edits = edits(&workspace, &bumps, &date)?;

    println!("release prepare {} ({date}):", args.level);
    for bump in &bumps {
        let items = bump.changelog.unreleased_items();
        let change = if bump.to == bump.krate.version {
            format!("{} (first release)", bump.to)
        } else {
            format!("{} -> {}", bump.krate.version, bump.to)
        };
        println!(
            "  {:<32} {change}  ({items} changelog item{})",
            bump.krate.name,
            if items == 1 { "" } else { "s" }
        );
    }
    print_left_out(&workspace, &bumps);
    println!("  edits:");
    for edit in &edits {
        for change in &edit.changes {
            println!("    {}: {change}", relative(&root, &edit.path).display());
        }
    }
    if args.dry_run {
        println!("dry run: nothing written");
        return Ok(());
    }
    for edit in &edits {
        std::fs::write(&edit.path, &edit.text).context(WriteFileSnafu { path: &edit.path })?;
    }
    println!(
        "written. Next: review `git diff`, commit (\"release: …\"), then `cargo xtask release check` \
         and `cargo xtask release tag`."
    );
    Ok(())
}

/// The crates to bump and their new versions, refusing unknown and unpublishable crates,
/// empty Unreleased sections and versions that do not go forward.
fn plan<'a>(
    workspace: &'a Workspace,
    level: &Level,
    names: &[String],
) -> Result<Vec<Bump<'a>>, Error> {
    for name in names {
        let krate = workspace.member(name).ok_or_else(|| {
            UnknownCrateSnafu {
                name: name.clone(),
                known: workspace.publishable_names(),
            }
            .build()
        })?;
        ensure!(
            krate.publishable,
            NotPublishableSnafu { name: name.clone() }
        );
    }
    let mut bumps = Vec::new();
    for krate in workspace.publish_order() {
        let chosen = names.is_empty() || names.contains(&krate.name);
        if !chosen {
            continue;
        }
        let changelog = read_changelog(krate)?;
        if changelog.unreleased_items() == 0 {
            ensure!(
                names.is_empty(),
                EmptyUnreleasedSnafu {
                    crate_name: krate.name.clone(),
                    path: krate.changelog(),
                }
            );
            continue;
        }
        let to = level.apply(&krate.version);
        ensure!(
            to >= krate.version,
            VersionBackwardsSnafu {
                crate_name: krate.name.clone(),
                from: krate.version.clone(),
                to,
            }
        );
        if let Some(why) = released(workspace, krate, &changelog, &to)? {
            return AlreadyReleasedSnafu {
                crate_name: krate.name.clone(),
                version: to,
                why,
            }
            .fail();
        }
        bumps.push(Bump {
            krate,
            to,
            changelog,
        });
    }
    ensure!(!bumps.is_empty(), NothingToReleaseSnafu);
    Ok(bumps)
}

/// Why `version` of `krate` counts as released already, if it does.
fn released(
    workspace: &Workspace,
    krate: &Crate,
    changelog: &Changelog,
    version: &Version,
) -> Result<Option<String>, Error> {
    if let Some(entry) = changelog.entry(version) {
        return Ok(Some(format!("CHANGELOG.md has it, dated {}", entry.date)));
    }
    let tag = super::workspace::tag_name(&krate.name, version);
    Ok(git::tag_commit(&workspace.root, &tag)?
        .map(|commit| format!("tag {tag} exists at {}", git::short(&commit))))
}

fn read_changelog(krate: &Crate) -> Result<Changelog, Error> {
    let path = krate.changelog();
    let text = std::fs::read_to_string(&path).context(ReadFileSnafu { path: &path })?;
    Changelog::parse(&text).context(ChangelogSnafu {
        crate_name: krate.name.clone(),
        path,
    })
}

/// The crates left out, and dependents that keep their version but whose requirement moves.
fn print_left_out(workspace: &Workspace, bumps: &[Bump<'_>]) {
    let bumped = |name: &str| bumps.iter().any(|bump| bump.krate.name == name);
    let left_out: Vec<&str> = workspace
        .publish_order()
        .into_iter()
        .filter(|krate| !bumped(&krate.name))
        .map(|krate| krate.name.as_str())
        .collect();
    if !left_out.is_empty() {
        println!("  not bumped: {}", left_out.join(", "));
    }
    for krate in workspace.publish_order() {
        if bumped(&krate.name) {
            continue;
        }
        for bump in bumps.iter().filter(|bump| bump.to != bump.krate.version) {
            let depends = krate
                .dependencies
                .iter()
                .any(|dep| !dep.is_dev() && dep.name == bump.krate.name);
            if depends {
                println!(
                    "  note: {} (not bumped) depends on {}: its next release requires {}",
                    krate.name, bump.krate.name, bump.to
                );
            }
        }
    }
}

/// One file to write, with the lines of the plan that describe it.
struct Edit {
    path: PathBuf,
    text: String,
    changes: Vec<String>,
}

/// Every file edit of the plan, computed before anything is written.
fn edits(workspace: &Workspace, bumps: &[Bump<'_>], date: &str) -> Result<Vec<Edit>, Error> {
    let root_manifest = workspace.root.join("Cargo.toml");
    let mut root_doc = read_toml(&root_manifest)?;
    let mut root_changes = Vec::new();

    // One version for every crate that inherits [workspace.package] version, when every
    // publishable one of them is bumped to the same version; otherwise own versions.
    let mut member_docs = BTreeMap::new();
    for krate in &workspace.crates {
        member_docs.insert(krate.name.clone(), read_toml(&krate.manifest)?);
    }
    let inheriting_names: std::collections::BTreeSet<String> = member_docs
        .iter()
        .filter(|(_, doc)| manifest_edit::inherits_workspace_version(doc))
        .map(|(name, _)| name.clone())
        .collect();
    let inherits = |name: &str| inheriting_names.contains(name);
    let inheriting: Vec<&Crate> = workspace
        .crates
        .iter()
        .filter(|krate| krate.publishable && inherits(&krate.name))
        .collect();
    let target = |name: &str| bumps.iter().find(|bump| bump.krate.name == name);
    let shared_to = inheriting
        .first()
        .and_then(|first| target(&first.name))
        .map(|bump| bump.to.clone())
        .filter(|to| {
            inheriting
                .iter()
                .all(|krate| target(&krate.name).is_some_and(|bump| &bump.to == to))
        });

    let mut new_versions: BTreeMap<String, Version> = BTreeMap::new();
    if let Some(to) = &shared_to {
        let from = manifest_edit::workspace_version(&root_doc)
            .unwrap_or_default()
            .to_string();
        if from != to.to_string() && manifest_edit::set_workspace_version(&mut root_doc, to) {
            root_changes.push(format!(
                "[workspace.package] version \"{from}\" -> \"{to}\""
            ));
            for krate in workspace.crates.iter().filter(|k| inherits(&k.name)) {
                new_versions.insert(krate.name.clone(), to.clone());
            }
        }
    }
    let mut edits = Vec::new();
    for bump in bumps {
        new_versions.insert(bump.krate.name.clone(), bump.to.clone());
        if shared_to.is_some() && inherits(&bump.krate.name) {
            continue;
        }
        if bump.to == bump.krate.version {
            continue;
        }
        let doc = member_docs
            .get_mut(&bump.krate.name)
            .ok_or_else(|| missing(&bump.krate.manifest))?;
        let was = if manifest_edit::inherits_workspace_version(doc) {
            "inherited from the workspace"
        } else {
            "own"
        };
        ensure!(
            manifest_edit::set_package_version(doc, &bump.to),
            EditManifestSnafu {
                path: &bump.krate.manifest,
                message: "no [package] table to set the version in",
            }
        );
        edits.push((
            bump.krate.name.clone(),
            format!(
                "[package] version = \"{}\" (was {}, {was})",
                bump.to, bump.krate.version
            ),
        ));
    }

    let requirements: BTreeMap<String, Version> = bumps
        .iter()
        .map(|bump| (bump.krate.name.clone(), bump.to.clone()))
        .collect();
    root_changes.extend(manifest_edit::set_requirements(
        &mut root_doc,
        &requirements,
    ));

    let mut out = Vec::new();
    for krate in &workspace.crates {
        let Some(doc) = member_docs.get_mut(&krate.name) else {
            continue;
        };
        let mut changes: Vec<String> = edits
            .iter()
            .filter(|(name, _)| name == &krate.name)
            .map(|(_, change)| change.clone())
            .collect();
        if krate.manifest != root_manifest {
            changes.extend(manifest_edit::set_requirements(doc, &requirements));
        }
        if !changes.is_empty() {
            out.push(Edit {
                path: krate.manifest.clone(),
                text: doc.to_string(),
                changes,
            });
        }
    }
    if !root_changes.is_empty() {
        out.insert(
            0,
            Edit {
                path: root_manifest,
                text: root_doc.to_string(),
                changes: root_changes,
            },
        );
    }

    let lock_path = workspace.root.join("Cargo.lock");
    if lock_path.is_file() {
        let mut lock = read_toml(&lock_path)?;
        let changed: BTreeMap<String, Version> = new_versions
            .into_iter()
            .filter(|(name, version)| {
                workspace
                    .member(name)
                    .is_some_and(|krate| &krate.version != version)
            })
            .collect();
        if !changed.is_empty() {
            manifest_edit::set_lock_versions(&mut lock, &changed);
            out.push(Edit {
                path: lock_path,
                text: lock.to_string(),
                changes: vec![format!(
                    "workspace members {}",
                    changed
                        .iter()
                        .map(|(name, version)| format!("{name} {version}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )],
            });
        }
    }

    for bump in bumps {
        out.push(Edit {
            path: bump.krate.changelog(),
            text: bump.changelog.release(&bump.to, date),
            changes: vec![format!("Unreleased -> ## [{}] - {date}", bump.to)],
        });
    }
    Ok(out)
}

fn read_toml(path: &Path) -> Result<DocumentMut, Error> {
    let text = std::fs::read_to_string(path).context(ReadFileSnafu { path })?;
    text.parse().context(ParseTomlSnafu { path })
}

fn missing(path: &Path) -> Error {
    EditManifestSnafu {
        path,
        message: "not read",
    }
    .build()
}

fn relative<'a>(root: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let date = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_bump_as_semver_says() {
        let from = Version::new(0, 1, 3);
        let bump = |level: &str| Level::parse(level).expect("a level").apply(&from);
        assert_eq!(bump("patch"), Version::new(0, 1, 4));
        assert_eq!(bump("minor"), Version::new(0, 2, 0));
        assert_eq!(bump("major"), Version::new(1, 0, 0));
        assert_eq!(bump("0.9.1"), Version::new(0, 9, 1));
        let error = Level::parse("huge").expect_err("not a level").to_string();
        assert!(error.contains("give patch, minor, major"), "{error}");
    }
}
