//! The REST API against a real server on 127.0.0.1: every endpoint and error code, each role
//! against each action, token failures, message languages, body and rate limits, HTTPS, and
//! the checked-in OpenAPI document.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

use vmpulse::alerts::{Alert, AlertEngine, AlertMetric, Direction, Severity};
use vmpulse::api::server::ApiServer;
use vmpulse::auth::{Authenticator, Role};
use vmpulse::collection::{CycleReport, LoopStats, now_ms};
use vmpulse::config::{Config, StorageConfig};
use vmpulse::i18n::Lang;
use vmpulse::live::{LiveState, VmOutcome};
use vmpulse::metrics::{MetricAlert, RealtimeMetrics, Timestamp};
use vmpulse::persist::open_store;
use vmpulse::service::Service;
use vmpulse::views::Scope;
use vmpulse_tests::api_client::{ApiClient, ApiResponse, RequestBody};
use vmpulse_tests::api_estate::{self, vm_id};

const SECRET: &[u8] = b"vmpulse-api-tests-hs256-secret-0123456789";
const VMS: usize = 120;
/// The VM with an active alert and stored history.
const ALERTED_VM: &str = "vm-0002";
const ACTIVE_ALERT: &str = "alt-active-1";
const RESOLVED_ALERT: &str = "alt-resolved-1";

/// What a test server holds.
struct Setup {
    vms: usize,
    /// Whether a collection loop reports a success just now.
    collecting: bool,
    store: bool,
    default_language: &'static str,
    requests_per_second: f64,
    burst: u32,
    max_body_bytes: usize,
    metrics_require_token: bool,
    tls: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            vms: VMS,
            collecting: true,
            store: true,
            default_language: "zh",
            requests_per_second: 1000.0,
            burst: 1000,
            max_body_bytes: 4096,
            metrics_require_token: true,
            tls: false,
        }
    }
}

/// A running API server; it stops when dropped.
struct Harness {
    client: ApiClient,
    service: Arc<Service>,
    auth: Arc<Authenticator>,
    trigger: Arc<Notify>,
    _folder: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Harness {
    fn token(&self, role: Role) -> String {
        self.token_for(role.name(), role)
    }

    fn token_for(&self, subject: &str, role: Role) -> String {
        self.auth
            .mint(subject, role, Duration::from_secs(3600))
            .unwrap()
    }

    async fn get(&self, path: &str) -> ApiResponse {
        self.client
            .get(path, Some(&self.token(Role::ItManager)))
            .await
    }

    async fn get_lang(&self, path: &str, language: &str) -> ApiResponse {
        let authorization = format!("Bearer {}", self.token(Role::ItManager));
        let headers = [
            ("authorization", authorization.as_str()),
            ("accept-language", language),
        ];
        self.client
            .send(Method::GET, path, &headers, RequestBody::Empty)
            .await
    }

    async fn post_json(&self, path: &str, role: Role, body: &str) -> ApiResponse {
        let authorization = format!("Bearer {}", self.token(role));
        let headers = [
            ("authorization", authorization.as_str()),
            ("content-type", "application/json"),
        ];
        let body = RequestBody::Bytes(body.as_bytes().to_vec());
        self.client.send(Method::POST, path, &headers, body).await
    }

    async fn post_empty(&self, path: &str, role: Role) -> ApiResponse {
        let authorization = format!("Bearer {}", self.token(role));
        self.client
            .send(
                Method::POST,
                path,
                &[("authorization", authorization.as_str())],
                RequestBody::Empty,
            )
            .await
    }

    fn record(&self, id: &str) -> RealtimeMetrics {
        self.service
            .live
            .read(|data| data.vms[id].metrics.clone().unwrap())
    }
}

fn config_text(setup: &Setup) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
default_language = "{}"
max_body_bytes = {}
metrics_require_token = {}

[server.rate_limit]
requests_per_second = {}
burst = {}

[auth]
hs256_secret_env = "VMPULSE_API_TEST_SECRET_UNUSED"
issuer = "vmpulse-tests"
audience = "vmpulse-api-tests"

[[groups]]
id = "grp_web"
name = "Web servers"
name_patterns = ["web-*"]

[[groups]]
id = "grp_empty"
name = "No VMs"
vm_ids = ["vm-none"]
"#,
        setup.default_language,
        setup.max_body_bytes,
        setup.metrics_require_token,
        setup.requests_per_second,
        setup.burst,
    )
}

fn alert(id: &str, vm: &str, resolved: bool, changed_at_ms: i64) -> Alert {
    Alert {
        id: id.to_owned(),
        vm_id: vm.to_owned(),
        vm_name: "web-0002".to_owned(),
        plugin: "cpu-rule".to_owned(),
        rule: "cpu.usagePercent".to_owned(),
        metric: AlertMetric::Cpu,
        severity: Severity::High,
        threshold: 80.0,
        current_value: 93.5,
        direction: Direction::Above,
        rule_message: "CPU usage 93.5 % is above 80 %".to_owned(),
        fired_at_ms: changed_at_ms - 60_000,
        changed_at_ms,
        resolved_at_ms: resolved.then_some(changed_at_ms + 1000),
        acknowledged_by: None,
        acknowledged_at_ms: None,
    }
}

/// Writes history for the alerted VM (one sample a minute over the last 30 minutes) and two
/// alerts, one active and one resolved.
fn seed_store(store: &vmpulse_store::Store, now: i64) {
    let fields = store.schema().len();
    let cpu = store
        .schema()
        .iter()
        .position(|f| f == "cpu.usagePercent")
        .unwrap();
    for minute in 0..30 {
        let mut values = vec![None; fields];
        values[cpu] = Some(minute as f64);
        let at = (now - (30 - minute) * 60_000) as u64;
        let rows = [vmpulse_store::SampleRow {
            vm_id: ALERTED_VM,
            values: &values,
        }];
        store.write_cycle(at, &rows, &[]).unwrap();
    }
    for (record, active) in [
        (alert(ACTIVE_ALERT, ALERTED_VM, false, now - 5_000), true),
        (alert(RESOLVED_ALERT, ALERTED_VM, true, now - 50_000), false),
    ] {
        let bytes = serde_json::to_vec(&record).unwrap();
        store.put_alert(&record.id, active, &bytes).unwrap();
    }
}

fn loop_stats(now: i64) -> LoopStats {
    LoopStats {
        cycles: 4,
        skipped_ticks: 0,
        last_cycle: Some(CycleReport {
            source: api_estate::SOURCE.to_owned(),
            number: 4,
            started_at_ms: now - 2_000,
            duration_ms: 1_250.0,
            vms_scheduled: VMS,
            vms_collected: VMS - 1,
            vms_failed: 1,
            batches: 3,
            batches_failed: 0,
            inventory_refreshed: false,
            inventory_error: None,
        }),
        last_success_ms: Some(now - 1_000),
    }
}

async fn start(setup: Setup) -> Harness {
    let folder = tempfile::tempdir().unwrap();
    let config = Config::parse(&config_text(&setup), Path::new("api.toml"), folder.path())
        .expect("the test config is valid");
    let auth = Arc::new(Authenticator::hs256(SECRET, config.auth.as_ref().unwrap()).unwrap());
    let now = now_ms();

    let store = setup.store.then(|| {
        let storage = StorageConfig {
            path: folder.path().join("vmpulse.redb"),
            retention_days: 7.0,
        };
        let store = open_store(&storage).unwrap();
        seed_store(&store, now);
        Arc::new(store)
    });
    let live = Arc::new(LiveState::default());
    if setup.vms > 0 {
        api_estate::fill(&live, setup.vms, now);
    }
    let engine = AlertEngine::new(vec![], config.alerts.clone(), store.clone()).unwrap();
    let server_config = config.server.clone();
    let service = Service::new(
        Arc::new(config),
        live,
        store,
        Arc::new(engine),
        vec![],
        vec![],
    );
    let trigger = Arc::new(Notify::new());
    if setup.collecting {
        service.loops.lock().unwrap().push((
            api_estate::SOURCE.to_owned(),
            Arc::new(Mutex::new(loop_stats(now))),
        ));
        service.triggers.lock().unwrap().push(trigger.clone());
    }
    service.refresh_views();

    let mut server_config = server_config;
    let mut tls_client = None;
    if setup.tls {
        let (cert_pem, key_pem) = self_signed_pem();
        std::fs::write(folder.path().join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(folder.path().join("key.pem"), &key_pem).unwrap();
        server_config.tls = Some(vmpulse::config::ServerTls {
            cert_file: folder.path().join("cert.pem"),
            key_file: folder.path().join("key.pem"),
        });
        tls_client = Some(client_trusting(&cert_pem));
    }
    let server = ApiServer::bind(&server_config).await.unwrap();
    let addr = server.local_addr();
    let routes = vmpulse::api::routes(service.clone(), auth.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(routes, async move {
        let _ = stopped.await;
    }));
    Harness {
        client: ApiClient {
            addr,
            tls: tls_client,
        },
        service,
        auth,
        trigger,
        _folder: folder,
        _stop: stop,
    }
}

fn self_signed_pem() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

fn client_trusting(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// Returns the serde JSON of `value` as the tests read it from a response body: written to
/// text and parsed back, because serde_json's default float parsing may differ from the
/// in-memory value in the last bit.
fn as_read<T: serde::Serialize>(value: T) -> Result<Value, serde_json::Error> {
    serde_json::from_str(&serde_json::to_string(&value)?)
}

/// Checks an error envelope: status, `code`, `error`, and that `message` contains `detail`.
fn assert_error(response: &ApiResponse, status: u16, error: &str, detail: &str) {
    assert_eq!(response.status.as_u16(), status, "{}", response.text());
    let body = response.json();
    assert_eq!(body["code"], status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["data"].is_null(), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(detail), "{message:?} lacks {detail:?}");
}

fn assert_ok_envelope(response: &ApiResponse, message: &str) -> Value {
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(body["code"], 200, "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert!(body.get("error").is_none(), "{body}");
    body["data"].clone()
}

// --- real-time records ---------------------------------------------------------------

#[tokio::test]
async fn vm_record_equals_its_serde_json() {
    let harness = start(Setup::default()).await;

    let response = harness.get("/api/v1/realtime/vms/vm-0001").await;

    let data = assert_ok_envelope(&response, "获取成功");
    let expected = as_read(harness.record("vm-0001")).unwrap();
    assert_eq!(data, expected);
    assert_eq!(data["cpu"]["usageMHz"], expected["cpu"]["usageMHz"]);
    let timestamp = data["timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with('Z'), "{timestamp}");
    assert_eq!(
        timestamp.len(),
        "2026-12-04T16:28:08.123Z".len(),
        "{timestamp}"
    );
}

#[tokio::test]
async fn sparse_record_omits_unknown_metrics() {
    let harness = start(Setup::default()).await;
    let mut sparse = RealtimeMetrics {
        vm_id: vm_id(3),
        timestamp: Timestamp(now_ms()),
        ..RealtimeMetrics::default()
    };
    sparse.data_sources.vsphere = true;
    sparse.cpu.usage_mhz = Some(0.0);
    sparse.memory.usage_percent = Some(41.5);
    harness.service.live.apply(
        &[(vm_id(3), VmOutcome::Collected(Box::new(sparse.clone())))],
        now_ms(),
    );

    let response = harness.get("/api/v1/realtime/vms/vm-0003").await;

    let data = assert_ok_envelope(&response, "获取成功");
    assert_eq!(data, as_read(&sparse).unwrap());
    assert_eq!(
        data["cpu"],
        json!({ "usageMHz": 0.0 }),
        "a measured 0 stays"
    );
    assert_eq!(data["disk"], json!({}), "unknown metrics are absent");
    assert!(data.get("alerts").is_none(), "no alerts, no field");
}

#[tokio::test]
async fn vm_record_lists_active_alerts_localized() {
    let harness = start(Setup::default()).await;

    let response = harness
        .get_lang(&format!("/api/v1/realtime/vms/{ALERTED_VM}"), "en")
        .await;

    let data = assert_ok_envelope(&response, "Fetched successfully");
    let mut expected = harness.record(ALERTED_VM);
    expected.alerts = harness
        .service
        .alerts
        .active_for_vm(ALERTED_VM)
        .iter()
        .map(|alert| MetricAlert::new(alert, Lang::En))
        .collect();
    assert_eq!(expected.alerts.len(), 1);
    assert_eq!(data, as_read(&expected).unwrap());
    assert_eq!(data["alerts"][0]["severity"], "high");
}

#[tokio::test]
async fn unknown_vm_is_404() {
    let harness = start(Setup::default()).await;

    let response = harness.get("/api/v1/realtime/vms/vm-9999").await;

    assert_error(&response, 404, "404", "VM不存在");
    assert!(response.text().contains("vm-9999"));
}

#[tokio::test]
async fn vm_list_filters_and_pages() {
    let harness = start(Setup::default()).await;

    let all = harness.get("/api/v1/realtime/vms?limit=2").await;
    let data = assert_ok_envelope(&all, "获取成功");
    assert_eq!(data["total"], VMS as u64);
    let items = data["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    // Ordered by name: db-0001 before db-0003.
    assert_eq!(items[0]["name"], "db-0001");
    assert_eq!(items[1]["name"], "db-0003");
    assert_eq!(items[0]["id"], "vm-0001");
    assert_eq!(items[0]["status"], "online");
    assert_eq!(items[0]["powerState"], "poweredOn");
    assert_eq!(items[0]["vcpus"], 4);
    assert_eq!(items[0]["memoryMB"], 8192);
    assert_eq!(items[0]["clusterId"], api_estate::cluster_of(1));

    let web = harness
        .get("/api/v1/realtime/vms?name=web-*&offset=1&limit=1")
        .await;
    let data = assert_ok_envelope(&web, "获取成功");
    assert_eq!(data["total"], VMS.div_ceil(2) as u64);
    assert_eq!(data["items"][0]["name"], "web-0002");
    assert_eq!(
        data["items"][0]["status"], "warning",
        "web-0002 has a high alert"
    );

    let cluster = api_estate::cluster_of(0);
    let in_cluster = harness
        .get(&format!(
            "/api/v1/realtime/vms?cluster={cluster}&limit=5000"
        ))
        .await;
    let data = assert_ok_envelope(&in_cluster, "获取成功");
    let expected = (0..VMS)
        .filter(|i| api_estate::cluster_of(*i) == cluster)
        .count();
    assert_eq!(data["total"], expected as u64);

    let bad = harness.get("/api/v1/realtime/vms?limit=0").await;
    assert_error(&bad, 400, "400", "limit");
}

#[tokio::test]
async fn global_aggregate_counts_every_vm() {
    let harness = start(Setup::default()).await;

    let response = harness.get("/api/v1/realtime/global").await;

    let data = assert_ok_envelope(&response, "获取成功");
    assert_eq!(data["scope"], "global");
    assert_eq!(data["vmCount"]["total"], VMS as u64);
}

#[tokio::test]
async fn vm_not_collected_yet_is_503() {
    let harness = start(Setup::default()).await;
    let mut inventory = api_estate::inventory(1);
    inventory.vms[0].id = "vm-new".to_owned();
    inventory.datacenters.clear();
    inventory.clusters.clear();
    inventory.hosts.clear();
    harness.service.live.replace_inventory("other", inventory);

    let response = harness.get("/api/v1/realtime/vms/vm-new").await;

    assert_error(&response, 503, "503", "vm-new");
    assert_eq!(response.header("retry-after"), Some("30"));
}

#[tokio::test]
async fn powered_off_vm_without_metrics_has_no_retry() {
    let harness = start(Setup::default()).await;
    let mut inventory = api_estate::inventory(1);
    inventory.vms[0].id = "vm-off".to_owned();
    inventory.vms[0].power_state = vmpulse::plugin::bindings::types::PowerState::PoweredOff;
    inventory.datacenters.clear();
    inventory.clusters.clear();
    inventory.hosts.clear();
    harness.service.live.replace_inventory("other", inventory);

    let response = harness.get("/api/v1/realtime/vms/vm-off").await;

    assert_error(&response, 503, "503", "not powered on");
    assert_eq!(response.header("retry-after"), None);
}

#[tokio::test]
async fn batch_returns_found_and_missing() {
    let harness = start(Setup::default()).await;
    let body = r#"{"vmIds": ["vm-0001", "vm-9999", "vm-0002", "vm-0001"], "metrics": ["cpu"]}"#;

    let response = harness
        .post_json("/api/v1/realtime/vms/batch", Role::SecurityEngineer, body)
        .await;

    let data = assert_ok_envelope(&response, "获取成功");
    let metrics = data["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2, "repeated IDs are answered once");
    assert_eq!(metrics[0]["vmId"], "vm-0001");
    assert_eq!(metrics[1]["vmId"], "vm-0002");
    assert_eq!(data["notFound"], json!(["vm-9999"]));
    assert_eq!(data["pending"], json!([]));
    let mut expected = harness.record("vm-0001");
    expected.retain_groups(&["cpu"]);
    assert_eq!(metrics[0], as_read(&expected).unwrap());
    assert_eq!(metrics[0]["memory"], json!({}));
    assert_eq!(metrics[1]["alerts"][0]["metric"], "cpu", "cpu alerts stay");
}

#[tokio::test]
async fn batch_without_cpu_drops_cpu_alerts() {
    let harness = start(Setup::default()).await;
    let body = format!(r#"{{"vmIds": ["{ALERTED_VM}"], "metrics": ["memory", "disk"]}}"#);

    let response = harness
        .post_json("/api/v1/realtime/vms/batch", Role::Admin, &body)
        .await;

    let data = assert_ok_envelope(&response, "获取成功");
    let record = &data["metrics"][0];
    assert!(record.get("alerts").is_none(), "{record}");
    assert_eq!(record["cpu"], json!({}));
    assert!(record["memory"]["usagePercent"].is_number());
}

#[tokio::test]
async fn batch_bad_bodies_are_400_naming_the_field() {
    let harness = start(Setup::default()).await;
    let too_many: Vec<String> = (0..101).map(vm_id).collect();
    let cases = [
        ("{\"vmIds\": [", "body"),
        ("[\"vm-0001\"]", "body"),
        ("{\"vmIds\": \"vm-0001\"}", "vmIds"),
        ("{\"vmIds\": [\"vm-0001\", 7]}", "vmIds[1]"),
        ("{\"metrics\": [\"cpu\"]}", "vmIds"),
        (&json!({ "vmIds": too_many }).to_string(), "vmIds"),
        (
            "{\"vmIds\": [], \"metrics\": [\"cpu\", \"gpu\"]}",
            "metrics[1]",
        ),
        ("{\"vmIds\": [], \"metrics\": \"cpu\"}", "metrics"),
    ];

    for (body, field) in cases {
        let response = harness
            .post_json("/api/v1/realtime/vms/batch", Role::Admin, body)
            .await;
        assert_error(&response, 400, "400", "请求参数错误");
        assert_eq!(response.json()["field"], field, "body {body}");
        assert!(response.text().contains(field), "the message names {field}");
    }
}

#[tokio::test]
async fn batch_unknown_group_message_names_group() {
    let harness = start(Setup::default()).await;

    let response = harness
        .post_json(
            "/api/v1/realtime/vms/batch",
            Role::Admin,
            r#"{"vmIds": ["vm-0001"], "metrics": ["gpu"]}"#,
        )
        .await;

    assert_error(&response, 400, "400", "`gpu`");
}

#[tokio::test]
async fn batch_over_100_ids_is_400() {
    let harness = start(Setup::default()).await;
    let ids: Vec<String> = (0..101).map(vm_id).collect();

    let response = harness
        .post_json(
            "/api/v1/realtime/vms/batch",
            Role::Admin,
            &json!({ "vmIds": ids }).to_string(),
        )
        .await;

    assert_error(&response, 400, "400", "at most 100");
}

#[tokio::test]
async fn batch_wrong_content_type_is_415() {
    let harness = start(Setup::default()).await;
    let authorization = format!("Bearer {}", harness.token(Role::Admin));
    let headers = [
        ("authorization", authorization.as_str()),
        ("content-type", "text/plain"),
    ];

    let response = harness
        .client
        .send(
            Method::POST,
            "/api/v1/realtime/vms/batch",
            &headers,
            RequestBody::Bytes(br#"{"vmIds": []}"#.to_vec()),
        )
        .await;

    assert_error(&response, 415, "415", "application/json");
}

// --- aggregates and overview -----------------------------------------------------------

#[tokio::test]
async fn aggregates_equal_their_serde_json() {
    let harness = start(Setup::default()).await;
    let views = harness.service.views.current();
    let cases = [
        ("groups/grp_web", Scope::Group, "grp_web"),
        ("groups/grp_empty", Scope::Group, "grp_empty"),
        ("clusters/cl-0", Scope::Cluster, "cl-0"),
        ("hosts/host-1", Scope::Host, "host-1"),
        ("datacenters/dc-1", Scope::Datacenter, "dc-1"),
    ];

    for (path, scope, id) in cases {
        let response = harness.get(&format!("/api/v1/realtime/{path}")).await;
        let data = assert_ok_envelope(&response, "获取成功");
        let expected = as_read(views.aggregate(scope, id).unwrap()).unwrap();
        assert_eq!(data, expected, "{path}");
    }
}

#[tokio::test]
async fn group_aggregate_counts_members() {
    let harness = start(Setup::default()).await;

    let response = harness.get("/api/v1/realtime/groups/grp_web").await;

    let data = assert_ok_envelope(&response, "获取成功");
    assert_eq!(data["scope"], "group");
    assert_eq!(data["scopeName"], "Web servers");
    assert_eq!(data["vmCount"]["total"], VMS / 2, "even VMs are web-*");
    let empty = harness.get("/api/v1/realtime/groups/grp_empty").await;
    let empty = assert_ok_envelope(&empty, "获取成功");
    assert!(
        empty["cpu"].get("avgUsagePercent").is_none(),
        "no VM, no average: {empty}"
    );
}

#[tokio::test]
async fn unknown_scopes_have_their_404_codes() {
    let harness = start(Setup::default()).await;
    let cases = [
        ("groups", "404-GROUP", "分组不存在"),
        ("clusters", "404-CLUSTER", "集群不存在"),
        ("hosts", "404-HOST", "主机不存在"),
        ("datacenters", "404-DATACENTER", "数据中心不存在"),
    ];

    for (kind, code, title) in cases {
        let response = harness.get(&format!("/api/v1/realtime/{kind}/nope")).await;
        assert_error(&response, 404, code, title);
    }
}

#[tokio::test]
async fn group_not_found_in_three_languages() {
    let harness = start(Setup::default()).await;
    let cases = [
        ("zh-CN", "分组不存在"),
        ("en-US,en;q=0.9", "Group Not Found"),
        ("ja", "グループが見つかりません"),
    ];

    for (language, title) in cases {
        let response = harness
            .get_lang("/api/v1/realtime/groups/nope", language)
            .await;
        assert_error(&response, 404, "404-GROUP", title);
    }
}

#[tokio::test]
async fn overview_equals_its_serde_json() {
    let harness = start(Setup::default()).await;

    let response = harness.get_lang("/api/v1/realtime/overview", "ja").await;

    let data = assert_ok_envelope(&response, "取得に成功しました");
    let expected = harness.service.views.current().overview(Lang::Ja);
    assert_eq!(data, as_read(&expected).unwrap());
    assert_eq!(data["vmStatus"]["total"], VMS);
    assert_eq!(data["recentAlerts"].as_array().unwrap().len(), 2);
}

// --- languages -------------------------------------------------------------------------

#[tokio::test]
async fn success_message_follows_accept_language() {
    let harness = start(Setup::default()).await;
    let cases = [
        ("zh", "获取成功"),
        ("en", "Fetched successfully"),
        ("ja-JP", "取得に成功しました"),
        ("fr-FR", "获取成功"),
        ("en;q=0.2, ja;q=0.9", "取得に成功しました"),
    ];

    for (language, message) in cases {
        let response = harness
            .get_lang("/api/v1/realtime/overview", language)
            .await;
        assert_ok_envelope(&response, message);
    }
}

#[tokio::test]
async fn configured_default_language_applies() {
    let harness = start(Setup {
        default_language: "en",
        ..Setup::default()
    })
    .await;

    let ok = harness.get("/api/v1/realtime/overview").await;
    let missing = harness.get("/api/v1/realtime/vms/vm-9999").await;

    assert_ok_envelope(&ok, "Fetched successfully");
    assert_error(&missing, 404, "404", "VM Not Found");
}

#[tokio::test]
async fn error_titles_in_every_language() {
    let harness = start(Setup::default()).await;
    let expired = expired_token();
    let cases: [(&str, [&str; 3]); 2] = [
        (
            "/api/v1/realtime/vms/vm-9999",
            ["VM不存在", "VM Not Found", "VMが見つかりません"],
        ),
        (
            "/api/v1/realtime/clusters/x",
            [
                "集群不存在",
                "Cluster Not Found",
                "クラスタが見つかりません",
            ],
        ),
    ];
    for (path, titles) in cases {
        for (language, title) in ["zh", "en", "ja"].into_iter().zip(titles) {
            let response = harness.get_lang(path, language).await;
            assert!(
                response.text().contains(title),
                "{language}: {}",
                response.text()
            );
        }
    }
    for (language, title) in [("zh", "未授权"), ("en", "Unauthorized"), ("ja", "未認証")] {
        let authorization = format!("Bearer {expired}");
        let headers = [
            ("authorization", authorization.as_str()),
            ("accept-language", language),
        ];
        let response = harness
            .client
            .send(
                Method::GET,
                "/api/v1/realtime/overview",
                &headers,
                RequestBody::Empty,
            )
            .await;
        assert_error(&response, 401, "401", title);
    }
}

// --- history ---------------------------------------------------------------------------

#[tokio::test]
async fn history_returns_stored_samples() {
    let harness = start(Setup::default()).await;

    let response = harness
        .get(&format!(
            "/api/v1/realtime/vms/{ALERTED_VM}/history?metrics=cpu.usagePercent,memory.usagePercent"
        ))
        .await;

    let data = assert_ok_envelope(&response, "获取成功");
    let points = data["points"].as_array().unwrap();
    assert_eq!(points.len(), 30, "one sample a minute for 30 minutes");
    assert_eq!(points[0]["values"]["cpu.usagePercent"], 0.0);
    assert_eq!(points[29]["values"]["cpu.usagePercent"], 29.0);
    assert!(
        points[0]["values"].get("memory.usagePercent").is_none(),
        "never stored, so absent"
    );
    assert_eq!(
        data["metrics"],
        json!(["cpu.usagePercent", "memory.usagePercent"])
    );
    assert!(data.get("stepSecs").is_none());
}

#[tokio::test]
async fn history_step_averages_samples() {
    let harness = start(Setup::default()).await;
    let to = now_ms();
    let from = to - 31 * 60_000;
    let path = format!(
        "/api/v1/realtime/vms/{ALERTED_VM}/history?from={}&to={}&metrics=cpu.usagePercent&step=600",
        vmpulse::metrics::rfc3339_millis::format(from),
        vmpulse::metrics::rfc3339_millis::format(to),
    );

    let response = harness.get(&path).await;

    let data = assert_ok_envelope(&response, "获取成功");
    let points = data["points"].as_array().unwrap();
    assert_eq!(points.len(), 3, "{data}");
    assert_eq!(data["stepSecs"], 600);
    let averages: Vec<f64> = points
        .iter()
        .map(|p| p["values"]["cpu.usagePercent"].as_f64().unwrap())
        .collect();
    assert_eq!(averages, [4.5, 14.5, 24.5]);
}

#[tokio::test]
async fn history_bad_parameters_are_400() {
    let harness = start(Setup::default()).await;
    let now = now_ms();
    let at = vmpulse::metrics::rfc3339_millis::format;
    let base = format!("/api/v1/realtime/vms/{ALERTED_VM}/history");
    let cases = [
        (
            format!("{base}?from={}&to={}", at(now), at(now - 1000)),
            "from",
        ),
        (
            format!("{base}?from={}&to={}", at(now - 8 * 86_400_000), at(now)),
            "from",
        ),
        (format!("{base}?from=yesterday"), "from"),
        (format!("{base}?metrics=cpu.nope"), "metrics"),
        (format!("{base}?step=0"), "step"),
        (format!("{base}?step=ten"), "step"),
    ];

    for (path, field) in cases {
        let response = harness.get(&path).await;
        assert_error(&response, 400, "400", field);
        assert_eq!(response.json()["field"], field, "{path}");
    }
}

#[tokio::test]
async fn history_of_unknown_vm_is_404() {
    let harness = start(Setup::default()).await;

    let response = harness.get("/api/v1/realtime/vms/vm-9999/history").await;

    assert_error(&response, 404, "404", "vm-9999");
}

#[tokio::test]
async fn history_without_store_is_503() {
    let harness = start(Setup {
        store: false,
        ..Setup::default()
    })
    .await;

    let response = harness.get("/api/v1/realtime/vms/vm-0001/history").await;

    assert_error(&response, 503, "503", "history");
}

// --- alerts ----------------------------------------------------------------------------

#[tokio::test]
async fn alerts_list_active_and_resolved() {
    let harness = start(Setup::default()).await;

    let active = harness.get_lang("/api/v1/alerts", "en").await;
    let resolved = harness.get("/api/v1/alerts?state=resolved&limit=5").await;

    let active = assert_ok_envelope(&active, "Fetched successfully");
    assert_eq!(active["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(active["alerts"][0]["id"], ACTIVE_ALERT);
    assert_eq!(active["alerts"][0]["state"], "active");
    assert!(
        active["alerts"][0]["message"]
            .as_str()
            .unwrap()
            .contains("CPU")
    );
    let resolved = assert_ok_envelope(&resolved, "获取成功");
    assert_eq!(resolved["alerts"][0]["id"], RESOLVED_ALERT);
    assert_eq!(resolved["alerts"][0]["state"], "resolved");
    assert!(resolved["alerts"][0]["resolvedAt"].is_string());
}

#[tokio::test]
async fn alerts_bad_query_is_400() {
    let harness = start(Setup::default()).await;

    let state = harness.get("/api/v1/alerts?state=open").await;
    let limit = harness.get("/api/v1/alerts?limit=0").await;

    assert_error(&state, 400, "400", "state");
    assert_eq!(state.json()["field"], "state");
    assert_error(&limit, 400, "400", "limit");
}

#[tokio::test]
async fn operator_acknowledges_alert() {
    let harness = start(Setup::default()).await;
    let path = format!("/api/v1/alerts/{ACTIVE_ALERT}/acknowledge");

    let response = harness.post_empty(&path, Role::Operator).await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(body["message"], "告警已确认");
    assert_eq!(body["data"]["acknowledgedBy"], "operator");
    let stored = harness.service.alerts.get(ACTIVE_ALERT).unwrap();
    assert_eq!(stored.acknowledged_by.as_deref(), Some("operator"));
}

#[tokio::test]
async fn acknowledging_unknown_alert_is_404() {
    let harness = start(Setup::default()).await;

    let response = harness
        .post_empty("/api/v1/alerts/alt-nope/acknowledge", Role::Admin)
        .await;

    assert_error(&response, 404, "404-ALERT", "告警不存在");
}

// --- plugins, collection, health, metrics ----------------------------------------------

#[tokio::test]
async fn plugins_lists_loops() {
    let harness = start(Setup::default()).await;

    let response = harness.get("/api/v1/plugins").await;

    let data = assert_ok_envelope(&response, "获取成功");
    assert_eq!(data["plugins"], json!([]));
    assert_eq!(data["failedToLoad"], json!([]));
    let loops = data["loops"].as_array().unwrap();
    assert_eq!(loops.len(), 1);
    assert_eq!(loops[0]["source"], api_estate::SOURCE);
    assert_eq!(loops[0]["lastCycle"]["vmsFailed"], 1);
    assert_eq!(loops[0]["lastCycle"]["durationMs"], 1250.0);
}

#[tokio::test]
async fn collection_run_starts_loops() {
    let harness = start(Setup::default()).await;
    let notified = harness.trigger.notified();

    let response = harness
        .post_empty("/api/v1/collection/run", Role::Admin)
        .await;

    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
    let body = response.json();
    assert_eq!(body["code"], 202);
    assert_eq!(body["data"]["loopsStarted"], 1);
    tokio::time::timeout(Duration::from_secs(1), notified)
        .await
        .expect("the loop was told to start a cycle");
}

#[tokio::test]
async fn collection_run_without_loops_is_503() {
    let harness = start(Setup {
        collecting: false,
        ..Setup::default()
    })
    .await;

    let response = harness
        .post_empty("/api/v1/collection/run", Role::Operator)
        .await;

    assert_error(&response, 503, "503", "no collection loop");
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let harness = start(Setup::default()).await;

    let response = harness.client.get("/healthz", None).await;

    let data = assert_ok_envelope(&response, "服务正常");
    assert_eq!(data["collection"], "ok");
    assert_eq!(data["vms"], VMS);
    assert_eq!(data["collectionLoops"], 1);
    assert!(data["lastSuccessAt"].is_string());
}

#[tokio::test]
async fn healthz_is_starting_before_first_cycle() {
    let harness = start(Setup {
        collecting: false,
        vms: 0,
        ..Setup::default()
    })
    .await;

    let response = harness.client.get("/healthz", None).await;

    let data = assert_ok_envelope(&response, "服务正常");
    assert_eq!(data["collection"], "starting");
    assert!(data.get("lastSuccessAt").is_none());
}

#[tokio::test]
async fn healthz_is_503_when_collection_stale() {
    let harness = start(Setup::default()).await;
    stale_loops(&harness);

    let response = harness.client.get("/healthz", None).await;

    assert_eq!(response.status.as_u16(), 503, "{}", response.text());
    let body = response.json();
    assert_eq!(body["error"], "503");
    assert_eq!(body["data"]["collection"], "stale");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("实时数据服务不可用")
    );
}

/// Moves the loop's last success four intervals into the past.
fn stale_loops(harness: &Harness) {
    let loops = harness.service.loops.lock().unwrap();
    loops[0].1.lock().unwrap().last_success_ms = Some(now_ms() - 4 * 30_000);
}

#[tokio::test]
async fn metrics_need_a_token_by_default() {
    let harness = start(Setup::default()).await;
    harness.get("/api/v1/realtime/overview").await;

    let anonymous = harness.client.get("/metrics", None).await;
    let scraped = harness.get("/metrics").await;

    assert_error(&anonymous, 401, "401", "未授权");
    assert_eq!(scraped.status, StatusCode::OK);
    let text = scraped.text();
    for line in [
        "vmpulse_collection_cycle_duration_seconds{source=\"estate\"} 1.25",
        "vmpulse_collection_vms{source=\"estate\",outcome=\"failed\"} 1",
        "vmpulse_websocket_connections 0",
        "vmpulse_websocket_alert_events_lost_total 0",
        "vmpulse_http_requests_total{route=\"getOverview\",method=\"GET\",status=\"200\"} 1",
        "vmpulse_http_request_duration_seconds_count{route=\"getOverview\"} 1",
        "vmpulse_alerts_active{severity=\"high\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.contains(
            "vmpulse_http_request_duration_seconds_bucket{route=\"getOverview\",le=\"0.005\"}"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_can_be_public() {
    let harness = start(Setup {
        metrics_require_token: false,
        ..Setup::default()
    })
    .await;

    let response = harness.client.get("/metrics", None).await;

    assert_eq!(response.status, StatusCode::OK);
    assert!(response.text().contains("vmpulse_collection_cycles_total"));
}

// --- 503 -------------------------------------------------------------------------------

#[tokio::test]
async fn data_endpoints_are_503_without_collection_or_data() {
    let harness = start(Setup {
        vms: 0,
        ..Setup::default()
    })
    .await;
    stale_loops(&harness);
    let paths = [
        "/api/v1/realtime/vms/vm-0001",
        "/api/v1/realtime/groups/grp_web",
        "/api/v1/realtime/clusters/cl-0",
        "/api/v1/realtime/hosts/host-0",
        "/api/v1/realtime/datacenters/dc-1",
        "/api/v1/realtime/overview",
    ];

    for path in paths {
        let response = harness.get_lang(path, "en").await;
        assert_error(&response, 503, "503", "Service Unavailable");
        assert_eq!(response.header("retry-after"), Some("30"), "{path}");
    }
    let batch = harness
        .post_json(
            "/api/v1/realtime/vms/batch",
            Role::Admin,
            r#"{"vmIds": []}"#,
        )
        .await;
    assert_error(&batch, 503, "503", "实时数据服务不可用");
}

#[tokio::test]
async fn first_seconds_without_data_are_503() {
    let harness = start(Setup {
        vms: 0,
        collecting: false,
        ..Setup::default()
    })
    .await;

    let response = harness.get("/api/v1/realtime/overview").await;

    assert_error(
        &response,
        503,
        "503",
        "no collection cycle has succeeded yet",
    );
}

#[tokio::test]
async fn restored_data_is_served_before_first_cycle() {
    let harness = start(Setup {
        collecting: false,
        ..Setup::default()
    })
    .await;

    let response = harness.get("/api/v1/realtime/vms/vm-0001").await;

    assert_ok_envelope(&response, "获取成功");
}

// --- auth, roles and tokens ------------------------------------------------------------

#[tokio::test]
async fn each_role_against_each_action() {
    let harness = start(Setup::default()).await;
    for role in Role::ALL {
        let writes = matches!(role, Role::Admin | Role::Operator);
        let token = harness.token(role);
        for path in [
            "/api/v1/realtime/vms/vm-0001",
            "/api/v1/realtime/groups/grp_web",
            "/api/v1/realtime/clusters/cl-0",
            "/api/v1/realtime/hosts/host-0",
            "/api/v1/realtime/datacenters/dc-1",
            "/api/v1/realtime/overview",
            "/api/v1/realtime/vms/vm-0002/history",
            "/api/v1/alerts",
            "/api/v1/plugins",
            "/metrics",
        ] {
            let response = harness.client.get(path, Some(&token)).await;
            assert_eq!(
                response.status,
                StatusCode::OK,
                "{} reads {path}",
                role.name()
            );
        }
        let batch = harness
            .post_json(
                "/api/v1/realtime/vms/batch",
                role,
                r#"{"vmIds": ["vm-0001"]}"#,
            )
            .await;
        assert_eq!(
            batch.status,
            StatusCode::OK,
            "{} reads a batch",
            role.name()
        );

        let acknowledge = harness
            .post_empty(&format!("/api/v1/alerts/{ACTIVE_ALERT}/acknowledge"), role)
            .await;
        let collect = harness.post_empty("/api/v1/collection/run", role).await;
        if writes {
            assert_eq!(acknowledge.status, StatusCode::OK, "{}", role.name());
            assert_eq!(collect.status, StatusCode::ACCEPTED, "{}", role.name());
        } else {
            assert_error(&acknowledge, 403, "403", "权限不足");
            assert_error(&collect, 403, "403", "vm:write");
        }
    }
}

fn claims() -> Value {
    let now = now_ms() / 1000;
    json!({
        "sub": "mallory",
        "role": "admin",
        "iss": "vmpulse-tests",
        "aud": "vmpulse-api-tests",
        "exp": now + 600,
        "nbf": now - 10,
        "iat": now - 10,
    })
}

fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn expired_token() -> String {
    let mut claims = claims();
    let now = now_ms() / 1000;
    claims["exp"] = json!(now - 3600);
    claims["nbf"] = json!(now - 7200);
    sign(&claims, SECRET)
}

#[tokio::test]
async fn token_failures_are_401() {
    let harness = start(Setup::default()).await;
    let base = claims();
    let with = |field: &str, value: Value| {
        let mut claims = base.clone();
        claims[field] = value;
        sign(&claims, SECRET)
    };
    let without_sub = {
        let mut claims = base.clone();
        claims.as_object_mut().unwrap().remove("sub");
        sign(&claims, SECRET)
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(base.to_string())
    );
    let cases = [
        ("expired", expired_token()),
        (
            "wrong key",
            sign(&base, b"another-secret-that-is-32-bytes-long!!"),
        ),
        ("alg none", alg_none),
        ("wrong audience", with("aud", json!("elsewhere"))),
        ("wrong issuer", with("iss", json!("someone-else"))),
        ("missing sub", without_sub),
        ("unknown role", with("role", json!("root"))),
        ("garbage", "not.a.token".to_owned()),
    ];
    assert_eq!(
        harness
            .client
            .get("/api/v1/realtime/overview", Some(&sign(&base, SECRET)))
            .await
            .status,
        StatusCode::OK,
        "the base claims are valid"
    );

    for (case, token) in cases {
        let response = harness
            .client
            .get("/api/v1/realtime/overview", Some(&token))
            .await;
        assert_error(&response, 401, "401", "未授权");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer"),
            "{case}"
        );
        assert!(
            !response.text().contains(&token),
            "{case}: the token is echoed"
        );
    }
}

#[tokio::test]
async fn missing_or_non_bearer_header_is_401() {
    let harness = start(Setup::default()).await;
    let token = harness.token(Role::Admin);
    let basic = format!("Basic {token}");

    let missing = harness.client.get("/api/v1/alerts", None).await;
    let other_scheme = harness
        .client
        .send(
            Method::GET,
            "/api/v1/alerts",
            &[("authorization", basic.as_str())],
            RequestBody::Empty,
        )
        .await;

    assert_error(&missing, 401, "401", "未授权");
    assert_error(&other_scheme, 401, "401", "未授权");
}

// --- limits and routing ----------------------------------------------------------------

#[tokio::test]
async fn rate_limit_is_429_with_retry_after() {
    let harness = start(Setup {
        requests_per_second: 0.5,
        burst: 2,
        ..Setup::default()
    })
    .await;
    let alice = harness.token_for("alice", Role::ItManager);
    let bob = harness.token_for("bob", Role::ItManager);

    for _ in 0..2 {
        let response = harness.client.get("/api/v1/alerts", Some(&alice)).await;
        assert_eq!(response.status, StatusCode::OK);
    }
    let limited = harness.client.get("/api/v1/alerts", Some(&alice)).await;
    let other = harness.client.get("/api/v1/alerts", Some(&bob)).await;

    assert_error(&limited, 429, "429", "请求过于频繁");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(
        other.status,
        StatusCode::OK,
        "another subject has its own bucket"
    );
}

#[tokio::test]
async fn large_bodies_are_413() {
    let harness = start(Setup {
        max_body_bytes: 1024,
        ..Setup::default()
    })
    .await;
    let authorization = format!("Bearer {}", harness.token(Role::Admin));
    let headers = [
        ("authorization", authorization.as_str()),
        ("content-type", "application/json"),
    ];
    let ids: Vec<String> = (0..100)
        .map(|i| format!("vm-with-a-long-id-{i:04}"))
        .collect();
    let body = json!({ "vmIds": ids }).to_string().into_bytes();
    assert!(body.len() > 1024);

    let declared = harness
        .client
        .send(
            Method::POST,
            "/api/v1/realtime/vms/batch",
            &headers,
            RequestBody::Bytes(body.clone()),
        )
        .await;
    let streamed = harness
        .client
        .send(
            Method::POST,
            "/api/v1/realtime/vms/batch",
            &headers,
            RequestBody::Chunked {
                data: body,
                chunk: 300,
            },
        )
        .await;

    assert_error(&declared, 413, "413", "1024 bytes");
    assert_error(&streamed, 413, "413", "1024 bytes");
}

#[tokio::test]
async fn unknown_route_and_method_get_envelopes() {
    let harness = start(Setup::default()).await;

    let route = harness.get_lang("/api/v1/nothing-here", "en").await;
    let method = harness
        .client
        .send(
            Method::DELETE,
            "/api/v1/realtime/overview",
            &[],
            RequestBody::Empty,
        )
        .await;

    assert_error(&route, 404, "404-ROUTE", "/api/v1/nothing-here");
    assert_error(&method, 405, "405", "DELETE");
}

// --- HTTPS and the document -------------------------------------------------------------

#[tokio::test]
async fn https_serves_with_self_signed_certificate() {
    let harness = start(Setup {
        tls: true,
        ..Setup::default()
    })
    .await;

    let health = harness.client.get("/healthz", None).await;
    let record = harness.get("/api/v1/realtime/vms/vm-0001").await;

    assert_eq!(health.status, StatusCode::OK);
    assert_ok_envelope(&record, "获取成功");
}

#[tokio::test]
async fn docs_and_document_are_served() {
    let harness = start(Setup::default()).await;

    let spec = harness.client.get("/openapi.json", None).await;
    let docs = harness.client.get("/docs", None).await;

    assert_eq!(spec.status, StatusCode::OK);
    let spec = spec.json();
    assert!(spec["paths"]["/api/v1/realtime/vms/{id}"]["get"].is_object());
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text().contains("swagger"), "{}", docs.text());
}

#[test]
fn checked_in_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/vmpulse.json");
    let generated = vmpulse::api::openapi_json();
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();

    assert!(
        checked_in.trim_end() == generated.trim_end(),
        "{} differs from the API's document; regenerate it with\n    \
         cargo run -p vmpulse -- openapi > openapi/vmpulse.json",
        path.display()
    );
}

#[test]
fn document_describes_records_fully() {
    let spec: Value = serde_json::from_str(&vmpulse::api::openapi_json()).unwrap();
    let schemas = &spec["components"]["schemas"];

    let metrics = &schemas["RealtimeMetrics"]["properties"];
    assert_eq!(metrics["timestamp"]["format"], "date-time");
    assert!(schemas["CpuMetrics"]["properties"]["usageMHz"].is_object());
    assert!(schemas["AggregatedMetrics"]["properties"]["vmCount"].is_object());
    assert!(schemas["SystemOverview"]["properties"]["healthScore"].is_object());
    assert!(schemas["ErrorEnvelope"]["properties"]["error"].is_object());
    let security = &spec["paths"]["/api/v1/realtime/overview"]["get"]["security"];
    assert!(security.is_array(), "{security}");
}

/// A log sink the tests read back.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once per test binary, a global subscriber that appends every log line to a
/// buffer, and returns the buffer. A per-thread subscriber (`set_default`) misses events when
/// another test thread fixed a callsite's interest first, so the capture is global.
fn captured_log() -> CapturedLog {
    static LOG: std::sync::OnceLock<CapturedLog> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log = CapturedLog::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        log
    })
    .clone()
}

#[tokio::test]
async fn access_log_never_holds_tokens() {
    let log = captured_log();
    let harness = start(Setup::default()).await;
    let token = harness.token(Role::Admin);

    let response = harness
        .client
        .get(
            &format!("/api/v1/alerts?token={token}&limit=7"),
            Some(&token),
        )
        .await;
    let rejected = harness
        .client
        .get("/api/v1/alerts?limit=8", Some(&format!("{token}x")))
        .await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(rejected.status, StatusCode::UNAUTHORIZED);
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("query=\"token=[redacted]&limit=7\""),
        "{text}"
    );
    assert!(text.contains("query=\"limit=8\" status=401"), "{text}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "a token reached the log");
}
