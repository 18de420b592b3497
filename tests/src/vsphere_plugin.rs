//! The vSphere collector (`plugins/vsphere`), built for `wasm32-wasip2` on first use, and
//! its `[[plugins]]` declarations for tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vmpulse::config::{Config, PluginConfig};

use crate::fixtures::workspace_root;

/// Builds the plugin once per process and returns the path of its `.wasm` file.
///
/// The build uses its own target folder, so it waits neither for the outer `cargo test`
/// nor for a fixture build that holds the main folder's lock.
///
/// # Panics
///
/// When cargo fails. Its output above the panic shows the cause.
pub fn component() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target").join("vsphere-plugin");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args(["build", "--quiet", "--target", "wasm32-wasip2"])
            .args(["--profile", "release-wasm", "-p", "vmpulse-plugin-vsphere"])
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cannot run cargo to build plugins/vsphere");
        assert!(
            status.success(),
            "building plugins/vsphere failed: {status}"
        );
        target
            .join("wasm32-wasip2")
            .join("release-wasm")
            .join("vmpulse_plugin_vsphere.wasm")
    })
}

/// Parses a `[[plugins]]` entry for the vSphere collector with `extra` TOML lines, which
/// grant origins and set `config`, `secrets` and `tls`.
///
/// # Panics
///
/// When the declaration is invalid.
pub fn declaration(id: &str, extra: &str) -> PluginConfig {
    let text = format!(
        "[[plugins]]\nid = \"{id}\"\nkind = \"collector\"\ncomponent = {path:?}\n{extra}\n",
        path = component().display().to_string(),
    );
    let config = Config::parse(&text, Path::new("test.toml"), Path::new("/"))
        .unwrap_or_else(|err| panic!("{err}\n{text}"));
    config.plugins.into_iter().next().unwrap()
}
