//! When real-time data counts as unavailable (503), and the collection state `/healthz`
//! reports.
//!
//! Collection is current while the newest cycle that collected any VM is at most
//! [`STALE_AFTER_INTERVALS`] collection intervals old. The real-time data endpoints (one
//! VM, batch, the four aggregates and the overview) return 503 only when collection is not
//! current *and* no VM has metrics in memory. Metrics restored from the store at start, or
//! left from before collection stopped, are still served: each record carries its own
//! `timestamp`, and aggregates count VMs with old data as `error`.
//!
//! So after a start with an empty store, data endpoints return 503 until the first cycle
//! succeeds. After a start with a restored store, they serve the restored data at once.
//! History, alerts and plugin status do not depend on collection and are never gated.

use poem_openapi::{Enum, Object};

use super::ApiError;
use crate::service::Service;
use crate::timestamp::Timestamp;

/// Collection intervals without a successful cycle after which collection is not current.
pub const STALE_AFTER_INTERVALS: i64 = 3;

/// The state of collection as `/healthz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum CollectionState {
    /// A cycle collected VMs within the last three intervals.
    Ok,
    /// No cycle has succeeded yet, and the service started less than three intervals ago.
    Starting,
    /// No cycle succeeded in the last three intervals (or since a start longer ago).
    Stale,
}

/// The body of `/healthz`.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct HealthStatus {
    pub collection: CollectionState,
    /// When a cycle last collected at least one VM; absent when none has.
    #[oai(skip_serializing_if_is_none)]
    pub last_success_at: Option<Timestamp>,
    /// The collection interval, in seconds.
    pub interval_secs: u64,
    /// Collection loops running (one per discovery collector).
    pub collection_loops: u64,
    /// VMs in the inventory.
    pub vms: u64,
    /// VMs with metrics in memory.
    pub vms_with_metrics: u64,
}

fn stale_after_ms(service: &Service) -> i64 {
    let interval_ms = i64::try_from(service.interval().as_millis()).unwrap_or(i64::MAX);
    interval_ms.saturating_mul(STALE_AFTER_INTERVALS)
}

/// Returns true when a cycle collected VMs within the last three intervals.
pub fn collection_is_current(service: &Service, now_ms: i64) -> bool {
    service
        .last_success_ms()
        .is_some_and(|last| now_ms - last <= stale_after_ms(service))
}

/// Fails with 503 when collection is not current and no VM has metrics.
pub fn require_data(service: &Service, now_ms: i64) -> Result<(), ApiError> {
    if collection_is_current(service, now_ms) {
        return Ok(());
    }
    let has_data = service
        .live
        .read(|data| data.vms.values().any(|record| record.metrics.is_some()));
    if has_data {
        return Ok(());
    }
    let interval_secs = service.interval().as_secs();
    let reason = match service.last_success_ms() {
        None => "no collection cycle has succeeded yet and no stored data was restored".to_owned(),
        Some(last) => format!(
            "the last successful collection cycle was at {}, more than {STALE_AFTER_INTERVALS} \
             intervals of {interval_secs} s ago, and no metrics are held",
            crate::metrics::rfc3339_millis::format(last)
        ),
    };
    Err(ApiError::Unavailable {
        reason,
        retry_after_secs: Some(interval_secs),
    })
}

/// Returns the collection state at `now_ms` for a service whose API started at
/// `started_at_ms`.
pub fn health(service: &Service, started_at_ms: i64, now_ms: i64) -> HealthStatus {
    let last_success = service.last_success_ms();
    let collection = match last_success {
        _ if collection_is_current(service, now_ms) => CollectionState::Ok,
        None if now_ms - started_at_ms <= stale_after_ms(service) => CollectionState::Starting,
        _ => CollectionState::Stale,
    };
    let (vms, vms_with_metrics) = service.live.read(|data| {
        let with_metrics = data.vms.values().filter(|r| r.metrics.is_some()).count();
        (data.vms.len() as u64, with_metrics as u64)
    });
    let collection_loops = service
        .loops
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len() as u64;
    HealthStatus {
        collection,
        last_success_at: last_success.map(Timestamp),
        interval_secs: service.interval().as_secs(),
        collection_loops,
        vms,
        vms_with_metrics,
    }
}
