//! Per-VM metric history: appending samples, reading time ranges and expiring old blocks.
//!
//! Each VM's history is a sequence of compressed blocks (see [`crate::codec`]). The newest is
//! the *open* block in `history_open`, extended by one sample per collection cycle. When the
//! next sample would push it past [`BlockLimits::max_bytes`], or it reaches
//! [`BlockLimits::max_samples`], it moves unchanged to `history_sealed`, keyed by
//! (VM id, first timestamp). Appending to the open block costs one rewrite of a value of a few
//! kilobytes per VM and cycle. Its coding state is stored with it, so the append encodes only
//! the new sample and never decodes the block.
//!
//! Sealing by size matters for the file size: redb 5.0 allocates a B-tree leaf as a
//! power-of-two run of 4 KiB pages, so a leaf with a 9 KiB block would occupy 16 KiB. Blocks
//! are cut to fit a leaf of `StoreOptions::block_bytes`, 8 KiB by default, instead.
//!
//! Invariants the code below relies on:
//!
//! 1. Timestamps within a block strictly increase, because the timestamp code stores positive
//!    deltas only.
//! 2. The time spans `[first, last]` of one VM's blocks are disjoint, and the open block, when
//!    there is one, is newer than every sealed block. An append therefore only has to compare
//!    against the open block, and a range read can stop at the first sealed block that ends
//!    before the range.
//! 3. Every block, open or sealed, has exactly one `history_expiry` key (last, VM, first), so
//!    retention finds expired blocks in time order without scanning VMs. Sealing keeps the key
//!    because it changes neither timestamp.
//! 4. The open and sealed blocks of a VM never share a first timestamp (by 2), so an expiry key
//!    that matches no sealed block names the VM's open block.
//! 5. A block's field count is at most the schema's (the schema only grows); missing trailing
//!    fields read as `None`.
//!
//! A sample older than the open block (a clock step back, or a replayed cycle) is merged into
//! the block whose span it falls after, which is decoded and re-encoded. That path is slower but
//! rare, and keeps every invariant: the merged block still ends before the next one starts.
//! A merged block may outgrow [`BlockLimits::max_bytes`], which costs space but not
//! correctness.

use std::path::Path;

use redb::{ReadableTable, Table};

use crate::StoreError;
use crate::codec::{BlockEncoder, BlockHeader, CodecError, Sample, decode_block};
use crate::tables::{HISTORY_EXPIRY, HISTORY_OPEN, HISTORY_SEALED, Operation, OrFail};

type OpenTable<'txn> = Table<'txn, &'static str, &'static [u8]>;
type SealedTable<'txn> = Table<'txn, (&'static str, u64), &'static [u8]>;
type ExpiryTable<'txn> = Table<'txn, (u64, &'static str, u64), ()>;

/// Whether an append stored a new sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    Stored,
    /// The VM already had a sample at this timestamp; the existing one is kept.
    Duplicate,
}

/// The history tables of one write transaction.
pub(crate) struct HistoryWriter<'a, 'txn> {
    open: OpenTable<'txn>,
    sealed: SealedTable<'txn>,
    expiry: ExpiryTable<'txn>,
    path: &'a Path,
    op: Operation<'a>,
    field_count: u16,
    limits: BlockLimits,
}

/// When an open block is sealed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockLimits {
    /// Samples after which the block is sealed whatever its size.
    pub(crate) max_samples: u32,
    /// Size of the redb leaf a sealed block should fit, in bytes.
    pub(crate) max_bytes: usize,
}

/// Bytes a redb 5.0 leaf with one entry needs besides the value: a 4-byte header, two u32
/// lengths, and the key, which is the VM id plus its length prefix and the u64 timestamp.
/// Rounded up to leave slack for the tuple encoding.
const LEAF_OVERHEAD: usize = 64;

impl BlockLimits {
    /// Largest sealed block of `vm_id` that fits in `max_bytes` with its key.
    fn block_budget(self, vm_id: &str) -> usize {
        self.max_bytes.saturating_sub(LEAF_OVERHEAD + vm_id.len())
    }
}

impl<'a, 'txn> HistoryWriter<'a, 'txn> {
    pub(crate) fn new(
        txn: &'txn redb::WriteTransaction,
        path: &'a Path,
        field_count: u16,
        limits: BlockLimits,
    ) -> Result<Self, StoreError> {
        let op = Operation::new(path, "history write");
        Ok(Self {
            open: txn.open_table(HISTORY_OPEN).or_fail(op)?,
            sealed: txn.open_table(HISTORY_SEALED).or_fail(op)?,
            expiry: txn.open_table(HISTORY_EXPIRY).or_fail(op)?,
            path,
            op,
            field_count,
            limits,
        })
    }

    /// Adds one sample; `values` has one entry per schema field.
    pub(crate) fn append(
        &mut self,
        vm_id: &str,
        timestamp_ms: u64,
        values: &[Option<f64>],
    ) -> Result<Appended, StoreError> {
        let open = self.load_open(vm_id)?;
        match open {
            Some(encoder) if timestamp_ms > encoder.last_ms() => {
                self.extend_open(vm_id, encoder, timestamp_ms, values)?;
                Ok(Appended::Stored)
            }
            Some(encoder) if timestamp_ms >= encoder.first_ms() => {
                self.merge_into_open(vm_id, encoder, timestamp_ms, values)
            }
            Some(_) => self.merge_into_sealed(vm_id, timestamp_ms, values),
            None => {
                let newest_sealed_last = self.newest_sealed(vm_id)?.map(|header| header.last_ms);
                if newest_sealed_last.is_none_or(|last| timestamp_ms > last) {
                    let mut encoder = BlockEncoder::new(self.field_count);
                    encoder.push(timestamp_ms, values);
                    self.store_open(vm_id, &encoder, None)?;
                    Ok(Appended::Stored)
                } else {
                    self.merge_into_sealed(vm_id, timestamp_ms, values)
                }
            }
        }
    }

    /// Appends a sample newer than every sample of the open block.
    fn extend_open(
        &mut self,
        vm_id: &str,
        encoder: BlockEncoder,
        timestamp_ms: u64,
        values: &[Option<f64>],
    ) -> Result<(), StoreError> {
        if encoder.field_count() < self.field_count {
            // The schema grew since this block was opened. A block has one field count, so it
            // is sealed as it is and the sample starts a new one.
            self.seal(vm_id, &encoder)?;
            let mut fresh = BlockEncoder::new(self.field_count);
            fresh.push(timestamp_ms, values);
            return self.store_open(vm_id, &fresh, None);
        }
        let mut extended = encoder.clone();
        extended.push(timestamp_ms, values);
        if extended.block_len() > self.limits.block_budget(vm_id) {
            // Sealing the block as it was keeps it within one redb leaf.
            self.seal(vm_id, &encoder)?;
            let mut fresh = BlockEncoder::new(self.field_count);
            fresh.push(timestamp_ms, values);
            return self.store_open(vm_id, &fresh, None);
        }
        self.store_open(vm_id, &extended, Some(encoder.last_ms()))
    }

    /// Writes the open block back, or seals it once it is full, and moves its expiry key from
    /// `previous_last` to its new last timestamp.
    fn store_open(
        &mut self,
        vm_id: &str,
        encoder: &BlockEncoder,
        previous_last: Option<u64>,
    ) -> Result<(), StoreError> {
        self.reindex(vm_id, encoder.first_ms(), previous_last, encoder.last_ms())?;
        if encoder.sample_count() >= self.limits.max_samples {
            return self.seal(vm_id, encoder);
        }
        self.open
            .insert(vm_id, encoder.open_bytes().as_slice())
            .or_fail(self.op)?;
        Ok(())
    }

    /// Moves the open block to the sealed table. Its expiry key stays valid (invariant 3).
    fn seal(&mut self, vm_id: &str, encoder: &BlockEncoder) -> Result<(), StoreError> {
        let key = (vm_id, encoder.first_ms());
        self.sealed
            .insert(key, encoder.block_bytes().as_slice())
            .or_fail(self.op)?;
        self.open.remove(vm_id).or_fail(self.op)?;
        Ok(())
    }

    fn merge_into_open(
        &mut self,
        vm_id: &str,
        encoder: BlockEncoder,
        timestamp_ms: u64,
        values: &[Option<f64>],
    ) -> Result<Appended, StoreError> {
        let first_ms = encoder.first_ms();
        let bytes = encoder.block_bytes();
        let Some(merged) = self.merge(vm_id, first_ms, &bytes, timestamp_ms, values)? else {
            return Ok(Appended::Duplicate);
        };
        self.store_open(vm_id, &merged, Some(encoder.last_ms()))?;
        Ok(Appended::Stored)
    }

    /// Merges a sample older than the open block into the sealed block it follows, or stores it
    /// as a block of its own when it is older than every block of the VM.
    fn merge_into_sealed(
        &mut self,
        vm_id: &str,
        timestamp_ms: u64,
        values: &[Option<f64>],
    ) -> Result<Appended, StoreError> {
        let preceding = self
            .sealed
            .range((vm_id, 0)..=(vm_id, timestamp_ms))
            .or_fail(self.op)?
            .next_back()
            .transpose()
            .or_fail(self.op)?
            .map(|(key, value)| (key.value().1, value.value().to_vec()));

        let Some((first_ms, bytes)) = preceding else {
            let mut encoder = BlockEncoder::new(self.field_count);
            encoder.push(timestamp_ms, values);
            self.sealed
                .insert((vm_id, timestamp_ms), encoder.block_bytes().as_slice())
                .or_fail(self.op)?;
            self.reindex(vm_id, timestamp_ms, None, timestamp_ms)?;
            return Ok(Appended::Stored);
        };

        let previous_last = self.parse_header(vm_id, Some(first_ms), &bytes)?.last_ms;
        let Some(merged) = self.merge(vm_id, first_ms, &bytes, timestamp_ms, values)? else {
            return Ok(Appended::Duplicate);
        };
        self.sealed
            .insert((vm_id, first_ms), merged.block_bytes().as_slice())
            .or_fail(self.op)?;
        self.reindex(vm_id, first_ms, Some(previous_last), merged.last_ms())?;
        Ok(Appended::Stored)
    }

    /// Re-encodes `block` with the sample inserted in time order, or returns `None` when the
    /// block already has a sample at that timestamp. The result has the schema's field count.
    fn merge(
        &self,
        vm_id: &str,
        first_ms: u64,
        block: &[u8],
        timestamp_ms: u64,
        values: &[Option<f64>],
    ) -> Result<Option<BlockEncoder>, StoreError> {
        let (_, mut samples) =
            decode_block(block).map_err(|error| self.corrupt(vm_id, Some(first_ms), error))?;
        let position = match samples.binary_search_by_key(&timestamp_ms, |s| s.timestamp_ms) {
            Ok(_) => return Ok(None),
            Err(position) => position,
        };
        let field_count = usize::from(self.field_count);
        for sample in &mut samples {
            sample.values.resize(field_count, None);
        }
        let sample = Sample {
            timestamp_ms,
            values: values.to_vec(),
        };
        samples.insert(position, sample);
        Ok(Some(BlockEncoder::from_samples(self.field_count, &samples)))
    }

    fn reindex(
        &mut self,
        vm_id: &str,
        first_ms: u64,
        previous_last: Option<u64>,
        last_ms: u64,
    ) -> Result<(), StoreError> {
        if previous_last == Some(last_ms) {
            return Ok(());
        }
        if let Some(previous_last) = previous_last {
            self.expiry
                .remove((previous_last, vm_id, first_ms))
                .or_fail(self.op)?;
        }
        self.expiry
            .insert((last_ms, vm_id, first_ms), ())
            .or_fail(self.op)?;
        Ok(())
    }

    fn load_open(&self, vm_id: &str) -> Result<Option<BlockEncoder>, StoreError> {
        let Some(guard) = self.open.get(vm_id).or_fail(self.op)? else {
            return Ok(None);
        };
        BlockEncoder::from_open_bytes(guard.value())
            .map(Some)
            .map_err(|error| self.corrupt(vm_id, None, error))
    }

    fn newest_sealed(&self, vm_id: &str) -> Result<Option<BlockHeader>, StoreError> {
        let newest = self
            .sealed
            .range((vm_id, 0)..=(vm_id, u64::MAX))
            .or_fail(self.op)?
            .next_back()
            .transpose()
            .or_fail(self.op)?;
        match newest {
            None => Ok(None),
            Some((key, value)) => {
                let first_ms = key.value().1;
                self.parse_header(vm_id, Some(first_ms), value.value())
                    .map(Some)
            }
        }
    }

    /// Removes the VM's open and sealed blocks with their expiry keys.
    pub(crate) fn delete_vm(&mut self, vm_id: &str) -> Result<(), StoreError> {
        let mut spans = Vec::new();
        for entry in self
            .sealed
            .range((vm_id, 0)..=(vm_id, u64::MAX))
            .or_fail(self.op)?
        {
            let (key, value) = entry.or_fail(self.op)?;
            let header = self.parse_header(vm_id, Some(key.value().1), value.value())?;
            spans.push((header.first_ms, header.last_ms));
        }
        for (first_ms, last_ms) in spans {
            self.sealed.remove((vm_id, first_ms)).or_fail(self.op)?;
            self.expiry
                .remove((last_ms, vm_id, first_ms))
                .or_fail(self.op)?;
        }
        if let Some(encoder) = self.load_open(vm_id)? {
            self.open.remove(vm_id).or_fail(self.op)?;
            self.expiry
                .remove((encoder.last_ms(), vm_id, encoder.first_ms()))
                .or_fail(self.op)?;
        }
        Ok(())
    }

    /// Removes up to `max_blocks` blocks whose last sample is older than `cutoff_ms`, oldest
    /// first, and returns whether more such blocks remain.
    pub(crate) fn expire(&mut self, cutoff_ms: u64, max_blocks: usize) -> Result<bool, StoreError> {
        let mut expired = Vec::with_capacity(max_blocks.min(4096));
        let mut more = false;
        for entry in self.expiry.range(..(cutoff_ms, "", 0)).or_fail(self.op)? {
            if expired.len() == max_blocks {
                more = true;
                break;
            }
            let (key, _) = entry.or_fail(self.op)?;
            let (last_ms, vm_id, first_ms) = key.value();
            expired.push((last_ms, vm_id.to_string(), first_ms));
        }

        for (last_ms, vm_id, first_ms) in &expired {
            let vm_id = vm_id.as_str();
            let removed_sealed = self
                .sealed
                .remove((vm_id, *first_ms))
                .or_fail(self.op)?
                .is_some();
            // Invariant 4: a key without a sealed block names the open block. The check guards
            // against deleting a newer open block if the index were ever out of step.
            if !removed_sealed {
                let open_first = self.load_open(vm_id)?.map(|encoder| encoder.first_ms());
                if open_first != Some(*first_ms) {
                    return Err(StoreError::Corrupted {
                        path: self.path.to_path_buf(),
                        detail: format!(
                            "expiry index names block {first_ms} of VM {vm_id}, which does not \
                             exist"
                        ),
                    });
                }
                self.open.remove(vm_id).or_fail(self.op)?;
            }
            self.expiry
                .remove((*last_ms, vm_id, *first_ms))
                .or_fail(self.op)?;
        }
        Ok(more)
    }

    fn parse_header(
        &self,
        vm_id: &str,
        first_ms: Option<u64>,
        bytes: &[u8],
    ) -> Result<BlockHeader, StoreError> {
        BlockHeader::parse(bytes)
            .map(|(header, _, _)| header)
            .map_err(|error| self.corrupt(vm_id, first_ms, error))
    }

    fn corrupt(&self, vm_id: &str, first_ms: Option<u64>, error: CodecError) -> StoreError {
        corrupt_block(self.path, vm_id, first_ms, error)
    }
}

pub(crate) fn corrupt_block(
    path: &Path,
    vm_id: &str,
    first_ms: Option<u64>,
    error: CodecError,
) -> StoreError {
    StoreError::CorruptBlock {
        path: path.to_path_buf(),
        vm_id: vm_id.to_string(),
        block_start_ms: first_ms,
        detail: error.to_string(),
    }
}

/// A block copied out of a read transaction.
pub(crate) struct CopiedBlock {
    pub(crate) first_ms: u64,
    pub(crate) bytes: Vec<u8>,
}

/// Copies out the blocks of `vm_id` that may hold samples in `from_ms..=to_ms`, oldest first.
///
/// Only bytes are copied, so the caller can end the read transaction before decoding.
pub(crate) fn blocks_in_range(
    txn: &redb::ReadTransaction,
    path: &Path,
    vm_id: &str,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<CopiedBlock>, StoreError> {
    let op = Operation::new(path, "history read");
    let sealed = txn.open_table(HISTORY_SEALED).or_fail(op)?;
    let open = txn.open_table(HISTORY_OPEN).or_fail(op)?;
    let mut blocks = Vec::new();

    // Newest first, stopping at the first block that ends before the range (invariant 2).
    for entry in sealed.range((vm_id, 0)..=(vm_id, to_ms)).or_fail(op)?.rev() {
        let (key, value) = entry.or_fail(op)?;
        let first_ms = key.value().1;
        let (header, _, _) = BlockHeader::parse(value.value())
            .map_err(|error| corrupt_block(path, vm_id, Some(first_ms), error))?;
        if header.last_ms < from_ms {
            break;
        }
        blocks.push(CopiedBlock {
            first_ms,
            bytes: value.value().to_vec(),
        });
    }
    blocks.reverse();

    if let Some(value) = open.get(vm_id).or_fail(op)? {
        let (header, _, _) = BlockHeader::parse(value.value())
            .map_err(|error| corrupt_block(path, vm_id, None, error))?;
        if header.first_ms <= to_ms && header.last_ms >= from_ms {
            blocks.push(CopiedBlock {
                first_ms: header.first_ms,
                bytes: value.value().to_vec(),
            });
        }
    }
    Ok(blocks)
}
