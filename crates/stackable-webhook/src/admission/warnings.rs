//! Warnings as the API server will pass them on: sanitised and bounded.
//!
//! kube-apiserver turns every warning of an admission response into a `Warning: 299 - "…"`
//! HTTP header of its answer to the client (`k8s.io/apiserver/pkg/endpoints/filters/warning.go`,
//! `k8s.io/apimachinery/pkg/util/net.NewWarningHeader`). It **drops** a warning containing a
//! control character (Go's `unicode.IsControl`: U+0000–U+001F, U+007F–U+009F), drops repeats,
//! and once the warnings of a request exceed 4,096 characters in total, cuts each to 256
//! characters and drops those that no longer fit. The warnings of every webhook and of the API
//! server itself share that budget.
//!
//! So that a handler's warning reaches the user instead of vanishing, the server sends each
//! warning with every run of control characters replaced by one space and surrounding
//! whitespace trimmed, drops empty ones and repeats, cuts each to [`MAX_WARNING_CHARS`] (ending
//! in `…` when cut) and sends no more than [`MAX_WARNINGS_TOTAL_CHARS`] in total.
//! See <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response>.

/// The longest warning sent, in characters (the API server's per-warning cut, `truncateItemRunes`).
pub const MAX_WARNING_CHARS: usize = 256;

/// The most warning text sent per answer, in characters (the API server's `truncateAtTotalRunes`).
pub const MAX_WARNINGS_TOTAL_CHARS: usize = 4096;

/// One warning with control characters replaced, trimmed and cut; `None` when nothing is left.
fn sanitise(warning: &str) -> Option<String> {
    let mut clean = String::with_capacity(warning.len().min(MAX_WARNING_CHARS * 4));
    let mut in_control = false;
    for c in warning.chars() {
        if c.is_control() {
            if !in_control {
                clean.push(' ');
            }
            in_control = true;
        } else {
            clean.push(c);
            in_control = false;
        }
    }
    let trimmed = clean.trim();
    if trimmed.is_empty() {
        return None;
    }
    if trimmed.chars().count() <= MAX_WARNING_CHARS {
        return Some(trimmed.to_owned());
    }
    let mut cut: String = trimmed.chars().take(MAX_WARNING_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    Some(cut)
}

/// The warnings to send: sanitised, without repeats, within the total budget (in order; a
/// warning that does not fit is dropped, and so are those after it).
pub(crate) fn bounded(warnings: Vec<String>) -> Option<Vec<String>> {
    if warnings.is_empty() {
        return None;
    }
    let offered = warnings.len();
    let mut total = 0;
    let mut sent: Vec<String> = Vec::with_capacity(offered);
    for warning in &warnings {
        let Some(clean) = sanitise(warning) else {
            continue;
        };
        if sent.contains(&clean) {
            continue;
        }
        let length = clean.chars().count();
        if total + length > MAX_WARNINGS_TOTAL_CHARS {
            tracing::warn!(
                offered,
                sent = sent.len(),
                "admission warnings exceed {MAX_WARNINGS_TOTAL_CHARS} characters; the rest are dropped"
            );
            break;
        }
        total += length;
        sent.push(clean);
    }
    (!sent.is_empty()).then_some(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_one_space() {
        assert_eq!(
            bounded(vec![
                "line one\nline two\r\n\tthree\u{7f}\u{85}four".to_owned()
            ]),
            Some(vec!["line one line two three four".to_owned()])
        );
        // Nothing the API server would refuse is left.
        let sent = bounded(vec!["a\u{0}b\u{1b}[31mred\u{9f}".to_owned()]).unwrap();
        assert!(!sent[0].chars().any(char::is_control), "{sent:?}");
    }

    #[test]
    fn empty_and_repeated_warnings_are_dropped() {
        let warnings = ["", " \n\t ", "same", "same", "same\n"].map(str::to_owned);
        assert_eq!(bounded(warnings.to_vec()), Some(vec!["same".to_owned()]));
        assert_eq!(bounded(vec!["\n".to_owned()]), None);
        assert_eq!(bounded(Vec::new()), None);
    }

    #[test]
    fn each_warning_is_cut_on_a_character_boundary() {
        let long = "ä".repeat(1000);
        let sent = bounded(vec![long]).unwrap();
        assert_eq!(sent[0].chars().count(), MAX_WARNING_CHARS);
        assert!(sent[0].ends_with('…'));
        let exact = "x".repeat(MAX_WARNING_CHARS);
        assert_eq!(bounded(vec![exact.clone()]), Some(vec![exact]));
    }

    #[test]
    fn the_total_is_bounded() {
        let warnings: Vec<String> = (0..100)
            .map(|i| format!("{i:03}{}", "w".repeat(300)))
            .collect();
        let sent = bounded(warnings).unwrap();
        let total: usize = sent.iter().map(|w| w.chars().count()).sum();
        assert!(total <= MAX_WARNINGS_TOTAL_CHARS, "{total}");
        assert_eq!(sent.len(), MAX_WARNINGS_TOTAL_CHARS / MAX_WARNING_CHARS);
        assert!(sent[0].starts_with("000") && sent[15].starts_with("015"));
    }
}
