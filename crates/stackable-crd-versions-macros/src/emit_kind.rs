//! `<Root>Versions`: the kind's converter and CRD, from the same version list as the types.
//!
//! `converter()` chains the generated conversions of each pair of adjacent versions into a
//! `KindConverter`; `multi_version_crd()` lists every version's CRD with its `storage`, `served`
//! and `deprecated` flags; `crd(target)` adds webhook conversion. Nothing else declares the
//! versions, so the three cannot disagree.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::declaration::Declaration;

/// The `<Root>Versions` type and its functions, if the declaration has a `#[kube]` type.
pub(crate) fn kind_versions(declaration: &Declaration) -> syn::Result<TokenStream> {
    let Some((item, kube)) = declaration.kube_item() else {
        return Ok(quote!());
    };
    let versions = &declaration.versions;
    let storage = versions.storage()?.name();
    let root = &kube.root;
    let name = format_ident!("{}Versions", root);
    let vis = &item.vis;
    let private = quote!(::stackable_crd_versions::__private);
    let names = versions.names();
    let idents: Vec<_> = versions.list.iter().map(|v| &v.ident).collect();
    let hub = versions.hub().map(|hub| {
        let ident = &hub.ident;
        quote!(.hub::<#ident::#root>())
    });
    let steps = if idents.len() == 1 {
        let only = idents[0];
        vec![quote!(.version::<#only::#root>())]
    } else {
        idents
            .windows(2)
            .map(|pair| {
                let (older, newer) = (pair[0], pair[1]);
                quote!(.step::<#older::#root, #newer::#root>())
            })
            .collect()
    };
    let crd_versions = versions.list.iter().map(|version| {
        let ident = &version.ident;
        let storage = version.storage.then(|| quote!(.storage()));
        let served = (!version.served).then(|| quote!(.served(false)));
        let deprecated = version.deprecated.as_ref().map(|warning| match warning {
            Some(warning) => quote!(.deprecated(::core::option::Option::Some(#warning))),
            None => quote!(.deprecated(::core::option::Option::None)),
        });
        quote!(.version(#private::CrdVersion::of::<#ident::#root>() #storage #served #deprecated))
    });
    let doc = format!(
        " The versions of `{}` ({}), declared once with `#[versioned]`: their converter and their CRD.",
        kube.kind,
        names.join(", ")
    );
    Ok(quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #vis struct #name;

        #[automatically_derived]
        #[allow(deprecated)]
        impl #name {
            /// The version names, oldest first.
            #vis const VERSIONS: &'static [&'static str] = &[#(#names),*];

            /// The storage version.
            #vis const STORAGE_VERSION: &'static str = #storage;

            /// The conversions between every two versions: the generated conversions of each pair
            /// of adjacent versions, chained or through the hub (fields a version cannot hold go
            /// to the stash).
            #vis fn converter() -> ::core::result::Result<#private::KindConverter, #private::BuildError> {
                #private::KindConverter::builder() #hub #(#steps)* .build()
            }

            /// A router that converts this kind only; serve it as the conversion webhook.
            #vis fn router() -> ::core::result::Result<#private::ConversionRouter, #private::BuildError> {
                Self::converter().map(#private::ConversionRouter::from)
            }

            /// Every version of the CRD with its storage, served and deprecated flags, without
            /// a conversion strategy yet.
            #vis fn multi_version_crd() -> #private::MultiVersionCrd {
                #private::MultiVersionCrd::new() #(#crd_versions)*
            }

            /// The CRD with every version and webhook conversion to `target`.
            #vis fn crd(
                target: #private::WebhookTarget,
            ) -> ::core::result::Result<#private::CustomResourceDefinition, #private::CrdError> {
                Self::multi_version_crd().webhook(target).build()
            }
        }
    })
}
