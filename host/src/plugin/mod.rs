//! The sandboxed plugin runtime.
//!
//! [`PluginRuntime`] owns the wasmtime engine, the linkers and the epoch ticker;
//! [`PluginRuntime::load`] turns a `[[plugins]]` entry into a [`Plugin`], whose methods call
//! the component's exports. Each call gets a fresh store and instance from the
//! pre-instantiated component, so a trap or a leak in one call cannot affect the next:
//!
//! ```ignore
//! let runtime = PluginRuntime::new(config.runtime.cache_dir.clone())?;
//! let vcenter = runtime.load(&config.plugins[0]).await?;
//! let inventory = vcenter.discover().await?;
//! let result = vcenter.collect(&inventory.vms[..50]).await?;
//! ```
//!
//! Limits per call: linear memory is capped (growth past the cap traps), guest code yields
//! to the async runtime every epoch tick and traps at its deadline, and waiting on the
//! network is bounded by the same deadline.

pub mod bindings;
pub mod cache;
mod error;
pub mod health;
pub mod outbound;
mod sandbox;
mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config as EngineConfig, Engine, Store, Trap, UpdateDeadline};

use bindings::alert_rule::AlertRulePre;
use bindings::collector::CollectorPre;
pub use bindings::types::{
    CollectResult, Finding, Inventory, PluginError as GuestError, PluginInfo, Vm, VmSample,
};
use cache::ComponentCache;
pub use cache::LoadSource;
pub use error::{PluginError, describe_guest_error, guest_error_kind};
use health::{Health, HealthTracker, RecordedFailure};
use outbound::OutboundPolicy;
use sandbox::{PluginContext, SandboxState};
use tls::TlsPolicy;

use crate::config::{PluginConfig, PluginKind};

/// How often the engine's epoch advances; a spinning guest yields this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Extra time the wall-clock timeout gives past the deadline. A guest running wasm code at
/// the deadline traps on the next tick, well within this, and is reported as spinning. A
/// guest still waiting in a host call (a slow peer) is cut by the wall-clock timeout.
const WAIT_GRACE: Duration = Duration::from_millis(200);

/// The engine, linkers and epoch ticker shared by every plugin.
pub struct PluginRuntime {
    engine: Engine,
    cache: ComponentCache,
    collector_linker: Linker<SandboxState>,
    rule_linker: Linker<SandboxState>,
    ticker_stop: Arc<AtomicBool>,
}

impl PluginRuntime {
    /// Creates the engine and starts the epoch ticker thread.
    ///
    /// # Errors
    ///
    /// When wasmtime rejects the engine settings or a linker cannot be built.
    pub fn new(cache_dir: Option<std::path::PathBuf>) -> wasmtime::Result<Self> {
        let mut config = EngineConfig::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;

        // Collectors get WASI (without files or sockets, see `sandbox`) and outgoing HTTP.
        let mut collector_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut collector_linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut collector_linker)?;
        add_host_api(&mut collector_linker)?;

        // Rules get no network: a rule component importing wasi:http fails to load.
        let mut rule_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut rule_linker)?;
        add_host_api(&mut rule_linker)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone())?;

        Ok(Self {
            engine,
            cache: ComponentCache::new(cache_dir),
            collector_linker,
            rule_linker,
            ticker_stop,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads, links and checks one plugin, then calls its `describe`.
    ///
    /// Compiling runs on a blocking thread, so this is safe to await from a server.
    ///
    /// # Errors
    ///
    /// [`PluginError::Load`] when the component cannot be read, compiled or linked against
    /// the world its `kind` names; [`PluginError::Setup`] for a missing secret or an
    /// unusable TLS setting; any call error of `describe`.
    pub async fn load(&self, config: &PluginConfig) -> Result<Plugin, PluginError> {
        let load_error = |reason: String| PluginError::Load {
            plugin: config.id.clone(),
            path: config.component.clone(),
            reason,
        };
        let started = Instant::now();
        let bytes = tokio::fs::read(&config.component)
            .await
            .map_err(|err| load_error(err.to_string()))?;
        let (engine, cache) = (self.engine.clone(), self.cache.clone());
        let (component, source) = tokio::task::spawn_blocking(move || cache.load(&engine, &bytes))
            .await
            .map_err(|err| load_error(err.to_string()))?
            .map_err(|err| load_error(format!("{err:#}")))?;
        let load_time = started.elapsed();

        let pre = self
            .pre_instantiate(config.kind, &component)
            .map_err(|err| {
                load_error(format!(
                    "{err:#} (is it built for the `{}` world? alert rules get no network)",
                    config.kind
                ))
            })?;
        let context = Arc::new(plugin_context(config)?);

        let mut plugin = Plugin {
            context,
            kind: config.kind,
            pre,
            engine: self.engine.clone(),
            call_timeout: config.call_timeout(),
            memory_limit_mb: config.memory_limit_mb,
            health: Mutex::new(HealthTracker::default()),
            info: None,
            load_source: source,
            load_time,
        };
        let described = plugin.describe().await?;
        let info = PluginInfo {
            name: plugin.sanitize_text(&described.name),
            version: plugin.sanitize_text(&described.version),
            description: plugin.sanitize_text(&described.description),
        };
        tracing::info!(
            plugin = %config.id,
            kind = %config.kind,
            name = %info.name,
            version = %info.version,
            source = ?source,
            load_ms = load_time.as_secs_f64() * 1e3,
            "plugin loaded"
        );
        plugin.info = Some(info);
        Ok(plugin)
    }

    fn pre_instantiate(
        &self,
        kind: PluginKind,
        component: &Component,
    ) -> wasmtime::Result<PluginPre> {
        Ok(match kind {
            PluginKind::Collector => {
                let pre = self.collector_linker.instantiate_pre(component)?;
                PluginPre::Collector(CollectorPre::new(pre)?)
            }
            PluginKind::AlertRule => {
                let pre = self.rule_linker.instantiate_pre(component)?;
                PluginPre::AlertRule(AlertRulePre::new(pre)?)
            }
        })
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn add_host_api(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    use bindings::collector::vmpulse::plugin::{host, types};
    host::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    types::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("vmpulse-epoch".to_owned())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .map(drop)
}

/// Resolves secrets, outbound policy and TLS settings of one declaration.
fn plugin_context(config: &PluginConfig) -> Result<PluginContext, PluginError> {
    let setup_error = |reason: String| PluginError::Setup {
        plugin: config.id.clone(),
        reason,
    };

    let mut secrets = HashMap::new();
    for (name, variable) in &config.secrets {
        let value = std::env::var(variable).map_err(|_| {
            setup_error(format!(
                "secret `{name}`: environment variable {variable} is not set"
            ))
        })?;
        secrets.insert(name.clone(), value);
    }

    let origins = config.allowed_origins().map_err(setup_error)?;
    let mut tls = TlsPolicy::default();
    for (origin, settings) in &config.tls {
        let uri: http::Uri = origin
            .parse()
            .map_err(|_| setup_error(format!("tls.\"{origin}\" is not a URL")))?;
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let port = uri.port_u16().unwrap_or(443);
        if settings.insecure {
            tracing::warn!(plugin = %config.id, %origin, "TLS certificate checks are off for this origin");
        }
        tls.insert(host, port, settings)
            .map_err(|err| setup_error(format!("tls.\"{origin}\": {err}")))?;
    }
    let outbound = OutboundPolicy::new(
        origins,
        tls,
        config.connect_timeout(),
        config.response_timeout(),
    );

    let config_json = serde_json::to_string(&config.config)
        .map_err(|err| setup_error(format!("config table cannot be encoded as JSON: {err}")))?;
    let memory_limit_bytes = usize::try_from(config.memory_limit_mb << 20).unwrap_or(usize::MAX);
    Ok(PluginContext {
        id: Arc::from(config.id.as_str()),
        config_json,
        secrets,
        state: Mutex::default(),
        outbound: Arc::new(outbound),
        memory_limit_bytes,
    })
}

enum PluginPre {
    Collector(CollectorPre<SandboxState>),
    AlertRule(AlertRulePre<SandboxState>),
}

/// A loaded plugin, ready to be called concurrently.
pub struct Plugin {
    context: Arc<PluginContext>,
    kind: PluginKind,
    pre: PluginPre,
    engine: Engine,
    call_timeout: Duration,
    memory_limit_mb: u64,
    health: Mutex<HealthTracker>,
    info: Option<PluginInfo>,
    load_source: LoadSource,
    load_time: Duration,
}

/// A plugin's state as shown to operators.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub health: Health,
    pub calls: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    pub last_error: Option<RecordedFailure>,
    pub last_duration_ms: Option<f64>,
    pub mean_duration_ms: Option<f64>,
    pub backoff_remaining_secs: Option<f64>,
}

type Outcome<T> = wasmtime::Result<Result<T, GuestError>>;

impl Plugin {
    pub fn id(&self) -> &str {
        &self.context.id
    }

    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// Returns the plugin's own description, known once it is loaded.
    pub fn info(&self) -> Option<&PluginInfo> {
        self.info.as_ref()
    }

    /// Returns whether the component came from the compile cache, and how long loading took.
    pub fn load_stats(&self) -> (LoadSource, Duration) {
        (self.load_source, self.load_time)
    }

    /// Calls `describe`.
    ///
    /// # Errors
    ///
    /// Any [`PluginError`] of a call.
    pub async fn describe(&self) -> Result<PluginInfo, PluginError> {
        self.run("describe", async |store| match &self.pre {
            PluginPre::Collector(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                Ok(Ok(instance.call_describe(&mut *store).await?))
            }
            PluginPre::AlertRule(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                Ok(Ok(instance.call_describe(&mut *store).await?))
            }
        })
        .await
    }

    /// Calls a collector's `discover`.
    ///
    /// # Errors
    ///
    /// [`PluginError::WrongKind`] for an alert rule, or any error of a call.
    pub async fn discover(&self) -> Result<Inventory, PluginError> {
        let pre = self.collector_pre("discover")?;
        self.run("discover", async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance.call_discover(&mut *store).await
        })
        .await
    }

    /// Calls a collector's `collect` for one batch of VMs.
    ///
    /// # Errors
    ///
    /// [`PluginError::WrongKind`] for an alert rule, or any error of a call.
    pub async fn collect(&self, vms: &[Vm]) -> Result<CollectResult, PluginError> {
        let pre = self.collector_pre("collect")?;
        let mut result = self
            .run("collect", async |store| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance.call_collect(&mut *store, vms).await
            })
            .await?;
        for vm_error in &mut result.errors {
            let error = std::mem::replace(&mut vm_error.error, GuestError::Other(String::new()));
            vm_error.error = self.sanitize_guest_error(error);
        }
        Ok(result)
    }

    /// Calls a collector's `shutdown`.
    ///
    /// # Errors
    ///
    /// [`PluginError::WrongKind`] for an alert rule, or any error of a call.
    pub async fn shutdown(&self) -> Result<(), PluginError> {
        let pre = self.collector_pre("shutdown")?;
        self.run("shutdown", async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance.call_shutdown(&mut *store).await.map(Ok)
        })
        .await
    }

    /// Calls an alert rule's `evaluate` for one VM.
    ///
    /// # Errors
    ///
    /// [`PluginError::WrongKind`] for a collector, or any error of a call.
    pub async fn evaluate(&self, vm: &Vm, sample: &VmSample) -> Result<Vec<Finding>, PluginError> {
        let PluginPre::AlertRule(pre) = &self.pre else {
            return Err(self.wrong_kind("evaluate"));
        };
        self.run("evaluate", async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance.call_evaluate(&mut *store, vm, sample).await
        })
        .await
    }

    /// Returns the plugin's health and call statistics.
    pub fn status(&self) -> PluginStatus {
        let tracker = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mean = (tracker.calls > 0)
            .then(|| tracker.total_duration.as_secs_f64() * 1e3 / tracker.calls as f64);
        PluginStatus {
            id: self.id().to_owned(),
            kind: self.kind.to_string(),
            name: self.info.as_ref().map(|i| i.name.clone()),
            version: self.info.as_ref().map(|i| i.version.clone()),
            health: tracker.health(),
            calls: tracker.calls,
            failures: tracker.failures,
            consecutive_failures: tracker.consecutive_failures,
            last_duration_ms: tracker.last_duration.map(|d| d.as_secs_f64() * 1e3),
            mean_duration_ms: mean,
            backoff_remaining_secs: tracker
                .backoff_remaining(Instant::now())
                .map(|d| d.as_secs_f64()),
            last_error: tracker.last_error,
        }
    }

    /// Redacts secrets from, and bounds the size of, an error a plugin returned.
    fn sanitize_guest_error(&self, error: GuestError) -> GuestError {
        let clean = |message: String| self.sanitize_text(&message);
        match error {
            GuestError::Config(m) => GuestError::Config(clean(m)),
            GuestError::Unreachable(m) => GuestError::Unreachable(clean(m)),
            GuestError::Auth(m) => GuestError::Auth(clean(m)),
            GuestError::Protocol(m) => GuestError::Protocol(clean(m)),
            GuestError::Other(m) => GuestError::Other(clean(m)),
        }
    }

    /// Prepares text a plugin returned (an error, a name) for logs, status and the API:
    /// secrets redacted, control characters replaced, at most 4 KiB.
    pub fn sanitize_text(&self, text: &str) -> String {
        self.context.sanitize(text, sandbox::MAX_GUEST_TEXT)
    }

    fn collector_pre(
        &self,
        function: &'static str,
    ) -> Result<&CollectorPre<SandboxState>, PluginError> {
        match &self.pre {
            PluginPre::Collector(pre) => Ok(pre),
            PluginPre::AlertRule(_) => Err(self.wrong_kind(function)),
        }
    }

    fn wrong_kind(&self, function: &'static str) -> PluginError {
        PluginError::WrongKind {
            plugin: self.id().to_owned(),
            actual: self.kind,
            function,
        }
    }

    /// Runs one call in a fresh store: checks back-off, applies the limits, classifies the
    /// outcome and records it in the plugin's health.
    async fn run<T>(
        &self,
        function: &'static str,
        call: impl AsyncFnOnce(&mut Store<SandboxState>) -> Outcome<T>,
    ) -> Result<T, PluginError> {
        self.check_backoff()?;

        let started = Instant::now();
        let mut store = self.new_store(started + self.call_timeout);
        let outcome = tokio::time::timeout(self.call_timeout + WAIT_GRACE, call(&mut store)).await;
        let elapsed = started.elapsed();

        self.log_guest_output(&store, function);
        let result = self.classify(function, outcome, &store);
        self.record(function, &result, elapsed);
        result
    }

    fn check_backoff(&self) -> Result<(), PluginError> {
        let tracker = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match tracker.backoff_remaining(Instant::now()) {
            Some(remaining) => Err(PluginError::BackedOff {
                plugin: self.id().to_owned(),
                failures: tracker.consecutive_failures,
                remaining,
            }),
            None => Ok(()),
        }
    }

    fn new_store(&self, deadline: Instant) -> Store<SandboxState> {
        let mut store = Store::new(&self.engine, SandboxState::new(self.context.clone()));
        store.limiter(|state| &mut state.limiter);
        // Every tick the guest yields to the async runtime, so a spinning plugin cannot
        // starve other tasks, and past the deadline the next tick traps.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut context| {
            let now = Instant::now();
            let state = context.data_mut();
            // The callback runs every tick while wasm code runs. A longer gap means the guest
            // was waiting in a host call, so a deadline found right after it was spent
            // waiting for a peer, not computing.
            let waited = state
                .last_tick
                .is_some_and(|last| now - last > EPOCH_TICK * 5);
            state.last_tick = Some(now);
            if now >= deadline {
                state.deadline_after_wait = waited;
                return Err(Trap::Interrupt.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    fn classify<T>(
        &self,
        function: &'static str,
        outcome: Result<Outcome<T>, tokio::time::error::Elapsed>,
        store: &Store<SandboxState>,
    ) -> Result<T, PluginError> {
        let plugin = self.id().to_owned();
        let timeout = |spinning| PluginError::Timeout {
            plugin: plugin.clone(),
            function,
            timeout: self.call_timeout,
            spinning,
        };
        match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(error))) => Err(PluginError::Guest {
                plugin,
                function,
                error: self.sanitize_guest_error(error),
            }),
            Err(_) => Err(timeout(false)),
            Ok(Err(_)) if store.data().limiter.exceeded => Err(PluginError::MemoryLimit {
                plugin,
                function,
                limit_mb: self.memory_limit_mb,
            }),
            Ok(Err(err)) if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                Err(timeout(!store.data().deadline_after_wait))
            }
            Ok(Err(err)) => Err(PluginError::Trap {
                plugin,
                function,
                reason: trap_reason(&err, &store.data().stderr_text()),
            }),
        }
    }

    fn record<T>(
        &self,
        function: &'static str,
        result: &Result<T, PluginError>,
        elapsed: Duration,
    ) {
        let mut tracker = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let Err(error) = result else {
            tracker.record_success(elapsed);
            return;
        };
        tracker.record_failure(
            elapsed,
            error.kind(),
            error.to_string(),
            error.is_misbehaviour(),
        );
        tracing::warn!(
            plugin = %self.id(),
            function,
            kind = error.kind(),
            consecutive_failures = tracker.consecutive_failures,
            error = %error,
            "plugin call failed"
        );
    }

    fn log_guest_output(&self, store: &Store<SandboxState>, function: &'static str) {
        let state = store.data();
        if state.dropped_log_lines > 0 {
            tracing::warn!(
                plugin = %self.id(),
                function,
                dropped = state.dropped_log_lines,
                "plugin wrote too many log lines in one call; the rest were dropped"
            );
        }
        let stderr = state.stderr_text();
        if !stderr.is_empty() {
            tracing::warn!(plugin = %self.id(), function, "plugin stderr: {stderr}");
        }
    }
}

/// Builds a one-line trap reason from wasmtime's error and the guest's panic message.
fn trap_reason(err: &wasmtime::Error, stderr: &str) -> String {
    // wasmtime appends a multi-line wasm backtrace to the message; the first line names
    // the cause.
    let trap = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => err.to_string(),
    };
    let trap = trap.lines().next().unwrap_or_default().to_owned();
    // Rust prints `thread '…' panicked at FILE:LINE:COL:` and the message on the next line.
    let mut lines = stderr.lines();
    let panic = lines.find(|line| line.contains("panicked")).map(|line| {
        let message = lines.next().unwrap_or_default();
        format!("{} {}", line.trim(), message.trim())
    });
    match panic {
        Some(panic) => format!("{trap}; guest stderr: {panic}"),
        None => trap,
    }
}
