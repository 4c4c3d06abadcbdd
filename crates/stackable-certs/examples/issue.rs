//! Issues a CA and a serving certificate and writes `ca.crt`, `tls.crt` and `tls.key`
//! (mode 0600) into a directory.
//!
//! ```text
//! cargo run -p stackable-certs --example issue -- --out /tmp/certs \
//!     --dns my-webhook.ops.svc --ip 127.0.0.1 --key-algorithm ecdsa-p384
//! ```

use std::{
    fs,
    io::Write as _,
    net::IpAddr,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Parser;
use snafu::{ResultExt as _, Snafu};
use stackable_certs::{
    KeyAlgorithm, LeafOptions,
    ca::{CaOptions, CertificateAuthority},
};

/// Issue a self-signed CA and a leaf certificate signed by it.
#[derive(Debug, Parser)]
struct Args {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// DNS subjectAltName (repeatable).
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// IP subjectAltName (repeatable).
    #[arg(long = "ip")]
    ip: Vec<IpAddr>,
    /// Service as NAME.NAMESPACE: adds the Service DNS names.
    #[arg(long)]
    service: Option<String>,
    /// Key algorithm: ecdsa-p256, ecdsa-p384, ed25519, rsa-2048, rsa-3072, rsa-4096.
    #[arg(long, default_value_t = KeyAlgorithm::EcdsaP256)]
    key_algorithm: KeyAlgorithm,
    /// Leaf validity in days.
    #[arg(long, default_value_t = 30)]
    days: u64,
    /// Also include the clientAuth extended key usage.
    #[arg(long)]
    client_auth: bool,
}

#[derive(Debug, Snafu)]
enum Error {
    #[snafu(display("--service must be NAME.NAMESPACE, got {value:?}"))]
    BadService { value: String },

    #[snafu(display("give at least one --dns, --ip or --service"))]
    NoNames,

    #[snafu(display("failed to create the CA"))]
    CreateCa { source: stackable_certs::Error },

    #[snafu(display("failed to issue the leaf certificate"))]
    Issue { source: stackable_certs::Error },

    #[snafu(display("failed to create directory {}", path.display()))]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("failed to write {}", path.display()))]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), Error> {
    // Remove first so that the mode applies even when the file existed.
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .context(WriteSnafu { path })?;
    file.write_all(contents.as_bytes())
        .context(WriteSnafu { path })
}

#[snafu::report]
fn main() -> Result<(), Error> {
    let args = Args::parse();
    let mut leaf = match &args.service {
        Some(service) => {
            let Some((name, ns)) = service.split_once('.') else {
                return BadServiceSnafu { value: service }.fail();
            };
            LeafOptions::for_service(name, ns)
        }
        None => LeafOptions::new(),
    };
    if args.dns.is_empty() && args.ip.is_empty() && args.service.is_none() {
        return NoNamesSnafu.fail();
    }
    for dns in &args.dns {
        leaf = leaf.dns_name(dns.clone());
    }
    for ip in &args.ip {
        leaf = leaf.ip_address(*ip);
    }
    leaf = leaf
        .key_algorithm(args.key_algorithm)
        .client_auth(args.client_auth)
        .validity(Duration::from_secs(args.days * 24 * 3600));

    let ca = CertificateAuthority::new(&CaOptions::default().key_algorithm(args.key_algorithm))
        .context(CreateCaSnafu)?;
    let issued = ca.issue(&leaf).context(IssueSnafu)?;

    fs::create_dir_all(&args.out).context(CreateDirSnafu { path: &args.out })?;
    write(&args.out.join("ca.crt"), &ca.certificate().to_pem(), 0o644)?;
    write(
        &args.out.join("tls.crt"),
        &issued.certificate.to_pem(),
        0o644,
    )?;
    write(&args.out.join("tls.key"), &issued.key.to_pem(), 0o600)?;

    let info = issued.certificate.info();
    println!(
        "wrote {}/{{ca.crt,tls.crt,tls.key}}: {} leaf, DNS {:?}, IP {:?}, valid until {}",
        args.out.display(),
        args.key_algorithm,
        info.dns_names,
        info.ip_addresses,
        info.not_after
    );
    Ok(())
}
