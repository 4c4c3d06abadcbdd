//! The few git (and process) calls of the release steps: is the tree clean, where is a tag,
//! create an annotated tag.

use std::{path::Path, process::Command};

use snafu::{ResultExt, ensure};

use super::{CommandFailedSnafu, DirtyTreeSnafu, Error, RunCommandSnafu};

/// Runs `command` in `dir` and returns its standard output; a failure carries its stderr.
pub(crate) fn run_in(dir: &Path, command: &mut Command, display: &str) -> Result<String, Error> {
    let output = command.current_dir(dir).output().context(RunCommandSnafu {
        command: display,
        dir,
    })?;
    ensure!(
        output.status.success(),
        CommandFailedSnafu {
            command: display,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn git(dir: &Path, args: &[&str]) -> Result<String, Error> {
    run_in(
        dir,
        Command::new("git").args(args),
        &format!("git {}", args.join(" ")),
    )
}

/// Fails, naming the first changed paths, when the working tree has uncommitted changes
/// (untracked files included).
pub(crate) fn ensure_clean(dir: &Path) -> Result<(), Error> {
    let status = git(dir, &["status", "--porcelain"])?;
    let paths: Vec<String> = status
        .lines()
        .map(|line| line.get(3..).unwrap_or(line).to_string())
        .collect();
    ensure!(
        paths.is_empty(),
        DirtyTreeSnafu {
            paths: first(paths)
        }
    );
    Ok(())
}

fn first(mut paths: Vec<String>) -> Vec<String> {
    const SHOWN: usize = 5;
    if paths.len() > SHOWN {
        let more = paths.len() - SHOWN;
        paths.truncate(SHOWN);
        paths.push(format!("and {more} more"));
    }
    paths
}

/// The commit HEAD points at.
pub(crate) fn head(dir: &Path) -> Result<String, Error> {
    Ok(git(dir, &["rev-parse", "HEAD"])?.trim().to_string())
}

/// The commit a tag points at, or `None` when there is no such tag.
pub(crate) fn tag_commit(dir: &Path, tag: &str) -> Result<Option<String>, Error> {
    let reference = format!("refs/tags/{tag}^{{commit}}");
    match git(dir, &["rev-parse", "-q", "--verify", &reference]) {
        Ok(commit) => Ok(Some(commit.trim().to_string())),
        Err(Error::CommandFailed { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The tags matching a glob, e.g. `stackable-certs-v*`.
pub(crate) fn tags(dir: &Path, pattern: &str) -> Result<Vec<String>, Error> {
    Ok(git(dir, &["tag", "--list", pattern])?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Creates the annotated tag `tag` at HEAD with `message`.
pub(crate) fn create_annotated_tag(dir: &Path, tag: &str, message: &str) -> Result<(), Error> {
    git(dir, &["tag", "--annotate", tag, "--message", message]).map(|_| ())
}

/// The short form of a commit, for messages.
pub(crate) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
