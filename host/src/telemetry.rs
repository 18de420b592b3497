//! Counters of the serving side, rendered at `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Counters shared by the REST API and the WebSocket channel.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// WebSocket connections open now.
    pub ws_connections: AtomicU64,
    /// WebSocket connections accepted since start.
    pub ws_connections_total: AtomicU64,
    /// WebSocket connections closed by the server, by reason (`idle`, `slow_consumer`, ...).
    pub ws_closed: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests served by the REST API.
    pub http: HttpTelemetry,
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

/// Upper bounds, in seconds, of the HTTP latency histogram buckets. The real-time query
/// targets (a few ms for one VM, 10 ms for an aggregate, 500 ms at the outside) each fall
/// on a bucket edge.
pub const HTTP_LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Request counts and latency histograms of the REST API.
#[derive(Debug, Default)]
pub struct HttpTelemetry {
    /// Requests by (route, method, status).
    pub requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    /// Latency by route.
    pub latency: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl HttpTelemetry {
    /// Counts one request to `route` that took `elapsed`. `route` is an operation id or
    /// `unmatched`, so the label set stays bounded whatever paths clients send.
    pub fn record(&self, route: &'static str, method: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route, method.to_owned(), status))
            .or_default() += 1;
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(route)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }
}

/// A Prometheus histogram over [`HTTP_LATENCY_BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Observations at or below each bucket's bound (not cumulative).
    pub buckets: [u64; HTTP_LATENCY_BUCKETS.len()],
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        if let Some(index) = HTTP_LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
        {
            self.buckets[index] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// Returns the count at or below each bound, as Prometheus `le` buckets expect.
    pub fn cumulative(&self) -> [u64; HTTP_LATENCY_BUCKETS.len()] {
        let mut total = 0;
        self.buckets.map(|count| {
            total += count;
            total
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut histogram = Histogram::default();
        histogram.observe(0.0004);
        histogram.observe(0.003);
        histogram.observe(10.0);

        let cumulative = histogram.cumulative();

        assert_eq!(cumulative[0], 1, "0.5 ms bucket");
        assert_eq!(cumulative[3], 2, "5 ms bucket");
        assert_eq!(
            cumulative[HTTP_LATENCY_BUCKETS.len() - 1],
            2,
            "10 s is past every bound"
        );
        assert_eq!(histogram.count, 3);
    }
}
