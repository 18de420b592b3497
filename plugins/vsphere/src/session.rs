//! The vCenter session: service content, login, the session cookie and its renewal.
//!
//! Every plugin call runs in a fresh WebAssembly instance, so the session lives in host
//! state under [`STATE_KEY`]: the cookie, the service content and the performance counter
//! catalog. A call logs in only when no stored session exists, when the stored one was made
//! for another URL or user, or when vCenter returns `NotAuthenticated` (after a restart or
//! an idle timeout). Then [`Session::run`] logs in again, and the operation it retries
//! recreates its own server-side objects (container views) and reloads the counter
//! catalog, whose keys may differ after an upgrade.

use serde::{Deserialize, Serialize};
use vmpulse_plugin_sdk::{PluginError, log, state};

use crate::config::Config;
use crate::counters::{self, PerfCatalog};
use crate::error::VimError;
use crate::soap::{self, MoRef, RequestBody};
use crate::time;
use crate::xml::Element;

/// Host state key of the stored session.
const STATE_KEY: &str = "vsphere.session";

/// The managed objects and facts of `ServiceInstance.content` this collector uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceContent {
    /// `about.instanceUuid`, which makes IDs unique across vCenters.
    pub instance_uuid: String,
    /// `about.apiVersion`, sent back in the SOAPAction header.
    pub api_version: Option<String>,
    pub root_folder: MoRef,
    pub property_collector: MoRef,
    pub view_manager: MoRef,
    pub perf_manager: MoRef,
    pub session_manager: MoRef,
    /// The OptionManager with vCenter's advanced settings.
    pub setting: Option<MoRef>,
}

/// The session data kept in host state between calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSession {
    url: String,
    username: String,
    service: ServiceContent,
    /// The `vmware_soap_session=…` pair, logged in when `authenticated` is set.
    cookie: Option<String>,
    authenticated: bool,
    catalog: Option<PerfCatalog>,
}

/// A logged-in session for the length of one plugin call.
pub struct Session {
    config: Config,
    stored: StoredSession,
    /// Set when `stored` changed and must be written back to host state.
    changed: bool,
}

impl Session {
    /// Resumes the stored session, or connects and logs in when there is none.
    ///
    /// # Errors
    ///
    /// `Unreachable` when vCenter cannot be reached, `Auth` for a rejected login, `Config`
    /// without the `password` secret, `Protocol` for a response that is not vim25 SOAP.
    pub fn open(config: &Config) -> Result<Self, PluginError> {
        let (stored, changed) = match load_stored(config) {
            Some(stored) if stored.authenticated => (stored, false),
            _ => (connect(config)?, true),
        };
        let mut session = Self {
            config: config.clone(),
            stored,
            changed,
        };
        // Stored at once, so calls running in parallel reuse this login.
        session.save();
        Ok(session)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn service(&self) -> &ServiceContent {
        &self.stored.service
    }

    /// Sends one request with the session cookie and returns its response element.
    ///
    /// # Errors
    ///
    /// Any [`VimError`]. [`Session::run`] handles `NotAuthenticated` faults.
    pub fn call(&mut self, request: &RequestBody) -> Result<Element, VimError> {
        let response = soap::call(
            &self.config.url,
            self.stored.cookie.as_deref(),
            self.stored.service.api_version.as_deref(),
            request,
        )?;
        if let Some(cookie) = response.session_cookie
            && self.stored.cookie.as_ref() != Some(&cookie)
        {
            self.stored.cookie = Some(cookie);
            self.changed = true;
        }
        Ok(response.body)
    }

    /// Runs `operation`, and once more after logging in again if vCenter no longer accepts
    /// the session. The operation must recreate any server-side object it uses.
    ///
    /// # Errors
    ///
    /// The operation's error, or the error of logging in again.
    pub fn run<T>(
        &mut self,
        mut operation: impl FnMut(&mut Session) -> Result<T, VimError>,
    ) -> Result<T, PluginError> {
        match operation(self) {
            Err(err) if err.is_not_authenticated() => {
                log::warn(&format!(
                    "vCenter {} no longer accepts the session ({err}), so the collector logs \
                     in again",
                    self.config.url
                ));
                self.reauthenticate()?;
                operation(self).map_err(PluginError::from)
            }
            result => result.map_err(PluginError::from),
        }
    }

    /// Returns vCenter's current time in milliseconds since the Unix epoch. It also keeps
    /// the session from timing out.
    ///
    /// # Errors
    ///
    /// Any [`VimError`] of the request, or `Protocol` for an unreadable time.
    pub fn current_time_ms(&mut self) -> Result<i64, VimError> {
        let instance = MoRef::new("ServiceInstance", "ServiceInstance");
        let response = self.call(&RequestBody::new("CurrentTime", &instance))?;
        let text = response.child_text("returnval").unwrap_or_default();
        time::parse_ms(text).map_err(|err| {
            VimError::Protocol(format!("CurrentTime returned {text:?}, not a time: {err}"))
        })
    }

    /// Returns the performance counter catalog, reading it from vCenter on first use in
    /// a session.
    ///
    /// # Errors
    ///
    /// Any [`VimError`] of reading the catalog.
    pub fn perf_catalog(&mut self) -> Result<PerfCatalog, VimError> {
        if let Some(catalog) = &self.stored.catalog {
            return Ok(catalog.clone());
        }
        let catalog = counters::load_catalog(self)?;
        self.stored.catalog = Some(catalog.clone());
        self.changed = true;
        Ok(catalog)
    }

    /// Writes the session back to host state if it changed.
    pub fn save(&mut self) {
        if !self.changed {
            return;
        }
        self.changed = false;
        let Ok(json) = serde_json::to_string(&self.stored) else {
            return;
        };
        if !state::set(STATE_KEY, &json) {
            log::warn(
                "host state store is full: the vCenter session is not kept, so the next \
                 call logs in again",
            );
        }
    }

    /// Logs in again, unless another call already replaced the session that failed.
    fn reauthenticate(&mut self) -> Result<(), PluginError> {
        if let Some(stored) = load_stored(&self.config)
            && stored.authenticated
            && stored.cookie != self.stored.cookie
        {
            self.stored = stored;
            return Ok(());
        }
        self.stored = connect(&self.config)?;
        self.changed = true;
        self.save();
        Ok(())
    }
}

/// Logs out of the stored session, if any, and removes it from host state.
pub fn logout(config: &Config) {
    let Some(stored) = load_stored(config) else {
        return;
    };
    state::remove(STATE_KEY);
    if !stored.authenticated {
        return;
    }
    let request = RequestBody::new("Logout", &stored.service.session_manager);
    let api_version = stored.service.api_version.as_deref();
    match soap::call(&config.url, stored.cookie.as_deref(), api_version, &request) {
        Ok(_) => log::info(&format!("logged out of vCenter {}", config.url)),
        Err(err) => log::warn(&format!(
            "logging out of vCenter {} failed: {err}",
            config.url
        )),
    }
}

fn load_stored(config: &Config) -> Option<StoredSession> {
    let json = state::get(STATE_KEY)?;
    let stored: StoredSession = serde_json::from_str(&json).ok()?;
    (stored.url == config.url && stored.username == config.username).then_some(stored)
}

/// Reads the service content and logs in.
fn connect(config: &Config) -> Result<StoredSession, PluginError> {
    let instance = MoRef::new("ServiceInstance", "ServiceInstance");
    let request = RequestBody::new("RetrieveServiceContent", &instance);
    let response = soap::call(&config.url, None, None, &request)?;
    let service = read_service_content(&response.body)?;
    let password = vmpulse_plugin_sdk::secret("password")?;

    let mut login = RequestBody::new("Login", &service.session_manager);
    login
        .params
        .text("userName", &config.username)
        .text("password", &password);
    // vCenter may bind the session to the cookie it set on the first request.
    let cookie = response.session_cookie;
    let api_version = service.api_version.as_deref();
    let logged_in = soap::call(&config.url, cookie.as_deref(), api_version, &login)?;
    let Some(cookie) = logged_in.session_cookie.or(cookie) else {
        return Err(PluginError::Protocol(format!(
            "vCenter {} accepted the login but set no {} cookie",
            config.url,
            soap::SESSION_COOKIE
        )));
    };

    log::info(&format!(
        "logged in to vCenter {} as {}",
        config.url, config.username
    ));
    Ok(StoredSession {
        url: config.url.clone(),
        username: config.username.clone(),
        service,
        cookie: Some(cookie),
        authenticated: true,
        catalog: None,
    })
}

fn read_service_content(response: &Element) -> Result<ServiceContent, VimError> {
    let missing = |field: &str| {
        VimError::Protocol(format!(
            "RetrieveServiceContent returned no {field}. Is the URL a vCenter SDK endpoint \
             such as https://vc.example.com/sdk?"
        ))
    };
    let content = response
        .child("returnval")
        .ok_or_else(|| missing("returnval"))?;
    let moref = |field: &'static str| {
        content
            .child(field)
            .and_then(MoRef::from_element)
            .ok_or_else(|| missing(field))
    };
    let about = content.child("about").ok_or_else(|| missing("about"))?;
    let instance_uuid = about
        .child_text("instanceUuid")
        .filter(|uuid| crate::ids::instance_prefix(uuid).is_some())
        .ok_or_else(|| {
            missing("about.instanceUuid (a standalone ESXi host has none: point `url` at vCenter)")
        })?;

    Ok(ServiceContent {
        instance_uuid: instance_uuid.to_owned(),
        api_version: about.child_text("apiVersion").map(str::to_owned),
        root_folder: moref("rootFolder")?,
        property_collector: moref("propertyCollector")?,
        view_manager: moref("viewManager")?,
        perf_manager: moref("perfManager")?,
        session_manager: moref("sessionManager")?,
        setting: content.child("setting").and_then(MoRef::from_element),
    })
}
