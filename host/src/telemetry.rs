//! Counters of the serving side, rendered at `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

/// Counters shared by the REST API and the WebSocket channel.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// WebSocket connections open now.
    pub ws_connections: AtomicU64,
    /// WebSocket connections accepted since start.
    pub ws_connections_total: AtomicU64,
    /// WebSocket connections closed by the server, by reason (`idle`, `slow_consumer`, ...).
    pub ws_closed: Mutex<BTreeMap<&'static str, u64>>,
}

impl Telemetry {
    /// Counts one server-side close for `reason`.
    pub fn count_ws_close(&self, reason: &'static str) {
        *self
            .ws_closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }
}
