//! The metadata that marks a redb file as a vmpulse store: magic, format version and schema.
//!
//! The schema is the ordered list of metric field names. Every history block records how many
//! fields it was written with, and a stored field keeps its position forever, so the only
//! accepted change is appending fields: older blocks then decode with the new fields `None`.
//! A renamed, removed or reordered field is rejected with [`StoreError::SchemaMismatch`]
//! rather than mapped by name, because a silent re-mapping would attach old values to the wrong
//! metric if two fields were swapped.

use std::collections::HashSet;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableError};

use crate::StoreError;
use crate::tables::{META, database_error};

/// Value of the `magic` key; a redb file without it is not a vmpulse store.
const MAGIC: &[u8] = b"vmpulse-store";
/// Layout version of the tables and blocks written by this build.
pub(crate) const FORMAT_VERSION: u32 = 1;

const MAGIC_KEY: &str = "magic";
const FORMAT_KEY: &str = "format";
const SCHEMA_KEY: &str = "schema";

/// Checks the field list given to `Store::open`.
pub(crate) fn validate(schema: &[&str]) -> Result<(), StoreError> {
    let invalid = |reason: String| Err(StoreError::InvalidSchema { reason });
    if schema.is_empty() {
        return invalid("the field list is empty".into());
    }
    if schema.len() > usize::from(u16::MAX) {
        return invalid(format!(
            "{} fields, at most {} are supported",
            schema.len(),
            u16::MAX
        ));
    }
    let mut seen = HashSet::new();
    for name in schema {
        if name.is_empty() || name.len() > usize::from(u16::MAX) {
            return invalid(format!(
                "field name {name:?} is empty or longer than 65535 bytes"
            ));
        }
        if !seen.insert(*name) {
            return invalid(format!("field {name:?} is listed twice"));
        }
    }
    Ok(())
}

/// Writes the magic, the format version and the schema into a new store.
pub(crate) fn write_new(txn: &redb::WriteTransaction, schema: &[&str]) -> Result<(), redb::Error> {
    let mut meta = txn.open_table(META)?;
    meta.insert(MAGIC_KEY, MAGIC)?;
    meta.insert(FORMAT_KEY, FORMAT_VERSION.to_le_bytes().as_slice())?;
    meta.insert(SCHEMA_KEY, encode_schema(schema).as_slice())?;
    Ok(())
}

/// Checks that `db` is a vmpulse store this build reads, and appends new fields to its schema.
pub(crate) fn check_and_extend(
    db: &redb::Database,
    path: &Path,
    requested: &[&str],
) -> Result<(), StoreError> {
    let stored = read_checked(db, path)?;
    if stored.len() < requested.len() && stored.iter().zip(requested).all(|(s, r)| s == r) {
        let txn = db
            .begin_write()
            .map_err(database_error(path, "schema update"))?;
        txn.open_table(META)
            .map_err(database_error(path, "schema update"))?
            .insert(SCHEMA_KEY, encode_schema(requested).as_slice())
            .map_err(database_error(path, "schema update"))?;
        txn.commit()
            .map_err(database_error(path, "schema update"))?;
        return Ok(());
    }
    match first_difference(&stored, requested) {
        None => Ok(()),
        Some(index) => Err(StoreError::SchemaMismatch {
            path: path.to_path_buf(),
            index,
            stored: stored.get(index).cloned(),
            requested: requested.get(index).map(|name| name.to_string()),
        }),
    }
}

/// Reads and checks the metadata, returning the stored schema.
fn read_checked(db: &redb::Database, path: &Path) -> Result<Vec<String>, StoreError> {
    let not_a_store = |reason: &str| StoreError::NotAStore {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let corrupted = |detail: &str| StoreError::Corrupted {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let txn = db
        .begin_read()
        .map_err(database_error(path, "metadata read"))?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            return Err(not_a_store("a redb database without vmpulse metadata"));
        }
        Err(TableError::TableTypeMismatch(_)) => {
            return Err(not_a_store(
                "a redb database whose metadata table has other types",
            ));
        }
        Err(error) => return Err(database_error(path, "metadata read")(error)),
    };
    let get = |key: &str| -> Result<Option<Vec<u8>>, StoreError> {
        let value = meta
            .get(key)
            .map_err(database_error(path, "metadata read"))?;
        Ok(value.map(|guard| guard.value().to_vec()))
    };

    if get(MAGIC_KEY)?.as_deref() != Some(MAGIC) {
        return Err(not_a_store("a redb database without the vmpulse magic"));
    }
    let format = get(FORMAT_KEY)?
        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| corrupted("format version missing or invalid"))?;
    if format != FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: format,
            supported: FORMAT_VERSION,
        });
    }
    get(SCHEMA_KEY)?
        .and_then(|bytes| decode_schema(&bytes))
        .ok_or_else(|| corrupted("schema missing or invalid"))
}

fn first_difference(stored: &[String], requested: &[&str]) -> Option<usize> {
    let common = stored.len().min(requested.len());
    (0..common)
        .find(|&index| stored[index] != requested[index])
        .or_else(|| (stored.len() != requested.len()).then_some(common))
}

/// Encodes names as a u16 LE count, then per name a u16 LE length and the UTF-8 bytes.
/// [`validate`] guarantees both fit in a u16.
fn encode_schema(schema: &[&str]) -> Vec<u8> {
    let mut bytes = (schema.len() as u16).to_le_bytes().to_vec();
    for name in schema {
        bytes.extend_from_slice(&(name.len() as u16).to_le_bytes());
        bytes.extend_from_slice(name.as_bytes());
    }
    bytes
}

fn decode_schema(mut bytes: &[u8]) -> Option<Vec<String>> {
    let mut take = |len: usize| -> Option<&[u8]> {
        let (head, tail) = bytes.split_at_checked(len)?;
        bytes = tail;
        Some(head)
    };
    let count = u16::from_le_bytes(take(2)?.try_into().ok()?);
    let mut names = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = u16::from_le_bytes(take(2)?.try_into().ok()?);
        names.push(String::from_utf8(take(usize::from(len))?.to_vec()).ok()?);
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_encoding_round_trips() {
        let schema = ["cpu.usage_mhz", "mem.usage_mb", "naïve"];
        let decoded = decode_schema(&encode_schema(&schema)).expect("decodes");
        assert_eq!(decoded, schema);
    }

    #[test]
    fn truncated_schema_does_not_decode() {
        let bytes = encode_schema(&["a", "bc"]);
        assert_eq!(decode_schema(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn first_difference_finds_rename_and_removal() {
        let stored = vec!["a".to_string(), "b".to_string()];
        assert_eq!(first_difference(&stored, &["a", "b"]), None);
        assert_eq!(first_difference(&stored, &["a", "x"]), Some(1));
        assert_eq!(first_difference(&stored, &["a"]), Some(1));
    }

    #[test]
    fn validate_rejects_duplicates_and_empty_names() {
        assert!(validate(&["a", "b"]).is_ok());
        assert!(validate(&[]).is_err());
        assert!(validate(&["a", ""]).is_err());
        assert!(validate(&["a", "a"]).is_err());
    }
}
