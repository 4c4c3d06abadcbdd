//! Prints how long key generation, CA creation and leaf issuance take per key algorithm
//! (a figure, not a test): `cargo run --release -p stackable-certs --example timings`.

use std::time::Instant;

use stackable_certs::{
    KeyAlgorithm, LeafOptions, PrivateKey,
    ca::{CaOptions, CertificateAuthority},
};

#[snafu::report]
fn main() -> Result<(), stackable_certs::Error> {
    const ROUNDS: u32 = 5;
    println!(
        "{:<12} {:>12} {:>12} {:>12}",
        "algorithm", "keygen", "new CA", "issue leaf"
    );
    for alg in KeyAlgorithm::ALL {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            PrivateKey::generate(alg)?;
        }
        let keygen = start.elapsed() / ROUNDS;

        let start = Instant::now();
        let mut ca = None;
        for _ in 0..ROUNDS {
            ca = Some(CertificateAuthority::new(
                &CaOptions::default().key_algorithm(alg),
            )?);
        }
        let new_ca = start.elapsed() / ROUNDS;

        let opts = LeafOptions::for_service("hook", "ns").key_algorithm(alg);
        let start = Instant::now();
        if let Some(ca) = &ca {
            for _ in 0..ROUNDS {
                ca.issue(&opts)?;
            }
        }
        let issue = start.elapsed() / ROUNDS;
        println!(
            "{:<12} {:>12.2?} {:>12.2?} {:>12.2?}",
            alg.name(),
            keygen,
            new_ca,
            issue
        );
    }
    Ok(())
}
