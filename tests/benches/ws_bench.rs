//! Fan-out of one collection cycle over the WebSocket push channel, on 127.0.0.1.
//!
//! For each N in 500, 2,000, 5,000 and 10,000, a fresh server process serves 1,500 VMs and
//! a client process opens N connections, each subscribed to 100 VMs (client `i` takes VMs
//! `100 i` to `100 i + 99`, wrapping around at 1,500). The server then processes a cycle
//! that updated all 1,500 VMs and the bench reports:
//!
//! - fan-out time: from the return of `process_cycle` in the server to the arrival of the
//!   last client's last `metrics` message, both read from the system clock of this machine;
//! - memory per connection: the server's resident set (VmRSS) after the cycle was delivered
//!   minus the same before the clients connected, divided by N. The clients run in their
//!   own process, so their buffers do not count. Kernel socket buffers are not part of any
//!   process's resident set, so they are not counted either.
//!
//! Run with `cargo bench -p vmpulse-tests --bench ws_bench`; `-- 500 2000` picks other
//! values of N. Server and clients share the machine's cores, so the figures include the
//! clients' work of reading every frame.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use vmpulse::alerts::AlertEngine;
use vmpulse::auth::{Authenticator, Role};
use vmpulse::collection::{CycleOutput, CycleReport, now_ms};
use vmpulse::config::{AlertsConfig, AuthConfig, Config};
use vmpulse::live::{LiveState, VmOutcome};
use vmpulse::metrics::{
    CpuMetrics, DataSources, DiskMetrics, MemoryMetrics, NetworkMetrics, RealtimeMetrics,
    SystemMetrics,
};
use vmpulse::plugin::bindings::types::{Inventory, PowerState, Vm};
use vmpulse::service::Service;

const VMS: usize = 1500;
const PER_CLIENT: usize = 100;
const DEFAULT_COUNTS: [usize; 4] = [500, 2000, 5000, 10_000];

/// The maximum time of one step (connecting, subscribing, the fan-out) before the run for
/// that N is abandoned.
const STEP_LIMIT: Duration = Duration::from_secs(180);

/// Connections opened at once by the client process.
const CONNECT_CONCURRENCY: usize = 128;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    raise_fd_limit();
    if let Some(position) = args.iter().position(|arg| arg == "--server") {
        let count = args[position + 1].parse().expect("--server N");
        serve(count);
        return;
    }
    if let Some(position) = args.iter().position(|arg| arg == "--clients") {
        let count = args[position + 1].parse().expect("--clients N ADDR TOKEN");
        let addr = args[position + 2].clone();
        let token = args[position + 3].clone();
        run_clients(count, &addr, &token);
        return;
    }

    let counts: Vec<usize> = args
        .iter()
        .filter_map(|arg| arg.parse().ok())
        .collect::<Vec<_>>();
    let counts = if counts.is_empty() {
        DEFAULT_COUNTS.to_vec()
    } else {
        counts
    };
    println!(
        "WebSocket fan-out of one cycle: {VMS} VMs updated, {PER_CLIENT} VMs per connection, \
         {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>7} {:>12} {:>12} {:>14} {:>16} {:>14}",
        "N", "messages", "fan-out ms", "messages/s", "RSS/conn (KiB)", "bare (KiB)"
    );
    for count in counts {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--server", &count.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .expect("cannot start the server process");
        print!("{}", String::from_utf8_lossy(&output.stdout));
        if !output.status.success() {
            println!("{count:>7} failed: {}", output.status);
        }
    }
}

/// Raises the open-file limit to the hard limit: each connection is one descriptor.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit that getrlimit and setrlimit only read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in `raise_fd_limit`.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur
}

/// Returns the process's resident set size in KiB, from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn vm_id(index: usize) -> String {
    format!("vm-{index:04}")
}

/// Builds a record with the fields a vSphere collector and a Linux exporter fill.
fn metrics(index: usize, cycle: u32) -> RealtimeMetrics {
    let value = |offset: f64| Some(offset + index as f64 * 0.01 + f64::from(cycle));
    RealtimeMetrics {
        vm_id: vm_id(index),
        timestamp: vmpulse::metrics::Timestamp(now_ms()),
        data_sources: DataSources {
            vsphere: true,
            guest_os: true,
        },
        cpu: CpuMetrics {
            usage_mhz: value(1200.0),
            ready: value(1.0),
            wait: value(2.0),
            usage_percent: value(35.0),
            load1min: value(0.5),
            load5min: value(0.6),
            load15min: value(0.7),
            context_switches: value(15000.0),
            ..CpuMetrics::default()
        },
        memory: MemoryMetrics {
            usage_mb: value(4096.0),
            granted_mb: value(8192.0),
            active_mb: value(2048.0),
            ballooned_mb: value(0.0),
            swapped_mb: value(0.0),
            total_mb: value(8192.0),
            used_mb: value(5000.0),
            free_mb: value(3000.0),
            cached_mb: value(1500.0),
            usage_percent: value(61.0),
            ..MemoryMetrics::default()
        },
        disk: DiskMetrics {
            read_latency: value(2.0),
            write_latency: value(3.0),
            read_iops: value(150.0),
            write_iops: value(90.0),
            usage_percent: value(48.0),
            read_bytes: value(1.0e9),
            write_bytes: value(2.0e9),
            ..DiskMetrics::default()
        },
        network: NetworkMetrics {
            in_bps: value(1.0e6),
            out_bps: value(2.0e6),
            in_pps: value(900.0),
            out_pps: value(800.0),
            ..NetworkMetrics::default()
        },
        system: SystemMetrics {
            uptime: value(86400.0),
            process_total: value(210.0),
            ..SystemMetrics::default()
        },
        alerts: Vec::new(),
    }
}

fn inventory() -> Inventory {
    let vms = (0..VMS)
        .map(|index| Vm {
            id: vm_id(index),
            name: format!("app-{index:04}"),
            source_ref: Some(format!("vm-{}", 1000 + index)),
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
        })
        .collect();
    Inventory {
        datacenters: vec![],
        clusters: vec![],
        hosts: vec![],
        vms,
    }
}

async fn process_cycle(service: &Service, cycle: u32) {
    let outcomes: Vec<(String, VmOutcome)> = (0..VMS)
        .map(|index| {
            let record = Box::new(metrics(index, cycle));
            (vm_id(index), VmOutcome::Collected(record))
        })
        .collect();
    service.live.apply(&outcomes, now_ms());
    let report = CycleReport {
        source: "bench".to_owned(),
        number: u64::from(cycle),
        started_at_ms: now_ms(),
        duration_ms: 0.0,
        vms_scheduled: VMS,
        vms_collected: VMS,
        vms_failed: 0,
        batches: 1,
        batches_failed: 0,
        inventory_refreshed: false,
        inventory_error: None,
    };
    service
        .process_cycle(&CycleOutput { report, outcomes })
        .await;
}

/// Runs the server side of one N: the push channel, driving a client process.
fn serve(count: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        assert!(
            open_file_limit() > count as u64 + 100,
            "the open-file limit {} is too low for {count} connections; raise `ulimit -Hn`",
            open_file_limit()
        );
        let mut config = Config::parse("", "bench.toml".as_ref(), "/".as_ref()).unwrap();
        config.server.websocket.max_connections = count + 10;
        config.server.websocket.idle_timeout_secs = 900;
        let live = Arc::new(LiveState::default());
        live.replace_inventory("bench", inventory());
        let alerts = AlertEngine::new(vec![], AlertsConfig::default(), None).unwrap();
        let service = Service::new(
            Arc::new(config),
            live,
            None,
            Arc::new(alerts),
            vec![],
            vec![],
        );
        let auth = Arc::new(Authenticator::hs256(&[9; 32], &AuthConfig::default()).unwrap());
        process_cycle(&service, 0).await;
        let token = auth
            .mint("bench", Role::ItManager, Duration::from_secs(3600))
            .unwrap();

        let realtime = vmpulse::ws::start(service.clone(), auth);
        let app = poem::Route::new().at("/ws/v1/realtime", realtime.endpoint());
        let acceptor = poem::listener::Listener::into_acceptor(poem::listener::TcpListener::bind(
            "127.0.0.1:0",
        ))
        .await
        .unwrap();
        let addr = *poem::listener::Acceptor::local_addr(&acceptor)[0]
            .as_socket_addr()
            .unwrap();
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss_before = rss_kib();

        let mut clients = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--clients", &count.to_string(), &addr.to_string(), &token])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start the client process");
        let mut stdin = clients.stdin.take().unwrap();
        let mut lines = tokio::io::BufReader::new(clients.stdout.take().unwrap()).lines();

        expect(&mut lines, "connected").await;
        let rss_connected = rss_kib();
        stdin.write_all(b"subscribe\n").await.unwrap();
        expect(&mut lines, "subscribed").await;
        let frames_before = service.telemetry.ws_frames_sent.load(Ordering::Relaxed);
        process_cycle(&service, 1).await;
        let cycle_done = unix_nanos();
        let done = expect(&mut lines, "done").await;
        let last_message: u128 = done[1].parse().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss_after = rss_kib();
        let frames = service.telemetry.ws_frames_sent.load(Ordering::Relaxed) - frames_before;
        stdin.write_all(b"exit\n").await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(30), clients.wait()).await;

        let fan_out = Duration::from_nanos((last_message.saturating_sub(cycle_done)) as u64);
        let per_connection = (rss_after.saturating_sub(rss_before)) as f64 / count as f64;
        let bare = (rss_connected.saturating_sub(rss_before)) as f64 / count as f64;
        println!(
            "{count:>7} {frames:>12} {:>12.0} {:>14.0} {per_connection:>16.1} {bare:>14.1}",
            fan_out.as_secs_f64() * 1000.0,
            frames as f64 / fan_out.as_secs_f64(),
        );
        drop(realtime);
    });
}

/// Reads the client process's next line, which must start with `word`; returns its fields.
async fn expect(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    word: &str,
) -> Vec<String> {
    let line = tokio::time::timeout(STEP_LIMIT, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("no `{word}` from the client process within {STEP_LIMIT:?}"))
        .unwrap()
        .unwrap_or_else(|| panic!("the client process ended before `{word}`"));
    let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    assert_eq!(fields.first().map(String::as_str), Some(word), "{line}");
    fields
}

/// Runs the client side of one N: `count` connections, driven by lines on stdin.
fn run_clients(count: usize, addr: &str, token: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let url = format!("ws://{addr}/ws/v1/realtime?token={token}");
        let (go, go_signal) = watch::channel(false);
        let subscribed = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let latest = Arc::new(std::sync::Mutex::new(0u128));

        let connections: Vec<_> = futures::stream::iter(0..count)
            .map(|index| {
                let url = url.clone();
                async move {
                    let mut config = WebSocketConfig::default();
                    config.read_buffer_size = 8 * 1024;
                    let (mut socket, _) =
                        tokio_tungstenite::connect_async_with_config(url, Some(config), false)
                            .await
                            .unwrap_or_else(|err| panic!("client {index} cannot connect: {err}"));
                    let connected = socket.next().await.unwrap().unwrap();
                    assert!(connected.is_text(), "{connected:?}");
                    (index, socket)
                }
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;
        println!("connected");

        let mut tasks = Vec::with_capacity(count);
        for (index, mut socket) in connections {
            let mut go_signal = go_signal.clone();
            let subscribed = subscribed.clone();
            let finished = finished.clone();
            let latest = latest.clone();
            tasks.push(tokio::spawn(async move {
                go_signal.wait_for(|go| *go).await.unwrap();
                let first = index * PER_CLIENT;
                let vm_ids: Vec<String> =
                    (0..PER_CLIENT).map(|k| vm_id((first + k) % VMS)).collect();
                let subscribe = serde_json::json!({"type": "subscribe", "data": {"vmIds": vm_ids}});
                socket
                    .send(Message::text(subscribe.to_string()))
                    .await
                    .unwrap();
                read_metrics(&mut socket, PER_CLIENT).await;
                subscribed.fetch_add(1, Ordering::AcqRel);
                read_metrics(&mut socket, PER_CLIENT).await;
                let arrived = unix_nanos();
                {
                    let mut latest = latest.lock().unwrap();
                    *latest = (*latest).max(arrived);
                }
                finished.fetch_add(1, Ordering::AcqRel);
                // Keep the connection open until the server side has measured.
                let _ = socket.next().await;
            }));
        }

        let mut commands = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let command = commands.next_line().await.unwrap();
        assert_eq!(command.as_deref(), Some("subscribe"));
        go.send(true).unwrap();
        wait_until(&subscribed, count).await;
        println!("subscribed");
        wait_until(&finished, count).await;
        println!("done {}", *latest.lock().unwrap());
        let _ = commands.next_line().await;
        for task in tasks {
            task.abort();
        }
    });
}

/// Reads until `expected` text messages arrived; reading also sends the pong replies.
async fn read_metrics<S>(socket: &mut S, expected: usize)
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut received = 0;
    while received < expected {
        match socket.next().await {
            Some(Ok(Message::Text(_))) => received += 1,
            Some(Ok(_)) => {}
            other => panic!("the connection ended after {received} messages: {other:?}"),
        }
    }
}

async fn wait_until(counter: &AtomicUsize, target: usize) {
    let deadline = Instant::now() + STEP_LIMIT;
    while counter.load(Ordering::Acquire) < target {
        assert!(
            Instant::now() < deadline,
            "only {} of {target} clients finished the step within {STEP_LIMIT:?}",
            counter.load(Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
