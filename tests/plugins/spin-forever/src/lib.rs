//! A collector whose `collect` spins forever, to test the host's CPU deadline.

use vmpulse_plugin_sdk::{CollectResult, Collector, Inventory, PluginError, PluginInfo, Vm};

struct SpinForever;

impl Collector for SpinForever {
    fn describe() -> PluginInfo {
        PluginInfo::new("spin-forever", "0.1.0", "Never returns from collect")
    }

    fn discover() -> Result<Inventory, PluginError> {
        Ok(Inventory::default())
    }

    fn collect(_vms: Vec<Vm>) -> Result<CollectResult, PluginError> {
        let mut counter: u64 = 0;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

vmpulse_plugin_sdk::export_collector!(SpinForever);
