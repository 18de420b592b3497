//! Host-side bindings generated from the WIT worlds in `wit/`.
//!
//! Both worlds share the `types` and `host` interfaces; the alert-rule bindings reuse the
//! collector's so a type such as `VmSample` has one Rust definition.

/// Bindings of the `collector` world.
pub mod collector {
    wasmtime::component::bindgen!({
        world: "collector",
        path: "../wit",
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// Bindings of the `alert-rule` world.
pub mod alert_rule {
    wasmtime::component::bindgen!({
        world: "alert-rule",
        path: "../wit",
        exports: { default: async },
        with: {
            "vmpulse:plugin/types": super::collector::vmpulse::plugin::types,
            "vmpulse:plugin/host": super::collector::vmpulse::plugin::host,
        },
    });
}

pub use collector::vmpulse::plugin::host::LogLevel;
pub use collector::vmpulse::plugin::types;

macro_rules! impl_all_unknown {
    ($($record:ident { $($field:ident),* $(,)? })*) => {
        $(
            impl Default for types::$record {
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

impl types::VmSample {
    /// Creates a sample with every metric unknown.
    pub fn empty(vm_id: &str, timestamp_ms: u64) -> Self {
        Self {
            vm_id: vm_id.to_owned(),
            timestamp_ms,
            layers: Vec::new(),
            cpu: types::CpuMetrics::default(),
            memory: types::MemoryMetrics::default(),
            disk: types::DiskMetrics::default(),
            network: types::NetworkMetrics::default(),
            system: types::SystemMetrics::default(),
        }
    }
}
