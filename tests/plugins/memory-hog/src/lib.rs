//! A collector whose `collect` allocates without bound, to test the host's memory cap.

use vmpulse_plugin_sdk::{CollectResult, Collector, Inventory, PluginError, PluginInfo, Vm};

struct MemoryHog;

impl Collector for MemoryHog {
    fn describe() -> PluginInfo {
        PluginInfo::new("memory-hog", "0.1.0", "Allocates until stopped")
    }

    fn discover() -> Result<Inventory, PluginError> {
        Ok(Inventory::default())
    }

    fn collect(_vms: Vec<Vm>) -> Result<CollectResult, PluginError> {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every page so the allocation is real.
            blocks.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&blocks);
        }
    }
}

vmpulse_plugin_sdk::export_collector!(MemoryHog);
