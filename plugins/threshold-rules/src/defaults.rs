//! The thresholds that apply when the operator's config does not name the metric.
//!
//! Every default watches values above its levels and sets medium, high and critical, but
//! no low level, because a low finding for a busy but healthy VM is noise. The reasons for
//! each number are in the plugin's README.

use std::collections::BTreeMap;

use crate::config::ThresholdEntry;
use crate::threshold::Direction;

/// A default threshold: a metric path and its medium, high and critical levels.
struct DefaultThreshold {
    path: &'static str,
    medium: f64,
    high: f64,
    critical: f64,
}

const DEFAULTS: &[DefaultThreshold] = &[
    DefaultThreshold {
        path: "cpu.usagePercent",
        medium: 70.0,
        high: 80.0,
        critical: 95.0,
    },
    // Percent of the interval per vCPU. A common rule among vSphere administrators is that
    // ready time above 5 % slows the guest and above 10 % is a serious problem.
    DefaultThreshold {
        path: "cpu.ready",
        medium: 5.0,
        high: 10.0,
        critical: 20.0,
    },
    DefaultThreshold {
        path: "memory.usagePercent",
        medium: 75.0,
        high: 85.0,
        critical: 95.0,
    },
    DefaultThreshold {
        path: "disk.usagePercent",
        medium: 80.0,
        high: 90.0,
        critical: 95.0,
    },
    DefaultThreshold {
        path: "disk.readLatency",
        medium: 20.0,
        high: 50.0,
        critical: 100.0,
    },
    DefaultThreshold {
        path: "disk.writeLatency",
        medium: 20.0,
        high: 50.0,
        critical: 100.0,
    },
    // A count per sample interval, which is 20 s for vCenter's realtime statistics, so
    // 100 is 5 packets per second.
    DefaultThreshold {
        path: "network.droppedPackets",
        medium: 100.0,
        high: 1000.0,
        critical: 10000.0,
    },
    // Per-second rates from the guest, set to the same rates as `network.droppedPackets`
    // over a 20 s interval.
    DefaultThreshold {
        path: "network.dropped",
        medium: 5.0,
        high: 50.0,
        critical: 500.0,
    },
    // A virtual NIC has no cable to corrupt frames, so any steady error rate points at a
    // driver or configuration fault and the levels sit lower than for drops.
    DefaultThreshold {
        path: "network.errors",
        medium: 1.0,
        high: 10.0,
        critical: 100.0,
    },
];

/// Returns the default thresholds keyed by metric path, enabled and without their own hold
/// time, so the config's `hold_seconds` applies.
pub fn entries() -> BTreeMap<String, ThresholdEntry> {
    DEFAULTS
        .iter()
        .map(|default| {
            let entry = ThresholdEntry {
                low: None,
                medium: Some(default.medium),
                high: Some(default.high),
                critical: Some(default.critical),
                hold_seconds: None,
                direction: Direction::Above,
                enabled: true,
            };
            (default.path.to_owned(), entry)
        })
        .collect()
}
