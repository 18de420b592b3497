//! Real-time performance queries: planning QueryPerf calls under the metric limit and
//! reading their results.
//!
//! Each query requests the 20-second real-time interval with `maxSample` 1 in a window
//! that ends at vCenter's current time, so it returns the newest sample of each counter
//! and nothing older than the window. One sample per series keeps each value aligned with
//! its `sampleInfo`, which matters because a series can be shorter than its sample list
//! (the govmomi simulator leaves zero values out).

use crate::counters::PerfCatalog;
use crate::error::VimError;
use crate::session::Session;
use crate::soap::{MoRef, RequestBody, XmlWriter};
use crate::time;
use crate::xml::Element;

/// vCenter's real-time interval ID, in seconds.
pub const REALTIME_INTERVAL_ID: u32 = 20;

/// The max age of a sample. vCenter publishes a real-time sample some seconds after its
/// interval ends. A VM without a sample in this window gets no values, not stale ones.
pub const WINDOW_MS: i64 = 120_000;

/// The instance that requests the aggregate over all instances.
const AGGREGATE: &str = "";
/// The instance that requests every instance. The govmomi simulator echoes it back as an
/// instance name instead of expanding it, so it is never read as a real instance.
pub const ALL_INSTANCES: &str = "*";

/// One counter of one entity to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricId {
    pub key: i32,
    pub per_instance: bool,
}

/// The counters asked for one entity within one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySpec {
    pub entity: MoRef,
    pub metrics: Vec<MetricId>,
}

/// The newest sample of one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitySample {
    pub entity: MoRef,
    /// The end of the sample's interval, in vCenter's clock.
    pub timestamp_ms: i64,
    /// The length of the sample's interval.
    pub interval_s: Option<u32>,
    /// Each series that had a valid value: counter key, instance, value.
    pub values: Vec<(i32, String, i64)>,
}

/// Splits the counters of `entities` into queries of at most `catalog.max_query_metrics`
/// (entity, counter) pairs. An entity's counters may spread over two queries.
pub fn plan_queries(entities: &[MoRef], catalog: &PerfCatalog) -> Vec<Vec<QuerySpec>> {
    let metrics: Vec<MetricId> = catalog
        .specs()
        .map(|(spec, key)| MetricId {
            key,
            per_instance: spec.per_instance,
        })
        .collect();
    let limit = catalog.max_query_metrics.map(|limit| limit.max(1));

    let mut queries = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for entity in entities {
        let mut remaining = metrics.as_slice();
        while !remaining.is_empty() {
            let room = limit.map_or(remaining.len(), |limit| limit - used);
            let (taken, rest) = remaining.split_at(room.min(remaining.len()));
            current.push(QuerySpec {
                entity: entity.clone(),
                metrics: taken.to_vec(),
            });
            used += taken.len();
            remaining = rest;
            if limit.is_some_and(|limit| used >= limit) {
                queries.push(std::mem::take(&mut current));
                used = 0;
            }
        }
    }
    if !current.is_empty() {
        queries.push(current);
    }
    queries
}

/// Sends one QueryPerf for `specs` over the window ending at `end_ms` and returns the
/// newest sample of each entity in vCenter's result. vCenter leaves out entities
/// without real-time data, such as powered-off VMs.
///
/// # Errors
///
/// Any [`VimError`]: a fault concerns the whole query, even when one entity caused it.
pub fn query(
    session: &mut Session,
    specs: &[QuerySpec],
    end_ms: i64,
) -> Result<Vec<EntitySample>, VimError> {
    let start = time::format_ms(end_ms - WINDOW_MS).map_err(VimError::Protocol)?;
    let end = time::format_ms(end_ms).map_err(VimError::Protocol)?;
    let perf_manager = session.service().perf_manager.clone();
    let mut request = RequestBody::new("QueryPerf", &perf_manager);
    for spec in specs {
        write_query_spec(&mut request.params, spec, &start, &end);
    }

    let response = session.call(&request)?;
    response
        .children_named("returnval")
        .map(read_entity_metric)
        .collect::<Result<Vec<_>, _>>()
        .map(|samples| samples.into_iter().flatten().collect())
        .map_err(|err| VimError::Protocol(format!("unreadable QueryPerf result: {err}")))
}

/// Writes one PerfQuerySpec, its members in the order the vim25 schema requires.
fn write_query_spec(xml: &mut XmlWriter, spec: &QuerySpec, start: &str, end: &str) {
    xml.open("querySpec")
        .moref("entity", &spec.entity)
        .text("startTime", start)
        .text("endTime", end)
        .text("maxSample", "1");
    for metric in &spec.metrics {
        let instance = if metric.per_instance {
            ALL_INSTANCES
        } else {
            AGGREGATE
        };
        xml.open("metricId")
            .text("counterId", &metric.key.to_string())
            .text("instance", instance)
            .close("metricId");
    }
    xml.text("intervalId", &REALTIME_INTERVAL_ID.to_string())
        .close("querySpec");
}

/// Reads one PerfEntityMetric. Returns `None` for an entity without samples.
fn read_entity_metric(metric: &Element) -> Result<Option<EntitySample>, String> {
    if metric
        .xsi_type
        .as_deref()
        .is_some_and(|t| t != "PerfEntityMetric")
    {
        return Err(format!(
            "expected a PerfEntityMetric, got {}",
            metric.xsi_type.as_deref().unwrap_or_default()
        ));
    }
    let entity = metric
        .child("entity")
        .and_then(MoRef::from_element)
        .ok_or("a result without entity")?;
    let samples: Vec<&Element> = metric.children_named("sampleInfo").collect();
    let Some(newest) = samples.last() else {
        return Ok(None);
    };
    let timestamp = newest.child_text("timestamp").unwrap_or_default();
    let timestamp_ms = time::parse_ms(timestamp)
        .map_err(|err| format!("{}: sample time {timestamp:?}: {err}", entity.value))?;
    let interval_s = newest
        .child_text("interval")
        .and_then(|text| text.trim().parse().ok())
        .filter(|interval| *interval > 0);

    let mut values = Vec::new();
    for series in metric.children_named("value") {
        let Some(id) = series.child("id") else {
            continue;
        };
        let Some(key) = id
            .child_text("counterId")
            .and_then(|k| k.trim().parse().ok())
        else {
            continue;
        };
        let instance = id.child_text("instance").unwrap_or_default();
        let points: Vec<&Element> = series.children_named("value").collect();
        // A series shorter than the sample list cannot be matched to its times.
        if points.len() != samples.len() {
            continue;
        }
        let newest_value = points
            .last()
            .and_then(|point| point.text.trim().parse::<i64>().ok());
        // -1 means vCenter has no value for the interval: a gap, never a number.
        if let Some(value) = newest_value.filter(|value| *value >= 0) {
            values.push((key, instance.to_owned(), value));
        }
    }
    Ok(Some(EntitySample {
        entity,
        timestamp_ms,
        interval_s,
        values,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Counter;
    use crate::xml;

    fn catalog(limit: Option<usize>) -> PerfCatalog {
        PerfCatalog {
            keys: vec![
                (Counter::CpuUsage, 2),
                (Counter::CpuReady, 12),
                (Counter::DiskReadLatency, 175),
            ],
            max_query_metrics: limit,
        }
    }

    fn vms(count: usize) -> Vec<MoRef> {
        (0..count)
            .map(|i| MoRef::new("VirtualMachine", &format!("vm-{i}")))
            .collect()
    }

    #[test]
    fn unlimited_plan_is_one_query() {
        let queries = plan_queries(&vms(50), &catalog(None));
        assert_eq!(queries.len(), 1);
        assert_eq!(queries[0].len(), 50);
        assert!(queries[0][0].metrics[2].per_instance);
        assert!(!queries[0][0].metrics[0].per_instance);
    }

    #[test]
    fn plan_stays_under_limit_and_covers_every_pair() {
        for limit in [1, 2, 3, 4, 7, 64, 256] {
            let queries = plan_queries(&vms(50), &catalog(Some(limit)));
            let mut pairs = 0;
            for query in &queries {
                let size: usize = query.iter().map(|spec| spec.metrics.len()).sum();
                assert!(size <= limit, "limit {limit}: query of {size}");
                pairs += size;
            }
            assert_eq!(pairs, 150, "limit {limit}");
        }
    }

    #[test]
    fn spec_lists_members_in_schema_order() {
        let mut xml = XmlWriter::default();
        let spec = QuerySpec {
            entity: MoRef::new("VirtualMachine", "vm-1"),
            metrics: vec![
                MetricId {
                    key: 2,
                    per_instance: false,
                },
                MetricId {
                    key: 175,
                    per_instance: true,
                },
            ],
        };
        write_query_spec(&mut xml, &spec, "S", "E");
        assert_eq!(
            xml.into_string(),
            "<querySpec><entity type=\"VirtualMachine\">vm-1</entity><startTime>S</startTime>\
             <endTime>E</endTime><maxSample>1</maxSample><metricId><counterId>2</counterId>\
             <instance></instance></metricId><metricId><counterId>175</counterId>\
             <instance>*</instance></metricId><intervalId>20</intervalId></querySpec>"
        );
    }

    #[test]
    fn reads_newest_values_and_drops_gaps() {
        let metric = xml::parse(
            r#"<returnval xmlns:x="http://www.w3.org/2001/XMLSchema-instance" x:type="PerfEntityMetric">
                <entity type="VirtualMachine">vm-1</entity>
                <sampleInfo><timestamp>1970-01-01T00:00:20Z</timestamp><interval>20</interval></sampleInfo>
                <value x:type="PerfMetricIntSeries"><id><counterId>2</counterId><instance></instance></id><value>311</value></value>
                <value x:type="PerfMetricIntSeries"><id><counterId>12</counterId><instance></instance></id><value>-1</value></value>
                <value x:type="PerfMetricIntSeries"><id><counterId>90</counterId><instance></instance></id></value>
                <value x:type="PerfMetricIntSeries"><id><counterId>175</counterId><instance>scsi0:0</instance></id><value>4</value></value>
            </returnval>"#,
        )
        .unwrap();
        let sample = read_entity_metric(&metric).unwrap().unwrap();
        assert_eq!(sample.timestamp_ms, 20_000);
        assert_eq!(sample.interval_s, Some(20));
        assert_eq!(
            sample.values,
            vec![(2, String::new(), 311), (175, "scsi0:0".to_owned(), 4)]
        );
    }

    #[test]
    fn entity_without_samples_is_none() {
        let metric =
            xml::parse(r#"<returnval><entity type="VirtualMachine">vm-1</entity></returnval>"#)
                .unwrap();
        assert_eq!(read_entity_metric(&metric).unwrap(), None);
    }

    #[test]
    fn unreadable_time_is_an_error() {
        let metric = xml::parse(
            r#"<returnval><entity type="VirtualMachine">vm-1</entity>
               <sampleInfo><timestamp>soon</timestamp><interval>20</interval></sampleInfo></returnval>"#,
        )
        .unwrap();
        assert!(read_entity_metric(&metric).is_err());
    }
}
