//! The injector's log lines as a container runtime captures them: the real binary, its stdout
//! through a pipe. It logs its start and then stops on a kubeconfig that does not exist, so no
//! control plane is needed (`e2e_logging.rs` has the lines of a reconciliation).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::process::{Command, Output};

use serde_json::Value;

/// Runs the injector with `args` and `env`, without any cluster configuration.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_stackable-cainjector"))
        .args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("no-such-kubeconfig"))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn text_through_a_pipe_has_no_escape_bytes() {
    let output = run(&[], &[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(" INFO stackable_cainjector: starting stackable-cainjector"),
        "{stdout}"
    );
    assert!(!output.stdout.contains(&0x1b), "{stdout:?}");
    assert!(!output.stderr.contains(&0x1b), "{stderr:?}");
    assert!(
        stderr.contains("cannot load a kubeconfig or in-cluster configuration"),
        "{stderr}"
    );
}

#[test]
fn json_gives_one_object_per_line_with_the_documented_fields() {
    let output = run(&[], &[("LOG_FORMAT", "json"), ("RUST_LOG", "debug")]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(!lines.is_empty(), "{stdout}");
    for line in &lines {
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(timestamp.ends_with('Z') && timestamp.len() == 27, "{line}");
        assert!(line["level"].is_string(), "{line}");
        assert!(line["target"].is_string(), "{line}");
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let start = lines
        .iter()
        .find(|line| line["fields"]["message"] == "starting stackable-cainjector")
        .unwrap();
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["target"], "stackable_cainjector");
    assert_eq!(start["fields"]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_flag_overrides_rust_log() {
    let output = run(&["--log-level", "warn"], &[("RUST_LOG", "debug")]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "", "only warnings and errors");
}

#[test]
fn an_unknown_format_is_a_clear_error() {
    let output = run(&["--log-format", "xml"], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'xml' for '--log-format <LOG_FORMAT>'"),
        "{stderr}"
    );
    assert!(stderr.contains("[possible values: text, json]"), "{stderr}");
    assert!(output.stdout.is_empty());

    let output = run(&[], &[("LOG_FORMAT", "yaml")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("[possible values: text, json]"));

    let output = run(&[], &[("RUST_LOG", "kube=loud")]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid log filter \"kube=loud\""),
        "{stderr}"
    );
}

/// On a terminal (a pseudo-terminal from util-linux's `script`) the text is coloured, unless
/// `NO_COLOR` is set.
#[test]
fn colour_only_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("no `script` (util-linux) to open a pseudo-terminal; skipping");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let command = format!(
        "{} --metrics-address ''",
        env!("CARGO_BIN_EXE_stackable-cainjector")
    );
    let on_terminal = |no_color: Option<&str>| {
        let mut script = Command::new("script");
        script
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", home.path().join("no-such-kubeconfig"));
        if let Some(value) = no_color {
            script.env("NO_COLOR", value);
        }
        script.output().unwrap()
    };
    let coloured = on_terminal(None);
    let out = text(&coloured.stdout);
    assert!(out.contains("starting stackable-cainjector"), "{out}");
    assert!(coloured.stdout.contains(&0x1b), "{out:?}");
    let plain = on_terminal(Some("1"));
    let out = text(&plain.stdout);
    assert!(out.contains("starting stackable-cainjector"), "{out}");
    assert!(!plain.stdout.contains(&0x1b), "{out:?}");
}
