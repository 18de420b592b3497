//! Plugin status, forced collection, health and Prometheus metrics.

use poem::Request;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::envelope::{CollectionRunEnvelope, PluginsEnvelope};
use super::freshness::{CollectionState, HealthStatus, health};
use super::security::{BearerAuth, authorize, bearer_token};
use super::{ApiError, ApiTags, Ctx, messages, prometheus};
use crate::auth::{AuthError, Permission};
use crate::collection::{CycleReport, LoopStats, now_ms};
use crate::plugin::PluginStatus;
use crate::plugin::health::{Health, RecordedFailure};
use crate::timestamp::Timestamp;

/// A plugin's last error.
#[derive(Debug, Clone, Object)]
pub struct PluginErrorView {
    /// The error's class, such as `trap`, `timeout` or `unreachable`.
    pub kind: String,
    pub message: String,
    pub at: Timestamp,
}

impl From<&RecordedFailure> for PluginErrorView {
    fn from(failure: &RecordedFailure) -> Self {
        let at = chrono::DateTime::<chrono::Utc>::from(failure.at);
        Self {
            kind: failure.kind.to_owned(),
            message: failure.message.clone(),
            at: Timestamp(at.timestamp_millis()),
        }
    }
}

/// A loaded plugin's health and call statistics.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct PluginView {
    pub id: String,
    /// `collector` or `alert-rule`.
    pub kind: String,
    /// The name the plugin gives itself.
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub version: Option<String>,
    /// `healthy`, `degraded` (the last call failed) or `unhealthy` (repeated failures).
    pub health: String,
    pub calls: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<PluginErrorView>,
    /// Duration of the last call, in ms.
    #[oai(skip_serializing_if_is_none)]
    pub last_duration_ms: Option<f64>,
    /// Mean call duration since start, in ms.
    #[oai(skip_serializing_if_is_none)]
    pub mean_duration_ms: Option<f64>,
    /// Seconds until calls run again after repeated misbehaviour.
    #[oai(skip_serializing_if_is_none)]
    pub backoff_remaining_secs: Option<f64>,
}

impl From<PluginStatus> for PluginView {
    fn from(status: PluginStatus) -> Self {
        Self {
            health: health_name(status.health).to_owned(),
            last_error: status.last_error.as_ref().map(PluginErrorView::from),
            id: status.id,
            kind: status.kind,
            name: status.name,
            version: status.version,
            calls: status.calls,
            failures: status.failures,
            consecutive_failures: status.consecutive_failures,
            last_duration_ms: status.last_duration_ms,
            mean_duration_ms: status.mean_duration_ms,
            backoff_remaining_secs: status.backoff_remaining_secs,
        }
    }
}

/// Returns the name of a plugin's health, as its serde form writes it.
pub fn health_name(health: Health) -> &'static str {
    match health {
        Health::Healthy => "healthy",
        Health::Degraded => "degraded",
        Health::Unhealthy => "unhealthy",
    }
}

/// A declared plugin that failed to load.
#[derive(Debug, Clone, Object)]
pub struct FailedPlugin {
    pub id: String,
    pub error: String,
}

/// The summary of one collection cycle.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct CycleView {
    pub number: u64,
    pub started_at: Timestamp,
    pub duration_ms: f64,
    /// Powered-on VMs the cycle tried to collect.
    pub vms_scheduled: u64,
    pub vms_collected: u64,
    pub vms_failed: u64,
    pub batches: u64,
    pub batches_failed: u64,
    pub inventory_refreshed: bool,
    #[oai(skip_serializing_if_is_none)]
    pub inventory_error: Option<String>,
}

impl From<&CycleReport> for CycleView {
    fn from(report: &CycleReport) -> Self {
        Self {
            number: report.number,
            started_at: Timestamp(report.started_at_ms),
            duration_ms: report.duration_ms,
            vms_scheduled: report.vms_scheduled as u64,
            vms_collected: report.vms_collected as u64,
            vms_failed: report.vms_failed as u64,
            batches: report.batches as u64,
            batches_failed: report.batches_failed as u64,
            inventory_refreshed: report.inventory_refreshed,
            inventory_error: report.inventory_error.clone(),
        }
    }
}

/// The counters of one collection loop (one per discovery collector).
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct LoopView {
    /// The discovery collector's plugin ID.
    pub source: String,
    pub cycles: u64,
    /// Ticks skipped because the cycle before was still running.
    pub skipped_ticks: u64,
    #[oai(skip_serializing_if_is_none)]
    pub last_success_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    pub last_cycle: Option<CycleView>,
}

impl LoopView {
    fn new(source: &str, stats: &LoopStats) -> Self {
        Self {
            source: source.to_owned(),
            cycles: stats.cycles,
            skipped_ticks: stats.skipped_ticks,
            last_success_at: stats.last_success_ms.map(Timestamp),
            last_cycle: stats.last_cycle.as_ref().map(CycleView::from),
        }
    }
}

/// The `data` of the plugin listing.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct PluginsReport {
    pub plugins: Vec<PluginView>,
    pub failed_to_load: Vec<FailedPlugin>,
    pub loops: Vec<LoopView>,
}

/// The `data` of a forced collection.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct CollectionRun {
    /// Collection loops notified to start a cycle now.
    pub loops_started: u64,
}

/// The body of `/healthz`, in the same envelope as every response.
#[derive(Debug, Clone, Object)]
pub struct HealthEnvelope {
    pub code: u16,
    pub message: String,
    /// `503` when collection is stale; absent when healthy.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    pub data: HealthStatus,
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// Collection is current, or the service is starting.
    #[oai(status = 200)]
    Healthy(Json<HealthEnvelope>),
    /// No collection cycle succeeded in the last three intervals.
    #[oai(status = 503)]
    Stale(Json<HealthEnvelope>),
}

#[derive(ApiResponse)]
enum CollectionRunResponse {
    /// The loops were notified to start a cycle, which runs in the background.
    #[oai(status = 202)]
    Accepted(Json<CollectionRunEnvelope>),
}

/// Operations endpoints.
pub struct OperationsApi;

#[OpenApi(tag = "ApiTags::Operations")]
impl OperationsApi {
    /// Plugins and collection loops
    ///
    /// An addition to the product specification. Each loaded plugin's health, call counts,
    /// timings and last error; the declared plugins that failed to load; and each collection
    /// loop's counters and last cycle.
    #[oai(path = "/api/v1/plugins", method = "get", operation_id = "listPlugins")]
    async fn plugins(&self, auth: BearerAuth, ctx: Ctx) -> Result<Json<PluginsEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;

        let service = ctx.service();
        let loops = service.loops.lock().unwrap_or_else(|p| p.into_inner());
        let loops = loops
            .iter()
            .map(|(source, stats)| {
                LoopView::new(source, &stats.lock().unwrap_or_else(|p| p.into_inner()))
            })
            .collect();
        let report = PluginsReport {
            plugins: service
                .plugins
                .iter()
                .map(|plugin| plugin.status().into())
                .collect(),
            failed_to_load: service
                .failed_plugins
                .iter()
                .map(|(id, error)| FailedPlugin {
                    id: id.clone(),
                    error: error.clone(),
                })
                .collect(),
            loops,
        };
        Ok(Json(PluginsEnvelope::new(
            &ctx,
            200,
            &messages::FETCHED,
            report,
        )))
    }

    /// Start a collection cycle now
    ///
    /// An addition to the product specification. Tells every collection loop to start a
    /// cycle at once (a loop still in a cycle starts the next one when it ends); needs
    /// `vm:write`. Returns 202 without waiting, or 503 when no loop runs.
    #[oai(
        path = "/api/v1/collection/run",
        method = "post",
        operation_id = "runCollection"
    )]
    async fn run_collection(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
    ) -> Result<CollectionRunResponse, ApiError> {
        ctx.require(&auth.0, Permission::VmWrite)?;

        let started = ctx.service().force_collection();
        if started == 0 {
            return Err(ApiError::Unavailable {
                reason: "no collection loop is running".to_owned(),
                retry_after_secs: None,
            });
        }
        tracing::info!(subject = %auth.0.subject, loops = started, "collection forced");
        Ok(CollectionRunResponse::Accepted(Json(
            CollectionRunEnvelope::new(
                &ctx,
                202,
                &messages::COLLECTION_STARTED,
                CollectionRun {
                    loops_started: started as u64,
                },
            ),
        )))
    }

    /// Service health
    ///
    /// An addition to the product specification; needs no token. 200 while a collection
    /// cycle collected VMs within the last three intervals, or while the service is in its
    /// first three intervals; 503 otherwise.
    #[oai(path = "/healthz", method = "get", operation_id = "getHealth")]
    async fn healthz(&self, ctx: Ctx) -> HealthResponse {
        let status = health(ctx.service(), ctx.state.started_at_ms, now_ms());
        if status.collection == CollectionState::Stale {
            let error = ApiError::Unavailable {
                reason: "no collection cycle succeeded in the last three intervals".to_owned(),
                retry_after_secs: None,
            };
            let envelope = error.envelope(ctx.lang);
            HealthResponse::Stale(Json(HealthEnvelope {
                code: envelope.code,
                message: envelope.message,
                error: Some(envelope.error),
                data: status,
            }))
        } else {
            HealthResponse::Healthy(Json(HealthEnvelope {
                code: 200,
                message: messages::HEALTHY.get(ctx.lang).to_owned(),
                error: None,
                data: status,
            }))
        }
    }

    /// Prometheus metrics
    ///
    /// An addition to the product specification, in the Prometheus text format: collection
    /// cycles, plugin calls, VM and alert counts, WebSocket clients, and HTTP requests with
    /// latency histograms per operation. Needs a bearer token (any role) unless
    /// `server.metrics_require_token` is false.
    #[oai(path = "/metrics", method = "get", operation_id = "getMetrics")]
    async fn metrics(&self, ctx: Ctx, request: &Request) -> Result<PlainText<String>, ApiError> {
        if ctx.service().config.server.metrics_require_token {
            let token = bearer_token(request).ok_or(ApiError::Unauthorized(AuthError::Missing))?;
            let principal = authorize(&ctx.state, token)?;
            ctx.require(&principal, Permission::VmRead)?;
        }
        Ok(PlainText(prometheus::render(ctx.service())))
    }
}
