//! The mapping of Prometheus node_exporter (Linux) metrics to the guest fields.
//!
//! | guest field | node_exporter source | unit |
//! |---|---|---|
//! | cpu load1min / 5min / 15min | `node_load1`, `node_load5`, `node_load15` | load |
//! | cpu usage-percent | `node_cpu_seconds_total`: 100 × (1 − Δidle / Δall modes) | % |
//! | cpu context-switches | rate of `node_context_switches_total` | 1/s |
//! | memory total / free / buffers / cached | `node_memory_{MemTotal,MemFree,Buffers,Cached}_bytes` | MB |
//! | memory used | total − free − buffers − cached | MB |
//! | memory swap-used | `SwapTotal` − `SwapFree` | MB |
//! | memory usage-percent | (total − `MemAvailable`) / total × 100; used / total without `MemAvailable` | % |
//! | disk used / free / usage-percent | `node_filesystem_{size,free,avail}_bytes`, as `df` computes them | MB, % |
//! | disk inodes-total / used | `node_filesystem_files`, `files` − `files_free` | count |
//! | disk read-bytes / write-bytes | rates of `node_disk_{read,written}_bytes_total` | bytes/s |
//! | network in/out bytes and packets, errors, dropped | rates of `node_network_{receive,transmit}_{bytes,packets,errs,drop}_total` | 1/s |
//! | system uptime | `node_time_seconds` − `node_boot_time_seconds` | s |
//! | system process-total / running / sleeping | `node_processes_state` | count |
//! | system process-running without it | `node_procs_running` | count |
//!
//! `used` is memory neither free nor in buffers or the page cache. It differs from the
//! `used` column of free(1) in procps-ng 4, which is total − `MemAvailable`: that figure
//! is what usage-percent reports.
//!
//! Disk space is summed over [`devices::is_local_filesystem`] file systems, each device
//! counted once (bind mounts repeat it); disk I/O over [`devices::is_whole_disk`] devices;
//! traffic over [`devices::is_counted_interface`] interfaces.
//!
//! `node_processes_state` needs node_exporter's `--collector.processes`. It counts
//! processes, and sleeping means the states S, D and I, as top(1) counts them. Without it,
//! process-running is `node_procs_running` (runnable threads) and the total and sleeping
//! counts are unknown.

use std::collections::{BTreeMap, BTreeSet};

use crate::devices;
use crate::exposition::Sample;
use crate::reading::{Counter, Counters, DeviceSet, Reading, add_to, megabytes, percent};

/// The values gathered from a payload, sample by sample.
#[derive(Debug, Default)]
pub struct NodeExporter {
    recognized: usize,
    time: Option<f64>,
    boot_time: Option<f64>,
    load: [Option<f64>; 3],
    memory: Meminfo,
    procs_running: Option<f64>,
    process_states: BTreeMap<String, f64>,
    context_switches: Option<f64>,
    cpu: CpuTimes,
    /// Keyed by (device, mountpoint).
    filesystems: BTreeMap<(String, String), Filesystem>,
    disks: BTreeMap<String, [Option<f64>; 2]>,
    interfaces: BTreeMap<String, [Option<f64>; INTERFACE_COUNTERS]>,
}

/// `/proc/meminfo` fields, in bytes.
#[derive(Debug, Default)]
struct Meminfo {
    total: Option<f64>,
    free: Option<f64>,
    available: Option<f64>,
    buffers: Option<f64>,
    cached: Option<f64>,
    swap_total: Option<f64>,
    swap_free: Option<f64>,
}

#[derive(Debug, Default)]
struct CpuTimes {
    idle: Option<f64>,
    total: Option<f64>,
    cpus: BTreeSet<String>,
}

/// One mount's figures, in bytes and inodes.
#[derive(Debug, Default)]
struct Filesystem {
    fstype: String,
    size: Option<f64>,
    free: Option<f64>,
    avail: Option<f64>,
    files: Option<f64>,
    files_free: Option<f64>,
}

/// The per-interface counters, in this order: received and sent bytes, received and sent
/// packets, receive and transmit errors, received and sent drops.
const INTERFACE_COUNTERS: usize = 8;

impl NodeExporter {
    /// Takes one sample; samples of other metrics are ignored.
    pub fn add(&mut self, sample: &Sample<'_>) {
        let value = sample.value;
        if !value.is_finite() {
            return;
        }
        let recognized = match sample.name {
            "node_time_seconds" => set(&mut self.time, value),
            "node_boot_time_seconds" => set(&mut self.boot_time, value),
            "node_load1" => set(&mut self.load[0], value),
            "node_load5" => set(&mut self.load[1], value),
            "node_load15" => set(&mut self.load[2], value),
            "node_procs_running" => set(&mut self.procs_running, value),
            "node_context_switches_total" => set(&mut self.context_switches, value),
            "node_processes_state" => self.add_process_state(sample),
            "node_cpu_seconds_total" => self.add_cpu_time(sample),
            name if name.starts_with("node_memory_") => self.add_memory(name, value),
            name if name.starts_with("node_filesystem_") => self.add_filesystem(sample),
            name if name.starts_with("node_disk_") => self.add_disk(sample),
            name if name.starts_with("node_network_") => self.add_interface(sample),
            _ => false,
        };
        if recognized {
            self.recognized += 1;
        }
    }

    pub fn recognized_samples(&self) -> usize {
        self.recognized
    }

    fn add_memory(&mut self, name: &str, value: f64) -> bool {
        let field = match name {
            "node_memory_MemTotal_bytes" => &mut self.memory.total,
            "node_memory_MemFree_bytes" => &mut self.memory.free,
            "node_memory_MemAvailable_bytes" => &mut self.memory.available,
            "node_memory_Buffers_bytes" => &mut self.memory.buffers,
            "node_memory_Cached_bytes" => &mut self.memory.cached,
            "node_memory_SwapTotal_bytes" => &mut self.memory.swap_total,
            "node_memory_SwapFree_bytes" => &mut self.memory.swap_free,
            _ => return false,
        };
        set(field, value)
    }

    fn add_process_state(&mut self, sample: &Sample<'_>) -> bool {
        let Some(state) = sample.label("state") else {
            return false;
        };
        *self.process_states.entry(state.to_owned()).or_default() += sample.value;
        true
    }

    fn add_cpu_time(&mut self, sample: &Sample<'_>) -> bool {
        let (Some(cpu), Some(mode)) = (sample.label("cpu"), sample.label("mode")) else {
            return false;
        };
        add_to(&mut self.cpu.total, sample.value);
        if mode == "idle" {
            add_to(&mut self.cpu.idle, sample.value);
        }
        self.cpu.cpus.insert(cpu.to_owned());
        true
    }

    fn add_filesystem(&mut self, sample: &Sample<'_>) -> bool {
        let (Some(device), Some(mountpoint)) = (sample.label("device"), sample.label("mountpoint"))
        else {
            return false;
        };
        let key = (device.to_owned(), mountpoint.to_owned());
        let filesystem = self.filesystems.entry(key).or_default();
        if let Some(fstype) = sample.label("fstype") {
            fstype.clone_into(&mut filesystem.fstype);
        }
        let field = match sample.name {
            "node_filesystem_size_bytes" => &mut filesystem.size,
            "node_filesystem_free_bytes" => &mut filesystem.free,
            "node_filesystem_avail_bytes" => &mut filesystem.avail,
            "node_filesystem_files" => &mut filesystem.files,
            "node_filesystem_files_free" => &mut filesystem.files_free,
            _ => return false,
        };
        set(field, sample.value)
    }

    fn add_disk(&mut self, sample: &Sample<'_>) -> bool {
        let index = match sample.name {
            "node_disk_read_bytes_total" => 0,
            "node_disk_written_bytes_total" => 1,
            _ => return false,
        };
        let Some(device) = sample.label("device") else {
            return false;
        };
        let counters = self.disks.entry(device.to_owned()).or_default();
        set(&mut counters[index], sample.value)
    }

    fn add_interface(&mut self, sample: &Sample<'_>) -> bool {
        let index = match sample.name {
            "node_network_receive_bytes_total" => 0,
            "node_network_transmit_bytes_total" => 1,
            "node_network_receive_packets_total" => 2,
            "node_network_transmit_packets_total" => 3,
            "node_network_receive_errs_total" => 4,
            "node_network_transmit_errs_total" => 5,
            "node_network_receive_drop_total" => 6,
            "node_network_transmit_drop_total" => 7,
            _ => return false,
        };
        let Some(device) = sample.label("device") else {
            return false;
        };
        let counters = self.interfaces.entry(device.to_owned()).or_default();
        set(&mut counters[index], sample.value)
    }

    /// Computes the guest fields from everything gathered.
    pub fn finish(self) -> Reading {
        let mut reading = Reading {
            exporter_time: self.time,
            boot_time: self.boot_time,
            recognized_samples: self.recognized,
            ..Reading::default()
        };
        reading.cpu.load1min = self.load[0];
        reading.cpu.load5min = self.load[1];
        reading.cpu.load15min = self.load[2];
        map_memory(&self.memory, &mut reading);
        map_filesystems(&self.filesystems, &mut reading);
        map_processes(&self.process_states, self.procs_running, &mut reading);

        let counters = &mut reading.counters;
        counters.set(Counter::CpuIdle, self.cpu.idle);
        counters.set(Counter::CpuTotal, self.cpu.total);
        counters.set_device_set(
            DeviceSet::Cpus,
            devices::fingerprint(self.cpu.cpus.iter().map(String::as_str)),
        );
        counters.set(Counter::ContextSwitches, self.context_switches);
        sum_disks(&self.disks, counters);
        sum_interfaces(&self.interfaces, counters);
        reading
    }
}

fn map_memory(memory: &Meminfo, reading: &mut Reading) {
    let out = &mut reading.memory;
    out.total_mb = megabytes(memory.total);
    out.free_mb = megabytes(memory.free);
    out.buffers_mb = megabytes(memory.buffers);
    out.cached_mb = megabytes(memory.cached);

    let used = match (memory.total, memory.free, memory.buffers, memory.cached) {
        (Some(total), Some(free), Some(buffers), Some(cached)) => {
            Some(total - free - buffers - cached).filter(|used| *used >= 0.0)
        }
        _ => None,
    };
    out.used_mb = megabytes(used);
    out.swap_used_mb = match (memory.swap_total, memory.swap_free) {
        (Some(total), Some(free)) => megabytes(Some(total - free).filter(|used| *used >= 0.0)),
        _ => None,
    };
    let not_available = match (memory.total, memory.available) {
        (Some(total), Some(available)) => Some(total - available),
        _ => used,
    };
    out.usage_percent = percent(not_available, memory.total).map(|p| p.clamp(0.0, 100.0));
}

/// Sums space and inodes over local file systems, counting each device once.
///
/// Space follows `df`: used = size − free, and the percent is used / (used + avail), so
/// blocks reserved for root count neither as used nor as free.
///
/// NOTE: ZFS datasets of one pool are separate devices that each report the pool's free
/// space, so a guest with several mounted datasets has its free space counted repeatedly.
fn map_filesystems(filesystems: &BTreeMap<(String, String), Filesystem>, reading: &mut Reading) {
    let mut devices_seen = BTreeSet::new();
    let (mut used, mut avail) = (None, None);
    let (mut inodes_total, mut inodes_used) = (None, None);
    for ((device, _mountpoint), filesystem) in filesystems {
        if !devices::is_local_filesystem(&filesystem.fstype) || !devices_seen.insert(device) {
            continue;
        }
        if let (Some(size), Some(free), Some(available)) =
            (filesystem.size, filesystem.free, filesystem.avail)
        {
            add_to(&mut used, (size - free).max(0.0));
            add_to(&mut avail, available);
        }
        // btrfs and vfat report 0 inodes: they have no fixed inode table.
        if let (Some(files), Some(files_free)) = (filesystem.files, filesystem.files_free)
            && files > 0.0
        {
            add_to(&mut inodes_total, files);
            add_to(&mut inodes_used, (files - files_free).max(0.0));
        }
    }

    let disk = &mut reading.disk;
    disk.used_mb = megabytes(used);
    disk.free_mb = megabytes(avail);
    disk.usage_percent = match (used, avail) {
        (Some(used), Some(avail)) => percent(Some(used), Some(used + avail)),
        _ => None,
    };
    disk.inodes_total = inodes_total;
    disk.inodes_used = inodes_used;
}

fn map_processes(
    states: &BTreeMap<String, f64>,
    procs_running: Option<f64>,
    reading: &mut Reading,
) {
    let system = &mut reading.system;
    if states.is_empty() {
        system.process_running = procs_running;
        return;
    }
    let count = |names: &[&str]| -> f64 { names.iter().filter_map(|name| states.get(*name)).sum() };
    system.process_total = Some(states.values().sum());
    system.process_running = Some(count(&["R"]));
    system.process_sleeping = Some(count(&["S", "D", "I"]));
}

fn sum_disks(disks: &BTreeMap<String, [Option<f64>; 2]>, counters: &mut Counters) {
    let whole_disks: Vec<(&String, &[Option<f64>; 2])> = disks
        .iter()
        .filter(|(name, _)| devices::is_whole_disk(name))
        .collect();
    for (index, counter) in [Counter::DiskReadBytes, Counter::DiskWrittenBytes]
        .into_iter()
        .enumerate()
    {
        let mut sum = None;
        for (_, values) in &whole_disks {
            if let Some(value) = values[index] {
                add_to(&mut sum, value);
            }
        }
        counters.set(counter, sum);
    }
    counters.set_device_set(
        DeviceSet::Disks,
        devices::fingerprint(whole_disks.iter().map(|(name, _)| name.as_str())),
    );
}

fn sum_interfaces(
    interfaces: &BTreeMap<String, [Option<f64>; INTERFACE_COUNTERS]>,
    counters: &mut Counters,
) {
    let counted: Vec<(&String, &[Option<f64>; INTERFACE_COUNTERS])> = interfaces
        .iter()
        .filter(|(name, _)| devices::is_counted_interface(name))
        .collect();
    // Each output counter sums these per-interface indexes.
    let outputs: [(Counter, &[usize]); 6] = [
        (Counter::NetReceivedBytes, &[0]),
        (Counter::NetSentBytes, &[1]),
        (Counter::NetReceivedPackets, &[2]),
        (Counter::NetSentPackets, &[3]),
        (Counter::NetErrors, &[4, 5]),
        (Counter::NetDropped, &[6, 7]),
    ];
    for (counter, indexes) in outputs {
        let mut sum = None;
        for (_, values) in &counted {
            for &index in indexes {
                if let Some(value) = values[index] {
                    add_to(&mut sum, value);
                }
            }
        }
        counters.set(counter, sum);
    }
    counters.set_device_set(
        DeviceSet::Interfaces,
        devices::fingerprint(counted.iter().map(|(name, _)| name.as_str())),
    );
}

/// Stores a sample's value and reports it as recognized.
fn set(field: &mut Option<f64>, value: f64) -> bool {
    *field = Some(value);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Reading;

    const PAYLOAD: &str = r#"# HELP node_time_seconds System time in seconds since epoch (1970).
# TYPE node_time_seconds gauge
node_time_seconds 1.7e+09
node_boot_time_seconds 1.6999e+09
node_load1 0.5
node_load5 0.25
node_load15 0.125
node_memory_MemTotal_bytes 8.589934592e+09
node_memory_MemFree_bytes 2.147483648e+09
node_memory_MemAvailable_bytes 6.442450944e+09
node_memory_Buffers_bytes 1.073741824e+09
node_memory_Cached_bytes 2.147483648e+09
node_memory_SwapTotal_bytes 2.147483648e+09
node_memory_SwapFree_bytes 1.073741824e+09
node_procs_running 3
node_procs_blocked 1
node_context_switches_total 123456
node_cpu_seconds_total{cpu="0",mode="idle"} 900
node_cpu_seconds_total{cpu="0",mode="user"} 80
node_cpu_seconds_total{cpu="0",mode="system"} 20
node_cpu_seconds_total{cpu="1",mode="idle"} 950
node_cpu_seconds_total{cpu="1",mode="iowait"} 50
node_filesystem_size_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 1.073741824e+10
node_filesystem_free_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 4.294967296e+09
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 3.221225472e+09
node_filesystem_files{device="/dev/sda1",fstype="ext4",mountpoint="/"} 655360
node_filesystem_files_free{device="/dev/sda1",fstype="ext4",mountpoint="/"} 600000
node_filesystem_size_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/var/lib/bind"} 1.073741824e+10
node_filesystem_free_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/var/lib/bind"} 4.294967296e+09
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/var/lib/bind"} 3.221225472e+09
node_filesystem_size_bytes{device="/dev/sdb1",fstype="xfs",mountpoint="/data"} 2.147483648e+10
node_filesystem_free_bytes{device="/dev/sdb1",fstype="xfs",mountpoint="/data"} 1.073741824e+10
node_filesystem_avail_bytes{device="/dev/sdb1",fstype="xfs",mountpoint="/data"} 1.073741824e+10
node_filesystem_files{device="/dev/sdb1",fstype="xfs",mountpoint="/data"} 100000
node_filesystem_files_free{device="/dev/sdb1",fstype="xfs",mountpoint="/data"} 99000
node_filesystem_size_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 8.589934592e+08
node_filesystem_free_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 8.589934592e+08
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 8.589934592e+08
node_filesystem_size_bytes{device="/dev/loop0",fstype="squashfs",mountpoint="/snap/core/1"} 1.048576e+08
node_filesystem_free_bytes{device="/dev/loop0",fstype="squashfs",mountpoint="/snap/core/1"} 0
node_filesystem_avail_bytes{device="/dev/loop0",fstype="squashfs",mountpoint="/snap/core/1"} 0
node_disk_read_bytes_total{device="sda"} 1000
node_disk_read_bytes_total{device="sdb"} 500
node_disk_read_bytes_total{device="dm-0"} 1400
node_disk_read_bytes_total{device="loop0"} 77
node_disk_written_bytes_total{device="sda"} 2000
node_disk_written_bytes_total{device="sdb"} 1000
node_network_receive_bytes_total{device="lo"} 99999
node_network_receive_bytes_total{device="ens192"} 4000
node_network_receive_bytes_total{device="docker0"} 3000
node_network_transmit_bytes_total{device="ens192"} 5000
node_network_receive_packets_total{device="ens192"} 40
node_network_transmit_packets_total{device="ens192"} 50
node_network_receive_errs_total{device="ens192"} 1
node_network_transmit_errs_total{device="ens192"} 2
node_network_receive_drop_total{device="ens192"} 3
node_network_transmit_drop_total{device="ens192"} 4
"#;

    fn reading(payload: &str) -> Reading {
        Reading::from_payload(payload.as_bytes()).unwrap()
    }

    #[test]
    fn gauges_are_mapped_in_mb_and_percent() {
        let reading = reading(PAYLOAD);

        assert_eq!(reading.exporter_time, Some(1.7e9));
        assert_eq!(reading.boot_time, Some(1.6999e9));
        assert_eq!(reading.cpu.load1min, Some(0.5));
        assert_eq!(reading.cpu.load5min, Some(0.25));
        assert_eq!(reading.cpu.load15min, Some(0.125));
        assert_eq!(reading.memory.total_mb, Some(8192.0));
        assert_eq!(reading.memory.free_mb, Some(2048.0));
        assert_eq!(reading.memory.buffers_mb, Some(1024.0));
        assert_eq!(reading.memory.cached_mb, Some(2048.0));
        assert_eq!(
            reading.memory.used_mb,
            Some(3072.0),
            "8192 - 2048 - 1024 - 2048"
        );
        assert_eq!(reading.memory.swap_used_mb, Some(1024.0));
        assert_eq!(reading.memory.usage_percent, Some(25.0), "(8 - 6) / 8 GiB");
        assert_eq!(reading.memory.available_mb, None, "a Windows-only field");
    }

    #[test]
    fn disk_space_counts_each_local_device_once() {
        let reading = reading(PAYLOAD);

        // sda1 once (bind mount skipped) plus sdb1; tmpfs and squashfs skipped.
        assert_eq!(reading.disk.used_mb, Some(6144.0 + 10240.0));
        assert_eq!(reading.disk.free_mb, Some(3072.0 + 10240.0));
        let expected = 16384.0 / (16384.0 + 13312.0) * 100.0;
        assert_eq!(reading.disk.usage_percent, Some(expected));
        assert_eq!(reading.disk.inodes_total, Some(755_360.0));
        assert_eq!(reading.disk.inodes_used, Some(55_360.0 + 1000.0));
    }

    #[test]
    fn counters_sum_whole_disks_and_real_interfaces() {
        let counters = reading(PAYLOAD).counters;

        assert_eq!(counters.get(Counter::CpuIdle), Some(1850.0));
        assert_eq!(counters.get(Counter::CpuTotal), Some(2000.0));
        assert_eq!(counters.get(Counter::ContextSwitches), Some(123_456.0));
        assert_eq!(
            counters.get(Counter::DiskReadBytes),
            Some(1500.0),
            "sda + sdb"
        );
        assert_eq!(counters.get(Counter::DiskWrittenBytes), Some(3000.0));
        assert_eq!(
            counters.get(Counter::NetReceivedBytes),
            Some(4000.0),
            "ens192 only"
        );
        assert_eq!(counters.get(Counter::NetSentBytes), Some(5000.0));
        assert_eq!(counters.get(Counter::NetReceivedPackets), Some(40.0));
        assert_eq!(counters.get(Counter::NetSentPackets), Some(50.0));
        assert_eq!(counters.get(Counter::NetErrors), Some(3.0));
        assert_eq!(counters.get(Counter::NetDropped), Some(7.0));
        assert_eq!(
            counters.device_set(DeviceSet::Disks),
            devices::fingerprint(["sda", "sdb"])
        );
        assert_eq!(
            counters.device_set(DeviceSet::Interfaces),
            devices::fingerprint(["ens192"])
        );
    }

    #[test]
    fn running_without_the_processes_collector() {
        let reading = reading(PAYLOAD);

        assert_eq!(reading.system.process_running, Some(3.0));
        assert_eq!(reading.system.process_total, None);
        assert_eq!(reading.system.process_sleeping, None);
    }

    #[test]
    fn process_states_give_total_running_and_sleeping() {
        let payload = format!(
            "{PAYLOAD}node_processes_state{{state=\"R\"}} 2\n\
             node_processes_state{{state=\"S\"}} 150\n\
             node_processes_state{{state=\"D\"}} 1\n\
             node_processes_state{{state=\"I\"}} 40\n\
             node_processes_state{{state=\"Z\"}} 1\n"
        );

        let reading = reading(&payload);

        assert_eq!(reading.system.process_total, Some(194.0));
        assert_eq!(reading.system.process_running, Some(2.0));
        assert_eq!(reading.system.process_sleeping, Some(191.0));
    }

    #[test]
    fn usage_percent_without_memavailable_uses_used() {
        let payload = "node_memory_MemTotal_bytes 1000\n\
                       node_memory_MemFree_bytes 500\n\
                       node_memory_Buffers_bytes 100\n\
                       node_memory_Cached_bytes 150\n";

        let reading = reading(payload);

        assert_eq!(reading.memory.usage_percent, Some(25.0));
    }

    #[test]
    fn missing_metrics_stay_unknown() {
        let reading = reading("node_load1 0.1\n");

        assert_eq!(reading.cpu.load1min, Some(0.1));
        assert_eq!(reading.memory.total_mb, None);
        assert_eq!(reading.memory.used_mb, None);
        assert_eq!(reading.memory.usage_percent, None);
        assert_eq!(reading.disk.usage_percent, None);
        assert_eq!(reading.disk.inodes_total, None);
        assert_eq!(reading.system.process_running, None);
        assert!(reading.counters.is_empty());
    }

    #[test]
    fn inode_sums_skip_filesystems_without_inodes() {
        let payload = "node_filesystem_size_bytes{device=\"/dev/sda2\",fstype=\"btrfs\",mountpoint=\"/\"} 100\n\
                       node_filesystem_free_bytes{device=\"/dev/sda2\",fstype=\"btrfs\",mountpoint=\"/\"} 40\n\
                       node_filesystem_avail_bytes{device=\"/dev/sda2\",fstype=\"btrfs\",mountpoint=\"/\"} 40\n\
                       node_filesystem_files{device=\"/dev/sda2\",fstype=\"btrfs\",mountpoint=\"/\"} 0\n\
                       node_filesystem_files_free{device=\"/dev/sda2\",fstype=\"btrfs\",mountpoint=\"/\"} 0\n";

        let reading = reading(payload);

        assert_eq!(reading.disk.usage_percent, Some(60.0));
        assert_eq!(reading.disk.inodes_total, None);
        assert_eq!(reading.disk.inodes_used, None);
    }

    #[test]
    fn not_finite_values_are_ignored() {
        let reading = reading("node_load1 NaN\nnode_load5 +Inf\nnode_load15 1\n");

        assert_eq!(reading.cpu.load1min, None);
        assert_eq!(reading.cpu.load5min, None);
        assert_eq!(reading.cpu.load15min, Some(1.0));
    }
}
