//! Simulates days of collection cycles through the public store API and prints the file size,
//! write, sweep and read times.
//!
//! ```text
//! cargo run --release -p vmpulse-store --example store_bench -- --days 8 --vms 1500
//! ```
//!
//! Values follow the vSphere and guest metrics of `wit/types.wit`: integer random walks
//! (MHz, MB, IOPS), two-decimal percentages, noisy integer rates (bits and bytes per second,
//! 10 % noise per sample), counters, and near-constant settings. Load differs between VMs:
//! each VM's rate levels are scaled by a log-uniform factor, its memory and CPU sizes by 0.25
//! to 4. Each VM reports about 40 of the 52 fields, and 1 % of values are missing at random.
//! Timestamps are 30 s apart with up to 300 ms of jitter. Every cycle also stores a latest
//! JSON record of about 1 KB per VM, as the host does.
//!
//! `--model busy` makes every field move every cycle, with three full-precision float fields.
//! `--model fleet`, the default, keeps swap and balloon at 0 on most VMs and lets disk space
//! drift slowly, as on a real estate. See [`Model`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vmpulse_store::{SampleRow, Store, StoreOptions};

const CYCLE_MS: u64 = 30_000;
const DAY_MS: u64 = 24 * 3600 * 1000;
const START_MS: u64 = 1_767_225_600_000;

const SCHEMA: [&str; 52] = [
    "cpu.usage_mhz",
    "cpu.ready",
    "cpu.wait",
    "cpu.limit",
    "cpu.reservation",
    "cpu.usage_percent",
    "cpu.load1min",
    "cpu.load5min",
    "cpu.load15min",
    "cpu.context_switches",
    "memory.usage_mb",
    "memory.granted_mb",
    "memory.active_mb",
    "memory.ballooned_mb",
    "memory.compressed_mb",
    "memory.swapped_mb",
    "memory.total_mb",
    "memory.used_mb",
    "memory.free_mb",
    "memory.buffers_mb",
    "memory.cached_mb",
    "memory.swap_used_mb",
    "memory.usage_percent",
    "memory.available_mb",
    "memory.committed_mb",
    "disk.read_latency",
    "disk.write_latency",
    "disk.read_iops",
    "disk.write_iops",
    "disk.throughput_mbps",
    "disk.usage_percent",
    "disk.used_mb",
    "disk.free_mb",
    "disk.read_bytes",
    "disk.write_bytes",
    "disk.inodes_total",
    "disk.inodes_used",
    "network.in_bps",
    "network.out_bps",
    "network.in_pps",
    "network.out_pps",
    "network.dropped_packets",
    "network.in_bytes",
    "network.out_bytes",
    "network.in_packets",
    "network.out_packets",
    "network.errors",
    "network.dropped",
    "system.uptime",
    "system.process_total",
    "system.process_running",
    "system.process_sleeping",
];

/// Model of a field's change from one cycle to the next.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A setting that changes about once a day, such as a limit or a total.
    Setting,
    /// An integer random walk pulled back towards its centre, such as MHz or MB.
    IntegerWalk { centre: f64, step: f64 },
    /// A percentage or load average with two decimals.
    Percent { centre: f64, step: f64 },
    /// A noisy integer rate around a level, such as bytes or bits per second.
    Rate { level: f64 },
    /// A derived float without a short decimal form, such as a latency averaged in the guest.
    FullPrecision { level: f64 },
    /// A noisy integer rate divided by 1024, such as MB/s from KB/s: a binary fraction.
    BinaryFraction { level: f64 },
    /// A value that stays 0 on most VMs (ballooning, swapping) and drifts slowly on the rest.
    MostlyZero,
    /// An integer that changes in about one cycle of ten, such as used disk space.
    Drift { centre: f64, step: f64 },
    /// A counter that grows by a fixed step, such as uptime in seconds.
    Counter { step: f64 },
    /// A counter that rarely grows, such as errors or drops.
    SparseCounter,
}

/// Value model of the run, chosen with `--model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    /// Every field moves every cycle: all memory and disk sizes are noisy walks, and three
    /// disk fields are full-precision floats. A pessimistic bound.
    Busy,
    /// Closer to a real estate, in the units vCenter reports and with the host's conversions
    /// (see [`fleet_convert`]). Swap, balloon and compression stay 0 on most VMs, and disk space
    /// drifts slowly. Latencies are whole ms, memory is KB divided by 1024, and rates span idle
    /// to busy VMs.
    Fleet,
}

fn kind_of(field: &str, model: Model) -> Kind {
    if model == Model::Fleet
        && let Some(kind) = fleet_kind_of(field)
    {
        return kind;
    }
    busy_kind_of(field)
}

/// Converts a fleet value from vCenter's unit to the WIT field's, as the vSphere plugin does.
fn fleet_convert(field: &str, raw: f64, vcpus: f64) -> f64 {
    match field {
        "disk.used_mb" | "disk.free_mb" => raw / 1_048_576.0,
        "memory.usage_mb"
        | "memory.active_mb"
        | "memory.used_mb"
        | "memory.free_mb"
        | "memory.buffers_mb"
        | "memory.cached_mb"
        | "memory.available_mb"
        | "memory.committed_mb" => raw / 1024.0,
        "network.in_bps" | "network.out_bps" => raw * 8000.0,
        "cpu.ready" | "cpu.wait" => raw / 20_000.0 * 100.0 / vcpus,
        _ => raw,
    }
}

/// Returns the model of the fields that [`Model::Fleet`] treats differently.
fn fleet_kind_of(field: &str) -> Option<Kind> {
    let drift = |centre, step| Some(Kind::Drift { centre, step });
    match field {
        "memory.ballooned_mb"
        | "memory.compressed_mb"
        | "memory.swapped_mb"
        | "memory.swap_used_mb" => Some(Kind::MostlyZero),
        // Bytes, converted to MB by fleet_convert.
        "disk.used_mb" | "disk.free_mb" => drift(40_000.0 * 1_048_576.0, 50.0 * 1_048_576.0),
        "disk.inodes_used" => drift(200_000.0, 100.0),
        "disk.usage_percent" => Some(Kind::Percent {
            centre: 40.0,
            step: 0.01,
        }),
        "disk.read_latency" | "disk.write_latency" => Some(Kind::IntegerWalk {
            centre: 2.0,
            step: 1.0,
        }),
        "disk.throughput_mbps" => Some(Kind::BinaryFraction { level: 20_000.0 }),
        // KB, converted to MB by fleet_convert.
        "memory.usage_mb"
        | "memory.active_mb"
        | "memory.used_mb"
        | "memory.free_mb"
        | "memory.buffers_mb"
        | "memory.cached_mb"
        | "memory.available_mb"
        | "memory.committed_mb" => Some(Kind::IntegerWalk {
            centre: 4096.0 * 1024.0,
            step: 30.0 * 1024.0,
        }),
        // KB per second, converted to bits per second.
        "network.in_bps" | "network.out_bps" => Some(Kind::Rate { level: 2_000.0 }),
        // Milliseconds of the 20 s interval summed over vCPUs, converted to percent.
        "cpu.ready" | "cpu.wait" => Some(Kind::IntegerWalk {
            centre: 400.0,
            step: 80.0,
        }),
        _ => None,
    }
}

fn busy_kind_of(field: &str) -> Kind {
    let walk = |centre, step| Kind::IntegerWalk { centre, step };
    let percent = |centre, step| Kind::Percent { centre, step };
    match field {
        "cpu.limit" | "cpu.reservation" | "memory.granted_mb" | "memory.total_mb"
        | "disk.inodes_total" => Kind::Setting,
        "cpu.usage_mhz" => walk(1800.0, 120.0),
        "cpu.context_switches" => Kind::Rate { level: 4_000.0 },
        "cpu.ready" | "cpu.wait" => percent(2.0, 0.4),
        "cpu.usage_percent" | "memory.usage_percent" | "disk.usage_percent" => percent(40.0, 2.0),
        "cpu.load1min" | "cpu.load5min" | "cpu.load15min" => percent(1.5, 0.2),
        "disk.read_latency" | "disk.write_latency" | "disk.throughput_mbps" => {
            Kind::FullPrecision { level: 3.0 }
        }
        "disk.read_iops" | "disk.write_iops" | "network.in_pps" | "network.out_pps" => {
            walk(300.0, 40.0)
        }
        "disk.read_bytes" | "disk.write_bytes" | "network.in_bytes" | "network.out_bytes" => {
            Kind::Rate { level: 2.0e6 }
        }
        "network.in_bps" | "network.out_bps" => Kind::Rate { level: 1.6e7 },
        "network.in_packets" | "network.out_packets" => Kind::Rate { level: 9_000.0 },
        "network.dropped_packets" | "network.errors" | "network.dropped" => Kind::SparseCounter,
        "system.uptime" => Kind::Counter { step: 30.0 },
        "system.process_total" | "system.process_running" | "system.process_sleeping" => {
            walk(180.0, 2.0)
        }
        _ => walk(4096.0, 30.0),
    }
}

/// A small seeded generator (xorshift64*), so runs are reproducible without a random crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Returns a uniform value in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Returns a roughly normal value with mean 0 and deviation 1 (sum of four uniforms).
    fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.unit()).sum::<f64>() - 2.0) * 1.732
    }
}

/// One simulated VM: which fields it reports, each field's load scale and current level.
struct SimulatedVm {
    id: String,
    model: Model,
    vcpus: f64,
    present: Vec<bool>,
    scales: Vec<f64>,
    levels: Vec<f64>,
}

/// Draws a VM's load factor for a field. Busy and idle VMs differ by orders of magnitude in
/// rates and IOPS, and by VM size in MHz and MB.
fn load_scale(kind: Kind, model: Model, rng: &mut Rng) -> f64 {
    match (kind, model) {
        (Kind::Rate { .. } | Kind::BinaryFraction { .. }, Model::Fleet) => {
            10f64.powf(rng.unit() * 3.5 - 3.0)
        }
        (Kind::Rate { .. } | Kind::FullPrecision { .. } | Kind::BinaryFraction { .. }, _) => {
            10f64.powf(rng.unit() * 2.5 - 2.0)
        }
        (Kind::IntegerWalk { .. } | Kind::Drift { .. }, _) => 0.25 * 16f64.powf(rng.unit()),
        // A scale of 0 keeps the value at 0 for the whole run.
        (Kind::MostlyZero, _) => f64::from(u8::from(rng.unit() < 0.1)),
        _ => 1.0,
    }
}

impl SimulatedVm {
    fn new(index: usize, model: Model, rng: &mut Rng) -> Self {
        let windows = index.is_multiple_of(3);
        let present = SCHEMA
            .iter()
            .map(|field| match *field {
                "memory.available_mb" | "memory.committed_mb" => windows,
                "memory.buffers_mb" | "memory.cached_mb" | "cpu.load1min" | "cpu.load5min"
                | "cpu.load15min" | "disk.inodes_total" | "disk.inodes_used" => !windows,
                "cpu.limit" => index.is_multiple_of(5),
                _ => rng.unit() < 0.85,
            })
            .collect();
        let scales: Vec<f64> = SCHEMA
            .iter()
            .map(|field| load_scale(kind_of(field, model), model, rng))
            .collect();
        let levels = SCHEMA
            .iter()
            .zip(&scales)
            .map(|(field, scale)| initial_level(kind_of(field, model), *scale, rng))
            .collect();
        Self {
            id: format!("vm-{}", 1000 + index),
            model,
            vcpus: [1.0, 2.0, 4.0, 8.0][index % 4],
            present,
            scales,
            levels,
        }
    }

    /// Advances every field by one cycle and returns the values reported in it.
    fn step(&mut self, rng: &mut Rng) -> Vec<Option<f64>> {
        let mut values = Vec::with_capacity(SCHEMA.len());
        for (index, field) in SCHEMA.iter().enumerate() {
            let scale = self.scales[index];
            let kind = kind_of(field, self.model);
            let mut value = advance(kind, scale, &mut self.levels[index], rng);
            if self.model == Model::Fleet {
                value = fleet_convert(field, value, self.vcpus);
            }
            let reported = self.present[index] && rng.unit() >= 0.01;
            values.push(reported.then_some(value));
        }
        values
    }
}

fn initial_level(kind: Kind, scale: f64, rng: &mut Rng) -> f64 {
    let spread = 0.5 + rng.unit();
    match kind {
        Kind::Setting => (1024.0 * (1.0 + (rng.unit() * 16.0).floor())).round(),
        Kind::IntegerWalk { centre, .. } => (centre * scale * spread).round(),
        Kind::Percent { centre, .. } => centre * spread,
        Kind::Rate { level } | Kind::FullPrecision { level } | Kind::BinaryFraction { level } => {
            level * scale * spread
        }
        Kind::MostlyZero => 0.0,
        Kind::Drift { centre, .. } => (centre * scale * spread).round(),
        Kind::Counter { .. } => (rng.unit() * 3.0e6).round(),
        Kind::SparseCounter => (rng.unit() * 50.0).round(),
    }
}

/// Moves `level` one cycle on and returns the reported value.
fn advance(kind: Kind, scale: f64, level: &mut f64, rng: &mut Rng) -> f64 {
    match kind {
        Kind::Setting => {
            if rng.unit() < 1.0 / 2880.0 {
                *level = (*level + 1024.0).round();
            }
            *level
        }
        Kind::IntegerWalk { centre, step } => {
            let (centre, step) = (centre * scale, step * scale);
            *level += rng.normal() * step + (centre - *level) * 0.02;
            level.max(0.0).round()
        }
        Kind::Percent { centre, step } => {
            *level += rng.normal() * step + (centre - *level) * 0.05;
            *level = level.clamp(0.0, 100.0);
            (*level * 100.0).round() / 100.0
        }
        Kind::Rate { level: base } => {
            let base = base * scale;
            *level += (base - *level) * 0.05 + rng.normal() * base * 0.05;
            (level.max(0.0) * (1.0 + 0.1 * rng.normal()))
                .max(0.0)
                .round()
        }
        Kind::FullPrecision { level: base } => {
            let base = base * scale;
            *level += (base - *level) * 0.05 + rng.normal() * base * 0.05;
            level.max(0.0) * (1.0 + 0.1 * rng.unit())
        }
        Kind::BinaryFraction { level: base } => {
            let base = base * scale;
            *level += (base - *level) * 0.05 + rng.normal() * base * 0.05;
            (level.max(0.0) * (1.0 + 0.1 * rng.normal()))
                .max(0.0)
                .round()
                / 1024.0
        }
        Kind::MostlyZero => {
            if scale > 0.0 && rng.unit() < 0.1 {
                *level = (*level + (rng.normal() * 20.0).round()).max(0.0);
            }
            *level
        }
        Kind::Drift { step, .. } => {
            if rng.unit() < 0.1 {
                *level = (*level + (rng.normal() * step * scale).round()).max(0.0);
            }
            *level
        }
        Kind::Counter { step } => {
            *level += step;
            *level
        }
        Kind::SparseCounter => {
            if rng.unit() < 0.02 {
                *level += (rng.unit() * 10.0).floor() + 1.0;
            }
            *level
        }
    }
}

/// Builds a latest record shaped like the host's JSON, about 1 KB.
fn latest_json(vm: &SimulatedVm, timestamp_ms: u64, values: &[Option<f64>]) -> Vec<u8> {
    let mut json = format!("{{\"vm_id\":\"{}\",\"timestamp_ms\":{timestamp_ms}", vm.id);
    for (field, value) in SCHEMA.iter().zip(values) {
        if let Some(value) = value {
            json.push_str(&format!(",\"{field}\":{value}"));
        }
    }
    json.push('}');
    json.into_bytes()
}

struct Arguments {
    days: f64,
    vms: usize,
    retention_days: f64,
    directory: Option<PathBuf>,
    seed: u64,
    model: Model,
}

fn parse_arguments() -> Arguments {
    let mut arguments = Arguments {
        days: 8.0,
        vms: 1500,
        retention_days: 7.0,
        directory: None,
        seed: 42,
        model: Model::Fleet,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let mut value = || {
            raw.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--days" => arguments.days = parse(&value(), &flag),
            "--vms" => arguments.vms = parse(&value(), &flag),
            "--retention-days" => arguments.retention_days = parse(&value(), &flag),
            "--dir" => arguments.directory = Some(PathBuf::from(value())),
            "--seed" => arguments.seed = parse(&value(), &flag),
            "--model" => {
                arguments.model = match value().as_str() {
                    "fleet" => Model::Fleet,
                    "busy" => Model::Busy,
                    other => usage(&format!("unknown model {other:?}")),
                }
            }
            "--help" | "-h" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    arguments
}

fn parse<T: std::str::FromStr>(text: &str, flag: &str) -> T {
    text.parse()
        .unwrap_or_else(|_| usage(&format!("invalid value {text:?} for {flag}")))
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "usage: store_bench [--days D (simulated days, default 8)] [--vms N (default 1500)]\n\
         \x20                  [--retention-days D (default 7)] [--dir DIRECTORY (default: a new\n\
         \x20                  temporary directory, removed at the end)] [--seed S (default 42)]\n\
         \x20                  [--model fleet|busy (value model, default fleet)]"
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}

/// Returns the value at quantile `q` (0 to 1) of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn milliseconds(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn main() {
    let arguments = parse_arguments();
    let temporary = tempfile::tempdir_in(std::env::temp_dir()).expect("temporary directory");
    let directory = arguments
        .directory
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let path = directory.join("store_bench.redb");
    if path.exists() {
        usage(&format!(
            "{} exists; choose an empty directory",
            path.display()
        ));
    }
    let options = StoreOptions {
        retention: Duration::from_secs_f64(arguments.retention_days * 86_400.0),
        ..StoreOptions::default()
    };
    let store = Store::open(&path, &SCHEMA, options.clone()).expect("store opens");

    let mut rng = Rng(arguments.seed.max(1));
    let mut vms: Vec<SimulatedVm> = (0..arguments.vms)
        .map(|index| SimulatedVm::new(index, arguments.model, &mut rng))
        .collect();
    let cycles = (arguments.days * DAY_MS as f64 / CYCLE_MS as f64) as u64;
    let cycles_per_day = DAY_MS / CYCLE_MS;
    println!(
        "simulating {cycles} cycles of {} VMs ({} days, retention {} days, {:?} model) in {}",
        arguments.vms,
        arguments.days,
        arguments.retention_days,
        arguments.model,
        path.display()
    );

    let mut write_times = Vec::with_capacity(cycles as usize);
    let mut sweep_times = Vec::new();
    let mut samples_written = 0u64;
    let mut present_values = 0u64;
    let mut now_ms = START_MS;
    let run_started = Instant::now();
    for cycle in 0..cycles {
        now_ms = START_MS + cycle * CYCLE_MS + rng.next_u64() % 300;
        let values: Vec<Vec<Option<f64>>> = vms.iter_mut().map(|vm| vm.step(&mut rng)).collect();
        let latest: Vec<Vec<u8>> = vms
            .iter()
            .zip(&values)
            .map(|(vm, values)| latest_json(vm, now_ms, values))
            .collect();
        let rows: Vec<SampleRow<'_>> = vms
            .iter()
            .zip(&values)
            .map(|(vm, values)| SampleRow {
                vm_id: &vm.id,
                values,
            })
            .collect();
        let latest_rows: Vec<(&str, &[u8])> = vms
            .iter()
            .zip(&latest)
            .map(|(vm, record)| (vm.id.as_str(), record.as_slice()))
            .collect();
        present_values += values.iter().flatten().filter(|v| v.is_some()).count() as u64;

        let started = Instant::now();
        store
            .write_cycle(now_ms, &rows, &latest_rows)
            .expect("cycle written");
        write_times.push(started.elapsed());
        samples_written += rows.len() as u64;

        // The host sweeps about once a minute; every second cycle here.
        if !cycle.is_multiple_of(2) {
            loop {
                let started = Instant::now();
                let more = store.sweep(now_ms, 1000).expect("sweep");
                sweep_times.push(started.elapsed());
                if !more {
                    break;
                }
            }
        }

        if (cycle + 1) % cycles_per_day == 0 {
            println!(
                "day {:>2}: {}, {:.0} s elapsed",
                (cycle + 1) / cycles_per_day,
                describe_size(&path),
                run_started.elapsed().as_secs_f64()
            );
        }
    }

    let samples_retained = report(
        &store,
        &arguments,
        now_ms,
        &mut write_times,
        &mut sweep_times,
        samples_written,
        present_values,
    );
    drop(store);
    let started = Instant::now();
    let mut reopened = Store::open(&path, &SCHEMA, options).expect("store reopens");
    println!(
        "reopen with integrity check: {}",
        milliseconds(started.elapsed())
    );

    let started = Instant::now();
    while reopened.compact().expect("compaction") {}
    println!(
        "compaction: {:.1} s, then {}, {:.1} bytes per VM-sample",
        started.elapsed().as_secs_f64(),
        describe_size(&path),
        file_size(&path).0 as f64 / samples_retained as f64
    );
}

/// Returns the file's length and the disk space its written blocks take. redb extends the
/// file by doubling, and the extension takes no disk space until pages there are written.
fn file_size(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).expect("file metadata");
    (metadata.len(), metadata.blocks() * 512)
}

fn describe_size(path: &std::path::Path) -> String {
    let (length, disk_usage) = file_size(path);
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    format!(
        "file length {length} bytes ({:.1} MiB), disk usage {:.1} MiB",
        mib(length),
        mib(disk_usage)
    )
}

fn report(
    store: &Store,
    arguments: &Arguments,
    now_ms: u64,
    write_times: &mut [Duration],
    sweep_times: &mut [Duration],
    samples_written: u64,
    present_values: u64,
) -> u64 {
    let (length, disk_usage) = file_size(store.path());

    // Count what the file really contains: retention removes whole blocks, so up to one block
    // per VM older than the retention is still there.
    let started = Instant::now();
    let mut samples_retained = 0u64;
    for index in 0..arguments.vms {
        let vm_id = format!("vm-{}", 1000 + index);
        let points = store.range(&vm_id, 0, u64::MAX, None).expect("range read");
        samples_retained += points.len() as u64;
    }
    let full_read = started.elapsed();

    let mut read_times = Vec::new();
    let mut points_read = 0;
    let mut rng = Rng(7);
    for _ in 0..50 {
        let vm_id = format!("vm-{}", 1000 + rng.next_u64() as usize % arguments.vms);
        let started = Instant::now();
        let points = store
            .range(&vm_id, now_ms - DAY_MS, now_ms, None)
            .expect("range read");
        read_times.push(started.elapsed());
        points_read += points.len();
    }
    write_times.sort();
    sweep_times.sort();
    read_times.sort();

    println!("{}", describe_size(store.path()));
    println!(
        "samples written: {samples_written}, in the file: {samples_retained} \
         (read back in {:.1} s)",
        full_read.as_secs_f64()
    );
    println!(
        "bytes per VM-sample: {:.1} of file length, {:.1} of disk usage \
         (values present per sample: {:.1})",
        length as f64 / samples_retained as f64,
        disk_usage as f64 / samples_retained as f64,
        present_values as f64 / samples_written as f64
    );
    println!(
        "write per cycle: median {}, p99 {}, max {}",
        milliseconds(quantile(write_times, 0.5)),
        milliseconds(quantile(write_times, 0.99)),
        milliseconds(quantile(write_times, 1.0))
    );
    println!(
        "sweep call (up to 1000 blocks): {} calls, median {}, p99 {}, max {}",
        sweep_times.len(),
        milliseconds(quantile(sweep_times, 0.5)),
        milliseconds(quantile(sweep_times, 0.99)),
        milliseconds(quantile(sweep_times, 1.0))
    );
    println!(
        "read one VM's last 24 h ({} points on average): median {}, p99 {}",
        points_read / read_times.len(),
        milliseconds(quantile(&read_times, 0.5)),
        milliseconds(quantile(&read_times, 0.99))
    );
    samples_retained
}
