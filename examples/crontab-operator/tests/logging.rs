//! The operator's logging flags, without a cluster: an unknown `--log-format` is a usage error
//! (exit code 2) that lists the formats. (`e2e_logging.rs` has its lines against a control
//! plane.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::process::Command;

#[test]
fn an_unknown_format_is_a_clear_error() {
    for (args, env) in [
        (vec!["--log-format", "xml"], None),
        (vec![], Some(("LOG_FORMAT", "logfmt"))),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crontab-operator"));
        command.args(&args).env_clear();
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("for '--log-format <LOG_FORMAT>'"),
            "{stderr}"
        );
        assert!(stderr.contains("[possible values: text, json]"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}
