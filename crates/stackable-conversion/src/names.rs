//! Label and annotation validation exactly as the API server does it
//! (`k8s.io/apimachinery/pkg/api/validate/content` and `pkg/api/validation`, Kubernetes 1.37).
//!
//! - A label key or annotation key is a *qualified name*: an optional prefix, a DNS-1123
//!   subdomain (lowercase alphanumerics, `-` and `.`, labels separated by dots, alphanumeric at
//!   both ends of each, at most 253 bytes; no limit per label), and `/`, then a name of 1 to 63
//!   bytes of alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
//! - Annotation keys are lowercased before that check (`strings.ToLower`), so
//!   `Example.COM/Key` is a valid annotation key but not a valid label key.
//! - A label value is empty, or a name as above (at most 63 bytes).
//! - Annotations (keys plus values) are at most 256 KiB in total.
//!
//! See <https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set>.

use serde_json::{Map, Value};

/// The API server's limit on the total size of an object's annotations (keys plus values).
pub const MAX_ANNOTATIONS_SIZE: usize = 256 * 1024;

/// The total size of annotations as the API server counts it (keys plus values, in bytes).
pub fn annotations_size(annotations: &Map<String, Value>) -> usize {
    annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 bytes.
fn is_name_part(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A DNS-1123 subdomain: `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`, at
/// most 253 bytes.
fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253
        && value.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        })
}

/// Whether `key` is a valid label key (a qualified name); see the [module docs](self).
pub fn is_qualified_name(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [name] => is_name_part(name),
        [prefix, name] => !prefix.is_empty() && is_dns_subdomain(prefix) && is_name_part(name),
        _ => false,
    }
}

/// Whether `value` is a valid label value: empty, or a name of at most 63 bytes.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_name_part(value)
}

/// Go's `strings.ToLower`: the simple (one-to-one) lowercase mapping of every character. It
/// differs from Rust's `to_lowercase` for `İ` (U+0130), which Go maps to `i` alone.
fn go_lowercase(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{130}' => 'i',
            c => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
}

/// Whether `key` is a valid annotation key: a qualified name once lowercased.
pub fn is_annotation_key(key: &str) -> bool {
    is_qualified_name(&go_lowercase(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        assert!(is_qualified_name("conversion.stackable.tech/stash.v1beta1"));
        assert!(is_qualified_name("app"));
        assert!(is_qualified_name("A_b.C-9"));
        assert!(!is_qualified_name("Bad.Prefix/x"));
        assert!(!is_qualified_name("x/"));
        assert!(!is_qualified_name("/x"));
        assert!(!is_qualified_name("a/b/c"));
        assert!(!is_qualified_name(&format!("p/{}", "a".repeat(64))));
        assert!(is_qualified_name(&format!("p/{}", "a".repeat(63))));
        assert!(!is_qualified_name("p/-a"));
        assert!(!is_qualified_name("p/a-"));
        assert!(!is_qualified_name("ä"));
        // No per-label limit in the prefix, 253 bytes in total.
        assert!(is_qualified_name(&format!("{}.com/x", "a".repeat(64))));
        assert!(!is_qualified_name(&format!("{}/x", "a".repeat(254))));
        assert!(!is_qualified_name("a..b/x"));
        assert!(!is_qualified_name("-a.b/x"));
    }

    #[test]
    fn annotation_keys_are_lowercased_first() {
        assert!(is_annotation_key("Example.COM/Key"));
        assert!(!is_qualified_name("Example.COM/Key"));
        // The Kelvin sign lowercases to an ASCII `k`; `İ` to `i` (as in Go).
        assert!(is_annotation_key("\u{212A}ey"));
        assert!(is_annotation_key("\u{130}d.example.com/x"));
        assert!(!is_annotation_key("bad key"));
    }

    #[test]
    fn label_values() {
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3-x"));
        assert!(!is_label_value("-x"));
        assert!(!is_label_value("x y"));
        assert!(!is_label_value("a/b"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
