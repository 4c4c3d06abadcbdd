//! `cargo xtask release tag [--crate NAME…]`: local annotated tags `<crate>-v<version>`.
//!
//! Tags HEAD for every publishable crate whose version has a changelog section and no tag yet;
//! the tag message is the crate, the version and its changelog section. A version tagged at
//! another commit was released there: it is skipped, or refused when named with `--crate`.
//! Never pushes and never publishes: `git push origin <tag>` starts the release workflow.

use snafu::ensure;

use super::{
    ChangelogSnafu, Error, NotPreparedSnafu, NotPublishableSnafu, ReadFileSnafu, TagElsewhereSnafu,
    UnknownCrateSnafu, changelog::Changelog, git, workspace::Workspace,
};
use snafu::ResultExt;

/// Arguments of `cargo xtask release tag`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only these crates (repeat the flag for several). Default: every publishable crate whose
    /// current version is prepared (in its changelog) and not tagged yet.
    #[arg(long = "crate", value_name = "NAME")]
    crates: Vec<String>,
}

/// Creates the missing tags at HEAD.
pub(crate) fn run(args: Args) -> Result<(), Error> {
    let workspace = Workspace::load()?;
    let root = &workspace.root;
    git::ensure_clean(root)?;
    for name in &args.crates {
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
    let head = git::head(root)?;
    let explicit = !args.crates.is_empty();

    // Decide every tag before creating the first one.
    let mut to_create = Vec::new();
    for krate in workspace.publish_order() {
        if explicit && !args.crates.contains(&krate.name) {
            continue;
        }
        let tag = krate.tag();
        match git::tag_commit(root, &tag)? {
            Some(commit) if commit == head => {
                println!("  {tag}: already at HEAD");
                continue;
            }
            Some(commit) => {
                ensure!(
                    !explicit,
                    TagElsewhereSnafu {
                        tag: tag.clone(),
                        crate_name: krate.name.clone(),
                        version: krate.version.to_string(),
                        existing: git::short(&commit).to_string(),
                        head: git::short(&head).to_string(),
                    }
                );
                println!(
                    "  {tag}: released earlier at {} (not bumped since), skipped",
                    git::short(&commit)
                );
                continue;
            }
            None => {}
        }
        let path = krate.changelog();
        let text = std::fs::read_to_string(&path).context(ReadFileSnafu { path: &path })?;
        let changelog = Changelog::parse(&text).context(ChangelogSnafu {
            crate_name: krate.name.clone(),
            path,
        })?;
        let Some(section) = changelog.section(&krate.version) else {
            ensure!(
                !explicit,
                NotPreparedSnafu {
                    crate_name: krate.name.clone(),
                    version: krate.version.clone(),
                }
            );
            println!(
                "  {tag}: not prepared (no changelog section for {}), skipped",
                krate.version
            );
            continue;
        };
        let message = format!(
            "{} {}\n\n{}\n",
            krate.name,
            krate.version,
            section.join("\n")
        );
        to_create.push((tag, message));
    }
    if to_create.is_empty() {
        println!("release tag: nothing to tag at HEAD {}", git::short(&head));
        return Ok(());
    }
    for (tag, message) in &to_create {
        git::create_annotated_tag(root, tag, message)?;
        println!("  {tag}: created at {}", git::short(&head));
    }
    println!(
        "release tag: {} tag(s) created locally; nothing pushed. Publish with `git push origin \
         <tag>` (the release workflow runs the check and `cargo publish` for each tag).",
        to_create.len()
    );
    Ok(())
}
