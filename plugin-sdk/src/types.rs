//! The WIT types re-exported under short names, with constructors for common cases.

use crate::collector_bindings::vmpulse::plugin::types;

pub use types::{
    Cluster, CollectResult, CpuMetrics, Datacenter, DiskMetrics, Finding, HostSystem, Inventory,
    Layer, MemoryMetrics, MetricGroup, NetworkMetrics, PluginError, PluginInfo, PowerState,
    Severity, SystemMetrics, ToolsStatus, Vm, VmError, VmSample,
};

impl PluginInfo {
    /// Creates a description from its three parts.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
        }
    }
}

impl VmSample {
    /// Creates a sample with every metric unknown.
    pub fn empty(vm_id: &str, timestamp_ms: u64) -> Self {
        Self {
            vm_id: vm_id.to_owned(),
            timestamp_ms,
            layers: Vec::new(),
            cpu: CpuMetrics::default(),
            memory: MemoryMetrics::default(),
            disk: DiskMetrics::default(),
            network: NetworkMetrics::default(),
            system: SystemMetrics::default(),
        }
    }
}

macro_rules! impl_all_unknown {
    ($($record:ident { $($field:ident),* $(,)? })*) => {
        $(
            impl Default for $record {
                /// Creates a record with every metric unknown.
                fn default() -> Self {
                    Self { $($field: None),* }
                }
            }
        )*
    };
}

impl_all_unknown! {
    CpuMetrics {
        usage_mhz, ready, wait, limit, reservation, usage_percent, load1min, load5min,
        load15min, context_switches,
    }
    MemoryMetrics {
        usage_mb, granted_mb, active_mb, ballooned_mb, compressed_mb, swapped_mb, total_mb,
        used_mb, free_mb, buffers_mb, cached_mb, swap_used_mb, usage_percent, available_mb,
        committed_mb,
    }
    DiskMetrics {
        read_latency, write_latency, read_iops, write_iops, throughput_mbps, usage_percent,
        used_mb, free_mb, read_bytes, write_bytes, inodes_total, inodes_used,
    }
    NetworkMetrics {
        in_bps, out_bps, in_pps, out_pps, dropped_packets, in_bytes, out_bytes, in_packets,
        out_packets, errors, dropped,
    }
    SystemMetrics { uptime, process_total, process_running, process_sleeping }
}

#[expect(clippy::derivable_impls, reason = "wit-bindgen generates the struct")]
impl Default for Inventory {
    fn default() -> Self {
        Self {
            datacenters: Vec::new(),
            clusters: Vec::new(),
            hosts: Vec::new(),
            vms: Vec::new(),
        }
    }
}

#[expect(clippy::derivable_impls, reason = "wit-bindgen generates the struct")]
impl Default for CollectResult {
    fn default() -> Self {
        Self {
            samples: Vec::new(),
            errors: Vec::new(),
        }
    }
}
