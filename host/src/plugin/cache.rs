//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes tens to hundreds of milliseconds; loading the
//! serialized machine code takes about a millisecond. An entry's name is a SHA-256 over the
//! component's bytes and the engine's compatibility hash, so a changed
//! plugin, an upgraded host or different engine settings never load stale code (wasmtime
//! folds its own version into that hash, and checks it again when deserializing).
//!
//! Loading serialized code is `unsafe` in wasmtime because the bytes are trusted to be
//! machine code it wrote: the cache folder must be writable only by the vmpulse user.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained, for logs and the benchmark.
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
        if let Ok(serialized) = std::fs::read(&entry) {
            // SAFETY: the file was written by `store` below with this engine's settings, as
            // its name proves, and the folder is trusted as documented at the module top.
            match unsafe { Component::deserialize(engine, &serialized) } {
                Ok(component) => return Ok((component, LoadSource::Cache)),
                Err(err) => tracing::warn!(
                    path = %entry.display(),
                    error = %err,
                    "cached component is unusable; compiling again"
                ),
            }
        }

        let component = Component::new(engine, bytes)?;
        if let Err(err) = store(&component, dir, &entry) {
            tracing::warn!(path = %entry.display(), error = %err, "cannot write component cache");
        }
        Ok((component, LoadSource::Compiled))
    }
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

/// Writes to a temporary name and renames, so a reader never sees a partial entry.
fn store(component: &Component, dir: &Path, entry: &Path) -> wasmtime::Result<()> {
    std::fs::create_dir_all(dir)?;
    let serialized = component.serialize()?;
    let partial = entry.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, serialized)?;
    std::fs::rename(&partial, entry)?;
    Ok(())
}
