//! `bench_server` (the same file, the same handlers and settings) with mimalloc as the process's
//! global allocator instead of the system's: `cargo xtask bench --peer ours-mimalloc` runs it
//! side by side with the other servers. The allocator is a choice of the binary that links
//! this library, not of the library; docs/webhook-server.md ("The allocator") has the figures.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "bench_server.rs"]
mod server;

use server::main;
