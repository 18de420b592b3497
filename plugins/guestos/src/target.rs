//! The exporter URL of each VM: its override, or the URL template filled in.
//!
//! Placeholders are replaced so that the URL stays valid: `{guest_ip}` becomes the address
//! (an IPv6 address in brackets), and `{guest_hostname}` and `{vm_name}` are
//! percent-encoded except for `A-Z a-z 0-9 - . _ ~`, which leaves a DNS name unchanged.

use std::net::IpAddr;

use vmpulse_plugin_sdk::{PluginError, Vm};

use crate::config::{Config, has_http_scheme};

/// A value the template takes from the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    GuestIp,
    GuestHostname,
    VmName,
}

impl Placeholder {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "guest_ip" => Some(Self::GuestIp),
            "guest_hostname" => Some(Self::GuestHostname),
            "vm_name" => Some(Self::VmName),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    Value(Placeholder),
}

/// A parsed `url_template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<'a> {
    parts: Vec<Part<'a>>,
}

impl<'a> Template<'a> {
    /// Splits a template into text and placeholders.
    ///
    /// # Errors
    ///
    /// A message naming the unknown placeholder, the unclosed brace or the missing scheme.
    pub fn parse(template: &'a str) -> Result<Self, String> {
        if !has_http_scheme(template) {
            return Err(format!(
                "{template:?} must start with http:// or https://, for example \
                 http://{{guest_ip}}:9100/metrics"
            ));
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("unmatched `}}` in {template:?}"));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in {template:?}"))?;
            let name = &rest[open + 1..open + close];
            let placeholder = Placeholder::parse(name).ok_or_else(|| {
                format!(
                    "unknown placeholder `{{{name}}}` in {template:?}; use {{guest_ip}}, \
                     {{guest_hostname}} or {{vm_name}}"
                )
            })?;
            if open > 0 {
                parts.push(Part::Text(&rest[..open]));
            }
            parts.push(Part::Value(placeholder));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest));
        }
        Ok(Self { parts })
    }

    /// Fills in the VM's values.
    ///
    /// # Errors
    ///
    /// [`PluginError::Unreachable`] starting with "no guest IP" or "no guest hostname"
    /// when the template needs a value VMware Tools did not report, and
    /// [`PluginError::Other`] for a guest IP that is not an IP address.
    pub fn expand(&self, vm: &Vm) -> Result<String, PluginError> {
        let mut url = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => url.push_str(text),
                Part::Value(Placeholder::GuestIp) => url.push_str(&guest_ip(vm)?),
                Part::Value(Placeholder::GuestHostname) => {
                    let hostname = non_empty(vm.guest_hostname.as_deref()).ok_or_else(|| {
                        PluginError::Unreachable(
                            "no guest hostname: VMware Tools reports none and `overrides` \
                             has no entry for this VM"
                                .to_owned(),
                        )
                    })?;
                    percent_encode_into(&mut url, hostname);
                }
                Part::Value(Placeholder::VmName) => percent_encode_into(&mut url, &vm.name),
            }
        }
        Ok(url)
    }
}

/// Returns the exporter URL of `vm`: its override by id, then by name, else the template.
///
/// # Errors
///
/// As [`Template::expand`]; a template that does not parse is a config error, which
/// [`Config::load`] already rejects.
pub fn scrape_url(config: &Config, vm: &Vm) -> Result<String, PluginError> {
    if let Some(url) = config
        .overrides
        .get(&vm.id)
        .or_else(|| config.overrides.get(&vm.name))
    {
        return Ok(url.clone());
    }
    Template::parse(&config.url_template)
        .map_err(PluginError::Config)?
        .expand(vm)
}

/// Formats the VM's guest IP for a URL host.
fn guest_ip(vm: &Vm) -> Result<String, PluginError> {
    let text = non_empty(vm.guest_ip.as_deref()).ok_or_else(|| {
        PluginError::Unreachable(
            "no guest IP: VMware Tools reports no IP address and `overrides` has no entry \
             for this VM"
                .to_owned(),
        )
    })?;
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(address)) => Ok(address.to_string()),
        Ok(IpAddr::V6(address)) => Ok(format!("[{address}]")),
        Err(_) => Err(PluginError::Other(format!(
            "guest IP {text:?} is not an IP address (an IPv6 zone such as %eth0 cannot be \
             used in a URL); set an override for this VM"
        ))),
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Appends `value` with every byte outside the URL's unreserved characters percent-encoded.
fn percent_encode_into(url: &mut String, value: &str) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vmpulse_plugin_sdk::PowerState;

    use super::*;

    fn vm(ip: Option<&str>, hostname: Option<&str>) -> Vm {
        Vm {
            id: "4f2a9c1e.5003a1b2".to_owned(),
            name: "web 01/ä".to_owned(),
            source_ref: Some("vm-42".to_owned()),
            host_id: None,
            cluster_id: None,
            datacenter_id: None,
            folder: None,
            power_state: PowerState::PoweredOn,
            vcpus: Some(2),
            memory_mb: Some(4096),
            tools_status: None,
            guest_ip: ip.map(str::to_owned),
            guest_hostname: hostname.map(str::to_owned),
        }
    }

    fn config(template: &str, overrides: &[(&str, &str)]) -> Config {
        Config {
            url_template: template.to_owned(),
            overrides: overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            timeout_ms: 5000,
            max_body_bytes: 1024,
        }
    }

    fn message(error: PluginError) -> String {
        match error {
            PluginError::Config(m)
            | PluginError::Unreachable(m)
            | PluginError::Auth(m)
            | PluginError::Protocol(m)
            | PluginError::Other(m) => m,
        }
    }

    #[test]
    fn default_template_with_ipv4() {
        let config = config("http://{guest_ip}:9100/metrics", &[]);

        let url = scrape_url(&config, &vm(Some("10.0.8.15"), None)).unwrap();

        assert_eq!(url, "http://10.0.8.15:9100/metrics");
    }

    #[test]
    fn ipv6_goes_in_brackets() {
        let config = config("http://{guest_ip}:9100/metrics", &[]);

        let url = scrape_url(&config, &vm(Some("fd00::15"), None)).unwrap();

        assert_eq!(url, "http://[fd00::15]:9100/metrics");
    }

    #[test]
    fn hostname_and_name_are_encoded() {
        let config = config("https://{guest_hostname}:9182/metrics?vm={vm_name}", &[]);

        let url = scrape_url(&config, &vm(None, Some("web01.lab.example"))).unwrap();

        assert_eq!(
            url,
            "https://web01.lab.example:9182/metrics?vm=web%2001%2F%C3%A4"
        );
    }

    #[test]
    fn override_by_id_wins_over_name_and_template() {
        let config = config(
            "http://{guest_ip}:9100/metrics",
            &[
                ("web 01/ä", "http://by-name:9100/metrics"),
                ("4f2a9c1e.5003a1b2", "http://by-id:9100/metrics"),
            ],
        );

        assert_eq!(
            scrape_url(&config, &vm(None, None)).unwrap(),
            "http://by-id:9100/metrics"
        );
    }

    #[test]
    fn override_by_name_needs_no_guest_ip() {
        let config = config(
            "http://{guest_ip}:9100/metrics",
            &[("web 01/ä", "http://127.0.0.1:9100/metrics")],
        );

        assert_eq!(
            scrape_url(&config, &vm(None, None)).unwrap(),
            "http://127.0.0.1:9100/metrics"
        );
    }

    #[test]
    fn missing_guest_ip_is_reported() {
        let config = config("http://{guest_ip}:9100/metrics", &[]);

        for ip in [None, Some(""), Some("  ")] {
            let err = scrape_url(&config, &vm(ip, None)).unwrap_err();
            assert!(matches!(err, PluginError::Unreachable(_)), "{err:?}");
            assert!(message(err).starts_with("no guest IP"));
        }
    }

    #[test]
    fn missing_hostname_is_reported() {
        let config = config("http://{guest_hostname}:9100/metrics", &[]);

        let err = scrape_url(&config, &vm(Some("10.0.0.1"), None)).unwrap_err();

        assert!(message(err).starts_with("no guest hostname"));
    }

    #[test]
    fn invalid_guest_ip_is_reported() {
        let config = config("http://{guest_ip}:9100/metrics", &[]);

        let err = scrape_url(&config, &vm(Some("fe80::1%ens192"), None)).unwrap_err();

        assert!(matches!(err, PluginError::Other(_)), "{err:?}");
        assert!(message(err).contains("fe80::1%ens192"));
    }

    #[test]
    fn template_errors() {
        assert!(
            Template::parse("http://{guest_ip:9100/")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            Template::parse("http://guest_ip}:9100/")
                .unwrap_err()
                .contains("unmatched")
        );
        assert!(
            Template::parse("http://{ip}:9100/")
                .unwrap_err()
                .contains("`{ip}`")
        );
        assert!(
            Template::parse("ftp://{guest_ip}/")
                .unwrap_err()
                .contains("http://")
        );
        assert!(Template::parse("HTTP://{guest_ip}:9100/").is_ok());
    }
}
