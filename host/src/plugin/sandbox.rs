//! The per-call store: WASI without files, sockets or name lookup, the outbound HTTP hooks,
//! the memory cap and the `vmpulse:plugin/host` functions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::LogLevel;
use super::bindings::collector::vmpulse::plugin::{host as host_api, types as types_api};
use super::outbound::{OutboundHooks, OutboundPolicy};

/// Bytes of guest stderr kept per call; a Rust panic message fits easily.
const STDERR_CAPACITY: usize = 16 * 1024;
/// Log lines one call may write before the rest are counted and dropped.
const LOG_LINES_PER_CALL: u32 = 200;
/// Longest log line kept, in bytes.
const LOG_LINE_MAX: usize = 4096;
/// Total size of one plugin's keys and values in its state store.
const STATE_QUOTA_BYTES: usize = 4 * 1024 * 1024;

/// What a plugin instance keeps between calls, shared by its concurrent calls.
#[derive(Debug, Default)]
pub struct PluginState {
    values: HashMap<String, String>,
    bytes: usize,
}

/// Everything about a plugin the host functions need, shared by all its stores.
#[derive(Debug)]
pub struct PluginContext {
    pub id: Arc<str>,
    /// The plugin's `config` table as JSON.
    pub config_json: String,
    pub secrets: HashMap<String, String>,
    pub state: Mutex<PluginState>,
    pub outbound: Arc<OutboundPolicy>,
    pub memory_limit_bytes: usize,
}

impl PluginContext {
    /// Replaces every secret value in `line` so no secret reaches the log.
    fn redact(&self, line: &str) -> String {
        let mut line = line.to_owned();
        for value in self.secrets.values().filter(|v| !v.is_empty()) {
            line = line.replace(value.as_str(), "[redacted]");
        }
        line
    }
}

/// The data of one call's store.
pub struct SandboxState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    pub limiter: MemoryLimiter,
    pub context: Arc<PluginContext>,
    pub stderr: MemoryOutputPipe,
    log_lines: u32,
    pub dropped_log_lines: u32,
    /// Epoch ticks the guest spent running wasm code in this call.
    pub busy_ticks: u32,
}

impl SandboxState {
    pub fn new(context: Arc<PluginContext>) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks::new(context.outbound.clone(), context.id.clone()),
            limiter: MemoryLimiter::new(context.memory_limit_bytes),
            context,
            stderr,
            log_lines: 0,
            dropped_log_lines: 0,
            busy_ticks: 0,
        }
    }

    /// Returns the guest's stderr output of this call, lossily decoded and redacted.
    pub fn stderr_text(&self) -> String {
        let bytes = self.stderr.contents();
        self.context
            .redact(String::from_utf8_lossy(&bytes).trim_end())
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for SandboxState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl types_api::Host for SandboxState {}

impl host_api::Host for SandboxState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log_lines += 1;
        if self.log_lines > LOG_LINES_PER_CALL {
            self.dropped_log_lines += 1;
            return;
        }
        let mut line = self.context.redact(&message);
        if line.len() > LOG_LINE_MAX {
            let mut end = LOG_LINE_MAX;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push_str(" [truncated]");
        }
        let plugin = &*self.context.id;
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{line}"),
            LogLevel::Debug => tracing::debug!(plugin, "{line}"),
            LogLevel::Info => tracing::info!(plugin, "{line}"),
            LogLevel::Warn => tracing::warn!(plugin, "{line}"),
            LogLevel::Error => tracing::error!(plugin, "{line}"),
        }
    }

    fn config(&mut self) -> String {
        self.context.config_json.clone()
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.context.secrets.get(&name).cloned()
    }

    fn state_get(&mut self, key: String) -> Option<String> {
        let state = self.context.state.lock().unwrap_or_else(|p| p.into_inner());
        state.values.get(&key).cloned()
    }

    fn state_set(&mut self, key: String, value: Option<String>) -> bool {
        let mut state = self.context.state.lock().unwrap_or_else(|p| p.into_inner());
        let old = state.values.get(&key).map_or(0, |v| key.len() + v.len());
        let new = value.as_ref().map_or(0, |v| key.len() + v.len());
        if state.bytes - old + new > STATE_QUOTA_BYTES {
            return false;
        }
        state.bytes = state.bytes - old + new;
        match value {
            Some(value) => state.values.insert(key, value),
            None => state.values.remove(&key),
        };
        true
    }
}

/// Caps linear memory and records that the cap was hit, so a trap can be reported as such.
pub struct MemoryLimiter {
    limit_bytes: usize,
    pub exceeded: bool,
}

impl MemoryLimiter {
    fn new(limit_bytes: usize) -> Self {
        Self {
            limit_bytes,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            self.exceeded = true;
            // An error, unlike `Ok(false)`, traps at once instead of letting the guest's
            // allocator see a failed `memory.grow` and spin on it.
            wasmtime::bail!("memory limit of {} bytes exceeded", self.limit_bytes);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
