//! `cargo xtask release` on a temporary copy of this workspace (its tracked files, committed
//! into a fresh git repository): prepare, check and tag work, and bad inputs are refused with a
//! clear message and leave every file and tag as they were. No build, no network: the check
//! runs with `--no-package` (CI runs the packaging on the real workspace).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// A copy of the workspace in a temporary git repository.
struct Copy {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Copy {
    fn new() -> Self {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits in the workspace")
            .to_path_buf();
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path().join("workspace");
        let files = git(
            &source,
            &["ls-files", "--cached", "--others", "--exclude-standard"],
        );
        for file in files.lines() {
            let from = source.join(file);
            if !from.is_file() {
                continue; // deleted in the working tree
            }
            let to = root.join(file);
            fs::create_dir_all(to.parent().expect("a file has a parent")).expect("mkdir");
            fs::copy(&from, &to).expect("copy a file");
        }
        git(&root, &["init", "--quiet"]);
        let copy = Self { _dir: dir, root };
        copy.commit("the workspace as it is");
        copy
    }

    fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    fn read(&self, file: &str) -> String {
        fs::read_to_string(self.path(file)).expect("read a file of the copy")
    }

    fn write(&self, file: &str, text: &str) {
        fs::write(self.path(file), text).expect("write a file of the copy");
    }

    fn commit(&self, message: &str) {
        git(&self.root, &["add", "--all"]);
        git(
            &self.root,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
    }

    fn xtask(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("release")
            .args(args)
            .current_dir(&self.root)
            .envs(identity())
            .output()
            .expect("run xtask")
    }

    /// Runs `cargo xtask release …`, expecting success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.xtask(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "release {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Runs `cargo xtask release …`, expecting a refusal that changes nothing; returns stdout
    /// and stderr together.
    fn refused(&self, args: &[&str]) -> String {
        let before = self.snapshot();
        let output = self.xtask(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.status.success(),
            "release {args:?} succeeded:\n{text}"
        );
        assert!(
            !text.contains("panicked"),
            "release {args:?} panicked:\n{text}"
        );
        let after = self.snapshot();
        assert!(
            before == after,
            "release {args:?} changed files or tags:\n{text}"
        );
        text
    }

    /// Every file (but .git) with its bytes, and the tags.
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        collect(&self.root, &self.root, &mut files);
        files.insert("<tags>".to_string(), self.tags().into_bytes());
        files
    }

    fn tags(&self) -> String {
        git(&self.root, &["tag", "--list"])
    }
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    for entry in fs::read_dir(dir).expect("read a folder") {
        let path = entry.expect("a folder entry").path();
        if path.file_name().is_some_and(|name| name == ".git") {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let key = path
                .strip_prefix(root)
                .expect("inside")
                .display()
                .to_string();
            files.insert(key, fs::read(&path).expect("read a file"));
        }
    }
}

fn identity() -> [(&'static str, &'static str); 6] {
    [
        ("GIT_AUTHOR_NAME", "release test"),
        ("GIT_AUTHOR_EMAIL", "release-test@example.com"),
        ("GIT_COMMITTER_NAME", "release test"),
        ("GIT_COMMITTER_EMAIL", "release-test@example.com"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
    ]
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .envs(identity())
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The version of a workspace member in Cargo.lock.
fn lock_version(lock: &str, name: &str) -> Option<String> {
    let entry = format!("name = \"{name}\"\nversion = \"");
    let start = lock.find(&entry)? + entry.len();
    Some(lock[start..].split('"').next()?.to_string())
}

#[test]
fn a_minor_release_prepares_checks_and_tags() {
    let copy = Copy::new();
    let certs_changelog = copy.read("crates/stackable-certs/CHANGELOG.md");
    let first_entry = certs_changelog
        .lines()
        .find(|line| line.starts_with("- "))
        .expect("stackable-certs has Unreleased entries")
        .to_string();

    let plan = copy.ok(&["prepare", "minor", "--dry-run"]);
    assert!(plan.contains("stackable-certs"), "{plan}");
    assert!(plan.contains("0.1.0 -> 0.2.0"), "{plan}");
    assert!(plan.contains("dry run: nothing written"), "{plan}");
    assert_eq!(
        copy.read("crates/stackable-certs/CHANGELOG.md"),
        certs_changelog
    );

    let out = copy.ok(&["prepare", "minor"]);
    assert!(
        out.contains("[workspace.package] version \"0.1.0\" -> \"0.2.0\""),
        "{out}"
    );
    let root = copy.read("Cargo.toml");
    assert!(
        root.contains("[workspace.package]\nversion = \"0.2.0\""),
        "{root}"
    );
    assert!(
        root.contains(
            "stackable-certs = { path = \"crates/stackable-certs\", version = \"0.2.0\" }"
        ),
        "{root}"
    );
    assert!(
        !root.contains("version = \"0.1.0\""),
        "a requirement was left: {root}"
    );
    let lock = copy.read("Cargo.lock");
    assert_eq!(
        lock_version(&lock, "stackable-certs").as_deref(),
        Some("0.2.0")
    );
    assert_eq!(lock_version(&lock, "xtask").as_deref(), Some("0.2.0"));
    let changelog = copy.read("crates/stackable-certs/CHANGELOG.md");
    assert!(
        changelog.starts_with("# Changelog\n\n## Unreleased\n\n## [0.2.0] - 20"),
        "{changelog}"
    );
    assert!(changelog.contains(&first_entry));
    assert_eq!(
        changelog.lines().count(),
        certs_changelog.lines().count() + 2,
        "a heading and a blank line added, nothing lost"
    );

    // `cargo update --workspace --locked` fails when the lock file would change. It resolves
    // from the registry index only: `cargo metadata` would also download every package of the
    // graph, Windows-only ones too, which a fresh CI machine does not hold (and --offline
    // refuses to fetch).
    let locked = Command::new(env!("CARGO"))
        .args(["update", "--workspace", "--locked", "--offline"])
        .current_dir(&copy.root)
        .output()
        .expect("run cargo update");
    assert!(
        locked.status.success(),
        "Cargo.lock matches the bumped manifests (--locked): {}",
        String::from_utf8_lossy(&locked.stderr)
    );

    copy.commit("release: 0.2.0");
    let check = copy.ok(&["check", "--no-package"]);
    assert!(check.contains("release check: ok"), "{check}");

    let tagged = copy.ok(&["tag"]);
    assert!(
        tagged.contains("stackable-certs-v0.2.0: created"),
        "{tagged}"
    );
    let tags = copy.tags();
    assert!(
        tags.lines().any(|tag| tag == "stackable-webhook-v0.2.0"),
        "{tags}"
    );
    assert!(
        !tags.contains("xtask"),
        "publish = false crates get no tag: {tags}"
    );
    let kind = git(&copy.root, &["cat-file", "-t", "stackable-certs-v0.2.0"]);
    assert_eq!(kind.trim(), "tag", "an annotated tag");
    let message = git(
        &copy.root,
        &["tag", "-n99", "--list", "stackable-certs-v0.2.0"],
    );
    assert!(
        message.contains(&first_entry),
        "the changelog section is the message: {message}"
    );

    let again = copy.ok(&["tag"]);
    assert!(
        again.contains("stackable-certs-v0.2.0: already at HEAD"),
        "{again}"
    );

    // A later commit: the tags stay where the release was made.
    let mut edited = copy.read("crates/stackable-certs/CHANGELOG.md");
    edited = edited.replacen("## Unreleased\n", "## Unreleased\n\n- Later change.\n", 1);
    copy.write("crates/stackable-certs/CHANGELOG.md", &edited);
    copy.commit("a later change");
    let error = copy.refused(&["tag", "--crate", "stackable-certs"]);
    assert!(
        error.contains("tag stackable-certs-v0.2.0 already exists at"),
        "{error}"
    );
    let skipped = copy.ok(&["tag"]);
    assert!(skipped.contains("nothing to tag"), "{skipped}");
}

#[test]
fn bad_inputs_are_refused_and_change_nothing() {
    let copy = Copy::new();

    copy.write("scratch.txt", "not committed");
    let error = copy.refused(&["prepare", "minor"]);
    assert!(
        error.contains("uncommitted changes (scratch.txt)"),
        "{error}"
    );
    let error = copy.refused(&["tag"]);
    assert!(error.contains("uncommitted changes"), "{error}");
    fs::remove_file(copy.path("scratch.txt")).expect("remove");

    let error = copy.refused(&["prepare", "minor", "--crate", "stackable-nope"]);
    assert!(
        error.contains(
            "unknown crate \"stackable-nope\"; the publishable crates are: stackable-cainject"
        ),
        "{error}"
    );
    let error = copy.refused(&["prepare", "minor", "--crate", "xtask"]);
    assert!(error.contains("xtask is `publish = false`"), "{error}");
    let error = copy.refused(&["prepare", "0.0.9", "--crate", "stackable-certs"]);
    assert!(
        error.contains("stackable-certs: 0.0.9 would take the version backwards from 0.1.0"),
        "{error}"
    );
    let error = copy.refused(&["prepare", "sideways"]);
    assert!(error.contains("\"sideways\" is not a bump"), "{error}");

    // An empty Unreleased section: nothing to release for that crate.
    let macros = "crates/stackable-crd-versions-macros/CHANGELOG.md";
    copy.write(macros, "# Changelog\n\n## Unreleased\n");
    copy.commit("empty Unreleased");
    let error = copy.refused(&[
        "prepare",
        "patch",
        "--crate",
        "stackable-crd-versions-macros",
    ]);
    assert!(
        error.contains("stackable-crd-versions-macros: the Unreleased section of")
            && error.contains("is empty"),
        "{error}"
    );

    // Released 0.1.0, then the manifest moved to 0.2.0 by hand: no changelog entry for it.
    let certs = "crates/stackable-certs/CHANGELOG.md";
    let text = copy.read(certs);
    copy.write(
        certs,
        &format!("{text}\n## [0.1.0] - 2026-01-02\n\n- First version.\n"),
    );
    let manifest = "crates/stackable-certs/Cargo.toml";
    copy.write(
        manifest,
        &copy
            .read(manifest)
            .replacen("version.workspace = true", "version = \"0.2.0\"", 1),
    );
    let root = copy.read("Cargo.toml");
    copy.write(
        "Cargo.toml",
        &root.replace(
            "stackable-certs = { path = \"crates/stackable-certs\", version = \"0.1.0\" }",
            "stackable-certs = { path = \"crates/stackable-certs\", version = \"0.2.0\" }",
        ),
    );
    copy.commit("0.2.0 by hand");
    let error = copy.refused(&["check", "--no-package"]);
    assert!(
        error.contains("✗ stackable-certs:")
            && error.contains("has no `## [0.2.0] - YYYY-MM-DD` section for its version 0.2.0"),
        "{error}"
    );
    let error = copy.refused(&["tag", "--crate", "stackable-certs"]);
    assert!(
        error.contains("stackable-certs 0.2.0 has no `## [0.2.0] - YYYY-MM-DD` section"),
        "{error}"
    );
    let error = copy.refused(&["prepare", "0.1.0", "--crate", "stackable-certs"]);
    assert!(error.contains("backwards from 0.2.0"), "{error}");
}

#[test]
fn check_names_the_crate_and_the_fix() {
    let copy = Copy::new();
    let check = copy.ok(&["check", "--no-package"]);
    assert!(
        check.contains("release check: ok"),
        "the workspace as committed passes: {check}"
    );
    assert!(check.contains("not released yet"), "{check}");
    assert!(check.contains("cargo test --doc"), "{check}");

    type Edit<'a> = &'a dyn Fn(&str) -> String;
    let cases: [(&str, Edit, &str); 5] = [
        (
            "crates/stackable-webhook/CHANGELOG.md",
            &|text| text.replacen("## Unreleased\n", "## Unreleased\n\nSome prose.\n", 1),
            "stackable-webhook: crates/stackable-webhook/CHANGELOG.md: line 5: `Some prose.`",
        ),
        (
            "Cargo.toml",
            &|text| {
                text.replace(
                    "stackable-certs = { path = \"crates/stackable-certs\", version = \"0.1.0\" }",
                    "stackable-certs = { path = \"crates/stackable-certs\", version = \"0.3.0\" }",
                )
            },
            "requires stackable-certs ^0.3.0 but the workspace has 0.1.0",
        ),
        (
            "crates/stackable-conversion/Cargo.toml",
            &|text| {
                text.lines()
                    .filter(|line| !line.starts_with("keywords"))
                    .collect::<Vec<_>>()
                    .join("\n")
            },
            "stackable-conversion: missing keywords",
        ),
        (
            "crates/stackable-certs/Cargo.toml",
            &|text| {
                text.replace(
                    "stackable-testenv = { path = \"../stackable-testenv\" }",
                    "stackable-testenv.workspace = true",
                )
            },
            "stackable-certs: dev-dependency stackable-testenv has a version (^0.1.0): make it path-only",
        ),
        (
            "examples/ca-issuer/Cargo.toml",
            &|text| text.replace("publish = false\n", ""),
            "ca-issuer: an example or xtask is publishable",
        ),
    ];
    for (file, edit, expected) in cases {
        let original = copy.read(file);
        copy.write(file, &edit(&original));
        let error = copy.refused(&["check", "--no-package"]);
        assert!(
            error.contains(expected),
            "{file}: expected {expected:?} in\n{error}"
        );
        copy.write(file, &original);
    }

    let error = copy.refused(&["check", "--no-package", "--tag", "stackable-certs-v9.9.9"]);
    assert!(
        error.contains("the tag is stackable-certs-v9.9.9 but the crate's version is 0.1.0"),
        "{error}"
    );
    let semver_checks_installed = Command::new("cargo")
        .args(["semver-checks", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !semver_checks_installed {
        let error = copy.refused(&["check", "--no-package", "--semver"]);
        assert!(
            error.contains("cargo-semver-checks, which is not installed"),
            "{error}"
        );
    }
}
