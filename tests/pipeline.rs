//! The work after a cycle with real plugins: the fake estate collects, the guest-OS plugin
//! enriches, the threshold-rules plugin judges, and the service turns findings into alerts
//! and aggregates.

use std::sync::Arc;

use vmpulse::alerts::{AlertChange, AlertEngine, Severity};
use vmpulse::collection::{CollectionLoop, CycleOutput, CycleSink};
use vmpulse::config::{AlertsConfig, CollectionConfig, Config};
use vmpulse::live::LiveState;
use vmpulse::plugin::{Plugin, PluginRuntime};
use vmpulse::service::Service;
use vmpulse::views::Scope;
use vmpulse_tests::fixtures::declaration as fixture_declaration;
use vmpulse_tests::guestos_plugin::{self, NodeExporter, free_port};
use vmpulse_tests::threshold_plugin;

/// Collects into a queue the test drains, so each cycle is processed in the test's order.
#[derive(Default)]
struct Captured(std::sync::Mutex<Vec<Arc<CycleOutput>>>);

impl CycleSink for Captured {
    fn on_cycle(&self, output: Arc<CycleOutput>) {
        self.0.lock().unwrap().push(output);
    }
}

impl Captured {
    fn take_last(&self) -> Arc<CycleOutput> {
        self.0.lock().unwrap().pop().expect("a cycle ran")
    }
}

async fn load(runtime: &PluginRuntime, declaration: vmpulse::config::PluginConfig) -> Arc<Plugin> {
    Arc::new(runtime.load(&declaration).await.unwrap())
}

fn service(live: Arc<LiveState>, rules: Vec<Arc<Plugin>>) -> Arc<Service> {
    let config = Config::parse(
        "[[groups]]\nid = \"odd\"\nname = \"Odd VMs\"\nname_patterns = [\"vm-001\", \"vm-003\"]\n",
        std::path::Path::new("test.toml"),
        std::path::Path::new("/"),
    )
    .unwrap();
    let alerts = AlertEngine::new(rules, AlertsConfig::default(), None).unwrap();
    Service::new(
        Arc::new(config),
        live,
        None,
        Arc::new(alerts),
        Vec::new(),
        Vec::new(),
    )
}

#[tokio::test]
async fn threshold_plugin_fires_alerts() {
    let runtime = PluginRuntime::new(Some(threshold_plugin::component_cache())).unwrap();
    let estate = load(
        &runtime,
        fixture_declaration("estate", "collector", "fake-estate", "config = { vms = 4 }"),
    )
    .await;
    // The fake estate reports CPU usage equal to the VM number: 1 to 4 %.
    let rules = load(
        &runtime,
        threshold_plugin::declaration(
            "thresholds",
            "[plugins.config.thresholds.\"cpu.usagePercent\"]\n\
             medium = 1.5\nhigh = 2.5\ncritical = 3.5\nhold_seconds = 0\n",
        ),
    )
    .await;
    let live = Arc::new(LiveState::default());
    let service = service(live.clone(), vec![rules]);
    let mut pushed = service.alerts.subscribe();
    let captured = Arc::new(Captured::default());
    let cycle = CollectionLoop::new(
        estate,
        Vec::new(),
        CollectionConfig::default(),
        live,
        vec![captured.clone()],
    );

    cycle.run_cycle().await;
    let done = service.process_cycle(&captured.take_last()).await;

    assert_eq!(done.vm_ids.len(), 4);
    let active = service.alerts.active();
    let severity_of = |vm: &str| {
        active
            .iter()
            .find(|alert| alert.vm_id == vm)
            .map(|alert| alert.severity)
    };
    assert_eq!(severity_of("fake.001"), None);
    assert_eq!(severity_of("fake.002"), Some(Severity::Medium));
    assert_eq!(severity_of("fake.003"), Some(Severity::High));
    assert_eq!(severity_of("fake.004"), Some(Severity::Critical));
    for _ in 0..3 {
        let event = pushed.try_recv().expect("an event per fired alert");
        assert_eq!(event.change, AlertChange::Fired);
    }

    let overview = done.views.overview(vmpulse::i18n::Lang::En);
    assert_eq!(overview.alerts.total, 3);
    assert_eq!(overview.alerts.critical, 1);
    assert_eq!(overview.vm_status.warning, 3);
    assert_eq!(overview.recent_alerts.len(), 3);
    let cluster = done
        .views
        .aggregate(Scope::Cluster, "cl")
        .expect("cluster cl");
    assert_eq!(cluster.cpu.avg_usage_percent, Some(2.5));
    assert_eq!(cluster.cpu.total_cores, 8);
    let odd = done
        .views
        .aggregate(Scope::Group, "odd")
        .expect("group odd");
    assert_eq!(odd.vm_count.total, 2);
    assert_eq!(odd.cpu.avg_usage_percent, Some(2.0));

    // The same values again change nothing: one alert per VM and rule.
    cycle.run_cycle().await;
    service.process_cycle(&captured.take_last()).await;
    assert_eq!(service.alerts.active().len(), 3);
    assert!(pushed.try_recv().is_err());
}

/// Guest-only metric thresholds: the guest's total memory is above 1 MB on any machine.
const GUEST_RULES: &str =
    "[plugins.config.thresholds.\"memory.totalMB\"]\nlow = 1.0\nhold_seconds = 0\n";

#[tokio::test]
async fn missing_guest_data_fires_nothing() {
    let runtime = PluginRuntime::new(Some(threshold_plugin::component_cache())).unwrap();
    let estate = load(
        &runtime,
        fixture_declaration("estate", "collector", "fake-estate", "config = { vms = 2 }"),
    )
    .await;
    let rules = load(
        &runtime,
        threshold_plugin::declaration("thresholds", GUEST_RULES),
    )
    .await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let exporter = NodeExporter::start(&[]);
    let overrides = format!(
        "overrides = {{ \"fake.001\" = \"{closed}/metrics\", \"fake.002\" = \"{}/metrics\" }}",
        exporter.origin()
    );
    let guest = load(
        &runtime,
        guestos_plugin::declaration(
            "guest",
            &format!(
                "allowed_outbound_hosts = [\"{closed}\", \"{}\"]\nconfig = {{ {overrides} }}",
                exporter.origin()
            ),
        ),
    )
    .await;
    let live = Arc::new(LiveState::default());
    let service = service(live.clone(), vec![rules]);
    let captured = Arc::new(Captured::default());
    let cycle = CollectionLoop::new(
        estate,
        vec![guest],
        CollectionConfig::default(),
        live.clone(),
        vec![captured.clone()],
    );

    cycle.run_cycle().await;
    service.process_cycle(&captured.take_last()).await;

    let down = live.read(|data| data.vms["fake.001"].metrics.clone().unwrap());
    assert!(!down.data_sources.guest_os);
    assert_eq!(down.memory.total_mb, None);
    let up = live.read(|data| data.vms["fake.002"].metrics.clone().unwrap());
    assert!(up.data_sources.guest_os);
    let active = service.alerts.active();
    assert!(
        active.iter().all(|alert| alert.vm_id != "fake.001"),
        "no alert on missing guest data: {active:?}"
    );
    assert!(
        active.iter().any(|alert| alert.vm_id == "fake.002"),
        "the same rule fires where the exporter answers: {active:?}"
    );
}
