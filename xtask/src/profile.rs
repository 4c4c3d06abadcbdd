//! `cargo xtask profile`: where one request of a `cargo xtask bench` scenario spends its
//! instructions, counted by callgrind (valgrind) in the bench's own server binary.
//!
//! The server runs twice under callgrind, one tokio worker, answering first `--warmup` requests
//! and then `--warmup + --requests` on one keep-alive connection (a new connection per request
//! in `handshake`); the difference of the two runs, divided by `--requests`, is the cost of a
//! request without start-up, shutdown and first-request effects. Instruction counts do not depend
//! on other work on the machine, which is why the figures of `docs/` are counted this way
//! (callgrind counts a `rep movsb` copy one instruction per byte, so large copies look dearer
//! than they are; `perf` tells time). Needs `valgrind` (`apt install valgrind`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use crate::{
    Result,
    bench::{self, Bodies, ScenarioName},
    bench_load::{self, KxOffer, Target},
    bench_peer,
};

/// Arguments of `cargo xtask profile`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The scenario whose requests are counted.
    #[arg(long, value_enum, default_value = "validate")]
    scenario: ScenarioName,
    /// Requests counted (after the warm-up).
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Warm-up requests, answered in both runs.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Functions listed.
    #[arg(long, default_value_t = 40)]
    top: usize,
    /// List functions by inclusive cost (the function and all it calls) instead of self cost.
    #[arg(long)]
    inclusive: bool,
    /// Build the server without LTO, in `target/profile-no-lto` (a few minutes instead of ~15 on
    /// a cold cache; counts are ~7-10 % higher than the release build's).
    #[arg(long)]
    no_lto: bool,
    /// Keep the two callgrind files here (for `callgrind_annotate` or KCachegrind).
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Count the server built with mimalloc as its global allocator (`bench_server_mimalloc`,
    /// `cargo xtask bench --peer ours-mimalloc`) instead of the one on the system's allocator.
    #[arg(long)]
    mimalloc: bool,
    /// An environment variable for the server (`KEY=VALUE`, repeatable), e.g.
    /// `GLIBC_TUNABLES=glibc.malloc.tcache_count=200`. Without it the server gets neither
    /// `GLIBC_TUNABLES` nor `MALLOC_ARENA_MAX` from this environment (as in `cargo xtask bench`).
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = bench::parse_env)]
    server_env: Vec<(String, String)>,
}

/// Runs the task (from the release build of xtask: the client must not be the slow part).
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    if cfg!(debug_assertions) {
        return bench_peer::reexec_release("profile");
    }
    if args.requests == 0 {
        return Err("--requests must be at least 1".into());
    }
    for tool in ["valgrind", "callgrind_annotate"] {
        if Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err(format!("{tool} is not installed (`apt install valgrind`)").into());
        }
    }
    let example = if args.mimalloc {
        "bench_server_mimalloc"
    } else {
        "bench_server"
    };
    let server = build_server(args.no_lto, example)?;
    let work = tempfile::Builder::new()
        .prefix("stackable-profile-")
        .tempdir()?;
    let out_dir = args.keep.clone().unwrap_or_else(|| work.path().to_owned());
    std::fs::create_dir_all(&out_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (ca, leaf) = bench::certificates()?;
    // A folder of their own: the server watches the folder of its certificate files, and the
    // callgrind files written beside them would wake it.
    let cert_dir = work.path().join("certs");
    std::fs::create_dir_all(&cert_dir)?;
    let cert = cert_dir.join("tls.crt");
    let key = cert_dir.join("tls.key");
    std::fs::write(&cert, leaf.certificate.to_pem())?;
    std::fs::write(&key, leaf.key.to_pem())?;
    let tls = bench_load::client_config(ca.certificate().der(), KxOffer::Go)?;
    let bodies = Bodies::new()?;
    let load = bench::scenario_load(args.scenario, &bodies);

    let mut totals = Vec::new();
    for (run, requests) in [
        ("warm-up", args.warmup),
        ("measured", args.warmup + args.requests),
    ] {
        let file = out_dir.join(format!("callgrind.{}.{requests}.out", args.scenario.name()));
        eprintln!(
            "profile: {} under callgrind, {requests} {} requests ({run} run)",
            server.display(),
            args.scenario.name()
        );
        // Interrupted, the server under callgrind is killed (`kill_on_drop`), not left running.
        let served = Served {
            server: &server,
            cert: &cert,
            key: &key,
            env: &args.server_env,
        };
        runtime.block_on(bench_peer::unless_interrupted(serve_under_callgrind(
            &served, &file, &tls, &load, requests,
        )))?;
        totals.push(annotate(&file, args.inclusive)?);
    }
    let per_request = difference(&totals[0], &totals[1], args.requests);
    print!(
        "{}",
        render(
            args.scenario.name(),
            &per_request,
            &args,
            &build_description(&args),
        )
    );
    if let Some(dir) = &args.keep {
        eprintln!("profile: callgrind files kept in {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// How the server was built and run, for the report's first line.
fn build_description(args: &Args) -> String {
    let mut text = if args.no_lto {
        "no LTO"
    } else {
        "release profile"
    }
    .to_owned();
    if args.mimalloc {
        text.push_str(", mimalloc");
    }
    for (key, value) in &args.server_env {
        text.push_str(&format!(", {key}={value}"));
    }
    text
}

/// The bench server: the bench's own binary, or a build without LTO in its own target folder.
fn build_server(no_lto: bool, example: &str) -> Result<PathBuf> {
    if !no_lto {
        return bench_peer::build_ours_with(&bench_peer::target_dir(), example, &[]);
    }
    bench_peer::build_ours_with(
        &bench_peer::target_dir().join("profile-no-lto"),
        example,
        &[("LTO", "false"), ("CODEGEN_UNITS", "16")],
    )
}

/// The server binary, its certificate files and its extra environment.
struct Served<'a> {
    server: &'a Path,
    cert: &'a Path,
    key: &'a Path,
    env: &'a [(String, String)],
}

/// Starts the server under callgrind, sends `requests` requests, stops it with SIGINT (a
/// graceful shutdown, after which callgrind writes `file`).
async fn serve_under_callgrind(
    served: &Served<'_>,
    file: &Path,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    load: &bench::ScenarioLoad,
    requests: usize,
) -> Result {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = tokio::process::Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(served.server)
        .arg("--cert")
        .arg(served.cert)
        .arg("--key")
        .arg(served.key)
        .arg("--addr")
        .arg(addr.to_string())
        .env("TOKIO_WORKER_THREADS", "1")
        .env_remove("GLIBC_TUNABLES")
        .env_remove("MALLOC_ARENA_MAX")
        .envs(served.env.iter().map(|(key, value)| (key, value)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("valgrind exited at once")?;
    let target = Target {
        addr,
        tls: tls.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if let Some(status) = child.try_wait()? {
            return Err(format!("the server under valgrind exited ({status})").into());
        }
        if Instant::now() > deadline {
            return Err("the server under valgrind did not listen within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sender = None;
    for i in 0..requests {
        if sender.is_none() || load.new_connection {
            sender = Some(bench_load::connect(&target).await?.0);
        }
        let Some(open) = sender.as_mut() else {
            continue;
        };
        let (status, body) =
            bench_load::post(open, load.path, load.body.clone(), load.new_connection).await?;
        if status != 200 || !contains(&body, load.expect) {
            return Err(format!(
                "request {i}: status {status}, the answer lacks {:?}",
                String::from_utf8_lossy(load.expect)
            )
            .into());
        }
    }
    drop(sender);
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    if !status.success() {
        return Err(format!("kill -INT {pid} failed ({status})").into());
    }
    let exit = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .map_err(|_| "the server under valgrind did not stop within 120 s of SIGINT")??;
    if !file.is_file() {
        return Err(format!("callgrind wrote no {} ({exit})", file.display()).into());
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The instructions of a run: the program's total and each function's.
#[derive(Debug, Default, PartialEq)]
struct Costs {
    total: u64,
    functions: BTreeMap<String, u64>,
}

/// Runs `callgrind_annotate` on `file` and reads its table.
fn annotate(file: &Path, inclusive: bool) -> Result<Costs> {
    let output = Command::new("callgrind_annotate")
        .arg("--auto=no")
        .arg("--threshold=100")
        .arg(format!(
            "--inclusive={}",
            if inclusive { "yes" } else { "no" }
        ))
        .arg(file)
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "callgrind_annotate {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(parse_annotate(
        &String::from_utf8_lossy(&output.stdout),
        inclusive,
    ))
}

/// Reads `callgrind_annotate`'s function table. Lines look like
/// `  1,234 ( 0.5%)  /path/file.rs:crate::function [/path/binary]`; the same function may be
/// listed once per source file its code came from (inlining), and recursive calls as
/// `function'2`: self costs of those add up; inclusive costs do not (each entry of a function
/// counts all it calls, and a recursive entry's cost is already in the outer one's), so the
/// largest non-recursive entry is taken.
fn parse_annotate(text: &str, inclusive: bool) -> Costs {
    let mut costs = Costs::default();
    for line in text.lines() {
        let line = line.trim_start();
        let Some(digits_end) = line.find(|c: char| !(c.is_ascii_digit() || c == ',')) else {
            continue;
        };
        if digits_end == 0 {
            continue;
        }
        let Ok(count) = line[..digits_end].replace(',', "").parse::<u64>() else {
            continue;
        };
        let mut rest = line[digits_end..].trim_start();
        if rest.starts_with('(') {
            match rest.find(')') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        if rest.starts_with("=>") || (rest.starts_with('<') && rest[1..].starts_with(' ')) {
            continue;
        }
        if rest.starts_with("PROGRAM TOTALS") {
            costs.total = count;
            continue;
        }
        if rest.is_empty() || rest.starts_with("events annotated") {
            continue;
        }
        let (name, recursive) = function_name(rest);
        let entry = costs.functions.entry(name.to_owned()).or_default();
        if !inclusive {
            *entry += count;
        } else if !recursive {
            *entry = (*entry).max(count);
        }
    }
    costs
}

/// The function of a table entry without its source file, binary and recursion depth, and
/// whether it was a recursive entry.
fn function_name(entry: &str) -> (&str, bool) {
    // The binary: ` [/path/to/object]` at the end.
    let entry = match entry.rfind(" [") {
        Some(at) if entry.ends_with(']') => &entry[..at],
        _ => entry,
    };
    // The source file: up to the first `:` that is not half of a `::`.
    let bytes = entry.as_bytes();
    let file_end = (0..bytes.len()).find(|&i| {
        bytes[i] == b':' && bytes.get(i + 1) != Some(&b':') && (i == 0 || bytes[i - 1] != b':')
    });
    let name = match file_end {
        Some(i) => &entry[i + 1..],
        None => entry,
    };
    // The recursion depth: `'2`, `'3`, … at the end.
    match name.rfind('\'') {
        Some(at) if at + 1 < name.len() && name[at + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            (&name[..at], true)
        }
        _ => (name, false),
    }
}

/// `(b - a) / requests` for the total and every function, largest first.
fn difference(a: &Costs, b: &Costs, requests: usize) -> (f64, Vec<(String, f64)>) {
    let n = requests as f64;
    let total = (b.total as f64 - a.total as f64) / n;
    let mut rows: Vec<(String, f64)> = b
        .functions
        .iter()
        .map(|(name, &count)| {
            let before = a.functions.get(name).copied().unwrap_or(0);
            (name.clone(), (count as f64 - before as f64) / n)
        })
        .filter(|(_, per_request)| *per_request >= 0.5)
        .collect();
    rows.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    (total, rows)
}

fn render(
    scenario: &str,
    (total, rows): &(f64, Vec<(String, f64)>),
    args: &Args,
    build: &str,
) -> String {
    let mut out = format!(
        "{scenario}: {} instructions per request ({} requests after {} of warm-up, one tokio \
         worker, callgrind; bench server, {build})\n{:>12}  {:>6}  function ({} cost)\n",
        thousands(*total),
        args.requests,
        args.warmup,
        "per request",
        "share",
        if args.inclusive { "inclusive" } else { "self" },
    );
    for (name, per_request) in rows.iter().take(args.top) {
        let share = if *total > 0.0 {
            100.0 * per_request / total
        } else {
            0.0
        };
        let name: String = name.chars().take(150).collect();
        out.push_str(&format!(
            "{:>12}  {share:>5.1}%  {name}\n",
            thousands(*per_request)
        ));
    }
    out
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < -0.5 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
35,765,489 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                   file:function
--------------------------------------------------------------------------------
4,295,600 (12.01%)  ./string/../sysdeps/x86_64/multiarch/memmove-vec-unaligned-erms.S:__memcpy_avx_unaligned_erms [/usr/lib/x86_64-linux-gnu/libc.so.6]
2,000,000 ( 5.59%)  /root/.cargo/registry/src/x/serde_json-1.0.154/src/de.rs:<&mut serde_json::de::Deserializer<R> as serde_core::de::Deserializer>::deserialize_struct'2 [/work/target/release/examples/bench_server]
1,000,000 ( 2.80%)  /rustc/abc/library/core/src/ptr/mod.rs:<&mut serde_json::de::Deserializer<R> as serde_core::de::Deserializer>::deserialize_struct [/work/target/release/examples/bench_server]
  900,000 ( 2.52%)  /root/.cargo/registry/src/x/serde_json-1.0.154/src/de.rs:<&mut serde_json::de::Deserializer<R> as serde_core::de::Deserializer>::deserialize_struct [/work/target/release/examples/bench_server]
  500,000 ( 1.40%)  serde_json::read::SliceRead::skip_to_escape [/work/target/release/examples/bench_server]
  250,000 ( 0.70%)  ???:0x000000000496b368 [???]
";

    #[test]
    fn reads_the_table_and_merges_entries_of_one_function() {
        let costs = parse_annotate(TABLE, false);
        assert_eq!(costs.total, 35_765_489);
        assert_eq!(
            costs.functions.get("__memcpy_avx_unaligned_erms"),
            Some(&4_295_600)
        );
        // The recursive entry and the one from another source file add up to self cost.
        assert_eq!(
            costs.functions.get(
                "<&mut serde_json::de::Deserializer<R> as serde_core::de::Deserializer>::deserialize_struct"
            ),
            Some(&3_900_000)
        );
        assert_eq!(
            costs
                .functions
                .get("serde_json::read::SliceRead::skip_to_escape"),
            Some(&500_000)
        );
        assert_eq!(costs.functions.get("0x000000000496b368"), Some(&250_000));
        assert_eq!(costs.functions.len(), 4);
    }

    #[test]
    fn inclusive_costs_take_the_largest_entry_and_leave_recursive_ones_out() {
        let costs = parse_annotate(TABLE, true);
        assert_eq!(
            costs.functions.get(
                "<&mut serde_json::de::Deserializer<R> as serde_core::de::Deserializer>::deserialize_struct"
            ),
            Some(&1_000_000)
        );
    }

    #[test]
    fn function_names_lose_file_binary_and_depth() {
        assert_eq!(
            function_name("/a/b.rs:<T as x::Y>::z'12 [/bin/server]"),
            ("<T as x::Y>::z", true)
        );
        assert_eq!(
            function_name("core::fmt::write"),
            ("core::fmt::write", false)
        );
        assert_eq!(
            function_name("/a/b.rs:std::sys::backtrace::__rust_begin_short_backtrace"),
            ("std::sys::backtrace::__rust_begin_short_backtrace", false)
        );
    }

    #[test]
    fn the_difference_is_per_request_and_sorted() {
        let a = Costs {
            total: 1_000,
            functions: [("f".to_owned(), 100), ("g".to_owned(), 500)].into(),
        };
        let b = Costs {
            total: 11_000,
            functions: [
                ("f".to_owned(), 8_100),
                ("g".to_owned(), 500),
                ("h".to_owned(), 2_000),
            ]
            .into(),
        };
        let (total, rows) = difference(&a, &b, 10);
        assert_eq!(total, 1_000.0);
        assert_eq!(rows, vec![("f".to_owned(), 800.0), ("h".to_owned(), 200.0)]);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(-12_345.0), "-12,345");
    }
}
