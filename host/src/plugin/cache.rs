//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes tens to hundreds of milliseconds; loading the
//! serialized machine code takes about a millisecond. An entry's name is a SHA-256 over the
//! component's bytes and the engine's compatibility hash, so a changed
//! plugin, an upgraded host or different engine settings never load stale code (wasmtime
//! folds its own version into that hash, and checks it again when deserializing).
//!
//! Loading serialized code is `unsafe` in wasmtime because the bytes are trusted to be
//! machine code it wrote: the cache folder must be writable only by the vmpulse user (the
//! host creates it with mode 0700). Each entry carries a SHA-256 of its payload, so a
//! damaged or swapped entry is compiled again instead of executed.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The source of a loaded component, for logs and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    Compiled,
    Cache,
}

/// A folder of serialized components, or none.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// Returns the compiled component for `bytes`, from the cache when possible.
    ///
    /// A cache entry that fails to load is compiled again and replaced; a cache folder that
    /// cannot be written only costs the speed-up.
    ///
    /// # Errors
    ///
    /// The compile error when `bytes` is not a valid component for this engine.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Component, LoadSource)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, LoadSource::Compiled));
        };
        let entry = dir.join(format!("{}.cwasm", cache_key(engine, bytes)));

        // The entry is read into memory rather than mapped: a mapped file truncated by
        // someone else would crash the host with SIGBUS.
        if let Ok(file) = std::fs::read(&entry) {
            let Some(serialized) = verified_payload(&file) else {
                tracing::warn!(path = %entry.display(), "cached component fails its checksum; compiling again");
                return self.compile_and_store(engine, bytes, dir, &entry);
            };
            // SAFETY: the payload matches the checksum `store` wrote next to it, the file
            // name proves it was compiled from these bytes with this engine's settings, and
            // the folder is trusted as documented at the module top.
            match unsafe { Component::deserialize(engine, serialized) } {
                Ok(component) => return Ok((component, LoadSource::Cache)),
                Err(err) => tracing::warn!(
                    path = %entry.display(),
                    error = %err,
                    "cached component is unusable; compiling again"
                ),
            }
        }

        self.compile_and_store(engine, bytes, dir, &entry)
    }

    fn compile_and_store(
        &self,
        engine: &Engine,
        bytes: &[u8],
        dir: &Path,
        entry: &Path,
    ) -> wasmtime::Result<(Component, LoadSource)> {
        let component = Component::new(engine, bytes)?;
        if let Err(err) = store(&component, dir, entry) {
            tracing::warn!(path = %entry.display(), error = %err, "cannot write component cache");
        }
        Ok((component, LoadSource::Compiled))
    }
}

/// Returns the serialized component of a cache file if its SHA-256 prefix matches, so a
/// damaged or swapped file is compiled again instead of executed.
fn verified_payload(file: &[u8]) -> Option<&[u8]> {
    let (checksum, payload) = file.split_at_checked(32)?;
    (Sha256::digest(payload).as_slice() == checksum).then_some(payload)
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);

    let mut digest = Sha256::new();
    digest.update(bytes);
    digest.update(engine_hash.finish().to_le_bytes());
    hex::encode(digest.finalize())
}

/// Writes the entry, a SHA-256 of the serialized component followed by it, under a
/// temporary name and renames it, so a reader never sees a partial entry.
fn store(component: &Component, dir: &Path, entry: &Path) -> wasmtime::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let serialized = component.serialize()?;
    let mut file = Sha256::digest(&serialized).to_vec();
    file.extend_from_slice(&serialized);
    let partial = entry.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, file)?;
    std::fs::rename(&partial, entry)?;
    Ok(())
}
