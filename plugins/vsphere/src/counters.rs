//! The performance counters this collector reads, their keys on one vCenter and the
//! size limit of one QueryPerf.
//!
//! Counter keys are assigned per vCenter and may change with an upgrade, so the catalog
//! maps `group.name.rollup` to the key from the performance manager's `perfCounter`
//! property, once per session.

use serde::{Deserialize, Serialize};
use vmpulse_plugin_sdk::log;

use crate::error::VimError;
use crate::property::{self, PropertySpec, Selection};
use crate::session::Session;
use crate::soap::RequestBody;
use crate::xml::Element;

/// The advanced setting that caps the metrics of one performance query.
const MAX_QUERY_METRICS_OPTION: &str = "config.vpxd.stats.maxQueryMetrics";

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
    let max_query_metrics = match session.config().max_query_metrics {
        Some(configured) => usize::try_from(configured).ok(),
        None => read_max_query_metrics(session)?,
    };
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

/// Reads `config.vpxd.stats.maxQueryMetrics`. An unset option (InvalidName) or one the
/// user may not read means vCenter's default: 64 before vSphere 6.5 and 256 since. The
/// value -1 means no limit.
///
/// NOTE: public collectors (Telegraf, the Datadog check) apply this limit to historical
/// queries only. This collector applies it to real-time queries too, which costs extra
/// QueryPerf calls when the limit is small but never trips it.
fn read_max_query_metrics(session: &mut Session) -> Result<Option<usize>, VimError> {
    let default = default_max_query_metrics(session.service().api_version.as_deref());
    let Some(setting) = session.service().setting.clone() else {
        return Ok(Some(default));
    };
    let mut request = RequestBody::new("QueryOptions", &setting);
    request.params.text("name", MAX_QUERY_METRICS_OPTION);

    let response = match session.call(&request) {
        Ok(response) => response,
        Err(VimError::Fault(fault)) if !fault.is_not_authenticated() => {
            if fault.name != "InvalidName" {
                log::warn(&format!(
                    "reading {MAX_QUERY_METRICS_OPTION} failed ({fault}), so the collector \
                     assumes vCenter's default of {default}"
                ));
            }
            return Ok(Some(default));
        }
        Err(err) => return Err(err),
    };
    let value = response
        .children_named("returnval")
        .find(|option| option.child_text("key") == Some(MAX_QUERY_METRICS_OPTION))
        .and_then(|option| option.child_text("value"))
        .and_then(|value| value.trim().parse::<i64>().ok());
    Ok(match value {
        Some(-1) => None,
        Some(limit) if limit > 0 => Some(usize::try_from(limit).unwrap_or(usize::MAX)),
        _ => {
            log::warn(&format!(
                "{MAX_QUERY_METRICS_OPTION} has no usable value, so the collector \
                 assumes vCenter's default of {default}"
            ));
            Some(default)
        }
    })
}

/// Returns vCenter's built-in `maxQueryMetrics` for an API version such as `6.5` or
/// `8.0.2.0`.
fn default_max_query_metrics(api_version: Option<&str>) -> usize {
    let mut parts = api_version
        .unwrap_or_default()
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    if (major, minor) >= (6, 5) { 256 } else { 64 }
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

    #[test]
    fn default_limit_depends_on_version() {
        assert_eq!(default_max_query_metrics(Some("6.0")), 64);
        assert_eq!(default_max_query_metrics(Some("6.5")), 256);
        assert_eq!(default_max_query_metrics(Some("8.0.2.0")), 256);
        assert_eq!(default_max_query_metrics(None), 64);
    }
}
