//! The expansion: parse the declaration, then emit the version modules, the conversions and
//! `<Root>Versions`, in place of the module (or next to nothing, for one type).

use proc_macro2::TokenStream;
use quote::quote;

use crate::{
    declaration::{self, Form},
    emit_conversions, emit_kind,
    emit_types::{self, shift},
    fallibility,
};

/// `#[versioned(attr)] item` expanded.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let declaration = declaration::parse(attr, item)?;
    let fallibility = fallibility::compute(&declaration);
    let conversions = emit_conversions::conversions(&declaration, &fallibility)?;
    let kind = emit_kind::kind_versions(&declaration)?;
    let count = declaration.versions.len();
    Ok(match &declaration.form {
        Form::Module {
            attrs,
            vis,
            ident,
            others,
        } => {
            let module_vis = shift(vis);
            let modules =
                (0..count).map(|v| emit_types::version_module(&declaration, v, &module_vis));
            quote! {
                #(#attrs)*
                #vis mod #ident {
                    #(#others)*
                    #(#modules)*
                    #conversions
                    #kind
                }
            }
        }
        Form::Standalone => {
            let vis = declaration
                .items
                .first()
                .map(|item| item.vis.clone())
                .unwrap_or(syn::Visibility::Inherited);
            let modules = (0..count).map(|v| emit_types::version_module(&declaration, v, &vis));
            quote! {
                #(#modules)*
                #conversions
                #kind
            }
        }
    })
}
