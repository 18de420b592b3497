//! The `vmpulse` command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use std::sync::Arc;

use vmpulse::app;
use vmpulse::config::Config;
use vmpulse::live::LiveState;
use vmpulse::plugin::PluginRuntime;

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
    let collection = app::Collection::start(&config, &plugins, live, Vec::new());
    tracing::info!(collectors = plugins.discovery.len(), "vmpulse is running");

    app::shutdown_signal().await;
    tracing::info!("stopping: finishing the current cycles");
    collection.stop().await;
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
