//! A collector that tries every way out of its sandbox.
//!
//! `collect` first opens a raw TCP socket and resolves a name; either succeeding is a
//! sandbox escape and is reported as `PluginError::Other` starting with `escaped:`. It then
//! calls the config's `url`, which the test does not grant, and returns that error.

use serde::Deserialize;
use std::net::{TcpStream, ToSocketAddrs};
use vmpulse_plugin_sdk::http::Request;
use vmpulse_plugin_sdk::{CollectResult, Collector, Inventory, PluginError, PluginInfo, Vm};

#[derive(Deserialize)]
struct Config {
    url: String,
    socket_addr: String,
}

struct DeniedHost;

impl Collector for DeniedHost {
    fn describe() -> PluginInfo {
        PluginInfo::new("denied-host", "0.1.0", "Calls a host it was not granted")
    }

    fn discover() -> Result<Inventory, PluginError> {
        Ok(Inventory::default())
    }

    fn collect(_vms: Vec<Vm>) -> Result<CollectResult, PluginError> {
        let config: Config = vmpulse_plugin_sdk::config()?;
        if TcpStream::connect(&config.socket_addr).is_ok() {
            return Err(PluginError::Other(format!(
                "escaped: raw TCP connect to {} succeeded",
                config.socket_addr
            )));
        }
        if ("localhost", 80).to_socket_addrs().is_ok() {
            return Err(PluginError::Other(
                "escaped: name lookup succeeded".to_owned(),
            ));
        }
        if std::fs::read_dir("/").is_ok() {
            return Err(PluginError::Other(
                "escaped: file system is readable".to_owned(),
            ));
        }
        Request::get(&config.url).send()?;
        Err(PluginError::Other(format!(
            "escaped: request to {} succeeded",
            config.url
        )))
    }
}

vmpulse_plugin_sdk::export_collector!(DeniedHost);
