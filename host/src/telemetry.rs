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
    /// WebSocket text frames written to clients.
    pub ws_frames_sent: AtomicU64,
    /// Pending WebSocket `metrics` messages replaced by newer ones before they were written.
    pub ws_metrics_replaced: AtomicU64,
    /// WebSocket `error` messages sent about client messages.
    pub ws_errors_sent: AtomicU64,
    /// Alert changes the WebSocket fan-out fell too far behind to push.
    pub ws_alert_events_lost: AtomicU64,
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
