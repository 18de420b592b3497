//! Benchmark of the plugin runtime: component load time (compiled and from the cache) and
//! the per-call cost of a fresh store, instantiation and call, for an alert rule and for a
//! collector making one loopback HTTP request.
//!
//! Run with `cargo bench -p vmpulse-tests --bench plugin_runtime_bench`. It prints one row
//! per figure with the median and the 99th percentile.

use std::time::{Duration, Instant};

use vmpulse::plugin::bindings::types::PowerState;
use vmpulse::plugin::{LoadSource, PluginRuntime, Vm, VmSample};
use vmpulse_tests::fixtures::declaration;
use vmpulse_tests::http_peer::{Behaviour, HttpPeer};

const LOADS: usize = 7;
const CALLS: usize = 3000;

#[tokio::main]
async fn main() {
    let peer = HttpPeer::start(Behaviour::Respond("12.5".into())).await;
    let origin = peer.origin(false);
    let collector = declaration(
        "echo",
        "collector",
        "echo-collector",
        &format!("allowed_outbound_hosts = [\"{origin}\"]\nconfig = {{ url = \"{origin}/v\" }}"),
    );
    let rule = declaration(
        "cpu",
        "alert-rule",
        "cpu-rule",
        "config = { threshold = 80.0 }",
    );

    println!(
        "{:<44} {:>10} {:>10} {:>7}",
        "figure", "median", "p99", "runs"
    );
    for declaration in [&rule, &collector] {
        let size = std::fs::metadata(&declaration.component).unwrap().len();
        let label = format!("{} ({} KB)", declaration.id, size / 1024);
        let (compiled, cached) = measure_loads(declaration).await;
        report(&format!("load {label}, compiled"), &compiled);
        report(&format!("load {label}, from cache"), &cached);
    }

    let runtime = PluginRuntime::new(None).unwrap();
    let rule = runtime.load(&rule).await.unwrap();
    let collector = runtime.load(&collector).await.unwrap();
    let vm = vm();
    let sample = sample(&vm.id);

    let mut rule_calls = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let findings = rule.evaluate(&vm, &sample).await.unwrap();
        rule_calls.push(started.elapsed());
        assert_eq!(findings.len(), 1);
    }
    report("rule evaluate: store + instantiate + call", &rule_calls);

    let mut collect_calls = Vec::with_capacity(CALLS);
    let batch = [vm.clone()];
    for _ in 0..CALLS {
        let started = Instant::now();
        let result = collector.collect(&batch).await.unwrap();
        collect_calls.push(started.elapsed());
        assert_eq!(result.samples.len(), 1);
    }
    report("collect with one loopback HTTP GET", &collect_calls);
}

async fn measure_loads(
    declaration: &vmpulse::config::PluginConfig,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut compiled = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..LOADS {
        let cache = tempfile::tempdir().unwrap();
        let runtime = PluginRuntime::new(Some(cache.path().to_owned())).unwrap();
        for expected in [LoadSource::Compiled, LoadSource::Cache] {
            let plugin = runtime.load(declaration).await.unwrap();
            let (source, elapsed) = plugin.load_stats();
            assert_eq!(source, expected);
            match source {
                LoadSource::Compiled => compiled.push(elapsed),
                LoadSource::Cache => cached.push(elapsed),
            }
        }
    }
    (compiled, cached)
}

fn report(figure: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "{figure:<44} {:>8.3}ms {:>8.3}ms {:>7}",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        sorted.len()
    );
}

fn vm() -> Vm {
    Vm {
        id: "bench-vm".into(),
        name: "bench vm".into(),
        source_ref: None,
        host_id: None,
        cluster_id: None,
        datacenter_id: None,
        folder: None,
        power_state: PowerState::PoweredOn,
        vcpus: Some(4),
        memory_mb: Some(8192),
        tools_status: None,
        guest_ip: None,
        guest_hostname: None,
    }
}

fn sample(vm_id: &str) -> VmSample {
    let mut sample = VmSample::empty(vm_id, 0);
    sample.cpu.usage_percent = Some(93.0);
    sample
}
