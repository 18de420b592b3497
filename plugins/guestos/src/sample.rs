//! The guest sample of one VM: a reading's gauges plus the rates since the previous scrape.

use vmpulse_plugin_sdk::{Layer, VmSample};

use crate::rates::{self, Clock, Snapshot};
use crate::reading::Reading;

/// Builds the VM's sample and the snapshot the next scrape computes rates from.
///
/// The sample's time is the exporter's clock when it reports one (`node_time_seconds`),
/// else `scraped_at`, the plugin's wall clock when the request started (seconds since the
/// Unix epoch). Uptime is measured on the same clock as the boot time when possible.
pub fn build_sample(
    vm_id: &str,
    reading: Reading,
    scraped_at: f64,
    previous: Option<&Snapshot>,
) -> (VmSample, Snapshot) {
    let (clock, time) = match reading.exporter_time {
        Some(time) if time > 0.0 => (Clock::Exporter, time),
        _ => (Clock::Scrape, scraped_at),
    };
    let snapshot = Snapshot {
        clock,
        time,
        boot_time: reading.boot_time,
        counters: reading.counters,
    };

    let mut sample = VmSample::empty(vm_id, epoch_millis(time));
    sample.layers.push(Layer::GuestOs);
    sample.cpu = reading.cpu;
    sample.memory = reading.memory;
    sample.disk = reading.disk;
    sample.network = reading.network;
    sample.system = reading.system;
    sample.system.uptime = reading
        .boot_time
        .map(|boot| time - boot)
        .filter(|uptime| *uptime >= 0.0);
    rates::apply_rates(previous, &snapshot, &mut sample);
    (sample, snapshot)
}

/// Converts seconds since the Unix epoch to whole milliseconds; a time before the epoch
/// becomes 0.
fn epoch_millis(seconds: f64) -> u64 {
    // `as` saturates: NaN and negative values become 0.
    (seconds * 1000.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Counter;

    fn reading(payload: &str) -> Reading {
        Reading::from_payload(payload.as_bytes()).unwrap()
    }

    #[test]
    fn exporter_clock_sets_time_and_uptime() {
        let reading =
            reading("node_time_seconds 1700000000.25\nnode_boot_time_seconds 1699990000\n");

        let (sample, snapshot) = build_sample("vm-1", reading, 1_800_000_000.0, None);

        assert_eq!(sample.vm_id, "vm-1");
        assert_eq!(sample.timestamp_ms, 1_700_000_000_250);
        assert_eq!(sample.layers, vec![Layer::GuestOs]);
        assert_eq!(sample.system.uptime, Some(10_000.25));
        assert_eq!(snapshot.clock, Clock::Exporter);
    }

    #[test]
    fn scrape_clock_without_exporter_time() {
        let reading =
            reading("windows_system_boot_time_timestamp 1699999000\nwindows_os_processes 3\n");

        let (sample, snapshot) = build_sample("vm-1", reading, 1_700_000_000.0, None);

        assert_eq!(sample.timestamp_ms, 1_700_000_000_000);
        assert_eq!(sample.system.uptime, Some(1000.0));
        assert_eq!(snapshot.clock, Clock::Scrape);
    }

    #[test]
    fn second_scrape_adds_rates() {
        let first = reading("node_time_seconds 100\nnode_context_switches_total 1000\n");
        let second = reading("node_time_seconds 110\nnode_context_switches_total 1500\n");

        let (first_sample, snapshot) = build_sample("vm-1", first, 0.0, None);
        let (second_sample, _) = build_sample("vm-1", second, 0.0, Some(&snapshot));

        assert_eq!(first_sample.cpu.context_switches, None);
        assert_eq!(second_sample.cpu.context_switches, Some(50.0));
        assert_eq!(
            snapshot.counters.get(Counter::ContextSwitches),
            Some(1000.0)
        );
    }

    #[test]
    fn boot_time_after_clock_gives_no_uptime() {
        let reading = reading("node_time_seconds 100\nnode_boot_time_seconds 200\n");

        let (sample, _) = build_sample("vm-1", reading, 0.0, None);

        assert_eq!(sample.system.uptime, None);
    }
}
