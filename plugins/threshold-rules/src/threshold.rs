//! One validated threshold and how a sample's value is judged against it.

use serde::Deserialize;
use vmpulse_plugin_sdk::{Finding, MetricGroup, Severity, VmSample, metrics};

use crate::labels;

/// The side of a threshold that is a problem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Values greater than a level cross it, as for usage and latency.
    #[default]
    Above,
    /// Values less than a level cross it, as for free memory.
    Below,
}

impl Direction {
    /// Returns true when `value` is strictly beyond `threshold` in this direction.
    pub fn crosses(self, value: f64, threshold: f64) -> bool {
        match self {
            Direction::Above => value > threshold,
            Direction::Below => value < threshold,
        }
    }

    /// Returns the word used in config and messages.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Above => "above",
            Direction::Below => "below",
        }
    }
}

/// One severity level of a threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub severity: Severity,
    pub threshold: f64,
}

/// A validated threshold on one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The metric path, such as `cpu.usagePercent`, which is also the finding's rule name.
    pub path: &'static str,
    pub group: MetricGroup,
    pub direction: Direction,
    /// The configured levels from the least to the most severe. Never empty.
    pub levels: Vec<Level>,
    pub hold_seconds: u32,
}

impl Threshold {
    /// Returns the most severe level that `value` crosses.
    pub fn crossed_level(&self, value: f64) -> Option<Level> {
        self.levels
            .iter()
            .rev()
            .find(|level| self.direction.crosses(value, level.threshold))
            .copied()
    }

    /// Returns a finding for the most severe level the sample's value crosses.
    ///
    /// A sample without the metric gives `None`, so missing data never fires.
    pub fn evaluate(&self, sample: &VmSample) -> Option<Finding> {
        let value = metrics::value(sample, self.path)?;
        let level = self.crossed_level(value)?;

        Some(Finding {
            rule: self.path.to_owned(),
            group: self.group,
            severity: level.severity,
            threshold: level.threshold,
            current_value: value,
            hold_seconds: self.hold_seconds,
            message: self.message(value, level),
        })
    }

    /// Writes the English message, such as
    /// `CPU usage 92.5 % is above the high threshold 80 %`.
    fn message(&self, value: f64, level: Level) -> String {
        let label = labels::label(self.path);
        format!(
            "{} {} is {} the {} threshold {}",
            label.name,
            label.quantity(value),
            self.direction.name(),
            severity_name(level.severity),
            label.quantity(level.threshold),
        )
    }
}

/// Returns the severity's name as the config keys spell it.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu_usage(direction: Direction, levels: &[(Severity, f64)]) -> Threshold {
        Threshold {
            path: "cpu.usagePercent",
            group: MetricGroup::Cpu,
            direction,
            levels: levels
                .iter()
                .map(|&(severity, threshold)| Level {
                    severity,
                    threshold,
                })
                .collect(),
            hold_seconds: 30,
        }
    }

    fn severity_at(threshold: &Threshold, value: f64) -> Option<Severity> {
        threshold.crossed_level(value).map(|level| level.severity)
    }

    #[test]
    fn above_picks_most_severe_crossed_level() {
        let threshold = cpu_usage(
            Direction::Above,
            &[(Severity::Medium, 70.0), (Severity::High, 80.0)],
        );

        assert_eq!(severity_at(&threshold, 69.9), None);
        assert_eq!(
            severity_at(&threshold, 70.0),
            None,
            "a level is crossed strictly"
        );
        assert_eq!(severity_at(&threshold, 70.1), Some(Severity::Medium));
        assert_eq!(severity_at(&threshold, 80.0), Some(Severity::Medium));
        assert_eq!(severity_at(&threshold, 80.1), Some(Severity::High));
        assert_eq!(severity_at(&threshold, 1000.0), Some(Severity::High));
    }

    #[test]
    fn below_picks_most_severe_crossed_level() {
        let threshold = cpu_usage(
            Direction::Below,
            &[(Severity::Low, 20.0), (Severity::Critical, 5.0)],
        );

        assert_eq!(severity_at(&threshold, 20.0), None);
        assert_eq!(severity_at(&threshold, 19.0), Some(Severity::Low));
        assert_eq!(severity_at(&threshold, 5.0), Some(Severity::Low));
        assert_eq!(severity_at(&threshold, 4.9), Some(Severity::Critical));
    }

    #[test]
    fn nan_crosses_nothing() {
        let threshold = cpu_usage(Direction::Above, &[(Severity::Low, 0.0)]);

        assert_eq!(severity_at(&threshold, f64::NAN), None);
    }

    #[test]
    fn finding_carries_level_value_and_message() {
        let threshold = cpu_usage(
            Direction::Above,
            &[(Severity::High, 80.0), (Severity::Critical, 95.0)],
        );
        let mut sample = VmSample::empty("vm-1", 0);
        sample.cpu.usage_percent = Some(92.5);

        let finding = threshold.evaluate(&sample).unwrap();

        assert_eq!(finding.rule, "cpu.usagePercent");
        assert_eq!(finding.group, MetricGroup::Cpu);
        assert_eq!(finding.severity, Severity::High);
        assert_eq!(finding.threshold, 80.0);
        assert_eq!(finding.current_value, 92.5);
        assert_eq!(finding.hold_seconds, 30);
        assert_eq!(
            finding.message,
            "CPU usage 92.5 % is above the high threshold 80 %"
        );
    }

    #[test]
    fn missing_value_gives_no_finding() {
        let threshold = cpu_usage(Direction::Above, &[(Severity::Low, 0.0)]);

        assert!(threshold.evaluate(&VmSample::empty("vm-1", 0)).is_none());
    }
}
