//! Compile tests (trybuild): declarations that must build, and declarations the macro must
//! refuse with a message at the offending attribute. The expected messages are in
//! `tests/ui/fail/*.stderr`; they were written with rustc 1.95 (rustc's rendering may change
//! between releases; regenerate with `TRYBUILD=overwrite cargo test -p stackable-crd-versions-macros --test ui`).
//!
//! These cases need nothing but the macro; declarations with a `#[kube]` type, fallible
//! conversions and the converter are compiled by the tests of `stackable-crd-versions`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
