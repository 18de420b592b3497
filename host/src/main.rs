//! The `vmpulse` command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

use vmpulse::alerts::AlertEngine;
use vmpulse::api::server::{ApiServer, ServeError};
use vmpulse::app;
use vmpulse::auth::{Authenticator, Role};
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
    /// Print a bearer token for the REST API and the WebSocket channel, signed with the
    /// key of the config's `[auth]` table.
    Token {
        /// Path of the TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Role the token grants: admin, operator, it_manager or security_engineer.
        #[arg(long)]
        role: Role,
        /// Subject (`sub` claim): who the token identifies in logs and rate limits.
        #[arg(long)]
        subject: String,
        /// Hours until the token expires, 1 to 8760.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8760))]
        ttl_hours: u64,
    },
    /// Print the OpenAPI document of the REST API (JSON).
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Standard output carries what `token` and `openapi` print.
        .with_writer(std::io::stderr)
        .init();

    match Cli::parse().command {
        Command::Run { config } => run(&config).await,
        Command::CheckPlugins { config } => check_plugins(&config).await,
        Command::Token {
            config,
            role,
            subject,
            ttl_hours,
        } => token(&config, role, &subject, ttl_hours),
        Command::Openapi => {
            println!("{}", vmpulse::api::openapi_json());
            Ok(())
        }
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
    let loaded: Vec<_> = [&plugins.discovery, &plugins.enrichment, &plugins.rules]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let service = Service::new(
        Arc::new(config.clone()),
        live.clone(),
        Some(store.clone()),
        Arc::new(alerts),
        loaded,
        plugins.failed.clone(),
    );
    service.refresh_views();
    let (pipeline, pipeline_task) = Pipeline::start(service.clone());

    let sinks: Vec<Arc<dyn CycleSink>> = vec![writer, pipeline];
    let collection = app::Collection::start(&config, &plugins, live, sinks);
    service
        .loops
        .lock()
        .unwrap()
        .extend(collection.stats.clone());
    service
        .triggers
        .lock()
        .unwrap()
        .extend(collection.triggers.clone());
    let (stop_api, api_stopped) = tokio::sync::watch::channel(false);
    let api = start_api(&service, api_stopped).await?;
    tracing::info!(collectors = plugins.discovery.len(), "vmpulse is running");

    app::shutdown_signal().await;
    tracing::info!("stopping: finishing the current cycles and requests");
    let _ = stop_api.send(true);
    collection.stop().await;
    retention.abort();
    // The loops held the last senders: the writer and the pipeline drain their queues and end.
    writer_task.await?;
    pipeline_task.await?;
    if let Some(api) = api {
        api.await??;
    }
    Ok(())
}

/// Binds the REST API and serves it on its own task until `stopped` turns true. Without an
/// `[auth]` table the API does not start, because every data endpoint needs a token.
async fn start_api(
    service: &Arc<Service>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<Result<(), ServeError>>>> {
    let Some(auth) = &service.config.auth else {
        tracing::warn!("no [auth] table in the config: the REST API is not started");
        return Ok(None);
    };
    let auth = Arc::new(Authenticator::from_config(auth)?);
    let realtime = vmpulse::ws::start(service.clone(), auth.clone());
    let routes =
        vmpulse::api::routes(service.clone(), auth).at("/ws/v1/realtime", realtime.endpoint());
    let server = ApiServer::bind(&service.config.server).await?;
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
        // Close WebSocket clients with 1001 (going away) so they reconnect elsewhere.
        realtime.shutdown();
    };
    Ok(Some(tokio::spawn(server.run(routes, shutdown))))
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

fn token(path: &std::path::Path, role: Role, subject: &str, ttl_hours: u64) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let Some(auth) = &config.auth else {
        anyhow::bail!("{} has no [auth] table to sign tokens with", path.display());
    };
    if subject.trim().is_empty() {
        anyhow::bail!("--subject must not be empty");
    }
    let authenticator = Authenticator::from_config(auth)?;
    let lifetime = std::time::Duration::from_secs(ttl_hours * 3600);
    println!("{}", authenticator.mint(subject, role, lifetime)?);
    Ok(())
}
