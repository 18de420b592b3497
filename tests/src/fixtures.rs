//! The fixture plugins under `tests/plugins/`, built for `wasm32-wasip2` on first use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vmpulse::config::{Config, PluginConfig};

/// Returns the repository's top folder.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one folder below the workspace root")
}

/// Builds every fixture plugin once per process and returns the folder of the `.wasm` files.
///
/// The build uses its own target folder: the outer `cargo test` may still hold the lock on
/// the main one.
///
/// # Panics
///
/// When cargo fails; its output then gives the reason (often a missing
/// `rustup target add wasm32-wasip2`).
pub fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target").join("fixture-plugins");
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command
            .current_dir(root)
            .args([
                "build",
                "--quiet",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "release-wasm",
            ])
            .env("CARGO_TARGET_DIR", &target);
        for entry in std::fs::read_dir(root.join("tests").join("plugins")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            command.args(["-p", &format!("fixture-{name}")]);
        }
        let status = command
            .status()
            .expect("cannot run cargo to build the fixture plugins");
        assert!(
            status.success(),
            "building the fixture plugins failed: {status}"
        );
        target.join("wasm32-wasip2").join("release-wasm")
    })
}

/// Returns the path of fixture `name` (the folder name under `tests/plugins/`).
pub fn fixture(name: &str) -> PathBuf {
    fixture_dir().join(format!("fixture_{}.wasm", name.replace('-', "_")))
}

/// Parses one `[[plugins]]` entry for `fixture`, with `extra` TOML lines appended.
///
/// # Panics
///
/// When the resulting declaration is invalid.
pub fn declaration(id: &str, kind: &str, fixture_name: &str, extra: &str) -> PluginConfig {
    let text = format!(
        "[[plugins]]\nid = \"{id}\"\nkind = \"{kind}\"\ncomponent = {path:?}\n{extra}\n",
        path = fixture(fixture_name).display().to_string(),
    );
    let config = Config::parse(&text, Path::new("test.toml"), Path::new("/"))
        .unwrap_or_else(|err| panic!("{err}\n{text}"));
    config.plugins.into_iter().next().unwrap()
}
