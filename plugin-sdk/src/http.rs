//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! The host sends the request, so its rules apply: only origins granted in the plugin's
//! declaration are reachable (others fail with [`HttpError::Denied`]), and the host's
//! connect and response timeouts cap the ones set here.
//!
//! ```ignore
//! let response = Request::post("https://vc.example.com/sdk")
//!     .header("content-type", "text/xml")
//!     .body(envelope.into_bytes())
//!     .send()?;
//! ```

use std::time::Duration;

use crate::PluginError;
use crate::collector_bindings::wasi::http::outgoing_handler;
use crate::collector_bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use crate::collector_bindings::wasi::io::streams::StreamError;

/// `wasi:io` streams accept at most 4096 bytes per blocking write.
const WRITE_CHUNK: usize = 4096;
const READ_CHUNK: u64 = 64 * 1024;
/// Default cap on a response body; [`Request::max_body_bytes`] changes it.
const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

/// An HTTP request under construction.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    max_body_bytes: usize,
}

/// A response whose body has been read in full.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The reason a request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpError {
    /// The URL could not be parsed; the string gives the reason.
    InvalidUrl(String),
    /// The host refused the request because the origin is not granted to this plugin.
    Denied { url: String },
    /// The connection could not be made or broke; the string carries the cause.
    Connect { url: String, reason: String },
    /// No response within the timeout.
    Timeout { url: String },
    /// The exchange failed at the HTTP or TLS level.
    Protocol { url: String, reason: String },
    /// The response body was larger than the request's cap.
    BodyTooLarge { url: String, limit: usize },
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidUrl(reason) => write!(f, "invalid URL: {reason}"),
            Self::Denied { url } => write!(
                f,
                "request to {url} denied: its origin is not in the plugin's allowed_outbound_hosts"
            ),
            Self::Connect { url, reason } => write!(f, "connection to {url} failed: {reason}"),
            Self::Timeout { url } => write!(f, "request to {url} timed out"),
            Self::Protocol { url, reason } => write!(f, "request to {url} failed: {reason}"),
            Self::BodyTooLarge { url, limit } => {
                write!(f, "response from {url} is larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for PluginError {
    fn from(err: HttpError) -> Self {
        let message = err.to_string();
        match err {
            HttpError::InvalidUrl(_) | HttpError::Denied { .. } => PluginError::Config(message),
            HttpError::Connect { .. } | HttpError::Timeout { .. } => {
                PluginError::Unreachable(message)
            }
            HttpError::Protocol { .. } | HttpError::BodyTooLarge { .. } => {
                PluginError::Protocol(message)
            }
        }
    }
}

impl Request {
    /// Starts a GET request.
    pub fn get(url: &str) -> Self {
        Self::new(Method::Get, url)
    }

    /// Starts a POST request.
    pub fn post(url: &str) -> Self {
        Self::new(Method::Post, url)
    }

    fn new(method: Method, url: &str) -> Self {
        Self {
            method,
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_body_bytes: DEFAULT_MAX_BODY,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    /// Sets the request body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the connect and first-byte timeout; the host's own limits still apply.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the largest response body accepted, in bytes.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Sends the request and reads the whole response, blocking the plugin until done.
    ///
    /// # Errors
    ///
    /// An [`HttpError`] naming the URL. A non-2xx status is not an error: check
    /// [`Response::status`].
    pub fn send(self) -> Result<Response, HttpError> {
        let target = Target::parse(&self.url)?;
        let request = self.outgoing_request(&target)?;
        let outgoing_body = request
            .body()
            .map_err(|()| self.protocol("body already taken"))?;

        let options = self.timeout.map(request_options);
        let pending = outgoing_handler::handle(request, options)
            .map_err(|code| map_error_code(&self.url, code))?;

        if let Err(write_error) = self.write_body(outgoing_body) {
            // A refused or reset connection breaks the body stream first; the response
            // future carries the real cause, so report that when there is one.
            pending.subscribe().block();
            if let Some(Ok(Err(code))) = pending.get() {
                return Err(map_error_code(&self.url, code));
            }
            return Err(write_error);
        }

        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(map_error_code(&self.url, code)),
            Some(Err(())) | None => return Err(self.protocol("response already taken")),
        };
        self.read_response(response)
    }

    fn outgoing_request(&self, target: &Target) -> Result<OutgoingRequest, HttpError> {
        let headers = Fields::from_list(&self.headers)
            .map_err(|err| self.protocol(&format!("invalid header: {err:?}")))?;
        let request = OutgoingRequest::new(headers);
        let invalid = |part: &str| HttpError::InvalidUrl(format!("{}: invalid {part}", self.url));

        request
            .set_method(&self.method)
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&target.scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(&target.authority))
            .map_err(|()| invalid("authority"))?;
        request
            .set_path_with_query(Some(&target.path_with_query))
            .map_err(|()| invalid("path"))?;
        Ok(request)
    }

    fn write_body(&self, body: OutgoingBody) -> Result<(), HttpError> {
        {
            let stream = body
                .write()
                .map_err(|()| self.protocol("body stream taken"))?;
            for chunk in self.body.chunks(WRITE_CHUNK) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|err| self.stream_error(err))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|code| map_error_code(&self.url, code))
    }

    fn read_response(&self, response: IncomingResponse) -> Result<Response, HttpError> {
        let status = response.status();
        let headers = response.headers().entries();
        let body = response
            .consume()
            .map_err(|()| self.protocol("body already consumed"))?;
        let bytes = self.read_body(&body)?;
        IncomingBody::finish(body);
        Ok(Response {
            status,
            headers,
            body: bytes,
        })
    }

    fn read_body(&self, body: &IncomingBody) -> Result<Vec<u8>, HttpError> {
        let stream = body
            .stream()
            .map_err(|()| self.protocol("body stream taken"))?;
        let mut bytes = Vec::new();
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => return Ok(bytes),
                Err(err) => return Err(self.stream_error(err)),
            }
            if bytes.len() > self.max_body_bytes {
                return Err(HttpError::BodyTooLarge {
                    url: self.url.clone(),
                    limit: self.max_body_bytes,
                });
            }
        }
    }

    fn protocol(&self, reason: &str) -> HttpError {
        HttpError::Protocol {
            url: self.url.clone(),
            reason: reason.to_owned(),
        }
    }

    fn stream_error(&self, err: StreamError) -> HttpError {
        match err {
            StreamError::LastOperationFailed(io) => match outgoing_handler_error(&io) {
                Some(code) => map_error_code(&self.url, code),
                None => self.protocol(&io.to_debug_string()),
            },
            StreamError::Closed => self.protocol("stream closed early"),
        }
    }
}

impl Response {
    /// Returns the first value of header `name` (case-insensitive) as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// Returns true for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn outgoing_handler_error(
    io: &crate::collector_bindings::wasi::io::error::Error,
) -> Option<ErrorCode> {
    crate::collector_bindings::wasi::http::types::http_error_code(io)
}

fn request_options(timeout: Duration) -> RequestOptions {
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let options = RequestOptions::new();
    // The setters fail only when the host does not support a timeout; its own limit then applies.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    options
}

fn map_error_code(url: &str, code: ErrorCode) -> HttpError {
    let url = url.to_owned();
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied { url },
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => HttpError::Timeout { url },
        ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpProhibited
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionLimitReached => HttpError::Connect {
            url,
            reason: format!("{code:?}"),
        },
        other => HttpError::Protocol {
            url,
            reason: format!("{other:?}"),
        },
    }
}

/// The parts of an absolute `http` or `https` URL.
#[derive(Debug)]
struct Target {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, HttpError> {
        let invalid = |reason: &str| HttpError::InvalidUrl(format!("{url}: {reason}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected scheme://host"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(invalid("only http and https are supported")),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid("expected a host without user information"));
        }
        let path_with_query = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Self {
            scheme,
            authority: authority.to_owned(),
            path_with_query,
        })
    }
}
