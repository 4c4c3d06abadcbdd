//! Storage-version migration (feature `migrate`): before a version can be dropped from a CRD,
//! every object must be stored in the current storage version and `status.storedVersions`
//! pruned to it
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#upgrade-existing-objects-to-a-new-stored-version>).
//!
//! [`Migration::migrate`] rewrites every object with a no-op update: the API server decodes it
//! (converting it from the version it was stored in) and stores it again, encoded in the storage
//! version. Paged (`limit`/`continue`), rate-limited, conflict-safe (a 409 re-reads and
//! retries, a 404 skips: the object was deleted), and idempotent, so a run killed half-way is
//! simply run again. Only a run that went through every page records, in the CRD's annotation
//! [`MIGRATED_ANNOTATION`], that the storage version is complete; [`Migration::prune`] refuses to
//! touch `storedVersions` without that record (for the storage version of now), so it can never
//! prune a version that objects are still stored in.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::json;
use snafu::{OptionExt as _, ResultExt as _, Snafu};

/// The CRD annotation recording the storage version every object was last migrated to.
pub const MIGRATED_ANNOTATION: &str = "conversion.stackable.tech/storage-migrated-to";

/// Why a migration or a prune failed.
#[derive(Debug, Snafu)]
pub enum MigrateError {
    /// The CRD could not be read.
    #[snafu(display("cannot read CRD {crd}"))]
    ReadCrd {
        /// The CRD.
        crd: String,
        /// The cause.
        source: kube::Error,
    },
    /// The CRD has no storage version.
    #[snafu(display("CRD {crd} has no storage version"))]
    NoStorageVersion {
        /// The CRD.
        crd: String,
    },
    /// Listing the objects failed.
    #[snafu(display("cannot list the objects of CRD {crd}"))]
    List {
        /// The CRD.
        crd: String,
        /// The cause.
        source: kube::Error,
    },
    /// Rewriting one object failed (after the retries of conflicts).
    #[snafu(display("cannot rewrite {crd} object {namespace}/{name}"))]
    Rewrite {
        /// The CRD.
        crd: String,
        /// The object's namespace (empty when cluster-scoped).
        namespace: String,
        /// The object's name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Writing the CRD (annotation or status) failed.
    #[snafu(display("cannot update CRD {crd}"))]
    UpdateCrd {
        /// The CRD.
        crd: String,
        /// The cause.
        source: kube::Error,
    },
    /// The storage version changed while the migration ran; nothing was recorded.
    #[snafu(display(
        "the storage version of CRD {crd} changed from {was} to {now} while the migration ran; run it again"
    ))]
    StorageChanged {
        /// The CRD.
        crd: String,
        /// The storage version when the run started.
        was: String,
        /// The storage version now.
        now: String,
    },
    /// Pruning was refused: no complete migration to the storage version is recorded.
    #[snafu(display(
        "refusing to prune status.storedVersions of CRD {crd} to [{storage}]: no complete migration to {storage} is recorded (annotation {MIGRATED_ANNOTATION} is {recorded:?}); run the migration first"
    ))]
    NotMigrated {
        /// The CRD.
        crd: String,
        /// The storage version.
        storage: String,
        /// What the annotation holds.
        recorded: Option<String>,
    },
}

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    /// The storage version the objects are now stored in.
    pub storage_version: String,
    /// Objects rewritten.
    pub objects: usize,
    /// Conflicts retried.
    pub conflicts: usize,
    /// Objects deleted while the migration ran (skipped).
    pub gone: usize,
    /// How long it took.
    pub took: Duration,
}

/// Migrates the objects of one CRD to its storage version, then prunes `storedVersions`.
#[derive(Clone)]
pub struct Migration {
    client: Client,
    crd: String,
    page_size: u32,
    max_per_second: Option<u32>,
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("crd", &self.crd)
            .field("page_size", &self.page_size)
            .field("max_per_second", &self.max_per_second)
            .finish_non_exhaustive()
    }
}

/// How many times a conflicting rewrite of one object is retried.
const CONFLICT_RETRIES: usize = 5;

impl Migration {
    /// A migration of the objects of CRD `crd` (e.g. `crontabs.example.com`): pages of 100, at
    /// most 50 rewrites a second.
    pub fn new(client: Client, crd: impl Into<String>) -> Self {
        Migration {
            client,
            crd: crd.into(),
            page_size: 100,
            max_per_second: Some(50),
        }
    }

    /// Objects listed per page.
    #[must_use]
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Rewrites per second at most (`None`: as fast as the API server answers).
    #[must_use]
    pub fn max_per_second(mut self, rate: Option<u32>) -> Self {
        self.max_per_second = rate.filter(|r| *r > 0);
        self
    }

    async fn read_crd(
        &self,
    ) -> Result<(CustomResourceDefinition, ApiResource, String), MigrateError> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let crd = crds
            .get(&self.crd)
            .await
            .context(ReadCrdSnafu { crd: &self.crd })?;
        let storage = crd
            .spec
            .versions
            .iter()
            .find(|v| v.storage)
            .map(|v| v.name.clone())
            .context(NoStorageVersionSnafu { crd: &self.crd })?;
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&crd.spec.group, &storage, &crd.spec.names.kind),
            &crd.spec.names.plural,
        );
        Ok((crd, resource, storage))
    }

    /// Rewrites every object so that it is stored in the storage version, page by page;
    /// `progress` is called after each page with the objects done so far. Records the
    /// completed migration on the CRD (see [`MIGRATED_ANNOTATION`]).
    pub async fn migrate(&self, mut progress: impl FnMut(usize)) -> Result<Migrated, MigrateError> {
        let started = Instant::now();
        let (_, resource, storage) = self.read_crd().await?;
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let mut report = Migrated {
            storage_version: storage.clone(),
            ..Migrated::default()
        };
        let pause = self
            .max_per_second
            .map(|rate| Duration::from_secs_f64(1.0 / f64::from(rate)));
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(self.page_size);
            if let Some(token) = &token {
                params = params.continue_token(token);
            }
            let page = api
                .list(&params)
                .await
                .context(ListSnafu { crd: &self.crd })?;
            for object in page.items {
                self.rewrite(&resource, object, &mut report).await?;
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
            progress(report.objects);
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        // Every object listed was rewritten; objects created since are stored in `storage`,
        // unless the storage version changed while the run went on: then nothing is recorded.
        let (_, _, now) = self.read_crd().await?;
        if now != storage {
            return StorageChangedSnafu {
                crd: &self.crd,
                was: storage,
                now,
            }
            .fail();
        }
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        crds.patch(
            &self.crd,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {MIGRATED_ANNOTATION: storage}}})),
        )
        .await
        .context(UpdateCrdSnafu { crd: &self.crd })?;
        report.took = started.elapsed();
        tracing::info!(crd = %self.crd, storage_version = %report.storage_version, objects = report.objects, conflicts = report.conflicts, took = ?report.took, "storage migration complete");
        Ok(report)
    }

    async fn rewrite(
        &self,
        resource: &ApiResource,
        mut object: DynamicObject,
        report: &mut Migrated,
    ) -> Result<(), MigrateError> {
        let name = object.metadata.name.clone().unwrap_or_default();
        let namespace = object.metadata.namespace.clone();
        let api: Api<DynamicObject> = match &namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        };
        for attempt in 0..=CONFLICT_RETRIES {
            // A no-op update: the API server stores the object again, in the storage version.
            match api.replace(&name, &PostParams::default(), &object).await {
                Ok(_) => {
                    report.objects += 1;
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    report.gone += 1;
                    return Ok(());
                }
                Err(kube::Error::Api(status))
                    if status.code == 409 && attempt < CONFLICT_RETRIES =>
                {
                    report.conflicts += 1;
                    match api.get_opt(&name).await {
                        Ok(Some(fresh)) => object = fresh,
                        Ok(None) => {
                            report.gone += 1;
                            return Ok(());
                        }
                        Err(source) => {
                            return Err(MigrateError::Rewrite {
                                crd: self.crd.clone(),
                                namespace: namespace.unwrap_or_default(),
                                name,
                                source,
                            });
                        }
                    }
                }
                Err(source) => {
                    return Err(MigrateError::Rewrite {
                        crd: self.crd.clone(),
                        namespace: namespace.unwrap_or_default(),
                        name,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Sets `status.storedVersions` to the storage version alone, once a complete migration to
    /// it is recorded; refused otherwise ([`MigrateError::NotMigrated`]).
    pub async fn prune(&self) -> Result<Vec<String>, MigrateError> {
        let (crd, _, storage) = self.read_crd().await?;
        let recorded = crd
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIGRATED_ANNOTATION))
            .cloned();
        if recorded.as_deref() != Some(storage.as_str()) {
            return NotMigratedSnafu {
                crd: &self.crd,
                storage,
                recorded,
            }
            .fail();
        }
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        crds.patch_status(
            &self.crd,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"storedVersions": [storage]}})),
        )
        .await
        .context(UpdateCrdSnafu { crd: &self.crd })?;
        tracing::info!(crd = %self.crd, %storage, "pruned status.storedVersions");
        Ok(vec![storage])
    }

    /// [`Migration::migrate`], then [`Migration::prune`].
    pub async fn run(&self, progress: impl FnMut(usize)) -> Result<Migrated, MigrateError> {
        let report = self.migrate(progress).await?;
        self.prune().await?;
        Ok(report)
    }
}
