//! The error type of every store operation.

use std::path::PathBuf;

/// Error of a store operation, naming the file and, where one is involved, the VM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file exists but is not a vmpulse store; it was left untouched.
    #[error("{path} is not a vmpulse store ({reason}); move it away or choose another path")]
    NotAStore { path: PathBuf, reason: String },

    /// The file is a redb database that fails redb's checks or has invalid vmpulse metadata.
    #[error("store {path} is corrupted: {detail}")]
    Corrupted { path: PathBuf, detail: String },

    /// The file was written by a newer vmpulse with a layout this build cannot read.
    #[error("store {path} has format version {found}, this build reads version {supported}")]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The requested field list is not the stored one, nor the stored one with fields appended.
    #[error(
        "schema of store {path} does not match at field {index}: the file has {stored:?}, \
         the request has {requested:?}; fields may only be appended at the end"
    )]
    SchemaMismatch {
        path: PathBuf,
        index: usize,
        stored: Option<String>,
        requested: Option<String>,
    },

    /// The field list passed to `Store::open` is unusable.
    #[error("invalid schema: {reason}")]
    InvalidSchema { reason: String },

    /// A sample row has a different number of values than the schema has fields.
    #[error("sample of VM {vm_id} has {found} values, the schema has {expected} fields")]
    FieldCount {
        vm_id: String,
        expected: usize,
        found: usize,
    },

    /// A field index passed to a read is outside the schema.
    #[error("field index {index} is out of range, the schema has {field_count} fields")]
    FieldIndex { index: usize, field_count: usize },

    /// A VM or alert id that cannot be a key; `kind` is `"VM"` or `"alert"`.
    #[error("invalid {kind} id {id:?}: {reason}")]
    InvalidId {
        kind: &'static str,
        id: String,
        reason: &'static str,
    },

    /// A [`crate::StoreOptions`] value out of range.
    #[error("invalid store option: {reason}")]
    InvalidOptions { reason: String },

    /// A timestamp above the supported range (`i64::MAX` ms).
    #[error("timestamp {timestamp_ms} ms of VM {vm_id} is out of range")]
    TimestampOutOfRange { vm_id: String, timestamp_ms: u64 },

    /// A history block that does not decode; `block_start_ms` is `None` when even its header
    /// is unreadable.
    #[error(
        "history block of VM {vm_id} {} in {path} is corrupted: {detail}",
        describe_block(*.block_start_ms)
    )]
    CorruptBlock {
        path: PathBuf,
        vm_id: String,
        block_start_ms: Option<u64>,
        detail: String,
    },

    /// redb failed while opening the file.
    #[error("failed to open store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },

    /// redb failed during an operation on an open store.
    #[error("{operation} failed on store {path}: {source}")]
    Database {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: redb::Error,
    },

    /// A file system operation outside redb failed.
    #[error("{operation} failed on {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn describe_block(block_start_ms: Option<u64>) -> String {
    match block_start_ms {
        Some(start) => format!("starting at {start} ms"),
        None => "(open block)".to_string(),
    }
}
