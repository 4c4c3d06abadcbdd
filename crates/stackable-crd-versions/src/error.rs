//! Why a generated conversion failed: which field (`spec.jobs[2].policy`) and what went wrong.
//!
//! Generated conversions that can fail return [`ConversionError`]; the `KindConverter` puts it
//! into the `ConversionReview` failure the API server passes on to the client, e.g.
//! `step example.com/v1beta1 -> example.com/v1: spec.host: spec.hostPort "db" is not host:port`.

use std::fmt;

use snafu::Snafu;

/// A boxed error, what a user function's error is turned into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One step into an object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field(String),
    Index(usize),
}

/// Where in an object a conversion failed, as the JSON names the fields (`spec.hostPort`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// True at the top of the value that failed to convert.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Field(name) if i == 0 => write!(f, "{name}")?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

fn prefix(path: &FieldPath) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Why a generated conversion failed.
#[derive(Debug, Snafu)]
pub enum ConversionError {
    /// A function of the declaration (`try_upgrade`, `try_downgrade`, or a conversion written
    /// by hand) returned an error.
    #[snafu(display("{}{source}", prefix(path)))]
    Function {
        /// Where.
        path: FieldPath,
        /// The function's error.
        source: BoxError,
    },

    /// An enum value has no counterpart in the target version, and the declaration names no
    /// variant to use instead (`downgrade_to`/`upgrade_to`).
    #[snafu(display(
        "{}the value {variant:?} does not exist in version {version}",
        prefix(path)
    ))]
    NoSuchVariant {
        /// Where.
        path: FieldPath,
        /// The value (its JSON name).
        variant: &'static str,
        /// The target version.
        version: &'static str,
    },
}

impl ConversionError {
    /// An error of a user function; a `ConversionError` (from a nested conversion) is taken as
    /// it is, so its path is kept.
    pub fn wrap(error: impl Into<BoxError>) -> Self {
        match error.into().downcast::<ConversionError>() {
            Ok(error) => *error,
            Err(source) => ConversionError::Function {
                path: FieldPath::default(),
                source,
            },
        }
    }

    /// The value `variant` does not exist in `version`.
    pub fn no_such_variant(variant: &'static str, version: &'static str) -> Self {
        ConversionError::NoSuchVariant {
            path: FieldPath::default(),
            variant,
            version,
        }
    }

    fn path_mut(&mut self) -> &mut FieldPath {
        match self {
            ConversionError::Function { path, .. }
            | ConversionError::NoSuchVariant { path, .. } => path,
        }
    }

    /// The error happened inside field `name`.
    #[must_use]
    pub fn in_field(mut self, name: &str) -> Self {
        self.path_mut().0.insert(0, Segment::Field(name.to_owned()));
        self
    }

    /// The error happened at position `index` of a list.
    #[must_use]
    pub fn at_index(mut self, index: usize) -> Self {
        self.path_mut().0.insert(0, Segment::Index(index));
        self
    }

    /// Where the conversion failed.
    pub fn path(&self) -> &FieldPath {
        match self {
            ConversionError::Function { path, .. }
            | ConversionError::NoSuchVariant { path, .. } => path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_json() {
        let error = ConversionError::wrap("not host:port")
            .in_field("hostPort")
            .at_index(2)
            .in_field("jobs")
            .in_field("spec");
        assert_eq!(error.path().to_string(), "spec.jobs[2].hostPort");
        assert_eq!(error.to_string(), "spec.jobs[2].hostPort: not host:port");
    }

    #[test]
    fn a_wrapped_conversion_error_keeps_its_path() {
        let inner = ConversionError::no_such_variant("Replace", "v1").in_field("policy");
        let outer = ConversionError::wrap(inner).in_field("spec");
        assert_eq!(
            outer.to_string(),
            "spec.policy: the value \"Replace\" does not exist in version v1"
        );
    }
}
