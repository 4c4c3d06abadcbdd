//! Version edits of `Cargo.toml` and `Cargo.lock` with `toml_edit`: only the version strings
//! change; comments, order and layout stay as they were.

use std::collections::BTreeMap;

use semver::Version;
use toml_edit::{DocumentMut, Item, Value};

/// The dependency tables of a manifest a version requirement can sit in.
const DEPENDENCY_TABLES: [&str; 3] = ["dependencies", "dev-dependencies", "build-dependencies"];

/// Whether `[package]` says `version.workspace = true`.
pub(crate) fn inherits_workspace_version(doc: &DocumentMut) -> bool {
    doc.get("package")
        .and_then(|package| package.get("version"))
        .and_then(|version| version.get("workspace"))
        .and_then(Item::as_bool)
        .unwrap_or(false)
}

/// `[workspace.package] version`, if the root manifest has one.
pub(crate) fn workspace_version(doc: &DocumentMut) -> Option<&str> {
    doc.get("workspace")?
        .get("package")?
        .get("version")?
        .as_str()
}

/// Sets `[workspace.package] version`; `false` when the manifest has none.
pub(crate) fn set_workspace_version(doc: &mut DocumentMut, version: &Version) -> bool {
    let Some(item) = doc
        .get_mut("workspace")
        .and_then(|workspace| workspace.get_mut("package"))
        .and_then(|package| package.get_mut("version"))
    else {
        return false;
    };
    replace_string(item, &version.to_string())
}

/// Sets `[package] version` to an own version (replacing `version.workspace = true`).
pub(crate) fn set_package_version(doc: &mut DocumentMut, version: &Version) -> bool {
    let Some(package) = doc.get_mut("package").and_then(Item::as_table_like_mut) else {
        return false;
    };
    match package.get_mut("version") {
        Some(item) if item.is_str() => replace_string(item, &version.to_string()),
        _ => {
            package.insert("version", toml_edit::value(version.to_string()));
            true
        }
    }
}

/// Sets the `version` requirement of every dependency on a crate in `versions`, in
/// `[workspace.dependencies]` and in every dependency table (target-specific ones too).
/// Entries without a `version` (path-only dev-dependencies) are left alone. Returns one line
/// per change, e.g. `[workspace.dependencies] stackable-certs "0.1.0" -> "0.2.0"`.
pub(crate) fn set_requirements(
    doc: &mut DocumentMut,
    versions: &BTreeMap<String, Version>,
) -> Vec<String> {
    let mut changes = Vec::new();
    if let Some(table) = doc
        .get_mut("workspace")
        .and_then(|workspace| workspace.get_mut("dependencies"))
    {
        set_in_table(table, "[workspace.dependencies]", versions, &mut changes);
    }
    for name in DEPENDENCY_TABLES {
        if let Some(table) = doc.get_mut(name) {
            set_in_table(table, &format!("[{name}]"), versions, &mut changes);
        }
    }
    if let Some(targets) = doc.get_mut("target").and_then(Item::as_table_like_mut) {
        for (target, item) in targets.iter_mut() {
            for name in DEPENDENCY_TABLES {
                if let Some(table) = item.get_mut(name) {
                    let label = format!("[target.{target}.{name}]");
                    set_in_table(table, &label, versions, &mut changes);
                }
            }
        }
    }
    changes
}

fn set_in_table(
    table: &mut Item,
    label: &str,
    versions: &BTreeMap<String, Version>,
    changes: &mut Vec<String>,
) {
    let Some(table) = table.as_table_like_mut() else {
        return;
    };
    for (key, dependency) in table.iter_mut() {
        let Some(dependency) = dependency.as_table_like_mut() else {
            continue;
        };
        let name = dependency
            .get("package")
            .and_then(Item::as_str)
            .unwrap_or(key.get())
            .to_string();
        let Some(version) = versions.get(&name) else {
            continue;
        };
        let Some(item) = dependency.get_mut("version") else {
            continue;
        };
        let old = item.as_str().unwrap_or_default().to_string();
        let new = version.to_string();
        if old != new && replace_string(item, &new) {
            changes.push(format!("{label} {name} \"{old}\" -> \"{new}\""));
        }
    }
}

/// Sets the version of the workspace members in `Cargo.lock` (the `[[package]]` entries
/// without a `source`), so `--locked` builds accept the bumped manifests.
pub(crate) fn set_lock_versions(doc: &mut DocumentMut, versions: &BTreeMap<String, Version>) {
    let Some(packages) = doc
        .get_mut("package")
        .and_then(Item::as_array_of_tables_mut)
    else {
        return;
    };
    for package in packages.iter_mut() {
        if package.contains_key("source") {
            continue;
        }
        let Some(version) = package
            .get("name")
            .and_then(Item::as_str)
            .and_then(|name| versions.get(name))
        else {
            continue;
        };
        if let Some(item) = package.get_mut("version") {
            replace_string(item, &version.to_string());
        }
    }
}

/// Replaces a string value, keeping the whitespace and comments around it.
fn replace_string(item: &mut Item, new: &str) -> bool {
    let Some(old) = item.as_value() else {
        return false;
    };
    let decor = old.decor().clone();
    let mut value = Value::from(new);
    *value.decor_mut() = decor;
    *item = Item::Value(value);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions() -> BTreeMap<String, Version> {
        BTreeMap::from([("a".to_string(), Version::new(0, 2, 0))])
    }

    #[test]
    fn requirements_change_and_nothing_else() {
        let text = "[workspace.package]\nversion = \"0.1.0\" # shared\n\n\
                    [workspace.dependencies]\na = { path = \"a\", version = \"0.1.0\" }\n\
                    b = { path = \"b\", version = \"0.1.0\" }\n\
                    renamed = { package = \"a\", version = \"0.1.0\" }\n\n\
                    [dev-dependencies]\na = { path = \"../a\" }\n";
        let mut doc: DocumentMut = text.parse().expect("valid toml");
        let changes = set_requirements(&mut doc, &versions());
        assert_eq!(
            changes,
            [
                "[workspace.dependencies] a \"0.1.0\" -> \"0.2.0\"",
                "[workspace.dependencies] a \"0.1.0\" -> \"0.2.0\""
            ]
        );
        assert!(set_workspace_version(&mut doc, &Version::new(0, 2, 0)));
        assert_eq!(
            doc.to_string(),
            "[workspace.package]\nversion = \"0.2.0\" # shared\n\n\
             [workspace.dependencies]\na = { path = \"a\", version = \"0.2.0\" }\n\
             b = { path = \"b\", version = \"0.1.0\" }\n\
             renamed = { package = \"a\", version = \"0.2.0\" }\n\n\
             [dev-dependencies]\na = { path = \"../a\" }\n"
        );
    }

    #[test]
    fn an_inherited_version_becomes_an_own_version_in_place() {
        let mut doc: DocumentMut =
            "[package]\nname = \"a\"\nversion.workspace = true\nedition = \"2024\"\n"
                .parse()
                .expect("valid toml");
        assert!(inherits_workspace_version(&doc));
        assert!(set_package_version(&mut doc, &Version::new(0, 2, 0)));
        assert!(!inherits_workspace_version(&doc));
        assert_eq!(
            doc.to_string(),
            "[package]\nname = \"a\"\nversion = \"0.2.0\"\nedition = \"2024\"\n"
        );
    }

    #[test]
    fn the_lock_file_changes_only_workspace_members() {
        let text = "[[package]]\nname = \"a\"\nversion = \"0.1.0\"\n\n\
                    [[package]]\nname = \"a\"\nversion = \"0.1.0\"\nsource = \"registry+x\"\n";
        let mut doc: DocumentMut = text.parse().expect("valid toml");
        set_lock_versions(&mut doc, &versions());
        assert_eq!(
            doc.to_string(),
            text.replacen("0.1.0", "0.2.0", 1),
            "only the entry without a source"
        );
    }
}
