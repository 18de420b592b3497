//! Listing and acknowledging alerts.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::envelope::{AlertEnvelope, AlertListEnvelope};
use super::security::BearerAuth;
use super::{ApiError, ApiTags, Ctx, Entity, messages};
use crate::alerts::{Alert, AlertError, AlertMetric, Direction, Severity};
use crate::auth::Permission;
use crate::collection::now_ms;
use crate::i18n::Lang;
use crate::timestamp::Timestamp;

/// Alerts listed when `limit` is absent.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
const MAX_LIMIT: usize = 1000;

/// Whether an alert is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum AlertState {
    Active,
    Resolved,
}

/// One alert as the API shows it, message in the reader's language.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct AlertView {
    /// Stable ID, unchanged by escalation.
    pub id: String,
    pub state: AlertState,
    pub vm_id: String,
    pub vm_name: String,
    /// The rule plugin that raised it.
    pub plugin: String,
    /// The rule's condition, such as `cpu.usagePercent`.
    pub rule: String,
    pub metric: AlertMetric,
    pub severity: Severity,
    pub threshold: f64,
    pub current_value: f64,
    pub direction: Direction,
    pub message: String,
    pub fired_at: Timestamp,
    /// When the severity last changed.
    pub changed_at: Timestamp,
    #[oai(skip_serializing_if_is_none)]
    pub resolved_at: Option<Timestamp>,
    /// The token subject that acknowledged the alert.
    #[oai(skip_serializing_if_is_none)]
    pub acknowledged_by: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub acknowledged_at: Option<Timestamp>,
}

impl AlertView {
    pub fn new(alert: &Alert, lang: Lang) -> Self {
        Self {
            id: alert.id.clone(),
            state: if alert.resolved_at_ms.is_some() {
                AlertState::Resolved
            } else {
                AlertState::Active
            },
            vm_id: alert.vm_id.clone(),
            vm_name: alert.vm_name.clone(),
            plugin: alert.plugin.clone(),
            rule: alert.rule.clone(),
            metric: alert.metric,
            severity: alert.severity,
            threshold: alert.threshold,
            current_value: alert.current_value,
            direction: alert.direction,
            message: alert.message(lang),
            fired_at: Timestamp(alert.fired_at_ms),
            changed_at: Timestamp(alert.changed_at_ms),
            resolved_at: alert.resolved_at_ms.map(Timestamp),
            acknowledged_by: alert.acknowledged_by.clone(),
            acknowledged_at: alert.acknowledged_at_ms.map(Timestamp),
        }
    }
}

/// The `data` of an alert listing.
#[derive(Debug, Clone, Object)]
pub struct AlertList {
    /// Alerts, newest change first.
    pub alerts: Vec<AlertView>,
}

/// Alerts raised by rule plugins.
pub struct AlertsApi;

#[OpenApi(tag = "ApiTags::Alerts")]
impl AlertsApi {
    /// List alerts
    ///
    /// An addition to the product specification. Active alerts (the default) or recently
    /// resolved ones, newest change first, at most `limit` (default 100, at most 1000).
    #[oai(path = "/api/v1/alerts", method = "get", operation_id = "listAlerts")]
    async fn list(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
        /// `active` (default) or `resolved`.
        state: Query<Option<AlertState>>,
        /// Alerts returned at most, 1 to 1000.
        limit: Query<Option<u64>>,
    ) -> Result<Json<AlertListEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        let limit = match limit.0 {
            None => DEFAULT_LIMIT,
            Some(limit @ 1..=1000) => limit as usize,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "limit",
                    format!("must be between 1 and {MAX_LIMIT}, got {other}"),
                ));
            }
        };

        let alerts = match state.0.unwrap_or(AlertState::Active) {
            AlertState::Active => {
                let mut active = ctx.service().alerts.active();
                active.truncate(limit);
                active
            }
            AlertState::Resolved => ctx.service().alerts.resolved(limit),
        };
        let list = AlertList {
            alerts: alerts
                .iter()
                .map(|alert| AlertView::new(alert, ctx.lang))
                .collect(),
        };
        Ok(Json(AlertListEnvelope::new(
            &ctx,
            200,
            &messages::FETCHED,
            list,
        )))
    }

    /// Acknowledge an alert
    ///
    /// An addition to the product specification. Marks an active alert as acknowledged by
    /// the token's subject; needs `vm:write` (admin or operator). An ID that names no active
    /// alert returns 404 with `error: "404-ALERT"`.
    #[oai(
        path = "/api/v1/alerts/:id/acknowledge",
        method = "post",
        operation_id = "acknowledgeAlert"
    )]
    async fn acknowledge(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
        /// The alert ID.
        id: Path<String>,
    ) -> Result<Json<AlertEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmWrite)?;

        let alert = ctx
            .service()
            .alerts
            .acknowledge(&id, &auth.0.subject, now_ms())
            .map_err(|err| match err {
                AlertError::NotFound(_) => ApiError::not_found(Entity::Alert, &id),
                AlertError::Store { .. } => {
                    tracing::error!(alert = %*id, error = %err, "cannot store an acknowledgement");
                    ApiError::Internal(err.to_string())
                }
            })?;
        tracing::info!(alert = %alert.id, subject = %auth.0.subject, "alert acknowledged");
        Ok(Json(AlertEnvelope::new(
            &ctx,
            200,
            &messages::ACKNOWLEDGED,
            AlertView::new(&alert, ctx.lang),
        )))
    }
}
