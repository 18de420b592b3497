//! A synthetic estate for the REST API tests and benchmark: one datacenter, clusters of
//! hosts, and VMs with every metric known, written straight into a [`LiveState`].

use vmpulse::live::{LiveState, VmOutcome};
use vmpulse::metrics::{FIELDS, RealtimeMetrics, Timestamp};
use vmpulse::plugin::Inventory;
use vmpulse::plugin::bindings::types::{
    Cluster, Datacenter, HostSystem, PowerState, ToolsStatus, Vm,
};

/// The discovery source the estate belongs to.
pub const SOURCE: &str = "estate";
pub const DATACENTER: &str = "dc-1";
/// VMs per host, and hosts per cluster.
const VMS_PER_HOST: usize = 25;
const HOSTS_PER_CLUSTER: usize = 4;

/// Returns the ID of the `index`th VM: `vm-0000`, `vm-0001`, ...
pub fn vm_id(index: usize) -> String {
    format!("vm-{index:04}")
}

/// Returns the cluster ID of the `index`th VM.
pub fn cluster_of(index: usize) -> String {
    format!("cl-{}", index / (VMS_PER_HOST * HOSTS_PER_CLUSTER))
}

/// Returns the host ID of the `index`th VM.
pub fn host_of(index: usize) -> String {
    format!("host-{}", index / VMS_PER_HOST)
}

/// Builds the inventory of `vm_count` powered-on VMs named `web-NNNN` (even) and
/// `db-NNNN` (odd), each with 4 vCPUs and 8 GiB.
pub fn inventory(vm_count: usize) -> Inventory {
    let host_count = vm_count.div_ceil(VMS_PER_HOST).max(1);
    let cluster_count = host_count.div_ceil(HOSTS_PER_CLUSTER);
    let clusters = (0..cluster_count)
        .map(|c| Cluster {
            id: format!("cl-{c}"),
            name: format!("Cluster {c}"),
            datacenter_id: Some(DATACENTER.to_owned()),
        })
        .collect();
    let hosts = (0..host_count)
        .map(|h| HostSystem {
            id: format!("host-{h}"),
            name: format!("esx-{h}.lab"),
            cluster_id: Some(format!("cl-{}", h / HOSTS_PER_CLUSTER)),
            datacenter_id: Some(DATACENTER.to_owned()),
            connected: true,
        })
        .collect();
    let vms = (0..vm_count)
        .map(|i| Vm {
            id: vm_id(i),
            name: if i % 2 == 0 {
                format!("web-{i:04}")
            } else {
                format!("db-{i:04}")
            },
            source_ref: Some(format!("vm-{}", 1000 + i)),
            host_id: Some(host_of(i)),
            cluster_id: Some(cluster_of(i)),
            datacenter_id: Some(DATACENTER.to_owned()),
            folder: Some("/dc-1/vm".to_owned()),
            power_state: PowerState::PoweredOn,
            vcpus: Some(4),
            memory_mb: Some(8192),
            tools_status: Some(ToolsStatus::Running),
            guest_ip: None,
            guest_hostname: None,
        })
        .collect();
    Inventory {
        datacenters: vec![Datacenter {
            id: DATACENTER.to_owned(),
            name: "Lab datacenter".to_owned(),
        }],
        clusters,
        hosts,
        vms,
    }
}

/// Returns a record with every metric known; `round` varies the values between cycles.
pub fn full_metrics(id: &str, index: usize, round: u64, timestamp_ms: i64) -> RealtimeMetrics {
    let mut metrics = RealtimeMetrics {
        vm_id: id.to_owned(),
        timestamp: Timestamp(timestamp_ms),
        ..RealtimeMetrics::default()
    };
    metrics.data_sources.vsphere = true;
    metrics.data_sources.guest_os = true;
    let values: Vec<Option<f64>> = (0..FIELDS.len())
        .map(|field| Some(((index * 7 + field * 13) as u64 + round * 3) as f64 % 97.0 + 0.5))
        .collect();
    metrics.set_values(&values);
    metrics
}

/// Loads `vm_count` VMs with full metrics at `now_ms` into `live`.
pub fn fill(live: &LiveState, vm_count: usize, now_ms: i64) {
    live.replace_inventory(SOURCE, inventory(vm_count));
    replace_metrics(live, vm_count, 0, now_ms);
}

/// Replaces every VM's metrics, as one collection cycle would.
pub fn replace_metrics(live: &LiveState, vm_count: usize, round: u64, now_ms: i64) {
    let outcomes: Vec<(String, VmOutcome)> = (0..vm_count)
        .map(|i| {
            let id = vm_id(i);
            let metrics = full_metrics(&id, i, round, now_ms);
            (id, VmOutcome::Collected(Box::new(metrics)))
        })
        .collect();
    live.apply(&outcomes, now_ms);
}
