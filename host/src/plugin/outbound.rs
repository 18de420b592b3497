//! Outbound HTTP for plugins: the allowlist check and the request sender.
//!
//! A plugin's `wasi:http/outgoing-handler` calls end in [`OutboundHooks::send_request`].
//! A request whose origin is not granted fails there with `HttpRequestDenied`, before any
//! connection is made. Raw sockets and name lookup are disabled in the WASI context, so
//! this hook is the only way out of the sandbox.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::tls::TlsPolicy;

/// One `allowed_outbound_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    https: bool,
    host: HostPattern,
    /// `None` for `*`: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// A DNS name, lowercase; matched exactly, without wildcards.
    Name(String),
    /// An IP address or CIDR block; matched only by requests that use an IP literal, so a
    /// DNS answer cannot widen the grant.
    Net(IpNet),
}

impl AllowedOrigin {
    /// Parses `scheme://host[:port]`, where host may be a CIDR block and port may be `*`.
    ///
    /// # Errors
    ///
    /// A message saying which part is invalid.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or("expected scheme://host:port")?;
        let https = match scheme {
            "https" => true,
            "http" => false,
            _ => return Err(format!("scheme must be http or https, got {scheme:?}")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['@', '?', '#']) || rest.contains("/.") {
            return Err("expected only scheme://host:port".to_owned());
        }
        let (host, port) = split_host_port(rest)?;
        let port = match port {
            None => Some(if https { 443 } else { 80 }),
            Some("*") => None,
            Some(port) => Some(port.parse().map_err(|_| format!("invalid port {port:?}"))?),
        };
        Ok(Self {
            https,
            host: HostPattern::parse(host)?,
            port,
        })
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Returns true when the entry names one host and port, as TLS settings require.
    pub fn is_single_origin(&self) -> bool {
        self.port.is_some()
            && match &self.host {
                HostPattern::Name(_) => true,
                HostPattern::Net(net) => net.prefix_len() == net.max_prefix_len(),
            }
    }

    fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        self.https == https && self.port.is_none_or(|p| p == port) && self.host.matches(host)
    }
}

/// Splits `host:port`, `[v6]:port`, `10.0.0.0/8:9100` or a bare host.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in host")?;
        return match after {
            "" => Ok((host, None)),
            _ => Ok((
                host,
                Some(after.strip_prefix(':').ok_or("expected :port after ]")?),
            )),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host, Some(port))),
        Some(_) => Err("write an IPv6 host in brackets, e.g. [::1]:443".to_owned()),
        None => Ok((text, None)),
    }
}

impl HostPattern {
    fn parse(host: &str) -> Result<Self, String> {
        if host.is_empty() {
            return Err("missing host".to_owned());
        }
        if host.contains('/') {
            let net: IpNet = host
                .parse()
                .map_err(|_| format!("invalid CIDR block {host:?}"))?;
            return Ok(Self::Net(net.trunc()));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Self::Net(IpNet::from(ip)));
        }
        let valid = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid || host == "*" {
            return Err(format!(
                "invalid host name {host:?} (wildcards are not supported)"
            ));
        }
        Ok(Self::Name(host.to_ascii_lowercase()))
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Name(name) => host.eq_ignore_ascii_case(name),
            Self::Net(net) => host.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
        }
    }
}

/// One plugin's granted origins and its HTTP client.
///
/// The client keeps the plugin's connection pool: calls run in fresh instances, but their requests
/// reuse idle keep-alive connections, which saves a TCP and TLS handshake per request on
/// both sides (vCenter's included).
pub struct OutboundPolicy {
    origins: Vec<AllowedOrigin>,
    client: PooledClient,
    response_timeout: Duration,
    /// Denied origins already logged at warn level. Repeats go to debug, so a plugin that
    /// tries the same forbidden origin every cycle does not flood the log.
    warned_denials: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Distinct denied origins logged at warn level per plugin; beyond it every denial is debug.
const MAX_WARNED_DENIALS: usize = 64;

impl std::fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundPolicy")
            .field("origins", &self.origins)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

type PooledClient = hyper_util::client::legacy::Client<PluginConnector, WasiBody>;

/// Idle connections kept per origin; a vCenter loop runs a few batches at once.
const POOL_IDLE_PER_ORIGIN: usize = 16;
/// How long an idle connection is kept; vCenter closes idle ones after about a minute.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl OutboundPolicy {
    pub fn new(
        origins: Vec<AllowedOrigin>,
        tls: TlsPolicy,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        let connector = PluginConnector {
            tls: Arc::new(tls),
            connect_timeout,
        };
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(POOL_IDLE_PER_ORIGIN)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Self {
            origins,
            client,
            response_timeout,
            warned_denials: Default::default(),
        }
    }

    /// Returns true the first time `origin` is denied, while fewer than
    /// [`MAX_WARNED_DENIALS`] origins have been.
    fn first_denial(&self, origin: &str) -> bool {
        let mut warned = self
            .warned_denials
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        warned.len() < MAX_WARNED_DENIALS && warned.insert(origin.to_owned())
    }

    /// Returns true when a request to `uri` goes to one of `origins`.
    fn authorize(uri: &http::Uri, origins: &[AllowedOrigin]) -> bool {
        Destination::from_uri(uri)
            .is_some_and(|d| origins.iter().any(|o| o.matches(d.https, &d.host, d.port)))
    }
}

/// The scheme, host and port a request connects to.
struct Destination {
    https: bool,
    host: String,
    port: u16,
}

impl Destination {
    /// Reads the destination of an absolute `http` or `https` URI, with default ports.
    fn from_uri(uri: &http::Uri) -> Option<Self> {
        let https = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTPS => true,
            Some(scheme) if *scheme == Scheme::HTTP => false,
            _ => return None,
        };
        // User information would reach the peer in the Host header; grants never carry it.
        if uri.authority()?.as_str().contains('@') {
            return None;
        }
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(Self {
            https,
            host: host.to_owned(),
            port,
        })
    }
}

/// The `wasi:http` hooks of one store: the allowlist and the sender.
pub struct OutboundHooks {
    policy: Arc<OutboundPolicy>,
    plugin_id: Arc<str>,
}

impl OutboundHooks {
    pub fn new(policy: Arc<OutboundPolicy>, plugin_id: Arc<str>) -> Self {
        Self { policy, plugin_id }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let policy = self.policy.clone();
        let plugin_id = self.plugin_id.clone();
        Box::new(async move {
            if !OutboundPolicy::authorize(request.uri(), &policy.origins) {
                let origin = origin_of(request.uri());
                if policy.first_denial(&origin) {
                    tracing::warn!(
                        plugin = %plugin_id,
                        %origin,
                        "outbound request denied: origin not in allowed_outbound_hosts; \
                         further denials of this origin are logged at debug level"
                    );
                } else {
                    tracing::debug!(plugin = %plugin_id, %origin, "outbound request denied");
                }
                return Err(HttpError::HttpRequestDenied);
            }
            let response = send(&policy, request, options).await?;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// Returns `scheme://host:port` of a URI for logging; user information, path and query may
/// carry credentials and are left out.
fn origin_of(uri: &http::Uri) -> String {
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}",
        uri.scheme_str().unwrap_or("?"),
        uri.host().unwrap_or("?")
    )
}

/// Returns the shorter of the host's limit and the plugin's own request option.
fn effective(limit: Duration, requested: Option<Duration>) -> Duration {
    requested.map_or(limit, |r| r.min(limit))
}

/// Largest request body the host buffers; plugins send SOAP envelopes of a few KB.
const MAX_REQUEST_BODY: usize = 16 << 20;

async fn send(
    policy: &OutboundPolicy,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<http::Response<WasiBody>, HttpError> {
    let response_timeout = effective(
        policy.response_timeout,
        options.and_then(|o| o.first_byte_timeout),
    );

    // The body is buffered so the request can be sent again, because a pooled connection
    // that the peer closed meanwhile (a restarted vCenter) fails only after the write.
    let (parts, body) = request.into_parts();
    let body = http_body_util::Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|_| HttpError::HttpRequestBodySize(None))?
        .to_bytes();
    let build = || {
        let mut request = http::Request::new(
            http_body_util::Full::new(body.clone())
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.headers_mut() = parts.headers.clone();
        request
    };

    // The pool connects (under the connect timeout) or reuses a connection; the response
    // headers must arrive within the response timeout. The body is bounded by the call
    // deadline.
    let attempt = async || {
        tokio::time::timeout(response_timeout, policy.client.request(build()))
            .await
            .map_err(|_| HttpError::ConnectionReadTimeout)
    };
    let response = match attempt().await? {
        Ok(response) => response,
        // A new connection that fails is not retried: the peer is down.
        Err(err) if err.is_connect() => return Err(client_error(&err)),
        Err(err) => {
            tracing::debug!(error = %err, "request failed on a pooled connection; sending it once more");
            attempt().await?.map_err(|err| client_error(&err))?
        }
    };
    Ok(response.map(|body| body.map_err(HttpError::from).boxed_unsync()))
}

/// Recovers the connector's own error from the pool's error, or names the failure.
fn client_error(err: &hyper_util::client::legacy::Error) -> HttpError {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(connect) = cause.downcast_ref::<HttpError>() {
            return copy_connect_error(connect);
        }
        source = cause.source();
    }
    tracing::debug!(error = %err, "outbound request failed");
    if err.is_connect() {
        HttpError::ConnectionTerminated
    } else {
        HttpError::HttpProtocolError
    }
}

/// The connector's errors are owned by the pool's error, so the cases it returns are
/// rebuilt here.
fn copy_connect_error(error: &HttpError) -> HttpError {
    match error {
        HttpError::ConnectionRefused => HttpError::ConnectionRefused,
        HttpError::ConnectionTimeout => HttpError::ConnectionTimeout,
        HttpError::TlsCertificateError => HttpError::TlsCertificateError,
        HttpError::TlsProtocolError => HttpError::TlsProtocolError,
        HttpError::TlsAlertReceived {
            alert_id,
            alert_message,
        } => HttpError::TlsAlertReceived {
            alert_id: *alert_id,
            alert_message: alert_message.clone(),
        },
        HttpError::HttpRequestUriInvalid => HttpError::HttpRequestUriInvalid,
        HttpError::Connect(io) | HttpError::Tls(io) => {
            HttpError::Connect(std::io::Error::new(io.kind(), io.to_string()))
        }
        other => HttpError::InternalError(Some(other.to_string())),
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Opens TCP, and TLS for `https`, to the origin of a pooled request.
///
/// NOTE: the pool connects under the declaration's `connect_timeout_secs`; a shorter connect
/// timeout the plugin sets in its request options is not applied.
#[derive(Clone)]
struct PluginConnector {
    tls: Arc<TlsPolicy>,
    connect_timeout: Duration,
}

impl tower_service::Service<http::Uri> for PluginConnector {
    type Response = PluginStream;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<PluginStream, HttpError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), HttpError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            let destination =
                Destination::from_uri(&uri).ok_or(HttpError::HttpRequestUriInvalid)?;
            let stream = tokio::time::timeout(
                connector.connect_timeout,
                connect(&connector.tls, &destination),
            )
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;
            Ok(PluginStream(TokioIo::new(stream)))
        })
    }
}

async fn connect(tls: &TlsPolicy, destination: &Destination) -> Result<Box<dyn Stream>, HttpError> {
    let tcp = TcpStream::connect((destination.host.as_str(), destination.port))
        .await
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
            _ => HttpError::Connect(err),
        })?;
    let _ = tcp.set_nodelay(true);
    if !destination.https {
        return Ok(Box::new(tcp));
    }
    let stream = tls
        .connect(&destination.host, destination.port, tcp)
        .await?;
    Ok(Box::new(stream))
}

/// A pooled connection: a TCP or TLS stream in hyper's I/O traits.
struct PluginStream(TokioIo<Box<dyn Stream>>);

impl hyper_util::client::legacy::connect::Connection for PluginStream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

impl hyper::rt::Read for PluginStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl hyper::rt::Write for PluginStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, bytes)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(entries: &[&str], uri: &str) -> bool {
        let origins = entries
            .iter()
            .map(|e| AllowedOrigin::parse(e).unwrap())
            .collect();
        let policy = OutboundPolicy::new(
            origins,
            TlsPolicy::default(),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        OutboundPolicy::authorize(&uri.parse().unwrap(), &policy.origins)
    }

    #[test]
    fn exact_origin_is_granted() {
        assert!(granted(
            &["https://127.0.0.1:8989"],
            "https://127.0.0.1:8989/sdk"
        ));
    }

    #[test]
    fn other_port_or_scheme_is_denied() {
        assert!(!granted(
            &["https://127.0.0.1:8989"],
            "https://127.0.0.1:8990/sdk"
        ));
        assert!(!granted(
            &["https://127.0.0.1:8989"],
            "http://127.0.0.1:8989/sdk"
        ));
    }

    #[test]
    fn default_ports_apply_to_both_sides() {
        assert!(granted(
            &["https://vc.example.com"],
            "https://vc.example.com/sdk"
        ));
        assert!(granted(
            &["https://vc.example.com:443"],
            "https://VC.example.com/sdk"
        ));
        assert!(!granted(
            &["https://vc.example.com"],
            "https://vc.example.com:8443/"
        ));
    }

    #[test]
    fn cidr_matches_ip_literals_only() {
        let grant = ["http://10.20.0.0/16:9100"];
        assert!(granted(&grant, "http://10.20.3.4:9100/metrics"));
        assert!(!granted(&grant, "http://10.21.3.4:9100/metrics"));
        assert!(!granted(&grant, "http://node.example:9100/metrics"));
    }

    #[test]
    fn any_port_wildcard() {
        assert!(granted(&["http://127.0.0.1:*"], "http://127.0.0.1:31337/"));
    }

    #[test]
    fn ipv6_origin() {
        assert!(granted(&["http://[::1]:9100"], "http://[::1]:9100/metrics"));
        assert!(!granted(
            &["http://[::1]:9100"],
            "http://[::2]:9100/metrics"
        ));
    }

    #[test]
    fn userinfo_in_request_is_denied() {
        assert!(!granted(
            &["http://127.0.0.1:8080"],
            "http://evil@127.0.0.1:8080/"
        ));
    }

    #[test]
    fn invalid_entries_are_rejected() {
        for entry in [
            "127.0.0.1:80",
            "ftp://host",
            "https://*.example.com",
            "https://user@host",
            "https://host:port",
            "https://10.0.0.0/33",
            "https://::1",
        ] {
            assert!(AllowedOrigin::parse(entry).is_err(), "{entry} was accepted");
        }
    }
}
