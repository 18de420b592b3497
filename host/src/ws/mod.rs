//! The WebSocket push channel, `/ws/v1/realtime`: live metrics and alerts of subscribed VMs.
//!
//! ```no_run
//! # async fn run(service: std::sync::Arc<vmpulse::service::Service>,
//! #              auth: std::sync::Arc<vmpulse::auth::Authenticator>) -> std::io::Result<()> {
//! let app = poem::Route::new().at("/ws/v1/realtime", vmpulse::ws::endpoint(service, auth));
//! poem::Server::new(poem::listener::TcpListener::bind("127.0.0.1:8080"))
//!     .run(app)
//!     .await
//! # }
//! ```
//!
//! # Handshake
//!
//! The client passes its access token as `?token=`. It may set the language of error
//! texts, close reasons and alert messages with `?lang=zh|en|ja`. Without it the
//! `Accept-Language` header sets the language, then `server.default_language`. An invalid or expired
//! token still gets the upgrade, then an `error` message (`TOKEN_MISSING`, `TOKEN_EXPIRED`,
//! `TOKEN_INVALID` or `PERMISSION_DENIED`) and close 1008. When `max_connections` are open,
//! a new connection is upgraded and closed at once with 1013.
//!
//! # Messages
//!
//! Every message is a JSON text frame with a `type`. From the client:
//!
//! - `{"type":"subscribe","data":{"vmIds":[..],"metrics":["cpu",..],"alerts":"all"}}`
//!   subscribes to VMs. `metrics` (default: every group) restricts the `metrics` messages
//!   of these VMs to the listed groups (cpu, memory, disk, network, system); the other
//!   groups are sent empty. A repeated subscribe of a VM replaces its groups. The latest
//!   metrics of each VM in the request are sent at once. Unknown VM ids get an
//!   `UNKNOWN_VM` error listing them in `data.vmIds` while the known ones are subscribed.
//!   More than 100 subscribed VMs in total closes the connection with 1009.
//! - `alerts` sets which `alert` messages the connection receives: `"subscribed"` (the
//!   default) for alerts of subscribed VMs, `"all"` for alerts of every VM. It may be sent
//!   without `vmIds`: `{"type":"subscribe","data":{"alerts":"all"}}`.
//! - `{"type":"unsubscribe","data":{"vmIds":[..]}}` unsubscribes the listed VMs; without
//!   `vmIds`, or with an empty list, every VM, and the alert scope returns to
//!   `"subscribed"`.
//! - `{"type":"ping","timestamp":1234567890}` gets `{"type":"pong","timestamp":1234567890}`.
//!
//! From the server: `connected` (`clientId`, `serverTime`, `subscribedVMs`), `pong`,
//! `metrics` (`vmId`, `metrics`: a RealtimeMetrics record with its active alerts) after
//! every processed cycle for each subscribed VM the cycle collected, `alert` (`vmId`,
//! `vmName`, `alert`: `id`, `metric`, `severity`, `threshold`, `currentValue`, `message`,
//! `timestamp`) as soon as an alert fires or escalates, and `error` (`code`, `message`,
//! and `vmIds` for `UNKNOWN_VM`).
//!
//! A malformed message gets an `error` and the connection stays open: `INVALID_JSON`,
//! `UNKNOWN_TYPE`, `INVALID_FIELD`, `UNKNOWN_METRIC_GROUP`, `BINARY_NOT_SUPPORTED`, and
//! `FRAME_TOO_LARGE` for a message over `max_frame_bytes`. A message over four times
//! `max_frame_bytes` is not read at all and closes the connection with 1009.
//!
//! # Close codes
//!
//! | code | when | counted as |
//! |---|---|---|
//! | 1000 | no frame from the client for `idle_timeout_secs` | `idle` |
//! | 1001 | the server shuts down | `shutdown` |
//! | 1008 | token missing, invalid or expired, right after the handshake | `token` |
//! | 1009 | subscription over 100 VMs | `subscription_limit` |
//! | 1009 | a message over the hard size limit | `message_too_big` |
//! | 1011 | the fan-out of updates stopped: an internal error | `internal` |
//! | 1013 | `max_connections` reached, at the handshake | `connection_limit` |
//! | 1013 | slow consumer: see below | `slow_consumer` |
//!
//! # Flow control
//!
//! The server pings every `ping_interval_secs`. Each connection has a queue of at most
//! `queue_messages` messages, where a `metrics` message replaces the pending one of the
//! same VM. A connection is a slow consumer, and is closed with 1013 and a reason telling
//! the client to reconnect later, when its queue overflows (only alerts and replies can
//! fill it, as metrics are replaced) or when one batch of writes does not finish within
//! `ping_interval_secs`. When the socket is blocked, the close frame may not reach the
//! client, which then sees the connection drop.

mod connection;
mod hub;
mod outbox;
mod protocol;
mod text;

use std::sync::Arc;

use poem::web::websocket::{WebSocket, WebSocketConfig};
use poem::{Endpoint, FromRequest, IntoResponse, Request, Response};
use serde::Deserialize;

use crate::auth::{AuthError, Authenticator, Permission};
use crate::i18n::Lang;
use crate::service::Service;
use connection::Handshake;
use hub::Hub;
use outbox::Closing;
use protocol::{ClientError, ErrorCode};

pub use hub::MAX_SUBSCRIBED_VMS;

const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY_VIOLATION: u16 = 1008;
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
const CLOSE_INTERNAL_ERROR: u16 = 1011;
const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// Bytes read from a socket at a time; a larger message grows the buffer while it is read.
/// Small, because most client messages are small and the buffer is kept per connection.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Bytes of frames gathered before they are written to the socket within a batch.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// The running push channel: its connections and the task that fans updates out to them.
pub struct Realtime {
    hub: Arc<Hub>,
    fan_out: tokio::task::AbortHandle,
}

/// Starts the fan-out task of the push channel; needs a Tokio runtime.
pub fn start(service: Arc<Service>, auth: Arc<Authenticator>) -> Realtime {
    let hub = Arc::new(Hub::new(service, auth));
    let task = tokio::spawn(hub::run_fan_out(hub.clone()));
    let fan_out = task.abort_handle();
    tokio::spawn(hub::supervise(hub.clone(), task));
    Realtime { hub, fan_out }
}

/// Starts the push channel and returns its endpoint, which stops the fan-out when dropped.
pub fn endpoint(service: Arc<Service>, auth: Arc<Authenticator>) -> RealtimeEndpoint {
    let realtime = Arc::new(start(service, auth));
    RealtimeEndpoint {
        hub: realtime.hub.clone(),
        _realtime: Some(realtime),
    }
}

impl Realtime {
    /// Returns an endpoint that serves connections while this handle is kept.
    pub fn endpoint(&self) -> RealtimeEndpoint {
        RealtimeEndpoint {
            hub: self.hub.clone(),
            _realtime: None,
        }
    }

    /// Stops the fan-out and closes every connection with 1001.
    pub fn shutdown(&self) {
        self.hub.stop();
        self.fan_out.abort();
        self.hub
            .close_all(CLOSE_GOING_AWAY, &text::CLOSE_SHUTDOWN, "shutdown");
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        self.hub.stop();
        self.fan_out.abort();
    }
}

/// The poem endpoint of `/ws/v1/realtime`.
pub struct RealtimeEndpoint {
    hub: Arc<Hub>,
    _realtime: Option<Arc<Realtime>>,
}

#[derive(Deserialize, Default)]
struct HandshakeQuery {
    token: Option<String>,
    lang: Option<String>,
}

impl Endpoint for RealtimeEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let socket = WebSocket::from_request_without_body(&req).await?;
        let handshake = self.handshake(&req);
        let hub = self.hub.clone();
        let max_frame = hub.service.config.server.websocket.max_frame_bytes;
        let hard_limit = max_frame.saturating_mul(4).max(max_frame + 1);
        let mut config = WebSocketConfig::default();
        config.read_buffer_size = READ_BUFFER_BYTES;
        config.write_buffer_size = WRITE_BUFFER_BYTES;
        config.max_message_size = Some(hard_limit);
        config.max_frame_size = Some(hard_limit);
        Ok(socket
            .config(config)
            .on_upgrade(move |socket| connection::serve(hub, socket, handshake))
            .into_response())
    }
}

impl RealtimeEndpoint {
    /// Checks the token and reserves a connection slot. The token is never logged.
    fn handshake(&self, req: &Request) -> Handshake {
        let query: HandshakeQuery = req.params().unwrap_or_default();
        let default = self.hub.service.config.server.default_language;
        let accept_language = req
            .headers()
            .get(poem::http::header::ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok());
        let lang = query
            .lang
            .as_deref()
            .and_then(Lang::from_tag)
            .unwrap_or_else(|| Lang::negotiate(accept_language, default));

        let token = query.token.unwrap_or_default();
        let principal = match self.hub.auth.verify(&token) {
            Ok(principal) => principal,
            Err(err) => return rejected_token(lang, &err),
        };
        if !principal.role.allows(Permission::VmRead) {
            let error = ClientError::new(ErrorCode::PermissionDenied, &[Permission::VmRead.name()]);
            return token_rejection(lang, error);
        }
        let Some(admission) = self.hub.admit() else {
            return Handshake::Rejected {
                lang,
                error: None,
                closing: Closing {
                    code: CLOSE_TRY_AGAIN_LATER,
                    reason: text::CLOSE_CONNECTION_LIMIT.get(lang).to_owned(),
                    counted_as: "connection_limit",
                },
            };
        };
        Handshake::Accepted {
            lang,
            subject: principal.subject,
            admission,
        }
    }
}

fn rejected_token(lang: Lang, err: &AuthError) -> Handshake {
    let error = match err {
        AuthError::Missing => ClientError::new(ErrorCode::TokenMissing, &[]),
        AuthError::Expired => ClientError::new(ErrorCode::TokenExpired, &[]),
        AuthError::NotYetValid => {
            ClientError::new(ErrorCode::TokenInvalid, &["nbf is in the future"])
        }
        AuthError::Invalid(reason) => ClientError::new(ErrorCode::TokenInvalid, &[reason]),
    };
    token_rejection(lang, error)
}

fn token_rejection(lang: Lang, error: ClientError) -> Handshake {
    tracing::debug!(code = error.code.as_str(), "WebSocket token rejected");
    Handshake::Rejected {
        lang,
        error: Some(error),
        closing: Closing {
            code: CLOSE_POLICY_VIOLATION,
            reason: text::CLOSE_TOKEN.get(lang).to_owned(),
            counted_as: "token",
        },
    }
}
