//! English names and units of the metrics a threshold can watch, for finding messages.
//!
//! Units follow the field comments of the WIT `vm-sample` record. The guest counters
//! (`network.errors`, `network.inBytes` and the like) are per-second rates, as the guest OS
//! collector reports them. The host localizes its own text from the finding's rule and
//! numbers, so these names only reach clients that show the plugin's message as is.

/// A metric's English name and unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    /// Sentence-case name, such as `CPU usage`.
    pub name: &'static str,
    /// Unit symbol after the number, empty for a plain count or ratio.
    pub unit: &'static str,
}

impl Label {
    /// Formats `value` with at most two decimals and the unit, such as `92.5 %`.
    pub fn quantity(&self, value: f64) -> String {
        let number = format_number(value);
        if self.unit.is_empty() {
            number
        } else {
            format!("{number} {}", self.unit)
        }
    }
}

/// Returns the label of the metric at `path`.
///
/// A path outside the table gets the path itself as its name and no unit, so a message is
/// still readable. A unit test checks that every alertable path is in the table.
pub fn label(path: &'static str) -> Label {
    known_label(path).unwrap_or(Label {
        name: path,
        unit: "",
    })
}

fn known_label(path: &str) -> Option<Label> {
    let (name, unit) = match path {
        "cpu.usageMHz" => ("CPU usage", "MHz"),
        "cpu.ready" => ("CPU ready time", "%"),
        "cpu.wait" => ("CPU wait time", "%"),
        "cpu.limit" => ("CPU limit", "MHz"),
        "cpu.reservation" => ("CPU reservation", "MHz"),
        "cpu.usagePercent" => ("CPU usage", "%"),
        "cpu.load1min" => ("1-minute load average", ""),
        "cpu.load5min" => ("5-minute load average", ""),
        "cpu.load15min" => ("15-minute load average", ""),
        "cpu.contextSwitches" => ("Context switch rate", "switches/s"),
        "memory.usageMB" => ("Memory usage", "MB"),
        "memory.grantedMB" => ("Granted memory", "MB"),
        "memory.activeMB" => ("Active memory", "MB"),
        "memory.balloonedMB" => ("Ballooned memory", "MB"),
        "memory.compressedMB" => ("Compressed memory", "MB"),
        "memory.swappedMB" => ("Swapped memory", "MB"),
        "memory.totalMB" => ("Total memory", "MB"),
        "memory.usedMB" => ("Used memory", "MB"),
        "memory.freeMB" => ("Free memory", "MB"),
        "memory.buffersMB" => ("Buffer memory", "MB"),
        "memory.cachedMB" => ("Cached memory", "MB"),
        "memory.swapUsedMB" => ("Guest swap usage", "MB"),
        "memory.usagePercent" => ("Memory usage", "%"),
        "memory.availableMB" => ("Available memory", "MB"),
        "memory.committedMB" => ("Committed memory", "MB"),
        "disk.readLatency" => ("Disk read latency", "ms"),
        "disk.writeLatency" => ("Disk write latency", "ms"),
        "disk.readIOPS" => ("Disk read rate", "IOPS"),
        "disk.writeIOPS" => ("Disk write rate", "IOPS"),
        "disk.throughputMBps" => ("Disk throughput", "MB/s"),
        "disk.usagePercent" => ("Disk usage", "%"),
        "disk.usedMB" => ("Used disk space", "MB"),
        "disk.freeMB" => ("Free disk space", "MB"),
        "disk.readBytes" => ("Disk read throughput", "B/s"),
        "disk.writeBytes" => ("Disk write throughput", "B/s"),
        "disk.inodesTotal" => ("Total inodes", ""),
        "disk.inodesUsed" => ("Used inodes", ""),
        "network.inBps" => ("Received traffic", "bit/s"),
        "network.outBps" => ("Transmitted traffic", "bit/s"),
        "network.inPps" => ("Received packet rate", "packets/s"),
        "network.outPps" => ("Transmitted packet rate", "packets/s"),
        "network.droppedPackets" => ("Packets dropped in the sample interval", ""),
        "network.inBytes" => ("Received traffic", "B/s"),
        "network.outBytes" => ("Transmitted traffic", "B/s"),
        "network.inPackets" => ("Received packet rate", "packets/s"),
        "network.outPackets" => ("Transmitted packet rate", "packets/s"),
        "network.errors" => ("Network error rate", "errors/s"),
        "network.dropped" => ("Dropped packet rate", "packets/s"),
        _ => return None,
    };
    Some(Label { name, unit })
}

/// Formats a number with at most two decimals and no trailing zeros: `80`, `92.5`, `0.01`.
fn format_number(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmpulse_plugin_sdk::metrics;

    #[test]
    fn every_alertable_path_has_label() {
        for path in metrics::PATHS {
            if metrics::group(path).is_some() {
                assert!(known_label(path).is_some(), "{path} has no label");
            }
        }
    }

    #[test]
    fn numbers_lose_trailing_zeros() {
        assert_eq!(format_number(80.0), "80");
        assert_eq!(format_number(92.5), "92.5");
        assert_eq!(format_number(0.014), "0.01");
        assert_eq!(format_number(1234.567), "1234.57");
        assert_eq!(format_number(-0.001), "0");
        assert_eq!(format_number(-2.5), "-2.5");
    }

    #[test]
    fn quantity_skips_empty_unit() {
        let load = label("cpu.load1min");
        let latency = label("disk.readLatency");

        assert_eq!(load.quantity(4.0), "4");
        assert_eq!(latency.quantity(25.25), "25.25 ms");
    }
}
