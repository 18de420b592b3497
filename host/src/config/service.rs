//! Config tables of the serving side: the HTTP server, token checks, alerting and VM groups.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::i18n::Lang;

/// `[server]`: the REST API, the WebSocket channel and their limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port the API listens on.
    pub listen: SocketAddr,
    /// Certificate and key for https and wss; plain http without them.
    pub tls: Option<ServerTls>,
    /// Language of messages when a request has no usable `Accept-Language`.
    pub default_language: Lang,
    /// Largest request body accepted, in bytes; larger ones get 413 before parsing.
    pub max_body_bytes: usize,
    pub rate_limit: RateLimitConfig,
    pub websocket: WebSocketConfig,
    /// Whether `/metrics` needs a bearer token. On by default because `listen` may face
    /// users; turn it off when the port is reachable only by the Prometheus server.
    pub metrics_require_token: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            default_language: Lang::Zh,
            max_body_bytes: 64 * 1024,
            rate_limit: RateLimitConfig::default(),
            websocket: WebSocketConfig::default(),
            metrics_require_token: true,
        }
    }
}

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        let rate = self.rate_limit.requests_per_second;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!(
                "server.rate_limit.requests_per_second must be more than 0, got {rate}"
            ));
        }
        if self.rate_limit.burst == 0 {
            return Err("server.rate_limit.burst must be at least 1".into());
        }
        if self.max_body_bytes == 0 {
            return Err("server.max_body_bytes must be at least 1".into());
        }
        Ok(())
    }
}

/// PEM files of the server's certificate chain and private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[server.rate_limit]`: a token bucket per token subject.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second a subject may make in the long run.
    pub requests_per_second: f64,
    /// Requests a subject may make at once after being idle.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 50.0,
            burst: 100,
        }
    }
}

/// `[server.websocket]`: limits of the push channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// Connections served at once; more are rejected at the handshake.
    pub max_connections: usize,
    /// Seconds without any frame from a client before its connection is closed.
    pub idle_timeout_secs: u64,
    /// Seconds between the server's WebSocket pings.
    pub ping_interval_secs: u64,
    /// Largest frame accepted from a client, in bytes.
    pub max_frame_bytes: usize,
    /// Messages queued for one connection before it counts as falling behind.
    pub queue_messages: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            idle_timeout_secs: 90,
            ping_interval_secs: 30,
            max_frame_bytes: 64 * 1024,
            queue_messages: 256,
        }
    }
}

/// `[auth]`: how bearer tokens (JWT) are checked.
///
/// Exactly one key source: an HS256 secret read from an environment variable, or an RS256
/// public key file (with an optional private key file for `vmpulse token`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Environment variable holding the HS256 secret.
    pub hs256_secret_env: Option<String>,
    /// PEM file of the RS256 public key that verifies tokens.
    pub rs256_public_key_file: Option<PathBuf>,
    /// PEM file of the RS256 private key; only `vmpulse token` reads it.
    pub rs256_private_key_file: Option<PathBuf>,
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Seconds of clock difference tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret_env: None,
            rs256_public_key_file: None,
            rs256_private_key_file: None,
            issuer: "vmpulse".to_owned(),
            audience: "vmpulse-api".to_owned(),
            leeway_secs: 30,
        }
    }
}

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        match (&self.hs256_secret_env, &self.rs256_public_key_file) {
            (Some(_), Some(_)) => {
                Err("auth: set either hs256_secret_env or rs256_public_key_file, not both".into())
            }
            (None, None) => {
                Err("auth: set hs256_secret_env or rs256_public_key_file to check tokens".into())
            }
            _ => Ok(()),
        }
    }

    pub(super) fn resolve_paths(&mut self, base: &Path) {
        for file in [
            &mut self.rs256_public_key_file,
            &mut self.rs256_private_key_file,
        ]
        .into_iter()
        .flatten()
        {
            *file = base.join(&*file);
        }
    }
}

/// `[alerts]`: how findings of rule plugins become alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Cycles in a row without a finding (and with the value known) before an alert resolves.
    pub clear_cycles: u32,
    /// How far past its threshold, in percent of the threshold, a value must go back before
    /// an alert can resolve or step down, so a value hovering at the threshold does not flap.
    pub hysteresis_percent: f64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            clear_cycles: 2,
            hysteresis_percent: 5.0,
        }
    }
}

impl AlertsConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.clear_cycles) {
            return Err(format!(
                "alerts.clear_cycles must be between 1 and 100, got {}",
                self.clear_cycles
            ));
        }
        if !(0.0..=50.0).contains(&self.hysteresis_percent) {
            return Err(format!(
                "alerts.hysteresis_percent must be between 0 and 50, got {}",
                self.hysteresis_percent
            ));
        }
        Ok(())
    }
}

/// One `[[groups]]` entry: a named set of VMs. A VM is a member when any criterion matches,
/// and it may be in several groups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The id used in `/api/v1/realtime/groups/{id}`.
    pub id: String,
    /// The display name (`scopeName`).
    pub name: String,
    /// VM ids that belong to the group.
    #[serde(default)]
    pub vm_ids: Vec<String>,
    /// Shell-style patterns (`*`, `?`) matched against VM names, such as `web-*`.
    #[serde(default)]
    pub name_patterns: Vec<String>,
    /// vSphere folder paths; VMs in a folder or below it belong to the group.
    #[serde(default)]
    pub folders: Vec<String>,
}

impl GroupConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.name.is_empty() {
            return Err("groups: every group needs a non-empty id and name".into());
        }
        if self.vm_ids.is_empty() && self.name_patterns.is_empty() && self.folders.is_empty() {
            return Err(format!(
                "group `{}`: set at least one of vm_ids, name_patterns or folders",
                self.id
            ));
        }
        Ok(())
    }
}
