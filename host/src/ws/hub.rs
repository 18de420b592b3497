//! The registry of open connections and their subscriptions, and the fan-out of processed
//! cycles and alert changes to them.
//!
//! The fan-out encodes each VM's `metrics` message once per cycle for every distinct
//! (language, metric groups) pair its subscribers requested, and hands the same shared
//! [`Frame`] to each of them. The language matters only when the VM has active alerts,
//! because their messages are the only localized text in RealtimeMetrics.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast::error::RecvError;

use super::outbox::{Closing, Frame, Outbox, Pushed};
use super::protocol::{self, AlertScope, GroupMask, Subscribe};
use super::text;
use crate::alerts::AlertEvent;
use crate::auth::Authenticator;
use crate::i18n::{Lang, Text};
use crate::metrics::{MetricAlert, RealtimeMetrics};
use crate::service::Service;

/// VMs one connection may subscribe to at once.
pub const MAX_SUBSCRIBED_VMS: usize = 100;

const RUNNING: u8 = 0;
const STOPPING: u8 = 1;
const FAILED: u8 = 2;

/// The fan-out's handle of one open connection.
#[derive(Debug)]
pub struct Peer {
    pub id: u64,
    pub client_id: String,
    pub lang: Lang,
    pub outbox: Outbox,
    /// The close used when the outbox overflows, in the peer's language.
    overflow: Closing,
}

impl Peer {
    /// Queues an ordered message and wakes the writer.
    pub fn send(&self, frame: Frame, telemetry: &crate::telemetry::Telemetry) {
        record_push(self.outbox.push(frame, &self.overflow, true), telemetry);
    }

    /// Returns the close a slow consumer gets, in the peer's language.
    pub fn slow_consumer(&self) -> Closing {
        self.overflow.clone()
    }

    /// Builds the close of `code` with `reason` in the peer's language.
    pub fn closing(&self, code: u16, reason: &Text, counted_as: &'static str) -> Closing {
        Closing {
            code,
            reason: reason.get(self.lang).to_owned(),
            counted_as,
        }
    }
}

fn record_push(pushed: Pushed, telemetry: &crate::telemetry::Telemetry) {
    if pushed == Pushed::Replaced {
        telemetry
            .ws_metrics_replaced
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Entry {
    peer: Arc<Peer>,
    vms: HashMap<Arc<str>, GroupMask>,
    alerts: AlertScope,
}

#[derive(Debug, Default)]
struct Registry {
    peers: HashMap<u64, Entry>,
    by_vm: HashMap<Arc<str>, HashMap<u64, GroupMask>>,
    all_alerts: HashSet<u64>,
}

/// The result of a `subscribe`.
#[derive(Debug)]
pub enum Subscribed {
    /// The known VMs are subscribed; the unknown ones are listed.
    Applied {
        known: Vec<Arc<str>>,
        unknown: Vec<String>,
    },
    /// The subscription would exceed [`MAX_SUBSCRIBED_VMS`]; nothing changed.
    OverLimit { requested: usize },
}

/// The state shared by the endpoint, the connections and the fan-out task.
pub struct Hub {
    pub service: Arc<Service>,
    pub auth: Arc<Authenticator>,
    registry: RwLock<Registry>,
    open: AtomicUsize,
    next_id: AtomicU64,
    /// Makes client ids unique across restarts: the start time in ms, in hex.
    id_prefix: String,
    state: AtomicU8,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

/// A reserved connection slot, released on drop.
#[derive(Debug)]
pub struct Admission {
    hub: Arc<Hub>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.hub.open.fetch_sub(1, Ordering::AcqRel);
        self.hub
            .service
            .telemetry
            .ws_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    pub fn new(service: Arc<Service>, auth: Arc<Authenticator>) -> Self {
        Self {
            service,
            auth,
            registry: RwLock::default(),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            id_prefix: format!("{:x}", crate::collection::now_ms()),
            state: AtomicU8::new(RUNNING),
        }
    }

    /// Reserves a connection slot, `None` when `max_connections` are open.
    pub fn admit(self: &Arc<Self>) -> Option<Admission> {
        let max = self.service.config.server.websocket.max_connections;
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let telemetry = &self.service.telemetry;
        telemetry.ws_connections.fetch_add(1, Ordering::Relaxed);
        telemetry
            .ws_connections_total
            .fetch_add(1, Ordering::Relaxed);
        Some(Admission { hub: self.clone() })
    }

    /// Returns true after the fan-out stopped unexpectedly.
    pub fn has_failed(&self) -> bool {
        self.state.load(Ordering::Acquire) == FAILED
    }

    /// Adds a connection speaking `lang` with no subscriptions.
    pub fn register(&self, lang: Lang) -> Arc<Peer> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = self.service.config.server.websocket.queue_messages;
        let peer = Arc::new(Peer {
            id,
            client_id: format!("ws_{}_{id}", self.id_prefix),
            lang,
            outbox: Outbox::new(queue),
            overflow: Closing {
                code: super::CLOSE_TRY_AGAIN_LATER,
                reason: text::CLOSE_SLOW_CONSUMER.get(lang).to_owned(),
                counted_as: "slow_consumer",
            },
        });
        let entry = Entry {
            peer: peer.clone(),
            vms: HashMap::new(),
            alerts: AlertScope::Subscribed,
        };
        self.write().peers.insert(id, entry);
        peer
    }

    /// Removes a connection and its subscriptions.
    pub fn unregister(&self, peer: &Peer) {
        let mut registry = self.write();
        let Some(entry) = registry.peers.remove(&peer.id) else {
            return;
        };
        for vm_id in entry.vms.keys() {
            remove_from_index(&mut registry.by_vm, vm_id, peer.id);
        }
        registry.all_alerts.remove(&peer.id);
    }

    /// Returns the VMs `peer` is subscribed to, sorted.
    #[cfg(test)]
    pub fn subscriptions(&self, peer: &Peer) -> Vec<String> {
        let registry = self.read();
        let mut vm_ids: Vec<String> = registry
            .peers
            .get(&peer.id)
            .map(|entry| entry.vms.keys().map(|id| id.to_string()).collect())
            .unwrap_or_default();
        vm_ids.sort();
        vm_ids
    }

    /// Applies a `subscribe`: the known VMs get `request.groups`, the unknown are returned.
    pub fn subscribe(&self, peer: &Peer, request: &Subscribe) -> Subscribed {
        let (known, unknown): (Vec<&String>, Vec<&String>) = self.service.live.read(|data| {
            request
                .vm_ids
                .iter()
                .partition(|id| data.vms.contains_key(id.as_str()))
        });
        let mut unknown: Vec<String> = unknown.into_iter().cloned().collect();
        unknown.sort();
        unknown.dedup();

        let mut registry = self.write();
        let Registry {
            peers,
            by_vm,
            all_alerts,
        } = &mut *registry;
        let Some(entry) = peers.get_mut(&peer.id) else {
            return Subscribed::Applied {
                known: Vec::new(),
                unknown,
            };
        };
        let added = known
            .iter()
            .filter(|id| !entry.vms.contains_key(id.as_str()))
            .collect::<HashSet<_>>()
            .len();
        let requested = entry.vms.len() + added;
        if requested > MAX_SUBSCRIBED_VMS {
            return Subscribed::OverLimit { requested };
        }

        let mut subscribed = Vec::with_capacity(known.len());
        for vm_id in known {
            // Share one allocation of each VM id between the index and every connection.
            let key = match by_vm.get_key_value(vm_id.as_str()) {
                Some((key, _)) => key.clone(),
                None => Arc::from(vm_id.as_str()),
            };
            by_vm
                .entry(key.clone())
                .or_default()
                .insert(peer.id, request.groups);
            entry.vms.insert(key.clone(), request.groups);
            subscribed.push(key);
        }
        subscribed.sort();
        subscribed.dedup();
        if let Some(scope) = request.alerts {
            entry.alerts = scope;
            match scope {
                AlertScope::All => all_alerts.insert(peer.id),
                AlertScope::Subscribed => all_alerts.remove(&peer.id),
            };
        }
        Subscribed::Applied {
            known: subscribed,
            unknown,
        }
    }

    /// Applies an `unsubscribe`: `None` removes every VM and resets the alert scope.
    pub fn unsubscribe(&self, peer: &Peer, vm_ids: Option<&[String]>) {
        {
            let mut registry = self.write();
            let Registry {
                peers,
                by_vm,
                all_alerts,
            } = &mut *registry;
            let Some(entry) = peers.get_mut(&peer.id) else {
                return;
            };
            match vm_ids {
                Some(vm_ids) => {
                    for vm_id in vm_ids {
                        if entry.vms.remove(vm_id.as_str()).is_some() {
                            remove_from_index(by_vm, vm_id, peer.id);
                        }
                    }
                }
                None => {
                    for (vm_id, _) in entry.vms.drain() {
                        remove_from_index(by_vm, &vm_id, peer.id);
                    }
                    entry.alerts = AlertScope::Subscribed;
                    all_alerts.remove(&peer.id);
                }
            }
        }
        match vm_ids {
            Some(vm_ids) => {
                let removed: HashSet<&str> = vm_ids.iter().map(String::as_str).collect();
                peer.outbox.forget_metrics(|vm_id| !removed.contains(vm_id));
            }
            None => peer.outbox.forget_metrics(|_| false),
        }
    }

    /// Queues the latest metrics of `vm_ids` for `peer` alone, right after it subscribed.
    pub fn push_latest(&self, peer: &Peer, vm_ids: &[Arc<str>], groups: GroupMask) {
        let records: Vec<(Arc<str>, RealtimeMetrics)> = self.service.live.read(|data| {
            vm_ids
                .iter()
                .filter_map(|id| {
                    let metrics = data.vms.get(id.as_ref())?.metrics.clone()?;
                    Some((id.clone(), metrics))
                })
                .collect()
        });
        let telemetry = &self.service.telemetry;
        for (vm_id, metrics) in records {
            let alerts = self.service.alerts.active_for_vm(&vm_id);
            let frame = encode_metrics(metrics, groups, &alerts, peer.lang);
            let pushed = peer
                .outbox
                .push_metrics(&vm_id, frame, &peer.overflow, false);
            record_push(pushed, telemetry);
        }
        peer.outbox.wake();
    }

    /// Pushes the newest metrics of `vm_ids` to every connection subscribed to them.
    pub fn fan_out_metrics(&self, vm_ids: &[String]) {
        // 1. The updated VMs someone is subscribed to.
        let subscribed: Vec<&String> = {
            let registry = self.read();
            vm_ids
                .iter()
                .filter(|id| registry.by_vm.contains_key(id.as_str()))
                .collect()
        };
        if subscribed.is_empty() {
            return;
        }

        // 2. Their metrics, and the active alerts of those that have any.
        let records: Vec<RealtimeMetrics> = self.service.live.read(|data| {
            subscribed
                .iter()
                .filter_map(|id| data.vms.get(id.as_str())?.metrics.clone())
                .collect()
        });
        let alerted: HashSet<String> = self
            .service
            .alerts
            .active()
            .into_iter()
            .map(|alert| alert.vm_id)
            .collect();

        // 3. One encoding per (language, groups), shared by every subscriber.
        let telemetry = &self.service.telemetry;
        let registry = self.read();
        let mut touched: HashMap<u64, &Arc<Peer>> = HashMap::new();
        for metrics in records {
            let Some((vm_id, subscribers)) = registry.by_vm.get_key_value(metrics.vm_id.as_str())
            else {
                continue;
            };
            let alerts = if alerted.contains(vm_id.as_ref()) {
                self.service.alerts.active_for_vm(vm_id)
            } else {
                Vec::new()
            };
            let mut encoded: HashMap<(Option<Lang>, GroupMask), Frame> = HashMap::new();
            for (peer_id, groups) in subscribers {
                let Some(entry) = registry.peers.get(peer_id) else {
                    continue;
                };
                let peer = &entry.peer;
                let lang = (!alerts.is_empty()).then_some(peer.lang);
                let frame = encoded
                    .entry((lang, *groups))
                    .or_insert_with(|| encode_metrics(metrics.clone(), *groups, &alerts, peer.lang))
                    .clone();
                let pushed = peer
                    .outbox
                    .push_metrics(vm_id, frame, &peer.overflow, false);
                record_push(pushed, telemetry);
                touched.insert(*peer_id, peer);
            }
        }

        // 4. Each writer wakes once and writes its whole batch.
        for peer in touched.values() {
            peer.outbox.wake();
        }
    }

    /// Pushes every subscribed VM's newest metrics, after cycle notices were missed.
    pub fn fan_out_all_metrics(&self) {
        let vm_ids: Vec<String> = self.read().by_vm.keys().map(|id| id.to_string()).collect();
        self.fan_out_metrics(&vm_ids);
    }

    /// Pushes an alert that fired or escalated to the connections that receive it.
    pub fn fan_out_alert(&self, event: &AlertEvent) {
        let registry = self.read();
        let mut targets: HashSet<u64> = registry.all_alerts.clone();
        if let Some(subscribers) = registry.by_vm.get(event.alert.vm_id.as_str()) {
            targets.extend(subscribers.keys());
        }
        let mut encoded: HashMap<Lang, Frame> = HashMap::new();
        for peer_id in targets {
            let Some(entry) = registry.peers.get(&peer_id) else {
                continue;
            };
            let peer = &entry.peer;
            let frame = encoded
                .entry(peer.lang)
                .or_insert_with(|| Arc::from(protocol::alert(&event.alert, peer.lang)))
                .clone();
            peer.send(frame, &self.service.telemetry);
        }
    }

    /// Closes every connection with a reason in its language.
    pub fn close_all(&self, code: u16, reason: &Text, counted_as: &'static str) {
        for entry in self.read().peers.values() {
            let peer = &entry.peer;
            peer.outbox.close(peer.closing(code, reason, counted_as));
        }
    }

    /// Marks the hub as stopping, so the end of the fan-out is not a failure.
    pub fn stop(&self) {
        self.state.store(STOPPING, Ordering::Release);
    }

    /// Marks the hub as failed and closes every connection with 1011.
    pub fn fail(&self) {
        if self
            .state
            .compare_exchange(RUNNING, FAILED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        tracing::error!("the WebSocket fan-out stopped; closing every connection with 1011");
        self.close_all(
            super::CLOSE_INTERNAL_ERROR,
            &text::CLOSE_INTERNAL,
            "internal",
        );
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn remove_from_index(by_vm: &mut HashMap<Arc<str>, HashMap<u64, GroupMask>>, vm_id: &str, id: u64) {
    if let Some(subscribers) = by_vm.get_mut(vm_id) {
        subscribers.remove(&id);
        if subscribers.is_empty() {
            by_vm.remove(vm_id);
        }
    }
}

/// Encodes a `metrics` message of `groups`, listing `alerts` in `lang`.
fn encode_metrics(
    mut metrics: RealtimeMetrics,
    groups: GroupMask,
    alerts: &[crate::alerts::Alert],
    lang: Lang,
) -> Frame {
    if groups != GroupMask::ALL {
        metrics.retain_groups(&groups.names());
    }
    metrics.alerts = alerts
        .iter()
        .map(|alert| MetricAlert::new(alert, lang))
        .collect();
    Arc::from(protocol::metrics(&metrics))
}

/// Forwards processed cycles and alert changes to the connections until a channel closes.
pub async fn run_fan_out(hub: Arc<Hub>) {
    let mut cycles = hub.service.subscribe_cycles();
    let mut alerts = hub.service.alerts.subscribe();
    loop {
        tokio::select! {
            cycle = cycles.recv() => match cycle {
                Ok(done) => hub.fan_out_metrics(&done.vm_ids),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "WebSocket fan-out missed cycle notices; pushing every subscribed VM");
                    hub.fan_out_all_metrics();
                }
                Err(RecvError::Closed) => return,
            },
            event = alerts.recv() => match event {
                Ok(event) if event.is_pushed() => hub.fan_out_alert(&event),
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    // NOTE: the missed alerts still show in each VM's `metrics` message
                    // (`alerts`) and in the REST API, but their `alert` messages are lost.
                    hub.service
                        .telemetry
                        .ws_alert_events_lost
                        .fetch_add(missed, Ordering::Relaxed);
                    tracing::error!(missed, "WebSocket fan-out fell behind; alert messages were not pushed");
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Waits for the fan-out task and fails the hub when it ends before [`Hub::stop`].
pub async fn supervise(hub: Arc<Hub>, task: tokio::task::JoinHandle<()>) {
    let result = task.await;
    if hub.state.load(Ordering::Acquire) != RUNNING {
        return;
    }
    match result {
        Ok(()) => tracing::error!("the WebSocket fan-out ended: a service channel closed"),
        Err(err) => tracing::error!(error = %err, "the WebSocket fan-out task failed"),
    }
    hub.fail();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertEngine;
    use crate::config::{AlertsConfig, AuthConfig, Config};
    use crate::live::LiveState;
    use crate::plugin::bindings::types::{Inventory, PowerState, Vm};

    fn hub(vm_count: usize) -> Arc<Hub> {
        let config = Config::parse("", "test.toml".as_ref(), "/".as_ref()).unwrap();
        let live = Arc::new(LiveState::default());
        let vms = (0..vm_count)
            .map(|index| Vm {
                id: format!("vm-{index}"),
                name: format!("vm {index}"),
                source_ref: None,
                host_id: None,
                cluster_id: None,
                datacenter_id: None,
                folder: None,
                power_state: PowerState::PoweredOn,
                vcpus: None,
                memory_mb: None,
                tools_status: None,
                guest_ip: None,
                guest_hostname: None,
            })
            .collect();
        live.replace_inventory(
            "lab",
            Inventory {
                datacenters: vec![],
                clusters: vec![],
                hosts: vec![],
                vms,
            },
        );
        let alerts = AlertEngine::new(vec![], AlertsConfig::default(), None).unwrap();
        let service = Service::new(
            Arc::new(config),
            live,
            None,
            Arc::new(alerts),
            vec![],
            vec![],
        );
        let auth = Authenticator::hs256(&[7; 32], &AuthConfig::default()).unwrap();
        Arc::new(Hub::new(service, Arc::new(auth)))
    }

    fn subscribe(ids: &[&str]) -> Subscribe {
        Subscribe {
            vm_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            groups: GroupMask::ALL,
            alerts: None,
        }
    }

    #[test]
    fn unknown_vms_are_reported_and_known_subscribed() {
        let hub = hub(3);
        let peer = hub.register(Lang::En);

        let outcome = hub.subscribe(&peer, &subscribe(&["vm-0", "nope", "vm-2"]));

        let Subscribed::Applied { known, unknown } = outcome else {
            panic!("expected the subscription to apply, got {outcome:?}");
        };
        assert_eq!(known, vec![Arc::<str>::from("vm-0"), Arc::from("vm-2")]);
        assert_eq!(unknown, ["nope"]);
        assert_eq!(hub.subscriptions(&peer), ["vm-0", "vm-2"]);
    }

    #[test]
    fn limit_counts_the_union() {
        let hub = hub(150);
        let peer = hub.register(Lang::En);
        let first: Vec<String> = (0..60).map(|index| format!("vm-{index}")).collect();
        let second: Vec<String> = (30..101).map(|index| format!("vm-{index}")).collect();
        let first: Vec<&str> = first.iter().map(String::as_str).collect();
        let second: Vec<&str> = second.iter().map(String::as_str).collect();

        let applied = hub.subscribe(&peer, &subscribe(&first));
        let over = hub.subscribe(&peer, &subscribe(&second));

        assert!(matches!(applied, Subscribed::Applied { .. }));
        assert!(
            matches!(over, Subscribed::OverLimit { requested: 101 }),
            "{over:?}"
        );
        assert_eq!(hub.subscriptions(&peer).len(), 60);
    }

    #[test]
    fn unregister_clears_the_index() {
        let hub = hub(2);
        let peer = hub.register(Lang::Zh);
        hub.subscribe(&peer, &subscribe(&["vm-0", "vm-1"]));

        hub.unregister(&peer);

        assert!(hub.read().by_vm.is_empty());
        assert!(hub.read().peers.is_empty());
    }

    #[tokio::test]
    async fn ended_fan_out_closes_connections_with_1011() {
        let hub = hub(1);
        let peer = hub.register(Lang::Ja);
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();

        supervise(hub.clone(), task).await;

        let batch = peer.outbox.take();
        let closing = batch.closing.expect("the connection is closing");
        assert_eq!(closing.code, 1011);
        assert_eq!(closing.reason, text::CLOSE_INTERNAL.ja);
        assert_eq!(closing.counted_as, "internal");
        assert!(hub.has_failed());
    }

    #[tokio::test]
    async fn stopped_fan_out_is_no_failure() {
        let hub = hub(1);
        let peer = hub.register(Lang::En);
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        hub.stop();

        supervise(hub.clone(), task).await;

        assert!(peer.outbox.take().closing.is_none());
        assert!(!hub.has_failed());
    }
}
