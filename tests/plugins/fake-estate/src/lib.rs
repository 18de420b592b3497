//! A discovery collector over a synthetic estate, for collection-cycle tests.
//!
//! `discover` returns one datacenter, one cluster, two hosts and `vms` VMs named
//! `vm-001`…, every `powered_off_every`-th one powered off. `collect` returns a sample per
//! VM, except: a batch containing `slow_vm` sleeps `slow_ms` first, a batch containing
//! `failing_vm` fails as a whole, `missing_vm` gets a per-VM error, and with
//! `reject_credentials` every batch fails with an auth error.

use serde::Deserialize;
use vmpulse_plugin_sdk::{
    Cluster, CollectResult, Collector, Datacenter, HostSystem, Inventory, Layer, PluginError,
    PluginInfo, PowerState, Vm, VmError, VmSample,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    vms: u32,
    #[serde(default)]
    powered_off_every: u32,
    #[serde(default)]
    slow_vm: Option<String>,
    #[serde(default)]
    slow_ms: u64,
    #[serde(default)]
    failing_vm: Option<String>,
    #[serde(default)]
    missing_vm: Option<String>,
    #[serde(default)]
    reject_credentials: bool,
}

struct FakeEstate;

impl Collector for FakeEstate {
    fn describe() -> PluginInfo {
        PluginInfo::new("fake-estate", "0.1.0", "A synthetic estate for tests")
    }

    fn discover() -> Result<Inventory, PluginError> {
        let config: Config = vmpulse_plugin_sdk::config()?;
        let mut inventory = Inventory::default();
        inventory.datacenters.push(Datacenter {
            id: "dc".into(),
            name: "DC".into(),
        });
        inventory.clusters.push(Cluster {
            id: "cl".into(),
            name: "Cluster".into(),
            datacenter_id: Some("dc".into()),
        });
        for host in ["h1", "h2"] {
            inventory.hosts.push(HostSystem {
                id: host.into(),
                name: host.into(),
                cluster_id: Some("cl".into()),
                datacenter_id: Some("dc".into()),
                connected: true,
            });
        }
        for index in 1..=config.vms {
            inventory.vms.push(vm(index, &config));
        }
        Ok(inventory)
    }

    fn collect(vms: Vec<Vm>) -> Result<CollectResult, PluginError> {
        let config: Config = vmpulse_plugin_sdk::config()?;
        let has = |name: &Option<String>| {
            name.as_ref()
                .is_some_and(|name| vms.iter().any(|vm| &vm.name == name))
        };
        if has(&config.slow_vm) {
            std::thread::sleep(std::time::Duration::from_millis(config.slow_ms));
        }
        if config.reject_credentials {
            return Err(PluginError::Auth(
                "InvalidLogin: wrong user name or password".into(),
            ));
        }
        if has(&config.failing_vm) {
            return Err(PluginError::Unreachable("the batch's peer is down".into()));
        }
        let mut result = CollectResult::default();
        for vm in &vms {
            if config.missing_vm.as_ref() == Some(&vm.name) {
                result.errors.push(VmError {
                    vm_id: vm.id.clone(),
                    error: PluginError::Protocol("NoPermission on this VM".into()),
                });
                continue;
            }
            let mut sample = VmSample::empty(&vm.id, 1_000_000);
            sample.layers.push(Layer::Vsphere);
            let number: f64 = vm.name[3..].parse().unwrap_or(0.0);
            sample.cpu.usage_mhz = Some(100.0 * number);
            sample.cpu.usage_percent = Some(number);
            result.samples.push(sample);
        }
        Ok(result)
    }
}

fn vm(index: u32, config: &Config) -> Vm {
    let powered_off =
        config.powered_off_every > 0 && index.is_multiple_of(config.powered_off_every);
    Vm {
        id: format!("fake.{index:03}"),
        name: format!("vm-{index:03}"),
        source_ref: Some(format!("vm-{index}")),
        host_id: Some(if index.is_multiple_of(2) { "h2" } else { "h1" }.into()),
        cluster_id: Some("cl".into()),
        datacenter_id: Some("dc".into()),
        folder: None,
        power_state: if powered_off {
            PowerState::PoweredOff
        } else {
            PowerState::PoweredOn
        },
        vcpus: Some(2),
        memory_mb: Some(2048),
        tools_status: None,
        guest_ip: None,
        guest_hostname: None,
    }
}

vmpulse_plugin_sdk::export_collector!(FakeEstate);
