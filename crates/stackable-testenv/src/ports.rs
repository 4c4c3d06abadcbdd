//! Free TCP ports on 127.0.0.1 for etcd and kube-apiserver.
//!
//! A port is found by binding port 0 and releasing it. Ports handed out once are remembered
//! for the life of the process, so two harnesses started side by side never get the same
//! one (the kernel may hand a released port out again).

use std::{
    collections::HashSet,
    net::{Ipv4Addr, TcpListener},
    sync::{Mutex, OnceLock},
};

/// Returns a port on 127.0.0.1 that was free a moment ago and was never returned before
/// by this process.
pub fn free_port() -> std::io::Result<u16> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(Default::default);
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let mut used = used.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if used.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        "no unused free port found after 100 tries",
    ))
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
}
