//! Free TCP ports on 127.0.0.1 for etcd, kube-apiserver and replicas.
//!
//! A port is picked at random *below* the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by default) and checked by binding
//! it. Between the check and the child process binding the port, nothing else on the machine
//! is handed that port by the kernel: outgoing connections and `bind(0)` take their ports from
//! the ephemeral range only. (Picking with `bind(0)`, as this module did before, handed out
//! ports an outgoing connection of any process could take in that gap — CI saw etcd fail with
//! "address already in use".) Only another process picking ports the same way at the same
//! moment can collide (two picks meet once in ~16,000); `TestEnv` starts its processes again on
//! fresh ports when that happens.
//!
//! Ports handed out once are remembered for the life of the process, so two harnesses started
//! side by side in one process never get the same one. On a machine whose ephemeral range
//! leaves too few ports below it, the port comes from `bind(0)` instead.

use std::{
    collections::HashSet,
    hash::{BuildHasher, RandomState},
    net::{Ipv4Addr, TcpListener},
    ops::Range,
    sync::{Mutex, OnceLock},
};

/// The lowest port handed out: above the usual fixed service ports (8080, 9090, 10250, ...).
const LOWEST: u16 = 16_384;

/// Fewer candidates than this below the ephemeral range, and ports come from `bind(0)`.
const FEWEST_CANDIDATES: u16 = 4_096;

/// Tries to find a port before giving up.
const TRIES: usize = 200;

/// Returns a port on 127.0.0.1 that was free a moment ago, lies outside the kernel's
/// ephemeral range (see the module docs), and was never returned before by this process.
pub fn free_port() -> std::io::Result<u16> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    static CANDIDATES: OnceLock<Option<Range<u16>>> = OnceLock::new();
    let used = USED.get_or_init(Default::default);
    let candidates = CANDIDATES.get_or_init(|| candidates(ephemeral_low()));
    let random = RandomState::new();
    for attempt in 0..TRIES {
        let port = match candidates {
            Some(range) => pick(range, random.hash_one(attempt)),
            None => TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port(),
        };
        let mut used = used.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if used.contains(&port) {
            continue;
        }
        // Free now? (std's listener sets SO_REUSEADDR, as etcd, kube-apiserver and tokio do,
        // so a port whose last connection is in TIME_WAIT counts as free, as it is for them.)
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            used.insert(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        format!("no unused free port on 127.0.0.1 found in {TRIES} tries"),
    ))
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// The ports to pick from: `LOWEST` up to the ephemeral range, or `None` when that is too few.
fn candidates(ephemeral_low: u16) -> Option<Range<u16>> {
    (ephemeral_low.saturating_sub(LOWEST) >= FEWEST_CANDIDATES).then_some(LOWEST..ephemeral_low)
}

/// The port of `range` that `random` points at.
fn pick(range: &Range<u16>, random: u64) -> u16 {
    let width = u64::from(range.end - range.start);
    // `random % width` < `width` <= u16::MAX - start, so the sum fits.
    range.start + u16::try_from(random % width).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_unique_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        for port in &ports[..5] {
            TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).unwrap();
        }
    }

    #[test]
    fn ports_lie_below_the_ephemeral_range() {
        let low = ephemeral_low();
        let Some(range) = candidates(low) else {
            // This machine's range starts too low to pick below it; nothing to check.
            return;
        };
        for _ in 0..200 {
            let port = free_port().unwrap();
            assert!(range.contains(&port), "{port} outside {range:?}");
            assert!(port < low, "{port} in the ephemeral range from {low}");
        }
    }

    #[test]
    fn a_low_ephemeral_range_falls_back_to_the_kernels_pick() {
        assert_eq!(candidates(32_768), Some(LOWEST..32_768));
        assert_eq!(candidates(LOWEST + FEWEST_CANDIDATES), Some(LOWEST..20_480));
        assert_eq!(candidates(LOWEST + FEWEST_CANDIDATES - 1), None);
        assert_eq!(candidates(1_024), None);
    }

    #[test]
    fn picks_stay_in_the_range_and_spread_over_it() {
        let range = 16_384..32_768;
        let picks: Vec<u16> = (0..10_000u64)
            .map(|i| pick(&range, RandomState::new().hash_one(i)))
            .collect();
        assert!(picks.iter().all(|port| range.contains(port)));
        let distinct: HashSet<u16> = picks.iter().copied().collect();
        // 10,000 uniform picks of 16,384 ports give ~7,400 distinct ones; a broken pick far fewer.
        assert!(distinct.len() > 6_000, "{} distinct", distinct.len());
        assert_eq!(pick(&(5..6), u64::MAX), 5);
    }
}
