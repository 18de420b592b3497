//! The plugin's `config` table and its checks.
//!
//! ```toml
//! config = { url = "https://vc.lab.example/sdk", username = "monitor@vsphere.local" }
//! secrets = { password = "VMPULSE_VC_PASSWORD" }
//! ```

use serde::Deserialize;
use vmpulse_plugin_sdk::PluginError;

/// Objects per RetrievePropertiesEx page unless `page_size` sets another number. vCenter pages
/// at about this size on its own.
const DEFAULT_PAGE_SIZE: u32 = 100;

/// The settings of one vCenter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The SDK endpoint, such as `https://vc.example.com/sdk`.
    pub url: String,
    pub username: String,
    /// `maxObjects` of every RetrievePropertiesEx page.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The most (entity, counter) pairs one QueryPerf may request; unset or -1 means no
    /// limit. Set it to vCenter's `config.vpxd.stats.maxQueryMetrics` if real-time queries
    /// of a batch fail with a fault about query size.
    #[serde(default)]
    pub max_query_metrics: Option<i64>,
}

fn default_page_size() -> u32 {
    DEFAULT_PAGE_SIZE
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

    fn validate(&self) -> Result<(), String> {
        let lower = self.url.to_ascii_lowercase();
        if !lower.starts_with("https://") && !lower.starts_with("http://") {
            return Err(format!(
                "invalid config: `url` {:?} must start with https:// (for example \
                 https://vc.example.com/sdk)",
                self.url
            ));
        }
        if self.username.is_empty() {
            return Err("invalid config: `username` must not be empty".to_owned());
        }
        if self.page_size == 0 {
            return Err("invalid config: `page_size` must be at least 1".to_owned());
        }
        if let Some(limit) = self.max_query_metrics
            && limit != -1
            && limit < 1
        {
            return Err(format!(
                "invalid config: `max_query_metrics` is {limit}. Use a positive number \
                 or -1 for no limit"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        let config: Config = serde_json::from_str(json).map_err(|err| err.to_string())?;
        config.validate().map(|()| config)
    }

    #[test]
    fn applies_defaults() {
        let config = parse(r#"{"url": "https://vc/sdk", "username": "u"}"#).unwrap();
        assert_eq!(config.page_size, 100);
        assert_eq!(config.max_query_metrics, None);
    }

    #[test]
    fn unknown_key_is_named() {
        let error = parse(r#"{"url": "https://vc/sdk", "username": "u", "pasword": "x"}"#);
        assert!(error.unwrap_err().contains("pasword"));
    }

    #[test]
    fn rejects_invalid_values() {
        for (json, key) in [
            (r#"{"url": "vc/sdk", "username": "u"}"#, "url"),
            (r#"{"url": "https://vc/sdk", "username": ""}"#, "username"),
            (
                r#"{"url": "https://vc/sdk", "username": "u", "page_size": 0}"#,
                "page_size",
            ),
            (
                r#"{"url": "https://vc/sdk", "username": "u", "max_query_metrics": 0}"#,
                "max_query_metrics",
            ),
        ] {
            let error = parse(json).unwrap_err();
            assert!(error.contains(key), "{json}: {error}");
        }
    }
}
