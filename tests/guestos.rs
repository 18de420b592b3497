//! The guest OS collector plugin against Debian's real node exporter, against scripted
//! exporters that serve the windows_exporter fixtures under `tests/fixtures/`, broken
//! payloads and error statuses, and inside a collection cycle with the fake estate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vmpulse::collection::CollectionLoop;
use vmpulse::config::CollectionConfig;
use vmpulse::live::LiveState;
use vmpulse::plugin::bindings::types::{CollectResult, Layer, PowerState, VmSample};
use vmpulse::plugin::{GuestError, Plugin, PluginError, PluginRuntime, Vm};
use vmpulse_tests::fixtures::{declaration as fixture_declaration, workspace_root};
use vmpulse_tests::guestos_plugin::{
    NodeExporter, ScriptedExporter, ScriptedResponse, component_cache, declaration, free_port,
};
use vmpulse_tests::http_peer::{Behaviour, HttpPeer};

/// Bytes per MB, as the plugin converts.
const MB: f64 = 1024.0 * 1024.0;

fn runtime() -> PluginRuntime {
    PluginRuntime::new(Some(component_cache())).unwrap()
}

fn vm(id: &str, guest_ip: Option<&str>) -> Vm {
    Vm {
        id: id.to_owned(),
        name: format!("name-{id}"),
        source_ref: None,
        host_id: None,
        cluster_id: None,
        datacenter_id: None,
        folder: None,
        power_state: PowerState::PoweredOn,
        vcpus: Some(2),
        memory_mb: Some(8192),
        tools_status: None,
        guest_ip: guest_ip.map(str::to_owned),
        guest_hostname: None,
    }
}

/// Loads the plugin granted `origins`, with `config` as the body of its `config` table.
async fn load(runtime: &PluginRuntime, origins: &[String], config: &str) -> Plugin {
    let grants: Vec<String> = origins.iter().map(|o| format!("{o:?}")).collect();
    let extra = format!(
        "allowed_outbound_hosts = [{}]\nconfig = {{ {config} }}",
        grants.join(", ")
    );
    runtime.load(&declaration("guest", &extra)).await.unwrap()
}

/// Returns a `url_template` setting that points `{guest_ip}` at `port`.
fn template(port: u16) -> String {
    format!("url_template = \"http://{{guest_ip}}:{port}/metrics\"")
}

fn fixture_text(name: &str) -> String {
    let path = workspace_root().join("tests").join("fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn only_sample(result: &CollectResult) -> &VmSample {
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert_eq!(result.samples.len(), 1);
    &result.samples[0]
}

fn errors_by_vm(result: &CollectResult) -> HashMap<&str, &GuestError> {
    result
        .errors
        .iter()
        .map(|e| (e.vm_id.as_str(), &e.error))
        .collect()
}

fn message(error: &GuestError) -> &str {
    match error {
        GuestError::Config(m)
        | GuestError::Unreachable(m)
        | GuestError::Auth(m)
        | GuestError::Protocol(m)
        | GuestError::Other(m) => m,
    }
}

/// Returns the value, failing the test with `name` when it is missing.
#[track_caller]
fn present(name: &str, value: Option<f64>) -> f64 {
    let value = value.unwrap_or_else(|| panic!("{name} is missing"));
    assert!(value.is_finite(), "{name} is {value}");
    value
}

#[track_caller]
fn assert_percent(name: &str, value: Option<f64>) {
    let value = present(name, value);
    assert!(
        (0.0..=100.0).contains(&value),
        "{name} is {value}, not 0 to 100"
    );
}

#[track_caller]
fn assert_non_negative(name: &str, value: Option<f64>) {
    let value = present(name, value);
    assert!(value >= 0.0, "{name} is {value}");
}

#[track_caller]
fn assert_close(name: &str, value: Option<f64>, expected: f64) {
    let value = present(name, value);
    assert!(
        (value - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{name} is {value}, expected {expected}"
    );
}

fn unix_now_ms() -> u64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(elapsed.as_millis()).unwrap()
}

/// Checks the fields one node exporter scrape gives without a previous scrape.
fn check_node_gauges(sample: &VmSample) {
    assert_eq!(sample.layers, vec![Layer::GuestOs]);
    assert!(
        sample.timestamp_ms.abs_diff(unix_now_ms()) < 60_000,
        "the exporter runs on this machine, so its clock is ours: {}",
        sample.timestamp_ms
    );

    let cpu = &sample.cpu;
    assert_non_negative("cpu.load1min", cpu.load1min);
    assert_non_negative("cpu.load5min", cpu.load5min);
    assert_non_negative("cpu.load15min", cpu.load15min);

    let memory = &sample.memory;
    let total = present("memory.total_mb", memory.total_mb);
    assert!(total > 0.0, "memory.total_mb is {total}");
    for (name, value) in [
        ("memory.free_mb", memory.free_mb),
        ("memory.buffers_mb", memory.buffers_mb),
        ("memory.cached_mb", memory.cached_mb),
        ("memory.used_mb", memory.used_mb),
        ("memory.swap_used_mb", memory.swap_used_mb),
    ] {
        assert_non_negative(name, value);
        assert!(value.unwrap() <= total, "{name} exceeds the total {total}");
    }
    assert_percent("memory.usage_percent", memory.usage_percent);
    assert_eq!(memory.available_mb, None, "a Windows-only field");
    assert_eq!(memory.committed_mb, None, "a Windows-only field");

    let disk = &sample.disk;
    assert_percent("disk.usage_percent", disk.usage_percent);
    let used = present("disk.used_mb", disk.used_mb);
    assert!(
        used > 0.0,
        "the root file system holds this test, so it uses space"
    );
    assert_non_negative("disk.free_mb", disk.free_mb);
    let inodes = present("disk.inodes_total", disk.inodes_total);
    assert!(inodes > 0.0, "disk.inodes_total is {inodes}");
    let inodes_used = present("disk.inodes_used", disk.inodes_used);
    assert!(
        inodes_used > 0.0 && inodes_used <= inodes,
        "{inodes_used} of {inodes}"
    );

    let system = &sample.system;
    let uptime = present("system.uptime", system.uptime);
    assert!(uptime > 0.0, "system.uptime is {uptime}");
    let total = present("system.process_total", system.process_total);
    let running = present("system.process_running", system.process_running);
    let sleeping = present("system.process_sleeping", system.process_sleeping);
    assert!(total >= 1.0, "at least the exporter runs: {total}");
    assert!(
        running >= 0.0 && sleeping >= 0.0,
        "{running} running, {sleeping} sleeping"
    );
    assert!(
        running + sleeping <= total,
        "{running} + {sleeping} > {total}"
    );
}

#[tokio::test]
async fn node_exporter_fields_after_two_scrapes() {
    let exporter = NodeExporter::start(&["--collector.processes"]);
    let plugin = load(
        &runtime(),
        &[exporter.origin()],
        &template(exporter.addr.port()),
    )
    .await;
    let vms = [vm("vm-linux", Some("127.0.0.1"))];

    let first = plugin.collect(&vms).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = plugin.collect(&vms).await.unwrap();

    let first = only_sample(&first);
    check_node_gauges(first);
    for (name, value) in [
        ("cpu.usage_percent", first.cpu.usage_percent),
        ("cpu.context_switches", first.cpu.context_switches),
        ("disk.read_bytes", first.disk.read_bytes),
        ("network.in_bytes", first.network.in_bytes),
        ("network.dropped", first.network.dropped),
    ] {
        assert_eq!(value, None, "{name} needs a previous scrape");
    }

    let second = only_sample(&second);
    check_node_gauges(second);
    assert!(second.timestamp_ms > first.timestamp_ms);
    assert_percent("cpu.usage_percent", second.cpu.usage_percent);
    let switches = present("cpu.context_switches", second.cpu.context_switches);
    assert!(
        switches > 0.0,
        "a running Linux switches contexts: {switches}"
    );
    for (name, value) in [
        ("disk.read_bytes", second.disk.read_bytes),
        ("disk.write_bytes", second.disk.write_bytes),
        ("network.in_bytes", second.network.in_bytes),
        ("network.out_bytes", second.network.out_bytes),
        ("network.in_packets", second.network.in_packets),
        ("network.out_packets", second.network.out_packets),
        ("network.errors", second.network.errors),
        ("network.dropped", second.network.dropped),
    ] {
        assert_non_negative(name, value);
    }
    assert_eq!(second.network.in_bps, None, "the vSphere layer's field");
}

#[tokio::test]
async fn windows_fixtures_give_fields_and_rates() {
    let exporter = ScriptedExporter::start(vec![
        ScriptedResponse::ok(fixture_text("windows_exporter.txt")),
        ScriptedResponse::ok(fixture_text("windows_exporter_30s_later.txt")),
    ])
    .await;
    let plugin = load(
        &runtime(),
        &[exporter.origin()],
        &template(exporter.addr.port()),
    )
    .await;
    let vms = [vm("vm-windows", Some("127.0.0.1"))];

    let first = plugin.collect(&vms).await.unwrap();
    let second = plugin.collect(&vms).await.unwrap();

    let first = only_sample(&first);
    assert_eq!(first.layers, vec![Layer::GuestOs]);
    assert_eq!(first.timestamp_ms, 1_765_000_000_250);
    assert_close("memory.total_mb", first.memory.total_mb, 8192.0);
    assert_close("memory.free_mb", first.memory.free_mb, 1024.0);
    assert_close("memory.available_mb", first.memory.available_mb, 5120.0);
    assert_close("memory.committed_mb", first.memory.committed_mb, 6144.0);
    assert_close("memory.used_mb", first.memory.used_mb, 3072.0);
    assert_close("memory.usage_percent", first.memory.usage_percent, 37.5);
    assert_close("memory.swap_used_mb", first.memory.swap_used_mb, 128.0);
    assert_close("disk.used_mb", first.disk.used_mb, 69_632.0 + 51_200.0);
    assert_close("disk.free_mb", first.disk.free_mb, 32_768.0 + 153_600.0);
    assert_close(
        "disk.usage_percent",
        first.disk.usage_percent,
        120_832.0 / 307_200.0 * 100.0,
    );
    assert_close("system.uptime", first.system.uptime, 100_000.25);
    assert_close("system.process_total", first.system.process_total, 142.0);
    assert_eq!(first.cpu.usage_percent, None, "no previous scrape");
    assert_eq!(first.cpu.load1min, None, "Windows has no load average");
    assert_eq!(first.disk.inodes_total, None);

    let second = only_sample(&second);
    assert_eq!(second.timestamp_ms, 1_765_000_030_250);
    // Per core, 30 s passed: core 0 was busy 6 s, core 1 was busy 3 s.
    assert_close("cpu.usage_percent", second.cpu.usage_percent, 15.0);
    assert_close("cpu.context_switches", second.cpu.context_switches, 5000.0);
    assert_close(
        "disk.read_bytes",
        second.disk.read_bytes,
        2.0 * 15.0 * MB / 30.0,
    );
    assert_close("disk.write_bytes", second.disk.write_bytes, 6.0 * MB / 30.0);
    assert_close("network.in_bytes", second.network.in_bytes, 100_000.0);
    assert_close("network.out_bytes", second.network.out_bytes, 50_000.0);
    assert_close("network.in_packets", second.network.in_packets, 100.0);
    assert_close("network.out_packets", second.network.out_packets, 50.0);
    assert_close("network.errors", second.network.errors, 0.1);
    assert_close("network.dropped", second.network.dropped, 0.2);
    assert_close("memory.available_mb", second.memory.available_mb, 5119.0);
    assert_eq!(exporter.requests(), 2);
}

#[tokio::test]
async fn legacy_windows_names_are_mapped() {
    let exporter = ScriptedExporter::start(vec![ScriptedResponse::ok(fixture_text(
        "windows_exporter_legacy.txt",
    ))])
    .await;
    let plugin = load(
        &runtime(),
        &[exporter.origin()],
        &template(exporter.addr.port()),
    )
    .await;

    let result = plugin
        .collect(&[vm("vm-old", Some("127.0.0.1"))])
        .await
        .unwrap();

    let sample = only_sample(&result);
    assert_eq!(sample.timestamp_ms, 1_700_000_000_000, "windows_os_time");
    assert_close("memory.total_mb", sample.memory.total_mb, 4096.0);
    assert_close("memory.free_mb", sample.memory.free_mb, 1024.0);
    assert_close("memory.available_mb", sample.memory.available_mb, 2048.0);
    assert_close("memory.committed_mb", sample.memory.committed_mb, 3072.0);
    assert_close("memory.used_mb", sample.memory.used_mb, 2048.0);
    assert_close("memory.usage_percent", sample.memory.usage_percent, 50.0);
    assert_close("memory.swap_used_mb", sample.memory.swap_used_mb, 512.0);
    assert_close("system.process_total", sample.system.process_total, 87.0);
    assert_close("system.uptime", sample.system.uptime, 86_400.0);
    assert_close("disk.used_mb", sample.disk.used_mb, 40_960.0);
    assert_close("disk.usage_percent", sample.disk.usage_percent, 200.0 / 3.0);
}

#[tokio::test]
async fn per_vm_errors_spare_the_batch() {
    let up = ScriptedExporter::start(vec![ScriptedResponse::ok(fixture_text(
        "windows_exporter.txt",
    ))])
    .await;
    let down_port = free_port();
    let down_origin = format!("http://127.0.0.1:{down_port}");
    let config = format!(
        "{}, overrides = {{ \"vm-up\" = \"{}/metrics\", \"name-vm-down\" = \"{down_origin}/metrics\" }}",
        template(up.addr.port()),
        up.origin()
    );
    let plugin = load(&runtime(), &[up.origin(), down_origin.clone()], &config).await;
    let vms = [vm("vm-up", None), vm("vm-down", None), vm("vm-no-ip", None)];

    let result = plugin.collect(&vms).await.unwrap();

    assert_eq!(result.samples.len(), 1);
    assert_eq!(result.samples[0].vm_id, "vm-up");
    let errors = errors_by_vm(&result);
    assert_eq!(errors.len(), 2);
    assert!(
        matches!(errors["vm-down"], GuestError::Unreachable(_)),
        "{:?}",
        errors["vm-down"]
    );
    assert!(
        message(errors["vm-down"]).contains(&down_origin),
        "{:?}",
        errors["vm-down"]
    );
    assert!(
        matches!(errors["vm-no-ip"], GuestError::Unreachable(_)),
        "{:?}",
        errors["vm-no-ip"]
    );
    assert!(
        message(errors["vm-no-ip"]).starts_with("no guest IP"),
        "{:?}",
        errors["vm-no-ip"]
    );
}

#[tokio::test]
async fn malformed_payload_names_its_line() {
    let payload = "# HELP node_load1 1m load average.\n\
                   # TYPE node_load1 gauge\n\
                   node_load1 0.5\n\
                   node_load5{window=\"5m\" 0.25\n";
    let peer = HttpPeer::start(Behaviour::Respond(payload.to_owned())).await;
    let plugin = load(
        &runtime(),
        &[peer.origin(false)],
        &template(peer.addr.port()),
    )
    .await;

    let result = plugin
        .collect(&[vm("vm-bad", Some("127.0.0.1"))])
        .await
        .unwrap();

    assert!(result.samples.is_empty());
    let error = &result.errors[0].error;
    assert!(matches!(error, GuestError::Protocol(_)), "{error:?}");
    let text = message(error);
    assert!(text.contains("line 4:"), "{text}");
    assert!(text.contains("label `window`"), "{text}");
}

#[tokio::test]
async fn payload_without_exporter_metrics_is_rejected() {
    let peer = HttpPeer::start(Behaviour::Respond("http_requests_total 7\n".to_owned())).await;
    let plugin = load(
        &runtime(),
        &[peer.origin(false)],
        &template(peer.addr.port()),
    )
    .await;

    let result = plugin
        .collect(&[vm("vm-app", Some("127.0.0.1"))])
        .await
        .unwrap();

    assert!(result.samples.is_empty());
    let error = &result.errors[0].error;
    assert!(matches!(error, GuestError::Protocol(_)), "{error:?}");
    assert!(message(error).contains("no node_exporter"), "{error:?}");
}

#[tokio::test]
async fn error_status_is_unreachable() {
    let exporter = ScriptedExporter::start(vec![ScriptedResponse {
        status: 503,
        body: "collector failed\n".to_owned(),
    }])
    .await;
    let plugin = load(
        &runtime(),
        &[exporter.origin()],
        &template(exporter.addr.port()),
    )
    .await;

    let result = plugin
        .collect(&[vm("vm-503", Some("127.0.0.1"))])
        .await
        .unwrap();

    assert!(result.samples.is_empty());
    let error = &result.errors[0].error;
    assert!(matches!(error, GuestError::Unreachable(_)), "{error:?}");
    assert!(message(error).contains("HTTP 503"), "{error:?}");
}

#[tokio::test]
async fn origin_not_granted_is_config_error() {
    let exporter = ScriptedExporter::start(vec![ScriptedResponse::ok("node_load1 1\n")]).await;
    // The grant covers another port, so the host denies the request before connecting.
    let plugin = load(
        &runtime(),
        &[format!("http://127.0.0.1:{}", free_port())],
        &template(exporter.addr.port()),
    )
    .await;

    let result = plugin
        .collect(&[vm("vm-denied", Some("127.0.0.1"))])
        .await
        .unwrap();

    assert!(result.samples.is_empty());
    let error = &result.errors[0].error;
    assert!(matches!(error, GuestError::Config(_)), "{error:?}");
    assert!(
        message(error).contains("allowed_outbound_hosts"),
        "{error:?}"
    );
    assert_eq!(exporter.requests(), 0);
}

#[tokio::test]
async fn unknown_config_key_fails_the_batch() {
    let plugin = load(
        &runtime(),
        &[],
        "url_template = \"http://{guest_ip}:9100/metrics\", scrape_timeout = 5",
    )
    .await;

    let error = plugin
        .collect(&[vm("vm-1", Some("127.0.0.1"))])
        .await
        .unwrap_err();

    let PluginError::Guest {
        error: GuestError::Config(text),
        ..
    } = &error
    else {
        panic!("expected a config error, got {error}");
    };
    assert!(text.contains("unknown field `scrape_timeout`"), "{text}");
}

#[tokio::test]
async fn cycle_merges_guest_data_per_vm() {
    let exporter = ScriptedExporter::start(vec![ScriptedResponse::ok(fixture_text(
        "windows_exporter.txt",
    ))])
    .await;
    let runtime = runtime();
    let estate = Arc::new(
        runtime
            .load(&fixture_declaration(
                "estate",
                "collector",
                "fake-estate",
                "config = { vms = 3 }",
            ))
            .await
            .unwrap(),
    );
    // The fake estate's VMs have no guest IP: only the override reaches an exporter.
    let config = format!(
        "overrides = {{ \"fake.002\" = \"{}/metrics\" }}",
        exporter.origin()
    );
    let guest = Arc::new(load(&runtime, &[exporter.origin()], &config).await);
    let live = Arc::new(LiveState::default());
    let cycle = CollectionLoop::new(
        estate,
        vec![guest],
        CollectionConfig::default(),
        live.clone(),
        vec![],
    );

    let report = cycle.run_cycle().await;

    assert_eq!(
        report.vms_failed, 0,
        "no guest data is not a collection error"
    );
    let metrics = |id: &str| live.read(|data| data.vms[id].metrics.clone().unwrap());
    let with_guest = metrics("fake.002");
    assert!(with_guest.data_sources.vsphere);
    assert!(with_guest.data_sources.guest_os);
    assert_eq!(with_guest.memory.available_mb, Some(5120.0));
    assert_eq!(with_guest.memory.committed_mb, Some(6144.0));
    let without_guest = metrics("fake.001");
    assert!(without_guest.data_sources.vsphere);
    assert!(
        !without_guest.data_sources.guest_os,
        "no guest IP, no guest data"
    );
    assert_eq!(without_guest.memory.available_mb, None);
}
