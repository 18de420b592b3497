//! The middleware every API request passes: language negotiation, the body size cap, error
//! envelopes, HTTP telemetry and the access log.

use std::sync::Arc;
use std::time::Instant;

use poem::http::{Method, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::OperationId;

use super::{ApiError, ApiState};
use crate::i18n::Lang;

/// The route label of requests that matched no operation.
const UNMATCHED: &str = "unmatched";

/// The edge middleware; see the module documentation.
pub struct Edge {
    state: Arc<ApiState>,
}

impl Edge {
    pub fn new(state: Arc<ApiState>) -> Self {
        Self { state }
    }
}

impl<E: Endpoint> Middleware<E> for Edge {
    type Output = EdgeEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        EdgeEndpoint {
            inner,
            state: self.state.clone(),
        }
    }
}

pub struct EdgeEndpoint<E> {
    inner: E,
    state: Arc<ApiState>,
}

impl<E: Endpoint> Endpoint for EdgeEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let server = &self.state.service.config.server;
        let lang = Lang::negotiate(
            request.header(header::ACCEPT_LANGUAGE),
            server.default_language,
        );
        request.set_data(lang);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(redact_query);

        let response = match cap_body(&mut request, server.max_body_bytes).await {
            Err(error) => error.to_response(lang),
            Ok(()) => match self.inner.call(request).await {
                Ok(output) => output.into_response(),
                Err(error) => {
                    let operation = error.data::<OperationId>().copied();
                    let request = format!("{method} {path}");
                    let api_error = ApiError::from_poem(&error, &request, server.max_body_bytes);
                    if let ApiError::Internal(reason) = &api_error {
                        tracing::error!(%method, path, error = %reason, "request failed");
                    }
                    let mut response = api_error.to_response(lang);
                    if let Some(operation) = operation {
                        response.set_data(operation);
                    }
                    response
                }
            },
        };

        let route = response.data::<OperationId>().map_or(UNMATCHED, |id| id.0);
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.state
            .service
            .telemetry
            .http
            .record(route, method.as_str(), status, elapsed);
        log_access(&method, &path, query.as_deref(), status, elapsed);
        Ok(response)
    }
}

/// Reads the request body into memory, up to `limit` bytes, so no handler parses more.
///
/// A `Content-Length` above the limit is rejected before reading; a body streamed without
/// one is read until it passes the limit.
async fn cap_body(request: &mut Request, limit: usize) -> Result<(), ApiError> {
    let declared = request
        .header(header::CONTENT_LENGTH)
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let has_body = declared.is_some_and(|length| length > 0)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return Ok(());
    }
    let body = request.take_body();
    match body.into_bytes_limit(limit).await {
        Ok(bytes) => {
            request.set_body(bytes);
            Ok(())
        }
        Err(poem::error::ReadBodyError::PayloadTooLarge) => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(error) => Err(ApiError::bad_request(
            "body",
            format!("cannot read the body: {error}"),
        )),
    }
}

fn log_access(
    method: &Method,
    path: &str,
    query: Option<&str>,
    status: u16,
    elapsed: std::time::Duration,
) {
    tracing::info!(
        target: "vmpulse::access",
        method = %method,
        path,
        query = query.unwrap_or(""),
        status,
        duration_ms = elapsed.as_secs_f64() * 1e3,
        "request served"
    );
}

/// Returns a query string with the value of every parameter that may carry a credential
/// replaced by `[redacted]`, so access logs never hold one. The WebSocket channel takes its
/// token as `?token=`; names such as `access_token`, `api_key` or a percent-encoded
/// `%74oken` are redacted too.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_credential_name(name) => format!("{name}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Returns true when a query parameter's name, percent-decoded, names a credential.
fn is_credential_name(name: &str) -> bool {
    let mut decoded = Vec::with_capacity(name.len());
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| name.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    ["token", "secret", "password", "key", "auth"]
        .iter()
        .any(|word| decoded.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credential_like_names() {
        assert_eq!(
            redact_query("access_token=abc&lang=en&%74oken=def&API_KEY=g"),
            "access_token=[redacted]&lang=en&%74oken=[redacted]&API_KEY=[redacted]"
        );
    }

    #[test]
    fn redact_query_hides_token_values() {
        let redacted = redact_query("vm=a&token=eyJhbGciOi.x.y&TOKEN=z");
        assert_eq!(redacted, "vm=a&token=[redacted]&TOKEN=[redacted]");
    }

    #[test]
    fn redact_query_keeps_other_parameters() {
        assert_eq!(redact_query("from=1&to=2"), "from=1&to=2");
        assert_eq!(redact_query("limit=3&lang=ja"), "limit=3&lang=ja");
    }
}
