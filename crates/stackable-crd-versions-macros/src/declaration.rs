//! A declaration as the macro reads it: the versions, the versioned types and their members.
//!
//! Two forms: `#[versioned(version(…), …)] mod m { struct A {…} enum B {…} … }` versions every
//! struct and enum of the module together (other items stay in the module as they are);
//! `#[versioned(version(…), …)] struct A {…}` versions one type on its own.

use proc_macro2::{Span, TokenStream};
use syn::{
    Attribute, Fields, Generics, Ident, Item, ItemEnum, ItemStruct, Visibility, parse::Parser as _,
};

use crate::{
    actions::{self, Action, ActionKind, Target},
    docs::VersionDocs,
    kube_attr::{self, Kube},
    members::{self, Member},
    versions::{self, Versions},
};

/// The shape of a struct.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StructStyle {
    /// `struct A { x: T }`
    Named,
    /// `struct A(T);`
    Tuple,
    /// `struct A;`
    Unit,
}

/// A struct's fields or an enum's variants.
pub(crate) enum ItemData {
    /// A struct.
    Struct {
        /// Its fields.
        fields: Vec<Member>,
        /// Its shape.
        style: StructStyle,
    },
    /// An enum.
    Enum {
        /// Its variants.
        variants: Vec<Member>,
    },
}

/// One versioned struct or enum.
pub(crate) struct VersionedItem {
    pub(crate) ident: Ident,
    pub(crate) vis: Visibility,
    pub(crate) generics: Generics,
    /// Attributes other than `#[versioned]`.
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) data: ItemData,
    /// Type-level actions: `added`, `removed`, `convert_by_hand`.
    pub(crate) actions: Vec<Action>,
    /// The `#[kube]` of the type that derives `CustomResource`.
    pub(crate) kube: Option<Kube>,
    /// `#[serde(rename_all = "…")]`.
    pub(crate) rename_all: Option<String>,
    /// Doc comments of some versions only.
    pub(crate) docs: VersionDocs,
}

impl VersionedItem {
    /// Does the type exist in version `v`?
    pub(crate) fn exists(&self, v: usize) -> bool {
        self.actions.iter().all(|a| match a.kind {
            ActionKind::Added(_) => v >= a.version,
            ActionKind::Removed(_) => v < a.version,
            _ => true,
        })
    }

    /// Are the conversions between `v - 1` and `v` written by hand?
    pub(crate) fn by_hand(&self, v: usize) -> bool {
        self.actions
            .iter()
            .any(|a| a.version == v && matches!(a.kind, ActionKind::ConvertByHand))
    }
}

/// Where the declaration came from.
pub(crate) enum Form {
    /// `mod name { … }`: the generated items go into it, with the other items.
    Module {
        attrs: Vec<Attribute>,
        vis: Visibility,
        ident: Ident,
        others: Vec<Item>,
    },
    /// One struct or enum: the generated items take its place.
    Standalone,
}

/// The whole declaration.
pub(crate) struct Declaration {
    pub(crate) versions: Versions,
    pub(crate) items: Vec<VersionedItem>,
    pub(crate) form: Form,
}

impl Declaration {
    /// The type that derives `CustomResource`, if any.
    pub(crate) fn kube_item(&self) -> Option<(&VersionedItem, &Kube)> {
        self.items
            .iter()
            .find_map(|i| i.kube.as_ref().map(|k| (i, k)))
    }
}

/// Reads the attribute's arguments and the item it is on.
pub(crate) fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<Declaration> {
    let mut list = Vec::new();
    let mut standalone_actions = Vec::new();
    let mut standalone_docs = Vec::new();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("version") {
            list.push(versions::parse_version(&meta)?);
        } else if meta.path.is_ident("doc") {
            crate::docs::parse(&meta, &mut standalone_docs)?;
        } else {
            standalone_actions.push(actions::parse_action(&meta, Target::Item)?);
        }
        Ok(())
    });
    parser.parse2(attr)?;
    let versions = Versions {
        list,
        span: Span::call_site(),
    };
    versions.check()?;

    let item: Item = syn::parse2(item)?;
    let (items, form) = match item {
        Item::Mod(module) => {
            if !standalone_docs.is_empty() {
                return Err(syn::Error::new(
                    Span::call_site(),
                    "on a module, put `doc(…)` on the type, field or variant it documents",
                ));
            }
            if let Some(action) = standalone_actions.first() {
                return Err(syn::Error::new(
                    action.keyword.span(),
                    "on a module, put type actions on the type: `#[versioned(…)] struct …` inside the module",
                ));
            }
            let Some((_, content)) = module.content else {
                return Err(syn::Error::new(
                    module.ident.span(),
                    "#[versioned] needs the module's items here: `mod name { … }`, not `mod name;`",
                ));
            };
            let mut items = Vec::new();
            let mut others = Vec::new();
            for inner in content {
                match inner {
                    Item::Struct(mut s) => {
                        if skipped(&mut s.attrs)? {
                            others.push(Item::Struct(s));
                        } else {
                            items.push(from_struct(s, &versions, Vec::new(), Vec::new())?);
                        }
                    }
                    Item::Enum(mut e) => {
                        if skipped(&mut e.attrs)? {
                            others.push(Item::Enum(e));
                        } else {
                            items.push(from_enum(e, &versions, Vec::new(), Vec::new())?);
                        }
                    }
                    other => others.push(other),
                }
            }
            let form = Form::Module {
                attrs: module.attrs,
                vis: module.vis,
                ident: module.ident,
                others,
            };
            (items, form)
        }
        Item::Struct(s) => (
            vec![from_struct(
                s,
                &versions,
                standalone_actions,
                standalone_docs,
            )?],
            Form::Standalone,
        ),
        Item::Enum(e) => (
            vec![from_enum(
                e,
                &versions,
                standalone_actions,
                standalone_docs,
            )?],
            Form::Standalone,
        ),
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "#[versioned] goes on a module, a struct or an enum",
            ));
        }
    };
    let declaration = Declaration {
        versions,
        items,
        form,
    };
    check_kube(&declaration)?;
    Ok(declaration)
}

/// `#[versioned(skip)]`: a struct or enum of the module that is not versioned (an error type,
/// a helper); the attribute is removed.
fn skipped(attrs: &mut Vec<Attribute>) -> syn::Result<bool> {
    let mut skip = false;
    for attr in attrs.iter().filter(|a| actions::is_versioned(a)) {
        let mut others = false;
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
            } else {
                others = true;
                // Parsed (and checked) as an action later.
                if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                    let _ = meta.input.parse::<proc_macro2::TokenTree>()?;
                }
            }
            Ok(())
        })?;
        if skip && others {
            return Err(syn::Error::new_spanned(
                attr,
                "`skip` leaves the type out of the versions; it takes no other actions",
            ));
        }
    }
    if skip {
        attrs.retain(|a| !actions::is_versioned(a));
    }
    Ok(skip)
}

fn item_actions(
    attrs: &[Attribute],
    mut extra: Vec<Action>,
    mut extra_docs: crate::docs::RawDocs,
    versions: &Versions,
) -> syn::Result<(Vec<Action>, VersionDocs)> {
    let (mut parsed, mut docs) = actions::parse_attrs(attrs, Target::Item)?;
    parsed.append(&mut extra);
    docs.append(&mut extra_docs);
    actions::resolve(&mut parsed, versions)?;
    actions::check(&parsed, versions)?;
    Ok((parsed, VersionDocs::resolve(docs, versions)?))
}

fn without_versioned(attrs: Vec<Attribute>) -> Vec<Attribute> {
    attrs
        .into_iter()
        .filter(|a| !actions::is_versioned(a))
        .collect()
}

fn from_struct(
    item: ItemStruct,
    versions: &Versions,
    extra: Vec<Action>,
    extra_docs: crate::docs::RawDocs,
) -> syn::Result<VersionedItem> {
    let (actions, docs) = item_actions(&item.attrs, extra, extra_docs, versions)?;
    let style = match &item.fields {
        Fields::Named(_) => StructStyle::Named,
        Fields::Unnamed(_) => StructStyle::Tuple,
        Fields::Unit => StructStyle::Unit,
    };
    let mut fields = Vec::new();
    for (index, field) in item.fields.into_iter().enumerate() {
        if let Some((eq, _)) = &field.default {
            return Err(syn::Error::new(
                eq.span,
                "default field values are not supported in a versioned type",
            ));
        }
        fields.push(Member::new(
            field.ident,
            index,
            Some(field.ty),
            field.vis,
            field.attrs,
            Target::Field,
            versions,
        )?);
    }
    members::check_collisions(&fields, versions, "field")?;
    let attrs = without_versioned(item.attrs);
    let kube = kube_attr::parse(&attrs)?;
    let rename_all = crate::serde_names::rename_all(&attrs);
    Ok(VersionedItem {
        ident: item.ident,
        vis: item.vis,
        generics: item.generics,
        attrs,
        data: ItemData::Struct { fields, style },
        actions,
        kube,
        rename_all,
        docs,
    })
}

fn from_enum(
    item: ItemEnum,
    versions: &Versions,
    extra: Vec<Action>,
    extra_docs: crate::docs::RawDocs,
) -> syn::Result<VersionedItem> {
    let (actions, docs) = item_actions(&item.attrs, extra, extra_docs, versions)?;
    if let Some(attr) = item.attrs.iter().find(|a| a.path().is_ident("kube")) {
        return Err(syn::Error::new_spanned(
            attr,
            "#[kube] goes on the spec struct; an enum cannot derive CustomResource",
        ));
    }
    let mut variants = Vec::new();
    for (index, variant) in item.variants.into_iter().enumerate() {
        for field in variant.fields.iter() {
            actions::refuse_attrs(
                &field.attrs,
                "a field of a variant (version the variant, or move the payload into a versioned struct)",
            )?;
        }
        let mut member = Member::new(
            Some(variant.ident),
            index,
            None,
            Visibility::Inherited,
            variant.attrs,
            Target::Variant,
            versions,
        )?;
        member.payload = variant.fields;
        member.discriminant = variant.discriminant.map(|(_, expr)| expr);
        variants.push(member);
    }
    members::check_collisions(&variants, versions, "variant")?;
    let rename_all = crate::serde_names::rename_all(&item.attrs);
    Ok(VersionedItem {
        ident: item.ident,
        vis: item.vis,
        generics: item.generics,
        attrs: without_versioned(item.attrs),
        data: ItemData::Enum { variants },
        actions,
        kube: None,
        rename_all,
        docs,
    })
}

/// One `#[kube]` type at most; it exists in every version and is not generic; the CRD needs a
/// storage version.
fn check_kube(declaration: &Declaration) -> syn::Result<()> {
    let mut kube_items = declaration.items.iter().filter(|i| i.kube.is_some());
    let Some(item) = kube_items.next() else {
        return Ok(());
    };
    if let Some(second) = kube_items.next() {
        return Err(syn::Error::new(
            second.ident.span(),
            format!(
                "a second #[kube] type `{}`; one declaration holds the versions of one kind (`{}`)",
                second.ident, item.ident
            ),
        ));
    }
    if let Some(action) = item
        .actions
        .iter()
        .find(|a| matches!(a.kind, ActionKind::Added(_) | ActionKind::Removed(_)))
    {
        return Err(syn::Error::new(
            action.keyword.span(),
            "the #[kube] type exists in every version of the kind",
        ));
    }
    declaration.versions.storage()?;
    Ok(())
}
