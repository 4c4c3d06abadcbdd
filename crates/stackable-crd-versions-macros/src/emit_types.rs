//! The types of one version: a module `vN` holding every versioned type as it is in `vN`.
//!
//! Each type keeps its attributes and derives; the `#[kube]` type gets the version's
//! `version`, `storage`, `served` and `deprecated` arguments; a deprecated field or variant
//! gets a doc line saying so (it ends up in the CRD schema's description). Visibilities move
//! one module down (`struct A` becomes `pub(super) struct A` inside `vN`) so that the code
//! around the declaration sees the types as it would have seen the declared ones.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, Fields, Path, Visibility};

use crate::{
    declaration::{Declaration, ItemData, StructStyle, VersionedItem},
    members::Member,
};

/// The visibility an item needs one module further down to stay visible where it was.
pub(crate) fn shift(vis: &Visibility) -> Visibility {
    match vis {
        Visibility::Public(_) => vis.clone(),
        Visibility::Inherited => syn::parse_quote!(pub(super)),
        Visibility::Restricted(restricted) => {
            let path = &restricted.path;
            let first = path.segments.first().map(|s| s.ident.to_string());
            match first.as_deref() {
                Some("crate") => vis.clone(),
                _ if path.leading_colon.is_some() => vis.clone(),
                Some("self") => syn::parse_quote!(pub(super)),
                _ => {
                    let path: Path = syn::parse_quote!(super::#path);
                    syn::parse_quote!(pub(in #path))
                }
            }
        }
    }
}

fn deprecation_docs(
    attrs: &[Attribute],
    deprecated: Option<(usize, Option<&syn::LitStr>)>,
    declaration: &Declaration,
) -> Vec<Attribute> {
    let Some((since, note)) = deprecated else {
        return Vec::new();
    };
    let since = declaration.versions.list[since].name();
    let text = match note {
        Some(note) => format!(" Deprecated since {since}: {}", note.value()),
        None => format!(" Deprecated since {since}."),
    };
    let mut docs = Vec::new();
    if attrs.iter().any(|a| a.path().is_ident("doc")) {
        docs.push(syn::parse_quote!(#[doc = ""]));
    }
    docs.push(syn::parse_quote!(#[doc = #text]));
    docs
}

fn field_at(
    member: &Member,
    v: usize,
    style: StructStyle,
    declaration: &Declaration,
) -> TokenStream {
    let attrs = &member.docs.apply(&member.attrs, v);
    let docs = deprecation_docs(attrs, member.deprecated_at(v), declaration);
    let vis = shift(&member.vis);
    let ty = member.type_at(v);
    match (style, member.name_at(v)) {
        (StructStyle::Named, Some(name)) => quote!(#(#attrs)* #(#docs)* #vis #name: #ty),
        _ => quote!(#(#attrs)* #(#docs)* #vis #ty),
    }
}

fn variant_at(member: &Member, v: usize, declaration: &Declaration) -> TokenStream {
    let attrs = &member.docs.apply(&member.attrs, v);
    let docs = deprecation_docs(attrs, member.deprecated_at(v), declaration);
    let name = member.name_at(v);
    let payload: &Fields = &member.payload;
    let discriminant = member.discriminant.as_ref().map(|d| quote!(= #d));
    quote!(#(#attrs)* #(#docs)* #name #payload #discriminant)
}

fn item_at(item: &VersionedItem, v: usize, declaration: &Declaration) -> TokenStream {
    let version = &declaration.versions.list[v];
    let mut attrs = item.attrs.clone();
    if let Some(kube) = &item.kube {
        attrs[kube.attr_index] = kube.attr_for(version);
    }
    let attrs = item.docs.apply(&attrs, v);
    let vis = shift(&item.vis);
    let ident = &item.ident;
    let generics = &item.generics;
    let where_clause = &item.generics.where_clause;
    match &item.data {
        ItemData::Struct { fields, style } => {
            let fields: Vec<TokenStream> = fields
                .iter()
                .filter(|f| f.exists(v))
                .map(|f| field_at(f, v, *style, declaration))
                .collect();
            match style {
                StructStyle::Named => quote! {
                    #(#attrs)* #vis struct #ident #generics #where_clause { #(#fields,)* }
                },
                StructStyle::Tuple => quote! {
                    #(#attrs)* #vis struct #ident #generics ( #(#fields,)* ) #where_clause;
                },
                StructStyle::Unit => quote! {
                    #(#attrs)* #vis struct #ident #generics #where_clause;
                },
            }
        }
        ItemData::Enum { variants } => {
            let variants = variants
                .iter()
                .filter(|m| m.exists(v))
                .map(|m| variant_at(m, v, declaration));
            quote! {
                #(#attrs)* #vis enum #ident #generics #where_clause { #(#variants,)* }
            }
        }
    }
}

/// The module of version `v`, with the visibility `vis`.
pub(crate) fn version_module(declaration: &Declaration, v: usize, vis: &Visibility) -> TokenStream {
    let version = &declaration.versions.list[v];
    let ident = &version.ident;
    let mut notes = Vec::new();
    if version.storage {
        notes.push("the storage version".to_owned());
    }
    if !version.served {
        notes.push("not served".to_owned());
    }
    match &version.deprecated {
        Some(Some(warning)) => notes.push(format!("deprecated: {}", warning.value())),
        Some(None) => notes.push("deprecated".to_owned()),
        None => {}
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    let doc = format!(" Version `{ident}`{notes}, generated by `#[versioned]`.");
    let items = declaration
        .items
        .iter()
        .filter(|i| i.exists(v))
        .map(|i| item_at(i, v, declaration));
    quote! {
        #[doc = #doc]
        #vis mod #ident {
            #[allow(unused_imports)]
            use super::*;
            #(#items)*
        }
    }
}
