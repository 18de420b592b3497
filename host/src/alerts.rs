//! Alerts: findings of rule plugins turned into alerts with hold times and hysteresis.
//!
//! The engine keeps one alert per (VM, rule plugin, rule). A finding must persist for its
//! hold time before the alert fires; a higher severity that persists as long escalates it. A
//! value must go back past its threshold by `hysteresis_percent` before the alert steps down
//! or, after `clear_cycles` clean cycles in a row, resolves. A VM whose data is missing
//! (collection failed, or the rule's metric or finding unknown or not a finite number)
//! changes nothing: missing data neither fires nor resolves an alert.

use poem_openapi::Enum;
use serde::{Deserialize, Serialize};

use crate::i18n::Lang;
use crate::plugin::bindings::types as wit;

/// The severity of a crossed threshold, lowest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Enum,
)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl From<wit::Severity> for Severity {
    fn from(severity: wit::Severity) -> Self {
        match severity {
            wit::Severity::Low => Self::Low,
            wit::Severity::Medium => Self::Medium,
            wit::Severity::High => Self::High,
            wit::Severity::Critical => Self::Critical,
        }
    }
}

/// The metric group an alert is about (`metric` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum AlertMetric {
    Cpu,
    Memory,
    Disk,
    Network,
}

impl From<wit::MetricGroup> for AlertMetric {
    fn from(group: wit::MetricGroup) -> Self {
        match group {
            wit::MetricGroup::Cpu => Self::Cpu,
            wit::MetricGroup::Memory => Self::Memory,
            wit::MetricGroup::Disk => Self::Disk,
            wit::MetricGroup::Network => Self::Network,
        }
    }
}

/// One alert, active or resolved, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Stable id, unchanged by escalation, kept across restarts.
    pub id: String,
    pub vm_id: String,
    pub vm_name: String,
    /// The rule plugin that raised it.
    pub plugin: String,
    /// The condition's name from the rule, such as `cpu.usagePercent`.
    pub rule: String,
    pub metric: AlertMetric,
    pub severity: Severity,
    pub threshold: f64,
    pub current_value: f64,
    /// Whether the alert is about values above or below the threshold.
    pub direction: Direction,
    /// The rule's English description of the latest finding.
    pub rule_message: String,
    /// When the alert fired, in ms since the Unix epoch.
    pub fired_at_ms: i64,
    /// When the severity last changed (fired, escalated or stepped down).
    pub changed_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at_ms: Option<i64>,
}

/// The side of its threshold an alert's values are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum Direction {
    Above,
    Below,
}

/// The change an alert went through in a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertChange {
    Fired,
    Escalated,
    SteppedDown,
    Resolved,
    Acknowledged,
}

/// A change of one alert, for the push channel.
#[derive(Debug, Clone)]
pub struct AlertEvent {
    pub change: AlertChange,
    pub alert: Alert,
}

impl AlertEvent {
    /// Returns true for the changes pushed to clients as `alert` messages.
    pub fn is_pushed(&self) -> bool {
        matches!(self.change, AlertChange::Fired | AlertChange::Escalated)
    }
}

impl Alert {
    /// Returns the alert's message in `lang`, built from the metric, severity and numbers.
    pub fn message(&self, lang: Lang) -> String {
        crate::alerts_text::message(self, lang)
    }
}

mod engine;

pub use engine::{AlertEngine, AlertError, RuleResult};
