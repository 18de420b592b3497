//! The live view of the estate: inventory and latest metrics of every VM, in memory.
//!
//! Collection cycles write here; the API and the push channel read here. Each discovery
//! collector (one per vCenter) owns the entities it discovered: a refresh replaces that
//! collector's part and leaves the others alone.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::RealtimeMetrics;
use crate::plugin::bindings::types::{Cluster, Datacenter, HostSystem, Inventory, PowerState, Vm};

/// A VM's state as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmStatus {
    /// Powered on, with data from the latest cycles.
    Online,
    /// Powered off, suspended, or on a host vCenter lost contact with.
    Offline,
    /// Collection failed, or the newest data is older than two intervals.
    Error,
}

/// The host's record of one VM: inventory, latest metrics and last error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    pub vm: Vm,
    /// The discovery collector that found the VM.
    pub source: String,
    pub metrics: Option<RealtimeMetrics>,
    /// When the host last stored metrics for the VM, in its own clock (ms since the epoch).
    pub collected_at_ms: Option<i64>,
    /// The reason the VM's last collection failed, cleared by the next success.
    pub last_error: Option<String>,
}

/// One discovery collector's entities.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceInventory {
    pub datacenters: Vec<Datacenter>,
    pub clusters: Vec<Cluster>,
    pub hosts: Vec<HostSystem>,
}

/// The whole live view.
#[derive(Debug, Default)]
pub struct LiveState {
    inner: RwLock<LiveData>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LiveData {
    pub sources: HashMap<String, SourceInventory>,
    pub vms: HashMap<String, VmRecord>,
}

/// One VM's outcome in a cycle.
#[derive(Debug, Clone)]
pub enum VmOutcome {
    Collected(Box<RealtimeMetrics>),
    Failed(String),
}

impl LiveState {
    /// Runs `read` under the read lock. Keep it short: cycles wait for it.
    pub fn read<T>(&self, read: impl FnOnce(&LiveData) -> T) -> T {
        read(&self.inner.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the entities of `source` with a fresh inventory, keeping the metrics of VMs
    /// that are still there. Returns how many VMs `source` now owns.
    pub fn replace_inventory(&self, source: &str, inventory: Inventory) -> usize {
        let mut data = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let mut previous: HashMap<String, VmRecord> = data
            .vms
            .extract_if(|_, record| record.source == source)
            .collect();
        for vm in inventory.vms {
            if let Some(owner) = data.vms.get(&vm.id) {
                // Each source owns its IDs; a duplicate from another source is a plugin bug
                // or a misconfiguration, and must not take the VM over.
                tracing::warn!(source, vm = %vm.id, owner = %owner.source, "VM id already owned by another collector; ignored");
                continue;
            }
            let old = previous.remove(&vm.id);
            let record = VmRecord {
                vm,
                source: source.to_owned(),
                metrics: old.as_ref().and_then(|o| o.metrics.clone()),
                collected_at_ms: old.as_ref().and_then(|o| o.collected_at_ms),
                last_error: old.and_then(|o| o.last_error),
            };
            data.vms.insert(record.vm.id.clone(), record);
        }
        let count = data.vms.values().filter(|r| r.source == source).count();
        data.sources.insert(
            source.to_owned(),
            SourceInventory {
                datacenters: inventory.datacenters,
                clusters: inventory.clusters,
                hosts: inventory.hosts,
            },
        );
        count
    }

    /// Returns the VMs `source` owns.
    pub fn vms_of(&self, source: &str) -> Vec<Vm> {
        self.read(|data| {
            let mut vms: Vec<Vm> = data
                .vms
                .values()
                .filter(|record| record.source == source)
                .map(|record| record.vm.clone())
                .collect();
            vms.sort_by(|a, b| a.id.cmp(&b.id));
            vms
        })
    }

    /// Records a cycle's outcomes at `now_ms`; unknown VM ids (removed meanwhile) are ignored.
    pub fn apply(&self, outcomes: &[(String, VmOutcome)], now_ms: i64) {
        let mut data = self.inner.write().unwrap_or_else(|p| p.into_inner());
        for (vm_id, outcome) in outcomes {
            let Some(record) = data.vms.get_mut(vm_id) else {
                continue;
            };
            match outcome {
                VmOutcome::Collected(metrics) => {
                    record.metrics = Some((**metrics).clone());
                    record.collected_at_ms = Some(now_ms);
                    record.last_error = None;
                }
                VmOutcome::Failed(reason) => record.last_error = Some(reason.clone()),
            }
        }
    }

    /// Restores a view saved earlier, so the API serves data before the first cycle.
    pub fn restore(&self, saved: LiveData) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = saved;
    }
}

impl VmRecord {
    /// Returns the VM's status at `now_ms` for a collection `interval`.
    ///
    /// `disconnected_hosts` contains the ids of hosts vCenter has lost contact with.
    pub fn status(
        &self,
        disconnected_hosts: &HashSet<String>,
        now_ms: i64,
        interval: Duration,
    ) -> VmStatus {
        let host_lost = self
            .vm
            .host_id
            .as_ref()
            .is_some_and(|host| disconnected_hosts.contains(host));
        if self.vm.power_state != PowerState::PoweredOn || host_lost {
            return VmStatus::Offline;
        }
        if self.last_error.is_some() {
            return VmStatus::Error;
        }
        let max_age = i64::try_from(interval.as_millis() * 2).unwrap_or(i64::MAX);
        match self.collected_at_ms {
            Some(collected) if now_ms - collected <= max_age => VmStatus::Online,
            _ => VmStatus::Error,
        }
    }
}

/// Returns a powered-on VM with only an id and a name, for unit tests.
#[cfg(test)]
pub(crate) fn test_vm(id: &str, name: &str) -> Vm {
    Vm {
        id: id.to_owned(),
        name: name.to_owned(),
        source_ref: None,
        host_id: None,
        cluster_id: None,
        datacenter_id: None,
        folder: None,
        power_state: PowerState::PoweredOn,
        vcpus: None,
        memory_mb: None,
        tools_status: None,
        guest_ip: None,
        guest_hostname: None,
    }
}
