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
///
/// NOTE: a guest that writes more gets a write error, which makes a Rust guest's `eprintln!`
/// panic; the call then fails as a trap.
const STDERR_CAPACITY: usize = 256 * 1024;
/// Log lines one call may write before the rest are counted and dropped.
const LOG_LINES_PER_CALL: u32 = 200;
/// Maximum length of a kept log line, in bytes.
const LOG_LINE_MAX: usize = 4096;
/// Total size of one plugin's keys and values in its state store.
const STATE_QUOTA_BYTES: usize = 4 * 1024 * 1024;
/// What one state entry costs beyond its bytes, charged so that many tiny keys cannot
/// use far more host memory than the quota says.
const STATE_ENTRY_OVERHEAD: usize = 64;
/// Instances, memories and tables one call may create; a Rust component uses a handful.
const MAX_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 16;
const MAX_TABLES: usize = 64;
/// Resources (HTTP fields, streams, pollables) one call may hold at once; each can pin host
/// memory that the memory cap does not see.
const MAX_RESOURCES: usize = 2_000;
/// Bytes of headers one `wasi:http` fields resource may hold.
const FIELD_SIZE_LIMIT: usize = 64 * 1024;
/// Maximum length of text a plugin hands the host in an error or a description. Longer
/// text is cut.
pub const MAX_GUEST_TEXT: usize = 4096;

/// The values a plugin instance keeps between calls, shared by its concurrent calls.
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
    /// Prepares text from the guest for the host's logs and status. It replaces every
    /// secret value, longest first so a secret containing another is removed whole. It turns
    /// line breaks and other control characters into spaces so a plugin cannot forge log
    /// lines, and it cuts the result to `max_len` bytes.
    ///
    /// NOTE: a secret split across two log calls, or encoded, is not recognized.
    pub fn sanitize(&self, text: &str, max_len: usize) -> String {
        // Redact before cutting so a cut never leaves half a secret. The scan is bounded so
        // a huge line costs little host time.
        let scanned = truncate(text, max_len.saturating_mul(4));
        let mut secrets: Vec<&String> = self.secrets.values().filter(|v| !v.is_empty()).collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        let mut clean = scanned.to_owned();
        for secret in secrets {
            clean = clean.replace(secret.as_str(), "[redacted]");
        }
        let mut clean: String = clean
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if clean.len() > max_len || scanned.len() < text.len() {
            clean = truncate(&clean, max_len).to_owned();
            clean.push_str(" [truncated]");
        }
        clean
    }
}

/// Returns the longest prefix of `text` of at most `max_len` bytes that ends on a character
/// boundary.
fn truncate(text: &str, max_len: usize) -> &str {
    if text.len() <= max_len {
        return text;
    }
    let mut end = max_len;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
    /// When the epoch callback last ran; it runs every tick while guest code runs.
    pub last_tick: Option<std::time::Instant>,
    /// True when the deadline was found right after the guest waited in a host call.
    pub deadline_after_wait: bool,
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
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_SIZE_LIMIT);
        Self {
            wasi,
            table,
            http,
            hooks: OutboundHooks::new(context.outbound.clone(), context.id.clone()),
            limiter: MemoryLimiter::new(context.memory_limit_bytes),
            context,
            stderr,
            log_lines: 0,
            dropped_log_lines: 0,
            last_tick: Some(std::time::Instant::now()),
            deadline_after_wait: false,
        }
    }

    /// Returns the guest's stderr output of this call, lossily decoded, with secrets
    /// redacted; line breaks are kept so a panic message can be found.
    pub fn stderr_text(&self) -> String {
        let bytes = self.stderr.contents();
        String::from_utf8_lossy(&bytes)
            .trim_end()
            .lines()
            .map(|line| self.context.sanitize(line, LOG_LINE_MAX))
            .collect::<Vec<_>>()
            .join("\n")
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
        let line = self.context.sanitize(&message, LOG_LINE_MAX);
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
        let old = state
            .values
            .get(&key)
            .map_or(0, |v| key.len() + v.len() + STATE_ENTRY_OVERHEAD);
        let new = value
            .as_ref()
            .map_or(0, |v| key.len() + v.len() + STATE_ENTRY_OVERHEAD);
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

/// Caps the total of all linear memories of a call's instances, and records that the cap
/// was hit so the trap can be reported as such. The total matters: a component may define
/// many memories, each below the cap.
pub struct MemoryLimiter {
    limit_bytes: usize,
    total_bytes: usize,
    pub exceeded: bool,
}

impl MemoryLimiter {
    fn new(limit_bytes: usize) -> Self {
        Self {
            limit_bytes,
            total_bytes: 0,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .total_bytes
            .saturating_add(desired.saturating_sub(current));
        if total > self.limit_bytes {
            self.exceeded = true;
            // An error, unlike `Ok(false)`, traps at once instead of letting the guest's
            // allocator see a failed `memory.grow` and spin on it.
            wasmtime::bail!("memory limit of {} bytes exceeded", self.limit_bytes);
        }
        self.total_bytes = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    fn context(secrets: &[&str]) -> PluginContext {
        PluginContext {
            id: Arc::from("test"),
            config_json: "{}".into(),
            secrets: secrets
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("s{i}"), (*s).to_owned()))
                .collect(),
            state: Mutex::default(),
            outbound: Arc::new(OutboundPolicy::new(
                Vec::new(),
                super::super::tls::TlsPolicy::default(),
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(1),
            )),
            memory_limit_bytes: 1 << 20,
        }
    }

    #[test]
    fn sanitize_redacts_longest_secret_first() {
        let context = context(&["hunter2", "hunter2-and-more"]);

        let clean = context.sanitize("pw hunter2-and-more, short hunter2", 100);

        assert_eq!(clean, "pw [redacted], short [redacted]");
    }

    #[test]
    fn sanitize_removes_line_breaks() {
        let clean = context(&[]).sanitize("a\nplugin loaded plugin=forged\r", 100);

        assert!(!clean.contains('\n'), "{clean:?}");
        assert!(!clean.contains('\r'), "{clean:?}");
    }

    #[test]
    fn sanitize_redacts_before_cutting() {
        let context = context(&["S3cr3t/Pa55"]);

        let clean = context.sanitize(&format!("{}S3cr3t/Pa55", "x".repeat(15)), 20);

        assert!(!clean.contains("S3cr3t"), "{clean}");
        assert!(clean.ends_with("[truncated]"), "{clean}");
    }

    #[test]
    fn memory_cap_counts_all_memories() {
        let mut limiter = MemoryLimiter::new(64 << 20);

        let first = limiter.memory_growing(0, 40 << 20, None);
        let second = limiter.memory_growing(0, 40 << 20, None);

        assert!(first.unwrap());
        assert!(
            second.is_err(),
            "two memories of 40 MiB passed a 64 MiB cap"
        );
        assert!(limiter.exceeded);
    }

    #[test]
    fn state_quota_charges_entry_overhead() {
        let context = context(&[]);
        let mut state = context.state.lock().unwrap();
        state.bytes = STATE_QUOTA_BYTES - STATE_ENTRY_OVERHEAD;
        drop(state);
        let mut sandbox = SandboxState::new(Arc::new(context));

        let stored = host_api::Host::state_set(&mut sandbox, "k".into(), Some("v".into()));

        assert!(!stored, "an entry past the quota was stored");
    }
}
