//! The `vmpulse` command line: exit codes and the error messages an operator reads.

use std::path::Path;
use std::process::{Command, Output};

fn vmpulse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmpulse"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("cannot run the vmpulse binary")
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("vmpulse.toml");
    std::fs::write(&path, text).expect("cannot write the config file");
    path.display().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn run_rejects_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[collection]\ninterval_seconds = 30\n");

    let output = vmpulse(&["run", "--config", &config]);

    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("unknown field `interval_seconds`"),
        "{message}"
    );
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn run_rejects_missing_file() {
    let output = vmpulse(&["run", "--config", "/nonexistent/vmpulse.toml"]);

    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("/nonexistent/vmpulse.toml"), "{message}");
}

#[test]
fn check_plugins_names_missing_component() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[plugins]]\nid = \"rules\"\nkind = \"alert-rule\"\ncomponent = \"missing.wasm\"\n",
    );

    let output = vmpulse(&["check-plugins", "--config", &config]);

    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("missing.wasm"), "{message}");
    assert!(
        message.contains("1 of 1 plugins failed to load"),
        "{message}"
    );
}
