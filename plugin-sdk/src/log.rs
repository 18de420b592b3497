//! Log lines written to the host's log, tagged with the plugin id.
//!
//! The host may drop lines past a per-call limit and logs how many it dropped.

use crate::collector_bindings::vmpulse::plugin::host::{self, LogLevel};

/// Writes `message` at error level.
pub fn error(message: &str) {
    host::log(LogLevel::Error, message);
}

/// Writes `message` at warn level.
pub fn warn(message: &str) {
    host::log(LogLevel::Warn, message);
}

/// Writes `message` at info level.
pub fn info(message: &str) {
    host::log(LogLevel::Info, message);
}

/// Writes `message` at debug level.
pub fn debug(message: &str) {
    host::log(LogLevel::Debug, message);
}
