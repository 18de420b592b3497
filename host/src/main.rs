//! The `vmpulse` command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

use vmpulse::alerts::AlertEngine;
use vmpulse::app;
use vmpulse::collection::CycleSink;
use vmpulse::config::{CollectorRole, Config, PluginKind};
use vmpulse::live::LiveState;
use vmpulse::persist;
use vmpulse::plugin::PluginRuntime;
use vmpulse::service::{Pipeline, Service};

#[derive(Parser)]
#[command(version, about = "Real-time VM monitoring for VMware vSphere")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: collect from every configured collector until SIGINT or SIGTERM.
    Run {
        /// Path of the TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Load every plugin of a config file, call its `describe` and print its status.
    CheckPlugins {
        /// Path of the TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    match Cli::parse().command {
        Command::Run { config } => run(&config).await,
        Command::CheckPlugins { config } => check_plugins(&config).await,
    }
}

async fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let runtime = PluginRuntime::new(config.runtime.cache_dir.clone())
        .map_err(|err| anyhow::anyhow!("cannot start the plugin runtime: {err:#}"))?;
    let plugins = app::load_plugins(&runtime, &config).await;
    if plugins.discovery.is_empty() {
        tracing::warn!("no discovery collector is loaded: nothing will be collected");
    }
    let live = Arc::new(LiveState::default());

    let storage = config.storage.clone();
    // redb grows a file below 4 GiB by doubling it; compacting at start, while the store
    // is not yet shared, gives the free tail back.
    let store = tokio::task::spawn_blocking(move || {
        let mut store = persist::open_store(&storage)?;
        store.compact()?;
        Ok::<_, vmpulse_store::StoreError>(store)
    })
    .await??;
    let store = Arc::new(store);
    // Declared discovery collectors, loaded or not: one that failed to load keeps its data.
    let sources: Vec<&str> = config
        .plugins
        .iter()
        .filter(|p| p.kind == PluginKind::Collector && p.role == CollectorRole::Discovery)
        .map(|p| p.id.as_str())
        .collect();
    let restored = persist::restore(&store, &live, &sources)?;
    tracing::info!(path = %store.path().display(), vms = restored, "store opened");
    let (writer, writer_task) = persist::StoreWriter::start(store.clone(), live.clone());
    let retention = tokio::spawn(persist::run_retention(store.clone()));

    let alerts = AlertEngine::new(
        plugins.rules.clone(),
        config.alerts.clone(),
        Some(store.clone()),
    )?;
    let all_plugins: Vec<_> = [&plugins.discovery, &plugins.enrichment, &plugins.rules]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let service = Service::new(
        Arc::new(config.clone()),
        live.clone(),
        Some(store.clone()),
        Arc::new(alerts),
        all_plugins,
        plugins.failed.clone(),
    );
    service.refresh_views();
    let (pipeline, pipeline_task) = Pipeline::start(service.clone());

    let sinks: Vec<Arc<dyn CycleSink>> = vec![writer, pipeline];
    let collection = app::Collection::start(&config, &plugins, live, sinks);
    *service.loops.lock().unwrap_or_else(|p| p.into_inner()) = collection.stats.clone();
    *service.triggers.lock().unwrap_or_else(|p| p.into_inner()) = collection.triggers.clone();
    tracing::info!(collectors = plugins.discovery.len(), "vmpulse is running");

    app::shutdown_signal().await;
    tracing::info!("stopping: finishing the current cycles");
    collection.stop().await;
    retention.abort();
    // The loops held the last senders: the writer and the pipeline drain their queues
    // and end.
    writer_task.await?;
    pipeline_task.await?;
    Ok(())
}

async fn check_plugins(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let runtime = PluginRuntime::new(config.runtime.cache_dir.clone())
        .map_err(|err| anyhow::anyhow!("cannot start the plugin runtime: {err:#}"))?;
    let mut failed = 0;
    for declaration in &config.plugins {
        match runtime.load(declaration).await {
            Ok(plugin) => println!("{}", serde_json::to_string(&plugin.status())?),
            Err(err) => {
                failed += 1;
                eprintln!("{err}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} plugins failed to load",
            config.plugins.len()
        );
    }
    Ok(())
}
