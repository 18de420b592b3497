//! The vmpulse default alert rule: low, medium, high and critical thresholds per metric.
//!
//! Each threshold watches one metric path of the sample, such as `cpu.usagePercent`, and
//! reports the most severe level the value crosses, so a VM gets at most one finding per
//! metric. The host applies hold times and hysteresis. Declared in the host's config file
//! as:
//!
//! ```toml
//! [[plugins]]
//! id = "thresholds"
//! kind = "alert-rule"
//! component = "plugins/vmpulse_plugin_threshold_rules.wasm"
//!
//! [plugins.config.thresholds."cpu.usagePercent"]
//! high = 85.0
//! critical = 95.0
//! ```
//!
//! The `config` keys are in [`config`], the defaults in [`defaults`], the comparison in
//! [`threshold`] and the message names and units in [`labels`].

pub mod config;
pub mod defaults;
pub mod labels;
pub mod threshold;

use vmpulse_plugin_sdk::{AlertRule, Finding, PluginError, PluginInfo, Vm, VmSample};

use crate::config::Config;

struct ThresholdRules;

impl AlertRule for ThresholdRules {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "threshold-rules",
            env!("CARGO_PKG_VERSION"),
            "Low, medium, high and critical thresholds per metric",
        )
    }

    /// Parses the config on every call, because each call runs in a fresh instance.
    fn evaluate(_vm: Vm, metrics: VmSample) -> Result<Vec<Finding>, PluginError> {
        let thresholds = Config::load()?;

        let findings = thresholds
            .iter()
            .filter_map(|threshold| threshold.evaluate(&metrics))
            .collect();
        Ok(findings)
    }
}

vmpulse_plugin_sdk::export_alert_rule!(ThresholdRules);
