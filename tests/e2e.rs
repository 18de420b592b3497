//! The product end to end. The `vmpulse` binary runs the vSphere, guest-OS and
//! threshold-rules plugins against the vCenter simulator (1,500 VMs) and a real node
//! exporter. The test reads it through the REST API and a WebSocket client, then kills it
//! with SIGKILL and starts it again.
//!
//! The binary is the one `cargo test --workspace` builds for the host's own tests
//! (`target/debug/vmpulse`); run `cargo build -p vmpulse` first when running this file alone.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use http::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vmpulse::auth::{Authenticator, Role};
use vmpulse::config::AuthConfig;
use vmpulse_tests::api_client::{ApiClient, RequestBody};
use vmpulse_tests::fixtures::workspace_root;
use vmpulse_tests::guestos_plugin::{self, NodeExporter, free_port};
use vmpulse_tests::threshold_plugin;
use vmpulse_tests::vcsim::Vcsim;
use vmpulse_tests::vsphere_plugin;

const JWT_SECRET: &str = "e2e-secret-with-at-least-32-bytes-of-length";
const VC_PASSWORD: &str = "vmpulse-secret";
/// The collection interval: the shortest the config accepts.
const INTERVAL: Duration = Duration::from_secs(30);
/// VMs whose guest IP the simulator reports as 127.0.0.1, where the node exporter listens.
/// The launcher accepts only powered-on VMs with VMware Tools running.
const GUEST_CANDIDATES: [&str; 3] = ["vm-0021", "vm-0023", "vm-0024"];

fn host_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let binary = target.join("debug").join("vmpulse");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p vmpulse` (cargo test --workspace builds it)",
        binary.display()
    );
    binary
}

/// The host process; killed when dropped.
struct Host {
    child: Child,
    config: PathBuf,
    log: PathBuf,
}

impl Host {
    fn start(config: &Path, log: &Path) -> Self {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("cannot open the host's log file");
        let child = Command::new(host_binary())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("VMPULSE_E2E_JWT_SECRET", JWT_SECRET)
            .env("VMPULSE_E2E_VC_PASSWORD", VC_PASSWORD)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("cannot start the vmpulse binary");
        Self {
            child,
            config: config.to_owned(),
            log: log.to_owned(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process with SIGKILL, so it has no chance to flush or close anything.
    fn kill(&mut self) {
        self.child.kill().expect("cannot send SIGKILL to the host");
        self.child.wait().expect("cannot reap the host");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, vcsim: &Vcsim, exporter: &NodeExporter, listen: SocketAddr) -> PathBuf {
    let origin = vcsim.origin();
    let text = format!(
        r#"
[runtime]
cache_dir = {cache:?}

[collection]
interval_secs = {interval}

[storage]
path = "vmpulse.redb"

[server]
listen = "{listen}"
default_language = "en"

[auth]
hs256_secret_env = "VMPULSE_E2E_JWT_SECRET"

[[groups]]
id = "tens"
name = "VMs 10 to 99"
name_patterns = ["vm-001?", "vm-002?", "vm-003?", "vm-004?", "vm-005?", "vm-006?", "vm-007?", "vm-008?", "vm-009?"]

[[plugins]]
id = "vc"
kind = "collector"
component = {vsphere:?}
allowed_outbound_hosts = ["{origin}"]
secrets = {{ password = "VMPULSE_E2E_VC_PASSWORD" }}
tls."{origin}" = {{ ca_file = {ca:?} }}
config = {{ url = "{url}", username = "{user}" }}

[[plugins]]
id = "guest"
kind = "collector"
role = "enrichment"
component = {guestos:?}
allowed_outbound_hosts = ["{exporter}"]
config = {{ url_template = "http://{{guest_ip}}:{exporter_port}/metrics" }}

# Every guest has more than 1 MB of memory: the alert fires on the VMs with an exporter once
# the level has held for 45 s, that is at the third cycle, after the client subscribed.
[[plugins]]
id = "thresholds"
kind = "alert-rule"
component = {rules:?}
[plugins.config.thresholds."memory.totalMB"]
low = 1.0
hold_seconds = 45
"#,
        cache = dir.join("component-cache").display().to_string(),
        interval = INTERVAL.as_secs(),
        vsphere = vsphere_plugin::component().display().to_string(),
        guestos = guestos_plugin::component().display().to_string(),
        rules = threshold_plugin::component().display().to_string(),
        ca = vcsim.ready.ca_file.display().to_string(),
        url = vcsim.sdk_url(),
        user = vcsim.ready.username,
        exporter = exporter.origin(),
        exporter_port = exporter.addr.port(),
    );
    let path = dir.join("vmpulse.toml");
    std::fs::write(&path, text).expect("cannot write the config file");
    path
}

fn token(role: Role) -> String {
    Authenticator::hs256(JWT_SECRET.as_bytes(), &AuthConfig::default())
        .unwrap()
        .mint("e2e", role, Duration::from_secs(3600))
        .unwrap()
}

struct Api {
    client: ApiClient,
    token: String,
}

impl Api {
    /// Returns the `data` of a successful response, panicking with the body otherwise.
    async fn get(&self, path: &str) -> Value {
        let response = self.client.get(path, Some(&self.token)).await;
        let body = response.json();
        assert_eq!(response.status, 200, "GET {path}: {body}");
        assert_eq!(body["code"], 200, "GET {path}: {body}");
        body["data"].clone()
    }

    /// Polls `/healthz` until collection is current (`ok`), or with `listening_only` until
    /// the API responds at all.
    async fn wait_healthy(&self, host: &Host, within: Duration, listening_only: bool) {
        let deadline = Instant::now() + within;
        loop {
            // The port refuses connections until the host listens.
            let healthy = match self.client.connect().await {
                Ok(mut connection) => {
                    let response = connection
                        .send(Method::GET, "/healthz", &[], RequestBody::Empty)
                        .await;
                    listening_only || response.json()["data"]["collection"] == "ok"
                }
                Err(_) => false,
            };
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the host did not become healthy within {within:?}; its log:\n{}",
                host.log_text()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads the next text message as JSON, skipping pings, within `within`.
async fn next_json(socket: &mut Socket, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no message within {within:?}"))
            .expect("the server closed the connection")
            .expect("WebSocket error");
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame: {other:?}"),
        }
    }
}

fn average(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0u32), |(sum, count), v| (sum + v, count + 1));
    (count > 0).then(|| sum / f64::from(count))
}

fn assert_close(what: &str, actual: &Value, expected: Option<f64>) {
    match (actual.as_f64(), expected) {
        (Some(actual), Some(expected)) => assert!(
            (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0),
            "{what}: API {actual}, computed {expected}"
        ),
        (None, None) => {}
        (actual, expected) => panic!("{what}: API {actual:?}, computed {expected:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estate_end_to_end() {
    let guest_flags: Vec<String> = GUEST_CANDIDATES
        .iter()
        .flat_map(|name| ["-guest-ip".to_owned(), format!("{name}=127.0.0.1")])
        .collect();
    let mut vcsim_args = vec!["-vms", "1500"];
    vcsim_args.extend(guest_flags.iter().map(String::as_str));
    let vcsim = Vcsim::start(&vcsim_args);
    let guest_vms: Vec<String> = vcsim
        .ready
        .guest_ip_vms
        .iter()
        .filter(|vm| vm.power_state == "poweredOn" && vm.tools_running)
        .map(|vm| vm.name.clone())
        .collect();
    assert!(!guest_vms.is_empty(), "{:?}", vcsim.ready.guest_ip_vms);
    let exporter = NodeExporter::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = write_config(dir.path(), &vcsim, &exporter, listen);
    let log = dir.path().join("host.log");

    let mut host = Host::start(&config, &log);
    let api = Api {
        client: ApiClient::plain(listen),
        token: token(Role::ItManager),
    };
    // The first cycle reads the inventory and collects 1,500 VMs from scratch.
    api.wait_healthy(&host, Duration::from_secs(180), false)
        .await;

    // The VM list names every VM; the group covers vm-0010 to vm-0099.
    let list = api.get("/api/v1/realtime/vms?limit=2000").await;
    let vms = list["items"].as_array().expect("items").clone();
    assert_eq!(vms.len(), 1500, "{}", list["total"]);
    let id_of: HashMap<String, String> = vms
        .iter()
        .map(|vm| {
            (
                vm["name"].as_str().unwrap().to_owned(),
                vm["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let group: Vec<&Value> = vms
        .iter()
        .filter(|vm| {
            let name = vm["name"].as_str().unwrap();
            name.len() == 7 && name.starts_with("vm-00") && name[5..6] != *"0"
        })
        .collect();
    let group_ids: Vec<String> = group
        .iter()
        .map(|vm| vm["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        group_ids.len() <= 90 && group_ids.len() >= 80,
        "{}",
        group_ids.len()
    );
    // Powered-off VMs have no real-time data, so only powered-on ones are subscribed.
    let powered_on = |vm: &Value| vm["powerState"] == "poweredOn";
    let mut subscribed: Vec<String> = group
        .iter()
        .filter(|vm| powered_on(vm))
        .map(|vm| vm["id"].as_str().unwrap().to_owned())
        .collect();
    for vm in vms.iter().filter(|vm| powered_on(vm)) {
        if subscribed.len() == 100 {
            break;
        }
        let id = vm["id"].as_str().unwrap().to_owned();
        if !subscribed.contains(&id) {
            subscribed.push(id);
        }
    }
    for name in &guest_vms {
        assert!(group_ids.contains(&id_of[name]), "{name} is in the group");
    }

    // Connect, subscribe, receive the snapshot.
    let url = format!("ws://{listen}/ws/v1/realtime?token={}", api.token);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let connected = next_json(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(connected["type"], "connected", "{connected}");
    assert!(connected["data"]["clientId"].is_string());
    socket
        .send(Message::text(
            json!({"type": "subscribe", "data": {"vmIds": subscribed}}).to_string(),
        ))
        .await
        .unwrap();
    let mut snapshot: HashMap<String, Value> = HashMap::new();
    while snapshot.len() < subscribed.len() {
        let message = next_json(&mut socket, Duration::from_secs(10)).await;
        if message["type"] == "metrics" {
            let vm_id = message["data"]["vmId"].as_str().unwrap().to_owned();
            snapshot.insert(vm_id, message["data"]["metrics"].clone());
        } else {
            assert_ne!(message["type"], "error", "{message}");
        }
    }
    let first_timestamp = snapshot[&subscribed[0]]["timestamp"]
        .as_str()
        .unwrap()
        .to_owned();

    // A fresh `metrics` message for every subscribed VM within one interval (plus the
    // cycle's own time), and the alert on the guest VMs when it fires.
    let mut fresh: HashMap<String, Value> = HashMap::new();
    let mut alerts: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + INTERVAL * 3;
    while (fresh.len() < subscribed.len() || alerts.len() < guest_vms.len())
        && Instant::now() < deadline
    {
        let message = next_json(&mut socket, INTERVAL * 2).await;
        match message["type"].as_str() {
            Some("metrics") => {
                let metrics = &message["data"]["metrics"];
                let vm_id = message["data"]["vmId"].as_str().unwrap().to_owned();
                if metrics["timestamp"].as_str() != Some(first_timestamp.as_str()) {
                    fresh.insert(vm_id, metrics.clone());
                }
            }
            Some("alert") => {
                let data = &message["data"];
                assert_eq!(data["alert"]["metric"], "memory", "{message}");
                assert_eq!(data["alert"]["severity"], "low", "{message}");
                alerts.insert(data["vmId"].as_str().unwrap().to_owned());
            }
            _ => panic!("unexpected message: {message}"),
        }
    }
    assert_eq!(fresh.len(), subscribed.len(), "fresh metrics for every VM");
    let expected_alerts: HashSet<String> =
        guest_vms.iter().map(|name| id_of[name].clone()).collect();
    assert_eq!(alerts, expected_alerts, "alerts reach the client");
    for name in &guest_vms {
        assert_eq!(
            fresh[&id_of[name]]["dataSources"]["guestOS"], true,
            "{name}"
        );
    }

    // The group aggregate agrees with what the client received in the same cycle. `fresh`
    // may mix two cycles, so read one whole cycle: wait until the current burst of messages
    // ends, then collect the next burst, and ask for the aggregate before the cycle after.
    loop {
        let quiet =
            tokio::time::timeout(Duration::from_secs(5), next_json(&mut socket, INTERVAL * 2));
        if quiet.await.is_err() {
            break;
        }
    }
    let mut cycle: HashMap<String, Value> = HashMap::new();
    while cycle.len() < subscribed.len() {
        let message = next_json(&mut socket, INTERVAL * 2).await;
        if message["type"] == "metrics" {
            let vm_id = message["data"]["vmId"].as_str().unwrap().to_owned();
            cycle.insert(vm_id, message["data"]["metrics"].clone());
        }
    }
    let fresh = cycle;
    let aggregate = api.get("/api/v1/realtime/groups/tens").await;
    assert_eq!(aggregate["scope"], "group");
    assert_eq!(
        aggregate["vmCount"]["total"].as_u64(),
        Some(group_ids.len() as u64)
    );
    let group_metrics: Vec<&Value> = group_ids.iter().filter_map(|id| fresh.get(id)).collect();
    let cpu = average(
        group_metrics
            .iter()
            .filter_map(|m| m["cpu"]["usagePercent"].as_f64()),
    );
    assert_close(
        "group cpu.avgUsagePercent",
        &aggregate["cpu"]["avgUsagePercent"],
        cpu,
    );
    let memory = average(
        group_metrics
            .iter()
            .filter_map(|m| m["memory"]["usagePercent"].as_f64()),
    );
    assert_close(
        "group memory.avgUsagePercent",
        &aggregate["memory"]["avgUsagePercent"],
        memory,
    );

    // Cluster and overview agree with the VM list.
    let cluster_id = group[0]["clusterId"].as_str().unwrap();
    let cluster = api
        .get(&format!("/api/v1/realtime/clusters/{cluster_id}"))
        .await;
    let in_cluster = vms
        .iter()
        .filter(|vm| vm["clusterId"] == cluster_id)
        .count();
    assert_eq!(
        cluster["vmCount"]["total"].as_u64(),
        Some(in_cluster as u64)
    );
    let overview = api.get("/api/v1/realtime/overview").await;
    assert_eq!(overview["vmStatus"]["total"], 1500);
    assert!(overview["alerts"]["low"].as_u64().unwrap() >= guest_vms.len() as u64);
    let recent = overview["recentAlerts"].as_array().unwrap();
    assert!(!recent.is_empty());

    // SIGKILL, start again: latest values and history are still there.
    let probe = &subscribed[0];
    let before = api.get(&format!("/api/v1/realtime/vms/{probe}")).await;
    drop(socket);
    host.kill();
    let mut host = Host::start(&host.config.clone(), &log);
    // Before the new process's first cycle ends, the API serves what the store kept.
    api.wait_healthy(&host, Duration::from_secs(60), true).await;
    let after = api.get(&format!("/api/v1/realtime/vms/{probe}")).await;
    assert!(
        after["timestamp"].as_str() >= before["timestamp"].as_str(),
        "latest values survive: before {before}, after {after}"
    );
    assert!(after["cpu"].is_object(), "{after}");
    let history = api
        .get(&format!(
            "/api/v1/realtime/vms/{probe}/history?metrics=cpu.usagePercent"
        ))
        .await;
    let points = history["points"].as_array().expect("history points");
    assert!(points.len() >= 2, "history survives: {history}");
    let overview = api.get("/api/v1/realtime/overview").await;
    assert!(
        overview["alerts"]["low"].as_u64().unwrap() >= guest_vms.len() as u64,
        "alerts survive: {overview}"
    );
    host.kill();
}
