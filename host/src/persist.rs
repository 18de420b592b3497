//! Keeping the live view and the history in the store.
//!
//! A writer task receives every finished cycle and writes, in one durable transaction, each
//! collected VM's values to the history (at the cycle's start time) and each VM's record
//! to the latest table. The inventory is written when a cycle refreshed it. At start,
//! [`restore`] rebuilds the live view from the file, so the API serves data at once after a
//! restart. A retention task removes expired history in small steps.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use vmpulse_store::{SampleRow, Store, StoreError, StoreOptions};

use crate::collection::{CycleOutput, CycleSink, now_ms};
use crate::config::StorageConfig;
use crate::live::{LiveData, LiveState, SourceInventory, VmOutcome, VmRecord};
use crate::metrics::FIELDS;
use crate::plugin::Vm;

/// Cycles waiting for the writer; past this the newest cycle is dropped and counted.
const WRITE_QUEUE: usize = 64;
/// History blocks removed per retention transaction.
const SWEEP_STEP_BLOCKS: usize = 256;
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Opens (or creates) the store named in the config, with the metric table as its schema.
///
/// # Errors
///
/// [`StoreError`] naming the path, for example when the file is not a vmpulse store.
pub fn open_store(config: &StorageConfig) -> Result<Store, StoreError> {
    let schema: Vec<String> = FIELDS.iter().map(|field| field.path()).collect();
    let schema: Vec<&str> = schema.iter().map(String::as_str).collect();
    let options = StoreOptions {
        retention: config.retention(),
        ..StoreOptions::default()
    };
    Store::open(&config.path, &schema, options)
}

/// The inventory as stored: each source's entities and every VM's inventory record.
#[derive(Serialize, Deserialize)]
struct StoredInventory {
    sources: HashMap<String, SourceInventory>,
    vms: Vec<(String, Vm)>,
}

/// Rebuilds the live view from the store; returns how many VMs it restored.
///
/// Only entities of the discovery collectors in `sources` come back: those of a collector
/// removed or renamed in the config would otherwise stay errored and keep their IDs from
/// the collector that now reports them.
///
/// # Errors
///
/// [`StoreError`] when the file cannot be read. Records that no longer decode (written by
/// an incompatible version) are skipped with a warning.
pub fn restore(store: &Store, live: &LiveState, sources: &[&str]) -> Result<usize, StoreError> {
    let Some(bytes) = store.inventory()? else {
        return Ok(0);
    };
    let inventory: StoredInventory = match serde_json::from_slice(&bytes) {
        Ok(inventory) => inventory,
        Err(err) => {
            tracing::warn!(path = %store.path().display(), error = %err, "stored inventory is unreadable; starting empty");
            return Ok(0);
        }
    };
    let mut data = LiveData {
        sources: inventory.sources,
        vms: HashMap::new(),
    };
    data.sources
        .retain(|source, _| sources.contains(&source.as_str()));
    for (source, vm) in inventory.vms {
        if !sources.contains(&source.as_str()) {
            continue;
        }
        let record = VmRecord {
            vm,
            source,
            metrics: None,
            collected_at_ms: None,
            last_error: None,
        };
        data.vms.insert(record.vm.id.clone(), record);
    }
    for (vm_id, bytes) in store.latest_all()? {
        match serde_json::from_slice::<VmRecord>(&bytes) {
            Ok(saved) => {
                if let Some(record) = data.vms.get_mut(&vm_id) {
                    record.metrics = saved.metrics;
                    record.collected_at_ms = saved.collected_at_ms;
                    record.last_error = saved.last_error;
                }
            }
            Err(err) => tracing::warn!(vm = %vm_id, error = %err, "stored record is unreadable"),
        }
    }
    let count = data.vms.len();
    live.restore(data);
    Ok(count)
}

/// The cycle sink that queues cycles for the writer task.
pub struct StoreWriter {
    queue: mpsc::Sender<Arc<CycleOutput>>,
    dropped: AtomicU64,
}

impl StoreWriter {
    /// Starts the writer task; it ends when the returned sink is dropped.
    pub fn start(
        store: Arc<Store>,
        live: Arc<LiveState>,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(WRITE_QUEUE);
        let task = tokio::spawn(write_cycles(store, live, receiver));
        let writer = Arc::new(Self {
            queue,
            dropped: AtomicU64::new(0),
        });
        (writer, task)
    }

    /// Cycles not written because the queue was full.
    pub fn dropped_cycles(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl CycleSink for StoreWriter {
    fn on_cycle(&self, output: Arc<CycleOutput>) {
        if self.queue.try_send(output).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                dropped,
                "the store cannot keep up; a cycle's history was not written"
            );
        }
    }
}

async fn write_cycles(
    store: Arc<Store>,
    live: Arc<LiveState>,
    mut receiver: mpsc::Receiver<Arc<CycleOutput>>,
) {
    while let Some(output) = receiver.recv().await {
        let batch = CycleBatch::build(&output, &live);
        let store = store.clone();
        let source = output.report.source.clone();
        let cycle = output.report.number;
        let written = tokio::task::spawn_blocking(move || batch.write(&store)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(%source, cycle, error = %err, "cannot store the cycle"),
            Err(err) => tracing::error!(%source, cycle, error = %err, "the store writer panicked"),
        }
    }
}

/// Everything one cycle writes, encoded before entering the blocking thread.
struct CycleBatch {
    timestamp_ms: u64,
    rows: Vec<(String, Vec<Option<f64>>)>,
    latest: Vec<(String, Vec<u8>)>,
    inventory: Option<Vec<u8>>,
}

impl CycleBatch {
    fn build(output: &CycleOutput, live: &LiveState) -> Self {
        let rows = output
            .outcomes
            .iter()
            .filter_map(|(vm_id, outcome)| match outcome {
                VmOutcome::Collected(metrics) => Some((vm_id.clone(), metrics.values())),
                VmOutcome::Failed(_) => None,
            })
            .collect();
        let latest = live.read(|data| {
            output
                .outcomes
                .iter()
                .filter_map(|(vm_id, _)| data.vms.get(vm_id))
                .filter_map(|record| Some((record.vm.id.clone(), serde_json::to_vec(record).ok()?)))
                .collect()
        });
        let inventory = output
            .report
            .inventory_refreshed
            .then(|| live.read(encode_inventory));
        Self {
            timestamp_ms: u64::try_from(output.report.started_at_ms).unwrap_or(0),
            rows,
            latest,
            inventory,
        }
    }

    fn write(self, store: &Store) -> Result<(), StoreError> {
        if let Some(inventory) = &self.inventory {
            store.put_inventory(inventory)?;
        }
        let rows: Vec<SampleRow<'_>> = self
            .rows
            .iter()
            .map(|(vm_id, values)| SampleRow { vm_id, values })
            .collect();
        let latest: Vec<(&str, &[u8])> = self
            .latest
            .iter()
            .map(|(vm_id, record)| (vm_id.as_str(), record.as_slice()))
            .collect();
        store.write_cycle(self.timestamp_ms, &rows, &latest)?;
        Ok(())
    }
}

fn encode_inventory(data: &LiveData) -> Vec<u8> {
    let inventory = StoredInventory {
        sources: data.sources.clone(),
        vms: data
            .vms
            .values()
            .map(|record| (record.source.clone(), record.vm.clone()))
            .collect(),
    };
    serde_json::to_vec(&inventory).expect("inventory types always encode as JSON")
}

/// Removes expired history every ten minutes, one bounded transaction at a time, so a
/// cycle write waits for at most one step.
pub async fn run_retention(store: Arc<Store>) {
    let mut ticker = tokio::time::interval(SWEEP_EVERY);
    loop {
        ticker.tick().await;
        loop {
            let store = store.clone();
            let now = u64::try_from(now_ms()).unwrap_or(0);
            match tokio::task::spawn_blocking(move || store.sweep(now, SWEEP_STEP_BLOCKS)).await {
                Ok(Ok(true)) => tokio::task::yield_now().await,
                Ok(Ok(false)) => break,
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "retention sweep failed");
                    break;
                }
                Err(err) => {
                    tracing::error!(error = %err, "retention sweep panicked");
                    break;
                }
            }
        }
    }
}
