//! The `#[versioned]` attribute of [`stackable-crd-versions`]: one declaration of a kind's
//! versions becomes one Rust type per version, the conversions between adjacent versions, the
//! `KindConverter` and the merged CRD.
//!
//! Use it through `stackable-crd-versions`, whose documentation describes the syntax; the code
//! this crate generates refers to `::stackable_crd_versions`.
//!
//! [`stackable-crd-versions`]: https://docs.rs/stackable-crd-versions

use proc_macro::TokenStream;

mod actions;
mod declaration;
mod docs;
mod emit_conversions;
mod emit_kind;
mod emit_types;
mod expand;
mod fallibility;
mod kube_attr;
mod members;
mod serde_names;
mod type_map;
mod versions;

#[cfg(test)]
mod tests;

/// Declares the versions of a kind (or of one type) once; see `stackable-crd-versions`.
#[proc_macro_attribute]
pub fn versioned(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
