//! Converting counter values and VM properties into a WIT sample, with vSphere's units.
//!
//! | source | unit | field |
//! |---|---|---|
//! | cpu.usagemhz | MHz | cpu.usage-mhz |
//! | cpu.usage, mem.usage | hundredths of a percent | usage-percent ÷ 100 |
//! | cpu.ready, cpu.wait | ms summed over the interval and all vCPUs | % of the interval per vCPU |
//! | config.cpuAllocation | MHz, limit -1 = unlimited | cpu.limit, cpu.reservation |
//! | mem.consumed, granted, active, vmmemctl, compressed, swapped | KB | MB (÷ 1024) |
//! | virtualDisk.totalRead/WriteLatency | ms, per virtual disk | worst disk |
//! | virtualDisk.numberRead/WriteAveraged | operations per second, per virtual disk | sum |
//! | disk.usage | KBps | throughput MB/s (÷ 1024) |
//! | net.received, net.transmitted | KBps | bits per second (× 8000) |
//! | net.packetsRx/Tx | packets in the interval | packets per second |
//! | net.droppedRx + droppedTx | packets in the interval | dropped-packets |
//! | sys.uptime | s | uptime |
//! | guest.disk capacity, freeSpace | bytes, per file system | summed, MB (÷ 2^20) and % |
//!
//! A value that vCenter did not report stays `None`, and nothing defaults to 0.

use vmpulse_plugin_sdk::{Layer, VmSample};

use crate::counters::{Counter, PerfCatalog};
use crate::perf::{ALL_INSTANCES, EntitySample};

const KB_PER_MB: f64 = 1024.0;
const BYTES_PER_MB: f64 = 1024.0 * 1024.0;
/// Bits per KB of vSphere's network rates (KBps). Network rates count 1 KB as 1000 bytes,
/// and the WIT fields are in bits per second.
const BITS_PER_KB: f64 = 8000.0;

/// The counter values of one VM's newest sample.
#[derive(Debug, Clone)]
pub struct PerfValues {
    pub timestamp_ms: i64,
    pub interval_s: Option<u32>,
    values: Vec<(Counter, String, f64)>,
}

impl PerfValues {
    /// Keeps the values of counters in `catalog`, dropping the `*` echo of the simulator.
    pub fn from_sample(sample: &EntitySample, catalog: &PerfCatalog) -> Self {
        let mut values = Self {
            timestamp_ms: sample.timestamp_ms,
            interval_s: sample.interval_s,
            values: Vec::new(),
        };
        values.merge(sample, catalog);
        values
    }

    /// Adds the values of a later query for the same VM.
    pub fn merge(&mut self, sample: &EntitySample, catalog: &PerfCatalog) {
        if sample.timestamp_ms > self.timestamp_ms {
            self.timestamp_ms = sample.timestamp_ms;
            self.interval_s = sample.interval_s.or(self.interval_s);
        }
        for (key, instance, value) in &sample.values {
            if instance == ALL_INSTANCES {
                continue;
            }
            if let Some(counter) = catalog.counter(*key) {
                // Counter values are integers far below 2^53, so an f64 represents them exactly.
                self.values.push((counter, instance.clone(), *value as f64));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Returns the aggregate (`""` instance) value of `counter`.
    fn aggregate(&self, counter: Counter) -> Option<f64> {
        self.values
            .iter()
            .find(|(c, instance, _)| *c == counter && instance.is_empty())
            .map(|(_, _, value)| *value)
    }

    /// Returns the aggregate of a per-disk counter when vCenter has one, otherwise
    /// `combine` over the disks' values.
    fn over_disks(&self, counter: Counter, combine: fn(f64, f64) -> f64) -> Option<f64> {
        self.aggregate(counter).or_else(|| {
            self.values
                .iter()
                .filter(|(c, _, _)| *c == counter)
                .map(|(_, _, value)| *value)
                .reduce(combine)
        })
    }

    /// Returns a summation counter as a percentage of the interval per vCPU.
    fn percent_of_interval(&self, counter: Counter, vcpus: Option<u32>) -> Option<f64> {
        let ms = self.aggregate(counter)?;
        let interval_ms = f64::from(self.interval_s.filter(|s| *s > 0)?) * 1000.0;
        let vcpus = f64::from(vcpus.filter(|n| *n > 0)?);
        Some(ms / interval_ms * 100.0 / vcpus)
    }

    /// Returns a count over the interval as a rate per second.
    fn per_second(&self, counter: Counter) -> Option<f64> {
        let count = self.aggregate(counter)?;
        let interval = f64::from(self.interval_s.filter(|s| *s > 0)?);
        Some(count / interval)
    }
}

/// The properties of one VM read with its sample.
#[derive(Debug, Clone, Default)]
pub struct VmProperties {
    pub powered_on: bool,
    pub tools_running: bool,
    pub vcpus: Option<u32>,
    /// `config.cpuAllocation.limit` in MHz, where -1 means unlimited.
    pub cpu_limit_mhz: Option<i64>,
    pub cpu_reservation_mhz: Option<i64>,
    /// Capacity and free space of every guest file system, in bytes.
    pub guest_disks: Vec<(i64, i64)>,
    pub uptime_seconds: Option<i64>,
    /// `summary.quickStats.guestMemoryUsage`: the active guest memory in MB.
    pub guest_memory_mb: Option<i64>,
}

/// Builds the sample of one VM, or `None` when neither layer had a value.
///
/// vSphere fields, configured CPU limits included, come only with counter values, so a
/// VM vCenter left out of QueryPerf has none. Guest fields come only from a powered-on VM
/// whose VMware Tools run: vCenter keeps the last guest data after Tools stop.
pub fn build(
    vm_id: &str,
    fallback_vcpus: Option<u32>,
    now_ms: i64,
    perf: Option<&PerfValues>,
    properties: Option<&VmProperties>,
) -> Option<VmSample> {
    let perf = perf.filter(|perf| !perf.is_empty());
    let timestamp_ms = perf.map_or(now_ms, |perf| perf.timestamp_ms);
    let mut sample = VmSample::empty(vm_id, u64::try_from(timestamp_ms).ok()?);

    if let Some(perf) = perf {
        let vcpus = properties.and_then(|p| p.vcpus).or(fallback_vcpus);
        fill_vsphere(&mut sample, perf, vcpus, properties);
        sample.layers.push(Layer::Vsphere);
    }
    if let Some(properties) = properties.filter(|p| p.powered_on && p.tools_running)
        && fill_guest(&mut sample, properties)
    {
        sample.layers.push(Layer::GuestOs);
    }
    (!sample.layers.is_empty()).then_some(sample)
}

fn fill_vsphere(
    sample: &mut VmSample,
    perf: &PerfValues,
    vcpus: Option<u32>,
    properties: Option<&VmProperties>,
) {
    let cpu = &mut sample.cpu;
    cpu.usage_mhz = perf.aggregate(Counter::CpuUsageMhz);
    cpu.usage_percent = perf.aggregate(Counter::CpuUsage).map(|v| v / 100.0);
    cpu.ready = perf.percent_of_interval(Counter::CpuReady, vcpus);
    cpu.wait = perf.percent_of_interval(Counter::CpuWait, vcpus);
    if let Some(properties) = properties {
        cpu.limit = mhz(properties.cpu_limit_mhz);
        cpu.reservation = mhz(properties.cpu_reservation_mhz);
    }

    let memory = &mut sample.memory;
    let megabytes = |counter| perf.aggregate(counter).map(|kb| kb / KB_PER_MB);
    memory.usage_percent = perf.aggregate(Counter::MemUsage).map(|v| v / 100.0);
    memory.usage_mb = megabytes(Counter::MemConsumed);
    memory.granted_mb = megabytes(Counter::MemGranted);
    memory.active_mb = megabytes(Counter::MemActive);
    memory.ballooned_mb = megabytes(Counter::MemBalloon);
    memory.compressed_mb = megabytes(Counter::MemCompressed);
    memory.swapped_mb = megabytes(Counter::MemSwapped);

    let disk = &mut sample.disk;
    disk.read_latency = perf.over_disks(Counter::DiskReadLatency, f64::max);
    disk.write_latency = perf.over_disks(Counter::DiskWriteLatency, f64::max);
    disk.read_iops = perf.over_disks(Counter::DiskReadIops, |a, b| a + b);
    disk.write_iops = perf.over_disks(Counter::DiskWriteIops, |a, b| a + b);
    disk.throughput_mbps = perf.aggregate(Counter::DiskUsage).map(|kb| kb / KB_PER_MB);

    let network = &mut sample.network;
    network.in_bps = perf
        .aggregate(Counter::NetReceived)
        .map(|kb| kb * BITS_PER_KB);
    network.out_bps = perf
        .aggregate(Counter::NetTransmitted)
        .map(|kb| kb * BITS_PER_KB);
    network.in_pps = perf.per_second(Counter::NetPacketsRx);
    network.out_pps = perf.per_second(Counter::NetPacketsTx);
    // Half of the drops would understate the total, so both directions are required.
    network.dropped_packets = perf
        .aggregate(Counter::NetDroppedRx)
        .zip(perf.aggregate(Counter::NetDroppedTx))
        .map(|(rx, tx)| rx + tx);

    sample.system.uptime = perf.aggregate(Counter::SysUptime);
}

/// Returns a CPU allocation in MHz. -1 (unlimited) and other negative values are `None`.
fn mhz(value: Option<i64>) -> Option<f64> {
    value.filter(|v| *v >= 0).map(|v| v as f64)
}

/// Fills the guest fields and returns whether any was set.
fn fill_guest(sample: &mut VmSample, properties: &VmProperties) -> bool {
    let mut filled = false;

    let disks: Vec<(f64, f64)> = properties
        .guest_disks
        .iter()
        .filter(|(capacity, free)| *capacity > 0 && *free >= 0 && free <= capacity)
        .map(|&(capacity, free)| (capacity as f64, free as f64))
        .collect();
    if !disks.is_empty() {
        let capacity: f64 = disks.iter().map(|(capacity, _)| capacity).sum();
        let free: f64 = disks.iter().map(|(_, free)| free).sum();
        sample.disk.usage_percent = Some((capacity - free) / capacity * 100.0);
        sample.disk.used_mb = Some((capacity - free) / BYTES_PER_MB);
        sample.disk.free_mb = Some(free / BYTES_PER_MB);
        filled = true;
    }

    // Quick stats read 0 when vCenter has no figure, and a running VM has been up longer.
    if sample.system.uptime.is_none()
        && let Some(uptime) = properties.uptime_seconds.filter(|s| *s > 0)
    {
        let uptime = uptime as f64;
        sample.system.uptime = Some(uptime);
        filled = true;
    }
    if sample.memory.active_mb.is_none()
        && let Some(active) = properties.guest_memory_mb.filter(|mb| *mb >= 0)
    {
        let active = active as f64;
        sample.memory.active_mb = Some(active);
        filled = true;
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::MoRef;

    fn catalog() -> PerfCatalog {
        let keys = crate::counters::COUNTERS
            .iter()
            .zip(1..)
            .map(|(spec, key)| (spec.counter, key))
            .collect();
        PerfCatalog {
            keys,
            max_query_metrics: None,
        }
    }

    fn key(counter: Counter) -> i32 {
        catalog()
            .keys
            .iter()
            .find(|(c, _)| *c == counter)
            .map(|(_, key)| *key)
            .unwrap()
    }

    fn perf(values: &[(Counter, &str, i64)]) -> PerfValues {
        let sample = EntitySample {
            entity: MoRef::new("VirtualMachine", "vm-1"),
            timestamp_ms: 60_000,
            interval_s: Some(20),
            values: values
                .iter()
                .map(|(counter, instance, value)| (key(*counter), (*instance).to_owned(), *value))
                .collect(),
        };
        PerfValues::from_sample(&sample, &catalog())
    }

    #[test]
    fn converts_units() {
        let perf = perf(&[
            (Counter::CpuUsage, "", 2550),
            (Counter::CpuUsageMhz, "", 1200),
            (Counter::CpuReady, "", 400),
            (Counter::CpuWait, "", 8000),
            (Counter::MemUsage, "", 4200),
            (Counter::MemConsumed, "", 2048),
            (Counter::MemActive, "", 512),
            (Counter::DiskUsage, "", 3072),
            (Counter::NetReceived, "", 10),
            (Counter::NetPacketsRx, "", 400),
            (Counter::NetDroppedRx, "", 3),
            (Counter::NetDroppedTx, "", 4),
            (Counter::SysUptime, "", 3600),
        ]);
        let properties = VmProperties {
            powered_on: true,
            vcpus: Some(2),
            cpu_limit_mhz: Some(-1),
            cpu_reservation_mhz: Some(0),
            ..VmProperties::default()
        };
        let sample = build("id", None, 99_000, Some(&perf), Some(&properties)).unwrap();

        assert_eq!(sample.timestamp_ms, 60_000, "the sample's own time");
        assert_eq!(sample.layers, vec![Layer::Vsphere]);
        assert_eq!(sample.cpu.usage_percent, Some(25.5));
        assert_eq!(sample.cpu.usage_mhz, Some(1200.0));
        // 400 ms of 20 s is 2 %, over 2 vCPUs 1 % each.
        assert_eq!(sample.cpu.ready, Some(1.0));
        assert_eq!(sample.cpu.wait, Some(20.0));
        assert_eq!(sample.cpu.limit, None, "-1 means unlimited");
        assert_eq!(sample.cpu.reservation, Some(0.0));
        assert_eq!(sample.memory.usage_percent, Some(42.0));
        assert_eq!(sample.memory.usage_mb, Some(2.0));
        assert_eq!(sample.memory.active_mb, Some(0.5));
        assert_eq!(
            sample.memory.ballooned_mb, None,
            "not reported stays unknown"
        );
        assert_eq!(sample.disk.throughput_mbps, Some(3.0));
        assert_eq!(sample.network.in_bps, Some(80_000.0));
        assert_eq!(sample.network.in_pps, Some(20.0));
        assert_eq!(sample.network.out_pps, None);
        assert_eq!(sample.network.dropped_packets, Some(7.0));
        assert_eq!(sample.system.uptime, Some(3600.0));
    }

    #[test]
    fn combines_virtual_disks() {
        let perf = perf(&[
            (Counter::DiskReadLatency, "scsi0:0", 4),
            (Counter::DiskReadLatency, "scsi0:1", 9),
            (Counter::DiskReadIops, "scsi0:0", 10),
            (Counter::DiskReadIops, "scsi0:1", 5),
            (Counter::DiskWriteIops, "*", 100),
        ]);
        let sample = build("id", Some(1), 0, Some(&perf), None).unwrap();
        assert_eq!(sample.disk.read_latency, Some(9.0));
        assert_eq!(sample.disk.read_iops, Some(15.0));
        assert_eq!(sample.disk.write_iops, None, "the `*` echo is no disk");
    }

    #[test]
    fn ready_needs_interval_and_vcpus() {
        let perf = perf(&[(Counter::CpuReady, "", 400)]);
        let sample = build("id", None, 0, Some(&perf), None).unwrap();
        assert_eq!(sample.cpu.ready, None);
        let sample = build("id", Some(4), 0, Some(&perf), None).unwrap();
        assert_eq!(sample.cpu.ready, Some(0.5));
    }

    #[test]
    fn one_dropped_direction_is_no_total() {
        let perf = perf(&[(Counter::NetDroppedRx, "", 3)]);
        let sample = build("id", None, 0, Some(&perf), None).unwrap();
        assert_eq!(sample.network.dropped_packets, None);
    }

    #[test]
    fn guest_fields_need_running_tools() {
        let mut properties = VmProperties {
            powered_on: true,
            tools_running: true,
            guest_disks: vec![(4 << 30, 1 << 30), (4 << 30, 3 << 30)],
            uptime_seconds: Some(7200),
            guest_memory_mb: Some(300),
            ..VmProperties::default()
        };
        let sample = build("id", None, 5_000, None, Some(&properties)).unwrap();
        assert_eq!(sample.layers, vec![Layer::GuestOs]);
        assert_eq!(
            sample.timestamp_ms, 5_000,
            "server time without a perf sample"
        );
        assert_eq!(sample.disk.usage_percent, Some(50.0));
        assert_eq!(sample.disk.used_mb, Some(4096.0));
        assert_eq!(sample.disk.free_mb, Some(4096.0));
        assert_eq!(sample.system.uptime, Some(7200.0));
        assert_eq!(sample.memory.active_mb, Some(300.0));
        assert_eq!(sample.cpu.limit, None, "no vSphere field without counters");

        properties.tools_running = false;
        assert!(build("id", None, 5_000, None, Some(&properties)).is_none());
    }

    #[test]
    fn perf_uptime_wins_over_quick_stats() {
        let perf = perf(&[(Counter::SysUptime, "", 100)]);
        let properties = VmProperties {
            powered_on: true,
            tools_running: true,
            uptime_seconds: Some(7200),
            ..VmProperties::default()
        };
        let sample = build("id", None, 0, Some(&perf), Some(&properties)).unwrap();
        assert_eq!(sample.system.uptime, Some(100.0));
        assert_eq!(sample.layers, vec![Layer::Vsphere], "Tools added nothing");
    }

    #[test]
    fn vm_without_data_has_no_sample() {
        assert!(build("id", None, 0, None, None).is_none());
        let empty = perf(&[]);
        assert!(build("id", None, 0, Some(&empty), None).is_none());
    }
}
