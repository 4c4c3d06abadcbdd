//! Audit annotations of an admission response
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response>).
//!
//! The API server records each `auditAnnotations` entry in the audit event of the request under
//! the key `<webhook name>/<key>`, which must be a qualified name
//! (`k8s.io/apiserver/pkg/admission` `checkKeyFormat`): so `key` must be 1 to 63 characters of
//! `[A-Za-z0-9-_.]`, starting and ending with a letter or digit, without `/`. The API server
//! logs and drops a key that is not; so does this server, before sending, and says so in its log.
//! A webhook cannot overwrite an annotation another plugin set with a different value.

use std::collections::{BTreeMap, HashMap};

use snafu::Snafu;

/// The longest audit annotation key (the name part of a qualified name).
pub const MAX_AUDIT_ANNOTATION_KEY_CHARS: usize = 63;

/// Why an audit annotation key would be dropped by the API server.
#[derive(Debug, Clone, PartialEq, Eq, Snafu)]
pub enum AuditAnnotationKeyError {
    /// The key is empty.
    #[snafu(display("audit annotation key is empty"))]
    Empty,

    /// The key is longer than 63 characters.
    #[snafu(display(
        "audit annotation key {key:?} is longer than {MAX_AUDIT_ANNOTATION_KEY_CHARS} characters"
    ))]
    TooLong {
        /// The key.
        key: String,
    },

    /// The key holds a character other than letters, digits, `-`, `_` and `.` (the API server
    /// adds the webhook name and `/` itself), or does not start and end with a letter or digit.
    #[snafu(display(
        "audit annotation key {key:?} must consist of letters, digits, '-', '_' or '.', and start and end with a letter or digit"
    ))]
    Invalid {
        /// The key.
        key: String,
    },
}

/// Checks an audit annotation key as the API server will (see the module docs).
pub fn check_audit_annotation_key(key: &str) -> Result<(), AuditAnnotationKeyError> {
    if key.is_empty() {
        return Err(AuditAnnotationKeyError::Empty);
    }
    if key.len() > MAX_AUDIT_ANNOTATION_KEY_CHARS {
        return TooLongSnafu { key }.fail();
    }
    let bytes = key.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_ok = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if !(inner_ok && ends_ok) {
        return InvalidSnafu { key }.fail();
    }
    Ok(())
}

/// The annotations to send: those whose key the API server accepts (the others are logged).
pub(crate) fn accepted(annotations: BTreeMap<String, String>) -> HashMap<String, String> {
    annotations
        .into_iter()
        .filter(|(key, _)| match check_audit_annotation_key(key) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "dropping an audit annotation the API server would refuse");
                false
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_qualified_name_rules() {
        for good in [
            "a",
            "image-policy",
            "reason_1",
            "v1.decision",
            &"k".repeat(63),
        ] {
            assert_eq!(check_audit_annotation_key(good), Ok(()), "{good}");
        }
        assert_eq!(
            check_audit_annotation_key(""),
            Err(AuditAnnotationKeyError::Empty)
        );
        assert!(matches!(
            check_audit_annotation_key(&"k".repeat(64)),
            Err(AuditAnnotationKeyError::TooLong { .. })
        ));
        for bad in [
            "example.com/key",
            "-lead",
            "trail.",
            "with space",
            "ümlaut",
            "a:b",
        ] {
            assert!(
                matches!(
                    check_audit_annotation_key(bad),
                    Err(AuditAnnotationKeyError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn refused_keys_are_not_sent() {
        let sent = accepted(BTreeMap::from([
            ("decision".to_owned(), "denied: no labels".to_owned()),
            ("bad/key".to_owned(), "x".to_owned()),
        ]));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent["decision"], "denied: no labels");
    }
}
