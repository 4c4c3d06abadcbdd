//! `cargo xtask testenv ...`: build the control-plane binaries, run a command against a
//! fresh control plane, or keep one running. The logic lives in `stackable-testenv`.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use stackable_testenv::{
    Binaries, KUBERNETES_VERSION, TestEnv,
    assets::cache_dir,
    build::{BuildOptions, build},
    helm::{self, Helm},
};

use crate::Result;

/// Arguments of `cargo xtask testenv`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The testenv subcommands.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Build kube-apiserver, etcd, kubectl and helm from Go modules into the cache (or reuse
    /// them).
    Build {
        /// Rebuild even when the cache holds a complete build.
        #[arg(long)]
        force: bool,
    },
    /// Start a control plane, run CMD with KUBECONFIG set and kubectl on PATH, stop it,
    /// and exit with CMD's status.
    Run {
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Start a control plane and keep it running until Ctrl-C.
    Start {
        /// Also copy the kubeconfig here (it is removed on exit).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Print `export` lines naming the binaries (builds them if needed).
    Env,
}

/// Runs a testenv subcommand; `Ok(code)` is the exit code.
pub(crate) fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Build { force } => {
            let dir = cache_dir()?;
            let binaries = match Binaries::locate()? {
                Some(binaries) if !force => binaries,
                _ => {
                    let mut options = BuildOptions::new(dir);
                    options.force = force;
                    build(&options)?
                }
            };
            print_binaries(&binaries);
            let helm = match Helm::locate()? {
                Some(helm) if !force => helm,
                _ => helm::build(&helm::cache_dir()?, Path::new("go"), force)?,
            };
            println!("helm:           {}", helm.path().display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Env => {
            let binaries = Binaries::ensure()?;
            for (name, path) in binaries.env_vars() {
                println!("export {name}={}", path.display());
            }
            let (name, path) = Helm::ensure()?.env_var();
            println!("export {name}={}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { command } => runtime()?.block_on(run_command(command)),
        Command::Start { kubeconfig } => runtime()?.block_on(start(kubeconfig)),
    }
}

/// The binaries for `cargo xtask test`: found or built once, then exported to the tests as
/// environment variables (kube-apiserver, etcd, kubectl and helm).
pub(crate) fn ensure_binaries() -> Result<Vec<(&'static str, PathBuf)>> {
    let binaries = Binaries::ensure()?;
    eprintln!(
        "testenv: using kube-apiserver {} ({:?})",
        binaries.kube_apiserver.display(),
        binaries.origin
    );
    let helm = Helm::ensure()?;
    eprintln!("testenv: using helm {}", helm.path().display());
    let mut vars = binaries.env_vars();
    vars.push(helm.env_var());
    Ok(vars)
}

fn print_binaries(binaries: &Binaries) {
    println!("kube-apiserver: {}", binaries.kube_apiserver.display());
    println!("etcd:           {}", binaries.etcd.display());
    if let Some(kubectl) = &binaries.kubectl {
        println!("kubectl:        {}", kubectl.display());
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn start_env() -> Result<TestEnv> {
    eprintln!("testenv: starting etcd and kube-apiserver {KUBERNETES_VERSION}");
    let started = std::time::Instant::now();
    let env = TestEnv::start().await?;
    eprintln!(
        "testenv: ready at {} in {:.1}s",
        env.server_url(),
        started.elapsed().as_secs_f64()
    );
    Ok(env)
}

/// A folder holding only a `kubectl` link, to put first on PATH.
fn kubectl_path_dir(env: &TestEnv) -> Result<Option<PathBuf>> {
    let Some(kubectl) = &env.binaries().kubectl else {
        return Ok(None);
    };
    let dir = env.work_dir().join("bin");
    std::fs::create_dir_all(&dir)?;
    std::os::unix::fs::symlink(kubectl, dir.join("kubectl"))?;
    Ok(Some(dir))
}

fn path_with(first: Option<&Path>) -> Result<std::ffi::OsString> {
    let mut paths: Vec<PathBuf> = first.map(Path::to_owned).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    Ok(std::env::join_paths(paths)?)
}

async fn run_command(command: Vec<String>) -> Result<ExitCode> {
    let env = start_env().await?;
    let bin = kubectl_path_dir(&env)?;
    let (program, args) = command
        .split_first()
        .ok_or("testenv run: no command given")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("KUBECONFIG", env.kubeconfig_path())
        .env("PATH", path_with(bin.as_deref())?)
        .spawn()
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    let status = tokio::select! {
        status = child.wait() => status?,
        _ = tokio::signal::ctrl_c() => {
            // The child got the same SIGINT; give it the chance to finish.
            child.wait().await?
        }
    };
    env.stop();
    eprintln!("testenv: control plane stopped; {program} exited with {status}");
    let code = status.code().unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

async fn start(kubeconfig: Option<PathBuf>) -> Result<ExitCode> {
    let env = start_env().await?;
    let bin = kubectl_path_dir(&env)?;
    if let Some(path) = &kubeconfig {
        env.write_kubeconfig(path)?;
    }
    let shown = kubeconfig
        .clone()
        .unwrap_or_else(|| env.kubeconfig_path().to_owned());
    println!("export KUBECONFIG={}", shown.display());
    if let Some(bin) = bin {
        println!("export PATH={}:$PATH", bin.display());
    }
    eprintln!("testenv: running; press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    env.stop();
    if let Some(path) = kubeconfig {
        let _ = std::fs::remove_file(path);
    }
    eprintln!("testenv: control plane stopped");
    Ok(ExitCode::SUCCESS)
}
