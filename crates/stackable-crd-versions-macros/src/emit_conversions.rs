//! The conversions between adjacent versions: `From` (or `TryFrom` when a step can fail) in both
//! directions for every type that exists on both sides, and for the kind's root object.
//!
//! A struct converts field by field: a field on both sides is moved (or converted by type, see
//! [`type_map`](crate::type_map), or by the `changed` functions); a field only in the target gets
//! its fill (`Default::default()`, `default = f`: `f()`, `upgrade = f`/`downgrade = f`:
//! `f(&source)`, computed before the source is taken apart); a field only in the source is
//! dropped (the router's stash keeps it for the way back). An enum converts variant by variant;
//! a variant the target does not have becomes `upgrade_to`/`downgrade_to`, or fails.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Fields, Ident, Type};

use crate::{
    actions::{Changed, Fill},
    declaration::{Declaration, ItemData, StructStyle, VersionedItem},
    fallibility::{Dir, Fallibility},
    members::Member,
    serde_names,
    type_map::{self, Step},
};

/// The error type of fallible generated conversions.
fn error_type() -> TokenStream {
    quote!(::stackable_crd_versions::ConversionError)
}

/// Wraps a fallible expression: adds `field` to the error's path and returns early on error.
fn try_in_field(expr: TokenStream, field: &str) -> TokenStream {
    quote!(#expr.map_err(|e| e.in_field(#field))?)
}

/// A call of a user function on `arg`, with `?` if it is fallible; a failure is placed in
/// `field` when the function converts that field's value (not when it reads the whole source).
fn call(func: &crate::actions::Func, arg: TokenStream, field: Option<&str>) -> TokenStream {
    let path = &func.path;
    let error = error_type();
    match (func.fallible, field) {
        (true, Some(field)) => try_in_field(quote!(#path(#arg).map_err(#error::wrap)), field),
        (true, None) => quote!(#path(#arg).map_err(#error::wrap)?),
        (false, _) => quote!(#path(#arg)),
    }
}

struct Ctx<'a> {
    declaration: &'a Declaration,
    item: &'a VersionedItem,
    since: usize,
    dir: Dir,
    source: usize,
    target: usize,
    step: Step<'a>,
}

impl Ctx<'_> {
    fn json_name(&self, member: &Member, v: usize) -> String {
        let rust = member
            .name_at(v)
            .map_or_else(|| member.index.to_string(), |n| n.to_string());
        let rule = self.item.rename_all.as_deref();
        let rename = member.serde_rename.as_deref();
        match self.item.data {
            ItemData::Struct { .. } => serde_names::field_name(&rust, rename, rule),
            ItemData::Enum { .. } => serde_names::variant_name(&rust, rename, rule),
        }
    }

    fn version_name(&self, v: usize) -> String {
        self.declaration.versions.list[v].name()
    }

    /// The value of a field present on both sides.
    fn carried(&self, member: &Member, binding: &Ident) -> syn::Result<TokenStream> {
        let field = self.json_name(member, self.source);
        if let Some(Changed {
            upgrade: Some(upgrade),
            downgrade: Some(downgrade),
            ..
        }) = member.changed_with_functions(self.since)
        {
            let func = match self.dir {
                Dir::Up => upgrade,
                Dir::Down => downgrade,
            };
            return Ok(call(func, quote!(#binding), Some(&field)));
        }
        let ty = member
            .type_at(self.source)
            .unwrap_or_else(|| syn::parse_quote!(()));
        self.by_type(&ty, binding, &field)
    }

    fn by_type(&self, ty: &Type, binding: &Ident, field: &str) -> syn::Result<TokenStream> {
        let conv = type_map::convert(ty, quote!(#binding), &self.step)?;
        Ok(if conv.fallible {
            try_in_field(conv.tokens, field)
        } else {
            conv.tokens
        })
    }

    fn struct_body(&self, fields: &[Member], style: StructStyle) -> syn::Result<TokenStream> {
        let from = &self.step.from;
        let ident = &self.item.ident;
        let mut computed = Vec::new();
        let mut pattern = Vec::new();
        let mut inits = Vec::new();
        for member in fields {
            let binding = format_ident!("__sv_{}", member.index);
            let value = match (member.exists(self.source), member.exists(self.target)) {
                (true, true) => {
                    pattern.push((member.name_at(self.source), quote!(#binding)));
                    self.carried(member, &binding)?
                }
                (true, false) => {
                    pattern.push((member.name_at(self.source), quote!(_)));
                    continue;
                }
                (false, true) => match member.fill(self.since) {
                    Some(Fill::DefaultFn(path)) => quote!(#path()),
                    Some(Fill::Compute(func)) => {
                        let call = call(func, quote!(&value), None);
                        computed.push(quote!(let #binding = #call;));
                        quote!(#binding)
                    }
                    _ => quote!(::core::default::Default::default()),
                },
                (false, false) => continue,
            };
            inits.push((member.name_at(self.target), value));
        }
        let construct = match style {
            StructStyle::Named => {
                let pattern = pattern.iter().map(|(name, b)| quote!(#name: #b));
                let inits = inits.iter().map(|(name, v)| quote!(#name: #v));
                quote! {
                    let #from::#ident { #(#pattern,)* } = value;
                    Self { #(#inits,)* }
                }
            }
            StructStyle::Tuple => {
                let pattern = pattern.iter().map(|(_, b)| b);
                let inits = inits.iter().map(|(_, v)| v);
                quote! {
                    let #from::#ident ( #(#pattern,)* ) = value;
                    Self ( #(#inits,)* )
                }
            }
            StructStyle::Unit => quote! {
                let _ = value;
                Self
            },
        };
        Ok(quote!(#(#computed)* #construct))
    }

    fn payload(&self, payload: &Fields, variant: &str) -> syn::Result<(TokenStream, TokenStream)> {
        let mut pattern = Vec::new();
        let mut values = Vec::new();
        for (index, field) in payload.iter().enumerate() {
            let binding = format_ident!("__sv_{index}");
            let name = field
                .ident
                .as_ref()
                .map_or_else(|| index.to_string(), ToString::to_string);
            let path = format!("{variant}.{name}");
            let value = self.by_type(&field.ty, &binding, &path)?;
            match &field.ident {
                Some(ident) => {
                    pattern.push(quote!(#ident: #binding));
                    values.push(quote!(#ident: #value));
                }
                None => {
                    pattern.push(quote!(#binding));
                    values.push(value);
                }
            }
        }
        Ok(match payload {
            Fields::Named(_) => (quote!({ #(#pattern,)* }), quote!({ #(#values,)* })),
            Fields::Unnamed(_) => (quote!(( #(#pattern,)* )), quote!(( #(#values,)* ))),
            Fields::Unit => (quote!(), quote!()),
        })
    }

    fn enum_body(&self, variants: &[Member], fallible: bool) -> syn::Result<TokenStream> {
        let from = &self.step.from;
        let ident = &self.item.ident;
        let error = error_type();
        let mut arms = Vec::new();
        for member in variants.iter().filter(|m| m.exists(self.source)) {
            let source_name = member.name_at(self.source);
            if member.exists(self.target) {
                let target_name = member.name_at(self.target);
                let json = self.json_name(member, self.source);
                let (pattern, values) = self.payload(&member.payload, &json)?;
                let value = quote!(Self::#target_name #values);
                let value = if fallible {
                    quote!(::core::result::Result::Ok(#value))
                } else {
                    value
                };
                arms.push(quote!(#from::#ident::#source_name #pattern => #value,));
                continue;
            }
            let value = match member.fill(self.since) {
                Some(Fill::Variant(to)) => {
                    self.check_variant(variants, to)?;
                    let value = quote!(Self::#to);
                    if fallible {
                        quote!(::core::result::Result::Ok(#value))
                    } else {
                        value
                    }
                }
                _ => {
                    let json = self.json_name(member, self.source);
                    let version = self.version_name(self.target);
                    quote!(::core::result::Result::Err(#error::no_such_variant(#json, #version)))
                }
            };
            arms.push(quote!(#from::#ident::#source_name { .. } => #value,));
        }
        Ok(quote! {
            match value {
                #(#arms)*
            }
        })
    }

    /// `upgrade_to`/`downgrade_to` names a variant the target version has.
    fn check_variant(&self, variants: &[Member], to: &Ident) -> syn::Result<()> {
        let found = variants
            .iter()
            .any(|m| m.exists(self.target) && m.name_at(self.target).as_ref() == Some(to));
        if found {
            Ok(())
        } else {
            Err(syn::Error::new(
                to.span(),
                format!(
                    "`{}` has no variant `{to}` in version `{}`",
                    self.item.ident,
                    self.version_name(self.target)
                ),
            ))
        }
    }
}

fn impl_block(
    item: &VersionedItem,
    from: &Ident,
    to: &Ident,
    body: TokenStream,
    fallible: bool,
) -> TokenStream {
    let ident = &item.ident;
    let (impl_generics, ty_generics, where_clause) = item.generics.split_for_impl();
    let source = quote!(#from::#ident #ty_generics);
    let target = quote!(#to::#ident #ty_generics);
    conversion_impl(
        quote!(#impl_generics),
        &source,
        &target,
        quote!(#where_clause),
        body,
        fallible,
    )
}

/// `impl From<source> for target` (or `TryFrom`) with `body` reading `value`.
fn conversion_impl(
    impl_generics: TokenStream,
    source: &TokenStream,
    target: &TokenStream,
    where_clause: TokenStream,
    body: TokenStream,
    fallible: bool,
) -> TokenStream {
    let attrs = quote! {
        #[automatically_derived]
        #[allow(deprecated, unused_variables, clippy::all)]
    };
    if fallible {
        let error = error_type();
        quote! {
            #attrs
            impl #impl_generics ::core::convert::TryFrom<#source> for #target #where_clause {
                type Error = #error;
                fn try_from(value: #source) -> ::core::result::Result<Self, Self::Error> {
                    #body
                }
            }
        }
    } else {
        quote! {
            #attrs
            impl #impl_generics ::core::convert::From<#source> for #target #where_clause {
                fn from(value: #source) -> Self {
                    #body
                }
            }
        }
    }
}

fn step_conversion(
    declaration: &Declaration,
    fallibility: &Fallibility,
    index: usize,
    since: usize,
    dir: Dir,
) -> syn::Result<TokenStream> {
    let item = &declaration.items[index];
    let (source, target) = dir.ends(since);
    let versions = &declaration.versions.list;
    let lookup = |ident: &Ident| fallibility.lookup(declaration, ident, since, dir);
    let ctx = Ctx {
        declaration,
        item,
        since,
        dir,
        source,
        target,
        step: Step {
            from: &versions[source].ident,
            to: &versions[target].ident,
            lookup: &lookup,
        },
    };
    let fallible = fallibility.get(index, since, dir);
    let body = match &item.data {
        ItemData::Struct { fields, style } => {
            let body = ctx.struct_body(fields, *style)?;
            if fallible {
                quote!(::core::result::Result::Ok({ #body }))
            } else {
                body
            }
        }
        ItemData::Enum { variants } => ctx.enum_body(variants, fallible)?,
    };
    Ok(impl_block(item, ctx.step.from, ctx.step.to, body, fallible))
}

fn root_conversion(
    declaration: &Declaration,
    fallibility: &Fallibility,
    since: usize,
    dir: Dir,
) -> syn::Result<TokenStream> {
    let Some((item, kube)) = declaration.kube_item() else {
        return Ok(quote!());
    };
    let (source, target) = dir.ends(since);
    let versions = &declaration.versions.list;
    let (from, to) = (&versions[source].ident, &versions[target].ident);
    let lookup = |ident: &Ident| fallibility.lookup(declaration, ident, since, dir);
    let step = Step {
        from,
        to,
        lookup: &lookup,
    };
    let spec_ident = &item.ident;
    let spec_ty: Type = syn::parse_quote!(#spec_ident);
    let spec = type_map::convert(&spec_ty, quote!(value.spec), &step)?;
    let mut fallible = spec.fallible;
    let mut inits = vec![quote!(metadata: value.metadata)];
    inits.push(match spec.fallible {
        true => {
            let tokens = try_in_field(spec.tokens, "spec");
            quote!(spec: #tokens)
        }
        false => {
            let tokens = spec.tokens;
            quote!(spec: #tokens)
        }
    });
    if let Some(status) = &kube.status {
        let status_ty: Type = syn::parse_quote!(::core::option::Option<#status>);
        let conv = type_map::convert(&status_ty, quote!(value.status), &step)?;
        fallible |= conv.fallible;
        let tokens = if conv.fallible {
            try_in_field(conv.tokens, "status")
        } else {
            conv.tokens
        };
        inits.push(quote!(status: #tokens));
    }
    let root = &kube.root;
    let body = quote!(Self { #(#inits,)* });
    let body = if fallible {
        quote!(::core::result::Result::Ok(#body))
    } else {
        body
    };
    Ok(conversion_impl(
        quote!(),
        &quote!(#from::#root),
        &quote!(#to::#root),
        quote!(),
        body,
        fallible,
    ))
}

/// Every conversion of the declaration.
pub(crate) fn conversions(
    declaration: &Declaration,
    fallibility: &Fallibility,
) -> syn::Result<TokenStream> {
    let mut out = TokenStream::new();
    for since in 1..declaration.versions.len() {
        for (index, item) in declaration.items.iter().enumerate() {
            if !(item.exists(since - 1) && item.exists(since)) || item.by_hand(since) {
                continue;
            }
            for dir in [Dir::Up, Dir::Down] {
                out.extend(step_conversion(
                    declaration,
                    fallibility,
                    index,
                    since,
                    dir,
                )?);
            }
        }
        for dir in [Dir::Up, Dir::Down] {
            out.extend(root_conversion(declaration, fallibility, since, dir)?);
        }
    }
    Ok(out)
}
