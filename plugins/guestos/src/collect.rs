//! One `collect` call: each VM of the batch scraped in turn.
//!
//! The scrapes run one after another because the host already runs several batches at
//! once. Each waits at most `timeout_ms` to connect and for each part of the response
//! (see `scrape`). A VM whose exporter fails gets an entry in `CollectResult::errors` and
//! no sample, which the host shows as "no guest data", and the rest of the batch goes on.
//!
//! NOTE: the whole call still ends at the plugin's `call_timeout_secs` (10 s by default).
//! So a batch absorbs only a few exporters that time out, for example behind a firewall
//! that drops packets, before the host cancels it and the whole batch has no guest data.
//! Keep `timeout_ms` times the number of exporters that may hang in one batch below
//! `call_timeout_secs`.

use vmpulse_plugin_sdk::{CollectResult, PluginError, Vm, VmError, VmSample};

use crate::config::Config;
use crate::counter_store::{CounterStore, StateStore};
use crate::reading::Reading;
use crate::sample::build_sample;
use crate::target;

/// Counts a batch reports besides its result.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchStats {
    /// VMs whose counters did not fit into the host's state store.
    pub not_stored: usize,
}

/// Collects every VM of `vms`, fetching payloads with `fetch(url)`.
///
/// `now` returns the wall clock in seconds since the Unix epoch. It times the scrapes that
/// carry no exporter clock and ages the stored counters.
pub fn collect_batch<S: StateStore>(
    config: &Config,
    vms: &[Vm],
    mut fetch: impl FnMut(&str) -> Result<Vec<u8>, PluginError>,
    store: &mut CounterStore<S>,
    mut now: impl FnMut() -> f64,
) -> (CollectResult, BatchStats) {
    let mut result = CollectResult::default();
    let mut stats = BatchStats::default();
    for vm in vms {
        match collect_vm(config, vm, &mut fetch, store, now(), &mut stats) {
            Ok(sample) => result.samples.push(sample),
            Err(error) => result.errors.push(VmError {
                vm_id: vm.id.clone(),
                error,
            }),
        }
    }
    (result, stats)
}

fn collect_vm<S: StateStore>(
    config: &Config,
    vm: &Vm,
    fetch: &mut impl FnMut(&str) -> Result<Vec<u8>, PluginError>,
    store: &mut CounterStore<S>,
    scraped_at: f64,
    stats: &mut BatchStats,
) -> Result<VmSample, PluginError> {
    let url = target::scrape_url(config, vm)?;
    let body = fetch(&url)?;
    let reading = Reading::from_payload(&body).map_err(|err| {
        PluginError::Protocol(format!("invalid exposition text from {url}: {err}"))
    })?;
    if reading.recognized_samples == 0 {
        return Err(PluginError::Protocol(format!(
            "{url} serves no node_exporter or windows_exporter metrics"
        )));
    }

    let previous = store.load(&vm.id);
    let (sample, snapshot) = build_sample(&vm.id, reading, scraped_at, previous.as_ref());
    if store.save(&vm.id, &snapshot).is_err() {
        stats.not_stored += 1;
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};
    use std::rc::Rc;

    use vmpulse_plugin_sdk::PowerState;

    use super::*;

    #[derive(Clone, Default)]
    struct SharedMap(Rc<RefCell<HashMap<String, String>>>);

    impl StateStore for SharedMap {
        fn get(&self, key: &str) -> Option<String> {
            self.0.borrow().get(key).cloned()
        }

        fn set(&mut self, key: &str, value: Option<&str>) -> bool {
            match value {
                Some(value) => self.0.borrow_mut().insert(key.into(), value.into()),
                None => self.0.borrow_mut().remove(key),
            };
            true
        }
    }

    fn vm(id: &str, ip: Option<&str>) -> Vm {
        Vm {
            id: id.to_owned(),
            name: format!("name-{id}"),
            source_ref: None,
            host_id: None,
            cluster_id: None,
            datacenter_id: None,
            folder: None,
            power_state: PowerState::PoweredOn,
            vcpus: None,
            memory_mb: None,
            tools_status: None,
            guest_ip: ip.map(str::to_owned),
            guest_hostname: None,
        }
    }

    fn config() -> Config {
        Config {
            url_template: "http://{guest_ip}:9100/metrics".to_owned(),
            overrides: BTreeMap::new(),
            timeout_ms: 1000,
            max_body_bytes: 1 << 20,
        }
    }

    fn payloads(
        bodies: &[(&str, &str)],
    ) -> impl FnMut(&str) -> Result<Vec<u8>, PluginError> + use<> {
        let bodies: HashMap<String, String> = bodies
            .iter()
            .map(|(url, body)| ((*url).to_owned(), (*body).to_owned()))
            .collect();
        move |url| {
            bodies
                .get(url)
                .map(|body| body.clone().into_bytes())
                .ok_or_else(|| PluginError::Unreachable(format!("connection to {url} refused")))
        }
    }

    fn kind_and_message(error: &PluginError) -> (&'static str, &str) {
        match error {
            PluginError::Config(m) => ("config", m),
            PluginError::Unreachable(m) => ("unreachable", m),
            PluginError::Auth(m) => ("auth", m),
            PluginError::Protocol(m) => ("protocol", m),
            PluginError::Other(m) => ("other", m),
        }
    }

    #[test]
    fn one_failing_vm_costs_only_itself() {
        let vms = [
            vm("up", Some("10.0.0.1")),
            vm("down", Some("10.0.0.2")),
            vm("no-ip", None),
            vm("garbage", Some("10.0.0.4")),
            vm("foreign", Some("10.0.0.5")),
        ];
        let fetch = payloads(&[
            ("http://10.0.0.1:9100/metrics", "node_load1 0.5\n"),
            (
                "http://10.0.0.4:9100/metrics",
                "node_load1 0.5\nnot a metric line\n",
            ),
            ("http://10.0.0.5:9100/metrics", "http_requests_total 5\n"),
        ]);
        let mut store = CounterStore::new(SharedMap::default(), 1000.0);

        let (result, stats) = collect_batch(&config(), &vms, fetch, &mut store, || 1000.0);

        assert_eq!(result.samples.len(), 1);
        assert_eq!(result.samples[0].vm_id, "up");
        assert_eq!(result.samples[0].cpu.load1min, Some(0.5));
        let errors: HashMap<&str, (&str, &str)> = result
            .errors
            .iter()
            .map(|e| (e.vm_id.as_str(), kind_and_message(&e.error)))
            .collect();
        assert_eq!(errors.len(), 4);
        assert_eq!(errors["down"].0, "unreachable");
        assert_eq!(errors["no-ip"].0, "unreachable");
        assert!(
            errors["no-ip"].1.starts_with("no guest IP"),
            "{}",
            errors["no-ip"].1
        );
        assert_eq!(errors["garbage"].0, "protocol");
        assert!(
            errors["garbage"].1.contains("line 2:"),
            "{}",
            errors["garbage"].1
        );
        assert_eq!(errors["foreign"].0, "protocol");
        assert!(
            errors["foreign"].1.contains("no node_exporter"),
            "{}",
            errors["foreign"].1
        );
        assert_eq!(stats, BatchStats::default());
    }

    #[test]
    fn rates_come_from_the_stored_previous_scrape() {
        let state = SharedMap::default();
        let vms = [vm("a", Some("10.0.0.1"))];
        let url = "http://10.0.0.1:9100/metrics";
        let first = payloads(&[(
            url,
            "node_time_seconds 1000\nnode_context_switches_total 100\n",
        )]);
        let second = payloads(&[(
            url,
            "node_time_seconds 1030\nnode_context_switches_total 400\n",
        )]);

        let mut store = CounterStore::new(state.clone(), 1000.0);
        let (first_result, _) = collect_batch(&config(), &vms, first, &mut store, || 1000.0);
        // A later call: a fresh instance with the same host state.
        let mut store = CounterStore::new(state, 1030.0);
        let (second_result, _) = collect_batch(&config(), &vms, second, &mut store, || 1030.0);

        assert_eq!(first_result.samples[0].cpu.context_switches, None);
        assert_eq!(second_result.samples[0].cpu.context_switches, Some(10.0));
    }
}
