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
use hyper_util::rt::TokioIo;
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

/// What one plugin may reach, and how.
#[derive(Debug)]
pub struct OutboundPolicy {
    origins: Vec<AllowedOrigin>,
    tls: TlsPolicy,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl OutboundPolicy {
    pub fn new(
        origins: Vec<AllowedOrigin>,
        tls: TlsPolicy,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        Self {
            origins,
            tls,
            connect_timeout,
            response_timeout,
        }
    }

    /// Returns where a request to `uri` may connect, or `None` when it is not granted.
    fn authorize(&self, uri: &http::Uri) -> Option<Destination> {
        let https = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTPS => true,
            Some(scheme) if *scheme == Scheme::HTTP => false,
            _ => return None,
        };
        let raw_host = uri.host()?;
        let host = raw_host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.origins.iter().any(|o| o.matches(https, host, port)) {
            return None;
        }
        Some(Destination {
            https,
            host: host.to_owned(),
            port,
        })
    }
}

struct Destination {
    https: bool,
    host: String,
    port: u16,
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
            let Some(destination) = policy.authorize(request.uri()) else {
                tracing::warn!(
                    plugin = %plugin_id,
                    uri = %redact_query(request.uri()),
                    "outbound request denied: origin not in allowed_outbound_hosts"
                );
                return Err(HttpError::HttpRequestDenied);
            };
            let response = send(&policy, destination, request, options).await?;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// Drops the query string, which may carry credentials, from a URI for logging.
fn redact_query(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map(|a| a.as_str()).unwrap_or("?"),
        uri.path()
    )
}

/// Returns the shorter of the host's limit and the plugin's own request option.
fn effective(limit: Duration, requested: Option<Duration>) -> Duration {
    requested.map_or(limit, |r| r.min(limit))
}

async fn send(
    policy: &OutboundPolicy,
    destination: Destination,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<http::Response<WasiBody>, HttpError> {
    let connect_timeout = effective(
        policy.connect_timeout,
        options.and_then(|o| o.connect_timeout),
    );
    let response_timeout = effective(
        policy.response_timeout,
        options.and_then(|o| o.first_byte_timeout),
    );

    // 1. TCP and, for https, TLS, both under the connect timeout.
    let connect = connect(policy, &destination);
    let stream = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;

    // 2. HTTP/1.1 handshake; the connection task ends when the response body is dropped.
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(HttpError::from)?;
    tokio::spawn(connection);

    // 3. The request line carries only the path: the origin went into the connection.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| HttpError::HttpRequestUriInvalid)?;

    // 4. Response headers under the response timeout; the body is bounded by the call deadline.
    let response = tokio::time::timeout(response_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(HttpError::from)?;
    Ok(response.map(|body| body.map_err(HttpError::from).boxed_unsync()))
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

async fn connect(
    policy: &OutboundPolicy,
    destination: &Destination,
) -> Result<Box<dyn Stream>, HttpError> {
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
    let tls = policy
        .tls
        .connect(&destination.host, destination.port, tcp)
        .await?;
    Ok(Box::new(tls))
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
        policy.authorize(&uri.parse().unwrap()).is_some()
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
