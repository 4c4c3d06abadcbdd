//! What admission handlers answer: [`Validation`] and [`Mutation`].

use kube::core::admission::AdmissionResponse;

/// The answer of a validating handler: allow, or deny with a reason and an HTTP-style code,
/// plus warnings shown to the API client either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    pub(super) allowed: bool,
    pub(super) code: u16,
    pub(super) reason: String,
    pub(super) warnings: Vec<String>,
}

impl Validation {
    /// Admits the request.
    pub fn allow() -> Self {
        Self {
            allowed: true,
            code: 200,
            reason: String::new(),
            warnings: Vec::new(),
        }
    }

    /// Refuses the request with a reason shown to the API client (code 403 unless changed).
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            code: 403,
            reason: reason.into(),
            warnings: Vec::new(),
        }
    }

    /// Sets the HTTP-style code returned to the API client with a denial (e.g. 400, 422).
    #[must_use]
    pub fn with_code(mut self, code: u16) -> Self {
        self.code = code;
        self
    }

    /// Adds a warning (shown by kubectl as `Warning: ...`). Keep it under 120 characters.
    #[must_use]
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// Whether the request is admitted.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    pub(super) fn into_response(self, base: AdmissionResponse) -> AdmissionResponse {
        let mut response = if self.allowed {
            base
        } else {
            let mut denied = base.deny(self.reason);
            denied.result.code = self.code;
            denied.result.status = Some(kube::core::response::StatusSummary::Failure);
            denied
        };
        if !self.warnings.is_empty() {
            response.warnings = Some(self.warnings);
        }
        response
    }
}

/// What a mutating handler did with the object.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum MutationOutcome<K> {
    Unchanged,
    Patched(Box<K>),
    Denied { reason: String, code: u16 },
}

/// The answer of a mutating handler: the modified object (the server computes the patch),
/// no change, or a denial; plus warnings.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation<K> {
    pub(super) outcome: MutationOutcome<K>,
    pub(super) warnings: Vec<String>,
}

impl<K> Mutation<K> {
    /// Admits the request without changing the object.
    pub fn unchanged() -> Self {
        Self {
            outcome: MutationOutcome::Unchanged,
            warnings: Vec::new(),
        }
    }

    /// Admits the request with `object` as the desired state. The server diffs it against the
    /// object as received and sends a JSON Patch (none when nothing changed).
    pub fn patched(object: K) -> Self {
        Self {
            outcome: MutationOutcome::Patched(Box::new(object)),
            warnings: Vec::new(),
        }
    }

    /// Refuses the request (code 403 unless changed with [`Mutation::with_code`]).
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            outcome: MutationOutcome::Denied {
                reason: reason.into(),
                code: 403,
            },
            warnings: Vec::new(),
        }
    }

    /// Sets the code of a denial; no effect otherwise.
    #[must_use]
    pub fn with_code(mut self, new_code: u16) -> Self {
        if let MutationOutcome::Denied { code, .. } = &mut self.outcome {
            *code = new_code;
        }
        self
    }

    /// Adds a warning shown to the API client.
    #[must_use]
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_carries_code_and_reason() {
        let v = Validation::deny("nope").with_code(422).with_warning("w");
        assert!(!v.is_allowed());
        assert_eq!(v.code, 422);
        assert_eq!(v.warnings, vec!["w".to_owned()]);
    }
}
