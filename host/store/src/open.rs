//! Opening a store file: creating it atomically, or checking that an existing file is ours.
//!
//! An existing file is never replaced or initialised: a file that is not a redb database, a
//! redb database without vmpulse metadata, or a damaged one is rejected with its path.
//!
//! NOTE: a valid redb file of another program is opened for writing before its metadata can be
//! checked, and that open with the integrity check commits, which rewrites redb's commit slot
//! in the file header. Its tables and values stay unchanged. Checking through a read-only open
//! first would avoid that write, but redb 5.0's read-only open panics on damaged files (seen
//! on files with overwritten pages), while the checked writable open reports them as errors.
//!
//! A new
//! store is built under a temporary name and linked into place only once its metadata is
//! committed, so a crash during creation cannot leave a half-made file at the requested path.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError, StorageError};

use crate::tables::{self, database_error};
use crate::{StoreError, StoreOptions, schema};

/// The first bytes of every redb file (the file-format magic in redb 5.0's
/// `tree_store/page_store/header.rs`). Checking them first keeps redb from being handed, and
/// possibly initialising, a file of another kind.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Opens the store at `path`, creating it when no file exists there.
pub(crate) fn open_database(
    path: &Path,
    schema: &[&str],
    options: &StoreOptions,
) -> Result<Database, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            create_new(path, schema, options)?;
        }
        Err(source) => return Err(io_error(path, "reading file metadata", source)),
    }

    check_redb_magic(path)?;
    let db = builder(options)
        .open(path)
        .map_err(|error| open_error(path, error))?;
    schema::check_and_extend(&db, path, schema)?;
    Ok(db)
}

fn builder(options: &StoreOptions) -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder
        .set_cache_size(options.cache_size_bytes)
        .set_check_integrity_on_open(options.verify_on_open);
    builder
}

fn check_redb_magic(path: &Path) -> Result<(), StoreError> {
    let not_a_store = |reason: &str| StoreError::NotAStore {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let file = File::open(path).map_err(|source| io_error(path, "opening", source))?;
    let metadata = file
        .metadata()
        .map_err(|source| io_error(path, "reading file metadata", source))?;
    if !metadata.is_file() {
        return Err(not_a_store("not a regular file"));
    }
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    file.take(REDB_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(|source| io_error(path, "reading", source))?;
    if head.is_empty() {
        return Err(not_a_store("the file is empty"));
    }
    if head != REDB_MAGIC {
        return Err(not_a_store("not a redb database file"));
    }
    Ok(())
}

/// Builds a new store beside `path` and links it into place.
///
/// The hard link fails when a file appeared at `path` in the meantime, so a concurrent creator
/// is never overwritten. The caller then checks whatever file is there.
fn create_new(path: &Path, schema: &[&str], options: &StoreOptions) -> Result<(), StoreError> {
    let staging = staging_path(path);
    match fs::remove_file(&staging) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error(&staging, "removing a stale staging file", source)),
    }

    let db = builder(options)
        .create(&staging)
        .map_err(|error| open_error(&staging, error))?;
    let txn = db
        .begin_write()
        .map_err(database_error(&staging, "store creation"))?;
    tables::create_all(&txn).map_err(database_error(&staging, "store creation"))?;
    schema::write_new(&txn, schema).map_err(database_error(&staging, "store creation"))?;
    txn.commit()
        .map_err(database_error(&staging, "store creation"))?;
    db.close().map_err(|error| open_error(&staging, error))?;

    let linked = fs::hard_link(&staging, path);
    fs::remove_file(&staging).map_err(|source| io_error(&staging, "removing", source))?;
    match linked {
        Ok(()) => sync_parent(path),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(io_error(path, "linking the new store into place", source)),
    }
}

fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".creating");
    path.with_file_name(name)
}

/// Makes the new directory entry durable, so the store does not vanish after a power loss.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|directory| directory.sync_all())
        .map_err(|source| io_error(parent, "syncing the directory", source))
}

fn open_error(path: &Path, error: DatabaseError) -> StoreError {
    match error {
        DatabaseError::Storage(StorageError::Corrupted(detail)) => StoreError::Corrupted {
            path: path.to_path_buf(),
            detail,
        },
        source => StoreError::Open {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn io_error(path: &Path, operation: &'static str, source: io::Error) -> StoreError {
    StoreError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}
