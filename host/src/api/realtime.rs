//! Current metrics of one or many VMs, aggregates by scope, and the system overview.

use poem::{Request, RequestBody};
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{Enum, Object, OpenApi};
use serde_json::Value;

use super::envelope::{AggregateEnvelope, BatchEnvelope, OverviewEnvelope, VmEnvelope};
use super::freshness::require_data;
use super::security::BearerAuth;
use super::{ApiError, ApiTags, Ctx, Entity, messages};
use crate::alerts::AlertMetric;
use crate::auth::Permission;
use crate::collection::now_ms;
use crate::metrics::{GROUPS, MetricAlert, RealtimeMetrics};
use crate::plugin::bindings::types::PowerState;
use crate::views::Scope;

/// VM IDs accepted in one batch request.
pub const MAX_BATCH_VMS: usize = 100;

/// A metric group of RealtimeMetrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum MetricGroup {
    Cpu,
    Memory,
    Disk,
    Network,
    System,
}

/// The body of a batch request.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct BatchRequest {
    /// The VMs to read, at most 100. Repeated IDs are returned once.
    #[oai(validator(max_items = 100))]
    pub vm_ids: Vec<String>,
    /// The metric groups to include; every group when absent.
    pub metrics: Option<Vec<MetricGroup>>,
}

/// The `data` of a batch response.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct BatchResult {
    /// The records of the VMs that have metrics, in request order, restricted to the
    /// requested groups (other groups are empty objects, and alerts on them are left out).
    pub metrics: Vec<RealtimeMetrics>,
    /// Requested IDs that name no VM.
    pub not_found: Vec<String>,
    /// Requested VMs that exist but have no metrics yet (discovered, not yet collected).
    /// An addition to the product specification's batch response.
    pub pending: Vec<String>,
}

/// The batch body, parsed by hand so that every 400 names the field at fault, such as
/// `vmIds[3]` or `metrics[1]`.
pub struct BatchBody {
    vm_ids: Vec<String>,
    groups: Vec<&'static str>,
}

impl Payload for BatchBody {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        Json::<BatchRequest>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        BatchRequest::schema_ref()
    }

    fn register(registry: &mut Registry) {
        BatchRequest::register(registry);
    }
}

impl ParsePayload for BatchBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = <Vec<u8> as poem::FromRequest>::from_request(request, body).await?;
        Ok(parse_batch(&bytes)?)
    }
}

// The trailing comma selects the macro arm that does not call the macro by its bare name.
poem_openapi::impl_apirequest_for_payload!(BatchBody,);

/// Parses and checks a batch body.
pub fn parse_batch(bytes: &[u8]) -> Result<BatchBody, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "body",
            "the body is empty; send {\"vmIds\": [...]}",
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::bad_request("body", format!("not valid JSON: {err}")))?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::bad_request("body", "expected a JSON object"));
    };
    if let Some(unknown) = object
        .keys()
        .find(|key| !matches!(key.as_str(), "vmIds" | "metrics"))
    {
        return Err(ApiError::bad_request(
            unknown.clone(),
            "unknown field; expected vmIds and optionally metrics",
        ));
    }
    let vm_ids = parse_vm_ids(object.remove("vmIds"))?;
    let groups = parse_groups(object.remove("metrics"))?;
    Ok(BatchBody { vm_ids, groups })
}

fn parse_vm_ids(value: Option<Value>) -> Result<Vec<String>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request("vmIds", "missing"));
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::bad_request(
                "vmIds",
                "expected an array of VM ID strings",
            ));
        }
    };
    if items.len() > MAX_BATCH_VMS {
        return Err(ApiError::bad_request(
            "vmIds",
            format!(
                "at most {MAX_BATCH_VMS} VM IDs per request, got {}",
                items.len()
            ),
        ));
    }
    let mut ids: Vec<String> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let Value::String(id) = item else {
            return Err(ApiError::bad_request(
                format!("vmIds[{index}]"),
                "expected a string",
            ));
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn parse_groups(value: Option<Value>) -> Result<Vec<&'static str>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(GROUPS.to_vec()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::bad_request(
                "metrics",
                "expected an array of metric groups",
            ));
        }
    };
    let mut groups = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let field = format!("metrics[{index}]");
        let Value::String(name) = item else {
            return Err(ApiError::bad_request(field, "expected a string"));
        };
        let Some(group) = GROUPS.iter().find(|group| **group == name) else {
            return Err(ApiError::bad_request(
                field,
                format!(
                    "unknown metric group `{name}`; expected one of {}",
                    GROUPS.join(", ")
                ),
            ));
        };
        groups.push(*group);
    }
    Ok(groups)
}

/// Returns the API group name of an alert's metric.
fn alert_group(metric: AlertMetric) -> &'static str {
    match metric {
        AlertMetric::Cpu => "cpu",
        AlertMetric::Memory => "memory",
        AlertMetric::Disk => "disk",
        AlertMetric::Network => "network",
    }
}

/// The live state's entry for one requested VM.
enum Lookup {
    Found(Box<RealtimeMetrics>),
    /// The VM exists but has no metrics. More are expected only while it is powered on.
    NoMetrics {
        powered_on: bool,
    },
    Unknown,
}

impl Ctx {
    /// Returns a VM's record with its active alerts in the reader's language.
    fn lookup_vm(&self, id: &str) -> Lookup {
        let record = self.service().live.read(|data| {
            data.vms.get(id).map(|record| {
                let powered_on = record.vm.power_state == PowerState::PoweredOn;
                (record.metrics.clone().map(Box::new), powered_on)
            })
        });
        match record {
            None => Lookup::Unknown,
            Some((None, powered_on)) => Lookup::NoMetrics { powered_on },
            Some((Some(mut metrics), _)) => {
                metrics.alerts = self
                    .service()
                    .alerts
                    .active_for_vm(id)
                    .iter()
                    .map(|alert| MetricAlert::new(alert, self.lang))
                    .collect();
                Lookup::Found(metrics)
            }
        }
    }

    fn aggregate(
        &self,
        scope: Scope,
        entity: Entity,
        id: &str,
    ) -> Result<AggregateEnvelope, ApiError> {
        require_data(self.service(), now_ms())?;
        let views = self.service().views.current();
        let aggregate = views
            .aggregate(scope, id)
            .ok_or_else(|| ApiError::not_found(entity, id))?;
        Ok(AggregateEnvelope::new(
            self,
            200,
            &messages::FETCHED,
            aggregate.clone(),
        ))
    }
}

/// Real-time metrics and aggregates.
pub struct RealtimeApi;

#[OpenApi(tag = "ApiTags::Realtime")]
impl RealtimeApi {
    /// Current metrics of one VM
    ///
    /// The VM's latest merged record from every collector, with its active alerts. A metric
    /// that could not be measured is absent, never 0. A VM that exists but has not been
    /// collected yet returns 503 with `Retry-After`.
    #[oai(
        path = "/api/v1/realtime/vms/:id",
        method = "get",
        operation_id = "getVmMetrics"
    )]
    async fn vm(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
        /// The VM ID.
        id: Path<String>,
    ) -> Result<Json<VmEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        require_data(ctx.service(), now_ms())?;

        match ctx.lookup_vm(&id) {
            Lookup::Found(metrics) => Ok(Json(VmEnvelope::new(
                &ctx,
                200,
                &messages::FETCHED,
                *metrics,
            ))),
            Lookup::NoMetrics { powered_on: false } => Err(ApiError::Unavailable {
                // NOTE: a VM powered off since before the host started has no record at
                // all; retrying does not help until it is powered on.
                reason: format!("VM `{}` is not powered on and has no metrics", *id),
                retry_after_secs: None,
            }),
            Lookup::NoMetrics { powered_on: true } => Err(ApiError::Unavailable {
                reason: format!("no metrics have been collected for VM `{}` yet", *id),
                retry_after_secs: Some(ctx.service().interval().as_secs()),
            }),
            Lookup::Unknown => Err(ApiError::not_found(Entity::Vm, &id)),
        }
    }

    /// Current metrics of many VMs
    ///
    /// At most 100 VM IDs per request. `metrics` restricts the records to the listed groups
    /// (`cpu`, `memory`, `disk`, `network`, `system`). Unknown IDs are listed in `notFound`,
    /// and known VMs without metrics yet in `pending`.
    #[oai(
        path = "/api/v1/realtime/vms/batch",
        method = "post",
        operation_id = "getVmMetricsBatch"
    )]
    async fn batch(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
        body: BatchBody,
    ) -> Result<Json<BatchEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        require_data(ctx.service(), now_ms())?;

        let mut result = BatchResult {
            metrics: Vec::with_capacity(body.vm_ids.len()),
            not_found: Vec::new(),
            pending: Vec::new(),
        };
        for id in body.vm_ids {
            match ctx.lookup_vm(&id) {
                Lookup::Found(mut metrics) => {
                    metrics.retain_groups(&body.groups);
                    metrics
                        .alerts
                        .retain(|alert| body.groups.contains(&alert_group(alert.metric)));
                    result.metrics.push(*metrics);
                }
                Lookup::NoMetrics { .. } => result.pending.push(id),
                Lookup::Unknown => result.not_found.push(id),
            }
        }
        Ok(Json(BatchEnvelope::new(
            &ctx,
            200,
            &messages::FETCHED,
            result,
        )))
    }

    /// Aggregate of a VM group
    ///
    /// Groups are the `[[groups]]` of the config. An unknown ID returns 404 with
    /// `error: "404-GROUP"`.
    #[oai(
        path = "/api/v1/realtime/groups/:id",
        method = "get",
        operation_id = "getGroupAggregate"
    )]
    async fn group(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
        /// The group ID from the config.
        id: Path<String>,
    ) -> Result<Json<AggregateEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        ctx.aggregate(Scope::Group, Entity::Group, &id).map(Json)
    }

    /// Aggregate of a cluster
    ///
    /// An unknown ID returns 404 with `error: "404-CLUSTER"`.
    #[oai(
        path = "/api/v1/realtime/clusters/:id",
        method = "get",
        operation_id = "getClusterAggregate"
    )]
    async fn cluster(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
        /// The cluster ID.
        id: Path<String>,
    ) -> Result<Json<AggregateEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        ctx.aggregate(Scope::Cluster, Entity::Cluster, &id)
            .map(Json)
    }

    /// Aggregate of an ESXi host
    ///
    /// An addition to the product specification. An unknown ID returns 404 with
    /// `error: "404-HOST"`.
    #[oai(
        path = "/api/v1/realtime/hosts/:id",
        method = "get",
        operation_id = "getHostAggregate"
    )]
    async fn host(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
        /// The host ID.
        id: Path<String>,
    ) -> Result<Json<AggregateEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        ctx.aggregate(Scope::Host, Entity::Host, &id).map(Json)
    }

    /// Aggregate of a datacenter
    ///
    /// An addition to the product specification. An unknown ID returns 404 with
    /// `error: "404-DATACENTER"`.
    #[oai(
        path = "/api/v1/realtime/datacenters/:id",
        method = "get",
        operation_id = "getDatacenterAggregate"
    )]
    async fn datacenter(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
        /// The datacenter ID.
        id: Path<String>,
    ) -> Result<Json<AggregateEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        ctx.aggregate(Scope::Datacenter, Entity::Datacenter, &id)
            .map(Json)
    }

    /// Aggregate of the whole estate
    ///
    /// An addition to the product specification: the `global` scope, over every VM.
    #[oai(
        path = "/api/v1/realtime/global",
        method = "get",
        operation_id = "getGlobalAggregate"
    )]
    async fn global(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
    ) -> Result<Json<AggregateEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        // The global aggregate always exists, so the entity is never reported as missing.
        ctx.aggregate(Scope::Global, Entity::Datacenter, "global")
            .map(Json)
    }

    /// Whole-system real-time state
    ///
    /// Health score, VM counts by status, core metrics and the five newest alerts, with
    /// alert messages in the reader's language.
    #[oai(
        path = "/api/v1/realtime/overview",
        method = "get",
        operation_id = "getOverview"
    )]
    async fn overview(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
    ) -> Result<Json<OverviewEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        require_data(ctx.service(), now_ms())?;

        let overview = ctx.service().views.current().overview(ctx.lang);
        Ok(Json(OverviewEnvelope::new(
            &ctx,
            200,
            &messages::FETCHED,
            overview,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> String {
        match parse_batch(body.as_bytes()) {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("expected a 400, got {:?}", other.map(|b| b.vm_ids)),
        }
    }

    #[test]
    fn batch_errors_name_the_field() {
        assert_eq!(field_of(""), "body");
        assert_eq!(field_of("{"), "body");
        assert_eq!(field_of("[]"), "body");
        assert_eq!(field_of("{}"), "vmIds");
        assert_eq!(field_of(r#"{"vmIds": "a"}"#), "vmIds");
        assert_eq!(field_of(r#"{"vmIds": ["a", 2]}"#), "vmIds[1]");
        assert_eq!(field_of(r#"{"vmIds": [], "metrics": "cpu"}"#), "metrics");
        assert_eq!(
            field_of(r#"{"vmIds": [], "metrics": ["cpu", "gpu"]}"#),
            "metrics[1]"
        );
        assert_eq!(field_of(r#"{"vmIds": [], "vmid": 1}"#), "vmid");
    }

    #[test]
    fn batch_parses_ids_once_and_groups() {
        let body = parse_batch(br#"{"vmIds": ["a", "b", "a"], "metrics": ["disk"]}"#).unwrap();
        assert_eq!(body.vm_ids, ["a", "b"]);
        assert_eq!(body.groups, ["disk"]);
    }

    #[test]
    fn batch_without_metrics_takes_every_group() {
        let body = parse_batch(br#"{"vmIds": ["a"], "metrics": null}"#).unwrap();
        assert_eq!(body.groups, GROUPS);
    }

    #[test]
    fn batch_over_limit_is_rejected() {
        let ids: Vec<String> = (0..=MAX_BATCH_VMS).map(|i| format!("vm-{i}")).collect();
        let body = serde_json::json!({ "vmIds": ids }).to_string();
        assert_eq!(field_of(&body), "vmIds");
    }
}
