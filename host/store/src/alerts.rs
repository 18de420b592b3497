//! Alerts: opaque records keyed by alert id, listed as active or as resolved, newest first.
//!
//! `alerts` maps an id to `[state][sequence][record]`: one state byte (1 = active,
//! 0 = resolved), the resolution sequence as u64 little-endian (0 while active), then the
//! host's bytes. Two index tables make both listings cheap: `alerts_active` contains the ids of
//! active alerts, and `alerts_resolved` maps each resolved alert's sequence to its id. A
//! resolved alert keeps its sequence when its record is updated, so the resolved list is in
//! order of first resolution. The sequence is one more than the largest in use, so it grows
//! with every resolution and the newest resolved alert is always the last key.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::store::validate_id;
use crate::tables::{ALERTS, ALERTS_ACTIVE, ALERTS_RESOLVED, Operation, OrFail};
use crate::{Store, StoreError};

const HEADER_LEN: usize = 9;

/// One alert to insert or replace with [`Store::put_alerts`].
#[derive(Debug, Clone, Copy)]
pub struct AlertWrite<'a> {
    pub alert_id: &'a str,
    /// False puts the alert in the resolved list.
    pub active: bool,
    /// The host's bytes, stored as they are.
    pub record: &'a [u8],
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    pub alert_id: String,
    pub active: bool,
    /// The host's bytes, as passed to [`Store::put_alert`].
    pub record: Vec<u8>,
}

struct StoredAlert<'a> {
    active: bool,
    sequence: u64,
    record: &'a [u8],
}

fn encode(active: bool, sequence: u64, record: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + record.len());
    bytes.push(u8::from(active));
    bytes.extend_from_slice(&sequence.to_le_bytes());
    bytes.extend_from_slice(record);
    bytes
}

fn decode(bytes: &[u8]) -> Option<StoredAlert<'_>> {
    let (header, record) = bytes.split_at_checked(HEADER_LEN)?;
    let active = match header[0] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let sequence = u64::from_le_bytes(header[1..].try_into().ok()?);
    Some(StoredAlert {
        active,
        sequence,
        record,
    })
}

impl Store {
    /// Inserts or replaces an alert, in one durable transaction.
    ///
    /// Resolving an alert beyond [`crate::StoreOptions::max_resolved_alerts`] deletes the
    /// oldest resolved alerts.
    pub fn put_alert(&self, alert_id: &str, active: bool, record: &[u8]) -> Result<(), StoreError> {
        self.put_alerts(&[AlertWrite {
            alert_id,
            active,
            record,
        }])
    }

    /// Inserts or replaces several alerts, in order, in one durable transaction.
    ///
    /// A durable commit waits for the disk, so one commit for a whole collection cycle
    /// costs far less than one per alert. Either every write is stored or none is.
    /// Resolving alerts beyond [`crate::StoreOptions::max_resolved_alerts`] deletes the
    /// oldest resolved alerts.
    pub fn put_alerts(&self, writes: &[AlertWrite<'_>]) -> Result<(), StoreError> {
        for write in writes {
            validate_id("alert", write.alert_id)?;
        }
        let op = Operation::new(&self.path, "alert write");
        let txn = self.db.begin_write().or_fail(op)?;
        {
            let mut alerts = txn.open_table(ALERTS).or_fail(op)?;
            let mut active_index = txn.open_table(ALERTS_ACTIVE).or_fail(op)?;
            let mut resolved_index = txn.open_table(ALERTS_RESOLVED).or_fail(op)?;

            for write in writes {
                let AlertWrite {
                    alert_id,
                    active,
                    record,
                } = *write;
                let previous = alerts.get(alert_id).or_fail(op)?.map(|guard| {
                    decode(guard.value()).map(|stored| (stored.active, stored.sequence))
                });
                let previous = match previous {
                    None => None,
                    Some(Some(state)) => Some(state),
                    Some(None) => return Err(self.corrupt_alert(alert_id)),
                };

                let sequence = if active {
                    if let Some((false, sequence)) = previous {
                        resolved_index.remove(sequence).or_fail(op)?;
                    }
                    0
                } else if let Some((false, sequence)) = previous {
                    sequence
                } else {
                    let last = resolved_index.last().or_fail(op)?;
                    last.map_or(1, |(sequence, _)| sequence.value() + 1)
                };
                if active {
                    active_index.insert(alert_id, ()).or_fail(op)?;
                } else {
                    active_index.remove(alert_id).or_fail(op)?;
                    resolved_index.insert(sequence, alert_id).or_fail(op)?;
                }
                let bytes = encode(active, sequence, record);
                alerts.insert(alert_id, bytes.as_slice()).or_fail(op)?;
            }

            while resolved_index.len().or_fail(op)? > self.options.max_resolved_alerts as u64 {
                let oldest = resolved_index.pop_first().or_fail(op)?;
                let Some((_, oldest_id)) = oldest else { break };
                let oldest_id = oldest_id.value().to_string();
                alerts.remove(oldest_id.as_str()).or_fail(op)?;
            }
        }
        txn.commit().or_fail(op)?;
        Ok(())
    }

    /// Returns one alert.
    pub fn alert(&self, alert_id: &str) -> Result<Option<AlertRecord>, StoreError> {
        let op = Operation::new(&self.path, "alert read");
        let txn = self.db.begin_read().or_fail(op)?;
        let alerts = txn.open_table(ALERTS).or_fail(op)?;
        let Some(guard) = alerts.get(alert_id).or_fail(op)? else {
            return Ok(None);
        };
        let stored = decode(guard.value()).ok_or_else(|| self.corrupt_alert(alert_id))?;
        Ok(Some(AlertRecord {
            alert_id: alert_id.to_string(),
            active: stored.active,
            record: stored.record.to_vec(),
        }))
    }

    /// Returns every active alert, ordered by id.
    pub fn active_alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        let op = Operation::new(&self.path, "alert read");
        let txn = self.db.begin_read().or_fail(op)?;
        let alerts = txn.open_table(ALERTS).or_fail(op)?;
        let active_index = txn.open_table(ALERTS_ACTIVE).or_fail(op)?;
        let mut records = Vec::new();
        for entry in active_index.iter().or_fail(op)? {
            let (alert_id, _) = entry.or_fail(op)?;
            records.push(self.indexed_alert(&alerts, alert_id.value())?);
        }
        Ok(records)
    }

    /// Returns up to `limit` resolved alerts, most recently resolved first.
    pub fn resolved_alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        let op = Operation::new(&self.path, "alert read");
        let txn = self.db.begin_read().or_fail(op)?;
        let alerts = txn.open_table(ALERTS).or_fail(op)?;
        let resolved_index = txn.open_table(ALERTS_RESOLVED).or_fail(op)?;
        let mut records = Vec::new();
        for entry in resolved_index.iter().or_fail(op)?.rev().take(limit) {
            let (_, alert_id) = entry.or_fail(op)?;
            records.push(self.indexed_alert(&alerts, alert_id.value())?);
        }
        Ok(records)
    }

    /// Deletes an alert and returns whether it existed.
    pub fn delete_alert(&self, alert_id: &str) -> Result<bool, StoreError> {
        let op = Operation::new(&self.path, "alert deletion");
        let txn = self.db.begin_write().or_fail(op)?;
        let existed = {
            let mut alerts = txn.open_table(ALERTS).or_fail(op)?;
            let removed = alerts.remove(alert_id).or_fail(op)?;
            let state = removed.map(|guard| decode(guard.value()).map(|s| (s.active, s.sequence)));
            match state {
                None => false,
                Some(None) => return Err(self.corrupt_alert(alert_id)),
                Some(Some((true, _))) => {
                    let mut active_index = txn.open_table(ALERTS_ACTIVE).or_fail(op)?;
                    active_index.remove(alert_id).or_fail(op)?;
                    true
                }
                Some(Some((false, sequence))) => {
                    let mut resolved_index = txn.open_table(ALERTS_RESOLVED).or_fail(op)?;
                    resolved_index.remove(sequence).or_fail(op)?;
                    true
                }
            }
        };
        txn.commit().or_fail(op)?;
        Ok(existed)
    }

    /// Loads an alert named by an index. The index and the table change in the same
    /// transactions, so a missing record means the file is damaged.
    fn indexed_alert(
        &self,
        alerts: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
        alert_id: &str,
    ) -> Result<AlertRecord, StoreError> {
        let op = Operation::new(&self.path, "alert read");
        let guard = alerts
            .get(alert_id)
            .or_fail(op)?
            .ok_or_else(|| self.corrupt_alert(alert_id))?;
        let stored = decode(guard.value()).ok_or_else(|| self.corrupt_alert(alert_id))?;
        Ok(AlertRecord {
            alert_id: alert_id.to_string(),
            active: stored.active,
            record: stored.record.to_vec(),
        })
    }

    fn corrupt_alert(&self, alert_id: &str) -> StoreError {
        StoreError::Corrupted {
            path: self.path.clone(),
            detail: format!("alert {alert_id:?} is missing or has an invalid header"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_header_round_trips() {
        let bytes = encode(false, 42, b"{\"vm\":\"vm-1\"}");
        let stored = decode(&bytes).expect("decodes");
        assert!(!stored.active);
        assert_eq!(stored.sequence, 42);
        assert_eq!(stored.record, b"{\"vm\":\"vm-1\"}");
    }

    #[test]
    fn invalid_alert_header_is_rejected() {
        assert!(decode(&[1, 0, 0]).is_none());
        assert!(decode(&[7, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
    }
}
