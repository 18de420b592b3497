//! The vmpulse collector for VMware vSphere.
//!
//! It speaks the vim25 SOAP API of one vCenter through the host's outgoing HTTP.
//! `discover` lists datacenters, clusters, hosts and VMs. `collect` reads the newest
//! real-time performance sample and the VMware Tools data of a batch of VMs. `shutdown`
//! logs out. A declaration in the host's config file looks like this:
//!
//! ```toml
//! [[plugins]]
//! id = "vc-lab"
//! kind = "collector"
//! component = "plugins/vmpulse_plugin_vsphere.wasm"
//! allowed_outbound_hosts = ["https://vc.lab.example:443"]
//! secrets = { password = "VMPULSE_VC_LAB_PASSWORD" }
//! tls."https://vc.lab.example:443" = { ca_file = "/etc/vmpulse/vc-lab-ca.pem" }
//! config = { url = "https://vc.lab.example/sdk", username = "monitor@vsphere.local" }
//! ```
//!
//! The `config` keys are in [`config::Config`], the ID scheme in [`ids`] and the unit
//! conversions in [`sample`].

mod collect;
mod config;
mod counters;
mod error;
mod ids;
mod inventory;
mod perf;
mod property;
mod sample;
mod session;
mod soap;
mod time;
mod xml;

use vmpulse_plugin_sdk::{CollectResult, Collector, Inventory, PluginError, PluginInfo, Vm};

use crate::config::Config;
use crate::session::Session;

struct VsphereCollector;

impl Collector for VsphereCollector {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "vsphere",
            env!("CARGO_PKG_VERSION"),
            "Inventory and real-time VM metrics from VMware vCenter",
        )
    }

    fn discover() -> Result<Inventory, PluginError> {
        let config = Config::load()?;
        let mut session = Session::open(&config)?;
        let inventory = inventory::discover(&mut session);
        session.save();
        inventory
    }

    fn collect(vms: Vec<Vm>) -> Result<CollectResult, PluginError> {
        let config = Config::load()?;
        let mut session = Session::open(&config)?;
        let result = collect::collect(&mut session, &vms);
        session.save();
        result
    }

    fn shutdown() {
        if let Ok(config) = Config::load() {
            session::logout(&config);
        }
    }
}

vmpulse_plugin_sdk::export_collector!(VsphereCollector);
