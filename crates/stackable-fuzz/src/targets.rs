//! The targets, by the crate whose parser they run. Each is a `fn(&[u8]) -> String` (see
//! [`Target::run`](crate::Target::run)) that cargo-fuzz's `fuzz_targets/` call as they are.

pub mod admission;
pub mod cainjector;
pub mod certs;
pub mod conversion;
pub mod issuer;
pub mod secret;

/// `input` as UTF-8 text, or the label of an input that is not (where the entry point takes
/// `&str`, the caller has already refused non-UTF-8 bytes).
fn text(input: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(input).map_err(|_| "not-utf8".to_owned())
}

/// The label of an error message: its start up to the first detail (`:`, a quote, a
/// parenthesis), without digits, so that messages quoting the input fall into few labels.
fn head(message: &str) -> String {
    message
        .split([':', '"', '('])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(60)
        .collect()
}
