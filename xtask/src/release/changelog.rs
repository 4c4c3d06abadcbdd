//! A crate's `CHANGELOG.md`: `# Changelog`, an `## Unreleased` section of list items, then
//! released versions as `## [X.Y.Z] - YYYY-MM-DD`, newest first (<https://keepachangelog.com>).
//!
//! Parsing checks that shape; `release` moves the Unreleased entries under a new version,
//! leaving an empty `## Unreleased` section on top and every other line as it was.

use semver::Version;
use snafu::{OptionExt, Snafu, ensure};

/// What is wrong with a changelog, with the line to fix.
#[derive(Debug, Snafu)]
pub(crate) enum Error {
    #[snafu(display("no `## Unreleased` section; add one above the released versions"))]
    NoUnreleased,
    #[snafu(display("line {line}: a second `## Unreleased` section; merge it into the first"))]
    TwoUnreleased { line: usize },
    #[snafu(display(
        "line {line}: `{heading}` comes before `## Unreleased`; Unreleased is the first section"
    ))]
    UnreleasedNotFirst { line: usize, heading: String },
    #[snafu(display(
        "line {line}: `{heading}` is neither `## Unreleased` nor `## [X.Y.Z] - YYYY-MM-DD`"
    ))]
    BadHeading { line: usize, heading: String },
    #[snafu(display(
        "line {line}: `{text}` in the Unreleased section is not a list item (`- …`), an \
         indented continuation or a `###` heading"
    ))]
    NotAListItem { line: usize, text: String },
    #[snafu(display(
        "line {line}: version {version} is not below the version above it ({above}); versions go newest first, once each"
    ))]
    VersionOrder {
        line: usize,
        version: Version,
        above: Version,
    },
}

/// One released version's heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Released {
    pub(crate) version: Version,
    pub(crate) date: String,
    /// Index of the heading line.
    line: usize,
}

/// A parsed changelog.
#[derive(Debug, Clone)]
pub(crate) struct Changelog {
    lines: Vec<String>,
    /// Index of the `## Unreleased` line.
    unreleased: usize,
    /// Index of the line after the Unreleased section.
    unreleased_end: usize,
    pub(crate) released: Vec<Released>,
}

impl Changelog {
    /// Parses `text`, refusing a malformed Unreleased section or version heading.
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut unreleased = None;
        let mut unreleased_end = lines.len();
        let mut released: Vec<Released> = Vec::new();
        for (index, line) in lines.iter().enumerate() {
            let number = index + 1;
            let Some(heading) = line.strip_prefix("## ") else {
                if unreleased.is_some() && released.is_empty() {
                    check_unreleased_line(number, line)?;
                }
                continue;
            };
            if heading.trim() == "Unreleased" {
                ensure!(unreleased.is_none(), TwoUnreleasedSnafu { line: number });
                if let Some(first) = released.first() {
                    return UnreleasedNotFirstSnafu {
                        line: first.line + 1,
                        heading: lines[first.line].clone(),
                    }
                    .fail();
                }
                unreleased = Some(index);
                continue;
            }
            let (version, date) = parse_version_heading(heading).context(BadHeadingSnafu {
                line: number,
                heading: line.clone(),
            })?;
            if released.is_empty() {
                unreleased_end = index;
            }
            if let Some(above) = released.last() {
                ensure!(
                    version < above.version,
                    VersionOrderSnafu {
                        line: number,
                        version,
                        above: above.version.clone(),
                    }
                );
            }
            released.push(Released {
                version,
                date,
                line: index,
            });
        }
        let unreleased = unreleased.context(NoUnreleasedSnafu)?;
        Ok(Self {
            lines,
            unreleased,
            unreleased_end,
            released,
        })
    }

    /// The Unreleased section's lines without the heading and surrounding blank lines.
    pub(crate) fn unreleased_entries(&self) -> &[String] {
        let body = &self.lines[self.unreleased + 1..self.unreleased_end];
        let start = body
            .iter()
            .position(|line| !line.trim().is_empty())
            .unwrap_or(body.len());
        let end = body
            .iter()
            .rposition(|line| !line.trim().is_empty())
            .map_or(start, |last| last + 1);
        &body[start..end]
    }

    /// How many list items the Unreleased section holds.
    pub(crate) fn unreleased_items(&self) -> usize {
        self.unreleased_entries()
            .iter()
            .filter(|line| line.starts_with("- ") || line.starts_with("* "))
            .count()
    }

    /// The section of `version`, if released.
    pub(crate) fn entry(&self, version: &Version) -> Option<&Released> {
        self.released
            .iter()
            .find(|released| &released.version == version)
    }

    /// The lines of a released version's section, without its heading.
    pub(crate) fn section(&self, version: &Version) -> Option<Vec<String>> {
        let position = self
            .released
            .iter()
            .position(|released| &released.version == version)?;
        let start = self.released[position].line + 1;
        let end = self
            .released
            .get(position + 1)
            .map_or(self.lines.len(), |next| next.line);
        let section: Vec<String> = self.lines[start..end].to_vec();
        Some(trim_blank(section))
    }

    /// The text with the Unreleased entries moved under `## [version] - date`.
    pub(crate) fn release(&self, version: &Version, date: &str) -> String {
        let mut out: Vec<String> = self.lines[..=self.unreleased].to_vec();
        out.push(String::new());
        out.push(format!("## [{version}] - {date}"));
        out.push(String::new());
        out.extend(self.unreleased_entries().iter().cloned());
        out.push(String::new());
        if self.unreleased_end < self.lines.len() {
            out.extend(self.lines[self.unreleased_end..].iter().cloned());
        }
        let mut text = trim_blank(out).join("\n");
        text.push('\n');
        text
    }
}

fn trim_blank(mut lines: Vec<String>) -> Vec<String> {
    while lines.last().is_some_and(|line| line.trim().is_empty()) {
        lines.pop();
    }
    let leading = lines
        .iter()
        .take_while(|line| line.trim().is_empty())
        .count();
    lines.drain(..leading);
    lines
}

fn check_unreleased_line(number: usize, line: &str) -> Result<(), Error> {
    let allowed = line.trim().is_empty()
        || line.starts_with("- ")
        || line.starts_with("* ")
        || line.starts_with("### ")
        || line.starts_with(' ')
        || line.starts_with('\t');
    ensure!(
        allowed,
        NotAListItemSnafu {
            line: number,
            text: line.to_string()
        }
    );
    Ok(())
}

/// `[1.2.3] - 2026-01-31` into the version and the date.
fn parse_version_heading(heading: &str) -> Option<(Version, String)> {
    let (version, date) = heading.trim().split_once(" - ")?;
    let version = version.strip_prefix('[')?.strip_suffix(']')?;
    let version = Version::parse(version).ok()?;
    let date = date.trim();
    let valid_date = date.len() == 10
        && date.char_indices().all(|(index, c)| match index {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        });
    valid_date.then(|| (version, date.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# Changelog\n\n## Unreleased\n\n- New thing.\n  More on it.\n\n- Other.\n\n\
                        ## [0.1.0] - 2026-01-02\n\n- First version.\n";

    fn version(text: &str) -> Version {
        Version::parse(text).expect("a version")
    }

    #[test]
    fn reads_unreleased_entries_and_versions() {
        let changelog = Changelog::parse(TEXT).expect("well formed");
        assert_eq!(changelog.unreleased_items(), 2);
        assert_eq!(changelog.unreleased_entries().len(), 4);
        assert_eq!(
            changelog.entry(&version("0.1.0")).map(|r| r.date.as_str()),
            Some("2026-01-02")
        );
        assert!(changelog.entry(&version("0.2.0")).is_none());
        assert_eq!(
            changelog.section(&version("0.1.0")),
            Some(vec!["- First version.".to_string()])
        );
    }

    #[test]
    fn release_moves_the_entries_under_the_version() {
        let changelog = Changelog::parse(TEXT).expect("well formed");
        let released = changelog.release(&version("0.2.0"), "2026-03-04");
        assert_eq!(
            released,
            "# Changelog\n\n## Unreleased\n\n## [0.2.0] - 2026-03-04\n\n- New thing.\n  More on it.\n\n\
             - Other.\n\n## [0.1.0] - 2026-01-02\n\n- First version.\n"
        );
        let again = Changelog::parse(&released).expect("still well formed");
        assert_eq!(again.unreleased_items(), 0);
        assert_eq!(again.released.len(), 2);
    }

    #[test]
    fn a_first_release_has_no_versions_below() {
        let changelog = Changelog::parse("# Changelog\n\n## Unreleased\n\n- A.\n").expect("ok");
        assert_eq!(
            changelog.release(&version("0.1.0"), "2026-03-04"),
            "# Changelog\n\n## Unreleased\n\n## [0.1.0] - 2026-03-04\n\n- A.\n"
        );
    }

    #[test]
    fn malformed_changelogs_name_the_line() {
        let cases = [
            ("# Changelog\n\n- A.\n", "no `## Unreleased`"),
            (
                "## Unreleased\n\n## Unreleased\n",
                "line 3: a second `## Unreleased`",
            ),
            (
                "## [0.1.0] - 2026-01-01\n\n## Unreleased\n",
                "line 1: `## [0.1.0] - 2026-01-01` comes before",
            ),
            (
                "## Unreleased\n\n## 0.1.0\n",
                "line 3: `## 0.1.0` is neither",
            ),
            (
                "## Unreleased\n\n## [0.1.0] - 2026-1-1\n",
                "line 3: `## [0.1.0] - 2026-1-1`",
            ),
            (
                "## Unreleased\n\nSome prose.\n",
                "line 3: `Some prose.` in the Unreleased section",
            ),
            (
                "## Unreleased\n\n## [0.1.0] - 2026-01-01\n\n## [0.2.0] - 2026-02-01\n",
                "line 5: version 0.2.0 is not below",
            ),
        ];
        for (text, expected) in cases {
            let error = Changelog::parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
