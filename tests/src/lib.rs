//! Shared support for vmpulse's integration tests and benchmarks: building the fixture
//! plugins, writing plugin declarations, and small HTTP peers on 127.0.0.1.

pub mod api_client;
pub mod api_estate;
pub mod fixtures;
pub mod guestos_plugin;
pub mod http_peer;
pub mod threshold_plugin;
pub mod vcsim;
pub mod vsphere_plugin;
