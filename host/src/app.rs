//! The assembled service: plugins loaded from the config, one collection loop per
//! discovery collector, and an orderly stop on SIGINT or SIGTERM.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::collection::{CollectionLoop, CycleSink, LoopStats};
use crate::config::{CollectorRole, Config, PluginKind};
use crate::live::LiveState;
use crate::plugin::{Plugin, PluginRuntime};

/// Every loaded plugin, by role.
pub struct LoadedPlugins {
    pub discovery: Vec<Arc<Plugin>>,
    pub enrichment: Vec<Arc<Plugin>>,
    pub rules: Vec<Arc<Plugin>>,
    /// Plugins that failed to load, with the reason; the service runs without them.
    pub failed: Vec<(String, String)>,
}

/// Loads every declared plugin. A plugin that fails to load is logged and left out, so
/// one broken component does not keep the others from running.
pub async fn load_plugins(runtime: &PluginRuntime, config: &Config) -> LoadedPlugins {
    let mut loaded = LoadedPlugins {
        discovery: Vec::new(),
        enrichment: Vec::new(),
        rules: Vec::new(),
        failed: Vec::new(),
    };
    for declaration in &config.plugins {
        let plugin = match runtime.load(declaration).await {
            Ok(plugin) => Arc::new(plugin),
            Err(err) => {
                tracing::error!(plugin = %declaration.id, error = %err, "plugin not loaded");
                loaded
                    .failed
                    .push((declaration.id.clone(), err.to_string()));
                continue;
            }
        };
        match (declaration.kind, declaration.role) {
            (PluginKind::AlertRule, _) => loaded.rules.push(plugin),
            (PluginKind::Collector, CollectorRole::Discovery) => loaded.discovery.push(plugin),
            (PluginKind::Collector, CollectorRole::Enrichment) => loaded.enrichment.push(plugin),
        }
    }
    loaded
}

/// The running collection loops.
pub struct Collection {
    pub stats: Vec<(String, Arc<Mutex<LoopStats>>)>,
    pub triggers: Vec<Arc<Notify>>,
    stop: watch::Sender<bool>,
    loops: JoinSet<()>,
}

impl Collection {
    /// Starts one loop per discovery collector.
    pub fn start(
        config: &Config,
        plugins: &LoadedPlugins,
        live: Arc<LiveState>,
        sinks: Vec<Arc<dyn CycleSink>>,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut loops = JoinSet::new();
        let mut stats = Vec::new();
        let mut triggers = Vec::new();
        for source in &plugins.discovery {
            let cycle = CollectionLoop::new(
                source.clone(),
                plugins.enrichment.clone(),
                config.collection.clone(),
                live.clone(),
                sinks.clone(),
            );
            stats.push((source.id().to_owned(), cycle.stats()));
            triggers.push(cycle.trigger());
            loops.spawn(cycle.run(stopped.clone()));
        }
        Self {
            stats,
            triggers,
            stop,
            loops,
        }
    }

    /// Stops every loop after its current cycle and waits for the collectors' shutdown.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.loops.join_next().await.is_some() {}
    }
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler cannot fail on Unix");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
