//! The redb tables of a store file, and the helper that turns redb errors into [`StoreError`].
//!
//! | table | key | value |
//! |---|---|---|
//! | `vmpulse_meta` | setting name | see [`crate::schema`] |
//! | `latest` | VM id | the host's latest merged record, opaque |
//! | `inventory` | `()` | the host's inventory, opaque |
//! | `alerts` | alert id | active flag, resolution sequence, opaque record; see [`crate::alerts`] |
//! | `alerts_active` | alert id | `()` |
//! | `alerts_resolved` | resolution sequence | alert id |
//! | `history_open` | VM id | the VM's open block with its coding state |
//! | `history_sealed` | (VM id, first timestamp) | a sealed block |
//! | `history_expiry` | (last timestamp, VM id, first timestamp) | `()` |
//!
//! The history tables and what they guarantee are described in [`crate::history`].

use std::path::Path;

use redb::TableDefinition;

use crate::StoreError;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("vmpulse_meta");
pub(crate) const LATEST: TableDefinition<&str, &[u8]> = TableDefinition::new("latest");
pub(crate) const INVENTORY: TableDefinition<(), &[u8]> = TableDefinition::new("inventory");
pub(crate) const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
pub(crate) const ALERTS_ACTIVE: TableDefinition<&str, ()> = TableDefinition::new("alerts_active");
pub(crate) const ALERTS_RESOLVED: TableDefinition<u64, &str> =
    TableDefinition::new("alerts_resolved");
pub(crate) const HISTORY_OPEN: TableDefinition<&str, &[u8]> = TableDefinition::new("history_open");
pub(crate) const HISTORY_SEALED: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("history_sealed");
pub(crate) const HISTORY_EXPIRY: TableDefinition<(u64, &str, u64), ()> =
    TableDefinition::new("history_expiry");

/// Creates every table, so that read transactions can open them without checking.
pub(crate) fn create_all(txn: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(META)?;
    txn.open_table(LATEST)?;
    txn.open_table(INVENTORY)?;
    txn.open_table(ALERTS)?;
    txn.open_table(ALERTS_ACTIVE)?;
    txn.open_table(ALERTS_RESOLVED)?;
    txn.open_table(HISTORY_OPEN)?;
    txn.open_table(HISTORY_SEALED)?;
    txn.open_table(HISTORY_EXPIRY)?;
    Ok(())
}

/// An operation on a store file, named in the errors it raises.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operation<'a> {
    pub(crate) path: &'a Path,
    pub(crate) name: &'static str,
}

impl<'a> Operation<'a> {
    pub(crate) fn new(path: &'a Path, name: &'static str) -> Self {
        Self { path, name }
    }
}

/// Wraps any redb error in [`StoreError::Database`] with the operation and the path.
pub(crate) trait OrFail<T> {
    fn or_fail(self, operation: Operation<'_>) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> OrFail<T> for Result<T, E> {
    fn or_fail(self, operation: Operation<'_>) -> Result<T, StoreError> {
        self.map_err(database_error(operation.path, operation.name))
    }
}

/// Returns a closure that wraps a redb error with the operation and the store's path.
pub(crate) fn database_error<E: Into<redb::Error>>(
    path: &Path,
    operation: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |source| StoreError::Database {
        operation,
        path: path.to_path_buf(),
        source: source.into(),
    }
}
