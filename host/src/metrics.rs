//! The RealtimeMetrics record served by the API, and its flat field table.
//!
//! One macro defines each metric group's struct, its JSON names and its place in
//! [`FIELDS`], so the API, the history store (which keeps values in `FIELDS` order) and
//! threshold rules that name a field by path (`cpu.usagePercent`) cannot drift apart.
//! Every metric is an `Option<f64>`: `None` is unknown and is left out of the JSON.

use poem_openapi::Object;
use serde::{Deserialize, Serialize};

use crate::plugin::bindings::types as wit;

pub use crate::timestamp::Timestamp;

/// One metric's place in the flat table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    /// The group's JSON name: `cpu`, `memory`, `disk`, `network` or `system`.
    pub group: &'static str,
    /// The metric's JSON name inside its group, such as `usageMHz`.
    pub name: &'static str,
}

impl FieldInfo {
    /// Returns `group.name`, the form rules and the history API use.
    pub fn path(&self) -> String {
        format!("{}.{}", self.group, self.name)
    }
}

macro_rules! metric_groups {
    ($(
        $group:ident: $struct:ident as $json_group:literal from $wit:ident {
            $($field:ident as $json:literal),* $(,)?
        }
    )*) => {
        $(
            #[doc = concat!("The `", $json_group, "` group of RealtimeMetrics.")]
            #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Object)]
            pub struct $struct {
                $(
                    #[serde(rename = $json, default, skip_serializing_if = "Option::is_none")]
                    #[oai(rename = $json, skip_serializing_if_is_none)]
                    pub $field: Option<f64>,
                )*
            }

            impl $struct {
                /// Copies every value `other` has over this group's values.
                fn overlay(&mut self, other: &Self) {
                    $(
                        if other.$field.is_some() {
                            self.$field = other.$field;
                        }
                    )*
                }

                fn is_empty(&self) -> bool {
                    true $(&& self.$field.is_none())*
                }
            }

            impl From<&wit::$wit> for $struct {
                fn from(source: &wit::$wit) -> Self {
                    Self { $($field: finite(source.$field)),* }
                }
            }

            impl From<&$struct> for wit::$wit {
                fn from(source: &$struct) -> Self {
                    Self { $($field: source.$field),* }
                }
            }
        )*

        /// Every metric of RealtimeMetrics in a fixed order: the history store's schema.
        pub const FIELDS: &[FieldInfo] = &[
            $($(FieldInfo { group: $json_group, name: $json },)*)*
        ];

        impl RealtimeMetrics {
            /// Returns every metric in [`FIELDS`] order.
            pub fn values(&self) -> Vec<Option<f64>> {
                let mut values = Vec::with_capacity(FIELDS.len());
                $($(values.push(self.$group.$field);)*)*
                values
            }

            /// Sets the metrics from values in [`FIELDS`] order; missing values stay unknown.
            pub fn set_values(&mut self, values: &[Option<f64>]) {
                let mut values = values.iter().copied();
                $($(self.$group.$field = values.next().flatten();)*)*
            }

            /// Returns the metric at `group.name`, `None` when unknown or not a metric path.
            pub fn get(&self, path: &str) -> Option<f64> {
                match path {
                    $($(concat!($json_group, ".", $json) => self.$group.$field,)*)*
                    _ => None,
                }
            }

            /// Copies every value `other` has over this record's values.
            pub fn overlay(&mut self, other: &RealtimeMetrics) {
                $(self.$group.overlay(&other.$group);)*
            }

            /// Returns true when no metric is known.
            pub fn is_empty(&self) -> bool {
                true $(&& self.$group.is_empty())*
            }

            /// Keeps only the listed groups (`cpu`, `memory`, ...); the others become empty.
            pub fn retain_groups(&mut self, groups: &[&str]) {
                $(
                    if !groups.contains(&$json_group) {
                        self.$group = $struct::default();
                    }
                )*
            }
        }
    };
}

metric_groups! {
    cpu: CpuMetrics as "cpu" from CpuMetrics {
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
    memory: MemoryMetrics as "memory" from MemoryMetrics {
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
    disk: DiskMetrics as "disk" from DiskMetrics {
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
    network: NetworkMetrics as "network" from NetworkMetrics {
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
    system: SystemMetrics as "system" from SystemMetrics {
        uptime as "uptime",
        process_total as "processTotal",
        process_running as "processRunning",
        process_sleeping as "processSleeping",
    }
}

/// The metric group names, in JSON order.
pub const GROUPS: &[&str] = &["cpu", "memory", "disk", "network", "system"];

/// Drops a plugin's NaN or infinity, which is not a measurement.
fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

/// The layers that contributed to a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Object)]
pub struct DataSources {
    pub vsphere: bool,
    #[serde(rename = "guestOS")]
    #[oai(rename = "guestOS")]
    pub guest_os: bool,
}

/// One VM's current metrics, merged from every collector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct RealtimeMetrics {
    pub vm_id: String,
    /// When the data was collected.
    pub timestamp: Timestamp,
    pub data_sources: DataSources,
    pub cpu: CpuMetrics,
    pub memory: MemoryMetrics,
    pub disk: DiskMetrics,
    pub network: NetworkMetrics,
    pub system: SystemMetrics,
    /// The VM's active alerts; filled when the record is served, in the reader's language.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[oai(default, skip_serializing_if_is_empty)]
    pub alerts: Vec<MetricAlert>,
}

/// An active alert as RealtimeMetrics lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct MetricAlert {
    pub metric: crate::alerts::AlertMetric,
    pub severity: crate::alerts::Severity,
    pub threshold: f64,
    pub current_value: f64,
    pub message: String,
}

impl MetricAlert {
    pub fn new(alert: &crate::alerts::Alert, lang: crate::i18n::Lang) -> Self {
        Self {
            metric: alert.metric,
            severity: alert.severity,
            threshold: alert.threshold,
            current_value: alert.current_value,
            message: alert.message(lang),
        }
    }
}

/// Returns true when `path` names a metric, such as `cpu.usagePercent`.
pub fn is_path(path: &str) -> bool {
    path.split_once('.').is_some_and(|(group, name)| {
        FIELDS
            .iter()
            .any(|field| field.group == group && field.name == name)
    })
}

impl RealtimeMetrics {
    /// Converts one collector's sample; the sample's layers become the data sources.
    pub fn from_sample(sample: &wit::VmSample) -> Self {
        let timestamp = i64::try_from(sample.timestamp_ms).unwrap_or(i64::MAX);
        Self {
            vm_id: sample.vm_id.clone(),
            timestamp: Timestamp(timestamp),
            data_sources: DataSources {
                vsphere: sample.layers.contains(&wit::Layer::Vsphere),
                guest_os: sample.layers.contains(&wit::Layer::GuestOs),
            },
            cpu: (&sample.cpu).into(),
            memory: (&sample.memory).into(),
            disk: (&sample.disk).into(),
            network: (&sample.network).into(),
            system: (&sample.system).into(),
            alerts: Vec::new(),
        }
    }

    /// Merges a guest exporter's sample into this vSphere record: the exporter's values win
    /// for the fields both know, and the sources are combined.
    pub fn merge_guest(&mut self, guest: &RealtimeMetrics) {
        self.overlay(guest);
        self.data_sources.vsphere |= guest.data_sources.vsphere;
        self.data_sources.guest_os |= guest.data_sources.guest_os;
        self.timestamp = self.timestamp.max(guest.timestamp);
    }

    /// Converts back to the WIT sample handed to alert rules.
    pub fn to_sample(&self) -> wit::VmSample {
        let mut layers = Vec::new();
        if self.data_sources.vsphere {
            layers.push(wit::Layer::Vsphere);
        }
        if self.data_sources.guest_os {
            layers.push(wit::Layer::GuestOs);
        }
        wit::VmSample {
            vm_id: self.vm_id.clone(),
            timestamp_ms: u64::try_from(self.timestamp.0).unwrap_or(0),
            layers,
            cpu: (&self.cpu).into(),
            memory: (&self.memory).into(),
            disk: (&self.disk).into(),
            network: (&self.network).into(),
            system: (&self.system).into(),
        }
    }
}

/// Serializes epoch milliseconds as an RFC 3339 UTC timestamp with milliseconds.
pub mod rfc3339_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(millis: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*millis))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.timestamp_millis())
            .map_err(serde::de::Error::custom)
    }

    /// Formats epoch milliseconds, e.g. `2026-12-04T16:28:08.123Z`.
    pub fn format(millis: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(millis)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_left_out_of_json() {
        let mut metrics = RealtimeMetrics {
            vm_id: "a.1".into(),
            timestamp: Timestamp(1_764_866_888_123),
            ..Default::default()
        };
        metrics.cpu.usage_mhz = Some(1200.0);
        metrics.memory.usage_percent = Some(0.0);

        let json = serde_json::to_value(&metrics).unwrap();

        assert_eq!(json["cpu"]["usageMHz"], 1200.0);
        assert_eq!(json["memory"]["usagePercent"], 0.0, "a measured zero stays");
        assert!(json["cpu"].get("ready").is_none());
        assert_eq!(json["disk"], serde_json::json!({}));
        assert_eq!(json["timestamp"], "2025-12-04T16:48:08.123Z");
        assert_eq!(json["dataSources"]["guestOS"], false);
    }

    #[test]
    fn values_round_trip_in_field_order() {
        let mut metrics = RealtimeMetrics::default();
        metrics.network.dropped = Some(3.0);
        metrics.system.uptime = Some(99.0);

        let values = metrics.values();
        let mut copy = RealtimeMetrics::default();
        copy.set_values(&values);

        assert_eq!(values.len(), FIELDS.len());
        assert_eq!(copy, metrics);
        let position = FIELDS
            .iter()
            .position(|f| f.path() == "system.uptime")
            .unwrap();
        assert_eq!(values[position], Some(99.0));
    }

    #[test]
    fn get_reads_by_path() {
        let mut metrics = RealtimeMetrics::default();
        metrics.disk.read_iops = Some(12.0);

        assert_eq!(metrics.get("disk.readIOPS"), Some(12.0));
        assert_eq!(metrics.get("disk.writeIOPS"), None);
        assert_eq!(metrics.get("disk.nonsense"), None);
    }

    #[test]
    fn guest_values_win_and_sources_combine() {
        let mut vsphere = RealtimeMetrics::default();
        vsphere.data_sources.vsphere = true;
        vsphere.system.uptime = Some(100.0);
        vsphere.cpu.usage_mhz = Some(500.0);
        let mut guest = RealtimeMetrics::default();
        guest.data_sources.guest_os = true;
        guest.system.uptime = Some(104.0);
        guest.cpu.load1min = Some(0.5);

        vsphere.merge_guest(&guest);

        assert_eq!(vsphere.system.uptime, Some(104.0));
        assert_eq!(vsphere.cpu.usage_mhz, Some(500.0));
        assert_eq!(vsphere.cpu.load1min, Some(0.5));
        assert!(vsphere.data_sources.vsphere);
        assert!(vsphere.data_sources.guest_os);
    }

    #[test]
    fn non_finite_plugin_values_are_unknown() {
        let mut sample = wit::VmSample::empty("a", 0);
        sample.cpu.ready = Some(f64::NAN);
        sample.cpu.wait = Some(f64::INFINITY);
        sample.cpu.usage_mhz = Some(10.0);

        let metrics = RealtimeMetrics::from_sample(&sample);

        assert_eq!(metrics.cpu.ready, None);
        assert_eq!(metrics.cpu.wait, None);
        assert_eq!(metrics.cpu.usage_mhz, Some(10.0));
    }

    #[test]
    fn retain_groups_empties_the_rest() {
        let mut metrics = RealtimeMetrics::default();
        metrics.cpu.usage_mhz = Some(1.0);
        metrics.disk.read_iops = Some(2.0);

        metrics.retain_groups(&["disk"]);

        assert!(metrics.cpu.is_empty());
        assert_eq!(metrics.disk.read_iops, Some(2.0));
    }
}
