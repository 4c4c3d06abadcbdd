//! `crontab-migrate`: rewrites every CronTab in the CRD's storage version, then prunes
//! `status.storedVersions`, so that an old version can be removed from the CRD
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#upgrade-existing-objects-to-a-new-stored-version>).
//!
//! Safe to interrupt and run again: objects already stored in the storage version are
//! rewritten as no-ops, and `storedVersions` is pruned only after a run that went through every
//! object. The conversion webhook must be reachable (objects stored in another version are
//! converted when read).

use clap::Parser;
use snafu::{ResultExt as _, Snafu};
use stackable_conversion::migrate::Migration;
use stackable_telemetry::{LogArgs, Telemetry};

/// Migrates CronTabs to the CRD's storage version.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The CRD whose objects are migrated.
    #[arg(long, default_value = crontab_operator::CRD_NAME)]
    crd: String,
    /// Objects listed per page.
    #[arg(long, default_value_t = 100)]
    page_size: u32,
    /// Rewrites per second at most (0: no limit).
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Rewrite the objects but leave `status.storedVersions` as it is.
    #[arg(long)]
    no_prune: bool,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Snafu)]
enum Error {
    #[snafu(display("could not configure a Kubernetes client (KUBECONFIG or in-cluster)"))]
    KubeClient { source: kube::Error },
    #[snafu(display("cannot set up logging"))]
    Telemetry { source: stackable_telemetry::Error },
    #[snafu(display("the migration failed"))]
    Migrate {
        source: stackable_conversion::migrate::MigrateError,
    },
}

#[snafu::report]
#[tokio::main]
async fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let _telemetry = Telemetry::from_args("crontab-migrate", &cli.log)
        .init()
        .context(TelemetrySnafu)?;
    let client = kube::Client::try_default().await.context(KubeClientSnafu)?;
    let migration = Migration::new(client, &cli.crd)
        .page_size(cli.page_size)
        .max_per_second(Some(cli.rate));
    let report = migration
        .migrate(|done| eprintln!("crontab-migrate: {done} objects rewritten"))
        .await
        .context(MigrateSnafu)?;
    eprintln!(
        "crontab-migrate: every {} stored as {} ({} objects, {} conflicts retried, {} deleted meanwhile, {:.1} s)",
        cli.crd,
        report.storage_version,
        report.objects,
        report.conflicts,
        report.gone,
        report.took.as_secs_f64()
    );
    if !cli.no_prune {
        let stored = migration.prune().await.context(MigrateSnafu)?;
        eprintln!("crontab-migrate: status.storedVersions is now {stored:?}");
    }
    Ok(())
}
