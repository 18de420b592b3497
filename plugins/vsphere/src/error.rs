//! Failures of one vim25 request, and how they become the host's [`PluginError`] cases.

use vmpulse_plugin_sdk::PluginError;
use vmpulse_plugin_sdk::http::HttpError;

/// A SOAP fault returned by vCenter.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The vim25 method that failed, such as `QueryPerf`.
    pub method: &'static str,
    /// The fault type, such as `NotAuthenticated` or `ManagedObjectNotFound`.
    pub name: String,
    /// The `faultstring`, often empty.
    pub message: String,
}

impl Fault {
    /// Returns true when the session cookie is no longer valid, for example after a
    /// vCenter restart or an idle timeout. Logging in again fixes it.
    pub fn is_not_authenticated(&self) -> bool {
        self.name == "NotAuthenticated"
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed with SOAP fault {}", self.method, self.name)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// The failure of one vim25 request.
#[derive(Debug, Clone)]
pub enum VimError {
    /// The HTTP exchange failed: connection refused, timeout, TLS, denied origin.
    Http(HttpError),
    /// vCenter returned a SOAP fault.
    Fault(Fault),
    /// The response was not the SOAP response the request expects.
    Protocol(String),
}

impl VimError {
    /// Returns true for a fault that logging in again can fix.
    pub fn is_not_authenticated(&self) -> bool {
        matches!(self, Self::Fault(fault) if fault.is_not_authenticated())
    }
}

impl From<HttpError> for VimError {
    fn from(err: HttpError) -> Self {
        Self::Http(err)
    }
}

impl std::fmt::Display for VimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(err) => err.fmt(f),
            Self::Fault(fault) => fault.fmt(f),
            Self::Protocol(message) => f.write_str(message),
        }
    }
}

impl From<VimError> for PluginError {
    fn from(err: VimError) -> Self {
        match err {
            VimError::Http(err) => err.into(),
            VimError::Fault(fault) => match fault.name.as_str() {
                "InvalidLogin" => PluginError::Auth(format!(
                    "{fault}: vCenter rejected the user name or password. Check `username` \
                     and the `password` secret"
                )),
                "NotAuthenticated" => PluginError::Auth(format!(
                    "{fault}: vCenter did not accept the session even after a new login"
                )),
                "NoPermission" => PluginError::Auth(format!(
                    "{fault}: the vCenter user lacks a privilege this collector needs. \
                     Grant it the Read-only role on the inventory"
                )),
                _ => PluginError::Protocol(fault.to_string()),
            },
            VimError::Protocol(message) => PluginError::Protocol(message),
        }
    }
}
