//! The vSphere collector plugin against the govmomi vCenter simulator (`scripts/vcsim`):
//! discovery of a 1,500-VM estate, collection in batches of 50, awkward names, stable IDs,
//! recovery after a vCenter restart, and the errors for a wrong password, a stopped
//! vCenter and responses that are not SOAP.
//!
//! Run with `-- --nocapture` to see the measured discover and collect times.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Once};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use vmpulse::collection::CollectionLoop;
use vmpulse::config::{CollectionConfig, PluginConfig};
use vmpulse::live::{LiveState, VmStatus};
use vmpulse::plugin::bindings::types::{Inventory, Layer, PowerState, ToolsStatus, VmSample};
use vmpulse::plugin::{GuestError, Plugin, PluginError, PluginRuntime, Vm};
use vmpulse_tests::fixtures::workspace_root;
use vmpulse_tests::vcsim::{ReadyLine, Vcsim};
use vmpulse_tests::vsphere_plugin::declaration;

const PASSWORD_VARIABLE: &str = "VMPULSE_TEST_VCSIM_PASSWORD";
const WRONG_PASSWORD_VARIABLE: &str = "VMPULSE_TEST_VCSIM_WRONG_PASSWORD";
/// The only password the launcher accepts for its default user `vmpulse`.
const PASSWORD: &str = "vmpulse-secret";
/// The batch size of the host's collection cycle.
const BATCH: usize = 50;

fn set_password_variables() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        // SAFETY: the variables are set once, before any plugin of this process reads
        // secrets, and no other code of the tests writes the environment.
        unsafe {
            std::env::set_var(PASSWORD_VARIABLE, PASSWORD);
            std::env::set_var(WRONG_PASSWORD_VARIABLE, "not-the-password");
        }
    });
}

/// Returns a runtime whose compiled components are cached under `target/`, so only the
/// first test compiles the plugin.
fn runtime() -> PluginRuntime {
    let cache = workspace_root()
        .join("target")
        .join("vsphere-plugin")
        .join("component-cache");
    PluginRuntime::new(Some(cache)).unwrap()
}

/// Declares the plugin against `vcsim`, with `config_extra` appended to its `config` table.
fn vcsim_declaration(vcsim: &Vcsim, password_variable: &str, config_extra: &str) -> PluginConfig {
    let origin = vcsim.origin();
    set_password_variables();
    declaration(
        "vc",
        &format!(
            "allowed_outbound_hosts = [\"{origin}\"]\n\
             secrets = {{ password = \"{password_variable}\" }}\n\
             tls.\"{origin}\" = {{ ca_file = {ca_file:?} }}\n\
             config = {{ url = \"{url}\", username = \"{user}\"{config_extra} }}",
            ca_file = vcsim.ready.ca_file.display().to_string(),
            url = vcsim.sdk_url(),
            user = vcsim.ready.username,
        ),
    )
}

async fn load(vcsim: &Vcsim, config_extra: &str) -> Plugin {
    let declaration = vcsim_declaration(vcsim, PASSWORD_VARIABLE, config_extra);
    runtime().load(&declaration).await.unwrap()
}

fn guest_error(error: PluginError) -> GuestError {
    match error {
        PluginError::Guest { error, .. } => error,
        other => panic!("expected an error reported by the plugin, got: {other}"),
    }
}

fn id_prefix(ready: &ReadyLine) -> String {
    format!("{}.", &ready.instance_uuid[..8])
}

fn powered_on(inventory: &Inventory) -> Vec<Vm> {
    inventory
        .vms
        .iter()
        .filter(|vm| vm.power_state == PowerState::PoweredOn)
        .cloned()
        .collect()
}

/// Collects `vms` in batches of [`BATCH`], one after another, and returns the samples by
/// VM ID. Every batch must succeed without per-VM errors.
async fn collect_all(plugin: &Plugin, vms: &[Vm]) -> HashMap<String, VmSample> {
    let mut samples = HashMap::new();
    for batch in vms.chunks(BATCH) {
        let result = plugin.collect(batch).await.unwrap();
        assert!(result.errors.is_empty(), "errors: {:?}", result.errors);
        for sample in result.samples {
            samples.insert(sample.vm_id.clone(), sample);
        }
    }
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn full_estate_discover_and_collect() {
    let vcsim = Vcsim::start(&["-vms", "1500"]);
    let ready = vcsim.ready.clone();
    let plugin = Arc::new(load(&vcsim, "").await);

    let started = Instant::now();
    let inventory = plugin.discover().await.unwrap();
    let discover_time = started.elapsed();
    println!(
        "discover of {} VMs took {discover_time:?}",
        inventory.vms.len()
    );

    check_counts(&inventory, &ready);
    check_links(&inventory, &ready);
    check_ids(&inventory, &ready);
    check_awkward_vms(&inventory, &ready);

    let running = powered_on(&inventory);
    let started = Instant::now();
    let samples = collect_all(&plugin, &running).await;
    let collect_time = started.elapsed();
    println!(
        "collect of {} powered-on VMs in batches of {BATCH}, one at a time, took {collect_time:?}",
        running.len()
    );
    check_vsphere_fields(&running, &samples);
    check_cpu_allocations(&running, &samples);
    check_guest_fields(&running, &samples);

    let started = Instant::now();
    let concurrent = collect_concurrently(&plugin, &running, 4).await;
    println!(
        "collect of the same VMs with 4 batches at a time took {:?}",
        started.elapsed()
    );
    assert_eq!(concurrent, running.len());

    let stopped: Vec<Vm> = inventory
        .vms
        .iter()
        .filter(|vm| vm.power_state != PowerState::PoweredOn)
        .cloned()
        .collect();
    assert_eq!(stopped.len(), ready.powered_off + ready.suspended);
    for batch in stopped.chunks(BATCH) {
        let result = plugin.collect(batch).await.unwrap();
        assert!(result.errors.is_empty(), "errors: {:?}", result.errors);
        let with_vsphere: Vec<_> = result
            .samples
            .iter()
            .filter(|sample| sample.layers.contains(&Layer::Vsphere))
            .map(|sample| &sample.vm_id)
            .collect();
        assert!(
            with_vsphere.is_empty(),
            "powered-off VMs with vSphere values: {with_vsphere:?}"
        );
    }
}

fn check_counts(inventory: &Inventory, ready: &ReadyLine) {
    assert_eq!(inventory.datacenters.len(), ready.datacenters);
    assert_eq!(inventory.clusters.len(), ready.clusters);
    assert_eq!(inventory.hosts.len(), ready.hosts);
    assert_eq!(inventory.vms.len(), ready.vms);
    assert_eq!(ready.vms, 1500);
    assert_eq!(ready.hosts, 30);
    assert_eq!(ready.clusters, 3);
    assert_eq!(ready.datacenters, 1);

    let count = |state| {
        inventory
            .vms
            .iter()
            .filter(|vm| vm.power_state == state)
            .count()
    };
    assert_eq!(count(PowerState::PoweredOn), ready.powered_on);
    assert_eq!(count(PowerState::PoweredOff), ready.powered_off);
    assert_eq!(count(PowerState::Suspended), ready.suspended);

    let tools_stopped = inventory
        .vms
        .iter()
        .filter(|vm| vm.power_state == PowerState::PoweredOn)
        .filter(|vm| vm.tools_status == Some(ToolsStatus::NotRunning))
        .count();
    assert_eq!(tools_stopped, ready.tools_not_running);
}

fn check_links(inventory: &Inventory, ready: &ReadyLine) {
    let datacenter = &inventory.datacenters[0];
    assert_eq!(datacenter.name, "DC0");
    let clusters: HashMap<_, _> = inventory
        .clusters
        .iter()
        .map(|cluster| (cluster.id.clone(), cluster))
        .collect();
    for cluster in &inventory.clusters {
        assert_eq!(cluster.datacenter_id.as_ref(), Some(&datacenter.id));
    }

    let hosts: HashMap<_, _> = inventory
        .hosts
        .iter()
        .map(|host| (host.id.clone(), host))
        .collect();
    let mut hosts_per_cluster: HashMap<&str, usize> = HashMap::new();
    for host in &inventory.hosts {
        let cluster_id = host
            .cluster_id
            .as_deref()
            .expect("every host is in a cluster");
        let cluster = clusters[cluster_id];
        // Hosts are named after their cluster: DC0_C1_H03 is in DC0_C1.
        assert!(
            host.name.starts_with(&format!("{}_H", cluster.name)),
            "host {} linked to cluster {}",
            host.name,
            cluster.name
        );
        assert_eq!(host.datacenter_id.as_ref(), Some(&datacenter.id));
        assert!(host.connected, "host {} is disconnected", host.name);
        *hosts_per_cluster.entry(cluster_id).or_default() += 1;
    }
    assert!(
        hosts_per_cluster
            .values()
            .all(|count| *count == ready.hosts / ready.clusters)
    );

    for vm in &inventory.vms {
        let host_id = vm.host_id.as_deref().expect("every VM has a host");
        let host = hosts[host_id];
        assert_eq!(vm.cluster_id, host.cluster_id, "cluster of VM {}", vm.name);
        assert_eq!(vm.datacenter_id.as_ref(), Some(&datacenter.id));
        assert_eq!(
            vm.folder.as_deref(),
            Some("/DC0/vm"),
            "folder of VM {}",
            vm.name
        );
        assert!(
            vm.source_ref
                .as_deref()
                .is_some_and(|r| r.starts_with("vm-"))
        );
        assert!(vm.vcpus.is_some_and(|n| n >= 1), "vCPUs of VM {}", vm.name);
        assert!(
            vm.memory_mb.is_some_and(|mb| mb >= 1024),
            "memory of VM {}",
            vm.name
        );
    }
}

fn check_ids(inventory: &Inventory, ready: &ReadyLine) {
    let prefix = id_prefix(ready);
    let mut ids = HashSet::new();
    let all_ids = inventory
        .datacenters
        .iter()
        .map(|dc| &dc.id)
        .chain(inventory.clusters.iter().map(|cluster| &cluster.id))
        .chain(inventory.hosts.iter().map(|host| &host.id))
        .chain(inventory.vms.iter().map(|vm| &vm.id));
    for id in all_ids {
        assert!(id.starts_with(&prefix), "ID {id} lacks the vCenter prefix");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "ID {id} is not safe in a URL path"
        );
        assert!(ids.insert(id.clone()), "duplicate ID {id}");
    }
}

fn check_awkward_vms(inventory: &Inventory, ready: &ReadyLine) {
    assert!(ready.awkward_vms.len() >= 7);
    let hosts: HashMap<_, _> = inventory
        .hosts
        .iter()
        .map(|host| (host.id.clone(), host.name.clone()))
        .collect();
    for entry in &ready.awkward_vms {
        let vm = inventory
            .vms
            .iter()
            .find(|vm| vm.source_ref.as_deref() == Some(entry.moref.as_str()))
            .unwrap_or_else(|| panic!("VM {} ({}) not discovered", entry.name, entry.moref));
        assert_eq!(
            vm.name, entry.name,
            "name of {} on the wire",
            entry.wire_name
        );
        assert_eq!(
            vm.id,
            format!("{}{}", id_prefix(ready), entry.instance_uuid)
        );
        assert_eq!(vm.guest_ip, entry.guest_ip, "guest IP of {}", entry.name);
        assert_eq!(hosts[vm.host_id.as_ref().unwrap()], entry.host);
        let tools = if entry.tools_running {
            ToolsStatus::Running
        } else {
            ToolsStatus::NotRunning
        };
        assert_eq!(vm.tools_status, Some(tools), "Tools of {}", entry.name);
    }
    let decoded = ready
        .awkward_vms
        .iter()
        .filter(|entry| entry.wire_name != entry.name)
        .count();
    assert!(
        decoded >= 3,
        "the estate should have escaped names to decode"
    );
}

fn check_vsphere_fields(vms: &[Vm], samples: &HashMap<String, VmSample>) {
    for vm in vms {
        let sample = samples
            .get(&vm.id)
            .unwrap_or_else(|| panic!("no sample for powered-on VM {}", vm.name));
        let name = &vm.name;
        assert!(sample.layers.contains(&Layer::Vsphere), "layers of {name}");
        assert!(sample.timestamp_ms > 0);

        let cpu = &sample.cpu;
        assert!(cpu.usage_mhz.is_some_and(|mhz| mhz > 0.0), "MHz of {name}");
        assert_percent(cpu.usage_percent, "CPU usage", name);
        let ready = cpu
            .ready
            .unwrap_or_else(|| panic!("no CPU ready for {name}"));
        assert!(
            (0.0..10.0).contains(&ready),
            "CPU ready {ready} % of {name}"
        );
        assert!(
            cpu.wait.is_some_and(|wait| wait >= 0.0),
            "CPU wait of {name}"
        );

        let memory = &sample.memory;
        assert_percent(memory.usage_percent, "memory usage", name);
        assert!(memory.usage_mb.is_some(), "consumed memory of {name}");
        assert!(memory.granted_mb.is_some(), "granted memory of {name}");
        assert!(memory.active_mb.is_some(), "active memory of {name}");
        // The simulator sends no balloon, compression, swap, latency, IOPS or drop values.
        assert_eq!(memory.ballooned_mb, None, "balloon of {name}");
        assert_eq!(memory.compressed_mb, None, "compressed memory of {name}");
        assert_eq!(memory.swapped_mb, None, "swapped memory of {name}");
        assert_eq!(sample.disk.read_latency, None, "read latency of {name}");
        assert_eq!(sample.disk.write_iops, None, "write IOPS of {name}");
        assert_eq!(sample.network.dropped_packets, None, "drops of {name}");

        assert!(
            sample.disk.throughput_mbps.is_some(),
            "disk throughput of {name}"
        );
        let network = &sample.network;
        assert!(
            network.in_bps.is_some_and(|bps| bps > 0.0),
            "received of {name}"
        );
        assert!(
            network.out_bps.is_some_and(|bps| bps > 0.0),
            "sent of {name}"
        );
        assert!(network.in_pps.is_some(), "packets received of {name}");
        assert!(network.out_pps.is_some(), "packets sent of {name}");
        assert!(sample.system.uptime.is_some(), "uptime of {name}");
    }
}

fn assert_percent(value: Option<f64>, what: &str, vm: &str) {
    let value = value.unwrap_or_else(|| panic!("no {what} for {vm}"));
    assert!(
        (0.0..=100.0).contains(&value),
        "{what} of {vm} is {value} %"
    );
}

/// Checks the launcher's CPU allocations. Every tenth VM (numbers ending in 5) has a limit
/// of 2,000 MHz per vCPU and a reservation of 1,000 MHz. The others have neither.
fn check_cpu_allocations(vms: &[Vm], samples: &HashMap<String, VmSample>) {
    let mut limited = 0;
    for vm in vms {
        let Some(number) = vm
            .name
            .strip_prefix("vm-")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let cpu = &samples[&vm.id].cpu;
        if number % 10 == 5 {
            limited += 1;
            let vcpus = f64::from(vm.vcpus.unwrap());
            assert_eq!(cpu.limit, Some(2000.0 * vcpus), "limit of {}", vm.name);
            assert_eq!(cpu.reservation, Some(1000.0), "reservation of {}", vm.name);
        } else {
            assert_eq!(cpu.limit, None, "unlimited {} has a limit", vm.name);
            assert_eq!(cpu.reservation, Some(0.0), "reservation of {}", vm.name);
        }
    }
    assert!(limited > 100, "only {limited} VMs with CPU limits");
}

fn check_guest_fields(vms: &[Vm], samples: &HashMap<String, VmSample>) {
    let mut with_tools = 0;
    let mut without_tools = 0;
    for vm in vms {
        let sample = &samples[&vm.id];
        let disk = &sample.disk;
        if vm.tools_status == Some(ToolsStatus::Running) {
            with_tools += 1;
            assert!(
                sample.layers.contains(&Layer::GuestOs),
                "layers of {}",
                vm.name
            );
            assert_percent(disk.usage_percent, "disk usage", &vm.name);
            assert!(
                disk.used_mb.is_some_and(|mb| mb > 0.0),
                "used disk of {}",
                vm.name
            );
            assert!(
                disk.free_mb.is_some_and(|mb| mb > 0.0),
                "free disk of {}",
                vm.name
            );
        } else {
            without_tools += 1;
            assert!(
                !sample.layers.contains(&Layer::GuestOs),
                "layers of {}",
                vm.name
            );
            assert_eq!(disk.usage_percent, None, "disk usage of {}", vm.name);
            assert_eq!(disk.used_mb, None, "used disk of {}", vm.name);
            assert_eq!(disk.free_mb, None, "free disk of {}", vm.name);
        }
    }
    assert!(with_tools > 1000, "{with_tools} VMs with Tools");
    assert!(without_tools > 100, "{without_tools} VMs without Tools");
}

/// Collects `vms` with up to `parallel` batches in flight and returns the sample count.
async fn collect_concurrently(plugin: &Arc<Plugin>, vms: &[Vm], parallel: usize) -> usize {
    let mut samples = 0;
    for group in vms.chunks(BATCH * parallel) {
        let mut tasks = tokio::task::JoinSet::new();
        for batch in group.chunks(BATCH) {
            let plugin = plugin.clone();
            let batch = batch.to_vec();
            tasks.spawn(async move { plugin.collect(&batch).await });
        }
        while let Some(result) = tasks.join_next().await {
            let result = result.unwrap().unwrap();
            assert!(result.errors.is_empty(), "errors: {:?}", result.errors);
            samples += result.samples.len();
        }
    }
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_ids_and_collect_recovers() {
    let mut vcsim = Vcsim::start(&["-vms", "200"]);
    let plugin = load(&vcsim, "").await;
    let before = plugin.discover().await.unwrap();
    let batch: Vec<Vm> = powered_on(&before).into_iter().take(BATCH).collect();
    assert_eq!(batch.len(), BATCH);
    let first = plugin.collect(&batch).await.unwrap();
    assert_eq!(first.samples.len(), BATCH);

    vcsim.restart();
    let after_restart = plugin.collect(&batch).await.unwrap();
    let after = plugin.discover().await.unwrap();

    assert!(
        after_restart.errors.is_empty(),
        "{:?}",
        after_restart.errors
    );
    assert_eq!(after_restart.samples.len(), BATCH);
    assert!(
        after_restart
            .samples
            .iter()
            .all(|sample| sample.layers.contains(&Layer::Vsphere))
    );
    let ids = |inventory: &Inventory| {
        let mut ids: Vec<(String, String)> = inventory
            .vms
            .iter()
            .map(|vm| (vm.id.clone(), vm.name.clone()))
            .chain(
                inventory
                    .hosts
                    .iter()
                    .map(|h| (h.id.clone(), h.name.clone())),
            )
            .chain(
                inventory
                    .clusters
                    .iter()
                    .map(|c| (c.id.clone(), c.name.clone())),
            )
            .chain(
                inventory
                    .datacenters
                    .iter()
                    .map(|d| (d.id.clone(), d.name.clone())),
            )
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&before).len(), 200 + 30 + 3 + 1);
    assert_eq!(ids(&before), ids(&after));
}

/// Log lines written through a test's tracing subscriber. The test runs on a
/// current-thread runtime, so the plugin's lines reach the subscriber of that thread.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn count(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(text)
            .count()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn session_is_reused_until_vcenter_restarts() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Another test thread may have registered the log call sites before this subscriber
    // existed, and cached that no subscriber is interested. Rebuild that cache now.
    tracing::callsite::rebuild_interest_cache();
    let mut vcsim = Vcsim::start(&["-vms", "20"]);
    let plugin = load(&vcsim, "").await;
    let login = "logged in to vCenter";

    let inventory = plugin.discover().await.unwrap();
    plugin.discover().await.unwrap();
    let batch = powered_on(&inventory);
    plugin.collect(&batch).await.unwrap();
    plugin.collect(&batch).await.unwrap();
    assert_eq!(buffer.count(login), 1, "calls should share one login");

    vcsim.restart();
    let recovered = plugin.collect(&batch).await.unwrap();
    assert_eq!(recovered.samples.len(), batch.len());
    assert_eq!(buffer.count("no longer accepts the session"), 1);
    assert_eq!(buffer.count(login), 2);

    plugin.shutdown().await.unwrap();
    assert_eq!(buffer.count("logged out of vCenter"), 1);
    plugin.collect(&batch).await.unwrap();
    assert_eq!(
        buffer.count(login),
        3,
        "a call after shutdown logs in again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_vm_fails_alone() {
    let vcsim = Vcsim::start(&["-vms", "60"]);
    let plugin = load(&vcsim, "").await;
    let inventory = plugin.discover().await.unwrap();
    let mut batch: Vec<Vm> = powered_on(&inventory).into_iter().take(BATCH - 1).collect();
    let mut deleted = batch[0].clone();
    deleted.id = "deleted-vm".to_owned();
    deleted.source_ref = Some("vm-999999".to_owned());
    batch.insert(BATCH / 2, deleted);

    let result = plugin.collect(&batch).await.unwrap();

    assert_eq!(result.samples.len(), BATCH - 1);
    assert_eq!(result.errors.len(), 1, "{:?}", result.errors);
    assert_eq!(result.errors[0].vm_id, "deleted-vm");
    let GuestError::Protocol(message) = &result.errors[0].error else {
        panic!("unexpected error kind: {:?}", result.errors[0].error);
    };
    assert!(message.contains("ManagedObjectNotFound"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn small_query_limit_keeps_every_counter() {
    let vcsim = Vcsim::start(&["-vms", "60"]);
    let plugin = load(&vcsim, ", max_query_metrics = 7").await;
    let inventory = plugin.discover().await.unwrap();
    let batch: Vec<Vm> = powered_on(&inventory).into_iter().take(BATCH).collect();

    let samples = collect_all(&plugin, &batch).await;

    assert_eq!(samples.len(), batch.len());
    check_vsphere_fields(&batch, &samples);
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_vcenter_is_unreachable() {
    let mut vcsim = Vcsim::start(&["-vms", "20"]);
    let plugin = load(&vcsim, "").await;
    let inventory = plugin.discover().await.unwrap();
    let batch = powered_on(&inventory);

    vcsim.stop();
    let collect_error = guest_error(plugin.collect(&batch).await.unwrap_err());
    let discover_error = guest_error(plugin.discover().await.unwrap_err());
    let fresh = runtime()
        .load(&vcsim_declaration(&vcsim, PASSWORD_VARIABLE, ""))
        .await
        .unwrap();
    let login_error = guest_error(fresh.discover().await.unwrap_err());

    for error in [collect_error, discover_error, login_error] {
        assert!(
            matches!(error, GuestError::Unreachable(_)),
            "expected unreachable, got {error:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_auth_error() {
    let vcsim = Vcsim::start(&["-vms", "10"]);
    let declaration = vcsim_declaration(&vcsim, WRONG_PASSWORD_VARIABLE, "");
    let plugin = runtime().load(&declaration).await.unwrap();

    let error = guest_error(plugin.discover().await.unwrap_err());

    let GuestError::Auth(message) = error else {
        panic!("expected an auth error, got {error:?}");
    };
    assert!(message.contains("InvalidLogin"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_config_key_is_config_error() {
    set_password_variables();
    let extra = format!(
        "allowed_outbound_hosts = [\"https://127.0.0.1:9\"]\n\
         secrets = {{ password = \"{PASSWORD_VARIABLE}\" }}\n\
         config = {{ url = \"https://127.0.0.1:9/sdk\", username = \"u\", pasword = \"x\" }}"
    );
    let plugin = runtime().load(&declaration("vc", &extra)).await.unwrap();

    let error = guest_error(plugin.discover().await.unwrap_err());

    let GuestError::Config(message) = error else {
        panic!("expected a config error, got {error:?}");
    };
    assert!(message.contains("pasword"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_soap_is_protocol_error() {
    set_password_variables();
    let envelope = "<?xml version=\"1.0\"?><soapenv:Envelope \
        xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>\
        <RetrieveServiceContentResponse xmlns=\"urn:vim25\"><returnval><rootFolder \
        type=\"Folder\">group-d1</rootFolder></returnval></RetrieveServiceContentResponse>\
        </soapenv:Body></soapenv:Envelope>";
    let cases = [
        (
            "HTML page",
            "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>".to_owned(),
        ),
        ("truncated XML", envelope[..envelope.len() / 2].to_owned()),
        ("plain text", "hello from a printer".to_owned()),
        ("JSON", "{\"value\": {\"error\": true}}".to_owned()),
        (
            "another method's response",
            envelope.replace("RetrieveServiceContentResponse", "LoginResponse"),
        ),
        ("service content without managers", envelope.to_owned()),
    ];
    let runtime = runtime();
    for (case, body) in cases {
        let origin = serve_once_per_connection(body).await;
        let extra = format!(
            "allowed_outbound_hosts = [\"{origin}\"]\n\
             secrets = {{ password = \"{PASSWORD_VARIABLE}\" }}\n\
             config = {{ url = \"{origin}/sdk\", username = \"u\" }}"
        );
        let plugin = runtime.load(&declaration("vc", &extra)).await.unwrap();

        let error = guest_error(plugin.discover().await.unwrap_err());

        let GuestError::Protocol(message) = error else {
            panic!("{case}: expected a protocol error, got {error:?}");
        };
        assert!(
            message.contains("RetrieveServiceContent"),
            "{case}: {message}"
        );
    }
}

/// Starts a plain-HTTP peer and returns its origin. The peer reads each whole request,
/// responds `200 OK` with `body` and closes the connection, until the test ends.
async fn serve_once_per_connection(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                if read_request(&mut stream).await.is_some() {
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    origin
}

/// Reads the headers and the body of one request, sized by `content-length` or sent in
/// chunks.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let header_end = loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut buffer).await.ok().filter(|n| *n > 0)?;
        request.extend_from_slice(&buffer[..read]);
    };
    let headers = String::from_utf8_lossy(&request[..header_end]).to_ascii_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let chunked = headers.contains("transfer-encoding: chunked");
    let complete = |request: &[u8]| {
        if chunked {
            request[header_end..].ends_with(b"0\r\n\r\n")
        } else {
            request.len() >= header_end + length
        }
    };
    while !complete(&request) {
        let read = stream.read(&mut buffer).await.ok().filter(|n| *n > 0)?;
        request.extend_from_slice(&buffer[..read]);
    }
    Some(request)
}

/// The host's collection cycle over the simulator: one batch whose QueryPerf the simulator
/// delays past the batch deadline costs only that batch's VMs, powered-off VMs are offline
/// rather than errored, and the first cycle after a vCenter restart collects again.
#[tokio::test(flavor = "multi_thread")]
async fn collection_cycle_isolates_slow_batch_and_recovers_after_restart() {
    let slow_vm = "vm-0101";
    let mut vcsim = Vcsim::start(&["-vms", "300", "-slow-vm", slow_vm, "-slow-ms", "20000"]);
    let mut declaration = vcsim_declaration(&vcsim, PASSWORD_VARIABLE, "");
    declaration.call_timeout_secs = 3.0;
    declaration.response_timeout_secs = 2.0;
    let plugin = Arc::new(runtime().load(&declaration).await.unwrap());
    let live = Arc::new(LiveState::default());
    let cycle = CollectionLoop::new(
        plugin,
        vec![],
        CollectionConfig::default(),
        live.clone(),
        vec![],
    );

    let first = cycle.run_cycle().await;
    let slow_batch_size = batch_size_containing(&live, slow_vm);
    vcsim.restart();
    let after_restart = cycle.run_cycle().await;

    assert_eq!(first.vms_scheduled, vcsim.ready.powered_on);
    assert_eq!(first.batches_failed, 1);
    assert_eq!(first.vms_failed, slow_batch_size);
    assert_eq!(
        first.vms_collected,
        vcsim.ready.powered_on - slow_batch_size
    );
    assert_eq!(
        after_restart.vms_failed, slow_batch_size,
        "{after_restart:?}"
    );
    assert_eq!(after_restart.vms_collected, first.vms_collected);
    let statuses = live.read(|data| {
        let now = vmpulse::collection::now_ms();
        let interval = std::time::Duration::from_secs(30);
        let mut counts: HashMap<VmStatus, usize> = HashMap::new();
        for record in data.vms.values() {
            *counts
                .entry(record.status(&HashSet::new(), now, interval))
                .or_default() += 1;
        }
        counts
    });
    assert_eq!(
        statuses[&VmStatus::Offline],
        vcsim.ready.powered_off + vcsim.ready.suspended
    );
    assert_eq!(statuses[&VmStatus::Error], slow_batch_size);
    assert_eq!(statuses[&VmStatus::Online], first.vms_collected);
}

/// Returns the size of the cycle's batch that contains the VM named `name`: the cycle sorts
/// powered-on VMs by ID and cuts batches of 50.
fn batch_size_containing(live: &LiveState, name: &str) -> usize {
    let mut ids: Vec<(String, String)> = live.read(|data| {
        data.vms
            .values()
            .filter(|r| r.vm.power_state == PowerState::PoweredOn)
            .map(|r| (r.vm.id.clone(), r.vm.name.clone()))
            .collect()
    });
    ids.sort();
    ids.chunks(BATCH)
        .find(|batch| batch.iter().any(|(_, vm_name)| vm_name == name))
        .map(<[_]>::len)
        .expect("the slow VM is powered on")
}
