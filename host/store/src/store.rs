//! The [`Store`] handle: options, cycle writes, history reads, retention, latest records and
//! inventory. Alerts are in [`crate::alerts`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::codec::{MAX_TIMESTAMP_MS, decode_block};
use crate::history::{self, Appended, BlockLimits, HistoryWriter, corrupt_block};
use crate::tables::{INVENTORY, LATEST, Operation, OrFail, database_error};
use crate::{StoreError, open, schema};

/// Longest accepted VM or alert id, in bytes. vCenter managed object ids and instance UUIDs
/// are far shorter; the bound keeps keys small and rejects garbage early.
pub const MAX_ID_LEN: usize = 1024;

/// Settings of an opened store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long history is kept; [`Store::sweep`] removes blocks older than this.
    pub retention: Duration,
    /// Size in bytes that a sealed history block, with its key, should fit.
    ///
    /// Each VM's newest block is rewritten on every cycle, so larger blocks cost more write
    /// I/O but compress better. redb pages are 4 KiB and a larger value takes a power-of-two
    /// run of them, so a power of two wastes the least space. A sample of the benchmark's
    /// fleet model takes about 55 bytes, so 8 KiB holds about 145 samples, 70 minutes at a
    /// 30 s cycle.
    pub block_bytes: usize,
    /// Samples after which a block is sealed whatever its size. It bounds how far retention
    /// can overshoot, because [`Store::sweep`] removes whole blocks. 720 samples are 6 hours
    /// at a 30 s cycle.
    pub max_block_samples: u32,
    /// Memory redb may use for its page cache, in bytes. The default is 256 MiB, a quarter of
    /// redb's own default. By estimate, a cycle of 1,500 VMs rewrites about 20 MB of open
    /// blocks and latest records, so the cache also keeps recent history for reads.
    pub cache_size_bytes: usize,
    /// Verify the checksum of every page when opening, so a damaged file is rejected with
    /// [`StoreError::Corrupted`]. Without it redb trusts a file that was closed cleanly, and
    /// may panic on one damaged outside redb. The check reads the whole file.
    pub verify_on_open: bool,
    /// Resolved alerts kept; the oldest resolved ones are deleted beyond this.
    pub max_resolved_alerts: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            block_bytes: 8192,
            max_block_samples: 720,
            cache_size_bytes: 256 << 20,
            verify_on_open: true,
            max_resolved_alerts: 10_000,
        }
    }
}

/// One VM's metric values in a collection cycle, one entry per schema field.
#[derive(Debug, Clone, Copy)]
pub struct SampleRow<'a> {
    pub vm_id: &'a str,
    pub values: &'a [Option<f64>],
}

/// Sample counts of one [`Store::write_cycle`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleSummary {
    /// Samples added to the history.
    pub stored: usize,
    /// Samples skipped because the VM already had one at that timestamp.
    pub duplicates: usize,
}

/// One sample as read back: the timestamp and the requested fields' values.
pub type HistoryPoint = (u64, Vec<Option<f64>>);

/// An open store file.
///
/// All methods take `&self` and may be called from several threads. redb runs one write
/// transaction at a time, so writes queue behind each other. Reads run on MVCC snapshots, which
/// redb 5.0 documents as running concurrently with writes. Every method blocks on disk I/O, so
/// async callers should run it in `tokio::task::spawn_blocking`.
pub struct Store {
    pub(crate) db: Database,
    pub(crate) path: PathBuf,
    schema: Vec<String>,
    pub(crate) options: StoreOptions,
}

impl Store {
    /// Opens the store at `path`, creating it when no file exists there.
    ///
    /// `schema` lists the metric field names in the order of [`SampleRow::values`]. It must
    /// equal the stored list or extend it at the end. Old samples read appended fields as
    /// `None`.
    ///
    /// # Errors
    ///
    /// - [`StoreError::NotAStore`]: the file is not a redb database or lacks vmpulse metadata.
    /// - [`StoreError::Corrupted`]: the file fails redb's integrity check.
    /// - [`StoreError::SchemaMismatch`]: a stored field was renamed or removed.
    /// - [`StoreError::Open`]: redb cannot open the file, for instance because another process
    ///   has it open.
    pub fn open(
        path: impl AsRef<Path>,
        schema: &[&str],
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        schema::validate(schema)?;
        if options.max_block_samples == 0 || options.block_bytes < 1024 {
            return Err(StoreError::InvalidOptions {
                reason: format!(
                    "max_block_samples is {} and block_bytes is {}; they must be at least 1 \
                     and 1024",
                    options.max_block_samples, options.block_bytes
                ),
            });
        }

        let db = open::open_database(&path, schema, &options)?;
        Ok(Store {
            db,
            path,
            schema: schema.iter().map(|name| name.to_string()).collect(),
            options,
        })
    }

    /// Path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Field names, in the order of the values in samples.
    pub fn schema(&self) -> &[String] {
        &self.schema
    }

    /// Stores one collection cycle in a single durable transaction: every row's sample at
    /// `timestamp_ms`, and each VM's latest merged record.
    ///
    /// Writing a (VM, timestamp) pair that is already stored keeps the existing sample and
    /// counts it in [`CycleSummary::duplicates`], so a cycle can be retried safely. Rows may
    /// arrive out of time order; an older sample is merged into its block.
    ///
    /// # Errors
    ///
    /// Rejects the whole cycle, writing nothing, when a row has the wrong number of values or
    /// an invalid VM id, or the timestamp exceeds `i64::MAX`.
    pub fn write_cycle(
        &self,
        timestamp_ms: u64,
        rows: &[SampleRow<'_>],
        latest: &[(&str, &[u8])],
    ) -> Result<CycleSummary, StoreError> {
        self.validate_rows(timestamp_ms, rows)?;
        for (vm_id, _) in latest {
            validate_id("VM", vm_id)?;
        }

        let op = Operation::new(&self.path, "cycle write");
        let txn = self.db.begin_write().or_fail(op)?;
        let mut summary = CycleSummary::default();
        {
            let mut history =
                HistoryWriter::new(&txn, &self.path, self.field_count(), self.block_limits())?;
            for row in rows {
                match history.append(row.vm_id, timestamp_ms, row.values)? {
                    Appended::Stored => summary.stored += 1,
                    Appended::Duplicate => summary.duplicates += 1,
                }
            }
            let mut latest_table = txn.open_table(LATEST).or_fail(op)?;
            for (vm_id, record) in latest {
                latest_table.insert(*vm_id, *record).or_fail(op)?;
            }
        }
        txn.commit().or_fail(op)?;
        Ok(summary)
    }

    fn validate_rows(&self, timestamp_ms: u64, rows: &[SampleRow<'_>]) -> Result<(), StoreError> {
        for row in rows {
            validate_id("VM", row.vm_id)?;
            if row.values.len() != self.schema.len() {
                return Err(StoreError::FieldCount {
                    vm_id: row.vm_id.to_string(),
                    expected: self.schema.len(),
                    found: row.values.len(),
                });
            }
            if timestamp_ms > MAX_TIMESTAMP_MS {
                return Err(StoreError::TimestampOutOfRange {
                    vm_id: row.vm_id.to_string(),
                    timestamp_ms,
                });
            }
        }
        Ok(())
    }

    /// Returns the VM's samples with `from_ms <= timestamp <= to_ms`, oldest first.
    ///
    /// `fields` selects schema indices and their order; `None` returns every field. Values a
    /// sample did not have, including fields added to the schema after it was written, are
    /// `None`. The read transaction ends before decoding, so a long decode never pins old pages.
    pub fn range(
        &self,
        vm_id: &str,
        from_ms: u64,
        to_ms: u64,
        fields: Option<&[usize]>,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        if let Some(&index) = fields.and_then(|f| f.iter().find(|&&i| i >= self.schema.len())) {
            return Err(StoreError::FieldIndex {
                index,
                field_count: self.schema.len(),
            });
        }
        if from_ms > to_ms {
            return Ok(Vec::new());
        }

        let blocks = {
            let txn = self
                .db
                .begin_read()
                .map_err(database_error(&self.path, "history read"))?;
            history::blocks_in_range(&txn, &self.path, vm_id, from_ms, to_ms)?
        };

        let mut points = Vec::new();
        for block in blocks {
            let (_, samples) = decode_block(&block.bytes)
                .map_err(|error| corrupt_block(&self.path, vm_id, Some(block.first_ms), error))?;
            let in_range = samples
                .into_iter()
                .filter(|sample| (from_ms..=to_ms).contains(&sample.timestamp_ms));
            for sample in in_range {
                points.push((sample.timestamp_ms, self.project(sample.values, fields)));
            }
        }
        Ok(points)
    }

    /// Picks the requested fields; indices past the block's field count are fields added to
    /// the schema later and read as `None`.
    fn project(&self, mut values: Vec<Option<f64>>, fields: Option<&[usize]>) -> Vec<Option<f64>> {
        match fields {
            None => {
                values.resize(self.schema.len(), None);
                values
            }
            Some(fields) => fields
                .iter()
                .map(|&index| values.get(index).copied().flatten())
                .collect(),
        }
    }

    /// Removes history older than the retention, at most `max_blocks` blocks in one durable
    /// transaction, and returns whether expired blocks remain.
    ///
    /// A block is removed once its newest sample is older than `now_ms - retention`, so up to
    /// one block span of older samples (at most `max_block_samples`) stays readable. Call
    /// it again while it returns `true`. Each call takes the write lock only for its own bounded
    /// transaction, so a cycle write waits for at most one such step.
    pub fn sweep(&self, now_ms: u64, max_blocks: usize) -> Result<bool, StoreError> {
        let retention_ms = u64::try_from(self.options.retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff_ms = now_ms.saturating_sub(retention_ms);
        let op = Operation::new(&self.path, "retention sweep");

        let txn = self.db.begin_write().or_fail(op)?;
        let more = {
            let mut history =
                HistoryWriter::new(&txn, &self.path, self.field_count(), self.block_limits())?;
            history.expire(cutoff_ms, max_blocks)?
        };
        txn.commit().or_fail(op)?;
        Ok(more)
    }

    /// Moves data towards the start of the file and truncates the free space this leaves at
    /// its end, returning whether the file changed.
    ///
    /// redb 5.0 grows a file smaller than 4 GiB by doubling it. After its history has grown, a
    /// store's file can therefore be up to twice the size of its data. Freed pages are reused,
    /// and only pages ever written take disk blocks. Compaction takes exclusive access and reads and
    /// rewrites much of the file, so call it at start-up, before the store is shared.
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        self.db
            .compact(redb::CompactionMode::Balanced)
            .or_fail(Operation::new(&self.path, "compaction"))
    }

    /// Deletes a VM's history and latest record, in one durable transaction.
    pub fn delete_vm(&self, vm_id: &str) -> Result<(), StoreError> {
        let op = Operation::new(&self.path, "VM deletion");
        let txn = self.db.begin_write().or_fail(op)?;
        {
            let mut history =
                HistoryWriter::new(&txn, &self.path, self.field_count(), self.block_limits())?;
            history.delete_vm(vm_id)?;
            txn.open_table(LATEST)
                .or_fail(op)?
                .remove(vm_id)
                .or_fail(op)?;
        }
        txn.commit().or_fail(op)?;
        Ok(())
    }

    /// Returns every VM's latest record, ordered by VM id, to warm the host's memory at start.
    pub fn latest_all(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let op = Operation::new(&self.path, "latest read");
        let txn = self.db.begin_read().or_fail(op)?;
        let table = txn.open_table(LATEST).or_fail(op)?;
        let mut records = Vec::new();
        for entry in table.iter().or_fail(op)? {
            let (vm_id, record) = entry.or_fail(op)?;
            records.push((vm_id.value().to_string(), record.value().to_vec()));
        }
        Ok(records)
    }

    /// Returns one VM's latest record.
    pub fn latest(&self, vm_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let op = Operation::new(&self.path, "latest read");
        let txn = self.db.begin_read().or_fail(op)?;
        let table = txn.open_table(LATEST).or_fail(op)?;
        let record = table.get(vm_id).or_fail(op)?;
        Ok(record.map(|guard| guard.value().to_vec()))
    }

    /// Replaces the stored inventory, in one durable transaction.
    pub fn put_inventory(&self, inventory: &[u8]) -> Result<(), StoreError> {
        let op = Operation::new(&self.path, "inventory write");
        let txn = self.db.begin_write().or_fail(op)?;
        txn.open_table(INVENTORY)
            .or_fail(op)?
            .insert((), inventory)
            .or_fail(op)?;
        txn.commit().or_fail(op)?;
        Ok(())
    }

    /// Returns the stored inventory, if any was stored.
    pub fn inventory(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let op = Operation::new(&self.path, "inventory read");
        let txn = self.db.begin_read().or_fail(op)?;
        let table = txn.open_table(INVENTORY).or_fail(op)?;
        let inventory = table.get(()).or_fail(op)?;
        Ok(inventory.map(|guard| guard.value().to_vec()))
    }

    fn block_limits(&self) -> BlockLimits {
        BlockLimits {
            max_samples: self.options.max_block_samples,
            max_bytes: self.options.block_bytes,
        }
    }

    fn field_count(&self) -> u16 {
        // `schema::validate` caps the schema at u16::MAX fields.
        self.schema.len() as u16
    }
}

/// Checks a VM or alert id before it becomes a key.
pub(crate) fn validate_id(kind: &'static str, id: &str) -> Result<(), StoreError> {
    let reason = if id.is_empty() {
        "the id is empty"
    } else if id.len() > MAX_ID_LEN {
        "the id is longer than 1024 bytes"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidId {
        kind,
        id: id.to_string(),
        reason,
    })
}
