//! The performance counters this collector reads, their keys on one vCenter and the
//! size limit of one QueryPerf.
//!
//! Counter keys are assigned per vCenter and may change with an upgrade, so the catalog
//! maps `group.name.rollup` to the key from the performance manager's `perfCounter`
//! property, once per session.

use serde::{Deserialize, Serialize};

use crate::error::VimError;
use crate::property::{self, PropertySpec, Selection};
use crate::session::Session;
use crate::xml::Element;

/// A performance counter the collector maps to a sample field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Counter {
    CpuUsage,
    CpuUsageMhz,
    CpuReady,
    CpuWait,
    MemUsage,
    MemConsumed,
    MemGranted,
    MemActive,
    MemBalloon,
    MemCompressed,
    MemSwapped,
    DiskReadLatency,
    DiskWriteLatency,
    DiskReadIops,
    DiskWriteIops,
    DiskUsage,
    NetReceived,
    NetTransmitted,
    NetPacketsRx,
    NetPacketsTx,
    NetDroppedRx,
    NetDroppedTx,
    SysUptime,
}

/// A counter and the instances to request of it.
#[derive(Debug, Clone, Copy)]
pub struct CounterSpec {
    pub counter: Counter,
    /// `group.name.rollup` as vCenter names it.
    pub name: &'static str,
    /// Whether to request every instance (`*`) rather than the aggregate (`""`). A VM's
    /// virtualDisk counters are reported per virtual disk (`scsi0:0`), without an
    /// aggregate, so the collector combines the instances itself.
    pub per_instance: bool,
}

const fn aggregate(counter: Counter, name: &'static str) -> CounterSpec {
    CounterSpec {
        counter,
        name,
        per_instance: false,
    }
}

const fn per_disk(counter: Counter, name: &'static str) -> CounterSpec {
    CounterSpec {
        counter,
        name,
        per_instance: true,
    }
}

/// Every counter the collector reads from a VM, with the units vSphere reports.
pub const COUNTERS: &[CounterSpec] = &[
    aggregate(Counter::CpuUsage, "cpu.usage.average"), // hundredths of a percent
    aggregate(Counter::CpuUsageMhz, "cpu.usagemhz.average"), // MHz
    aggregate(Counter::CpuReady, "cpu.ready.summation"), // ms in the interval, all vCPUs
    aggregate(Counter::CpuWait, "cpu.wait.summation"), // ms in the interval, all vCPUs
    aggregate(Counter::MemUsage, "mem.usage.average"), // hundredths of a percent
    aggregate(Counter::MemConsumed, "mem.consumed.average"), // KB
    aggregate(Counter::MemGranted, "mem.granted.average"), // KB
    aggregate(Counter::MemActive, "mem.active.average"), // KB
    aggregate(Counter::MemBalloon, "mem.vmmemctl.average"), // KB
    aggregate(Counter::MemCompressed, "mem.compressed.average"), // KB
    aggregate(Counter::MemSwapped, "mem.swapped.average"), // KB
    per_disk(
        Counter::DiskReadLatency,
        "virtualDisk.totalReadLatency.average",
    ), // ms
    per_disk(
        Counter::DiskWriteLatency,
        "virtualDisk.totalWriteLatency.average",
    ), // ms
    per_disk(
        Counter::DiskReadIops,
        "virtualDisk.numberReadAveraged.average",
    ), // per second
    per_disk(
        Counter::DiskWriteIops,
        "virtualDisk.numberWriteAveraged.average",
    ), // per second
    aggregate(Counter::DiskUsage, "disk.usage.average"), // KBps
    aggregate(Counter::NetReceived, "net.received.average"), // KBps
    aggregate(Counter::NetTransmitted, "net.transmitted.average"), // KBps
    aggregate(Counter::NetPacketsRx, "net.packetsRx.summation"), // packets in the interval
    aggregate(Counter::NetPacketsTx, "net.packetsTx.summation"), // packets in the interval
    aggregate(Counter::NetDroppedRx, "net.droppedRx.summation"), // packets in the interval
    aggregate(Counter::NetDroppedTx, "net.droppedTx.summation"), // packets in the interval
    aggregate(Counter::SysUptime, "sys.uptime.latest"), // seconds
];

/// The counter keys of one vCenter and its query size limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerfCatalog {
    /// The key of each counter in [`COUNTERS`] this vCenter has, in that order.
    pub keys: Vec<(Counter, i32)>,
    /// The max number of (entity, counter) pairs per QueryPerf, or `None` for no limit.
    pub max_query_metrics: Option<usize>,
}

impl PerfCatalog {
    /// Returns the counter with vCenter key `key`.
    pub fn counter(&self, key: i32) -> Option<Counter> {
        self.keys
            .iter()
            .find(|(_, k)| *k == key)
            .map(|(counter, _)| *counter)
    }

    /// Returns the specs and keys of every counter this vCenter has.
    pub fn specs(&self) -> impl Iterator<Item = (CounterSpec, i32)> + '_ {
        self.keys.iter().filter_map(|(counter, key)| {
            COUNTERS
                .iter()
                .find(|spec| spec.counter == *counter)
                .map(|spec| (*spec, *key))
        })
    }
}

/// Reads the counter keys and the query size limit.
///
/// # Errors
///
/// Any [`VimError`] of reading `perfCounter`, or `Protocol` when it names none of the
/// counters the collector reads.
pub fn load_catalog(session: &mut Session) -> Result<PerfCatalog, VimError> {
    let keys = read_counter_keys(session)?;
    if keys.is_empty() {
        return Err(VimError::Protocol(
            "the performance manager's perfCounter property lists none of the counters \
             this collector reads (cpu.usage.average, mem.usage.average, …)"
                .to_owned(),
        ));
    }
    // vCenter's `config.vpxd.stats.maxQueryMetrics` guards its statistics database, which
    // historical queries read; real-time (20 s) queries are served by the hosts, and
    // Telegraf and the Datadog check do not apply the limit to them either. So there is no
    // limit unless the config sets one. A query vCenter still rejects is split in halves.
    let max_query_metrics = session
        .config()
        .max_query_metrics
        .and_then(|configured| usize::try_from(configured).ok());
    Ok(PerfCatalog {
        keys,
        max_query_metrics,
    })
}

fn read_counter_keys(session: &mut Session) -> Result<Vec<(Counter, i32)>, VimError> {
    let perf_manager = session.service().perf_manager.clone();
    let specs = [PropertySpec {
        kind: "PerformanceManager",
        paths: &["perfCounter"],
    }];
    let objects = [perf_manager];
    let mut counters = None;
    let mut fault = None;
    property::retrieve(session, &specs, Selection::Objects(&objects), 1, |object| {
        fault = object.missing_fault("perfCounter").map(str::to_owned);
        counters = object.value("perfCounter").map(counter_keys);
    })?;
    counters.ok_or_else(|| {
        VimError::Protocol(format!(
            "the performance manager's perfCounter property could not be read ({})",
            fault.as_deref().unwrap_or("vCenter returned no value")
        ))
    })
}

/// Returns the keys of the counters in [`COUNTERS`] from an `ArrayOfPerfCounterInfo`.
fn counter_keys(array: &Element) -> Vec<(Counter, i32)> {
    let mut keys = Vec::new();
    for info in array.children_named("PerfCounterInfo") {
        let key = info.child_text("key").and_then(|k| k.trim().parse().ok());
        let group = info.child("groupInfo").and_then(|g| g.child_text("key"));
        let name = info.child("nameInfo").and_then(|n| n.child_text("key"));
        let rollup = info.child_text("rollupType");
        let (Some(key), Some(group), Some(name), Some(rollup)) = (key, group, name, rollup) else {
            continue;
        };
        let full_name = format!("{group}.{name}.{rollup}");
        if let Some(spec) = COUNTERS.iter().find(|spec| spec.name == full_name)
            && !keys.iter().any(|(counter, _)| *counter == spec.counter)
        {
            keys.push((spec.counter, key));
        }
    }
    keys.sort_by_key(|(counter, _)| COUNTERS.iter().position(|s| s.counter == *counter));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;

    fn counter_info(key: i32, group: &str, name: &str, rollup: &str) -> String {
        format!(
            "<PerfCounterInfo><key>{key}</key><nameInfo><label>x</label><key>{name}</key>\
             </nameInfo><groupInfo><key>{group}</key></groupInfo>\
             <rollupType>{rollup}</rollupType></PerfCounterInfo>"
        )
    }

    #[test]
    fn maps_names_to_this_vcenters_keys() {
        let array = format!(
            "<val>{}{}{}{}</val>",
            counter_info(2, "cpu", "usage", "average"),
            counter_info(1, "cpu", "usage", "none"),
            counter_info(612, "cpu", "ready", "summation"),
            counter_info(9, "virtualDisk", "totalReadLatency", "average"),
        );
        let keys = counter_keys(&xml::parse(&array).unwrap());
        assert_eq!(
            keys,
            vec![
                (Counter::CpuUsage, 2),
                (Counter::CpuReady, 612),
                (Counter::DiskReadLatency, 9)
            ]
        );
        let catalog = PerfCatalog {
            keys,
            max_query_metrics: None,
        };
        assert_eq!(catalog.counter(612), Some(Counter::CpuReady));
        assert_eq!(catalog.counter(1), None);
        assert!(catalog.specs().any(|(spec, _)| spec.per_instance));
    }
}
