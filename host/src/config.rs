//! The host's TOML config file.
//!
//! Every table rejects unknown keys, naming the key and its line, except a plugin's free-form
//! `config` table, which is handed to the plugin as JSON:
//!
//! ```toml
//! [runtime]
//! cache_dir = "/var/cache/vmpulse"
//!
//! [[plugins]]
//! id = "vc-lab"
//! kind = "collector"
//! component = "plugins/vsphere.wasm"
//! allowed_outbound_hosts = ["https://vc.lab.example:443"]
//! memory_limit_mb = 128
//! call_timeout_secs = 10
//! secrets = { password = "VMPULSE_VC_LAB_PASSWORD" }
//! tls."https://vc.lab.example:443" = { ca_file = "/etc/vmpulse/vc-lab-ca.pem" }
//! config = { url = "https://vc.lab.example/sdk", username = "monitor@vsphere.local" }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::plugin::outbound::AllowedOrigin;

mod service;

pub use service::{
    AlertsConfig, AuthConfig, GroupConfig, RateLimitConfig, ServerConfig, ServerTls,
    WebSocketConfig,
};

/// An error that makes the config file unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not match the schema; `message` names the line.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config file {path}: plugin `{plugin}`: {message}")]
    Plugin {
        path: PathBuf,
        plugin: String,
        message: String,
    },
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub collection: CollectionConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub server: ServerConfig,
    /// Token checks; the API does not start without them.
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
}

/// Settings shared by every plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Folder of the compiled-component cache; no cache when unset.
    pub cache_dir: Option<PathBuf>,
}

/// How often and how widely collectors run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectionConfig {
    /// Seconds between collection cycles, 30 to 60.
    pub interval_secs: u64,
    /// Seconds between inventory refreshes; at least one interval.
    pub inventory_interval_secs: u64,
    /// VMs per `collect` call.
    pub batch_size: usize,
    /// `collect` calls of one discovery collector running at once.
    pub max_concurrent_batches: usize,
}

impl Default for CollectionConfig {
    fn default() -> Self {
        Self {
            interval_secs: 30,
            inventory_interval_secs: 300,
            batch_size: 50,
            max_concurrent_batches: 4,
        }
    }
}

impl CollectionConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    pub fn inventory_interval(&self) -> Duration {
        Duration::from_secs(self.inventory_interval_secs)
    }

    fn validate(&self) -> Result<(), String> {
        if !(30..=60).contains(&self.interval_secs) {
            return Err(format!(
                "collection.interval_secs must be between 30 and 60, got {}",
                self.interval_secs
            ));
        }
        if self.inventory_interval_secs < self.interval_secs {
            return Err("collection.inventory_interval_secs must be at least interval_secs".into());
        }
        if !(1..=1000).contains(&self.batch_size) {
            return Err(format!(
                "collection.batch_size must be between 1 and 1000, got {}",
                self.batch_size
            ));
        }
        if !(1..=64).contains(&self.max_concurrent_batches) {
            return Err(format!(
                "collection.max_concurrent_batches must be between 1 and 64, got {}",
                self.max_concurrent_batches
            ));
        }
        Ok(())
    }
}

/// Location and retention of the history store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The redb file, relative to the config file's folder.
    pub path: PathBuf,
    /// Days of per-VM history kept.
    pub retention_days: f64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("vmpulse.redb"),
            retention_days: 7.0,
        }
    }
}

impl StorageConfig {
    pub fn retention(&self) -> Duration {
        Duration::from_secs_f64(self.retention_days * 86_400.0)
    }
}

/// The world a plugin component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// The `collector` world: discovers inventory and collects samples.
    Collector,
    /// The `alert-rule` world: judges one VM's metrics.
    AlertRule,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Collector => "collector",
            Self::AlertRule => "alert-rule",
        })
    }
}

/// The part a collector plays in a cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CollectorRole {
    /// Discovers an estate (a vCenter) and collects its VMs; each runs its own cycle.
    #[default]
    Discovery,
    /// Adds in-guest metrics to the VMs that discovery collectors found, in their cycles.
    Enrichment,
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Unique name used in logs, metrics and the API: letters, digits, `-` and `_`.
    pub id: String,
    pub kind: PluginKind,
    /// For collectors: whether it discovers VMs or adds guest metrics to VMs others found.
    #[serde(default)]
    pub role: CollectorRole,
    /// Path of the `.wasm` component, relative to the config file's folder.
    pub component: PathBuf,
    /// Origins the plugin may call, as `scheme://host:port`. The host may be a name, an IP
    /// address or a CIDR block (`http://10.0.0.0/8:9100`); the port may be `*`.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Cap on the plugin's linear memory, in MiB.
    #[serde(default = "default_memory_limit_mb")]
    pub memory_limit_mb: u64,
    /// Deadline of one call (CPU and waiting), in seconds.
    #[serde(default = "default_call_timeout_secs")]
    pub call_timeout_secs: f64,
    /// Time allowed to open a TCP connection (and TLS handshake), in seconds.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: f64,
    /// Time allowed from sending a request to its response headers, in seconds; shorter
    /// than `call_timeout_secs`.
    #[serde(default = "default_response_timeout_secs")]
    pub response_timeout_secs: f64,
    /// Secret name to the environment variable holding its value.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// TLS settings per granted `https` origin.
    #[serde(default)]
    pub tls: BTreeMap<String, TlsConfig>,
    /// Free-form settings handed to the plugin as JSON.
    #[serde(default = "empty_table")]
    pub config: toml::Table,
}

/// How to verify one origin's TLS certificate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate authorities to trust instead of the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. For labs only: the connection can then be intercepted.
    #[serde(default)]
    pub insecure: bool,
}

fn default_memory_limit_mb() -> u64 {
    64
}

fn default_call_timeout_secs() -> f64 {
    10.0
}

fn default_connect_timeout_secs() -> f64 {
    5.0
}

fn default_response_timeout_secs() -> f64 {
    8.0
}

fn empty_table() -> toml::Table {
    toml::Table::new()
}

impl Config {
    /// Reads and validates the config file at `path`.
    ///
    /// Relative paths inside it (components, CA files, cache folder) are resolved against
    /// the file's folder.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file, and the line or plugin at fault.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base)
    }

    /// Parses config text; `path` is only used in messages and `base` resolves relative paths.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] or [`ConfigError::Plugin`].
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string().trim_end().to_owned(),
        })?;

        config.validate(path)?;
        config.resolve_paths(base);
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.collection
            .validate()
            .map_err(|message| ConfigError::Parse {
                path: path.to_owned(),
                message,
            })?;
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        self.server.validate().map_err(parse_error)?;
        if let Some(auth) = &self.auth {
            auth.validate().map_err(parse_error)?;
        }
        self.alerts.validate().map_err(parse_error)?;
        let mut group_ids = HashSet::new();
        for group in &self.groups {
            group.validate().map_err(parse_error)?;
            if !group_ids.insert(group.id.as_str()) {
                return Err(parse_error(format!(
                    "groups: the id `{}` is used by two groups",
                    group.id
                )));
            }
        }
        let mut seen = HashSet::new();
        for plugin in &self.plugins {
            let fail = |message: String| ConfigError::Plugin {
                path: path.to_owned(),
                plugin: plugin.id.clone(),
                message,
            };
            if !seen.insert(plugin.id.as_str()) {
                return Err(fail("the id is used by another plugin".to_owned()));
            }
            plugin.validate().map_err(fail)?;
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(dir) = &mut self.runtime.cache_dir {
            *dir = base.join(&*dir);
        }
        self.storage.path = base.join(&self.storage.path);
        if let Some(auth) = &mut self.auth {
            auth.resolve_paths(base);
        }
        if let Some(tls) = &mut self.server.tls {
            tls.cert_file = base.join(&tls.cert_file);
            tls.key_file = base.join(&tls.key_file);
        }
        for plugin in &mut self.plugins {
            plugin.component = base.join(&plugin.component);
            for tls in plugin.tls.values_mut() {
                if let Some(file) = &mut tls.ca_file {
                    *file = base.join(&*file);
                }
            }
        }
    }
}

/// Rejects a NaN or infinite number at `path` or below it. The plugin receives its table as
/// JSON, which has no such numbers: serde_json writes them as null, so the setting would
/// vanish without an error.
fn check_finite(path: &str, value: &toml::Value) -> Result<(), String> {
    match value {
        toml::Value::Float(number) if !number.is_finite() => Err(format!(
            "{path} is {number}: use a finite number, because plugins receive their config \
             as JSON, which has no NaN or infinity"
        )),
        toml::Value::Table(table) => table.iter().try_for_each(|(key, value)| {
            check_finite(&format!("{path}.{}", key_path_part(key)), value)
        }),
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, value)| check_finite(&format!("{path}[{index}]"), value)),
        _ => Ok(()),
    }
}

/// Returns `key` as TOML writes it in a dotted key: bare when it can be, else quoted.
fn key_path_part(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

impl PluginConfig {
    fn validate(&self) -> Result<(), String> {
        let id_is_valid = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_is_valid {
            return Err("the id must be 1 to 64 letters, digits, `-` or `_`".to_owned());
        }
        if self.memory_limit_mb == 0 || self.memory_limit_mb > 4096 {
            return Err(format!(
                "memory_limit_mb must be between 1 and 4096, got {}",
                self.memory_limit_mb
            ));
        }
        check_seconds("call_timeout_secs", self.call_timeout_secs)?;
        check_seconds("connect_timeout_secs", self.connect_timeout_secs)?;
        check_seconds("response_timeout_secs", self.response_timeout_secs)?;
        // A silent peer must surface as the plugin's own timeout error, not as the call
        // deadline, which counts as misbehaviour and pauses the plugin.
        if self.kind == PluginKind::Collector
            && self.response_timeout_secs >= self.call_timeout_secs
        {
            return Err(format!(
                "response_timeout_secs ({}) must be shorter than call_timeout_secs ({})",
                self.response_timeout_secs, self.call_timeout_secs
            ));
        }

        for (key, value) in &self.config {
            check_finite(&format!("config.{}", key_path_part(key)), value)?;
        }

        let origins = self.allowed_origins()?;
        if self.kind == PluginKind::AlertRule && !origins.is_empty() {
            return Err("alert rules have no network access: remove allowed_outbound_hosts".into());
        }
        self.validate_tls(&origins)
    }

    fn validate_tls(&self, origins: &[AllowedOrigin]) -> Result<(), String> {
        for (origin, tls) in &self.tls {
            let parsed =
                AllowedOrigin::parse(origin).map_err(|err| format!("tls.{origin}: {err}"))?;
            if !origins.contains(&parsed) {
                return Err(format!(
                    "tls.\"{origin}\" does not match any entry of allowed_outbound_hosts"
                ));
            }
            if !parsed.is_https() {
                return Err(format!("tls.\"{origin}\" is not an https origin"));
            }
            if !parsed.is_single_origin() {
                return Err(format!(
                    "tls.\"{origin}\" must name one host and port, not a CIDR block or `*`"
                ));
            }
            if tls.insecure && tls.ca_file.is_some() {
                return Err(format!(
                    "tls.\"{origin}\": set either ca_file or insecure, not both"
                ));
            }
        }
        Ok(())
    }

    /// Parses `allowed_outbound_hosts`.
    ///
    /// # Errors
    ///
    /// A message naming the first entry that is not a valid origin.
    pub fn allowed_origins(&self) -> Result<Vec<AllowedOrigin>, String> {
        self.allowed_outbound_hosts
            .iter()
            .map(|entry| {
                AllowedOrigin::parse(entry)
                    .map_err(|err| format!("allowed_outbound_hosts entry {entry:?}: {err}"))
            })
            .collect()
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.call_timeout_secs)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout_secs)
    }

    pub fn response_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.response_timeout_secs)
    }
}

fn check_seconds(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 && value <= 3600.0 {
        Ok(())
    } else {
        Err(format!(
            "{name} must be more than 0 and at most 3600 seconds, got {value}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("vmpulse.toml"), Path::new("/etc/vmpulse"))
    }

    const MINIMAL: &str = r#"
[[plugins]]
id = "vc1"
kind = "collector"
component = "vsphere.wasm"
allowed_outbound_hosts = ["https://127.0.0.1:8989"]
"#;

    #[test]
    fn minimal_plugin_gets_defaults() {
        let config = parse(MINIMAL).unwrap();
        let plugin = &config.plugins[0];
        assert_eq!(plugin.kind, PluginKind::Collector);
        assert_eq!(plugin.component, Path::new("/etc/vmpulse/vsphere.wasm"));
        assert_eq!(plugin.memory_limit_mb, 64);
        assert_eq!(plugin.call_timeout(), Duration::from_secs(10));
        assert!(plugin.config.is_empty());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = format!("{MINIMAL}memory_limit = 12\n");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("memory_limit"), "{message}");
        assert!(message.contains("line 7"), "{message}");
    }

    #[test]
    fn unknown_top_level_table_is_rejected() {
        let message = parse("[runtme]\ncache_dir = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("runtme"), "{message}");
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn free_form_config_accepts_any_key() {
        let text = format!("{MINIMAL}config = {{ url = \"https://x/sdk\", batch = 50 }}\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.plugins[0].config["batch"].as_integer(), Some(50));
    }

    #[test]
    fn non_finite_config_number_is_rejected() {
        // JSON, which carries the table to the plugin, has no NaN or infinity: it would
        // arrive as null and drop the setting without a word.
        for value in ["nan", "inf", "-inf"] {
            let text = format!(
                "{MINIMAL}[plugins.config.thresholds.\"cpu.ready\"]\nlow = 1.0\nhigh = {value}\n"
            );
            let message = parse(&text).unwrap_err().to_string();
            assert!(
                message.contains("config.thresholds.\"cpu.ready\".high"),
                "{message}"
            );
            assert!(message.contains("finite"), "{message}");
        }
    }

    #[test]
    fn duplicate_id_is_rejected() {
        let text = format!("{MINIMAL}{MINIMAL}");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("`vc1`"), "{message}");
        assert!(message.contains("used by another plugin"), "{message}");
    }

    #[test]
    fn invalid_origin_is_rejected() {
        let text = MINIMAL.replace("https://127.0.0.1:8989", "ftp://127.0.0.1");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("ftp://127.0.0.1"), "{message}");
    }

    #[test]
    fn tls_for_ungranted_origin_is_rejected() {
        let text = format!("{MINIMAL}tls.\"https://10.1.1.1:443\" = {{ insecure = true }}\n");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("does not match"), "{message}");
    }

    #[test]
    fn tls_for_cidr_origin_is_rejected() {
        let text = MINIMAL.replace("https://127.0.0.1:8989", "https://10.0.0.0/8:443");
        let text = format!("{text}tls.\"https://10.0.0.0/8:443\" = {{ insecure = true }}\n");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("one host and port"), "{message}");
    }

    #[test]
    fn alert_rule_with_network_is_rejected() {
        let text = MINIMAL.replace("\"collector\"", "\"alert-rule\"");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("no network access"), "{message}");
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let text = format!("{MINIMAL}call_timeout_secs = 0\n");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("call_timeout_secs"), "{message}");
    }
}
