//! The success envelopes `{code, message, data}`, one named type per kind of `data`, so the
//! OpenAPI document shows each response's full schema.

use poem_openapi::Object;

use super::Ctx;
use super::alerts::{AlertList, AlertView};
use super::history::VmHistory;
use super::inventory::VmList;
use super::operations::{CollectionRun, PluginsReport};
use super::realtime::BatchResult;
use crate::i18n::Text;
use crate::metrics::RealtimeMetrics;
use crate::views::{AggregatedMetrics, SystemOverview};

macro_rules! envelopes {
    ($($(#[$doc:meta])* $name:ident($data:ty);)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Object)]
            pub struct $name {
                /// The HTTP status.
                pub code: u16,
                /// The outcome, in the language `Accept-Language` selects.
                pub message: String,
                pub data: $data,
            }

            impl $name {
                /// Wraps `data` with `status` and `text` in the reader's language.
                pub fn new(ctx: &Ctx, status: u16, text: &Text, data: $data) -> Self {
                    Self {
                        code: status,
                        message: text.get(ctx.lang).to_owned(),
                        data,
                    }
                }
            }
        )*
    };
}

envelopes! {
    /// A response whose `data` is a page of the VM list.
    VmListEnvelope(VmList);
    /// A response whose `data` is one VM's RealtimeMetrics.
    VmEnvelope(RealtimeMetrics);
    /// A response whose `data` is the metrics of many VMs.
    BatchEnvelope(BatchResult);
    /// A response whose `data` is an AggregatedMetrics.
    AggregateEnvelope(AggregatedMetrics);
    /// A response whose `data` is the SystemOverview.
    OverviewEnvelope(SystemOverview);
    /// A response whose `data` is stored samples of one VM.
    HistoryEnvelope(VmHistory);
    /// A response whose `data` is a list of alerts.
    AlertListEnvelope(AlertList);
    /// A response whose `data` is one alert.
    AlertEnvelope(AlertView);
    /// A response whose `data` is the plugins and collection loops.
    PluginsEnvelope(PluginsReport);
    /// A response whose `data` is the collection loops a forced collection started.
    CollectionRunEnvelope(CollectionRun);
}

#[cfg(test)]
mod tests {
    //! The API writes records with poem-openapi's `ToJSON`, the WebSocket channel and the
    //! store with serde: both must produce the same JSON.

    use poem_openapi::types::ToJSON;
    use serde::Serialize;

    use crate::alerts::{AlertMetric, Severity};
    use crate::metrics::{FIELDS, MetricAlert, RealtimeMetrics};
    use crate::timestamp::Timestamp;
    use crate::views::{
        AggregatedMetrics, AlertCount, CoreDisk, CoreMetrics, CoreNetwork, CoreUsage, CpuAggregate,
        DiskAggregate, HealthLevel, HealthScore, MemoryAggregate, NetworkAggregate, RecentAlert,
        Scope, SystemOverview, Trend, VmCount, VmStatusCount,
    };

    fn assert_same_json<T: Serialize + ToJSON>(value: &T) {
        let serde = serde_json::to_value(value).unwrap();
        let openapi = value.to_json().unwrap();
        assert_eq!(openapi, serde);
    }

    fn full_record() -> RealtimeMetrics {
        let mut record = RealtimeMetrics {
            vm_id: "vm-1".to_owned(),
            timestamp: Timestamp(1_764_866_888_123),
            ..RealtimeMetrics::default()
        };
        record.data_sources.vsphere = true;
        record.data_sources.guest_os = true;
        let values: Vec<Option<f64>> = (0..FIELDS.len()).map(|i| Some(i as f64 + 0.25)).collect();
        record.set_values(&values);
        record.alerts.push(MetricAlert {
            metric: AlertMetric::Cpu,
            severity: Severity::Critical,
            threshold: 90.0,
            current_value: 97.5,
            message: "CPU usage 97.5 % is above 90 %".to_owned(),
        });
        record
    }

    #[test]
    fn full_record_same_json() {
        let record = full_record();
        assert_same_json(&record);
        let json = record.to_json().unwrap();
        assert_eq!(json["cpu"].as_object().unwrap().len(), 10);
        assert_eq!(json["timestamp"], "2025-12-04T16:48:08.123Z");
    }

    #[test]
    fn sparse_record_same_json() {
        let mut record = RealtimeMetrics {
            vm_id: "vm-2".to_owned(),
            timestamp: Timestamp(0),
            ..RealtimeMetrics::default()
        };
        record.memory.usage_percent = Some(0.0);
        assert_same_json(&record);
        assert_same_json(&RealtimeMetrics::default());
    }

    fn aggregate(known: bool) -> AggregatedMetrics {
        let value = |v: f64| known.then_some(v);
        AggregatedMetrics {
            scope: Scope::Cluster,
            scope_id: "cl-1".to_owned(),
            scope_name: "Cluster 1".to_owned(),
            timestamp: Timestamp(1_764_866_888_000),
            vm_count: VmCount {
                total: 3,
                online: 2,
                offline: 1,
                error: 0,
            },
            cpu: CpuAggregate {
                avg_usage_percent: value(40.0),
                max_usage_percent: value(70.0),
                min_usage_percent: value(10.0),
                total_cores: 12,
                active_cores: value(4.8),
            },
            memory: MemoryAggregate {
                avg_usage_percent: value(50.0),
                max_usage_percent: value(60.0),
                min_usage_percent: value(40.0),
                total_gb: 24.0,
                used_gb: value(12.0),
            },
            disk: DiskAggregate {
                avg_usage_percent: value(30.0),
                max_usage_percent: value(35.0),
                total_read_iops: value(100.0),
                total_write_iops: value(50.0),
                avg_read_latency: value(1.5),
                avg_write_latency: value(2.5),
            },
            network: NetworkAggregate {
                total_in_bps: value(1e6),
                total_out_bps: value(2e6),
                avg_in_bps: value(5e5),
                avg_out_bps: value(1e6),
            },
        }
    }

    #[test]
    fn aggregates_same_json() {
        assert_same_json(&aggregate(true));
        assert_same_json(&aggregate(false));
        let sparse = aggregate(false).to_json().unwrap();
        assert!(sparse["cpu"].get("avgUsagePercent").is_none());
        assert_eq!(sparse["disk"], serde_json::json!({}));
    }

    #[test]
    fn overview_same_json() {
        let overview = SystemOverview {
            timestamp: Timestamp(1_764_866_888_000),
            health_score: HealthScore {
                value: 87,
                level: HealthLevel::Good,
                trend: Trend::Down,
            },
            vm_status: VmStatusCount {
                total: 5,
                online: 2,
                offline: 1,
                error: 1,
                warning: 1,
            },
            core_metrics: CoreMetrics {
                cpu: CoreUsage {
                    avg_usage_percent: Some(33.0),
                    alert_count: 1,
                },
                memory: CoreUsage {
                    avg_usage_percent: None,
                    alert_count: 0,
                },
                disk: CoreDisk {
                    avg_usage_percent: Some(81.0),
                    high_usage_count: 2,
                },
                network: CoreNetwork {
                    total_in_bps: None,
                    total_out_bps: Some(10.0),
                },
            },
            alerts: AlertCount {
                critical: 0,
                high: 1,
                medium: 0,
                low: 0,
                total: 1,
            },
            recent_alerts: vec![RecentAlert {
                id: "alt-1".to_owned(),
                vm_id: "vm-1".to_owned(),
                vm_name: "web-1".to_owned(),
                metric: AlertMetric::Cpu,
                severity: Severity::High,
                message: "CPU usage is high".to_owned(),
                timestamp: Timestamp(1_764_866_880_000),
            }],
        };
        assert_same_json(&overview);
    }
}
