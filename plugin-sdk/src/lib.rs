//! The crate vmpulse plugin authors depend on.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2` from a `cdylib` crate. A
//! collector is a type implementing [`Collector`] plus one [`export_collector!`] call; an
//! alert rule is a type implementing [`AlertRule`] plus one [`export_alert_rule!`] call:
//!
//! ```ignore
//! use vmpulse_plugin_sdk::{Collector, CollectResult, Inventory, PluginError, PluginInfo, Vm};
//!
//! struct Uptime;
//!
//! impl Collector for Uptime {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("uptime", "0.1.0", "Reads uptime from a status page")
//!     }
//!     fn discover() -> Result<Inventory, PluginError> {
//!         Ok(Inventory::default())
//!     }
//!     fn collect(vms: Vec<Vm>) -> Result<CollectResult, PluginError> {
//!         let page = vmpulse_plugin_sdk::http::Request::get("http://10.0.0.5:8080/status").send()?;
//!         // ... parse `page.body` into samples ...
//!         Ok(CollectResult::default())
//!     }
//! }
//!
//! vmpulse_plugin_sdk::export_collector!(Uptime);
//! ```
//!
//! Each call runs in a fresh instance: keep anything that must outlive a call (a session
//! cookie, a counter map) with [`state::set`]. Read the plugin's `config` table with
//! [`config`], secrets with [`secret`], and write log lines with [`log`]. Read a sample's
//! value by its path, such as `cpu.usagePercent`, with [`metrics::value`].

extern crate self as vmpulse_plugin_sdk;

#[doc(hidden)]
pub use wit_bindgen;

pub mod http;
pub mod log;
pub mod metrics;
pub mod state;
mod types;

pub use types::*;

/// Bindings generated from the `collector` world in `wit/`.
#[doc(hidden)]
pub mod collector_bindings {
    wit_bindgen::generate!({
        world: "collector",
        path: "../wit",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_collector_world",
        default_bindings_module: "vmpulse_plugin_sdk::collector_bindings",
        runtime_path: "vmpulse_plugin_sdk::wit_bindgen::rt",
    });
}

/// Bindings generated from the `alert-rule` world, sharing the collector's types.
#[doc(hidden)]
pub mod rule_bindings {
    wit_bindgen::generate!({
        world: "alert-rule",
        path: "../wit",
        with: {
            "vmpulse:plugin/types@0.1.0": crate::collector_bindings::vmpulse::plugin::types,
            "vmpulse:plugin/host@0.1.0": crate::collector_bindings::vmpulse::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "export_rule_world",
        default_bindings_module: "vmpulse_plugin_sdk::rule_bindings",
        runtime_path: "vmpulse_plugin_sdk::wit_bindgen::rt",
    });
}

use collector_bindings::vmpulse::plugin::host as host_api;

/// A source of inventory and metrics, such as vCenter or an in-guest exporter.
pub trait Collector {
    /// Returns the plugin's name, version and a one-line description.
    fn describe() -> PluginInfo;

    /// Lists the datacenters, clusters, hosts and VMs this source manages.
    ///
    /// A collector that only enriches VMs found by another collector returns an empty
    /// [`Inventory`].
    fn discover() -> Result<Inventory, PluginError>;

    /// Collects one sample per VM of the batch.
    ///
    /// Put a failure that concerns one VM in [`CollectResult::errors`] and keep going;
    /// return `Err` only when the whole batch failed.
    fn collect(vms: Vec<Vm>) -> Result<CollectResult, PluginError>;

    /// Releases server-side state before the host stops. The default does nothing.
    fn shutdown() {}
}

/// A rule that compares one VM's merged metrics with thresholds.
pub trait AlertRule {
    /// Returns the plugin's name, version and a one-line description.
    fn describe() -> PluginInfo;

    /// Returns every threshold the VM crosses now. The host applies hold times and
    /// hysteresis, so the rule only compares values.
    fn evaluate(vm: Vm, metrics: VmSample) -> Result<Vec<Finding>, PluginError>;
}

/// Exports a [`Collector`] implementation as the component's `collector` world.
#[macro_export]
macro_rules! export_collector {
    ($collector:ty) => {
        #[doc(hidden)]
        pub struct __VmpulseCollectorExport;

        impl $crate::collector_bindings::Guest for __VmpulseCollectorExport {
            fn describe() -> $crate::PluginInfo {
                <$collector as $crate::Collector>::describe()
            }
            fn discover() -> ::core::result::Result<$crate::Inventory, $crate::PluginError> {
                <$collector as $crate::Collector>::discover()
            }
            fn collect(
                vms: ::std::vec::Vec<$crate::Vm>,
            ) -> ::core::result::Result<$crate::CollectResult, $crate::PluginError> {
                <$collector as $crate::Collector>::collect(vms)
            }
            fn shutdown() {
                <$collector as $crate::Collector>::shutdown()
            }
        }

        $crate::collector_bindings::export_collector_world!(__VmpulseCollectorExport);
    };
}

/// Exports an [`AlertRule`] implementation as the component's `alert-rule` world.
#[macro_export]
macro_rules! export_alert_rule {
    ($rule:ty) => {
        #[doc(hidden)]
        pub struct __VmpulseRuleExport;

        impl $crate::rule_bindings::Guest for __VmpulseRuleExport {
            fn describe() -> $crate::PluginInfo {
                <$rule as $crate::AlertRule>::describe()
            }
            fn evaluate(
                vm: $crate::Vm,
                metrics: $crate::VmSample,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::Finding>, $crate::PluginError> {
                <$rule as $crate::AlertRule>::evaluate(vm, metrics)
            }
        }

        $crate::rule_bindings::export_rule_world!(__VmpulseRuleExport);
    };
}

/// Parses the plugin's `config` table from the host's config file.
///
/// # Errors
///
/// [`PluginError::Config`] naming the problem when the table does not match `T`.
pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, PluginError> {
    let json = host_api::config();
    serde_json::from_str(&json).map_err(|err| PluginError::Config(format!("invalid config: {err}")))
}

/// Returns the secret the plugin's declaration maps to `name`, read by the host from an
/// environment variable.
///
/// The host removes the value from every log line this plugin writes.
///
/// # Errors
///
/// [`PluginError::Config`] when the declaration has no such secret or its variable is unset.
pub fn secret(name: &str) -> Result<String, PluginError> {
    host_api::secret(name).ok_or_else(|| {
        PluginError::Config(format!(
            "secret `{name}` is not set: declare it under `secrets` in the plugin's \
             declaration and export the environment variable it names"
        ))
    })
}
