//! The three CronTab versions declared once with `#[versioned]` (`tests/common/crontab.rs`):
//! prints the versions of the merged CRD and converts one object from v1beta1 to v2.
//!
//! With `crontab_by_hand` (the same versions written by hand) it measures what the macro costs
//! at compile time: `docs/versioned.md`.

/// The CronTab versions, declared once.
#[path = "../tests/common/crontab.rs"]
pub mod declared;

use declared::crontab::CronTabVersions;
use stackable_conversion::WebhookTarget;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let crd = CronTabVersions::crd(WebhookTarget::service("crontab", "ops").path("/convert"))?;
    for version in &crd.spec.versions {
        println!(
            "{} served={} storage={} deprecated={:?}",
            version.name, version.served, version.storage, version.deprecated
        );
    }
    let converted = CronTabVersions::router()?.convert_objects(
        vec![serde_json::json!({
            "apiVersion": "example.com/v1beta1", "kind": "CronTab",
            "metadata": {"name": "nightly", "namespace": "ops", "uid": "1"},
            "spec": {"cronSpec": "@daily", "image": "busybox", "hostPort": "db:5432"}
        })],
        "example.com/v2",
    )?;
    println!("{}", serde_json::to_string_pretty(&converted[0]["spec"])?);
    Ok(())
}
