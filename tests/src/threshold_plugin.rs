//! The threshold-rules alert plugin (`plugins/threshold-rules`) built for tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vmpulse::config::{Config, PluginConfig};

use crate::fixtures::workspace_root;

/// Builds the plugin once per process and returns the path of its `.wasm` file.
///
/// The build uses its own target folder, so it waits neither for the outer `cargo test`
/// nor for another plugin's build.
pub fn component() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let target = workspace_root()
            .join("target")
            .join("threshold-rules-plugin");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace_root())
            .args(["build", "--quiet", "--target", "wasm32-wasip2"])
            .args(["--profile", "release-wasm"])
            .args(["-p", "vmpulse-plugin-threshold-rules"])
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cannot run cargo to build plugins/threshold-rules");
        assert!(
            status.success(),
            "building plugins/threshold-rules failed: {status}"
        );
        target
            .join("wasm32-wasip2")
            .join("release-wasm")
            .join("vmpulse_plugin_threshold_rules.wasm")
    })
}

/// Returns the folder where tests cache the compiled component.
pub fn component_cache() -> PathBuf {
    workspace_root()
        .join("target")
        .join("threshold-rules-plugin")
        .join("component-cache")
}

/// Parses a `[[plugins]]` entry for the plugin with `config` appended: TOML lines that may
/// open `[plugins.config]` tables.
///
/// # Panics
///
/// When the declaration is invalid.
pub fn declaration(id: &str, config: &str) -> PluginConfig {
    let text = format!(
        "[[plugins]]\nid = \"{id}\"\nkind = \"alert-rule\"\ncomponent = {path:?}\n{config}\n",
        path = component().display().to_string(),
    );
    let parsed = Config::parse(&text, Path::new("test.toml"), Path::new("/"))
        .unwrap_or_else(|err| panic!("{err}\n{text}"));
    parsed.plugins.into_iter().next().unwrap()
}
