//! The vmpulse host: loads the configured plugins into a WebAssembly sandbox and drives them.
//!
//! The binary in `main.rs` is thin wiring; everything it uses lives here so the integration
//! tests in `tests/` drive the same code.

pub mod alerts;
mod alerts_text;
pub mod api;
pub mod app;
pub mod auth;
pub mod collection;
pub mod config;
pub mod i18n;
pub mod live;
pub mod metrics;
pub mod persist;
pub mod plugin;
pub mod service;
pub mod telemetry;
pub mod timestamp;
pub mod views;
pub mod ws;
