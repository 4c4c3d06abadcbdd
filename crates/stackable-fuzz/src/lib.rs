//! Fuzz targets for every parser of the workspace that reads outside input, and a driver that
//! runs them on stable Rust.
//!
//! A webhook reads what the API server sends (admission and conversion reviews), what users
//! put into Secrets, files and annotations (PEM and DER certificates and keys, the rotation
//! state, injection annotations) and what requesters sign (PKCS#10 in a `CertificateRequest`).
//! Each of those parsers is a [`Target`]: a function of arbitrary bytes that must not panic,
//! must not allocate without bound and must answer with a clear error. A target also checks
//! what the parser promises (a refused admission review is an `AdmissionReview` with
//! `allowed: false`; what parses serialises and parses back the same; errors do not quote key
//! material) and panics when a promise is broken, so a broken promise is a finding too.
//!
//! Two engines run the same targets:
//!
//! - [`driver`]: a mutation fuzzer on stable Rust (`cargo xtask fuzz`): seed inputs per target
//!   ([`Target::seeds`]), byte-level, PEM/DER-aware and JSON-aware mutations, a corpus grown by
//!   the outcomes it has not seen yet, panics caught and written out as reproducers, and the
//!   peak resident memory watched.
//! - cargo-fuzz (libFuzzer, coverage-guided, nightly): `fuzz/fuzz_targets/<name>.rs` calls the
//!   same function; see `docs/fuzzing.md`.

use std::time::Duration;

pub mod driver;
mod mutate;
mod rng;
mod seeds;
pub mod targets;

/// One parser under test.
#[derive(Debug)]
pub struct Target {
    /// The name (`cargo xtask fuzz --target <name>`, `fuzz_targets/<name>.rs`).
    pub name: &'static str,
    /// What it parses, and through which public entry points.
    pub about: &'static str,
    /// Runs the parser on one input; returns a short label of the outcome (an error's variant,
    /// "ok"), which the driver uses to keep inputs that reach new outcomes. Panics only when the
    /// code under test panics or breaks a promise the target checks.
    pub run: fn(&[u8]) -> String,
    /// Valid inputs to start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens worth inserting (keys, versions, PEM armour).
    pub dictionary: &'static [&'static str],
    /// The largest input the driver makes (outside input is bounded before it is parsed: the
    /// server's body limit, the API server's object size limit).
    pub max_len: usize,
    /// Inputs slower than this are reported (a parse that is quadratic in its input).
    pub slow: Duration,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    targets::admission::ADMISSION_REVIEW,
    targets::conversion::CONVERSION_REVIEW,
    targets::certs::CERTIFICATE_PEM,
    targets::certs::PRIVATE_KEY_PEM,
    targets::certs::DER,
    targets::certs::SERVING_FILES,
    targets::certs::CSR_PEM,
    targets::issuer::CERTIFICATE_REQUEST,
    targets::secret::SECRET_DATA,
    targets::secret::ROTATION_STATE,
    targets::cainjector::INJECTION_ANNOTATIONS,
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|target| target.name == name)
}

/// The label of an error: the name of its variant (what its `Debug` starts with), so that
/// outcomes are told apart by kind, not by the input they quote.
pub fn variant(error: &impl std::fmt::Debug) -> String {
    let debug = format!("{error:?}");
    let end = debug
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(debug.len());
    debug[..end].to_owned()
}
