//! A minimal working collector for tests and benchmarks.
//!
//! `collect` fetches its config's `url` once per batch, reads the body as a number and
//! reports it as every VM's CPU usage percent. It counts its calls in host state and logs
//! its `token` secret, which the host must redact.

use serde::Deserialize;
use vmpulse_plugin_sdk::http::Request;
use vmpulse_plugin_sdk::{
    CollectResult, Collector, Inventory, Layer, PluginError, PluginInfo, PowerState, Vm, VmSample,
    log, state,
};

#[derive(Deserialize)]
struct Config {
    url: String,
    #[serde(default)]
    log_secret: bool,
}

struct EchoCollector;

impl Collector for EchoCollector {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "echo",
            "0.1.0",
            "Reports a number fetched over HTTP as CPU usage",
        )
    }

    fn discover() -> Result<Inventory, PluginError> {
        let mut inventory = Inventory::default();
        inventory.vms.push(Vm {
            id: "echo-vm-1".to_owned(),
            name: "echo vm".to_owned(),
            source_ref: None,
            host_id: None,
            cluster_id: None,
            datacenter_id: None,
            folder: None,
            power_state: PowerState::PoweredOn,
            vcpus: Some(2),
            memory_mb: Some(2048),
            tools_status: None,
            guest_ip: None,
            guest_hostname: None,
        });
        Ok(inventory)
    }

    fn collect(vms: Vec<Vm>) -> Result<CollectResult, PluginError> {
        let config: Config = vmpulse_plugin_sdk::config()?;
        if config.log_secret {
            let token = vmpulse_plugin_sdk::secret("token")?;
            log::info(&format!("calling {} with token {token}", config.url));
        }

        let calls = state::get("calls")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        state::set("calls", &calls.to_string());

        let response = Request::get(&config.url).send()?;
        let text = String::from_utf8_lossy(&response.body);
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| PluginError::Protocol(format!("expected a number, got {text:?}")))?;

        let samples = vms
            .iter()
            .map(|vm| {
                let mut sample = VmSample::empty(&vm.id, calls);
                sample.layers.push(Layer::GuestOs);
                sample.cpu.usage_percent = Some(value);
                sample
            })
            .collect();
        Ok(CollectResult {
            samples,
            errors: Vec::new(),
        })
    }
}

vmpulse_plugin_sdk::export_collector!(EchoCollector);
