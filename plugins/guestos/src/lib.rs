//! The vmpulse enrichment collector for guest OS metrics.
//!
//! It scrapes the Prometheus node_exporter (Linux) or windows_exporter running inside each
//! VM that a discovery collector found, and reports CPU, memory, disk, network and
//! process figures in the `guest-os` layer. The host lays them over the vSphere figures.
//! Declared in the host's config file as:
//!
//! ```toml
//! [[plugins]]
//! id = "guest"
//! kind = "collector"
//! role = "enrichment"
//! component = "plugins/vmpulse_plugin_guestos.wasm"
//! allowed_outbound_hosts = ["http://10.0.0.0/8:9100", "http://10.0.0.0/8:9182"]
//! config = { url_template = "http://{guest_ip}:9100/metrics" }
//! ```
//!
//! The `config` keys are in [`config::Config`] and the URL rules in [`target`]. The
//! field mappings are in [`node_exporter`] and [`windows_exporter`], the device rules in
//! [`devices`], and rates in [`rates`] and [`counter_store`].

pub mod collect;
pub mod config;
pub mod counter_store;
pub mod devices;
pub mod exposition;
pub mod node_exporter;
pub mod rates;
pub mod reading;
pub mod sample;
mod scrape;
pub mod target;
pub mod windows_exporter;

use std::time::{SystemTime, UNIX_EPOCH};

use vmpulse_plugin_sdk::{
    CollectResult, Collector, Inventory, PluginError, PluginInfo, Vm, log, state,
};

use crate::config::Config;
use crate::counter_store::{CounterStore, StateStore};

struct GuestOsCollector;

impl Collector for GuestOsCollector {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "guestos",
            env!("CARGO_PKG_VERSION"),
            "Guest OS metrics from each VM's node_exporter or windows_exporter",
        )
    }

    /// Finds nothing: this collector only adds guest data to VMs others discovered.
    fn discover() -> Result<Inventory, PluginError> {
        Ok(Inventory::default())
    }

    fn collect(vms: Vec<Vm>) -> Result<CollectResult, PluginError> {
        let config = Config::load()?;
        let mut store = CounterStore::new(HostState, unix_now());
        let (result, stats) = collect::collect_batch(
            &config,
            &vms,
            |url| scrape::fetch(url, &config),
            &mut store,
            unix_now,
        );
        if stats.not_stored > 0 {
            log::warn(&format!(
                "plugin state is full: the counters of {} VMs were not kept, so their next \
                 samples have no rates",
                stats.not_stored
            ));
        }
        Ok(result)
    }
}

vmpulse_plugin_sdk::export_collector!(GuestOsCollector);

/// The host's per-plugin state, shared by all calls of this plugin.
struct HostState;

impl StateStore for HostState {
    fn get(&self, key: &str) -> Option<String> {
        state::get(key)
    }

    fn set(&mut self, key: &str, value: Option<&str>) -> bool {
        match value {
            Some(value) => state::set(key, value),
            None => {
                state::remove(key);
                true
            }
        }
    }
}

/// Returns the wall clock in seconds since the Unix epoch (WASI's wall clock in the
/// component).
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}
