//! Which generated conversions can fail, so that they are `From` where they cannot and
//! `TryFrom` (with `ConversionError`) where they can.
//!
//! A conversion step of a type can fail when one of its members uses a `try_…` function, when
//! an enum value has no counterpart in the target version (no `downgrade_to`/`upgrade_to`), when
//! it is written by hand (its error type is unknown), or when a member's type holds a versioned
//! type whose step can fail. The last rule makes this a fixed point over the declaration.

use std::collections::BTreeMap;

use syn::Ident;

use crate::{
    actions::Fill,
    declaration::{Declaration, ItemData, VersionedItem},
    members::Member,
    type_map::{self, Lookup, Step},
};

/// The direction of a step between two adjacent versions.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Dir {
    /// From the older version to the newer.
    Up,
    /// From the newer version to the older.
    Down,
}

impl Dir {
    /// (source, target) version positions of the step that introduces version `since`.
    pub(crate) fn ends(self, since: usize) -> (usize, usize) {
        match self {
            Dir::Up => (since - 1, since),
            Dir::Down => (since, since - 1),
        }
    }
}

/// Whether each (type, step, direction) can fail.
pub(crate) struct Fallibility {
    map: BTreeMap<(usize, usize, Dir), bool>,
}

impl Fallibility {
    /// Whether item `item` can fail converting across the step to `since` in `dir`.
    pub(crate) fn get(&self, item: usize, since: usize, dir: Dir) -> bool {
        self.map.get(&(item, since, dir)).copied().unwrap_or(false)
    }

    /// What `ident` means for the step to `since` in `dir`.
    pub(crate) fn lookup(
        &self,
        declaration: &Declaration,
        ident: &Ident,
        since: usize,
        dir: Dir,
    ) -> Lookup {
        match declaration.items.iter().position(|i| i.ident == *ident) {
            None => Lookup::NotVersioned,
            Some(index) => {
                let item = &declaration.items[index];
                if item.exists(since - 1) && item.exists(since) {
                    Lookup::Convert {
                        fallible: self.get(index, since, dir),
                    }
                } else {
                    Lookup::Missing
                }
            }
        }
    }
}

fn func_fallible(member: &Member, since: usize, dir: Dir) -> bool {
    member.changed_with_functions(since).is_some_and(|changed| {
        let func = match dir {
            Dir::Up => &changed.upgrade,
            Dir::Down => &changed.downgrade,
        };
        func.as_ref().is_some_and(|f| f.fallible)
    })
}

fn step_fallible(item: &VersionedItem, since: usize, dir: Dir, step: &Step<'_>) -> bool {
    if item.by_hand(since) {
        return true;
    }
    let (source, target) = dir.ends(since);
    let fields_fallible = |fields: &[Member]| {
        fields
            .iter()
            .any(|field| match (field.exists(source), field.exists(target)) {
                (true, true) => {
                    func_fallible(field, since, dir)
                        || (field.changed_with_functions(since).is_none()
                            && field
                                .type_at(source)
                                .is_some_and(|ty| type_map::is_fallible(&ty, step)))
                }
                (false, true) => matches!(
                    field.fill(since),
                    Some(Fill::Compute(func)) if func.fallible
                ),
                _ => false,
            })
    };
    match &item.data {
        ItemData::Struct { fields, .. } => fields_fallible(fields),
        ItemData::Enum { variants } => {
            variants.iter().any(
                |variant| match (variant.exists(source), variant.exists(target)) {
                    (true, true) => variant
                        .payload
                        .iter()
                        .any(|f| type_map::is_fallible(&f.ty, step)),
                    (true, false) => matches!(variant.fill(since), Some(Fill::Fail) | None),
                    _ => false,
                },
            )
        }
    }
}

/// Computes the fixed point for the whole declaration.
pub(crate) fn compute(declaration: &Declaration) -> Fallibility {
    let mut fallibility = Fallibility {
        map: BTreeMap::new(),
    };
    let versions = &declaration.versions.list;
    loop {
        let mut changed = false;
        for (index, item) in declaration.items.iter().enumerate() {
            for since in 1..versions.len() {
                if !(item.exists(since - 1) && item.exists(since)) {
                    continue;
                }
                for dir in [Dir::Up, Dir::Down] {
                    if fallibility.get(index, since, dir) {
                        continue;
                    }
                    let (source, target) = dir.ends(since);
                    let lookup = |ident: &Ident| fallibility.lookup(declaration, ident, since, dir);
                    let step = Step {
                        from: &versions[source].ident,
                        to: &versions[target].ident,
                        lookup: &lookup,
                    };
                    if step_fallible(item, since, dir, &step) {
                        fallibility.map.insert((index, since, dir), true);
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            return fallibility;
        }
    }
}
