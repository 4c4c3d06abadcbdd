//! Converting a field's value from one version to the next, by its type.
//!
//! A type that names no versioned type of the declaration is moved as it is. A versioned type
//! `X` converts with its generated `From`/`TryFrom` (`v2::X: From<v1::X>`), also inside
//! `Option`, `Vec`, `Box`, `BTreeMap`, `HashMap` and `IndexMap` (values only), to any depth.
//! Anything else that names a versioned type (a tuple, an array, another generic type) is a
//! compile error that asks for `changed(…, upgrade = …, downgrade = …)`.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{GenericArgument, Ident, PathArguments, PathSegment, Type, spanned::Spanned};

/// What the declaration says of a name used in a field's type.
pub(crate) enum Lookup {
    /// Not one of the versioned types.
    NotVersioned,
    /// A versioned type missing on one side of the step.
    Missing,
    /// A versioned type on both sides; its conversion is fallible or not.
    Convert { fallible: bool },
}

/// One conversion step between two version modules.
pub(crate) struct Step<'a> {
    /// The source version's module.
    pub(crate) from: &'a Ident,
    /// The target version's module.
    pub(crate) to: &'a Ident,
    /// What a name means.
    pub(crate) lookup: &'a dyn Fn(&Ident) -> Lookup,
}

impl Step<'_> {
    fn is_versioned(&self, ident: &Ident) -> bool {
        !matches!((self.lookup)(ident), Lookup::NotVersioned)
    }
}

/// A conversion expression: of the target type, or of `Result<target, ConversionError>`.
pub(crate) struct Conv {
    /// The expression.
    pub(crate) tokens: TokenStream,
    /// Whether it is a `Result`.
    pub(crate) fallible: bool,
}

/// `X` (one segment, no `self::`/`super::`) when `X` is a versioned type.
fn versioned_ident<'a>(ty: &'a Type, step: &Step<'_>) -> Option<&'a Ident> {
    match ty {
        Type::Path(path) if path.qself.is_none() && path.path.leading_colon.is_none() => {
            match path.path.segments.iter().collect::<Vec<_>>().as_slice() {
                [segment] if step.is_versioned(&segment.ident) => Some(&segment.ident),
                _ => None,
            }
        }
        _ => None,
    }
}

fn type_args(segment: &PathSegment) -> Vec<&Type> {
    match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Does `ty` name a versioned type anywhere?
pub(crate) fn mentions(ty: &Type, step: &Step<'_>) -> bool {
    match ty {
        Type::Path(path) => {
            versioned_ident(ty, step).is_some()
                || path.qself.as_ref().is_some_and(|q| mentions(&q.ty, step))
                || path
                    .path
                    .segments
                    .iter()
                    .any(|s| type_args(s).into_iter().any(|t| mentions(t, step)))
        }
        Type::Reference(r) => mentions(&r.elem, step),
        Type::Slice(s) => mentions(&s.elem, step),
        Type::Array(a) => mentions(&a.elem, step),
        Type::Ptr(p) => mentions(&p.elem, step),
        Type::Paren(p) => mentions(&p.elem, step),
        Type::Group(g) => mentions(&g.elem, step),
        Type::Tuple(t) => t.elems.iter().any(|e| mentions(e, step)),
        _ => false,
    }
}

/// `ty` with every versioned type `X` replaced by `module::X`.
pub(crate) fn retarget(ty: &Type, module: &Ident, step: &Step<'_>) -> Type {
    let mut ty = ty.clone();
    retarget_mut(&mut ty, module, step);
    ty
}

fn retarget_mut(ty: &mut Type, module: &Ident, step: &Step<'_>) {
    let versioned = versioned_ident(ty, step).is_some();
    match ty {
        Type::Path(path) => {
            for segment in &mut path.path.segments {
                if let PathArguments::AngleBracketed(args) = &mut segment.arguments {
                    for arg in &mut args.args {
                        if let GenericArgument::Type(inner) = arg {
                            retarget_mut(inner, module, step);
                        }
                    }
                }
            }
            if versioned {
                path.path
                    .segments
                    .insert(0, PathSegment::from(module.clone()));
            }
        }
        Type::Reference(r) => retarget_mut(&mut r.elem, module, step),
        Type::Slice(s) => retarget_mut(&mut s.elem, module, step),
        Type::Array(a) => retarget_mut(&mut a.elem, module, step),
        Type::Ptr(p) => retarget_mut(&mut p.elem, module, step),
        Type::Paren(p) => retarget_mut(&mut p.elem, module, step),
        Type::Group(g) => retarget_mut(&mut g.elem, module, step),
        Type::Tuple(t) => t
            .elems
            .iter_mut()
            .for_each(|e| retarget_mut(e, module, step)),
        _ => {}
    }
}

/// Whether converting a `ty` is fallible (without checking that it can be converted at all).
pub(crate) fn is_fallible(ty: &Type, step: &Step<'_>) -> bool {
    if let Some(ident) = versioned_ident(ty, step) {
        return matches!((step.lookup)(ident), Lookup::Convert { fallible: true });
    }
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .iter()
            .any(|s| type_args(s).into_iter().any(|t| is_fallible(t, step))),
        _ => false,
    }
}

fn unsupported(ty: &Type) -> syn::Error {
    syn::Error::new(
        ty.span(),
        format!(
            "cannot convert `{}` between versions: versioned types convert on their own and inside Option, Vec, Box, BTreeMap, HashMap and IndexMap values; convert this field with `changed(since = …, upgrade = path, downgrade = path)`",
            ty.to_token_stream()
        ),
    )
}

/// The expression that converts `value` (of `ty` in the source version) into `ty` in the target
/// version.
pub(crate) fn convert(ty: &Type, value: TokenStream, step: &Step<'_>) -> syn::Result<Conv> {
    if !mentions(ty, step) {
        return Ok(Conv {
            tokens: value,
            fallible: false,
        });
    }
    let error = quote!(::stackable_crd_versions::ConversionError);
    if let Some(ident) = versioned_ident(ty, step) {
        if let Type::Path(path) = ty
            && path
                .path
                .segments
                .iter()
                .any(|s| type_args(s).into_iter().any(|t| mentions(t, step)))
        {
            return Err(unsupported(ty));
        }
        let from_ty = retarget(ty, step.from, step);
        let to_ty = retarget(ty, step.to, step);
        return match (step.lookup)(ident) {
            Lookup::Convert { fallible: false } => Ok(Conv {
                tokens: quote!(<#to_ty as ::core::convert::From<#from_ty>>::from(#value)),
                fallible: false,
            }),
            Lookup::Convert { fallible: true } => Ok(Conv {
                tokens: quote!(
                    <#to_ty as ::core::convert::TryFrom<#from_ty>>::try_from(#value)
                        .map_err(#error::wrap)
                ),
                fallible: true,
            }),
            Lookup::Missing | Lookup::NotVersioned => Err(syn::Error::new(
                ident.span(),
                format!(
                    "`{ident}` does not exist in both `{}` and `{}`, but this field holds it in both",
                    step.from, step.to
                ),
            )),
        };
    }
    let Type::Path(path) = ty else {
        return Err(unsupported(ty));
    };
    let Some(last) = path.path.segments.last() else {
        return Err(unsupported(ty));
    };
    let args = type_args(last);
    let private = quote!(::stackable_crd_versions::__private);
    let v = quote!(__sv_v);
    match (last.ident.to_string().as_str(), args.as_slice()) {
        ("Option", [inner]) => {
            let c = convert(inner, v.clone(), step)?;
            let body = &c.tokens;
            let tokens = if c.fallible {
                quote!(#value.map(|#v| #body).transpose())
            } else {
                quote!(#value.map(|#v| #body))
            };
            Ok(Conv {
                tokens,
                fallible: c.fallible,
            })
        }
        ("Vec", [inner]) => {
            let c = convert(inner, v.clone(), step)?;
            let body = &c.tokens;
            let tokens = if c.fallible {
                quote!(#private::convert_vec(#value, |#v| #body))
            } else {
                quote!(#value.into_iter().map(|#v| #body).collect::<::std::vec::Vec<_>>())
            };
            Ok(Conv {
                tokens,
                fallible: c.fallible,
            })
        }
        ("Box", [inner]) => {
            let c = convert(inner, v.clone(), step)?;
            let body = &c.tokens;
            let tokens = if c.fallible {
                quote!(({ let #v = *#value; #body }).map(::std::boxed::Box::new))
            } else {
                quote!(::std::boxed::Box::new({ let #v = *#value; #body }))
            };
            Ok(Conv {
                tokens,
                fallible: c.fallible,
            })
        }
        ("BTreeMap" | "HashMap" | "IndexMap", [key, inner, ..]) => {
            if mentions(key, step) {
                return Err(unsupported(ty));
            }
            let c = convert(inner, v.clone(), step)?;
            let body = &c.tokens;
            let to_ty = retarget(ty, step.to, step);
            let tokens = if c.fallible {
                quote!(#private::convert_map::<#to_ty, _, _, _, _, _>(#value, |#v| #body))
            } else {
                quote!(#value.into_iter().map(|(__sv_k, #v)| (__sv_k, #body)).collect::<#to_ty>())
            };
            Ok(Conv {
                tokens,
                fallible: c.fallible,
            })
        }
        _ => Err(unsupported(ty)),
    }
}
