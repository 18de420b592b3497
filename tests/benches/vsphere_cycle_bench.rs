//! Benchmark of one collection cycle against the vCenter simulator, next to the Prometheus
//! `vmware-exporter` (PyPI) scraping the same simulator in the same run.
//!
//! For each estate size it prints wall time, CPU time and peak memory of vmpulse (host and
//! plugin in this process) and of the exporter, the simulator's CPU time while serving each,
//! and the ratios. `scripts/bench-vsphere` installs the exporter into `target/bench/venv`
//! and runs this with `cargo bench -p vmpulse-tests --bench vsphere_cycle_bench -- 1500 10000`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmpulse::collection::CollectionLoop;
use vmpulse::config::CollectionConfig;
use vmpulse::live::LiveState;
use vmpulse::plugin::PluginRuntime;
use vmpulse_tests::fixtures::workspace_root;
use vmpulse_tests::vcsim::Vcsim;
use vmpulse_tests::vsphere_plugin::declaration;

const PASSWORD_VARIABLE: &str = "VMPULSE_BENCH_VCSIM_PASSWORD";
const PASSWORD: &str = "vmpulse-secret";
const EXPORTER_PORT: u16 = 19272;
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(300);

/// CPU seconds (user + system) of a process so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the name and state.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    let output = Command::new("getconf").arg("CLK_TCK").output();
    output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident memory of a process in MB, from `/proc/PID/status`.
fn peak_rss_mb(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    wall: f64,
    cpu: f64,
    peak_rss_mb: f64,
    simulator_cpu: f64,
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() { vec![1500] } else { sizes };
    // SAFETY: set before any plugin reads secrets; nothing else writes the environment.
    unsafe { std::env::set_var(PASSWORD_VARIABLE, PASSWORD) };

    println!(
        "{:>6} {:<34} {:>8} {:>8} {:>9} {:>9}",
        "VMs", "collector, cycle", "wall s", "CPU s", "peak MB", "sim CPU s"
    );
    for vms in sizes {
        let vcsim = Vcsim::start(&["-vms", &vms.to_string()]);
        let ours = measure_vmpulse(&vcsim).await;
        let theirs = measure_exporter(&vcsim);
        for (label, figures) in [
            ("vmpulse, first (login, discover)", ours[0]),
            ("vmpulse, steady", ours[1]),
            ("vmware-exporter, first scrape", theirs[0]),
            ("vmware-exporter, second scrape", theirs[1]),
        ] {
            println!(
                "{vms:>6} {label:<34} {:>8.3} {:>8.3} {:>9.1} {:>9.3}",
                figures.wall, figures.cpu, figures.peak_rss_mb, figures.simulator_cpu
            );
        }
        println!(
            "{vms:>6} ratios, steady: CPU vmpulse/exporter {:.3}, wall vmpulse/exporter {:.3}, \
             wall vmpulse/simulator CPU {:.2}, peak memory vmpulse/exporter {:.2}",
            ours[1].cpu / theirs[1].cpu,
            ours[1].wall / theirs[1].wall,
            ours[1].wall / ours[1].simulator_cpu,
            ours[1].peak_rss_mb / theirs[1].peak_rss_mb,
        );
    }
}

/// Runs two cycles: the first logs in and discovers, the second is the steady state.
async fn measure_vmpulse(vcsim: &Vcsim) -> [Figures; 2] {
    let origin = vcsim.origin();
    // The simulator ignores RetrievePropertiesEx paging and returns the whole inventory in
    // one response, too big for the default 64 MiB cap at 10,000 VMs. So the plugin gets
    // more memory and time for discover than a real vCenter, which pages at about 100
    // objects, needs.
    let declaration = declaration(
        "vc",
        &format!(
            "memory_limit_mb = 1024\ncall_timeout_secs = 60\n\
             allowed_outbound_hosts = [\"{origin}\"]\n\
             secrets = {{ password = \"{PASSWORD_VARIABLE}\" }}\n\
             tls.\"{origin}\" = {{ ca_file = {:?} }}\n\
             config = {{ url = \"{}\", username = \"{}\" }}",
            vcsim.ready.ca_file.display().to_string(),
            vcsim.sdk_url(),
            vcsim.ready.username,
        ),
    );
    let cache = workspace_root()
        .join("target")
        .join("bench")
        .join("component-cache");
    let runtime = PluginRuntime::new(Some(cache)).unwrap();
    let plugin = Arc::new(runtime.load(&declaration).await.unwrap());
    let live = Arc::new(LiveState::default());
    let cycle = CollectionLoop::new(plugin, vec![], CollectionConfig::default(), live, vec![]);
    let simulator = vcsim.ready.pid.to_string();

    let mut figures = Vec::new();
    for _ in 0..2 {
        let (cpu_before, sim_before) = (cpu_seconds("self"), cpu_seconds(&simulator));
        let started = Instant::now();
        let report = cycle.run_cycle().await;
        let wall = started.elapsed().as_secs_f64();
        assert!(report.inventory_error.is_none(), "{report:?}");
        assert_eq!(report.vms_failed, 0, "{report:?}");
        assert_eq!(report.vms_collected, vcsim.ready.powered_on);
        figures.push(Figures {
            wall,
            cpu: cpu_seconds("self") - cpu_before,
            peak_rss_mb: peak_rss_mb("self"),
            simulator_cpu: cpu_seconds(&simulator) - sim_before,
        });
    }
    [figures[0], figures[1]]
}

/// Starts the exporter against the simulator and times two scrapes of its `/metrics`.
fn measure_exporter(vcsim: &Vcsim) -> [Figures; 2] {
    let binary = workspace_root().join("target/bench/venv/bin/vmware_exporter");
    assert!(
        binary.exists(),
        "{} is missing: run scripts/bench-vsphere, which installs it",
        binary.display()
    );
    let mut exporter = Exporter(
        Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &EXPORTER_PORT.to_string()])
            .env("VSPHERE_HOST", format!("127.0.0.1:{}", vcsim.ready.port))
            .env("VSPHERE_USER", &vcsim.ready.username)
            .env("VSPHERE_PASSWORD", PASSWORD)
            .env("VSPHERE_IGNORE_SSL", "True")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start vmware_exporter"),
    );
    let pid = exporter.0.id().to_string();
    let simulator = vcsim.ready.pid.to_string();
    wait_for_port(EXPORTER_PORT);

    let mut figures = Vec::new();
    for _ in 0..2 {
        let (cpu_before, sim_before) = (cpu_seconds(&pid), cpu_seconds(&simulator));
        let started = Instant::now();
        let vm_lines = scrape(EXPORTER_PORT);
        let wall = started.elapsed().as_secs_f64();
        assert!(
            vm_lines > vcsim.ready.powered_on,
            "the exporter returned {vm_lines} VM lines"
        );
        figures.push(Figures {
            wall,
            cpu: cpu_seconds(&pid) - cpu_before,
            peak_rss_mb: peak_rss_mb(&pid),
            simulator_cpu: cpu_seconds(&simulator) - sim_before,
        });
    }
    exporter.stop();
    [figures[0], figures[1]]
}

struct Exporter(Child);

impl Exporter {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "vmware_exporter did not open port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fetches `/metrics` over plain HTTP/1.0 and returns the number of `vmware_vm_` lines.
fn scrape(port: u16) -> usize {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body.lines()
        .filter(|line| line.starts_with("vmware_vm_"))
        .count()
}
