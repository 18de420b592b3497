//! The plugin's `config` table and its checks.
//!
//! ```toml
//! [plugins.config]
//! url_template = "http://{guest_ip}:9100/metrics"
//! timeout_ms = 5000
//! max_body_bytes = 8388608
//! overrides = { "web-01" = "http://10.0.8.15:9182/metrics" }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use vmpulse_plugin_sdk::PluginError;

use crate::target::Template;

/// node_exporter's default port and path.
const DEFAULT_URL_TEMPLATE: &str = "http://{guest_ip}:9100/metrics";
const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// node_exporter serves about 60 KiB on a small VM, so this leaves room for exporters
/// with many collectors or textfile metrics.
const DEFAULT_MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

/// How to find and read each VM's exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The exporter URL of a VM, with `{guest_ip}`, `{guest_hostname}` and `{vm_name}`
    /// replaced by the VM's values (see `target`).
    #[serde(default = "default_url_template")]
    pub url_template: String,
    /// Full exporter URLs by VM id or VM name, used instead of the template. An id entry
    /// wins over a name entry.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
    /// Limit for connecting, for the first response byte and for each gap between bytes,
    /// in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest exporter response accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
}

fn default_url_template() -> String {
    DEFAULT_URL_TEMPLATE.to_owned()
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}

impl Config {
    /// Reads the plugin's `config` table and checks it.
    ///
    /// # Errors
    ///
    /// [`PluginError::Config`] naming the key at fault, including unknown keys.
    pub fn load() -> Result<Self, PluginError> {
        let config: Self = vmpulse_plugin_sdk::config()?;
        config.validate().map_err(PluginError::Config)?;
        Ok(config)
    }

    /// Returns [`Config::max_body_bytes`] as a length, saturating on a 32-bit target.
    pub fn max_body_len(&self) -> usize {
        usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX)
    }

    fn validate(&self) -> Result<(), String> {
        Template::parse(&self.url_template)
            .map_err(|reason| format!("invalid config: `url_template`: {reason}"))?;
        for (vm, url) in &self.overrides {
            if !has_http_scheme(url) {
                return Err(format!(
                    "invalid config: `overrides.{vm}` is {url:?}; expected a full URL such as \
                     http://10.0.0.5:9100/metrics"
                ));
            }
        }
        if self.timeout_ms == 0 {
            return Err("invalid config: `timeout_ms` must be at least 1".to_owned());
        }
        if self.max_body_bytes == 0 {
            return Err("invalid config: `max_body_bytes` must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// Returns true when `url` starts with `http://` or `https://`, in any case.
pub fn has_http_scheme(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        let config: Config = serde_json::from_str(json).map_err(|err| err.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults() {
        let config = parse("{}").unwrap();

        assert_eq!(config.url_template, "http://{guest_ip}:9100/metrics");
        assert!(config.overrides.is_empty());
        assert_eq!(config.timeout_ms, 5000);
        assert_eq!(config.max_body_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn all_keys() {
        let config = parse(
            r#"{"url_template": "https://{guest_hostname}:9182/metrics",
                "overrides": {"vm-1": "http://10.0.0.1:9100/metrics"},
                "timeout_ms": 2000, "max_body_bytes": 1024}"#,
        )
        .unwrap();

        assert_eq!(config.overrides["vm-1"], "http://10.0.0.1:9100/metrics");
        assert_eq!(config.timeout_ms, 2000);
        assert_eq!(config.max_body_len(), 1024);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(r#"{"url_templte": "http://{guest_ip}/"}"#).unwrap_err();

        assert!(err.contains("unknown field `url_templte`"), "{err}");
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let err = parse(r#"{"url_template": "http://{guest_ipv6}:9100/"}"#).unwrap_err();

        assert!(err.contains("`url_template`"), "{err}");
        assert!(err.contains("{guest_ipv6}"), "{err}");
    }

    #[test]
    fn template_needs_http_scheme() {
        let err = parse(r#"{"url_template": "{guest_ip}:9100/metrics"}"#).unwrap_err();

        assert!(err.contains("http://"), "{err}");
    }

    #[test]
    fn override_needs_full_url() {
        let err = parse(r#"{"overrides": {"web-01": "10.0.0.1:9100"}}"#).unwrap_err();

        assert!(err.contains("`overrides.web-01`"), "{err}");
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert!(
            parse(r#"{"timeout_ms": 0}"#)
                .unwrap_err()
                .contains("timeout_ms")
        );
        assert!(
            parse(r#"{"max_body_bytes": 0}"#)
                .unwrap_err()
                .contains("max_body_bytes")
        );
    }
}
