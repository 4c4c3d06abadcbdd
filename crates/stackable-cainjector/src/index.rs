//! The reference index: which targets read which Secret or Certificate.
//!
//! The standalone injector reacts to a Secret change by looking up the targets that
//! reference it here, instead of scanning every annotated object, so a change propagates in
//! one GET and one apply per referencing target.

use std::collections::{BTreeSet, HashMap};

use stackable_cainject::Target;

use crate::annotations::ObjectKey;

/// What a target's bundle is read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    /// A Secret, by namespace and name.
    Secret(ObjectKey),
    /// A cert-manager Certificate, by namespace and name.
    Certificate(ObjectKey),
}

/// Target -> references and reference -> targets, kept consistent.
#[derive(Debug, Default)]
pub struct ReferenceIndex {
    by_target: HashMap<Target, BTreeSet<Reference>>,
    by_reference: HashMap<Reference, BTreeSet<TargetKey>>,
    targets: HashMap<TargetKey, Target>,
}

/// A sortable identity of a target.
type TargetKey = (stackable_cainject::TargetKind, Option<String>, String);

fn key_of(target: &Target) -> TargetKey {
    (
        target.kind(),
        target.namespace().map(str::to_owned),
        target.name().to_owned(),
    )
}

impl ReferenceIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `target` now reads exactly `references` (replacing what it read before).
    pub fn set(&mut self, target: &Target, references: impl IntoIterator<Item = Reference>) {
        self.remove(target);
        let references: BTreeSet<Reference> = references.into_iter().collect();
        if references.is_empty() {
            return;
        }
        let key = key_of(target);
        for reference in &references {
            self.by_reference
                .entry(reference.clone())
                .or_default()
                .insert(key.clone());
        }
        self.targets.insert(key, target.clone());
        self.by_target.insert(target.clone(), references);
    }

    /// Forgets `target` (deleted, or no longer annotated).
    pub fn remove(&mut self, target: &Target) {
        let Some(old) = self.by_target.remove(target) else {
            return;
        };
        let key = key_of(target);
        for reference in old {
            if let Some(set) = self.by_reference.get_mut(&reference) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_reference.remove(&reference);
                }
            }
        }
        self.targets.remove(&key);
    }

    /// The targets that read `reference`, in a stable order.
    pub fn targets_of(&self, reference: &Reference) -> Vec<Target> {
        self.by_reference
            .get(reference)
            .into_iter()
            .flatten()
            .filter_map(|key| self.targets.get(key).cloned())
            .collect()
    }

    /// Whether any target reads `reference`.
    pub fn is_referenced(&self, reference: &Reference) -> bool {
        self.by_reference.contains_key(reference)
    }

    /// The references `target` reads.
    pub fn references_of(&self, target: &Target) -> Vec<Reference> {
        self.by_target
            .get(target)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of indexed targets.
    pub fn len(&self) -> usize {
        self.by_target.len()
    }

    /// Whether no target is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_target.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(ns: &str, name: &str) -> Reference {
        Reference::Secret(ObjectKey::new(ns, name))
    }

    #[test]
    fn set_replace_remove() {
        let mut index = ReferenceIndex::new();
        let crd = Target::crd("a.x.io");
        let hook = Target::validating_webhook("hooks");
        index.set(&crd, [secret("ns", "s1")]);
        index.set(&hook, [secret("ns", "s1")]);
        assert_eq!(
            index.targets_of(&secret("ns", "s1")),
            vec![crd.clone(), hook.clone()]
        );

        // The CRD switches to another Secret: s1 keeps only the webhook.
        index.set(
            &crd,
            [
                secret("ns", "s2"),
                Reference::Certificate(ObjectKey::new("ns", "c")),
            ],
        );
        assert_eq!(index.targets_of(&secret("ns", "s1")), vec![hook.clone()]);
        assert_eq!(index.targets_of(&secret("ns", "s2")), vec![crd.clone()]);
        assert_eq!(index.references_of(&crd).len(), 2);

        index.remove(&hook);
        assert!(!index.is_referenced(&secret("ns", "s1")));
        assert!(index.targets_of(&secret("ns", "s1")).is_empty());
        index.set(&crd, []);
        assert!(index.is_empty());
        assert!(!index.is_referenced(&secret("ns", "s2")));
    }

    #[test]
    fn namespaces_are_distinct() {
        let mut index = ReferenceIndex::new();
        let cm = Target::config_map("a", "trust");
        index.set(&cm, [secret("a", "s")]);
        assert!(index.targets_of(&secret("b", "s")).is_empty());
        assert_eq!(index.len(), 1);
    }
}
