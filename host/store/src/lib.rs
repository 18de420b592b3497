//! Embedded, crash-safe storage for vmpulse: each VM's latest record, the inventory, alerts,
//! and a compressed per-VM metric history with retention.
//!
//! One [`Store`] owns one [redb](https://docs.rs/redb) file. Every write is one durable redb
//! transaction, so after a crash the file contains exactly the writes whose call returned.
//!
//! ```
//! use vmpulse_store::{SampleRow, Store, StoreOptions};
//!
//! # fn main() -> Result<(), vmpulse_store::StoreError> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("vmpulse.redb");
//! let schema = ["cpu.usage_mhz", "mem.usage_mb", "disk.read_latency_ms"];
//! let store = Store::open(&path, &schema, StoreOptions::default())?;
//!
//! let values = [Some(1200.0), None, Some(0.25)];
//! let rows = [SampleRow { vm_id: "vm-42", values: &values }];
//! let latest: [(&str, &[u8]); 1] = [("vm-42", br#"{"cpu":1200}"#)];
//! store.write_cycle(1_700_000_000_000, &rows, &latest)?;
//!
//! let history = store.range("vm-42", 0, u64::MAX, Some(&[0, 1]))?;
//! assert_eq!(history, vec![(1_700_000_000_000, vec![Some(1200.0), None])]);
//! # Ok(())
//! # }
//! ```
//!
//! The file layout is described in the source: `src/tables.rs` lists the tables,
//! `src/history.rs` explains how history blocks are kept and expired, `src/codec/` defines the
//! block format and `src/schema.rs` the metadata.

mod alerts;
mod bits;
mod codec;
mod error;
mod history;
mod open;
mod schema;
mod store;
mod tables;

pub use alerts::{AlertRecord, AlertWrite};
pub use error::StoreError;
pub use store::{CycleSummary, HistoryPoint, MAX_ID_LEN, SampleRow, Store, StoreOptions};
