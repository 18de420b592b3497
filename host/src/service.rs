//! The state the REST API and the WebSocket channel serve, and the work done after every
//! collection cycle: alert evaluation, then aggregates, then a notice to push subscribers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc};
use vmpulse_store::Store;

use crate::alerts::AlertEngine;
use crate::collection::{CycleOutput, CycleSink, LoopStats, now_ms};
use crate::config::Config;
use crate::live::{LiveState, VmOutcome};
use crate::plugin::Plugin;
use crate::views::{ViewCache, ViewInputs, Views};

/// Cycles queued for processing before new ones are dropped (and counted).
const PIPELINE_QUEUE: usize = 16;

/// Notices buffered for push subscribers that are behind.
const CYCLE_NOTICE_CAPACITY: usize = 64;

/// A processed cycle: alerts evaluated and aggregates current.
#[derive(Debug, Clone)]
pub struct CycleDone {
    pub source: String,
    pub number: u64,
    /// VMs with fresh metrics from this cycle.
    pub vm_ids: Arc<Vec<String>>,
    pub views: Arc<Views>,
}

/// Everything the API reads.
pub struct Service {
    pub config: Arc<Config>,
    pub live: Arc<LiveState>,
    pub store: Option<Arc<Store>>,
    pub alerts: Arc<AlertEngine>,
    pub views: Arc<ViewCache>,
    /// Loaded plugins, for their status.
    pub plugins: Vec<Arc<Plugin>>,
    /// Plugins that failed to load, with the reason.
    pub failed_plugins: Vec<(String, String)>,
    /// Counters of each collection loop, by source id.
    pub loops: Mutex<Vec<(String, Arc<Mutex<LoopStats>>)>>,
    /// Handles that start a cycle of each loop at once.
    pub triggers: Mutex<Vec<Arc<Notify>>>,
    cycles: broadcast::Sender<CycleDone>,
    pub telemetry: crate::telemetry::Telemetry,
    /// Cycles not processed because the pipeline was behind.
    pub dropped_cycles: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    pub fn new(
        config: Arc<Config>,
        live: Arc<LiveState>,
        store: Option<Arc<Store>>,
        alerts: Arc<AlertEngine>,
        plugins: Vec<Arc<Plugin>>,
        failed_plugins: Vec<(String, String)>,
    ) -> Arc<Self> {
        let (cycles, _) = broadcast::channel(CYCLE_NOTICE_CAPACITY);
        let views = Arc::new(ViewCache::new(config.groups.clone()));
        Arc::new(Self {
            config,
            live,
            store,
            alerts,
            views,
            plugins,
            failed_plugins,
            loops: Mutex::new(Vec::new()),
            triggers: Mutex::new(Vec::new()),
            cycles,
            telemetry: Default::default(),
            dropped_cycles: Default::default(),
        })
    }

    /// Subscribes to processed cycles.
    pub fn subscribe_cycles(&self) -> broadcast::Receiver<CycleDone> {
        self.cycles.subscribe()
    }

    /// Returns the collection interval.
    pub fn interval(&self) -> Duration {
        self.config.collection.interval()
    }

    /// Recomputes the views from the live state now.
    pub fn refresh_views(&self) -> Arc<Views> {
        let active = self.alerts.active();
        let recent = self.alerts.recent(5);
        let inputs = ViewInputs {
            active_alerts: &active,
            recent_alerts: &recent,
            now_ms: now_ms(),
            interval: self.interval(),
        };
        self.live.read(|data| self.views.refresh(data, &inputs))
    }

    /// Processes one cycle: alerts, then views, then a notice to subscribers.
    pub async fn process_cycle(&self, output: &CycleOutput) -> CycleDone {
        let collected: Vec<String> = output
            .outcomes
            .iter()
            .filter(|(_, outcome)| matches!(outcome, VmOutcome::Collected(_)))
            .map(|(id, _)| id.clone())
            .collect();
        self.alerts.evaluate(&self.live, &collected, now_ms()).await;
        let views = self.refresh_views();
        let done = CycleDone {
            source: output.report.source.clone(),
            number: output.report.number,
            vm_ids: Arc::new(collected),
            views,
        };
        let _ = self.cycles.send(done.clone());
        done
    }

    /// Starts a cycle of every collection loop now; returns how many loops were started.
    pub fn force_collection(&self) -> usize {
        let triggers = self.triggers.lock().unwrap_or_else(|p| p.into_inner());
        for trigger in triggers.iter() {
            trigger.notify_one();
        }
        triggers.len()
    }

    /// Returns the time of the newest cycle that collected any VM, over every loop.
    pub fn last_success_ms(&self) -> Option<i64> {
        let loops = self.loops.lock().unwrap_or_else(|p| p.into_inner());
        loops
            .iter()
            .filter_map(|(_, stats)| {
                stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .last_success_ms
            })
            .max()
    }
}

/// Feeds cycles to [`Service::process_cycle`] on its own task, so collection never waits
/// for rule plugins or aggregation.
pub struct Pipeline {
    queue: mpsc::Sender<Arc<CycleOutput>>,
    service: Arc<Service>,
}

impl Pipeline {
    pub fn start(service: Arc<Service>) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (queue, mut receiver) = mpsc::channel::<Arc<CycleOutput>>(PIPELINE_QUEUE);
        let worker = service.clone();
        let task = tokio::spawn(async move {
            while let Some(output) = receiver.recv().await {
                worker.process_cycle(&output).await;
            }
        });
        (Arc::new(Self { queue, service }), task)
    }
}

impl CycleSink for Pipeline {
    fn on_cycle(&self, output: Arc<CycleOutput>) {
        if self.queue.try_send(output).is_err() {
            let dropped = self
                .service
                .dropped_cycles
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            tracing::error!(
                dropped,
                "alert and aggregate processing is behind; a cycle was skipped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::alerts::RuleResult;
    use crate::metrics::RealtimeMetrics;
    use crate::plugin::bindings::types::{Finding, MetricGroup, Severity};

    const CYCLE_MS: i64 = 30_000;

    /// Returns a result for `vm_id` with CPU usage `cpu` and a high finding above 80.
    fn result(vm_id: &str, cpu: f64) -> RuleResult {
        let mut metrics = RealtimeMetrics {
            vm_id: vm_id.to_owned(),
            ..RealtimeMetrics::default()
        };
        metrics.cpu.usage_percent = Some(cpu);
        let findings = (cpu > 80.0)
            .then(|| Finding {
                rule: "cpu.usagePercent".to_owned(),
                group: MetricGroup::Cpu,
                severity: Severity::High,
                threshold: 80.0,
                current_value: cpu,
                hold_seconds: 0,
                message: String::new(),
            })
            .into_iter()
            .collect();
        RuleResult {
            vm: crate::live::test_vm(vm_id, vm_id),
            metrics,
            plugin: "rules".to_owned(),
            findings,
        }
    }

    #[test]
    fn overview_recent_alerts_by_last_change() {
        let config = Config::parse(
            "",
            std::path::Path::new("test.toml"),
            std::path::Path::new("/"),
        )
        .expect("empty config");
        let alerts = AlertEngine::new(Vec::new(), Default::default(), None).expect("no store");
        let service = Service::new(
            Arc::new(config),
            Arc::new(LiveState::default()),
            None,
            Arc::new(alerts),
            Vec::new(),
            Vec::new(),
        );
        let vms = ["a1", "a2", "a3", "a4", "a5", "b"];
        let known: HashSet<String> = vms.iter().map(|id| (*id).to_owned()).collect();
        let apply = |ids: &[&str], cpu: f64, now: i64| {
            let results = ids.iter().map(|id| result(id, cpu)).collect();
            service.alerts.apply_results(results, &known, now);
        };
        let (long_running, short) = vms.split_at(5);
        apply(long_running, 90.0, 0);
        apply(short, 90.0, 10 * CYCLE_MS);
        apply(short, 70.0, 11 * CYCLE_MS);
        apply(short, 70.0, 12 * CYCLE_MS);
        // The long-running alerts resolve after the short one but fired long before it.
        apply(long_running, 70.0, 13 * CYCLE_MS);
        apply(long_running, 70.0, 14 * CYCLE_MS);

        let overview = service.refresh_views().overview(crate::i18n::Lang::En);

        assert_eq!(overview.recent_alerts.len(), 5);
        assert_eq!(overview.recent_alerts[0].vm_id, "b");
        assert_eq!(
            overview.recent_alerts[0].timestamp,
            crate::timestamp::Timestamp(10 * CYCLE_MS)
        );
    }
}
