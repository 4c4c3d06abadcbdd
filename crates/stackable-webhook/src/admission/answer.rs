//! What admission handlers answer: [`Validation`] and [`Mutation`], each with warnings and
//! audit annotations.

use std::collections::BTreeMap;

use kube::core::admission::AdmissionResponse;

use super::{audit, warnings};

/// What an answer says besides its verdict: warnings for the API client and audit annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Notes {
    pub(super) warnings: Vec<String>,
    pub(super) audit_annotations: BTreeMap<String, String>,
}

impl Notes {
    /// Puts the warnings (sanitised and bounded, see [`super::warnings`]) and the audit
    /// annotations the API server accepts (see [`super::audit`]) into `response`.
    pub(super) fn apply(self, response: &mut AdmissionResponse) {
        response.warnings = warnings::bounded(self.warnings);
        response.audit_annotations = audit::accepted(self.audit_annotations);
    }
}

/// The answer of a validating handler: allow, or deny with a reason and an HTTP-style code,
/// plus warnings shown to the API client either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    pub(super) allowed: bool,
    pub(super) code: u16,
    pub(super) reason: String,
    pub(super) notes: Notes,
}

impl Validation {
    /// Admits the request.
    pub fn allow() -> Self {
        Self {
            allowed: true,
            code: 200,
            reason: String::new(),
            notes: Notes::default(),
        }
    }

    /// Refuses the request with a reason shown to the API client (code 403 unless changed).
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            code: 403,
            reason: reason.into(),
            notes: Notes::default(),
        }
    }

    /// Sets the HTTP-style code returned to the API client with a denial (e.g. 400, 422).
    #[must_use]
    pub fn with_code(mut self, code: u16) -> Self {
        self.code = code;
        self
    }

    /// Adds a warning (shown by kubectl as `Warning: ...`). Keep it under 120 characters;
    /// control characters become spaces, and each warning is cut to 256 characters and all of
    /// them to 4,096 (see [`crate::admission::warnings`]).
    #[must_use]
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.notes.warnings.push(warning.into());
        self
    }

    /// Adds an audit annotation: the API server records it in the request's audit event as
    /// `<webhook name>/<key>`. A key it would refuse (see
    /// [`check_audit_annotation_key`](crate::admission::check_audit_annotation_key)) is logged
    /// and not sent.
    #[must_use]
    pub fn with_audit_annotation(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.notes
            .audit_annotations
            .insert(key.into(), value.into());
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
        self.notes.apply(&mut response);
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
    pub(super) notes: Notes,
}

impl<K> Mutation<K> {
    /// Admits the request without changing the object.
    pub fn unchanged() -> Self {
        Self {
            outcome: MutationOutcome::Unchanged,
            notes: Notes::default(),
        }
    }

    /// Admits the request with `object` as the desired state. The server diffs it against the
    /// object as received and sends a JSON Patch (none when nothing changed).
    pub fn patched(object: K) -> Self {
        Self {
            outcome: MutationOutcome::Patched(Box::new(object)),
            notes: Notes::default(),
        }
    }

    /// Refuses the request (code 403 unless changed with [`Mutation::with_code`]).
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            outcome: MutationOutcome::Denied {
                reason: reason.into(),
                code: 403,
            },
            notes: Notes::default(),
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

    /// Adds a warning shown to the API client (sanitised and bounded like
    /// [`Validation::with_warning`]).
    #[must_use]
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.notes.warnings.push(warning.into());
        self
    }

    /// Adds an audit annotation (see [`Validation::with_audit_annotation`]), sent with any
    /// outcome, denials included.
    #[must_use]
    pub fn with_audit_annotation(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.notes
            .audit_annotations
            .insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_carries_code_and_reason() {
        let v = Validation::deny("nope")
            .with_code(422)
            .with_warning("w")
            .with_audit_annotation("decision", "denied");
        assert!(!v.is_allowed());
        assert_eq!(v.code, 422);
        assert_eq!(v.notes.warnings, vec!["w".to_owned()]);
        assert_eq!(v.notes.audit_annotations["decision"], "denied");
    }
}
