//! `collect`: the newest real-time sample and the VMware Tools data of a batch of VMs.
//!
//! Each pass over at most [`MAX_BATCH`] VMs sends these requests:
//!
//! 1. CurrentTime, whose result ends the query window and which keeps the session alive.
//! 2. The counter catalog, when the session has none yet (see [`crate::counters`]).
//! 3. QueryPerf calls sized to the metric limit.
//! 4. One RetrievePropertiesEx for the Tools and CPU allocation properties of the VMs.
//!
//! A QueryPerf call that faults is retried on each half of its VMs until the VM that
//! causes the fault is alone. That VM gets an entry in `errors`, and the others keep their
//! samples.

use std::collections::HashMap;

use vmpulse_plugin_sdk::{CollectResult, PluginError, Vm, VmError, log};

use crate::counters::PerfCatalog;
use crate::error::VimError;
use crate::perf::{self, QuerySpec};
use crate::property::{self, ObjectContent, PropertySpec, Selection};
use crate::sample::{self, PerfValues, VmProperties};
use crate::session::Session;
use crate::soap::MoRef;

/// The max number of VMs handled in one pass. The host sends batches of this size, and a
/// larger batch is worked through in several passes.
pub const MAX_BATCH: usize = 50;

const PROPERTY_SPECS: &[PropertySpec] = &[PropertySpec {
    kind: "VirtualMachine",
    paths: &[
        "runtime.powerState",
        "config.hardware.numCPU",
        "config.cpuAllocation.limit",
        "config.cpuAllocation.reservation",
        "guest.toolsRunningStatus",
        "guest.disk",
        "summary.quickStats.uptimeSeconds",
        "summary.quickStats.guestMemoryUsage",
    ],
}];

/// One VM of the batch.
struct Target<'a> {
    vm: &'a Vm,
    moref: MoRef,
}

/// The data one pass gathered.
#[derive(Default)]
struct PassData {
    now_ms: i64,
    perf: HashMap<String, PerfValues>,
    properties: HashMap<String, VmProperties>,
    /// Faults that concerned one VM, by managed object ID.
    faults: Vec<(String, VimError)>,
}

/// Collects one sample per VM that has data.
///
/// # Errors
///
/// Only failures of the whole batch: vCenter unreachable, the session lost for good, an
/// unreadable response. A fault about one VM goes in the result's `errors`.
pub fn collect(session: &mut Session, vms: &[Vm]) -> Result<CollectResult, PluginError> {
    let mut result = CollectResult::default();
    let mut targets = Vec::with_capacity(vms.len());
    for vm in vms {
        match &vm.source_ref {
            Some(moref) if !moref.is_empty() => targets.push(Target {
                vm,
                moref: MoRef::new("VirtualMachine", moref),
            }),
            _ => result.errors.push(VmError {
                vm_id: vm.id.clone(),
                error: PluginError::Other(
                    "the VM has no source-ref (managed object ID), so it was not discovered by \
                     this vSphere collector"
                        .to_owned(),
                ),
            }),
        }
    }

    for pass in targets.chunks(MAX_BATCH) {
        let data = session.run(|session| gather(session, pass))?;
        record_pass(pass, &data, &mut result);
    }
    Ok(result)
}

fn gather(session: &mut Session, targets: &[Target]) -> Result<PassData, VimError> {
    let mut data = PassData {
        now_ms: session.current_time_ms()?,
        ..PassData::default()
    };
    let catalog = session.perf_catalog()?;
    let morefs: Vec<MoRef> = targets.iter().map(|t| t.moref.clone()).collect();

    for query in perf::plan_queries(&morefs, &catalog) {
        query_splitting_faults(session, &query, &catalog, &mut data)?;
    }
    data.properties = read_properties(session, &morefs)?;
    Ok(data)
}

/// Runs one QueryPerf. On a fault, it runs each half of the VMs separately, down to one VM.
fn query_splitting_faults(
    session: &mut Session,
    specs: &[QuerySpec],
    catalog: &PerfCatalog,
    data: &mut PassData,
) -> Result<(), VimError> {
    match perf::query(session, specs, data.now_ms) {
        Ok(samples) => {
            for sample in &samples {
                data.perf
                    .entry(sample.entity.value.clone())
                    .and_modify(|values| values.merge(sample, catalog))
                    .or_insert_with(|| PerfValues::from_sample(sample, catalog));
            }
            Ok(())
        }
        Err(VimError::Fault(fault)) if !fault.is_not_authenticated() => {
            let first = &specs[0].entity;
            if specs.iter().all(|spec| spec.entity == *first) {
                data.faults
                    .push((first.value.clone(), VimError::Fault(fault)));
                return Ok(());
            }
            let (left, right) = split_by_entity(specs);
            query_splitting_faults(session, left, catalog, data)?;
            query_splitting_faults(session, right, catalog, data)
        }
        Err(err) => Err(err),
    }
}

/// Splits specs in two halves that never part the specs of one entity.
fn split_by_entity(specs: &[QuerySpec]) -> (&[QuerySpec], &[QuerySpec]) {
    let mut middle = specs.len() / 2;
    while middle > 0 && specs[middle].entity == specs[middle - 1].entity {
        middle -= 1;
    }
    if middle == 0 {
        middle = specs
            .iter()
            .position(|spec| spec.entity != specs[0].entity)
            .unwrap_or(specs.len());
    }
    specs.split_at(middle)
}

/// Reads the Tools and allocation properties of the batch. A fault here costs the guest
/// fields and CPU allocations of the batch, not its counter values.
fn read_properties(
    session: &mut Session,
    morefs: &[MoRef],
) -> Result<HashMap<String, VmProperties>, VimError> {
    let mut properties = HashMap::new();
    let page_size = session.config().page_size;
    let result = property::retrieve(
        session,
        PROPERTY_SPECS,
        Selection::Objects(morefs),
        page_size,
        |object| {
            properties.insert(object.obj.value.clone(), vm_properties(&object));
        },
    );
    match result {
        Ok(()) => Ok(properties),
        Err(VimError::Fault(fault)) if !fault.is_not_authenticated() => {
            log::warn(&format!(
                "reading VMware Tools data of {} VMs failed ({fault}), so their samples have \
                 no guest fields or CPU allocations",
                morefs.len()
            ));
            Ok(HashMap::new())
        }
        Err(err) => Err(err),
    }
}

fn vm_properties(object: &ObjectContent) -> VmProperties {
    let tools = object.text("guest.toolsRunningStatus");
    let guest_disks = object
        .value("guest.disk")
        .map(|array| {
            array
                .children_named("GuestDiskInfo")
                .filter_map(|disk| {
                    let capacity = disk.child_text("capacity")?.trim().parse().ok()?;
                    let free = disk.child_text("freeSpace")?.trim().parse().ok()?;
                    Some((capacity, free))
                })
                .collect()
        })
        .unwrap_or_default();
    VmProperties {
        powered_on: object.text("runtime.powerState") == Some("poweredOn"),
        tools_running: matches!(
            tools,
            Some("guestToolsRunning" | "guestToolsExecutingScripts")
        ),
        vcpus: object
            .integer("config.hardware.numCPU")
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0),
        cpu_limit_mhz: object.integer("config.cpuAllocation.limit"),
        cpu_reservation_mhz: object.integer("config.cpuAllocation.reservation"),
        guest_disks,
        uptime_seconds: object.integer("summary.quickStats.uptimeSeconds"),
        guest_memory_mb: object.integer("summary.quickStats.guestMemoryUsage"),
    }
}

fn record_pass(targets: &[Target], data: &PassData, result: &mut CollectResult) {
    for target in targets {
        let moref = &target.moref.value;
        if let Some((_, err)) = data.faults.iter().find(|(vm, _)| vm == moref) {
            result.errors.push(VmError {
                vm_id: target.vm.id.clone(),
                error: err.clone().into(),
            });
        }
        let sample = sample::build(
            &target.vm.id,
            target.vm.vcpus,
            data.now_ms,
            data.perf.get(moref),
            data.properties.get(moref),
        );
        result.samples.extend(sample);
    }
    if !data.faults.is_empty() {
        log::warn(&format!(
            "QueryPerf failed for {} VMs of the batch (first: {} {})",
            data.faults.len(),
            data.faults[0].0,
            data.faults[0].1
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::MetricId;

    fn spec(vm: &str) -> QuerySpec {
        QuerySpec {
            entity: MoRef::new("VirtualMachine", vm),
            metrics: vec![MetricId {
                key: 1,
                per_instance: false,
            }],
        }
    }

    #[test]
    fn split_keeps_entity_specs_together() {
        let specs = [spec("a"), spec("b"), spec("b"), spec("c")];
        let (left, right) = split_by_entity(&specs);
        assert_eq!(left.len(), 1);
        assert_eq!(right.len(), 3);

        let specs = [spec("a"), spec("a"), spec("b")];
        let (left, right) = split_by_entity(&specs);
        assert_eq!((left.len(), right.len()), (2, 1));

        let specs = [spec("a"), spec("b")];
        let (left, right) = split_by_entity(&specs);
        assert_eq!((left.len(), right.len()), (1, 1));
    }
}
