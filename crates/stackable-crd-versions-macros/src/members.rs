//! Fields and variants, and what each looks like in each version.
//!
//! A member is declared as it is in the newest version that has it; its actions walk back from
//! there. [`Member::exists`], [`Member::name_at`] and [`Member::type_at`] answer for one version.

use std::collections::BTreeMap;

use syn::{Attribute, Expr, Fields, Ident, LitStr, Type, Visibility};

use crate::{
    actions::{self, Action, ActionKind, Changed, Fill, Target},
    docs::VersionDocs,
    versions::Versions,
};

/// A struct field or an enum variant.
pub(crate) struct Member {
    /// The name in the newest version that has it (`None` for a tuple field).
    pub(crate) ident: Option<Ident>,
    /// Its position (tuple fields are addressed by it).
    pub(crate) index: usize,
    /// A field's type in that version (`None` for a variant).
    pub(crate) ty: Option<Type>,
    /// A field's visibility.
    pub(crate) vis: Visibility,
    /// Attributes other than `#[versioned]`.
    pub(crate) attrs: Vec<Attribute>,
    /// A variant's payload (`Fields::Unit` for fields).
    pub(crate) payload: Fields,
    /// A variant's discriminant.
    pub(crate) discriminant: Option<Expr>,
    /// The actions, oldest version first.
    pub(crate) actions: Vec<Action>,
    /// `#[serde(rename = "…")]`, if any.
    pub(crate) serde_rename: Option<String>,
    /// Doc comments of some versions only.
    pub(crate) docs: VersionDocs,
}

impl Member {
    /// A member from its parts; parses and checks its actions.
    pub(crate) fn new(
        ident: Option<Ident>,
        index: usize,
        ty: Option<Type>,
        vis: Visibility,
        attrs: Vec<Attribute>,
        target: Target,
        versions: &Versions,
    ) -> syn::Result<Self> {
        let (mut parsed, docs) = actions::parse_attrs(&attrs, target)?;
        let docs = VersionDocs::resolve(docs, versions)?;
        if ident.is_none() && !parsed.is_empty() {
            return Err(syn::Error::new(
                actions::attrs_span(&attrs),
                "a tuple field takes no actions: name the fields to version them",
            ));
        }
        actions::resolve(&mut parsed, versions)?;
        actions::check(&parsed, versions)?;
        let serde_rename = crate::serde_names::rename(&attrs);
        Ok(Self {
            ident,
            index,
            ty,
            vis,
            attrs: attrs
                .into_iter()
                .filter(|a| !actions::is_versioned(a))
                .collect(),
            payload: Fields::Unit,
            discriminant: None,
            actions: parsed,
            serde_rename,
            docs,
        })
    }

    /// Does it exist in version `v`?
    pub(crate) fn exists(&self, v: usize) -> bool {
        self.actions.iter().all(|a| match a.kind {
            ActionKind::Added(_) => v >= a.version,
            ActionKind::Removed(_) => v < a.version,
            _ => true,
        })
    }

    /// The action in version `v`, if any.
    pub(crate) fn action_at(&self, v: usize) -> Option<&Action> {
        self.actions.iter().find(|a| a.version == v)
    }

    /// Its name in version `v` (with the span of where that name is written).
    pub(crate) fn name_at(&self, v: usize) -> Option<Ident> {
        let mut name = self.ident.clone()?;
        for action in self.actions.iter().rev().filter(|a| a.version > v) {
            match &action.kind {
                ActionKind::Renamed { from } => name = from.clone(),
                ActionKind::Changed(changed) => {
                    if let Some(from) = &changed.from_name {
                        name = from.clone();
                    }
                }
                _ => {}
            }
        }
        Some(name)
    }

    /// A field's type in version `v`.
    pub(crate) fn type_at(&self, v: usize) -> Option<Type> {
        let mut ty = self.ty.clone()?;
        for action in self.actions.iter().rev().filter(|a| a.version > v) {
            if let ActionKind::Changed(changed) = &action.kind
                && let Some(from) = &changed.from_type
            {
                ty = from.clone();
            }
        }
        Some(ty)
    }

    /// `Some(note)` if deprecated in version `v`: the version it was deprecated in and the note.
    pub(crate) fn deprecated_at(&self, v: usize) -> Option<(usize, Option<&LitStr>)> {
        self.actions.iter().find_map(|a| match &a.kind {
            ActionKind::Deprecated { note } if v >= a.version => Some((a.version, note.as_ref())),
            _ => None,
        })
    }

    /// How the value comes to be when converting *into* version `v` from the other side of a
    /// step where the member does not exist: the fill of `added` (upgrade) or `removed`
    /// (downgrade) at `since`.
    pub(crate) fn fill(&self, since: usize) -> Option<&Fill> {
        self.action_at(since).and_then(|a| match &a.kind {
            ActionKind::Added(fill) | ActionKind::Removed(fill) => Some(fill),
            _ => None,
        })
    }

    /// The `changed` action at `since`, if it converts values with functions.
    pub(crate) fn changed_with_functions(&self, since: usize) -> Option<&Changed> {
        self.action_at(since).and_then(|a| match &a.kind {
            ActionKind::Changed(changed) if changed.upgrade.is_some() => Some(changed.as_ref()),
            _ => None,
        })
    }
}

/// Fails if two members that exist in the same version have the same name there. The error
/// points at the name that an action introduced (`from = …`), where there is one.
pub(crate) fn check_collisions(
    members: &[Member],
    versions: &Versions,
    what: &str,
) -> syn::Result<()> {
    for v in 0..versions.len() {
        let mut seen: BTreeMap<String, (usize, Ident)> = BTreeMap::new();
        for (i, member) in members.iter().enumerate() {
            if !member.exists(v) {
                continue;
            }
            let Some(name) = member.name_at(v) else {
                continue;
            };
            if let Some((other, other_name)) = seen.get(&name.to_string()) {
                let from_action = |m: &Member, n: &Ident| m.ident.as_ref() != Some(n);
                let culprit = if from_action(member, &name) {
                    &name
                } else if from_action(&members[*other], other_name) {
                    other_name
                } else {
                    &name
                };
                let others = [&members[*other], member].map(|m| {
                    m.ident
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                });
                return Err(syn::Error::new(
                    culprit.span(),
                    format!(
                        "the name `{name}` collides in version `{}`: {what}s `{}` and `{}` are both called `{name}` there",
                        versions.list[v].name(),
                        others[0],
                        others[1],
                    ),
                ));
            }
            seen.insert(name.to_string(), (i, name));
        }
    }
    Ok(())
}
