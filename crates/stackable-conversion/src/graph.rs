//! The versions of one custom resource kind and the typed conversions between them.
//!
//! A [`KindConverter`] is built once, at startup, from the Rust types of each version (the
//! `#[derive(CustomResource)]` structs) and the conversions between them (`From`/`TryFrom`).
//! Either every version converts to and from one *hub* version, or versions form a chain (or any
//! connected graph) of adjacent steps. [`KindConverterBuilder::build`] refuses a set of versions
//! that are not all connected, two hubs, or a step that bypasses the hub, so a mistake is a startup
//! error rather than a failed read in production.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt,
};

use kube::core::Resource;
use serde::{Serialize, de::DeserializeOwned};
use snafu::Snafu;

use crate::{
    fingerprint::Fingerprint,
    json_ser::Layout,
    step::{Edge, typed_round_trip, typed_step},
};

/// A boxed error, what a user's `TryFrom` error is turned into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The default prefix of the annotation that stashes fields an older version cannot hold:
/// the stash of version `v1` lives under `conversion.stackable.tech/stash.v1`.
pub const DEFAULT_STASH_ANNOTATION_PREFIX: &str = "conversion.stackable.tech/stash.";

/// Why one typed conversion step (one hop between two adjacent versions) failed.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum StepError {
    /// The JSON object could not be read as the Rust type of its version.
    #[snafu(display("the object is not a valid {api_version}: {source}"))]
    Deserialize {
        /// The version the object claimed to be.
        api_version: String,
        /// What serde said.
        source: serde_json::Error,
    },

    /// The user's conversion returned an error.
    #[snafu(display("step {from} -> {to}: {}", crate::error_chain(source.as_ref())))]
    Convert {
        /// Source version.
        from: String,
        /// Target version.
        to: String,
        /// The user's error.
        source: BoxError,
    },

    /// The converted Rust value could not be written as JSON.
    #[snafu(display("the converted {api_version} object could not be serialised: {source}"))]
    Serialize {
        /// The version that was produced.
        api_version: String,
        /// What serde said.
        source: serde_json::Error,
    },

    /// A stash annotation written by an earlier conversion is not valid.
    #[snafu(display("the annotation {key:?} does not hold a valid stash: {source}"))]
    InvalidStash {
        /// The annotation key.
        key: String,
        /// What serde said.
        source: serde_json::Error,
    },
}

/// Why a [`KindConverter`] could not be built. Every variant is a programming error in the
/// operator, reported at startup.
#[derive(Debug, Snafu, PartialEq, Eq)]
pub enum BuildError {
    /// No version was declared at all.
    #[snafu(display("no version declared"))]
    NoVersions,

    /// Two declared types belong to different API groups.
    #[snafu(display(
        "version {api_version} is in group {found:?}, but the first version declared is in group {expected:?}"
    ))]
    MismatchedGroup {
        /// The offending version.
        api_version: String,
        /// The group of the first version.
        expected: String,
        /// Its group.
        found: String,
    },

    /// Two declared types have different kinds.
    #[snafu(display(
        "version {api_version} has kind {found:?}, but the first version declared has kind {expected:?}"
    ))]
    MismatchedKind {
        /// The offending version.
        api_version: String,
        /// The kind of the first version.
        expected: String,
        /// Its kind.
        found: String,
    },

    /// Two hubs were declared.
    #[snafu(display("two hubs declared: {first} and {second}; a kind has at most one hub"))]
    TwoHubs {
        /// The first hub.
        first: String,
        /// The second hub.
        second: String,
    },

    /// The same step was registered twice.
    #[snafu(display("the step between {a} and {b} is registered twice"))]
    DuplicateStep {
        /// One end.
        a: String,
        /// The other end.
        b: String,
    },

    /// A step converts a version into itself.
    #[snafu(display("a step from {version} to itself makes no sense"))]
    SelfStep {
        /// The version.
        version: String,
    },

    /// With a hub, a spoke has no step to and from the hub.
    #[snafu(display("{spoke} has no conversion to and from the hub {hub}"))]
    MissingStep {
        /// The spoke version without a step.
        spoke: String,
        /// The hub.
        hub: String,
    },

    /// With a hub, a step between two spokes was registered.
    #[snafu(display(
        "the step between {a} and {b} bypasses the hub {hub}; with a hub every step has the hub at one end"
    ))]
    StepBypassesHub {
        /// One end.
        a: String,
        /// The other end.
        b: String,
        /// The hub.
        hub: String,
    },

    /// Without a hub, the steps leave two versions unconnected.
    #[snafu(display("no chain of steps leads from {from} to {to}"))]
    NoPath {
        /// One version.
        from: String,
        /// A version it cannot reach.
        to: String,
    },

    /// The stash annotation prefix is not of the form `<dns-subdomain>/<name-start>`.
    #[snafu(display(
        "the stash annotation prefix {prefix:?} does not form valid annotation keys (e.g. {example:?})"
    ))]
    InvalidStashPrefix {
        /// The prefix given.
        prefix: String,
        /// A key it would produce.
        example: String,
    },
}

/// The identity of a version: its group, version and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VersionId {
    group: String,
    version: String,
    kind: String,
}

impl VersionId {
    fn of<K: Resource<DynamicType = ()>>() -> Self {
        Self {
            group: K::group(&()).into_owned(),
            version: K::version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
        }
    }

    fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }
}

pub(crate) fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// Builds a [`KindConverter`]; see [`KindConverter::builder`].
#[must_use]
pub struct KindConverterBuilder {
    versions: Vec<VersionId>,
    hubs: Vec<String>,
    steps: Vec<(String, String, Edge, Edge)>,
    stash_prefix: String,
}

impl fmt::Debug for KindConverterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindConverterBuilder")
            .field("versions", &self.versions)
            .field("hubs", &self.hubs)
            .field(
                "steps",
                &self
                    .steps
                    .iter()
                    .map(|(a, b, _, _)| (a, b))
                    .collect::<Vec<_>>(),
            )
            .field("stash_prefix", &self.stash_prefix)
            .finish()
    }
}

impl KindConverterBuilder {
    fn declare(&mut self, id: VersionId) -> String {
        let version = id.version.clone();
        if !self.versions.contains(&id) {
            self.versions.push(id);
        }
        version
    }

    /// Declares a served version that takes part in conversion. Versions named by
    /// [`hub`](Self::hub) and [`step`](Self::step) are declared implicitly; declaring one
    /// explicitly that no step reaches makes [`build`](Self::build) fail.
    pub fn version<K: Resource<DynamicType = ()>>(mut self) -> Self {
        self.declare(VersionId::of::<K>());
        self
    }

    /// Declares `H` as the hub: every other version must then have a [`step`](Self::step) to and
    /// from `H`, and conversions between two spokes go through it.
    pub fn hub<H: Resource<DynamicType = ()>>(mut self) -> Self {
        let version = self.declare(VersionId::of::<H>());
        if !self.hubs.contains(&version) {
            self.hubs.push(version);
        }
        self
    }

    /// Registers the conversions between two versions, in both directions: `B: TryFrom<A>` and
    /// `A: TryFrom<B>` (a `From` impl gives `TryFrom` for free). The conversions get and return
    /// the whole object (metadata, spec and status).
    pub fn step<A, B>(mut self) -> Self
    where
        A: Resource<DynamicType = ()> + Serialize + DeserializeOwned + TryFrom<B> + 'static,
        B: Resource<DynamicType = ()> + Serialize + DeserializeOwned + TryFrom<A> + 'static,
        <A as TryFrom<B>>::Error: Into<BoxError>,
        <B as TryFrom<A>>::Error: Into<BoxError>,
    {
        let a = self.declare(VersionId::of::<A>());
        let b = self.declare(VersionId::of::<B>());
        let there = Edge {
            step: typed_step::<A, B>(),
            round_trip: typed_round_trip::<A, B>(),
        };
        let back = Edge {
            step: typed_step::<B, A>(),
            round_trip: typed_round_trip::<B, A>(),
        };
        self.steps.push((a, b, there, back));
        self
    }

    /// Sets the prefix of the annotation keys that stash fields a version cannot hold
    /// (default [`DEFAULT_STASH_ANNOTATION_PREFIX`]); the version name is appended to it.
    pub fn stash_annotation_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stash_prefix = prefix.into();
        self
    }

    /// Checks the versions and steps, and computes the path between every two versions.
    pub fn build(self) -> Result<KindConverter, BuildError> {
        let Some(first) = self.versions.first().cloned() else {
            return NoVersionsSnafu.fail();
        };
        for id in &self.versions {
            if id.group != first.group {
                return MismatchedGroupSnafu {
                    api_version: id.api_version(),
                    expected: first.group.clone(),
                    found: id.group.clone(),
                }
                .fail();
            }
            if id.kind != first.kind {
                return MismatchedKindSnafu {
                    api_version: id.api_version(),
                    expected: first.kind.clone(),
                    found: id.kind.clone(),
                }
                .fail();
            }
        }
        let av = |v: &str| api_version(&first.group, v);
        if let [first_hub, second_hub, ..] = self.hubs.as_slice() {
            return TwoHubsSnafu {
                first: av(first_hub),
                second: av(second_hub),
            }
            .fail();
        }
        for version in self.versions.iter().map(|id| &id.version) {
            let example = format!("{}{version}", self.stash_prefix);
            if !crate::names::is_qualified_name(&example) {
                return InvalidStashPrefixSnafu {
                    prefix: self.stash_prefix.clone(),
                    example,
                }
                .fail();
            }
        }

        let mut edges: BTreeMap<(String, String), Edge> = BTreeMap::new();
        for (a, b, forward, backward) in self.steps {
            if a == b {
                return SelfStepSnafu { version: av(&a) }.fail();
            }
            if edges.contains_key(&(a.clone(), b.clone())) {
                return DuplicateStepSnafu {
                    a: av(&a),
                    b: av(&b),
                }
                .fail();
            }
            edges.insert((a.clone(), b.clone()), forward);
            edges.insert((b, a), backward);
        }

        let versions: Vec<String> = self.versions.iter().map(|id| id.version.clone()).collect();
        let hub = self.hubs.into_iter().next();
        if let Some(hub) = &hub {
            for (a, b) in edges.keys() {
                if a != hub && b != hub {
                    return StepBypassesHubSnafu {
                        a: av(a),
                        b: av(b),
                        hub: av(hub),
                    }
                    .fail();
                }
            }
            for spoke in versions.iter().filter(|v| *v != hub) {
                if !edges.contains_key(&(spoke.clone(), hub.clone())) {
                    return MissingStepSnafu {
                        spoke: av(spoke),
                        hub: av(hub),
                    }
                    .fail();
                }
            }
        }

        let mut paths = BTreeMap::new();
        for from in &versions {
            let reached = shortest_paths(from, &edges);
            for to in &versions {
                if from == to {
                    continue;
                }
                match reached.get(to) {
                    Some(path) => {
                        paths.insert((from.clone(), to.clone()), path.clone());
                    }
                    None => {
                        return NoPathSnafu {
                            from: av(from),
                            to: av(to),
                        }
                        .fail();
                    }
                }
            }
        }

        let stash_keys = versions
            .iter()
            .map(|v| (v.clone(), format!("{}{v}", self.stash_prefix)))
            .collect();
        Ok(KindConverter {
            group: first.group,
            kind: first.kind,
            versions,
            hub,
            edges,
            paths,
            stash_keys,
            stash_prefix: self.stash_prefix,
        })
    }
}

/// Breadth-first search: the shortest path (as the list of versions after `from`) to every
/// version reachable from `from`. Ties are broken by version name, so paths are deterministic.
fn shortest_paths(
    from: &str,
    edges: &BTreeMap<(String, String), Edge>,
) -> BTreeMap<String, Vec<String>> {
    let mut reached: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::from([from.to_owned()]);
    let mut queue = VecDeque::from([(from.to_owned(), Vec::new())]);
    while let Some((at, path)) = queue.pop_front() {
        for (_, next) in edges.keys().filter(|(a, _)| *a == at) {
            if seen.insert(next.clone()) {
                let mut next_path: Vec<String> = path.clone();
                next_path.push(next.clone());
                reached.insert(next.clone(), next_path.clone());
                queue.push_back((next.clone(), next_path));
            }
        }
    }
    reached
}

/// The versions of one kind and the conversions between them; built by
/// [`KindConverter::builder`], used by [`ConversionRouter`](crate::ConversionRouter).
#[derive(Clone)]
pub struct KindConverter {
    group: String,
    kind: String,
    versions: Vec<String>,
    hub: Option<String>,
    edges: BTreeMap<(String, String), Edge>,
    paths: BTreeMap<(String, String), Vec<String>>,
    stash_prefix: String,
    /// The stash annotation key of each version.
    stash_keys: BTreeMap<String, String>,
}

impl fmt::Debug for KindConverter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindConverter")
            .field("group", &self.group)
            .field("kind", &self.kind)
            .field("versions", &self.versions)
            .field("hub", &self.hub)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl KindConverter {
    /// Starts a builder: declare a hub with [`hub`](KindConverterBuilder::hub) (optional), the
    /// steps with [`step`](KindConverterBuilder::step), then [`build`](KindConverterBuilder::build).
    /// See the [crate docs](crate) for a complete example.
    pub fn builder() -> KindConverterBuilder {
        KindConverterBuilder {
            versions: Vec::new(),
            hubs: Vec::new(),
            steps: Vec::new(),
            stash_prefix: DEFAULT_STASH_ANNOTATION_PREFIX.to_owned(),
        }
    }

    /// The API group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The versions (e.g. `v1beta1`), in the order they were declared.
    pub fn versions(&self) -> &[String] {
        &self.versions
    }

    /// The hub version, if one was declared.
    pub fn hub(&self) -> Option<&str> {
        self.hub.as_deref()
    }

    /// The versions a conversion from `from` to `to` passes through (excluding `from`, including
    /// `to`); `None` if either is not a version of this kind. Empty when `from == to`.
    pub fn path(&self, from: &str, to: &str) -> Option<&[String]> {
        if from == to {
            return self.versions.iter().any(|v| v == from).then_some(&[]);
        }
        // A few entries: a scan compares borrowed strings, a map lookup would allocate the key.
        self.paths
            .iter()
            .find(|((f, t), _)| f == from && t == to)
            .map(|(_, path)| path.as_slice())
    }

    /// The annotation key that stashes the fields of `version` that another version cannot hold.
    pub fn stash_annotation_key(&self, version: &str) -> String {
        format!("{}{version}", self.stash_prefix)
    }

    /// The step from `from` to the adjacent `to`.
    fn edge(&self, from: &str, to: &str) -> Option<&Edge> {
        self.edges
            .iter()
            .find(|((f, t), _)| f == from && t == to)
            .map(|(_, edge)| edge)
    }

    /// The prefix of the stash annotation keys.
    pub(crate) fn stash_prefix(&self) -> &str {
        &self.stash_prefix
    }

    /// [`stash_annotation_key`](Self::stash_annotation_key), computed once per version.
    pub(crate) fn stash_key(&self, version: &str) -> &str {
        self.stash_keys.get(version).map_or("", String::as_str)
    }

    /// Converts along `path` (the converted text into `converted`) and back along `back_path`:
    /// the fingerprint of the body the round trip gives (`None` when the way back fails). A
    /// single step does both from the typed result and notes in `layout` where the members of
    /// the converted object are; longer paths go through JSON text (and leave the layout
    /// empty).
    pub(crate) fn round_trip(
        &self,
        from: &str,
        path: &[String],
        back_path: &[String],
        object: &str,
        converted: &mut Vec<u8>,
        layout: &mut Layout,
    ) -> Result<Option<Fingerprint>, StepError> {
        if let [to] = path
            && let Some(edge) = self.edge(from, to)
        {
            return (edge.round_trip)(object, converted, layout);
        }
        layout.invalidate();
        *converted = self.run(from, path, object.as_bytes())?;
        let to = path.last().map_or(from, String::as_str);
        let back = self
            .run(to, back_path, converted)
            .ok()
            .and_then(|text| crate::fingerprint::of_body(&text));
        Ok(back)
    }

    /// Runs the typed steps along `path` (JSON text in, JSON text out), starting at version
    /// `from`.
    pub(crate) fn run(
        &self,
        from: &str,
        path: &[String],
        object: &[u8],
    ) -> Result<Vec<u8>, StepError> {
        let mut at = from;
        let mut text: Option<Vec<u8>> = None;
        for next in path {
            let Some(edge) = self.edge(at, next) else {
                // Paths are computed from the edges at build time, so this cannot happen.
                unreachable!("path {at} -> {next} without a step")
            };
            text = Some((edge.step)(text.as_deref().unwrap_or(object))?);
            at = next;
        }
        Ok(text.unwrap_or_else(|| object.to_vec()))
    }
}
