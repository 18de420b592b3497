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
        let mut recent = active.clone();
        recent.extend(self.alerts.resolved(5));
        recent.sort_by_key(|alert| std::cmp::Reverse(alert.changed_at_ms));
        recent.truncate(5);
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
