//! Collection cycles: one loop per discovery collector (one per vCenter).
//!
//! Every interval a loop refreshes its inventory when due, splits the powered-on VMs into
//! batches and runs them with bounded concurrency. Each batch is one `collect` call of the
//! discovery collector plus one per enrichment collector, each under the plugin's call
//! deadline, so a failed or slow batch marks only its own VMs as errored. A cycle that
//! outlasts the interval makes the loop skip the ticks it overran, counted in
//! [`LoopStats::skipped_ticks`]: two cycles of one vCenter never run at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;

use crate::config::CollectionConfig;
use crate::live::{LiveState, VmOutcome};
use crate::metrics::RealtimeMetrics;
use crate::plugin::bindings::types::PowerState;
use crate::plugin::{CollectResult, Plugin, PluginError, Vm, describe_guest_error};

/// The summary of one cycle.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CycleReport {
    pub source: String,
    pub number: u64,
    pub started_at_ms: i64,
    pub duration_ms: f64,
    /// Powered-on VMs the cycle tried to collect.
    pub vms_scheduled: usize,
    pub vms_collected: usize,
    pub vms_failed: usize,
    pub batches: usize,
    pub batches_failed: usize,
    /// True when `discover` ran and succeeded in this cycle.
    pub inventory_refreshed: bool,
    /// The inventory refresh's error, when one ran and failed.
    pub inventory_error: Option<String>,
}

/// A cycle's results, handed to whatever stores, judges or pushes them.
#[derive(Debug, Clone)]
pub struct CycleOutput {
    pub report: CycleReport,
    pub outcomes: Vec<(String, VmOutcome)>,
}

/// Receives every finished cycle, after the live view was updated.
pub trait CycleSink: Send + Sync {
    fn on_cycle(&self, output: Arc<CycleOutput>);
}

/// Counters of one loop, for status output and metrics.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoopStats {
    pub cycles: u64,
    /// Ticks skipped because the cycle before was still running.
    pub skipped_ticks: u64,
    pub last_cycle: Option<CycleReport>,
    /// When a cycle last collected at least one VM, in ms since the epoch.
    pub last_success_ms: Option<i64>,
}

/// The collection loop of one discovery collector.
pub struct CollectionLoop {
    source: Arc<Plugin>,
    enrichers: Vec<Arc<Plugin>>,
    settings: CollectionConfig,
    live: Arc<LiveState>,
    sinks: Vec<Arc<dyn CycleSink>>,
    stats: Arc<Mutex<LoopStats>>,
    trigger: Arc<Notify>,
    inventory_loaded_at: Mutex<Option<Instant>>,
    /// After vCenter rejects the credentials: when to try again, and the reason.
    auth_blocked: Mutex<Option<(Instant, String)>>,
}

/// How long a loop waits after vCenter rejected its credentials. Each attempt is a failed
/// login, and vCenter locks an account after a few of them (by default 5 in 3 minutes).
pub const AUTH_RETRY_AFTER: Duration = Duration::from_secs(300);

impl CollectionLoop {
    pub fn new(
        source: Arc<Plugin>,
        enrichers: Vec<Arc<Plugin>>,
        settings: CollectionConfig,
        live: Arc<LiveState>,
        sinks: Vec<Arc<dyn CycleSink>>,
    ) -> Self {
        Self {
            source,
            enrichers,
            settings,
            live,
            sinks,
            stats: Arc::default(),
            trigger: Arc::default(),
            inventory_loaded_at: Mutex::new(None),
            auth_blocked: Mutex::new(None),
        }
    }

    /// Returns a handle that starts a cycle at once when notified; the interval then restarts.
    pub fn trigger(&self) -> Arc<Notify> {
        self.trigger.clone()
    }

    /// Returns the loop's counters, shared with readers.
    pub fn stats(&self) -> Arc<Mutex<LoopStats>> {
        self.stats.clone()
    }

    /// Runs cycles every interval until `shutdown` turns true, then calls the collector's
    /// `shutdown` so it can log out.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let interval = self.settings.interval();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.trigger.notified() => ticker.reset(),
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            let started = Instant::now();
            self.run_cycle().await;
            let overrun = started.elapsed().as_nanos() / interval.as_nanos();
            if overrun > 0 {
                let skipped = u64::try_from(overrun).unwrap_or(u64::MAX);
                self.lock_stats().skipped_ticks += skipped;
                tracing::warn!(
                    source = %self.source.id(),
                    skipped,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "collection cycle outlasted the interval; skipping ticks"
                );
            }
        }
        if let Err(err) = self.source.shutdown().await {
            tracing::warn!(source = %self.source.id(), error = %err, "collector shutdown failed");
        }
    }

    /// Runs one cycle now and returns its report.
    pub async fn run_cycle(&self) -> CycleReport {
        let started = Instant::now();
        let started_at_ms = now_ms();
        let number = self.lock_stats().cycles + 1;

        let vms;
        let mut results: Vec<BatchResult> = Vec::new();
        let mut batch_count = 0;
        let refresh = match self.auth_block_reason() {
            Some(reason) => {
                // No call at all: each would be another failed login.
                vms = self.collectable_vms();
                results.push(BatchResult::skipped(&vms, &reason));
                None
            }
            None => {
                let refresh = self.refresh_inventory_if_due().await;
                vms = self.collectable_vms();
                if let Some(Err(err)) = &refresh
                    && err.kind() == "auth"
                {
                    self.block_after_auth_failure(err);
                    results.push(BatchResult::skipped(&vms, &err.to_string()));
                } else {
                    let batches: Vec<Vec<Vm>> = vms
                        .chunks(self.settings.batch_size)
                        .map(<[Vm]>::to_vec)
                        .collect();
                    batch_count = batches.len();
                    results = self.collect_batches(batches).await;
                }
                refresh
            }
        };

        let mut outcomes = Vec::with_capacity(vms.len());
        let mut batches_failed = 0;
        for result in results {
            batches_failed += usize::from(result.failed);
            outcomes.extend(result.outcomes);
        }
        let vms_failed = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, VmOutcome::Failed(_)))
            .count();
        self.live.apply(&outcomes, now_ms());

        let report = CycleReport {
            source: self.source.id().to_owned(),
            number,
            started_at_ms,
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            vms_scheduled: vms.len(),
            vms_collected: outcomes.len() - vms_failed,
            vms_failed,
            batches: batch_count,
            batches_failed,
            inventory_refreshed: matches!(refresh, Some(Ok(()))),
            inventory_error: refresh.and_then(Result::err).map(|err| err.to_string()),
        };
        self.finish(report.clone(), outcomes);
        report
    }

    fn finish(&self, report: CycleReport, outcomes: Vec<(String, VmOutcome)>) {
        tracing::info!(
            source = %report.source,
            cycle = report.number,
            duration_ms = report.duration_ms as u64,
            collected = report.vms_collected,
            failed = report.vms_failed,
            batches_failed = report.batches_failed,
            "collection cycle finished"
        );
        {
            let mut stats = self.lock_stats();
            stats.cycles = report.number;
            if report.vms_collected > 0 {
                stats.last_success_ms = Some(report.started_at_ms);
            }
            stats.last_cycle = Some(report.clone());
        }
        let output = Arc::new(CycleOutput { report, outcomes });
        for sink in &self.sinks {
            sink.on_cycle(output.clone());
        }
    }

    /// Runs the first batch alone, then the rest with bounded concurrency, so rejected
    /// credentials cost one failed login rather than one per batch.
    async fn collect_batches(&self, mut batches: Vec<Vec<Vm>>) -> Vec<BatchResult> {
        if batches.is_empty() {
            return Vec::new();
        }
        let rest = batches.split_off(1);
        let first = self.collect_batch(batches.remove(0)).await;
        if let Some(err) = &first.auth_error {
            self.block_after_auth_failure(err);
            let skipped: Vec<Vm> = rest.into_iter().flatten().collect();
            let skipped = BatchResult::skipped(&skipped, &err.to_string());
            return vec![first, skipped];
        }
        let mut results: Vec<BatchResult> = futures::stream::iter(rest)
            .map(|batch| self.collect_batch(batch))
            .buffer_unordered(self.settings.max_concurrent_batches)
            .collect()
            .await;
        results.insert(0, first);
        results
    }

    fn auth_block_reason(&self) -> Option<String> {
        let blocked = self.auth_blocked.lock().unwrap_or_else(|p| p.into_inner());
        let (until, reason) = blocked.as_ref()?;
        let remaining = until.checked_duration_since(Instant::now())?;
        Some(format!(
            "{reason}; next login attempt in {} s",
            remaining.as_secs()
        ))
    }

    fn block_after_auth_failure(&self, error: &PluginError) {
        tracing::error!(
            source = %self.source.id(),
            error = %error,
            retry_after_secs = AUTH_RETRY_AFTER.as_secs(),
            "vCenter rejected the credentials; pausing collection to avoid locking the account"
        );
        *self.auth_blocked.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now() + AUTH_RETRY_AFTER, error.to_string()));
    }

    /// Calls `discover` when the inventory is missing or older than its interval. On
    /// failure the previous inventory stays in use. Returns `None` when no refresh was due.
    async fn refresh_inventory_if_due(&self) -> Option<Result<(), PluginError>> {
        let due = self
            .inventory_loaded_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= self.settings.inventory_interval());
        if !due {
            return None;
        }
        match self.source.discover().await {
            Ok(inventory) => {
                let vms = self.live.replace_inventory(self.source.id(), inventory);
                *self
                    .inventory_loaded_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                tracing::info!(source = %self.source.id(), vms, "inventory refreshed");
                Some(Ok(()))
            }
            Err(err) => {
                tracing::warn!(source = %self.source.id(), error = %err, "inventory refresh failed");
                Some(Err(err))
            }
        }
    }

    /// Powered-on VMs on connected hosts: the others have no real-time data.
    fn collectable_vms(&self) -> Vec<Vm> {
        let disconnected = self.live.read(|data| {
            data.sources
                .get(self.source.id())
                .map(|inventory| {
                    inventory
                        .hosts
                        .iter()
                        .filter(|host| !host.connected)
                        .map(|host| host.id.clone())
                        .collect::<std::collections::HashSet<_>>()
                })
                .unwrap_or_default()
        });
        self.live
            .vms_of(self.source.id())
            .into_iter()
            .filter(|vm| vm.power_state == PowerState::PoweredOn)
            .filter(|vm| {
                vm.host_id
                    .as_ref()
                    .is_none_or(|h| !disconnected.contains(h))
            })
            .collect()
    }

    async fn collect_batch(&self, batch: Vec<Vm>) -> BatchResult {
        let guest_calls = futures::future::join_all(
            self.enrichers
                .iter()
                .map(|enricher| enricher.collect(&batch)),
        );
        let (primary, guest) = tokio::join!(self.source.collect(&batch), guest_calls);

        let primary = match primary {
            Ok(result) => result,
            Err(err) => return BatchResult::failed(&batch, err),
        };
        let guest_samples = guest_samples_by_vm(&self.enrichers, guest);
        BatchResult {
            outcomes: merge_batch(&batch, primary, &guest_samples),
            failed: false,
            auth_error: None,
        }
    }

    fn lock_stats(&self) -> std::sync::MutexGuard<'_, LoopStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct BatchResult {
    outcomes: Vec<(String, VmOutcome)>,
    failed: bool,
    /// The error, when the collector reported rejected credentials.
    auth_error: Option<PluginError>,
}

impl BatchResult {
    fn failed(batch: &[Vm], error: PluginError) -> Self {
        let mut result = Self::skipped(batch, &error.to_string());
        result.failed = true;
        result.auth_error = (error.kind() == "auth").then_some(error);
        result
    }

    /// Marks every VM of `vms` as failed for `reason` without a call.
    fn skipped(vms: &[Vm], reason: &str) -> Self {
        Self {
            outcomes: vms
                .iter()
                .map(|vm| (vm.id.clone(), VmOutcome::Failed(reason.to_owned())))
                .collect(),
            failed: false,
            auth_error: None,
        }
    }
}

/// Collects the enrichment samples by VM id. A failed enrichment call only means the batch
/// has no guest data this cycle, which `dataSources.guestOS = false` shows.
fn guest_samples_by_vm(
    enrichers: &[Arc<Plugin>],
    results: Vec<Result<CollectResult, PluginError>>,
) -> HashMap<String, Vec<RealtimeMetrics>> {
    let mut by_vm: HashMap<String, Vec<RealtimeMetrics>> = HashMap::new();
    for (enricher, result) in enrichers.iter().zip(results) {
        match result {
            Ok(result) => {
                for sample in &result.samples {
                    by_vm
                        .entry(sample.vm_id.clone())
                        .or_default()
                        .push(RealtimeMetrics::from_sample(sample));
                }
                for error in &result.errors {
                    tracing::debug!(
                        plugin = %enricher.id(),
                        vm = %error.vm_id,
                        error = %describe_guest_error(&error.error),
                        "no guest data"
                    );
                }
            }
            Err(err) => {
                tracing::debug!(plugin = %enricher.id(), error = %err, "guest collection failed")
            }
        }
    }
    by_vm
}

/// Builds each VM's outcome: the discovery collector's sample with the guest samples laid
/// over it, or the reason it has none.
fn merge_batch(
    batch: &[Vm],
    primary: CollectResult,
    guest: &HashMap<String, Vec<RealtimeMetrics>>,
) -> Vec<(String, VmOutcome)> {
    let mut samples: HashMap<String, RealtimeMetrics> = primary
        .samples
        .iter()
        .map(|sample| (sample.vm_id.clone(), RealtimeMetrics::from_sample(sample)))
        .collect();
    let mut errors: HashMap<String, String> = primary
        .errors
        .into_iter()
        .map(|e| (e.vm_id, describe_guest_error(&e.error)))
        .collect();

    batch
        .iter()
        .map(|vm| {
            let outcome = match samples.remove(&vm.id) {
                Some(mut metrics) => {
                    for guest_metrics in guest.get(&vm.id).into_iter().flatten() {
                        metrics.merge_guest(guest_metrics);
                    }
                    VmOutcome::Collected(Box::new(metrics))
                }
                None => VmOutcome::Failed(
                    errors
                        .remove(&vm.id)
                        .unwrap_or_else(|| "the collector returned no sample".to_owned()),
                ),
            };
            (vm.id.clone(), outcome)
        })
        .collect()
}

/// Returns the host's clock in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
