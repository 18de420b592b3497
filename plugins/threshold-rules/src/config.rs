//! The plugin's `config` table, merged over the [defaults](crate::defaults) and validated
//! into [`Threshold`]s.
//!
//! ```toml
//! [plugins.config]
//! hold_seconds = 60
//!
//! [plugins.config.thresholds."cpu.usagePercent"]
//! medium = 70.0
//! high = 80.0
//! critical = 90.0
//! hold_seconds = 120
//!
//! [plugins.config.thresholds."memory.freeMB"]
//! direction = "below"
//! high = 512.0
//! critical = 128.0
//!
//! [plugins.config.thresholds."network.errors"]
//! enabled = false
//! ```
//!
//! An entry replaces the default for its path as a whole: levels it leaves out are unset,
//! not inherited from the default.

use std::collections::BTreeMap;

use serde::Deserialize;
use vmpulse_plugin_sdk::{PluginError, Severity, metrics};

use crate::defaults;
use crate::threshold::{Direction, Level, Threshold, severity_name};

/// Hold time of every threshold without its own, in seconds: two collection cycles at the
/// host's default 30 s interval.
pub const DEFAULT_HOLD_SECONDS: u32 = 60;

/// The whole `config` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seconds a crossing must persist before the host raises an alert, for every
    /// threshold that sets no `hold_seconds` of its own.
    #[serde(default = "default_hold_seconds")]
    pub hold_seconds: u32,
    /// Threshold entries keyed by metric path. Each is parsed on its own so that an error
    /// can name its path.
    #[serde(default)]
    pub thresholds: BTreeMap<String, serde_json::Value>,
}

/// One metric's entry under `thresholds`, as written by the operator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdEntry {
    pub low: Option<f64>,
    pub medium: Option<f64>,
    pub high: Option<f64>,
    pub critical: Option<f64>,
    /// Overrides the config's `hold_seconds` for this metric.
    pub hold_seconds: Option<u32>,
    #[serde(default)]
    pub direction: Direction,
    /// False drops the threshold, which is how an operator removes a default.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_hold_seconds() -> u32 {
    DEFAULT_HOLD_SECONDS
}

fn default_enabled() -> bool {
    true
}

impl Config {
    /// Reads the plugin's `config` table and returns the enabled thresholds.
    ///
    /// # Errors
    ///
    /// [`PluginError::Config`] naming the key or metric path at fault.
    pub fn load() -> Result<Vec<Threshold>, PluginError> {
        let config: Self = vmpulse_plugin_sdk::config()?;
        config.into_thresholds().map_err(PluginError::Config)
    }

    /// Merges the entries over the defaults and validates each, in path order.
    ///
    /// A disabled entry is still checked, so a misspelled path that was meant to drop a
    /// default is an error and not a silent no-op.
    ///
    /// # Errors
    ///
    /// A message naming the metric path and the problem.
    pub fn into_thresholds(self) -> Result<Vec<Threshold>, String> {
        let mut entries = defaults::entries();
        for (path, value) in self.thresholds {
            let entry = serde_json::from_value(value)
                .map_err(|err| invalid_entry(&path, &err.to_string()))?;
            entries.insert(path, entry);
        }

        let mut thresholds = Vec::new();
        for (path, entry) in &entries {
            if let Some(threshold) = validate(path, entry, self.hold_seconds)? {
                thresholds.push(threshold);
            }
        }
        Ok(thresholds)
    }
}

/// Checks one entry and returns its threshold, or `None` when it is disabled.
fn validate(
    path: &str,
    entry: &ThresholdEntry,
    default_hold_seconds: u32,
) -> Result<Option<Threshold>, String> {
    let Some(&known_path) = metrics::PATHS.iter().find(|known| **known == path) else {
        return Err(invalid_entry(path, &unknown_path_reason(path)));
    };
    let Some(group) = metrics::group(path) else {
        return Err(invalid_entry(
            path,
            "system metrics cannot raise alerts, because a finding's group must be cpu, \
             memory, disk or network",
        ));
    };
    let levels = levels(entry);
    check_order(entry.direction, &levels).map_err(|reason| invalid_entry(path, &reason))?;

    if !entry.enabled {
        return Ok(None);
    }
    if levels.is_empty() {
        return Err(invalid_entry(
            path,
            "no level is set: set at least one of low, medium, high and critical, or set \
             enabled = false to drop the threshold",
        ));
    }
    Ok(Some(Threshold {
        path: known_path,
        group,
        direction: entry.direction,
        levels,
        hold_seconds: entry.hold_seconds.unwrap_or(default_hold_seconds),
    }))
}

/// Returns the entry's levels from the least to the most severe.
fn levels(entry: &ThresholdEntry) -> Vec<Level> {
    [
        (Severity::Low, entry.low),
        (Severity::Medium, entry.medium),
        (Severity::High, entry.high),
        (Severity::Critical, entry.critical),
    ]
    .into_iter()
    .filter_map(|(severity, threshold)| {
        threshold.map(|threshold| Level {
            severity,
            threshold,
        })
    })
    .collect()
}

/// Checks that each level lies strictly beyond the less severe one in the direction, so
/// that a worse value always reaches a more severe level.
fn check_order(direction: Direction, levels: &[Level]) -> Result<(), String> {
    for pair in levels.windows(2) {
        let (lower, higher) = (pair[0], pair[1]);
        if !direction.crosses(higher.threshold, lower.threshold) {
            let relation = match direction {
                Direction::Above => "greater",
                Direction::Below => "less",
            };
            return Err(format!(
                "{} ({}) must be {relation} than {} ({}) when direction is \"{}\"",
                severity_name(higher.severity),
                higher.threshold,
                severity_name(lower.severity),
                lower.threshold,
                direction.name(),
            ));
        }
    }
    Ok(())
}

/// Explains an unknown path, listing the paths of its group when the group exists.
fn unknown_path_reason(path: &str) -> String {
    let group = path.split_once('.').map_or(path, |(group, _)| group);
    let prefix = format!("{group}.");
    let siblings: Vec<&str> = metrics::PATHS
        .iter()
        .copied()
        .filter(|known| known.starts_with(&prefix))
        .collect();
    if siblings.is_empty() {
        "unknown metric path: a path is a group (cpu, memory, disk or network) and a metric \
         name, such as \"cpu.usagePercent\""
            .to_owned()
    } else {
        format!(
            "unknown metric path: the {group} metrics are {}",
            siblings.join(", ")
        )
    }
}

fn invalid_entry(path: &str, reason: &str) -> String {
    format!("invalid config: thresholds.\"{path}\": {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds(json: &str) -> Result<Vec<Threshold>, String> {
        let config: Config = serde_json::from_str(json).map_err(|err| err.to_string())?;
        config.into_thresholds()
    }

    fn find<'a>(thresholds: &'a [Threshold], path: &str) -> Option<&'a Threshold> {
        thresholds.iter().find(|threshold| threshold.path == path)
    }

    #[test]
    fn defaults_are_valid_and_enabled() {
        let thresholds = thresholds("{}").unwrap();

        assert_eq!(thresholds.len(), defaults::entries().len());
        for threshold in &thresholds {
            assert_eq!(threshold.hold_seconds, DEFAULT_HOLD_SECONDS);
            assert_eq!(threshold.direction, Direction::Above);
        }
    }

    #[test]
    fn entry_replaces_default_whole() {
        let thresholds =
            thresholds(r#"{"thresholds": {"cpu.usagePercent": {"critical": 99.0}}}"#).unwrap();

        let cpu = find(&thresholds, "cpu.usagePercent").unwrap();
        assert_eq!(
            cpu.levels,
            vec![Level {
                severity: Severity::Critical,
                threshold: 99.0
            }]
        );
    }

    #[test]
    fn hold_seconds_fall_back_to_config() {
        let thresholds = thresholds(
            r#"{"hold_seconds": 15,
                "thresholds": {"cpu.ready": {"high": 10.0, "hold_seconds": 300}}}"#,
        )
        .unwrap();

        assert_eq!(find(&thresholds, "cpu.ready").unwrap().hold_seconds, 300);
        assert_eq!(
            find(&thresholds, "cpu.usagePercent").unwrap().hold_seconds,
            15
        );
    }

    #[test]
    fn disabled_entry_drops_default() {
        let thresholds =
            thresholds(r#"{"thresholds": {"disk.readLatency": {"enabled": false}}}"#).unwrap();

        assert!(find(&thresholds, "disk.readLatency").is_none());
        assert!(find(&thresholds, "disk.writeLatency").is_some());
    }

    #[test]
    fn below_requires_falling_levels() {
        let rising = thresholds(
            r#"{"thresholds": {"memory.freeMB": {"direction": "below", "high": 100.0, "critical": 200.0}}}"#,
        )
        .unwrap_err();
        let falling = thresholds(
            r#"{"thresholds": {"memory.freeMB": {"direction": "below", "high": 200.0, "critical": 100.0}}}"#,
        )
        .unwrap();

        assert_eq!(
            rising,
            "invalid config: thresholds.\"memory.freeMB\": critical (200) must be less than \
             high (100) when direction is \"below\""
        );
        let free = find(&falling, "memory.freeMB").unwrap();
        assert_eq!(free.direction, Direction::Below);
    }

    #[test]
    fn equal_levels_are_rejected() {
        let error = thresholds(r#"{"thresholds": {"cpu.ready": {"low": 5.0, "medium": 5.0}}}"#)
            .unwrap_err();

        assert!(
            error.contains("medium (5) must be greater than low (5)"),
            "{error}"
        );
    }

    #[test]
    fn disabled_entry_with_unknown_path_is_rejected() {
        let error = thresholds(r#"{"thresholds": {"disk.readLatencyMs": {"enabled": false}}}"#)
            .unwrap_err();

        assert!(error.contains("\"disk.readLatencyMs\""), "{error}");
        assert!(
            error.contains("disk.readLatency, disk.writeLatency"),
            "{error}"
        );
    }

    #[test]
    fn unknown_group_lists_groups() {
        let error = thresholds(r#"{"thresholds": {"gpu.usage": {"high": 1.0}}}"#).unwrap_err();

        assert!(error.contains("unknown metric path"), "{error}");
        assert!(error.contains("cpu, memory, disk or network"), "{error}");
    }

    #[test]
    fn unknown_direction_is_rejected() {
        let error =
            thresholds(r#"{"thresholds": {"cpu.ready": {"high": 1.0, "direction": "over"}}}"#)
                .unwrap_err();

        assert!(error.contains("thresholds.\"cpu.ready\""), "{error}");
        assert!(error.contains("unknown variant `over`"), "{error}");
    }
}
