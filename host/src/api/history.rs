//! Stored samples of one VM over a time window, optionally averaged into steps.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use vmpulse_store::HistoryPoint;

use super::envelope::HistoryEnvelope;
use super::security::BearerAuth;
use super::{ApiError, ApiTags, Ctx, Entity, messages};
use crate::auth::Permission;
use crate::collection::now_ms;
use crate::timestamp::Timestamp;

/// The maximum window one request may read, equal to the store's default retention.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The window read when `from` is absent.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// Points returned at most; a longer series needs a larger `step`.
pub const MAX_POINTS: usize = 10_000;

/// The metrics read when `metrics` is absent.
const DEFAULT_METRICS: &[&str] = &["cpu.usagePercent", "memory.usagePercent"];

/// The `data` of a history response.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct VmHistory {
    pub vm_id: String,
    /// The start of the window, inclusive.
    pub from: Timestamp,
    /// The end of the window, inclusive.
    pub to: Timestamp,
    /// The averaging step in seconds; absent when every sample is returned.
    #[oai(skip_serializing_if_is_none)]
    pub step_secs: Option<u64>,
    /// The metric paths requested, such as `cpu.usagePercent`.
    pub metrics: Vec<String>,
    /// Samples, oldest first.
    pub points: Vec<HistoryPointView>,
}

/// One sample, or the average of the samples in one step.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct HistoryPointView {
    /// The sample's collection time, or the start of its step.
    pub timestamp: Timestamp,
    /// Values by metric path; a metric unknown at that time is absent.
    pub values: BTreeMap<String, f64>,
}

/// The checked query of a history request.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub metrics: Vec<String>,
    pub step_ms: Option<i64>,
}

impl HistoryQuery {
    /// Checks the parameters against the limits and the store's metric names.
    ///
    /// # Errors
    ///
    /// [`ApiError::BadRequest`] naming `from`, `to`, `metrics` or `step`.
    pub fn new(
        from: Option<DateTime<FixedOffset>>,
        to: Option<DateTime<FixedOffset>>,
        metrics: Option<&str>,
        step_secs: Option<u64>,
        known: &[String],
        now_ms: i64,
    ) -> Result<Self, ApiError> {
        let to_ms = to.map_or(now_ms, |t| t.timestamp_millis());
        let from_ms = from.map_or(to_ms - DEFAULT_WINDOW.as_millis() as i64, |t| {
            t.timestamp_millis()
        });
        if from_ms > to_ms {
            return Err(ApiError::bad_request("from", "must not be after `to`"));
        }
        if from_ms < 0 {
            return Err(ApiError::bad_request("from", "must not be before 1970"));
        }
        let window_ms = to_ms - from_ms;
        if window_ms > MAX_WINDOW.as_millis() as i64 {
            return Err(ApiError::bad_request(
                "from",
                format!(
                    "the window from `from` to `to` is {:.1} days; at most 7 days can be read",
                    window_ms as f64 / 86_400_000.0
                ),
            ));
        }
        let metrics = parse_metrics(metrics, known)?;
        let step_ms = match step_secs {
            None => None,
            Some(0) => return Err(ApiError::bad_request("step", "must be at least 1 second")),
            Some(step) if step.saturating_mul(1000) > MAX_WINDOW.as_millis() as u64 => {
                return Err(ApiError::bad_request(
                    "step",
                    "must be at most 604800 seconds (7 days)",
                ));
            }
            Some(step) => Some(step as i64 * 1000),
        };
        Ok(Self {
            from_ms,
            to_ms,
            metrics,
            step_ms,
        })
    }
}

fn parse_metrics(metrics: Option<&str>, known: &[String]) -> Result<Vec<String>, ApiError> {
    let Some(list) = metrics else {
        return Ok(DEFAULT_METRICS.iter().map(|m| (*m).to_owned()).collect());
    };
    let mut paths: Vec<String> = Vec::new();
    for path in list.split(',').map(str::trim) {
        if path.is_empty() {
            return Err(ApiError::bad_request(
                "metrics",
                "contains an empty name; list metric paths separated by commas",
            ));
        }
        if !known.iter().any(|name| name == path) {
            return Err(ApiError::bad_request(
                "metrics",
                format!("unknown metric `{path}`; metric paths look like cpu.usagePercent"),
            ));
        }
        if !paths.iter().any(|p| p == path) {
            paths.push(path.to_owned());
        }
    }
    Ok(paths)
}

/// Turns stored samples into points, averaging each metric within each step when `step_ms`
/// is set. A step with no known value of a metric leaves the metric absent; a step without
/// samples has no point.
pub fn build_points(
    samples: &[HistoryPoint],
    metrics: &[String],
    from_ms: i64,
    step_ms: Option<i64>,
) -> Vec<HistoryPointView> {
    let Some(step_ms) = step_ms else {
        return samples
            .iter()
            .map(|(at, values)| point(*at as i64, metrics, values.iter().copied()))
            .collect();
    };
    let mut points = Vec::new();
    let mut current: Option<(i64, Vec<(f64, u32)>)> = None;
    for (at, values) in samples {
        let start = from_ms + (*at as i64 - from_ms).div_euclid(step_ms) * step_ms;
        if current.as_ref().is_none_or(|(bucket, _)| *bucket != start) {
            if let Some((bucket, sums)) = current.take() {
                points.push(averaged(bucket, metrics, &sums));
            }
            current = Some((start, vec![(0.0, 0); metrics.len()]));
        }
        if let Some((_, sums)) = current.as_mut() {
            for (sum, value) in sums.iter_mut().zip(values) {
                if let Some(value) = value {
                    sum.0 += value;
                    sum.1 += 1;
                }
            }
        }
    }
    if let Some((bucket, sums)) = current {
        points.push(averaged(bucket, metrics, &sums));
    }
    points
}

fn averaged(at: i64, metrics: &[String], sums: &[(f64, u32)]) -> HistoryPointView {
    let values = sums
        .iter()
        .map(|&(sum, count)| (count > 0).then(|| sum / f64::from(count)));
    point(at, metrics, values)
}

fn point(
    at: i64,
    metrics: &[String],
    values: impl Iterator<Item = Option<f64>>,
) -> HistoryPointView {
    HistoryPointView {
        timestamp: Timestamp(at),
        values: metrics
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some((name.clone(), value?)))
            .collect(),
    }
}

/// Stored history.
pub struct HistoryApi;

#[OpenApi(tag = "ApiTags::History")]
impl HistoryApi {
    /// Stored samples of one VM
    ///
    /// An addition to the product specification. Reads the samples collected between
    /// `from` and `to` (RFC 3339; by default the last hour up to now), at most 7 days, for
    /// the listed metric paths (by default `cpu.usagePercent,memory.usagePercent`). With
    /// `step` (seconds), samples are averaged per step and each point is stamped with its
    /// step's start. At most 10,000 points are returned: a longer series returns 400 naming
    /// `step`. Without a history store it returns 503.
    #[oai(
        path = "/api/v1/realtime/vms/:id/history",
        method = "get",
        operation_id = "getVmHistory"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn history(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
        /// The VM ID.
        id: Path<String>,
        /// Start of the window (RFC 3339), inclusive.
        from: Query<Option<DateTime<FixedOffset>>>,
        /// End of the window (RFC 3339), inclusive; now when absent.
        to: Query<Option<DateTime<FixedOffset>>>,
        /// Metric paths separated by commas, such as `cpu.usagePercent,disk.readIOPS`.
        metrics: Query<Option<String>>,
        /// Averaging step in seconds.
        step: Query<Option<u64>>,
    ) -> Result<Json<HistoryEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        let Some(store) = ctx.service().store.clone() else {
            return Err(ApiError::Unavailable {
                reason: "history is not stored by this service".to_owned(),
                retry_after_secs: None,
            });
        };
        let query = HistoryQuery::new(
            from.0,
            to.0,
            metrics.0.as_deref(),
            step.0,
            store.schema(),
            now_ms(),
        )?;

        let samples = read_samples(store, &id, &query).await?;
        let known = ctx.service().live.read(|data| data.vms.contains_key(&*id));
        if !known && samples.is_empty() {
            return Err(ApiError::not_found(Entity::Vm, &id));
        }
        let points = build_points(&samples, &query.metrics, query.from_ms, query.step_ms);
        if points.len() > MAX_POINTS {
            let window_secs = (query.to_ms - query.from_ms) / 1000;
            return Err(ApiError::bad_request(
                "step",
                format!(
                    "the window holds {} points, more than {MAX_POINTS}: set step to at least {} \
                     seconds",
                    points.len(),
                    window_secs / MAX_POINTS as i64 + 1
                ),
            ));
        }
        let history = VmHistory {
            vm_id: id.0,
            from: Timestamp(query.from_ms),
            to: Timestamp(query.to_ms),
            step_secs: query.step_ms.map(|ms| (ms / 1000) as u64),
            metrics: query.metrics,
            points,
        };
        Ok(Json(HistoryEnvelope::new(
            &ctx,
            200,
            &messages::FETCHED,
            history,
        )))
    }
}

/// Reads the requested metrics from the store on a blocking thread.
async fn read_samples(
    store: std::sync::Arc<vmpulse_store::Store>,
    vm_id: &str,
    query: &HistoryQuery,
) -> Result<Vec<HistoryPoint>, ApiError> {
    let fields: Vec<usize> = query
        .metrics
        .iter()
        .filter_map(|path| store.schema().iter().position(|name| name == path))
        .collect();
    let vm_id = vm_id.to_owned();
    let (from, to) = (query.from_ms as u64, query.to_ms as u64);
    let read = tokio::task::spawn_blocking(move || store.range(&vm_id, from, to, Some(&fields)));
    match read.await {
        Ok(Ok(samples)) => Ok(samples),
        Ok(Err(err)) => {
            tracing::error!(error = %err, "history read failed");
            Err(ApiError::Internal(format!(
                "cannot read the history: {err}"
            )))
        }
        Err(err) => Err(ApiError::Internal(format!(
            "the history read did not finish: {err}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        crate::metrics::FIELDS.iter().map(|f| f.path()).collect()
    }

    fn field_of(result: Result<HistoryQuery, ApiError>) -> String {
        match result {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn query_defaults_to_last_hour() {
        let query = HistoryQuery::new(None, None, None, None, &known(), 10_000_000).unwrap();
        assert_eq!(query.to_ms, 10_000_000);
        assert_eq!(query.from_ms, 10_000_000 - 3_600_000);
        assert_eq!(query.metrics, ["cpu.usagePercent", "memory.usagePercent"]);
    }

    #[test]
    fn query_limits_are_named() {
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap().fixed_offset();
        let now = 30 * 86_400_000;
        let too_long = HistoryQuery::new(Some(at(0)), Some(at(now)), None, None, &known(), now);
        assert_eq!(field_of(too_long), "from");
        let reversed = HistoryQuery::new(Some(at(now)), Some(at(1)), None, None, &known(), now);
        assert_eq!(field_of(reversed), "from");
        let unknown = HistoryQuery::new(None, None, Some("cpu.nope"), None, &known(), now);
        assert_eq!(field_of(unknown), "metrics");
        let zero_step = HistoryQuery::new(None, None, None, Some(0), &known(), now);
        assert_eq!(field_of(zero_step), "step");
    }

    #[test]
    fn steps_average_known_values() {
        let metrics = vec!["a".to_owned(), "b".to_owned()];
        let samples: Vec<HistoryPoint> = vec![
            (1_000, vec![Some(1.0), None]),
            (20_000, vec![Some(3.0), None]),
            (61_000, vec![None, Some(5.0)]),
        ];

        let points = build_points(&samples, &metrics, 0, Some(60_000));

        assert_eq!(points.len(), 2);
        assert_eq!(points[0].timestamp, Timestamp(0));
        assert_eq!(points[0].values.get("a"), Some(&2.0));
        assert!(
            !points[0].values.contains_key("b"),
            "no known b in the step"
        );
        assert_eq!(points[1].timestamp, Timestamp(60_000));
        assert_eq!(points[1].values.get("b"), Some(&5.0));
    }

    #[test]
    fn without_step_every_sample_is_a_point() {
        let metrics = vec!["a".to_owned()];
        let samples: Vec<HistoryPoint> = vec![(5, vec![Some(1.0)]), (6, vec![None])];

        let points = build_points(&samples, &metrics, 0, None);

        assert_eq!(points.len(), 2);
        assert_eq!(points[1].timestamp, Timestamp(6));
        assert!(points[1].values.is_empty());
    }
}
