//! Per-second rates from two consecutive scrapes of one guest.
//!
//! A rate is (current − previous) / elapsed seconds. It is left unknown, never 0, when it
//! cannot be trusted. That is the case on a VM's first scrape, after a reboot (the boot
//! time changed), when the counter went backwards (an exporter or driver restart), and
//! when the set of devices summed into the counter changed. It is also the case when the
//! two times come from different clocks or the previous scrape is older than
//! [`MAX_RATE_WINDOW_SECS`]. The next scrape then starts a new rate.

use vmpulse_plugin_sdk::VmSample;

use crate::reading::{Counter, Counters};

/// Maximum age of the previous scrape a rate is computed from, in seconds. Collection runs
/// every 30 to 60 seconds, so this spans about ten missed cycles. An average over a longer
/// gap would pass for a current figure.
pub const MAX_RATE_WINDOW_SECS: f64 = 600.0;

/// Largest boot-time difference read as the same boot, in seconds. windows_exporter
/// derives the boot time from the uptime, so it moves by a fraction of a second between
/// scrapes.
const BOOT_TIME_TOLERANCE_SECS: f64 = 2.0;

/// The clock a snapshot's time was read from. Rates need both times from the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The guest's clock as the exporter reported it.
    Exporter,
    /// The plugin's wall clock when the scrape started.
    Scrape,
}

/// The counters of one scrape and when it happened: what the next scrape needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub clock: Clock,
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub boot_time: Option<f64>,
    pub counters: Counters,
}

/// Fills the sample's rate fields from the previous and the current snapshot.
pub fn apply_rates(previous: Option<&Snapshot>, current: &Snapshot, sample: &mut VmSample) {
    let Some(previous) = previous else {
        return;
    };
    let Some(elapsed) = comparable_interval(previous, current) else {
        return;
    };
    let rate = |counter: Counter| counter_rate(previous, current, counter, elapsed);

    sample.cpu.usage_percent = cpu_usage_percent(previous, current);
    sample.cpu.context_switches = rate(Counter::ContextSwitches);
    sample.disk.read_bytes = rate(Counter::DiskReadBytes);
    sample.disk.write_bytes = rate(Counter::DiskWrittenBytes);
    sample.network.in_bytes = rate(Counter::NetReceivedBytes);
    sample.network.out_bytes = rate(Counter::NetSentBytes);
    sample.network.in_packets = rate(Counter::NetReceivedPackets);
    sample.network.out_packets = rate(Counter::NetSentPackets);
    sample.network.errors = rate(Counter::NetErrors);
    sample.network.dropped = rate(Counter::NetDropped);
}

/// Returns the seconds between two snapshots when rates between them are meaningful.
fn comparable_interval(previous: &Snapshot, current: &Snapshot) -> Option<f64> {
    if previous.clock != current.clock {
        return None;
    }
    let same_boot = match (previous.boot_time, current.boot_time) {
        (Some(before), Some(now)) => (now - before).abs() <= BOOT_TIME_TOLERANCE_SECS,
        (None, None) => true,
        _ => false,
    };
    let elapsed = current.time - previous.time;
    (same_boot && elapsed > 0.0 && elapsed <= MAX_RATE_WINDOW_SECS).then_some(elapsed)
}

/// Returns the change of `counter` between the snapshots, when it did not go backwards and
/// was summed over the same devices.
fn counter_delta(previous: &Snapshot, current: &Snapshot, counter: Counter) -> Option<f64> {
    if let Some(set) = counter.device_set()
        && previous.counters.device_set(set) != current.counters.device_set(set)
    {
        return None;
    }
    let before = previous.counters.get(counter)?;
    let now = current.counters.get(counter)?;
    (now >= before).then_some(now - before)
}

fn counter_rate(
    previous: &Snapshot,
    current: &Snapshot,
    counter: Counter,
    elapsed: f64,
) -> Option<f64> {
    counter_delta(previous, current, counter).map(|delta| delta / elapsed)
}

/// Returns the busy share of all CPU time between the snapshots, in percent.
fn cpu_usage_percent(previous: &Snapshot, current: &Snapshot) -> Option<f64> {
    let idle = counter_delta(previous, current, Counter::CpuIdle)?;
    let total = counter_delta(previous, current, Counter::CpuTotal)?;
    if total <= 0.0 {
        return None;
    }
    Some(((1.0 - idle / total) * 100.0).clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::DeviceSet;

    fn snapshot(time: f64, values: &[(Counter, f64)]) -> Snapshot {
        let mut counters = Counters::default();
        for (counter, value) in values {
            counters.set(*counter, Some(*value));
        }
        Snapshot {
            clock: Clock::Exporter,
            time,
            boot_time: Some(1000.0),
            counters,
        }
    }

    fn rates(previous: Option<&Snapshot>, current: &Snapshot) -> VmSample {
        let mut sample = VmSample::empty("vm", 0);
        apply_rates(previous, current, &mut sample);
        sample
    }

    const BEFORE: [(Counter, f64); 5] = [
        (Counter::CpuIdle, 100.0),
        (Counter::CpuTotal, 200.0),
        (Counter::ContextSwitches, 1000.0),
        (Counter::NetReceivedBytes, 5000.0),
        (Counter::NetDropped, 7.0),
    ];

    #[test]
    fn rates_per_second_between_scrapes() {
        let previous = snapshot(10.0, &BEFORE);
        let current = snapshot(
            20.0,
            &[
                (Counter::CpuIdle, 115.0),
                (Counter::CpuTotal, 220.0),
                (Counter::ContextSwitches, 3000.0),
                (Counter::NetReceivedBytes, 15000.0),
                (Counter::NetDropped, 7.0),
            ],
        );

        let sample = rates(Some(&previous), &current);

        assert_eq!(sample.cpu.usage_percent, Some(25.0), "15 of 20 s idle");
        assert_eq!(sample.cpu.context_switches, Some(200.0));
        assert_eq!(sample.network.in_bytes, Some(1000.0));
        assert_eq!(sample.network.dropped, Some(0.0), "a measured zero");
        assert_eq!(sample.network.out_bytes, None, "never reported");
    }

    #[test]
    fn first_scrape_has_no_rates() {
        let sample = rates(None, &snapshot(10.0, &BEFORE));

        assert_eq!(sample.cpu.usage_percent, None);
        assert_eq!(sample.cpu.context_switches, None);
        assert_eq!(sample.network.in_bytes, None);
    }

    #[test]
    fn counter_going_backwards_restarts_its_rate() {
        let previous = snapshot(10.0, &BEFORE);
        let mut values = BEFORE;
        values[2] = (Counter::ContextSwitches, 10.0);
        values[3] = (Counter::NetReceivedBytes, 6000.0);

        let sample = rates(Some(&previous), &snapshot(20.0, &values));

        assert_eq!(sample.cpu.context_switches, None);
        assert_eq!(sample.network.in_bytes, Some(100.0), "other counters go on");
    }

    #[test]
    fn reboot_restarts_every_rate() {
        let previous = snapshot(10.0, &BEFORE);
        let mut current = snapshot(20.0, &BEFORE.map(|(c, v)| (c, v + 1.0)));
        current.boot_time = Some(5000.0);

        let sample = rates(Some(&previous), &current);

        assert_eq!(sample.cpu.context_switches, None);
        assert_eq!(sample.network.in_bytes, None);
    }

    #[test]
    fn small_boot_time_jitter_is_the_same_boot() {
        let previous = snapshot(10.0, &BEFORE);
        let mut current = snapshot(20.0, &BEFORE.map(|(c, v)| (c, v + 10.0)));
        current.boot_time = Some(1000.4);

        assert_eq!(
            rates(Some(&previous), &current).cpu.context_switches,
            Some(1.0)
        );
    }

    #[test]
    fn changed_device_set_restarts_its_rates() {
        let previous = snapshot(10.0, &BEFORE);
        let mut current = snapshot(20.0, &BEFORE.map(|(c, v)| (c, v + 10.0)));
        current
            .counters
            .set_device_set(DeviceSet::Interfaces, crate::devices::fingerprint(["eth1"]));

        let sample = rates(Some(&previous), &current);

        assert_eq!(sample.network.in_bytes, None);
        assert_eq!(sample.cpu.context_switches, Some(1.0));
    }

    #[test]
    fn old_or_reordered_previous_scrape_gives_no_rates() {
        let previous = snapshot(10.0, &BEFORE);
        let later = BEFORE.map(|(c, v)| (c, v + 10.0));

        let too_old = rates(
            Some(&previous),
            &snapshot(10.0 + MAX_RATE_WINDOW_SECS + 1.0, &later),
        );
        let same_time = rates(Some(&previous), &snapshot(10.0, &later));
        let earlier = rates(Some(&previous), &snapshot(5.0, &later));

        assert_eq!(too_old.cpu.context_switches, None);
        assert_eq!(same_time.cpu.context_switches, None);
        assert_eq!(earlier.cpu.context_switches, None);
    }

    #[test]
    fn different_clocks_give_no_rates() {
        let previous = snapshot(10.0, &BEFORE);
        let mut current = snapshot(20.0, &BEFORE.map(|(c, v)| (c, v + 10.0)));
        current.clock = Clock::Scrape;

        assert_eq!(rates(Some(&previous), &current).cpu.context_switches, None);
    }

    #[test]
    fn idle_cpu_time_without_progress_gives_no_usage() {
        let previous = snapshot(10.0, &BEFORE);

        let sample = rates(Some(&previous), &snapshot(20.0, &BEFORE));

        assert_eq!(sample.cpu.usage_percent, None, "no CPU time passed");
        assert_eq!(sample.cpu.context_switches, Some(0.0));
    }
}
