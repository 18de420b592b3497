//! Errors of loading and calling plugins.

use std::path::PathBuf;
use std::time::Duration;

use super::bindings::types::PluginError as GuestError;

/// A failure to load a plugin or to complete a call. Every case names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{plugin}`: cannot load component {path}: {reason}")]
    Load {
        plugin: String,
        path: PathBuf,
        reason: String,
    },
    #[error("plugin `{plugin}`: {reason}")]
    Setup { plugin: String, reason: String },
    #[error("plugin `{plugin}` is a {actual}, so it has no `{function}`")]
    WrongKind {
        plugin: String,
        actual: crate::config::PluginKind,
        function: &'static str,
    },
    /// The guest executed an invalid instruction, panicked or failed to instantiate.
    #[error("plugin `{plugin}` trapped in `{function}`: {reason}")]
    Trap {
        plugin: String,
        function: &'static str,
        reason: String,
    },
    #[error("plugin `{plugin}` exceeded its memory limit of {limit_mb} MiB in `{function}`")]
    MemoryLimit {
        plugin: String,
        function: &'static str,
        limit_mb: u64,
    },
    /// The call outlasted its deadline; `spinning` is true when the guest was computing
    /// rather than waiting for a peer.
    #[error("plugin `{plugin}` did not finish `{function}` within {timeout:?}{}", if *.spinning { " (busy computing)" } else { " (waiting for a peer)" })]
    Timeout {
        plugin: String,
        function: &'static str,
        timeout: Duration,
        spinning: bool,
    },
    /// The plugin ran correctly and reported a failure.
    #[error("plugin `{plugin}` failed in `{function}`: {}", describe_guest_error(.error))]
    Guest {
        plugin: String,
        function: &'static str,
        error: GuestError,
    },
    #[error(
        "plugin `{plugin}` is paused after {failures} consecutive failures; next try in {remaining:?}"
    )]
    BackedOff {
        plugin: String,
        failures: u32,
        remaining: Duration,
    },
}

impl PluginError {
    /// Returns a short machine-readable name of the case, for status output and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Load { .. } => "load",
            Self::Setup { .. } => "setup",
            Self::WrongKind { .. } => "wrong-kind",
            Self::Trap { .. } => "trap",
            Self::MemoryLimit { .. } => "memory-limit",
            Self::Timeout { .. } => "timeout",
            Self::Guest { error, .. } => guest_error_kind(error),
            Self::BackedOff { .. } => "backed-off",
        }
    }

    /// Returns true when the plugin itself misbehaved (trapped, spun or ate memory), as
    /// opposed to reporting a failure of its peer. Only misbehaviour leads to back-off, so
    /// a vCenter that restarts is retried on the next cycle.
    pub fn is_misbehaviour(&self) -> bool {
        match self {
            Self::Trap { .. } | Self::MemoryLimit { .. } => true,
            Self::Timeout { spinning, .. } => *spinning,
            _ => false,
        }
    }
}

/// Returns the name of a guest error's case: `config`, `unreachable`, `auth`, `protocol` or
/// `other`.
pub fn guest_error_kind(error: &GuestError) -> &'static str {
    match error {
        GuestError::Config(_) => "config",
        GuestError::Unreachable(_) => "unreachable",
        GuestError::Auth(_) => "auth",
        GuestError::Protocol(_) => "protocol",
        GuestError::Other(_) => "other",
    }
}

/// Formats a guest error as `kind: message`.
pub fn describe_guest_error(error: &GuestError) -> String {
    let message = match error {
        GuestError::Config(m)
        | GuestError::Unreachable(m)
        | GuestError::Auth(m)
        | GuestError::Protocol(m)
        | GuestError::Other(m) => m,
    };
    format!("{}: {message}", guest_error_kind(error))
}
