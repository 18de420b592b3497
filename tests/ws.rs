//! The WebSocket push channel against a real client (tokio-tungstenite) on 127.0.0.1:
//! the message flow, every close code a client can cause, error replies, slow readers,
//! idle connections, alert pushes from the cpu-rule fixture plugin and languages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vmpulse::alerts::AlertEngine;
use vmpulse::auth::{Authenticator, Role};
use vmpulse::collection::{CycleOutput, CycleReport, now_ms};
use vmpulse::config::{AlertsConfig, AuthConfig, Config};
use vmpulse::live::{LiveState, VmOutcome};
use vmpulse::metrics::{CpuMetrics, DataSources, MemoryMetrics, RealtimeMetrics};
use vmpulse::plugin::bindings::types::{Inventory, PowerState, Vm};
use vmpulse::plugin::{Plugin, PluginRuntime};
use vmpulse::service::Service;
use vmpulse::ws::Realtime;
use vmpulse_tests::fixtures::declaration;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for one expected message.
const WAIT: Duration = Duration::from_secs(10);

struct Server {
    service: Arc<Service>,
    auth: Arc<Authenticator>,
    addr: SocketAddr,
    realtime: Realtime,
    cycles: u64,
}

fn vm(index: usize) -> Vm {
    Vm {
        id: vm_id(index),
        name: format!("web-{index:03}"),
        source_ref: Some(format!("vm-{index}")),
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

fn vm_id(index: usize) -> String {
    format!("vm-{index:03}")
}

fn metrics(index: usize, cpu_percent: f64) -> RealtimeMetrics {
    RealtimeMetrics {
        vm_id: vm_id(index),
        timestamp: vmpulse::metrics::Timestamp(now_ms()),
        data_sources: DataSources {
            vsphere: true,
            guest_os: false,
        },
        cpu: CpuMetrics {
            usage_mhz: Some(cpu_percent * 24.0),
            ready: Some(1.5),
            usage_percent: Some(cpu_percent),
            ..CpuMetrics::default()
        },
        memory: MemoryMetrics {
            usage_mb: Some(4096.0),
            granted_mb: Some(8192.0),
            active_mb: Some(2048.0),
            ..MemoryMetrics::default()
        },
        ..RealtimeMetrics::default()
    }
}

/// Starts the push channel on 127.0.0.1:0 over `vm_count` VMs, with `rules` as alert rules.
async fn start(vm_count: usize, rules: Vec<Arc<Plugin>>, tune: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::parse("", "test.toml".as_ref(), "/".as_ref()).unwrap();
    tune(&mut config);
    let live = Arc::new(LiveState::default());
    live.replace_inventory(
        "lab",
        Inventory {
            datacenters: vec![],
            clusters: vec![],
            hosts: vec![],
            vms: (0..vm_count).map(vm).collect(),
        },
    );
    let alerts = AlertEngine::new(rules, AlertsConfig::default(), None).unwrap();
    let service = Service::new(
        Arc::new(config),
        live,
        None,
        Arc::new(alerts),
        vec![],
        vec![],
    );

    let auth_config = AuthConfig {
        leeway_secs: 0,
        ..AuthConfig::default()
    };
    let auth = Arc::new(Authenticator::hs256(&[42; 32], &auth_config).unwrap());

    let realtime = vmpulse::ws::start(service.clone(), auth.clone());
    let app = poem::Route::new().at("/ws/v1/realtime", realtime.endpoint());
    let acceptor =
        poem::listener::Listener::into_acceptor(poem::listener::TcpListener::bind("127.0.0.1:0"))
            .await
            .unwrap();
    let addr = *poem::listener::Acceptor::local_addr(&acceptor)[0]
        .as_socket_addr()
        .unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));

    // Every VM starts with metrics, as after the first collection cycle.
    let mut server = Server {
        service,
        auth,
        addr,
        realtime,
        cycles: 0,
    };
    let all: Vec<usize> = (0..vm_count).collect();
    server.cycle(&all, 10.0).await;
    server
}

impl Server {
    fn token(&self) -> String {
        self.auth
            .mint("tester", Role::ItManager, Duration::from_secs(600))
            .unwrap()
    }

    /// Runs one processed cycle in which `indexes` were collected with `cpu_percent`.
    async fn cycle(&mut self, indexes: &[usize], cpu_percent: f64) {
        self.cycles += 1;
        let outcomes: Vec<(String, VmOutcome)> = indexes
            .iter()
            .map(|index| {
                let record = metrics(*index, cpu_percent);
                (vm_id(*index), VmOutcome::Collected(Box::new(record)))
            })
            .collect();
        self.service.live.apply(&outcomes, now_ms());
        let report = CycleReport {
            source: "lab".to_owned(),
            number: self.cycles,
            started_at_ms: now_ms(),
            duration_ms: 1.0,
            vms_scheduled: indexes.len(),
            vms_collected: indexes.len(),
            vms_failed: 0,
            batches: 1,
            batches_failed: 0,
            inventory_refreshed: false,
            inventory_error: None,
        };
        self.service
            .process_cycle(&CycleOutput { report, outcomes })
            .await;
    }

    async fn connect(&self) -> Client {
        self.connect_with(&format!("token={}", self.token()), None)
            .await
    }

    async fn connect_with(&self, query: &str, accept_language: Option<&str>) -> Client {
        let url = format!("ws://{}/ws/v1/realtime?{query}", self.addr);
        let mut request = url.into_client_request().unwrap();
        if let Some(language) = accept_language {
            request
                .headers_mut()
                .insert("Accept-Language", language.parse().unwrap());
        }
        let (client, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        client
    }

    /// Connects and reads the `connected` message.
    async fn connect_ready(&self) -> Client {
        let mut client = self.connect().await;
        let connected = next_json(&mut client).await;
        assert_eq!(connected["type"], "connected");
        client
    }

    fn closes(&self, reason: &str) -> u64 {
        self.service
            .telemetry
            .ws_closed
            .lock()
            .unwrap()
            .get(reason)
            .copied()
            .unwrap_or(0)
    }
}

async fn send(client: &mut Client, message: Value) {
    client
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// Returns the next JSON message, skipping WebSocket pings.
async fn next_json(client: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a message within the wait")
            .expect("the connection is open")
            .expect("a readable message");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Reads messages until the close frame and returns its code and reason, with the JSON
/// messages before it.
async fn next_close(client: &mut Client) -> (u16, String, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let message = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a close within the wait")
            .expect("a close frame before the end")
            .expect("a readable message");
        match message {
            Message::Text(text) => before.push(serde_json::from_str(&text).unwrap()),
            Message::Close(Some(frame)) => {
                return (u16::from(frame.code), frame.reason.to_string(), before);
            }
            Message::Close(None) => panic!("a close frame without a code"),
            _ => {}
        }
    }
}

/// Sends a ping and returns every message up to its pong, which proves the server handled
/// everything sent before.
async fn until_pong(client: &mut Client, timestamp: i64) -> Vec<Value> {
    send(client, json!({"type": "ping", "timestamp": timestamp})).await;
    let mut before = Vec::new();
    loop {
        let message = next_json(client).await;
        if message["type"] == "pong" && message["timestamp"] == timestamp {
            return before;
        }
        before.push(message);
    }
}

/// Reads `metrics` messages until one for each of `vm_ids` arrived; returns them by VM.
async fn metrics_for(client: &mut Client, vm_ids: &[String]) -> Vec<Value> {
    let mut found: Vec<Option<Value>> = vec![None; vm_ids.len()];
    while found.iter().any(Option::is_none) {
        let message = next_json(client).await;
        if message["type"] != "metrics" {
            continue;
        }
        let vm = message["data"]["vmId"].as_str().unwrap().to_owned();
        if let Some(index) = vm_ids.iter().position(|id| *id == vm) {
            found[index] = Some(message);
        }
    }
    found.into_iter().map(Option::unwrap).collect()
}

fn ids(indexes: impl IntoIterator<Item = usize>) -> Vec<String> {
    indexes.into_iter().map(vm_id).collect()
}

#[tokio::test]
async fn full_flow_subscribe_push_ping_unsubscribe() {
    let mut server = start(5, vec![], |_| {}).await;
    let mut client = server.connect().await;

    let connected = next_json(&mut client).await;
    send(
        &mut client,
        json!({"type": "subscribe", "data": {"vmIds": ["vm-001", "vm-002"]}}),
    )
    .await;
    let initial = metrics_for(&mut client, &ids([1, 2])).await;
    server.cycle(&[1, 2, 3], 42.0).await;
    let pushed = metrics_for(&mut client, &ids([1, 2])).await;
    let pong = {
        send(
            &mut client,
            json!({"type": "ping", "timestamp": 1234567890}),
        )
        .await;
        next_json(&mut client).await
    };
    send(
        &mut client,
        json!({"type": "unsubscribe", "data": {"vmIds": ["vm-001"]}}),
    )
    .await;
    until_pong(&mut client, 1).await;
    server.cycle(&[1, 2], 43.0).await;
    let after_unsubscribe = metrics_for(&mut client, &ids([2])).await;
    let stray = until_pong(&mut client, 2).await;

    assert_eq!(connected["type"], "connected");
    assert!(
        connected["data"]["clientId"]
            .as_str()
            .is_some_and(|id| id.starts_with("ws_"))
    );
    assert!(connected["data"]["serverTime"].as_str().is_some());
    assert_eq!(connected["data"]["subscribedVMs"], json!([]));
    assert_eq!(initial[0]["data"]["metrics"]["cpu"]["usagePercent"], 10.0);
    assert_eq!(initial[1]["data"]["metrics"]["vmId"], "vm-002");
    assert_eq!(pushed[0]["data"]["metrics"]["cpu"]["usagePercent"], 42.0);
    assert_eq!(pushed[1]["data"]["metrics"]["cpu"]["usagePercent"], 42.0);
    assert_eq!(pong, json!({"type": "pong", "timestamp": 1234567890}));
    assert_eq!(
        after_unsubscribe[0]["data"]["metrics"]["cpu"]["usagePercent"],
        43.0
    );
    assert!(
        stray
            .iter()
            .all(|message| message["data"]["vmId"] != "vm-001"),
        "metrics of an unsubscribed VM: {stray:?}"
    );
}

#[tokio::test]
async fn vm_not_in_cycle_gets_no_push() {
    let mut server = start(3, vec![], |_| {}).await;
    let mut client = server.connect_ready().await;
    send(
        &mut client,
        json!({"type": "subscribe", "data": {"vmIds": ["vm-000", "vm-001"]}}),
    )
    .await;
    metrics_for(&mut client, &ids([0, 1])).await;

    server.cycle(&[0], 55.0).await;
    let pushed = metrics_for(&mut client, &ids([0])).await;
    let rest = until_pong(&mut client, 7).await;

    assert_eq!(pushed[0]["data"]["metrics"]["cpu"]["usagePercent"], 55.0);
    assert!(
        rest.iter().all(|message| message["type"] != "metrics"),
        "vm-001 was not collected in the cycle: {rest:?}"
    );
}

#[tokio::test]
async fn missing_invalid_and_expired_tokens_close_with_1008() {
    let server = start(1, vec![], |_| {}).await;
    let expired = server
        .auth
        .mint("tester", Role::Admin, Duration::ZERO)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cases = [
        ("".to_owned(), "TOKEN_MISSING"),
        ("token=not.a.jwt".to_owned(), "TOKEN_INVALID"),
        (format!("token={expired}"), "TOKEN_EXPIRED"),
    ];

    for (query, code) in cases {
        let mut client = server.connect_with(&query, Some("en")).await;
        let (close_code, reason, before) = next_close(&mut client).await;

        assert_eq!(close_code, 1008, "{code}");
        assert_eq!(reason, "token invalid or expired", "{code}");
        assert_eq!(before.len(), 1, "{code}: {before:?}");
        assert_eq!(before[0]["type"], "error", "{code}");
        assert_eq!(before[0]["data"]["code"], code);
    }
    assert_eq!(server.closes("token"), 3);
}

#[tokio::test]
async fn subscription_over_limit_closes_with_1009() {
    let server = start(150, vec![], |_| {}).await;
    let mut client = server.connect_ready().await;

    send(
        &mut client,
        json!({"type": "subscribe", "data": {"vmIds": ids(0..60)}}),
    )
    .await;
    until_pong(&mut client, 1).await;
    send(
        &mut client,
        json!({"type": "subscribe", "data": {"vmIds": ids(50..101)}}),
    )
    .await;
    let (code, reason, _) = next_close(&mut client).await;

    assert_eq!(code, 1009);
    assert_eq!(
        reason, "订阅超过 100 台虚拟机",
        "Chinese is the default language"
    );
    assert_eq!(server.closes("subscription_limit"), 1);
}

#[tokio::test]
async fn exactly_100_vms_is_allowed() {
    let server = start(100, vec![], |_| {}).await;
    let mut client = server.connect_ready().await;

    send(
        &mut client,
        json!({"type": "subscribe", "data": {"vmIds": ids(0..100)}}),
    )
    .await;
    let received = metrics_for(&mut client, &ids(0..100)).await;

    assert_eq!(received.len(), 100);
    assert_eq!(server.closes("subscription_limit"), 0);
}

#[tokio::test]
async fn bad_messages_get_errors_and_connection_stays_open() {
    let server = start(2, vec![], |config| {
        config.server.websocket.max_frame_bytes = 1024;
    })
    .await;
    let mut client = server
        .connect_with(&format!("token={}&lang=en", server.token()), None)
        .await;
    next_json(&mut client).await;
    let big_text = json!({"type": "ping", "padding": "x".repeat(2000)}).to_string();
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("{not json"), "INVALID_JSON"),
        (Message::text(r#"{"type":"shout"}"#), "UNKNOWN_TYPE"),
        (Message::text(r#"{"data":{}}"#), "INVALID_FIELD"),
        (
            Message::text(r#"{"type":"subscribe","data":{"vmIds":"vm-000"}}"#),
            "INVALID_FIELD",
        ),
        (
            Message::text(r#"{"type":"ping","timestamp":"yesterday"}"#),
            "INVALID_FIELD",
        ),
        (
            Message::text(r#"{"type":"subscribe","data":{"vmIds":["vm-000"],"metrics":["gpu"]}}"#),
            "UNKNOWN_METRIC_GROUP",
        ),
        (Message::binary(vec![1, 2, 3]), "BINARY_NOT_SUPPORTED"),
        (Message::text(big_text), "FRAME_TOO_LARGE"),
        (Message::binary(vec![0; 3000]), "FRAME_TOO_LARGE"),
    ];

    for (index, (message, code)) in cases.into_iter().enumerate() {
        client.send(message).await.unwrap();
        let replies = until_pong(&mut client, index as i64).await;

        assert_eq!(replies.len(), 1, "{code}: {replies:?}");
        assert_eq!(replies[0]["type"], "error", "{code}");
        assert_eq!(replies[0]["data"]["code"], code);
        assert!(
            replies[0]["data"]["message"]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "{code}"
        );
    }
    let unknown_group_left_nothing = until_pong(&mut client, 99).await;
    assert!(unknown_group_left_nothing.is_empty());
    assert_eq!(
        server
            .service
            .telemetry
            .ws_errors_sent
            .load(std::sync::atomic::Ordering::Relaxed),
        9
    );
}

#[tokio::test]
async fn message_over_hard_limit_closes_with_1009() {
    let server = start(1, vec![], |config| {
        config.server.websocket.max_frame_bytes = 1024;
    })
    .await;
    let mut client = server.connect_ready().await;

    let huge = "x".repeat(10 * 1024);
    client.send(Message::text(huge)).await.unwrap();
    let (code, _, _) = next_close(&mut client).await;

    assert_eq!(code, 1009);
    assert_eq!(server.closes("message_too_big"), 1);
}

#[tokio::test]
async fn unknown_vms_are_listed_and_known_subscribed() {
    let mut server = start(3, vec![], |_| {}).await;
    let mut client = server
        .connect_with(&format!("token={}&lang=en", server.token()), None)
        .await;
    next_json(&mut client).await;

    send(
        &mut client,
        json!({"type": "subscribe", "data": {"vmIds": ["vm-000", "ghost-1", "vm-002", "ghost-2"]}}),
    )
    .await;
    let replies = until_pong(&mut client, 1).await;
    server.cycle(&[0, 1, 2], 30.0).await;
    let pushed = metrics_for(&mut client, &ids([0, 2])).await;
    let rest = until_pong(&mut client, 2).await;

    let errors: Vec<&Value> = replies.iter().filter(|m| m["type"] == "error").collect();
    let metrics: Vec<&Value> = replies.iter().filter(|m| m["type"] == "metrics").collect();
    assert_eq!(errors.len(), 1, "{replies:?}");
    assert_eq!(errors[0]["data"]["code"], "UNKNOWN_VM");
    assert_eq!(errors[0]["data"]["vmIds"], json!(["ghost-1", "ghost-2"]));
    assert_eq!(
        errors[0]["data"]["message"],
        "These VMs do not exist and were not subscribed: ghost-1, ghost-2"
    );
    assert_eq!(metrics.len(), 2, "latest metrics of the known VMs at once");
    assert_eq!(pushed.len(), 2);
    assert!(
        rest.iter()
            .all(|message| message["data"]["vmId"] != "vm-001"),
        "{rest:?}"
    );
}

#[tokio::test]
async fn metric_groups_restrict_metrics() {
    let mut server = start(2, vec![], |_| {}).await;
    let mut client = server.connect_ready().await;

    send(
        &mut client,
        json!({"type": "subscribe", "data": {"vmIds": ["vm-000"], "metrics": ["cpu"]}}),
    )
    .await;
    send(
        &mut client,
        json!({"type": "subscribe", "data": {"vmIds": ["vm-001"]}}),
    )
    .await;
    until_pong(&mut client, 1).await;
    server.cycle(&[0, 1], 64.0).await;
    let pushed = metrics_for(&mut client, &ids([0, 1])).await;

    let restricted = &pushed[0]["data"]["metrics"];
    let full = &pushed[1]["data"]["metrics"];
    assert_eq!(restricted["cpu"]["usagePercent"], 64.0);
    assert_eq!(restricted["memory"], json!({}));
    assert_eq!(restricted["vmId"], "vm-000");
    assert_eq!(full["cpu"]["usagePercent"], 64.0);
    assert_eq!(full["memory"]["usageMB"], 4096.0);
}

#[tokio::test]
async fn slow_reader_is_closed_while_others_receive() {
    let mut server = start(100, vec![], |config| {
        config.server.websocket.ping_interval_secs = 1;
        config.server.websocket.idle_timeout_secs = 600;
    })
    .await;
    let all = ids(0..100);
    let indexes: Vec<usize> = (0..100).collect();
    let mut slow = server.connect_ready().await;
    let mut fast = server.connect_ready().await;
    for client in [&mut slow, &mut fast] {
        send(client, json!({"type": "subscribe", "data": {"vmIds": all}})).await;
    }
    metrics_for(&mut fast, &all).await;

    // The slow client reads nothing from here on; its socket buffers fill, then the
    // server's writes to it stall.
    let mut cycles = 0;
    while server.closes("slow_consumer") == 0 {
        assert!(cycles < 2000, "the slow reader was never closed");
        cycles += 1;
        let cpu = 1.0 + f64::from(cycles % 90);
        server.cycle(&indexes, cpu).await;
        let received = metrics_for(&mut fast, &all).await;
        assert!(
            received
                .iter()
                .all(|message| message["data"]["metrics"]["cpu"]["usagePercent"] == cpu),
            "the fast reader got every VM of cycle {cycles}"
        );
    }
    let slow_end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match slow.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await;
    server.cycle(&indexes, 99.5).await;
    let after = metrics_for(&mut fast, &all).await;

    assert!(slow_end.is_ok(), "the slow reader's connection ended");
    if let Ok(Some(code)) = slow_end {
        assert_eq!(code, 1013, "a close frame that got through is 1013");
    }
    assert_eq!(server.closes("slow_consumer"), 1);
    assert_eq!(after.len(), 100, "the fast reader still receives");
}

#[tokio::test]
async fn reconnect_and_resubscribe() {
    let mut server = start(2, vec![], |_| {}).await;
    let mut first = server.connect().await;
    let first_connected = next_json(&mut first).await;
    send(
        &mut first,
        json!({"type": "subscribe", "data": {"vmIds": ["vm-001"]}}),
    )
    .await;
    metrics_for(&mut first, &ids([1])).await;
    first.close(None).await.unwrap();
    drop(first);

    let mut second = server.connect().await;
    let second_connected = next_json(&mut second).await;
    server.cycle(&[1], 20.0).await;
    let nothing_yet = until_pong(&mut second, 1).await;
    send(
        &mut second,
        json!({"type": "subscribe", "data": {"vmIds": ["vm-001"]}}),
    )
    .await;
    let latest = metrics_for(&mut second, &ids([1])).await;
    server.cycle(&[1], 21.0).await;
    let pushed = metrics_for(&mut second, &ids([1])).await;

    assert_ne!(
        first_connected["data"]["clientId"],
        second_connected["data"]["clientId"]
    );
    assert_eq!(second_connected["data"]["subscribedVMs"], json!([]));
    assert!(
        nothing_yet
            .iter()
            .all(|message| message["type"] != "metrics"),
        "subscriptions do not survive a reconnect: {nothing_yet:?}"
    );
    assert_eq!(latest[0]["data"]["metrics"]["cpu"]["usagePercent"], 20.0);
    assert_eq!(pushed[0]["data"]["metrics"]["cpu"]["usagePercent"], 21.0);
}

#[tokio::test]
async fn idle_client_is_closed() {
    let server = start(1, vec![], |config| {
        config.server.websocket.idle_timeout_secs = 1;
        config.server.websocket.ping_interval_secs = 60;
    })
    .await;
    let mut idle = server
        .connect_with(&format!("token={}&lang=ja", server.token()), None)
        .await;
    let mut active = server.connect_ready().await;

    for step in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        until_pong(&mut active, step).await;
    }
    let (code, reason, before) = next_close(&mut idle).await;

    assert_eq!(code, 1000);
    assert_eq!(
        reason,
        "クライアントからのフレームがなくタイムアウトしました"
    );
    assert_eq!(before[0]["type"], "connected");
    assert_eq!(server.closes("idle"), 1, "the active client stays open");
}

#[tokio::test]
async fn server_pings_are_answered_by_clients() {
    let server = start(1, vec![], |config| {
        config.server.websocket.ping_interval_secs = 1;
    })
    .await;
    let mut client = server.connect().await;

    let ping = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Ok(Message::Ping(_))) = client.next().await {
                return;
            }
        }
    })
    .await;

    assert!(ping.is_ok(), "a server ping within two intervals");
}

async fn cpu_rule() -> Arc<Plugin> {
    let runtime = PluginRuntime::new(None).unwrap();
    let rule = declaration(
        "cpu-high",
        "alert-rule",
        "cpu-rule",
        "config = { threshold = 80.0 }",
    );
    Arc::new(runtime.load(&rule).await.unwrap())
}

#[tokio::test]
async fn fired_alert_is_pushed_to_its_subscribers() {
    let mut server = start(3, vec![cpu_rule().await], |_| {}).await;
    let token = server.token();
    let mut watcher = server
        .connect_with(&format!("token={token}&lang=en"), None)
        .await;
    let mut other = server.connect_ready().await;
    let mut everything = server
        .connect_with(&format!("token={token}&lang=ja"), None)
        .await;
    next_json(&mut watcher).await;
    next_json(&mut everything).await;
    send(
        &mut watcher,
        json!({"type": "subscribe", "data": {"vmIds": ["vm-001"]}}),
    )
    .await;
    send(
        &mut other,
        json!({"type": "subscribe", "data": {"vmIds": ["vm-002"]}}),
    )
    .await;
    send(
        &mut everything,
        json!({"type": "subscribe", "data": {"alerts": "all"}}),
    )
    .await;
    for (index, client) in [&mut watcher, &mut other, &mut everything]
        .into_iter()
        .enumerate()
    {
        until_pong(client, index as i64).await;
    }

    server.cycle(&[1, 2], 95.0).await;
    // The alert and the cycle's metrics travel on separate channels, so either may come
    // first: keep reading until both arrived.
    let mut watcher_alert = Value::Null;
    let mut watcher_metrics = Vec::new();
    while watcher_alert.is_null() || watcher_metrics.is_empty() {
        let message = next_json(&mut watcher).await;
        match message["type"].as_str() {
            Some("alert") => watcher_alert = message,
            Some("metrics") if message["data"]["vmId"] == "vm-001" => {
                watcher_metrics.push(message);
            }
            _ => {}
        }
    }
    let everything_alert = next_json(&mut everything).await;
    let other_messages = {
        metrics_for(&mut other, &ids([2])).await;
        until_pong(&mut other, 10).await
    };

    let alert = &watcher_alert["data"]["alert"];
    assert_eq!(watcher_alert["data"]["vmId"], "vm-001");
    assert_eq!(watcher_alert["data"]["vmName"], "web-001");
    assert!(alert["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(alert["metric"], "cpu");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["threshold"], 80.0);
    assert_eq!(alert["currentValue"], 95.0);
    assert!(alert["timestamp"].as_str().is_some());
    let english = alert["message"].as_str().unwrap();
    assert!(english.contains("CPU usage"), "{english}");
    assert_eq!(everything_alert["type"], "alert");
    assert_eq!(everything_alert["data"]["alert"]["id"], alert["id"]);
    let japanese = everything_alert["data"]["alert"]["message"]
        .as_str()
        .unwrap();
    assert!(japanese.contains("CPU使用率"), "{japanese}");
    assert!(
        other_messages
            .iter()
            .all(|m| m["type"] != "alert" || m["data"]["vmId"] == "vm-002"),
        "{other_messages:?}"
    );
    assert_eq!(
        watcher_metrics[0]["data"]["metrics"]["alerts"][0]["severity"], "high",
        "metrics carry the active alert"
    );
}

#[tokio::test]
async fn unsubscribe_all_resets_alert_scope() {
    let mut server = start(2, vec![cpu_rule().await], |_| {}).await;
    let mut client = server.connect_ready().await;
    send(
        &mut client,
        json!({"type": "subscribe", "data": {"alerts": "all"}}),
    )
    .await;
    send(&mut client, json!({"type": "unsubscribe"})).await;
    until_pong(&mut client, 1).await;

    server.cycle(&[0, 1], 97.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = until_pong(&mut client, 2).await;

    assert!(messages.is_empty(), "{messages:?}");
}

#[tokio::test]
async fn messages_follow_the_client_language() {
    let server = start(1, vec![], |config| {
        config.server.default_language = vmpulse::i18n::Lang::En;
    })
    .await;
    let token = server.token();
    let cases = [
        (
            format!("token={token}"),
            Some("ja-JP,en;q=0.5"),
            "不明なメッセージ種別「shout」です。subscribe、unsubscribe、ping のいずれかを指定してください",
        ),
        (
            format!("token={token}"),
            Some("zh-CN"),
            "未知的消息类型“shout”；可用类型为 subscribe、unsubscribe、ping",
        ),
        (
            format!("token={token}"),
            None,
            "Unknown message type `shout`; expected subscribe, unsubscribe or ping",
        ),
        (
            format!("token={token}&lang=ja"),
            Some("zh"),
            "不明なメッセージ種別「shout」です。subscribe、unsubscribe、ping のいずれかを指定してください",
        ),
    ];

    for (query, accept_language, expected) in cases {
        let mut client = server.connect_with(&query, accept_language).await;
        next_json(&mut client).await;
        send(&mut client, json!({"type": "shout"})).await;
        let error = next_json(&mut client).await;

        assert_eq!(error["data"]["code"], "UNKNOWN_TYPE");
        assert_eq!(error["data"]["message"], expected, "{accept_language:?}");
    }
    let mut rejected = server.connect_with("token=bad&lang=ja", None).await;
    let (code, reason, _) = next_close(&mut rejected).await;
    assert_eq!(code, 1008);
    assert_eq!(reason, "トークンが無効か期限切れ");
}

#[tokio::test]
async fn connection_limit_closes_with_1013() {
    let server = start(1, vec![], |config| {
        config.server.websocket.max_connections = 2;
    })
    .await;
    let mut first = server.connect_ready().await;
    let _second = server.connect_ready().await;

    let mut third = server.connect().await;
    let (code, _, before) = next_close(&mut third).await;
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = server.connect().await;
    let fourth_connected = next_json(&mut fourth).await;

    assert_eq!(code, 1013);
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(server.closes("connection_limit"), 1);
    assert_eq!(
        fourth_connected["type"], "connected",
        "a closed connection frees its slot"
    );
}

#[tokio::test]
async fn shutdown_closes_with_1001() {
    let server = start(1, vec![], |_| {}).await;
    let mut client = server.connect_ready().await;

    server.realtime.shutdown();
    let (code, _, _) = next_close(&mut client).await;

    assert_eq!(code, 1001);
    assert_eq!(server.closes("shutdown"), 1);
}
