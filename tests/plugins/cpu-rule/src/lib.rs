//! An alert rule for tests and benchmarks: CPU usage over the config's `threshold`.

use serde::Deserialize;
use vmpulse_plugin_sdk::{
    AlertRule, Finding, MetricGroup, PluginError, PluginInfo, Severity, Vm, VmSample,
};

#[derive(Deserialize)]
struct Config {
    threshold: f64,
}

struct CpuRule;

impl AlertRule for CpuRule {
    fn describe() -> PluginInfo {
        PluginInfo::new("cpu-rule", "0.1.0", "CPU usage over a threshold")
    }

    fn evaluate(vm: Vm, metrics: VmSample) -> Result<Vec<Finding>, PluginError> {
        let config: Config = vmpulse_plugin_sdk::config()?;
        let Some(usage) = metrics.cpu.usage_percent else {
            return Ok(Vec::new());
        };
        if usage <= config.threshold {
            return Ok(Vec::new());
        }
        Ok(vec![Finding {
            rule: "cpu.usagePercent".to_owned(),
            group: MetricGroup::Cpu,
            severity: Severity::High,
            threshold: config.threshold,
            current_value: usage,
            hold_seconds: 0,
            message: format!("CPU usage of {} is {usage:.1} %", vm.name),
        }])
    }
}

vmpulse_plugin_sdk::export_alert_rule!(CpuRule);
