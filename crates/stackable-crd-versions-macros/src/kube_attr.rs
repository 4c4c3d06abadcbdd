//! The `#[kube(…)]` attribute of the type that derives `CustomResource`.
//!
//! Every argument is forwarded to kube-derive unchanged, in every version; the declaration only
//! adds `version`, `storage`, `served` and `deprecated` from the version list (so those four may
//! not be written here). This module reads what the generated converter and CRD need: the kind,
//! the name of the root struct (`root = "…"` or the kind) and the status type.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, Expr, Ident, LitStr, Path, Token};

use crate::versions::Version;

/// What the declaration knows of the `#[kube]` attribute.
pub(crate) struct Kube {
    /// Position of the attribute among the item's attributes.
    pub(crate) attr_index: usize,
    /// The arguments as written.
    pub(crate) args: TokenStream,
    /// `kind = "…"`.
    pub(crate) kind: String,
    /// The struct kube-derive generates (`root = "…"`, else the kind).
    pub(crate) root: Ident,
    /// The last segment of `status = "…"`.
    pub(crate) status: Option<Ident>,
}

/// Arguments the version list sets.
const SET_BY_VERSIONS: [&str; 4] = ["version", "storage", "served", "deprecated"];

fn string_or_path(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Path> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        value.parse::<LitStr>()?.parse()
    } else {
        value.parse()
    }
}

/// Reads the `#[kube(…)]` among `attrs`, if there is one.
pub(crate) fn parse(attrs: &[Attribute]) -> syn::Result<Option<Kube>> {
    let Some((attr_index, attr)) = attrs
        .iter()
        .enumerate()
        .find(|(_, a)| a.path().is_ident("kube"))
    else {
        return Ok(None);
    };
    let args = attr.meta.require_list()?.tokens.clone();
    let mut kind = None;
    let mut root = None;
    let mut status = None;
    attr.parse_nested_meta(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if SET_BY_VERSIONS.contains(&key.as_str()) {
            return Err(meta.error(format!(
                "`{key}` comes from the version list of #[versioned]: write `version(v1, storage)`, `served = false` or `deprecated = \"…\"` there"
            )));
        }
        match key.as_str() {
            "kind" => kind = Some(meta.value()?.parse::<LitStr>()?),
            "root" => root = Some(meta.value()?.parse::<LitStr>()?),
            "status" => status = Some(string_or_path(&meta)?),
            _ if meta.input.peek(Token![=]) => {
                let _ = meta.value()?.parse::<Expr>()?;
            }
            _ if meta.input.peek(syn::token::Paren) => {
                let _ = meta.input.parse::<proc_macro2::TokenTree>()?;
            }
            _ => {}
        }
        Ok(())
    })?;
    let kind = kind.ok_or_else(|| syn::Error::new_spanned(attr, "#[kube] needs `kind = \"…\"`"))?;
    let root_name = root.as_ref().unwrap_or(&kind);
    let root = Ident::new(&root_name.value(), root_name.span());
    let status = status.and_then(|path| path.segments.last().map(|s| s.ident.clone()));
    Ok(Some(Kube {
        attr_index,
        args,
        kind: kind.value(),
        root,
        status,
    }))
}

impl Kube {
    /// The `#[kube(…)]` of one version: the arguments as written, then the version's.
    pub(crate) fn attr_for(&self, version: &Version) -> Attribute {
        let args = &self.args;
        let name = version.name();
        let storage = version.storage;
        let served = version.served;
        let deprecated = match &version.deprecated {
            Some(Some(warning)) => quote!(, deprecated = #warning),
            Some(None) => quote!(, deprecated),
            None => quote!(),
        };
        let extra = if version.kube.is_empty() {
            quote!()
        } else {
            let kube = &version.kube;
            quote!(, #kube)
        };
        let ends_with_comma = matches!(
            args.clone().into_iter().last(),
            Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == ','
        );
        let comma = if args.is_empty() || ends_with_comma {
            quote!()
        } else {
            quote!(,)
        };
        syn::parse_quote! {
            #[kube(#args #comma version = #name, storage = #storage, served = #served #deprecated #extra)]
        }
    }
}
