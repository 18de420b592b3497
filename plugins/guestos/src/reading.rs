//! The values one exporter payload reports about a guest, before rates are computed.
//!
//! [`Reading::from_payload`] parses the payload once and hands each sample to the
//! node_exporter and the windows_exporter mapping. Gauges land directly in the WIT metric
//! records in their final units; cumulative counters are kept raw in [`Counters`], because
//! a rate needs the previous scrape's values (see `rates`).

use vmpulse_plugin_sdk::{CpuMetrics, DiskMetrics, MemoryMetrics, NetworkMetrics, SystemMetrics};

use crate::exposition::{self, ParseError};
use crate::node_exporter::NodeExporter;
use crate::windows_exporter::WindowsExporter;

/// Bytes per MB: vmpulse's MB are binary, as vCenter's are.
pub const BYTES_PER_MB: f64 = 1024.0 * 1024.0;

/// The cumulative counters a rate is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Seconds all CPUs were idle.
    CpuIdle,
    /// Seconds all CPUs spent in any mode, idle included.
    CpuTotal,
    ContextSwitches,
    DiskReadBytes,
    DiskWrittenBytes,
    NetReceivedBytes,
    NetSentBytes,
    NetReceivedPackets,
    NetSentPackets,
    /// Receive and transmit errors together.
    NetErrors,
    /// Received and sent packets dropped or discarded, together.
    NetDropped,
}

impl Counter {
    pub const ALL: [Counter; 11] = [
        Counter::CpuIdle,
        Counter::CpuTotal,
        Counter::ContextSwitches,
        Counter::DiskReadBytes,
        Counter::DiskWrittenBytes,
        Counter::NetReceivedBytes,
        Counter::NetSentBytes,
        Counter::NetReceivedPackets,
        Counter::NetSentPackets,
        Counter::NetErrors,
        Counter::NetDropped,
    ];

    /// The device set a counter is summed over, when it is a sum.
    pub fn device_set(self) -> Option<DeviceSet> {
        match self {
            Counter::CpuIdle | Counter::CpuTotal => Some(DeviceSet::Cpus),
            Counter::ContextSwitches => None,
            Counter::DiskReadBytes | Counter::DiskWrittenBytes => Some(DeviceSet::Disks),
            Counter::NetReceivedBytes
            | Counter::NetSentBytes
            | Counter::NetReceivedPackets
            | Counter::NetSentPackets
            | Counter::NetErrors
            | Counter::NetDropped => Some(DeviceSet::Interfaces),
        }
    }
}

/// A group of devices whose counters are summed into one total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSet {
    Cpus,
    Disks,
    Interfaces,
}

impl DeviceSet {
    pub const ALL: [DeviceSet; 3] = [DeviceSet::Cpus, DeviceSet::Disks, DeviceSet::Interfaces];
}

/// Raw counter values of one scrape, with a fingerprint of each device set they sum over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    values: [Option<f64>; Counter::ALL.len()],
    device_sets: [u32; DeviceSet::ALL.len()],
}

impl Counters {
    pub fn get(&self, counter: Counter) -> Option<f64> {
        self.values[counter as usize]
    }

    /// Sets a counter; a value that is not finite and non-negative is treated as unknown.
    pub fn set(&mut self, counter: Counter, value: Option<f64>) {
        self.values[counter as usize] = value.filter(|v| v.is_finite() && *v >= 0.0);
    }

    pub fn device_set(&self, set: DeviceSet) -> u32 {
        self.device_sets[set as usize]
    }

    pub fn set_device_set(&mut self, set: DeviceSet, fingerprint: u32) {
        self.device_sets[set as usize] = fingerprint;
    }

    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }
}

/// Everything mapped from one payload.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// The guest's clock when the exporter responded, in seconds since the Unix epoch
    /// (`node_time_seconds` or windows_exporter's current time).
    pub exporter_time: Option<f64>,
    /// When the guest booted, in seconds since the Unix epoch.
    pub boot_time: Option<f64>,
    pub cpu: CpuMetrics,
    pub memory: MemoryMetrics,
    pub disk: DiskMetrics,
    pub network: NetworkMetrics,
    pub system: SystemMetrics,
    pub counters: Counters,
    /// Samples whose metric the mapping used; 0 means the payload is from neither exporter.
    pub recognized_samples: usize,
}

impl Reading {
    /// Parses an exporter payload and maps the node_exporter or windows_exporter metrics.
    ///
    /// A payload with node_exporter metrics is read as Linux; otherwise its
    /// windows_exporter metrics are used.
    ///
    /// # Errors
    ///
    /// [`ParseError`] naming the first invalid line.
    pub fn from_payload(body: &[u8]) -> Result<Self, ParseError> {
        let mut node = NodeExporter::default();
        let mut windows = WindowsExporter::default();
        exposition::parse_bytes(body, |sample| {
            if sample.name.starts_with("node_") {
                node.add(&sample);
            } else if sample.name.starts_with("windows_") {
                windows.add(&sample);
            }
            Ok(())
        })?;

        let reading = if node.recognized_samples() > 0 {
            node.finish()
        } else {
            windows.finish()
        };
        Ok(reading)
    }
}

/// Converts bytes to MB.
pub fn megabytes(bytes: Option<f64>) -> Option<f64> {
    bytes.map(|b| b / BYTES_PER_MB)
}

/// Returns `part / whole * 100`, or `None` when `whole` is not positive.
pub fn percent(part: Option<f64>, whole: Option<f64>) -> Option<f64> {
    match (part, whole) {
        (Some(part), Some(whole)) if whole > 0.0 => Some(part / whole * 100.0),
        _ => None,
    }
}

/// Adds `value` to an optional sum, which stays `None` until a first value arrives.
pub fn add_to(sum: &mut Option<f64>, value: f64) {
    *sum = Some(sum.unwrap_or(0.0) + value);
}
