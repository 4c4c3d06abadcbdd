//! `cargo xtask release check | prepare | tag`: releases of the publishable crates.
//!
//! The crates are published to crates.io one by one, each with its own version and its own
//! `CHANGELOG.md` (an `## Unreleased` section on top, then `## [X.Y.Z] - YYYY-MM-DD` sections).
//! `check` says whether the workspace can be published as it is (CI runs it), `prepare` bumps
//! versions and moves the `Unreleased` entries under the new version, `tag` creates the local
//! annotated tags `<crate>-v<version>` that the release workflow publishes from. Nothing here
//! pushes or publishes. The guide is `docs/releasing.md`.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;
use snafu::Snafu;

mod changelog;
mod check;
mod git;
mod manifest_edit;
mod package;
mod prepare;
mod semver_checks;
mod tag;
mod workspace;

/// Arguments of `cargo xtask release`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The release steps.
#[derive(Debug, Subcommand)]
enum Command {
    /// Fail, naming the crate and the fix, when the workspace could not be published as it is.
    Check(check::Args),
    /// Bump versions (dependency order, `[workspace.dependencies]` too) and date the changelogs.
    Prepare(prepare::Args),
    /// Create the local annotated tags `<crate>-v<version>`; never pushes, never publishes.
    Tag(tag::Args),
}

/// What a release step could not do, with what to do about it.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub(crate) enum Error {
    #[snafu(display("could not run `{command}` in {}", dir.display()))]
    RunCommand {
        command: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[snafu(display("`{command}` failed ({status}): {stderr}"))]
    CommandFailed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[snafu(display("could not parse the output of `cargo metadata`"))]
    ParseMetadata { source: serde_json::Error },
    #[snafu(display("{crate_name}: version {version:?} in its manifest is not semver"))]
    ParseCrateVersion {
        crate_name: String,
        version: String,
        source: semver::Error,
    },
    #[snafu(display("could not read {}", path.display()))]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[snafu(display("could not write {}", path.display()))]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[snafu(display("{} is not valid TOML", path.display()))]
    ParseToml {
        path: PathBuf,
        source: toml_edit::TomlError,
    },
    #[snafu(display("{}: {message}", path.display()))]
    EditManifest { path: PathBuf, message: String },
    #[snafu(display("{crate_name}: {}: {source}", path.display()))]
    Changelog {
        crate_name: String,
        path: PathBuf,
        #[snafu(source(from(changelog::Error, Box::new)))]
        source: Box<changelog::Error>,
    },
    #[snafu(display(
        "the working tree has uncommitted changes ({}); commit or stash them first, a release \
         step only starts from a clean tree",
        paths.join(", ")
    ))]
    DirtyTree { paths: Vec<String> },
    #[snafu(display(
        "unknown crate {name:?}; the publishable crates are: {}",
        known.join(", ")
    ))]
    UnknownCrate { name: String, known: Vec<String> },
    #[snafu(display(
        "{name} is `publish = false` (an example, xtask or a test-only crate); it is not released"
    ))]
    NotPublishable { name: String },
    #[snafu(display(
        "{level:?} is not a bump: give patch, minor, major or a version such as 1.2.3"
    ))]
    ParseLevel {
        level: String,
        source: semver::Error,
    },
    #[snafu(display(
        "{crate_name}: {to} would take the version backwards from {from}; give a version above {from}"
    ))]
    VersionBackwards {
        crate_name: String,
        from: semver::Version,
        to: semver::Version,
    },
    #[snafu(display(
        "{crate_name}: {version} is already released ({why}); give a version above {version}"
    ))]
    AlreadyReleased {
        crate_name: String,
        version: semver::Version,
        why: String,
    },
    #[snafu(display(
        "{crate_name}: the Unreleased section of {} is empty: there is nothing to release; add \
         the changes to it, or leave the crate out of --crate",
        path.display()
    ))]
    EmptyUnreleased { crate_name: String, path: PathBuf },
    #[snafu(display(
        "nothing to release: no publishable crate has entries in its changelog's Unreleased section"
    ))]
    NothingToRelease,
    #[snafu(display(
        "tag {tag} already exists at {existing} (not HEAD, {head}): {crate_name} {version} was \
         released there; bump it with `cargo xtask release prepare` or delete the tag"
    ))]
    TagElsewhere {
        tag: String,
        crate_name: String,
        version: String,
        existing: String,
        head: String,
    },
    #[snafu(display(
        "{crate_name} {version} has no `## [{version}] - YYYY-MM-DD` section in its CHANGELOG.md: \
         prepare the release first (`cargo xtask release prepare`)"
    ))]
    NotPrepared {
        crate_name: String,
        version: semver::Version,
    },
    #[snafu(display("{count} problem(s) found; see above"))]
    CheckFailed { count: usize },
    #[snafu(display("{message}"))]
    SemverChecks { message: String },
}

/// Runs one release step.
pub(crate) fn run(args: Args) -> Result<ExitCode, Error> {
    match args.command {
        Command::Check(args) => check::run(args),
        Command::Prepare(args) => prepare::run(args),
        Command::Tag(args) => tag::run(args),
    }
    .map(|()| ExitCode::SUCCESS)
}
