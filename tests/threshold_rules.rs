//! The threshold-rules alert plugin (`plugins/threshold-rules`) built as a real component
//! and called through the host's plugin runtime, plus the SDK's metric paths against the
//! host's field table.

use std::collections::BTreeMap;

use vmpulse::metrics::{FIELDS, RealtimeMetrics};
use vmpulse::plugin::bindings::types::{Finding, MetricGroup, PowerState, Severity, VmSample};
use vmpulse::plugin::{GuestError, Plugin, PluginError, PluginRuntime, Vm};
use vmpulse_tests::threshold_plugin;

fn runtime() -> PluginRuntime {
    PluginRuntime::new(Some(threshold_plugin::component_cache())).unwrap()
}

/// Loads the plugin with `config` appended to its declaration: TOML lines that may open
/// `[plugins.config]` tables.
async fn load(runtime: &PluginRuntime, config: &str) -> Plugin {
    let declaration = threshold_plugin::declaration("thresholds", config);
    runtime.load(&declaration).await.unwrap()
}

fn vm() -> Vm {
    Vm {
        id: "vc.vm-1".to_owned(),
        name: "web-01".to_owned(),
        source_ref: None,
        host_id: None,
        cluster_id: None,
        datacenter_id: None,
        folder: None,
        power_state: PowerState::PoweredOn,
        vcpus: Some(2),
        memory_mb: Some(4096),
        tools_status: None,
        guest_ip: None,
        guest_hostname: None,
    }
}

async fn evaluate(plugin: &Plugin, sample: &VmSample) -> Vec<Finding> {
    plugin.evaluate(&vm(), sample).await.unwrap()
}

/// Returns the findings keyed by rule, checking that no rule appears twice.
fn by_rule(findings: Vec<Finding>) -> BTreeMap<String, Finding> {
    let mut map = BTreeMap::new();
    for finding in findings {
        let rule = finding.rule.clone();
        assert!(map.insert(rule.clone(), finding).is_none(), "{rule} twice");
    }
    map
}

/// Returns the message of the plugin's `config` error, failing on any other outcome.
async fn config_error(config: &str) -> String {
    let runtime = runtime();
    let plugin = load(&runtime, config).await;

    let error = plugin
        .evaluate(&vm(), &VmSample::empty("vc.vm-1", 0))
        .await
        .unwrap_err();

    match error {
        PluginError::Guest {
            error: GuestError::Config(message),
            ..
        } => message,
        other => panic!("expected a config error, got: {other}"),
    }
}

fn cpu_usage_sample(value: f64) -> VmSample {
    let mut sample = VmSample::empty("vc.vm-1", 0);
    sample.cpu.usage_percent = Some(value);
    sample
}

#[test]
fn sdk_paths_match_host_fields() {
    let host: Vec<String> = FIELDS.iter().map(|field| field.path()).collect();

    assert_eq!(vmpulse_plugin_sdk::metrics::PATHS, host);
}

/// Sets every alertable metric to a distinct value through the host's field table, so a
/// path the SDK maps to the wrong WIT field shows up as a wrong value.
#[tokio::test]
async fn every_alertable_path_reads_its_field() {
    let alertable: Vec<(usize, String)> = FIELDS
        .iter()
        .enumerate()
        .filter(|(_, field)| field.group != "system")
        .map(|(index, field)| (index, field.path()))
        .collect();
    let config: String = alertable
        .iter()
        .map(|(_, path)| format!("[plugins.config.thresholds.\"{path}\"]\nlow = 0.0\n"))
        .collect();
    let values: Vec<Option<f64>> = (0..FIELDS.len()).map(|i| Some(i as f64 + 1.0)).collect();
    let mut metrics = RealtimeMetrics::default();
    metrics.set_values(&values);
    let runtime = runtime();
    let plugin = load(&runtime, &config).await;

    let findings = by_rule(evaluate(&plugin, &metrics.to_sample()).await);

    assert_eq!(findings.len(), alertable.len());
    for (index, path) in &alertable {
        let finding = &findings[path];
        let expected_group = match FIELDS[*index].group {
            "cpu" => MetricGroup::Cpu,
            "memory" => MetricGroup::Memory,
            "disk" => MetricGroup::Disk,
            _ => MetricGroup::Network,
        };
        assert_eq!(finding.current_value, *index as f64 + 1.0, "{path}");
        assert_eq!(finding.group, expected_group, "{path}");
        assert_eq!(finding.severity, Severity::Low, "{path}");
    }
}

#[tokio::test]
async fn default_cpu_levels_at_boundaries() {
    let runtime = runtime();
    let plugin = load(&runtime, "").await;
    let cases = [
        (69.9, None),
        (70.0, None),
        (70.1, Some((Severity::Medium, 70.0))),
        (80.0, Some((Severity::Medium, 70.0))),
        (80.1, Some((Severity::High, 80.0))),
        (95.0, Some((Severity::High, 80.0))),
        (95.1, Some((Severity::Critical, 95.0))),
        (100.0, Some((Severity::Critical, 95.0))),
    ];

    for (value, expected) in cases {
        let findings = evaluate(&plugin, &cpu_usage_sample(value)).await;

        let actual = findings
            .iter()
            .map(|finding| (finding.severity, finding.threshold))
            .next();
        assert!(findings.len() <= 1, "{value}: {findings:?}");
        assert_eq!(actual, expected, "CPU usage {value}");
    }
}

#[tokio::test]
async fn finding_names_metric_in_english() {
    let runtime = runtime();
    let plugin = load(&runtime, "").await;

    let findings = evaluate(&plugin, &cpu_usage_sample(92.5)).await;

    assert_eq!(findings.len(), 1);
    let finding = &findings[0];
    assert_eq!(finding.rule, "cpu.usagePercent");
    assert_eq!(finding.group, MetricGroup::Cpu);
    assert_eq!(finding.current_value, 92.5);
    assert_eq!(
        finding.message,
        "CPU usage 92.5 % is above the high threshold 80 %"
    );
}

#[tokio::test]
async fn below_direction_fires_under_levels() {
    let config = "[plugins.config.thresholds.\"memory.freeMB\"]\n\
                  direction = \"below\"\nhigh = 512.0\ncritical = 128.0\n";
    let runtime = runtime();
    let plugin = load(&runtime, config).await;
    let cases = [
        (1024.0, None),
        (512.0, None),
        (511.0, Some((Severity::High, 512.0))),
        (128.0, Some((Severity::High, 512.0))),
        (127.5, Some((Severity::Critical, 128.0))),
        (0.0, Some((Severity::Critical, 128.0))),
    ];

    for (value, expected) in cases {
        let mut sample = VmSample::empty("vc.vm-1", 0);
        sample.memory.free_mb = Some(value);

        let findings = evaluate(&plugin, &sample).await;

        let actual = findings
            .iter()
            .map(|finding| (finding.severity, finding.threshold))
            .next();
        assert!(findings.len() <= 1, "{value}: {findings:?}");
        assert_eq!(actual, expected, "free memory {value}");
    }
    let mut sample = VmSample::empty("vc.vm-1", 0);
    sample.memory.free_mb = Some(100.0);
    let findings = evaluate(&plugin, &sample).await;
    assert_eq!(findings.len(), 1);
    assert_eq!(
        findings[0].message,
        "Free memory 100 MB is below the critical threshold 128 MB"
    );
}

#[tokio::test]
async fn hold_seconds_pass_through() {
    let config = "[plugins.config]\nhold_seconds = 45\n\
                  [plugins.config.thresholds.\"disk.readLatency\"]\n\
                  high = 30.0\nhold_seconds = 300\n";
    let runtime = runtime();
    let plugin = load(&runtime, config).await;
    let mut sample = cpu_usage_sample(99.0);
    sample.disk.read_latency = Some(31.0);

    let findings = by_rule(evaluate(&plugin, &sample).await);

    assert_eq!(findings["disk.readLatency"].hold_seconds, 300);
    assert_eq!(findings["cpu.usagePercent"].hold_seconds, 45);
}

#[tokio::test]
async fn defaults_fire_with_empty_config() {
    let runtime = runtime();
    let plugin = load(&runtime, "").await;
    let mut sample = VmSample::empty("vc.vm-1", 0);
    sample.cpu.usage_percent = Some(99.0);
    sample.cpu.ready = Some(25.0);
    sample.memory.usage_percent = Some(99.0);
    sample.disk.usage_percent = Some(99.0);
    sample.disk.read_latency = Some(150.0);
    sample.disk.write_latency = Some(150.0);
    sample.network.dropped_packets = Some(20000.0);
    sample.network.dropped = Some(1000.0);
    sample.network.errors = Some(200.0);
    let expected = [
        ("cpu.usagePercent", 95.0),
        ("cpu.ready", 20.0),
        ("memory.usagePercent", 95.0),
        ("disk.usagePercent", 95.0),
        ("disk.readLatency", 100.0),
        ("disk.writeLatency", 100.0),
        ("network.droppedPackets", 10000.0),
        ("network.dropped", 500.0),
        ("network.errors", 100.0),
    ];

    let findings = by_rule(evaluate(&plugin, &sample).await);

    assert_eq!(findings.len(), expected.len(), "{findings:?}");
    for (path, threshold) in expected {
        let finding = &findings[path];
        assert_eq!(finding.severity, Severity::Critical, "{path}");
        assert_eq!(finding.threshold, threshold, "{path}");
        assert_eq!(finding.hold_seconds, 60, "{path}");
    }
}

#[tokio::test]
async fn operator_entry_replaces_default() {
    let config = "[plugins.config.thresholds.\"cpu.usagePercent\"]\nhigh = 90.0\n";
    let runtime = runtime();
    let plugin = load(&runtime, config).await;

    let below_new_high = evaluate(&plugin, &cpu_usage_sample(85.0)).await;
    let above_new_high = evaluate(&plugin, &cpu_usage_sample(99.0)).await;

    assert!(
        below_new_high.is_empty(),
        "the default's medium and high levels still apply: {below_new_high:?}"
    );
    assert_eq!(above_new_high.len(), 1);
    assert_eq!(above_new_high[0].severity, Severity::High);
    assert_eq!(above_new_high[0].threshold, 90.0);
}

#[tokio::test]
async fn disabled_default_stays_silent() {
    let config = "[plugins.config.thresholds.\"cpu.usagePercent\"]\nenabled = false\n";
    let runtime = runtime();
    let plugin = load(&runtime, config).await;
    let mut sample = cpu_usage_sample(99.0);
    sample.cpu.ready = Some(25.0);

    let findings = by_rule(evaluate(&plugin, &sample).await);

    assert!(!findings.contains_key("cpu.usagePercent"), "{findings:?}");
    assert!(findings.contains_key("cpu.ready"), "{findings:?}");
}

#[tokio::test]
async fn missing_values_never_fire() {
    let config = "[plugins.config.thresholds.\"memory.freeMB\"]\n\
                  direction = \"below\"\ncritical = 128.0\n";
    let runtime = runtime();
    let plugin = load(&runtime, config).await;

    let findings = evaluate(&plugin, &VmSample::empty("vc.vm-1", 0)).await;

    assert!(findings.is_empty(), "{findings:?}");
}

#[tokio::test]
async fn invalid_configs_are_config_errors() {
    let cases = [
        (
            "unknown top-level key",
            "[plugins.config]\nhold = 30\n",
            vec!["unknown field `hold`"],
        ),
        (
            "unknown entry key",
            "[plugins.config.thresholds.\"cpu.ready\"]\nhigh = 10.0\nwarning = 5.0\n",
            vec!["thresholds.\"cpu.ready\"", "unknown field `warning`"],
        ),
        (
            "levels out of order",
            "[plugins.config.thresholds.\"cpu.ready\"]\nmedium = 10.0\nhigh = 5.0\n",
            vec![
                "thresholds.\"cpu.ready\"",
                "high (5) must be greater than medium (10)",
            ],
        ),
        (
            "below with rising levels",
            "[plugins.config.thresholds.\"memory.freeMB\"]\n\
             direction = \"below\"\nlow = 100.0\nhigh = 200.0\n",
            vec!["high (200) must be less than low (100)"],
        ),
        (
            "unknown path",
            "[plugins.config.thresholds.\"cpu.usage\"]\nhigh = 10.0\n",
            vec!["thresholds.\"cpu.usage\"", "unknown metric path"],
        ),
        (
            "system path",
            "[plugins.config.thresholds.\"system.uptime\"]\nlow = 10.0\n",
            vec![
                "thresholds.\"system.uptime\"",
                "system metrics cannot raise alerts",
            ],
        ),
        (
            "no level",
            "[plugins.config.thresholds.\"disk.usagePercent\"]\nhold_seconds = 10\n",
            vec!["thresholds.\"disk.usagePercent\"", "no level is set"],
        ),
        (
            "unknown direction",
            "[plugins.config.thresholds.\"cpu.ready\"]\nhigh = 10.0\ndirection = \"up\"\n",
            vec!["unknown variant `up`"],
        ),
        (
            "negative hold",
            "[plugins.config]\nhold_seconds = -5\n",
            vec!["invalid value: integer `-5`"],
        ),
    ];

    for (case, config, expected) in cases {
        let message = config_error(config).await;

        for part in expected {
            assert!(message.contains(part), "{case}: {message:?} lacks {part:?}");
        }
    }
}
