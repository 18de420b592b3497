//! The VM list: which VMs exist, where they run and their status, for a dashboard to pick
//! VMs to show or subscribe to.

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::envelope::VmListEnvelope;
use super::security::BearerAuth;
use super::{ApiError, ApiTags, Ctx, messages};
use crate::auth::Permission;
use crate::plugin::bindings::types::PowerState;
use crate::timestamp::Timestamp;
use crate::views::{VmState, wildcard_match};

/// VMs returned when `limit` is absent.
const DEFAULT_LIMIT: u64 = 500;
/// The largest `limit` accepted.
const MAX_LIMIT: u64 = 5000;

/// One VM of the list.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct VmSummary {
    pub id: String,
    pub name: String,
    /// `online`, `warning`, `offline` or `error`, as in the overview's `vmStatus`.
    pub status: VmState,
    /// `poweredOn`, `poweredOff` or `suspended`.
    pub power_state: String,
    #[oai(skip_serializing_if_is_none)]
    pub datacenter_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub cluster_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub host_id: Option<String>,
    /// The inventory folder path, such as `/DC0/vm/web`.
    #[oai(skip_serializing_if_is_none)]
    pub folder: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub vcpus: Option<u32>,
    #[oai(rename = "memoryMB", skip_serializing_if_is_none)]
    pub memory_mb: Option<u64>,
    /// When the VM's newest metrics were collected; absent before its first collection.
    #[oai(skip_serializing_if_is_none)]
    pub collected_at: Option<Timestamp>,
}

/// The `data` of the VM list.
#[derive(Debug, Clone, Object)]
pub struct VmList {
    /// VMs matching the filters, before `offset` and `limit`.
    pub total: u64,
    /// The page of VMs, ordered by name and then ID.
    pub items: Vec<VmSummary>,
}

/// The VM inventory.
pub struct InventoryApi;

#[OpenApi(tag = "ApiTags::Realtime")]
impl InventoryApi {
    /// List VMs
    ///
    /// An addition to the product specification. Every VM the collectors discovered, with
    /// its placement and status, ordered by name. Filters combine; `name` takes `*` and `?`
    /// wildcards.
    #[oai(
        path = "/api/v1/realtime/vms",
        method = "get",
        operation_id = "listVms"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: BearerAuth,
        ctx: Ctx,
        /// Only VMs with this status: online, warning, offline or error.
        status: Query<Option<VmState>>,
        /// Only VMs in this cluster.
        cluster: Query<Option<String>>,
        /// Only VMs on this host.
        host: Query<Option<String>>,
        /// Only VMs whose name matches this pattern, such as `web-*`.
        name: Query<Option<String>>,
        /// VMs skipped before the page starts.
        offset: Query<Option<u64>>,
        /// VMs returned at most, 1 to 5000 (default 500).
        limit: Query<Option<u64>>,
    ) -> Result<Json<VmListEnvelope>, ApiError> {
        ctx.require(&auth.0, Permission::VmRead)?;
        let limit = match limit.0 {
            None => DEFAULT_LIMIT,
            Some(limit @ 1..=MAX_LIMIT) => limit,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "limit",
                    format!("must be between 1 and {MAX_LIMIT}, got {other}"),
                ));
            }
        };
        let offset = offset.0.unwrap_or(0);

        let views = ctx.service().views.current();
        let mut items: Vec<VmSummary> = ctx.service().live.read(|data| {
            data.vms
                .values()
                .filter(|record| {
                    let vm = &record.vm;
                    cluster
                        .0
                        .as_ref()
                        .is_none_or(|c| vm.cluster_id.as_ref() == Some(c))
                        && host
                            .0
                            .as_ref()
                            .is_none_or(|h| vm.host_id.as_ref() == Some(h))
                        && name
                            .0
                            .as_ref()
                            .is_none_or(|pattern| wildcard_match(pattern, &vm.name))
                })
                .filter_map(|record| {
                    // A VM discovered after the views were computed counts as in error
                    // until the next cycle, like a VM without fresh data.
                    let state = views
                        .vm_states
                        .get(&record.vm.id)
                        .copied()
                        .unwrap_or(VmState::Error);
                    if status.0.is_some_and(|wanted| wanted != state) {
                        return None;
                    }
                    let vm = &record.vm;
                    Some(VmSummary {
                        id: vm.id.clone(),
                        name: vm.name.clone(),
                        status: state,
                        power_state: power_state_name(vm.power_state).to_owned(),
                        datacenter_id: vm.datacenter_id.clone(),
                        cluster_id: vm.cluster_id.clone(),
                        host_id: vm.host_id.clone(),
                        folder: vm.folder.clone(),
                        vcpus: vm.vcpus,
                        memory_mb: vm.memory_mb,
                        collected_at: record.collected_at_ms.map(Timestamp),
                    })
                })
                .collect()
        });
        items.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        let total = items.len() as u64;
        let items = items
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit as usize)
            .collect();
        Ok(Json(VmListEnvelope::new(
            &ctx,
            200,
            &messages::FETCHED,
            VmList { total, items },
        )))
    }
}

fn power_state_name(state: PowerState) -> &'static str {
    match state {
        PowerState::PoweredOn => "poweredOn",
        PowerState::PoweredOff => "poweredOff",
        PowerState::Suspended => "suspended",
    }
}
