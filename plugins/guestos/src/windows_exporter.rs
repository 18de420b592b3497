//! The mapping of Prometheus windows_exporter metrics to the guest fields.
//!
//! windows_exporter renamed several metrics over its releases; each field takes the first
//! name present, newest first.
//!
//! | guest field | windows_exporter source | unit |
//! |---|---|---|
//! | cpu usage-percent | `windows_cpu_time_total`: 100 × (1 − Δidle / Δ(idle + user + privileged)) | % |
//! | cpu context-switches | rate of `windows_system_context_switches_total` | 1/s |
//! | memory total | `windows_memory_physical_total_bytes`, `windows_cs_physical_memory_bytes` | MB |
//! | memory free | `windows_memory_physical_free_bytes`, `windows_os_physical_memory_free_bytes` | MB |
//! | memory available / committed | `windows_memory_available_bytes`, `windows_memory_committed_bytes` | MB |
//! | memory used, usage-percent | total − available (total − free without it), and its share of total | MB, % |
//! | memory swap-used | Σ `windows_pagefile_limit_bytes` − `free_bytes`, or `windows_os_paging_*` | MB |
//! | disk used / free / usage-percent | `windows_logical_disk_size_bytes`, `free_bytes` | MB, % |
//! | disk read-bytes / write-bytes | rates of `windows_logical_disk_{read,write}_bytes_total` | bytes/s |
//! | network in/out bytes and packets, errors, dropped | rates of `windows_net_*_total` | 1/s |
//! | system uptime | current time − boot time (`windows_system_boot_time_timestamp`, `..._seconds`, or the older `windows_system_system_up_time`, which is also the boot time) | s |
//! | system process-total | `windows_system_processes`, `windows_os_processes` | count |
//!
//! Windows' "% Privileged Time" counter already contains DPC and interrupt time, so the
//! `dpc` and `interrupt` modes are left out of the CPU total to avoid counting them twice.
//! Used memory is what Task Manager shows as in use: the standby cache is available.
//! Disk figures cover volumes with a drive letter ([`devices::is_drive_letter_volume`]),
//! traffic the NICs of [`devices::is_counted_windows_nic`]. Windows has no load average
//! and no inode counts, and windows_exporter reports no per-state process counts, so
//! those fields stay unknown.

use std::collections::{BTreeMap, BTreeSet};

use crate::devices;
use crate::exposition::Sample;
use crate::reading::{Counter, Counters, DeviceSet, Reading, add_to, megabytes, percent};

/// The values gathered from a payload, sample by sample.
#[derive(Debug, Default)]
pub struct WindowsExporter {
    recognized: usize,
    /// Values of single-series metrics by name; the mapping picks among renamed ones.
    scalars: BTreeMap<&'static str, f64>,
    cpu_idle: Option<f64>,
    cpu_total: Option<f64>,
    cores: BTreeSet<String>,
    /// Σ limit and Σ free over paging files, from the newer `pagefile` collector.
    pagefile: [Option<f64>; 2],
    volumes: BTreeMap<String, [Option<f64>; VOLUME_VALUES]>,
    nics: BTreeMap<String, [Option<f64>; NIC_COUNTERS]>,
}

/// Single-series metrics this mapping reads.
const SCALARS: &[&str] = &[
    "windows_time_current_timestamp_seconds",
    "windows_os_time",
    "windows_system_boot_time_timestamp",
    "windows_system_boot_time_timestamp_seconds",
    "windows_system_system_up_time",
    "windows_system_context_switches_total",
    "windows_system_processes",
    "windows_os_processes",
    "windows_memory_physical_total_bytes",
    "windows_cs_physical_memory_bytes",
    "windows_memory_physical_free_bytes",
    "windows_os_physical_memory_free_bytes",
    "windows_memory_available_bytes",
    "windows_memory_committed_bytes",
    "windows_os_paging_limit_bytes",
    "windows_os_paging_free_bytes",
];

/// Per-volume values, in this order: size, free, read bytes, written bytes.
const VOLUME_VALUES: usize = 4;

/// Per-NIC counters, in this order: received and sent bytes, received and sent packets,
/// receive and send errors, received and sent discards.
const NIC_COUNTERS: usize = 8;

impl WindowsExporter {
    /// Takes one sample; samples of other metrics are ignored.
    pub fn add(&mut self, sample: &Sample<'_>) {
        if !sample.value.is_finite() {
            return;
        }
        let recognized = match sample.name {
            "windows_cpu_time_total" => self.add_cpu_time(sample),
            "windows_pagefile_limit_bytes" => self.add_pagefile(0, sample.value),
            "windows_pagefile_free_bytes" => self.add_pagefile(1, sample.value),
            name if name.starts_with("windows_logical_disk_") => self.add_volume(sample),
            name if name.starts_with("windows_net_") => self.add_nic(sample),
            name => match SCALARS.iter().find(|known| **known == name) {
                Some(known) => {
                    self.scalars.insert(known, sample.value);
                    true
                }
                None => false,
            },
        };
        if recognized {
            self.recognized += 1;
        }
    }

    fn add_cpu_time(&mut self, sample: &Sample<'_>) -> bool {
        let (Some(core), Some(mode)) = (sample.label("core"), sample.label("mode")) else {
            return false;
        };
        match mode {
            "idle" => {
                add_to(&mut self.cpu_idle, sample.value);
                add_to(&mut self.cpu_total, sample.value);
            }
            "user" | "privileged" => add_to(&mut self.cpu_total, sample.value),
            // Parts of privileged time: see the module documentation.
            _ => {}
        }
        self.cores.insert(core.to_owned());
        true
    }

    fn add_pagefile(&mut self, index: usize, value: f64) -> bool {
        add_to(&mut self.pagefile[index], value);
        true
    }

    fn add_volume(&mut self, sample: &Sample<'_>) -> bool {
        let index = match sample.name {
            "windows_logical_disk_size_bytes" => 0,
            "windows_logical_disk_free_bytes" => 1,
            "windows_logical_disk_read_bytes_total" => 2,
            "windows_logical_disk_write_bytes_total" => 3,
            _ => return false,
        };
        let Some(volume) = sample.label("volume") else {
            return false;
        };
        self.volumes.entry(volume.to_owned()).or_default()[index] = Some(sample.value);
        true
    }

    fn add_nic(&mut self, sample: &Sample<'_>) -> bool {
        let index = match sample.name {
            "windows_net_bytes_received_total" => 0,
            "windows_net_bytes_sent_total" => 1,
            "windows_net_packets_received_total" => 2,
            "windows_net_packets_sent_total" => 3,
            "windows_net_packets_received_errors_total" => 4,
            "windows_net_packets_outbound_errors_total" => 5,
            "windows_net_packets_received_discarded_total" => 6,
            "windows_net_packets_outbound_discarded_total" => 7,
            _ => return false,
        };
        let Some(nic) = sample.label("nic") else {
            return false;
        };
        self.nics.entry(nic.to_owned()).or_default()[index] = Some(sample.value);
        true
    }

    /// Returns the first of `names` the payload had.
    fn first(&self, names: &[&str]) -> Option<f64> {
        names
            .iter()
            .find_map(|name| self.scalars.get(name).copied())
    }

    /// Computes the guest fields from everything gathered.
    pub fn finish(self) -> Reading {
        let mut reading = Reading {
            exporter_time: self
                .first(&["windows_time_current_timestamp_seconds", "windows_os_time"]),
            boot_time: self.first(&[
                "windows_system_boot_time_timestamp",
                "windows_system_boot_time_timestamp_seconds",
                "windows_system_system_up_time",
            ]),
            recognized_samples: self.recognized,
            ..Reading::default()
        };
        reading.system.process_total =
            self.first(&["windows_system_processes", "windows_os_processes"]);
        self.map_memory(&mut reading);
        map_volumes(&self.volumes, &mut reading);

        let counters = &mut reading.counters;
        counters.set(Counter::CpuIdle, self.cpu_idle);
        counters.set(Counter::CpuTotal, self.cpu_total);
        counters.set_device_set(
            DeviceSet::Cpus,
            devices::fingerprint(self.cores.iter().map(String::as_str)),
        );
        counters.set(
            Counter::ContextSwitches,
            self.first(&["windows_system_context_switches_total"]),
        );
        sum_nics(&self.nics, counters);
        reading
    }

    fn map_memory(&self, reading: &mut Reading) {
        let total = self.first(&[
            "windows_memory_physical_total_bytes",
            "windows_cs_physical_memory_bytes",
        ]);
        let free = self.first(&[
            "windows_memory_physical_free_bytes",
            "windows_os_physical_memory_free_bytes",
        ]);
        let available = self.first(&["windows_memory_available_bytes"]);
        let used = match (total, available.or(free)) {
            (Some(total), Some(unused)) => Some(total - unused).filter(|used| *used >= 0.0),
            _ => None,
        };
        let swap_used = match self.pagefile {
            [Some(limit), Some(free)] => Some(limit - free),
            _ => match (
                self.first(&["windows_os_paging_limit_bytes"]),
                self.first(&["windows_os_paging_free_bytes"]),
            ) {
                (Some(limit), Some(free)) => Some(limit - free),
                _ => None,
            },
        };

        let memory = &mut reading.memory;
        memory.total_mb = megabytes(total);
        memory.free_mb = megabytes(free);
        memory.available_mb = megabytes(available);
        memory.committed_mb = megabytes(self.first(&["windows_memory_committed_bytes"]));
        memory.used_mb = megabytes(used);
        memory.usage_percent = percent(used, total).map(|p| p.min(100.0));
        memory.swap_used_mb = megabytes(swap_used.filter(|used| *used >= 0.0));
    }
}

fn map_volumes(volumes: &BTreeMap<String, [Option<f64>; VOLUME_VALUES]>, reading: &mut Reading) {
    let lettered: Vec<(&String, &[Option<f64>; VOLUME_VALUES])> = volumes
        .iter()
        .filter(|(name, _)| devices::is_drive_letter_volume(name))
        .collect();
    let (mut size, mut free) = (None, None);
    let (mut read, mut written) = (None, None);
    for (_, [volume_size, volume_free, volume_read, volume_written]) in &lettered {
        if let (Some(volume_size), Some(volume_free)) = (volume_size, volume_free) {
            add_to(&mut size, *volume_size);
            add_to(&mut free, *volume_free);
        }
        if let Some(value) = volume_read {
            add_to(&mut read, *value);
        }
        if let Some(value) = volume_written {
            add_to(&mut written, *value);
        }
    }

    let used = match (size, free) {
        (Some(size), Some(free)) => Some((size - free).max(0.0)),
        _ => None,
    };
    reading.disk.used_mb = megabytes(used);
    reading.disk.free_mb = megabytes(free);
    reading.disk.usage_percent = percent(used, size);

    let counters = &mut reading.counters;
    counters.set(Counter::DiskReadBytes, read);
    counters.set(Counter::DiskWrittenBytes, written);
    counters.set_device_set(
        DeviceSet::Disks,
        devices::fingerprint(lettered.iter().map(|(name, _)| name.as_str())),
    );
}

fn sum_nics(nics: &BTreeMap<String, [Option<f64>; NIC_COUNTERS]>, counters: &mut Counters) {
    let counted: Vec<(&String, &[Option<f64>; NIC_COUNTERS])> = nics
        .iter()
        .filter(|(name, _)| devices::is_counted_windows_nic(name))
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(payload: &str) -> Reading {
        Reading::from_payload(payload.as_bytes()).unwrap()
    }

    const NEWER_NAMES: &str = r#"# TYPE windows_cpu_time_total counter
windows_cpu_time_total{core="0,0",mode="dpc"} 10
windows_cpu_time_total{core="0,0",mode="idle"} 700
windows_cpu_time_total{core="0,0",mode="interrupt"} 5
windows_cpu_time_total{core="0,0",mode="privileged"} 100
windows_cpu_time_total{core="0,0",mode="user"} 200
windows_memory_physical_total_bytes 4.294967296e+09
windows_memory_physical_free_bytes 1.073741824e+09
windows_memory_available_bytes 2.147483648e+09
windows_memory_committed_bytes 3.221225472e+09
windows_pagefile_limit_bytes{file="\\??\\C:\\pagefile.sys"} 1.073741824e+09
windows_pagefile_free_bytes{file="\\??\\C:\\pagefile.sys"} 8.05306368e+08
windows_system_boot_time_timestamp 1.69e+09
windows_time_current_timestamp_seconds 1.7e+09
windows_system_processes 120
windows_system_context_switches_total 5e+06
windows_logical_disk_size_bytes{volume="C:"} 1.073741824e+11
windows_logical_disk_free_bytes{volume="C:"} 5.36870912e+10
windows_logical_disk_size_bytes{volume="HarddiskVolume1"} 5.24288e+08
windows_logical_disk_free_bytes{volume="HarddiskVolume1"} 1.048576e+07
windows_logical_disk_read_bytes_total{volume="C:"} 7000
windows_logical_disk_write_bytes_total{volume="C:"} 9000
windows_net_bytes_received_total{nic="vmxnet3_Ethernet_Adapter"} 100
windows_net_bytes_received_total{nic="isatap.{ABC}"} 55
windows_net_bytes_sent_total{nic="vmxnet3_Ethernet_Adapter"} 200
"#;

    #[test]
    fn newer_names_are_mapped() {
        let reading = reading(NEWER_NAMES);

        assert_eq!(reading.exporter_time, Some(1.7e9));
        assert_eq!(reading.boot_time, Some(1.69e9));
        assert_eq!(reading.memory.total_mb, Some(4096.0));
        assert_eq!(reading.memory.free_mb, Some(1024.0));
        assert_eq!(reading.memory.available_mb, Some(2048.0));
        assert_eq!(reading.memory.committed_mb, Some(3072.0));
        assert_eq!(reading.memory.used_mb, Some(2048.0), "total - available");
        assert_eq!(reading.memory.usage_percent, Some(50.0));
        assert_eq!(reading.memory.swap_used_mb, Some(256.0));
        assert_eq!(reading.system.process_total, Some(120.0));
        assert_eq!(reading.disk.used_mb, Some(51200.0), "C: only");
        assert_eq!(reading.disk.free_mb, Some(51200.0));
        assert_eq!(reading.disk.usage_percent, Some(50.0));
        assert_eq!(reading.disk.inodes_total, None);
        assert_eq!(reading.cpu.load1min, None);
    }

    #[test]
    fn counters_leave_out_parts_of_privileged_time() {
        let counters = reading(NEWER_NAMES).counters;

        assert_eq!(counters.get(Counter::CpuIdle), Some(700.0));
        assert_eq!(counters.get(Counter::CpuTotal), Some(1000.0));
        assert_eq!(counters.get(Counter::ContextSwitches), Some(5e6));
        assert_eq!(counters.get(Counter::DiskReadBytes), Some(7000.0));
        assert_eq!(counters.get(Counter::DiskWrittenBytes), Some(9000.0));
        assert_eq!(
            counters.get(Counter::NetReceivedBytes),
            Some(100.0),
            "no ISATAP"
        );
        assert_eq!(counters.get(Counter::NetSentBytes), Some(200.0));
        assert_eq!(counters.get(Counter::NetErrors), None);
    }

    #[test]
    fn older_names_are_mapped() {
        let payload = "windows_cs_physical_memory_bytes 2.147483648e+09\n\
                       windows_os_physical_memory_free_bytes 5.36870912e+08\n\
                       windows_os_paging_limit_bytes 1.073741824e+09\n\
                       windows_os_paging_free_bytes 1.073741824e+09\n\
                       windows_os_processes 80\n\
                       windows_os_time 1.6e+09\n\
                       windows_system_system_up_time 1.5e+09\n";

        let reading = reading(payload);

        assert_eq!(reading.memory.total_mb, Some(2048.0));
        assert_eq!(reading.memory.free_mb, Some(512.0));
        assert_eq!(reading.memory.used_mb, Some(1536.0), "total - free");
        assert_eq!(reading.memory.usage_percent, Some(75.0));
        assert_eq!(reading.memory.available_mb, None);
        assert_eq!(reading.memory.swap_used_mb, Some(0.0));
        assert_eq!(reading.system.process_total, Some(80.0));
        assert_eq!(reading.exporter_time, Some(1.6e9));
        assert_eq!(reading.boot_time, Some(1.5e9));
    }

    #[test]
    fn newest_boot_time_name_wins() {
        let payload = "windows_system_system_up_time 1.0e+09\n\
                       windows_system_boot_time_timestamp_seconds 1.1e+09\n\
                       windows_system_boot_time_timestamp 1.2e+09\n";

        assert_eq!(reading(payload).boot_time, Some(1.2e9));
    }
}
