//! Values kept by the host between calls of one plugin instance.
//!
//! Every call runs in a fresh WebAssembly instance, so a plugin keeps its session cookie or
//! lookup tables here. The host keeps them in memory only: they are gone after a restart.

use crate::collector_bindings::vmpulse::plugin::host;

/// Returns the value stored under `key`, if any.
pub fn get(key: &str) -> Option<String> {
    host::state_get(key)
}

/// Stores `value` under `key`. Returns false when the host's per-plugin quota is full.
pub fn set(key: &str, value: &str) -> bool {
    host::state_set(key, Some(value))
}

/// Removes the value stored under `key`.
pub fn remove(key: &str) {
    host::state_set(key, None);
}
