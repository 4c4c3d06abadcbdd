//! The workspace as `cargo metadata --no-deps` sees it: members, versions, publish flags, package
//! metadata and the dependencies between members, plus the publish (dependency) order.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use semver::Version;
use serde::Deserialize;
use snafu::ResultExt;

use super::{Error, ParseCrateVersionSnafu, ParseMetadataSnafu};

/// One member of the workspace.
#[derive(Debug, Clone)]
pub(crate) struct Crate {
    pub(crate) name: String,
    pub(crate) version: Version,
    /// Its `Cargo.toml`.
    pub(crate) manifest: PathBuf,
    /// `false` for `publish = false` (examples, xtask, test-only crates).
    pub(crate) publishable: bool,
    pub(crate) description: Option<String>,
    pub(crate) license: Option<String>,
    pub(crate) repository: Option<String>,
    pub(crate) readme: Option<String>,
    pub(crate) keywords: Vec<String>,
    pub(crate) categories: Vec<String>,
    /// `[package.metadata.docs.rs]`, if any.
    pub(crate) docs_rs: Option<serde_json::Value>,
    pub(crate) has_lib: bool,
    pub(crate) dependencies: Vec<Dependency>,
}

impl Crate {
    /// The folder holding its `Cargo.toml`.
    pub(crate) fn dir(&self) -> &Path {
        self.manifest.parent().unwrap_or(Path::new("."))
    }

    /// Its `CHANGELOG.md`.
    pub(crate) fn changelog(&self) -> PathBuf {
        self.dir().join("CHANGELOG.md")
    }

    /// The tag of its current version: `<crate>-v<version>`.
    pub(crate) fn tag(&self) -> String {
        tag_name(&self.name, &self.version)
    }
}

/// The tag of a crate's version.
pub(crate) fn tag_name(name: &str, version: &Version) -> String {
    format!("{name}-v{version}")
}

/// One dependency of a member, as `cargo metadata` resolves it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Dependency {
    pub(crate) name: String,
    /// The version requirement (`*` when the manifest gives none).
    pub(crate) req: String,
    /// `None` for normal dependencies, `dev` or `build`.
    pub(crate) kind: Option<String>,
    /// Set for path dependencies.
    pub(crate) path: Option<PathBuf>,
}

impl Dependency {
    pub(crate) fn is_dev(&self) -> bool {
        self.kind.as_deref() == Some("dev")
    }
}

/// The members of a workspace.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    pub(crate) root: PathBuf,
    pub(crate) crates: Vec<Crate>,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    manifest_path: PathBuf,
    publish: Option<Vec<String>>,
    description: Option<String>,
    license: Option<String>,
    repository: Option<String>,
    readme: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    targets: Vec<Target>,
    dependencies: Vec<Dependency>,
}

#[derive(Deserialize)]
struct Target {
    kind: Vec<String>,
}

impl Workspace {
    /// Reads the workspace holding the current directory.
    pub(crate) fn load() -> Result<Self, Error> {
        let dir = std::env::current_dir().context(super::RunCommandSnafu {
            command: "getcwd",
            dir: PathBuf::from("."),
        })?;
        let output = super::git::run_in(
            &dir,
            Command::new(env!("CARGO")).args(["metadata", "--format-version", "1", "--no-deps"]),
            "cargo metadata --no-deps",
        )?;
        Self::from_metadata(&output)
    }

    fn from_metadata(json: &str) -> Result<Self, Error> {
        let metadata: Metadata = serde_json::from_str(json).context(ParseMetadataSnafu)?;
        let mut crates = Vec::new();
        for package in metadata.packages {
            let version = Version::parse(&package.version).context(ParseCrateVersionSnafu {
                crate_name: package.name.clone(),
                version: package.version.clone(),
            })?;
            let docs_rs = package
                .metadata
                .as_ref()
                .and_then(|metadata| metadata.get("docs"))
                .and_then(|docs| docs.get("rs"))
                .cloned();
            crates.push(Crate {
                has_lib: package.targets.iter().any(|target| {
                    target
                        .kind
                        .iter()
                        .any(|kind| kind == "lib" || kind == "proc-macro")
                }),
                name: package.name,
                version,
                manifest: package.manifest_path,
                publishable: package
                    .publish
                    .is_none_or(|registries| !registries.is_empty()),
                description: package.description,
                license: package.license,
                repository: package.repository,
                readme: package.readme,
                keywords: package.keywords,
                categories: package.categories,
                docs_rs,
                dependencies: package.dependencies,
            });
        }
        crates.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            root: metadata.workspace_root,
            crates,
        })
    }

    /// `path` relative to the workspace root, for messages.
    pub(crate) fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }

    /// The member called `name`.
    pub(crate) fn member(&self, name: &str) -> Option<&Crate> {
        self.crates.iter().find(|krate| krate.name == name)
    }

    /// The publishable members in publish order: a crate after every member it depends on
    /// (normal and build dependencies; dev-dependencies are path-only and stripped when
    /// packaging, so they do not order anything). Ties in alphabetical order.
    pub(crate) fn publish_order(&self) -> Vec<&Crate> {
        let publishable: BTreeMap<&str, &Crate> = self
            .crates
            .iter()
            .filter(|krate| krate.publishable)
            .map(|krate| (krate.name.as_str(), krate))
            .collect();
        let mut waiting_on: BTreeMap<&str, BTreeSet<&str>> = publishable
            .values()
            .map(|krate| {
                let deps = krate
                    .dependencies
                    .iter()
                    .filter(|dep| !dep.is_dev() && dep.name != krate.name)
                    .filter_map(|dep| publishable.get_key_value(dep.name.as_str()))
                    .map(|(name, _)| *name)
                    .collect();
                (krate.name.as_str(), deps)
            })
            .collect();
        let mut order = Vec::new();
        while !waiting_on.is_empty() {
            let ready: Vec<&str> = waiting_on
                .iter()
                .filter(|(_, deps)| deps.is_empty())
                .map(|(name, _)| *name)
                .collect();
            // A cycle of normal dependencies cannot build; cargo reports it, here the rest
            // simply follows in alphabetical order.
            let ready = if ready.is_empty() {
                waiting_on.keys().copied().take(1).collect()
            } else {
                ready
            };
            for name in ready {
                waiting_on.remove(name);
                for deps in waiting_on.values_mut() {
                    deps.remove(name);
                }
                if let Some(krate) = publishable.get(name) {
                    order.push(*krate);
                }
            }
        }
        order
    }

    /// The names of the publishable members, alphabetically.
    pub(crate) fn publishable_names(&self) -> Vec<String> {
        self.crates
            .iter()
            .filter(|krate| krate.publishable)
            .map(|krate| krate.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, publish: &str, deps: &str) -> String {
        format!(
            r#"{{"name":"{name}","version":"0.1.0","manifest_path":"/ws/{name}/Cargo.toml",
                "publish":{publish},"targets":[{{"kind":["lib"]}}],"dependencies":[{deps}]}}"#
        )
    }

    fn dep(name: &str, kind: &str) -> String {
        format!(r#"{{"name":"{name}","req":"^0.1.0","kind":{kind},"path":"/ws/{name}"}}"#)
    }

    #[test]
    fn orders_crates_after_their_dependencies_and_ignores_dev_cycles() {
        let json = format!(
            r#"{{"workspace_root":"/ws","packages":[{},{},{},{}]}}"#,
            package(
                "c",
                "null",
                &format!("{},{}", dep("b", "null"), dep("a", "null"))
            ),
            package("a", "null", &dep("c", "\"dev\"")),
            package("b", "null", &dep("a", "null")),
            package("xtask", "[]", &dep("c", "null")),
        );
        let workspace = Workspace::from_metadata(&json).expect("metadata parses");
        let order: Vec<&str> = workspace
            .publish_order()
            .iter()
            .map(|krate| krate.name.as_str())
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(workspace.publishable_names(), ["a", "b", "c"]);
        assert!(
            !workspace
                .member("xtask")
                .expect("xtask is a member")
                .publishable
        );
    }

    #[test]
    fn a_bad_version_names_the_crate() {
        let json = r#"{"workspace_root":"/ws","packages":[{"name":"a","version":"one",
            "manifest_path":"/ws/a/Cargo.toml","publish":null,"targets":[],"dependencies":[]}]}"#;
        let error = Workspace::from_metadata(json).expect_err("not semver");
        assert!(error.to_string().contains("a: version \"one\""), "{error}");
    }
}
