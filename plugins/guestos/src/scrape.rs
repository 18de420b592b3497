//! One HTTP request to a VM's exporter.

use std::time::Duration;

use vmpulse_plugin_sdk::PluginError;
use vmpulse_plugin_sdk::http::{HttpError, Request};

use crate::config::Config;

/// Asks for the text format the parser reads; exporters offer protobuf or OpenMetrics only
/// when asked.
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// Fetches the exporter payload at `url`.
///
/// NOTE: `timeout_ms` bounds the connection, the first byte and each gap between bytes,
/// which is what the SDK's client offers, so an exporter that trickles its answer can take
/// longer in total; the plugin's call deadline in the host still ends it.
///
/// # Errors
///
/// [`PluginError::Unreachable`] when the exporter cannot be reached, times out or answers
/// with a non-2xx status; [`PluginError::Protocol`] for a body over `max_body_bytes` or a
/// broken exchange; [`PluginError::Config`] when the host denies the URL's origin.
pub fn fetch(url: &str, config: &Config) -> Result<Vec<u8>, PluginError> {
    let response = Request::get(url)
        .header("accept", ACCEPT)
        .timeout(Duration::from_millis(config.timeout_ms))
        .max_body_bytes(config.max_body_len())
        .send()
        .map_err(|err| describe_http_error(err, config))?;
    if !response.is_success() {
        return Err(PluginError::Unreachable(format!(
            "exporter at {url} responded with HTTP {}",
            response.status
        )));
    }
    Ok(response.body)
}

fn describe_http_error(err: HttpError, config: &Config) -> PluginError {
    match err {
        HttpError::BodyTooLarge { url, limit } => PluginError::Protocol(format!(
            "response from {url} is larger than {limit} bytes; raise `max_body_bytes` \
             (now {}) if the exporter is expected to serve that much",
            config.max_body_bytes
        )),
        other => other.into(),
    }
}
