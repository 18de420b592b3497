//! Benchmark of the REST API under load. An in-process server holds 1,500 synthetic VMs.
//! A background task replaces their metrics every second and recomputes the aggregates, as
//! collection would. A load generator on loopback sends a fixed request rate mixed over the
//! real-time endpoints.
//!
//! Run with `cargo bench -p vmpulse-tests --bench api_bench [-- RATE SECONDS]` (defaults:
//! 2,000 requests/s for 10 s). It prints the P50, P99 and maximum latency per endpoint,
//! measured by the client from sending a request to reading the whole response over a
//! kept-alive connection. Requests are sent on a fixed schedule; a connection still waiting
//! for its previous response sends late, and the count of late sends is printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use vmpulse::alerts::AlertEngine;
use vmpulse::api::server::ApiServer;
use vmpulse::auth::{Authenticator, Role};
use vmpulse::collection::now_ms;
use vmpulse::config::Config;
use vmpulse::live::LiveState;
use vmpulse::service::Service;
use vmpulse_tests::api_client::{ApiClient, RequestBody};
use vmpulse_tests::api_estate::{self, cluster_of, host_of, vm_id};

const VMS: usize = 1500;
/// Kept-alive connections the load is spread over.
const CONNECTIONS: usize = 64;
const SECRET: &[u8] = b"vmpulse-api-bench-hs256-secret-0123456789";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[server.rate_limit]
requests_per_second = 1000000
burst = 1000000

[auth]
hs256_secret_env = "VMPULSE_API_BENCH_SECRET_UNUSED"

[[groups]]
id = "grp_web"
name = "Web servers"
name_patterns = ["web-*"]
"#;

/// One endpoint of the mix, with its share of the requests in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Vm,
    Batch,
    Group,
    Cluster,
    Host,
    Overview,
}

const MIX: &[(Endpoint, u32)] = &[
    (Endpoint::Vm, 50),
    (Endpoint::Batch, 10),
    (Endpoint::Group, 10),
    (Endpoint::Cluster, 10),
    (Endpoint::Host, 5),
    (Endpoint::Overview, 15),
];

fn pick(slot: u64) -> Endpoint {
    let position = (slot.wrapping_mul(2_654_435_761) % 100) as u32;
    let mut total = 0;
    for (endpoint, share) in MIX {
        total += share;
        if position < total {
            return *endpoint;
        }
    }
    Endpoint::Overview
}

fn request(endpoint: Endpoint, slot: u64) -> (Method, String, Option<Vec<u8>>) {
    let index = (slot as usize * 7919) % VMS;
    match endpoint {
        Endpoint::Vm => (
            Method::GET,
            format!("/api/v1/realtime/vms/{}", vm_id(index)),
            None,
        ),
        Endpoint::Batch => {
            let ids: Vec<String> = (0..20).map(|i| vm_id((index + i * 37) % VMS)).collect();
            let body = serde_json::json!({ "vmIds": ids, "metrics": ["cpu", "memory"] });
            (
                Method::POST,
                "/api/v1/realtime/vms/batch".to_owned(),
                Some(body.to_string().into_bytes()),
            )
        }
        Endpoint::Group => (
            Method::GET,
            "/api/v1/realtime/groups/grp_web".to_owned(),
            None,
        ),
        Endpoint::Cluster => (
            Method::GET,
            format!("/api/v1/realtime/clusters/{}", cluster_of(index)),
            None,
        ),
        Endpoint::Host => (
            Method::GET,
            format!("/api/v1/realtime/hosts/{}", host_of(index)),
            None,
        ),
        Endpoint::Overview => (Method::GET, "/api/v1/realtime/overview".to_owned(), None),
    }
}

async fn start_service() -> (Arc<Service>, Arc<Authenticator>) {
    let config = Config::parse(CONFIG, Path::new("bench.toml"), Path::new(".")).unwrap();
    let auth = Arc::new(Authenticator::hs256(SECRET, config.auth.as_ref().unwrap()).unwrap());
    let live = Arc::new(LiveState::default());
    api_estate::fill(&live, VMS, now_ms());
    let engine = AlertEngine::new(vec![], config.alerts.clone(), None).unwrap();
    let service = Service::new(
        Arc::new(config),
        live,
        None,
        Arc::new(engine),
        vec![],
        vec![],
    );
    service.refresh_views();
    (service, auth)
}

/// Replaces every VM's metrics and recomputes the aggregates once a second.
async fn simulate_collection(service: Arc<Service>, until: Instant) -> (u64, Duration) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut rounds = 0;
    let mut busiest = Duration::ZERO;
    while Instant::now() < until {
        ticker.tick().await;
        rounds += 1;
        let started = Instant::now();
        api_estate::replace_metrics(&service.live, VMS, rounds, now_ms());
        service.refresh_views();
        busiest = busiest.max(started.elapsed());
    }
    (rounds, busiest)
}

struct Sample {
    endpoint: Endpoint,
    latency: Duration,
    late: bool,
}

async fn drive(
    client: ApiClient,
    token: String,
    worker: usize,
    rate: f64,
    start: Instant,
    end: Instant,
) -> Vec<Sample> {
    let mut connection = client.connect().await.expect("connect");
    let authorization = format!("Bearer {token}");
    let mut samples = Vec::new();
    let mut slot = worker as u64;
    loop {
        let due = start + Duration::from_secs_f64(slot as f64 / rate);
        if due >= end {
            return samples;
        }
        let now = Instant::now();
        let late = now > due + Duration::from_millis(1);
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let endpoint = pick(slot);
        let (method, path, body) = request(endpoint, slot);
        let mut headers = vec![("authorization", authorization.as_str())];
        let body = match body {
            Some(bytes) => {
                headers.push(("content-type", "application/json"));
                RequestBody::Bytes(bytes)
            }
            None => RequestBody::Empty,
        };
        let sent = Instant::now();
        let response = connection.send(method, &path, &headers, body).await;
        let latency = sent.elapsed();
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{path}: {}",
            response.text()
        );
        samples.push(Sample {
            endpoint,
            latency,
            late,
        });
        slot += CONNECTIONS as u64;
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn ms(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let rate: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000.0);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    let (service, auth) = start_service().await;
    let server = ApiServer::bind(&service.config.server).await.unwrap();
    let client = ApiClient::plain(server.local_addr());
    let routes = vmpulse::api::routes(service.clone(), auth.clone());
    tokio::spawn(server.run(routes, std::future::pending()));

    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs(seconds);
    let collection = tokio::spawn(simulate_collection(service.clone(), end));
    let mut workers = Vec::new();
    for worker in 0..CONNECTIONS {
        let role = Role::ALL[worker % Role::ALL.len()];
        let token = auth
            .mint(&format!("bench-{worker}"), role, Duration::from_secs(3600))
            .unwrap();
        workers.push(tokio::spawn(drive(
            client.clone(),
            token,
            worker,
            rate,
            start,
            end,
        )));
    }
    let mut by_endpoint: BTreeMap<Endpoint, Vec<Duration>> = BTreeMap::new();
    let mut late = 0;
    let mut total = 0;
    for worker in workers {
        for sample in worker.await.unwrap() {
            total += 1;
            late += usize::from(sample.late);
            by_endpoint
                .entry(sample.endpoint)
                .or_default()
                .push(sample.latency);
        }
    }
    let (rounds, busiest) = collection.await.unwrap();

    println!(
        "{VMS} VMs, {rate} requests/s for {seconds} s over {CONNECTIONS} connections: \
         {total} requests ({:.0}/s), {late} sent late",
        total as f64 / seconds as f64
    );
    println!(
        "metrics replaced {rounds} times; the slowest replacement with aggregation took {} ms",
        ms(busiest)
    );
    println!(
        "{:<10} {:>8} {:>10} {:>10} {:>10}",
        "endpoint", "requests", "p50 ms", "p99 ms", "max ms"
    );
    for (endpoint, mut latencies) in by_endpoint {
        latencies.sort();
        println!(
            "{:<10} {:>8} {:>10} {:>10} {:>10}",
            format!("{endpoint:?}"),
            latencies.len(),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().unwrap()),
        );
    }
}
