//! Crash safety: a child process writes cycles in a loop and is killed with SIGKILL while
//! writing. Every cycle it reported as committed must read back exactly, the cycle in flight
//! must be whole or absent, and the store must accept new writes.
//!
//! The child is this test binary itself, running the ignored `crash_writer_child` test with
//! the store path in an environment variable.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use vmpulse_store::{SampleRow, Store, StoreOptions};

const CHILD_PATH_ENV: &str = "VMPULSE_STORE_CRASH_CHILD_PATH";
const CHILD_FIRST_CYCLE_ENV: &str = "VMPULSE_STORE_CRASH_CHILD_FIRST_CYCLE";
const SCHEMA: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const VMS: u64 = 30;
const START_MS: u64 = 1_700_000_000_000;
const CYCLE_MS: u64 = 30_000;
/// Upper bound on the child's cycles, so an orphaned child stops by itself.
const MAX_CHILD_CYCLES: u64 = 20_000;

fn options() -> StoreOptions {
    // Small blocks, so the child seals blocks while it is being killed.
    StoreOptions {
        block_bytes: 1024,
        max_block_samples: 7,
        ..StoreOptions::default()
    }
}

fn timestamp(cycle: u64) -> u64 {
    START_MS + cycle * CYCLE_MS
}

fn values(cycle: u64, vm: u64) -> Vec<Option<f64>> {
    (0..SCHEMA.len() as u64)
        .map(|field| {
            let mix = cycle.wrapping_mul(2_654_435_761) ^ (vm << 8) ^ field;
            (!mix.is_multiple_of(5)).then(|| (mix % 100_000) as f64 / 100.0)
        })
        .collect()
}

fn write_cycle(store: &Store, cycle: u64) {
    let names: Vec<String> = (0..VMS).map(|vm| format!("vm-{vm}")).collect();
    let all_values: Vec<Vec<Option<f64>>> = (0..VMS).map(|vm| values(cycle, vm)).collect();
    let rows: Vec<SampleRow<'_>> = names
        .iter()
        .zip(&all_values)
        .map(|(vm_id, values)| SampleRow { vm_id, values })
        .collect();
    let record = format!("{{\"cycle\":{cycle}}}");
    let latest: Vec<(&str, &[u8])> = names
        .iter()
        .map(|name| (name.as_str(), record.as_bytes()))
        .collect();
    store
        .write_cycle(timestamp(cycle), &rows, &latest)
        .expect("cycle written");
}

/// The writer: commits cycles and prints `committed N` after each commit returns.
#[test]
#[ignore = "child process of crash_keeps_committed_cycles"]
fn crash_writer_child() {
    let path = std::env::var(CHILD_PATH_ENV).expect("started by crash_keeps_committed_cycles");
    let first_cycle: u64 = std::env::var(CHILD_FIRST_CYCLE_ENV)
        .expect("first cycle set")
        .parse()
        .expect("first cycle is a number");
    let store = Store::open(&path, &SCHEMA, options()).expect("child opens the store");
    let mut stdout = std::io::stdout();

    for cycle in first_cycle..first_cycle + MAX_CHILD_CYCLES {
        write_cycle(&store, cycle);
        // A failed write means the parent is gone, so the child stops.
        if writeln!(stdout, "committed {cycle}").is_err() || stdout.flush().is_err() {
            return;
        }
    }
}

/// Kills the child when the parent test fails before doing so.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_writer(path: &Path, first_cycle: u64) -> KillOnDrop {
    let child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--ignored",
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_PATH_ENV, path)
        .env(CHILD_FIRST_CYCLE_ENV, first_cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("child starts");
    KillOnDrop(child)
}

fn parse_committed(line: &str) -> Option<u64> {
    line.strip_prefix("committed ")?.trim().parse().ok()
}

/// Returns how many VMs have a sample at `cycle`, checking each one's values exactly.
fn vms_with_exact_sample(store: &Store, cycle: u64) -> u64 {
    let mut found = 0;
    for vm in 0..VMS {
        let points = store
            .range(
                &format!("vm-{vm}"),
                timestamp(cycle),
                timestamp(cycle),
                None,
            )
            .expect("range read");
        if let Some((_, stored)) = points.first() {
            assert_eq!(points.len(), 1, "cycle {cycle}, vm-{vm}");
            assert_eq!(stored, &values(cycle, vm), "cycle {cycle}, vm-{vm}");
            found += 1;
        }
    }
    found
}

#[test]
fn crash_keeps_committed_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut next_cycle = 0;

    for round in 0..3u64 {
        let mut child = spawn_writer(&path, next_cycle);
        let stdout = child.0.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut committed = Vec::new();

        // Let the child run for a different number of cycles each round, then kill it while
        // it is inside its next write.
        while committed.len() < 20 + 9 * round as usize {
            let line = lines
                .next()
                .expect("child exited before it was killed")
                .expect("child output is text");
            committed.extend(parse_committed(&line));
        }
        child.0.kill().expect("SIGKILL sent");
        child.0.wait().expect("child reaped");
        // Lines still in the pipe were printed after their commit returned, so they count too.
        for line in lines {
            committed.extend(parse_committed(&line.expect("child output is text")));
        }

        let store = Store::open(&path, &SCHEMA, options()).expect("store reopens after SIGKILL");
        for &cycle in &committed {
            assert_eq!(
                vms_with_exact_sample(&store, cycle),
                VMS,
                "committed cycle {cycle}"
            );
        }
        let in_flight = committed.last().expect("at least one commit") + 1;
        let in_flight_vms = vms_with_exact_sample(&store, in_flight);
        assert!(
            in_flight_vms == 0 || in_flight_vms == VMS,
            "cycle {in_flight} is partly stored: {in_flight_vms} of {VMS} VMs"
        );
        assert_eq!(vms_with_exact_sample(&store, in_flight + 1), 0);

        let after_crash = if in_flight_vms == VMS {
            in_flight + 1
        } else {
            in_flight
        };
        write_cycle(&store, after_crash);
        assert_eq!(vms_with_exact_sample(&store, after_crash), VMS);
        let latest = store.latest("vm-0").unwrap().expect("latest record");
        assert_eq!(latest, format!("{{\"cycle\":{after_crash}}}").into_bytes());
        next_cycle = after_crash + 1;
    }
}
