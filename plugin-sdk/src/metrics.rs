//! Metric paths: each value of a [`VmSample`] named `group.name`, as in the host's
//! RealtimeMetrics JSON (`cpu.usagePercent`, `disk.readLatency`).
//!
//! A rule that lets its operator pick metrics by path validates the path against
//! [`PATHS`] and reads it with [`value`]:
//!
//! ```ignore
//! use vmpulse_plugin_sdk::metrics;
//!
//! let usage = metrics::value(&sample, "memory.usagePercent");
//! ```
//!
//! The names and their order match the host's field table, which the history API and the
//! store also use. An integration test compares the two lists.

use crate::{MetricGroup, VmSample};

macro_rules! metric_paths {
    ($(
        $group:ident as $json_group:literal { $($field:ident as $json:literal),* $(,)? }
    )*) => {
        /// Every metric path, in the order of the host's field table.
        pub const PATHS: &[&str] = &[$($(concat!($json_group, ".", $json),)*)*];

        /// Returns the value at `path`, such as `cpu.usagePercent`.
        ///
        /// `None` means the sample lacks the value or `path` is not in [`PATHS`]. Check a
        /// path that comes from config against [`PATHS`] first.
        pub fn value(sample: &VmSample, path: &str) -> Option<f64> {
            match path {
                $($(concat!($json_group, ".", $json) => sample.$group.$field,)*)*
                _ => None,
            }
        }
    };
}

metric_paths! {
    cpu as "cpu" {
        usage_mhz as "usageMHz",
        ready as "ready",
        wait as "wait",
        limit as "limit",
        reservation as "reservation",
        usage_percent as "usagePercent",
        load1min as "load1min",
        load5min as "load5min",
        load15min as "load15min",
        context_switches as "contextSwitches",
    }
    memory as "memory" {
        usage_mb as "usageMB",
        granted_mb as "grantedMB",
        active_mb as "activeMB",
        ballooned_mb as "balloonedMB",
        compressed_mb as "compressedMB",
        swapped_mb as "swappedMB",
        total_mb as "totalMB",
        used_mb as "usedMB",
        free_mb as "freeMB",
        buffers_mb as "buffersMB",
        cached_mb as "cachedMB",
        swap_used_mb as "swapUsedMB",
        usage_percent as "usagePercent",
        available_mb as "availableMB",
        committed_mb as "committedMB",
    }
    disk as "disk" {
        read_latency as "readLatency",
        write_latency as "writeLatency",
        read_iops as "readIOPS",
        write_iops as "writeIOPS",
        throughput_mbps as "throughputMBps",
        usage_percent as "usagePercent",
        used_mb as "usedMB",
        free_mb as "freeMB",
        read_bytes as "readBytes",
        write_bytes as "writeBytes",
        inodes_total as "inodesTotal",
        inodes_used as "inodesUsed",
    }
    network as "network" {
        in_bps as "inBps",
        out_bps as "outBps",
        in_pps as "inPps",
        out_pps as "outPps",
        dropped_packets as "droppedPackets",
        in_bytes as "inBytes",
        out_bytes as "outBytes",
        in_packets as "inPackets",
        out_packets as "outPackets",
        errors as "errors",
        dropped as "dropped",
    }
    system as "system" {
        uptime as "uptime",
        process_total as "processTotal",
        process_running as "processRunning",
        process_sleeping as "processSleeping",
    }
}

/// Returns the finding group of the metric at `path`.
///
/// `None` for a path not in [`PATHS`], and for `system.*` paths because the WIT
/// `metric-group` enum has no system case, so no finding can carry them.
pub fn group(path: &str) -> Option<MetricGroup> {
    if !PATHS.contains(&path) {
        return None;
    }
    match path.split_once('.')?.0 {
        "cpu" => Some(MetricGroup::Cpu),
        "memory" => Some(MetricGroup::Memory),
        "disk" => Some(MetricGroup::Disk),
        "network" => Some(MetricGroup::Network),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_reads_each_group_by_path() {
        let mut sample = VmSample::empty("vm-1", 0);
        sample.cpu.ready = Some(1.0);
        sample.memory.free_mb = Some(2.0);
        sample.disk.write_latency = Some(3.0);
        sample.network.dropped_packets = Some(4.0);
        sample.system.uptime = Some(5.0);

        assert_eq!(value(&sample, "cpu.ready"), Some(1.0));
        assert_eq!(value(&sample, "memory.freeMB"), Some(2.0));
        assert_eq!(value(&sample, "disk.writeLatency"), Some(3.0));
        assert_eq!(value(&sample, "network.droppedPackets"), Some(4.0));
        assert_eq!(value(&sample, "system.uptime"), Some(5.0));
        assert_eq!(value(&sample, "disk.readLatency"), None);
        assert_eq!(value(&sample, "cpu.nonsense"), None);
    }

    #[test]
    fn paths_are_unique() {
        for (index, path) in PATHS.iter().enumerate() {
            assert!(!PATHS[..index].contains(path), "{path} is listed twice");
        }
    }

    #[test]
    fn group_maps_alert_groups_only() {
        assert_eq!(group("cpu.ready"), Some(MetricGroup::Cpu));
        assert_eq!(group("memory.usagePercent"), Some(MetricGroup::Memory));
        assert_eq!(group("disk.inodesUsed"), Some(MetricGroup::Disk));
        assert_eq!(group("network.errors"), Some(MetricGroup::Network));
        assert_eq!(group("system.uptime"), None);
        assert_eq!(group("cpu.nonsense"), None);
        assert_eq!(group("cpu"), None);
    }
}
