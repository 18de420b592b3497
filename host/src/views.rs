//! Aggregates, VM status and the system overview, recomputed after every cycle and served
//! from memory.
//!
//! Only VMs whose status is online or warning (powered on, with fresh data) contribute
//! metrics: a powered-off VM's last values or a failing VM's stale ones would skew the
//! averages. Averages, minimums and maximums use only the VMs that have the value, and a
//! statistic no VM has is absent.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use poem_openapi::{Enum, Object};
use serde::Serialize;

use crate::alerts::{Alert, AlertMetric, Severity};
use crate::config::GroupConfig;
use crate::i18n::Lang;
use crate::live::{LiveData, VmRecord, VmStatus};
use crate::plugin::bindings::types::PowerState;
use crate::timestamp::Timestamp;

/// What an aggregate covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum Scope {
    Global,
    Datacenter,
    Cluster,
    Group,
    Host,
}

/// VM counts by status. `online` includes VMs in warning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
pub struct VmCount {
    pub total: u64,
    pub online: u64,
    pub offline: u64,
    pub error: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct CpuAggregate {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub avg_usage_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub max_usage_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub min_usage_percent: Option<f64>,
    /// vCPUs of the powered-on VMs.
    pub total_cores: u64,
    /// vCPUs busy on average: the sum of vCPUs x CPU usage over VMs with both known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub active_cores: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct MemoryAggregate {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub avg_usage_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub max_usage_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub min_usage_percent: Option<f64>,
    /// Configured memory of the powered-on VMs, in GiB.
    pub total_gb: f64,
    /// Memory in use, in GiB: the guest's used memory where an exporter reports it, else
    /// memory usage x configured memory, over VMs with either known.
    #[serde(rename = "usedGB", skip_serializing_if = "Option::is_none")]
    #[oai(rename = "usedGB", skip_serializing_if_is_none)]
    pub used_gb: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct DiskAggregate {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub avg_usage_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub max_usage_percent: Option<f64>,
    #[serde(rename = "totalReadIOPS", skip_serializing_if = "Option::is_none")]
    #[oai(rename = "totalReadIOPS", skip_serializing_if_is_none)]
    pub total_read_iops: Option<f64>,
    #[serde(rename = "totalWriteIOPS", skip_serializing_if = "Option::is_none")]
    #[oai(rename = "totalWriteIOPS", skip_serializing_if_is_none)]
    pub total_write_iops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub avg_read_latency: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub avg_write_latency: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct NetworkAggregate {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub total_in_bps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub total_out_bps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub avg_in_bps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub avg_out_bps: Option<f64>,
}

/// The AggregatedMetrics record of the API.
#[derive(Debug, Clone, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct AggregatedMetrics {
    pub scope: Scope,
    pub scope_id: String,
    pub scope_name: String,
    pub timestamp: Timestamp,
    pub vm_count: VmCount,
    pub cpu: CpuAggregate,
    pub memory: MemoryAggregate,
    pub disk: DiskAggregate,
    pub network: NetworkAggregate,
}

/// The overview's health score.
#[derive(Debug, Clone, PartialEq, Serialize, Object)]
pub struct HealthScore {
    /// 0 to 100; see [`health_score`] for the formula.
    pub value: u8,
    pub level: HealthLevel,
    pub trend: Trend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum HealthLevel {
    Excellent,
    Good,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum Trend {
    Up,
    Down,
    Stable,
}

/// VM counts of the overview; the five statuses add up to `total`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
pub struct VmStatusCount {
    pub total: u64,
    /// Online without an active alert of medium severity or higher.
    pub online: u64,
    pub offline: u64,
    pub error: u64,
    /// Online with an active alert of medium severity or higher.
    pub warning: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct CoreUsage {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub avg_usage_percent: Option<f64>,
    /// Active alerts on this metric group.
    pub alert_count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct CoreDisk {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub avg_usage_percent: Option<f64>,
    /// VMs whose disk usage is above 80 %.
    pub high_usage_count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct CoreNetwork {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub total_in_bps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub total_out_bps: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
pub struct CoreMetrics {
    pub cpu: CoreUsage,
    pub memory: CoreUsage,
    pub disk: CoreDisk,
    pub network: CoreNetwork,
}

/// Active alerts by severity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Object)]
pub struct AlertCount {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub total: u64,
}

/// One of the overview's newest alerts, message in the reader's language.
#[derive(Debug, Clone, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct RecentAlert {
    pub id: String,
    pub vm_id: String,
    pub vm_name: String,
    pub metric: AlertMetric,
    pub severity: Severity,
    pub message: String,
    pub timestamp: Timestamp,
}

impl RecentAlert {
    pub fn new(alert: &Alert, lang: Lang) -> Self {
        Self {
            id: alert.id.clone(),
            vm_id: alert.vm_id.clone(),
            vm_name: alert.vm_name.clone(),
            metric: alert.metric,
            severity: alert.severity,
            message: alert.message(lang),
            timestamp: Timestamp(alert.changed_at_ms),
        }
    }
}

/// The SystemOverview record of the API.
#[derive(Debug, Clone, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct SystemOverview {
    pub timestamp: Timestamp,
    pub health_score: HealthScore,
    pub vm_status: VmStatusCount,
    pub core_metrics: CoreMetrics,
    pub alerts: AlertCount,
    /// The five alerts that fired or escalated last, newest first.
    pub recent_alerts: Vec<RecentAlert>,
}

/// Everything derived from one state of the estate.
#[derive(Debug, Clone)]
pub struct Views {
    pub computed_at_ms: i64,
    pub global: AggregatedMetrics,
    pub datacenters: HashMap<String, AggregatedMetrics>,
    pub clusters: HashMap<String, AggregatedMetrics>,
    pub hosts: HashMap<String, AggregatedMetrics>,
    pub groups: HashMap<String, AggregatedMetrics>,
    /// The overview with `recent_alerts` left empty: they are localized per request by
    /// [`Views::overview`].
    overview: SystemOverview,
    /// The newest alerts for `recent_alerts`, newest first.
    recent: Vec<Alert>,
    /// Each VM's status, warning included.
    pub vm_states: HashMap<String, VmState>,
}

/// A VM's status in the overview's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum VmState {
    Online,
    Offline,
    Error,
    Warning,
}

impl Views {
    /// Returns the overview with its recent alerts in `lang`.
    pub fn overview(&self, lang: Lang) -> SystemOverview {
        let mut overview = self.overview.clone();
        overview.recent_alerts = self
            .recent
            .iter()
            .map(|alert| RecentAlert::new(alert, lang))
            .collect();
        overview
    }

    /// Returns the aggregate of `scope` with `id`; `Scope::Global` ignores `id`.
    pub fn aggregate(&self, scope: Scope, id: &str) -> Option<&AggregatedMetrics> {
        match scope {
            Scope::Global => Some(&self.global),
            Scope::Datacenter => self.datacenters.get(id),
            Scope::Cluster => self.clusters.get(id),
            Scope::Host => self.hosts.get(id),
            Scope::Group => self.groups.get(id),
        }
    }
}

/// Running sum, count, minimum and maximum of one statistic.
#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
}

impl Stat {
    fn add(&mut self, value: Option<f64>) {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            return;
        };
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.sum += value;
        self.count += 1;
    }

    fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    fn total(&self) -> Option<f64> {
        (self.count > 0).then_some(self.sum)
    }

    fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }
}

/// The statistics of one scope, fed VM by VM.
#[derive(Debug, Clone, Default)]
struct Accumulator {
    count: VmCount,
    cpu_usage: Stat,
    total_cores: u64,
    active_cores: Stat,
    memory_usage: Stat,
    memory_total_mb: f64,
    memory_used_mb: Stat,
    disk_usage: Stat,
    read_iops: Stat,
    write_iops: Stat,
    read_latency: Stat,
    write_latency: Stat,
    in_bps: Stat,
    out_bps: Stat,
}

impl Accumulator {
    fn add(&mut self, record: &VmRecord, state: VmState) {
        self.count.total += 1;
        match state {
            VmState::Online | VmState::Warning => self.count.online += 1,
            VmState::Offline => self.count.offline += 1,
            VmState::Error => self.count.error += 1,
        }
        let vm = &record.vm;
        if vm.power_state == PowerState::PoweredOn {
            self.total_cores += u64::from(vm.vcpus.unwrap_or(0));
            self.memory_total_mb += vm.memory_mb.unwrap_or(0) as f64;
        }
        if !matches!(state, VmState::Online | VmState::Warning) {
            return;
        }
        let Some(metrics) = &record.metrics else {
            return;
        };
        let cpu = metrics.cpu.usage_percent;
        self.cpu_usage.add(cpu);
        if let (Some(vcpus), Some(cpu)) = (vm.vcpus, cpu) {
            self.active_cores.add(Some(f64::from(vcpus) * cpu / 100.0));
        }
        let memory = metrics.memory.usage_percent;
        self.memory_usage.add(memory);
        let used_mb = metrics.memory.used_mb.or_else(|| {
            let configured = vm.memory_mb? as f64;
            memory.map(|percent| configured * percent / 100.0)
        });
        self.memory_used_mb.add(used_mb);
        self.disk_usage.add(metrics.disk.usage_percent);
        self.read_iops.add(metrics.disk.read_iops);
        self.write_iops.add(metrics.disk.write_iops);
        self.read_latency.add(metrics.disk.read_latency);
        self.write_latency.add(metrics.disk.write_latency);
        self.in_bps.add(metrics.network.in_bps);
        self.out_bps.add(metrics.network.out_bps);
    }

    fn finish(&self, scope: Scope, id: &str, name: &str, now_ms: i64) -> AggregatedMetrics {
        const MB_PER_GB: f64 = 1024.0;
        AggregatedMetrics {
            scope,
            scope_id: id.to_owned(),
            scope_name: name.to_owned(),
            timestamp: Timestamp(now_ms),
            vm_count: self.count.clone(),
            cpu: CpuAggregate {
                avg_usage_percent: self.cpu_usage.avg(),
                max_usage_percent: self.cpu_usage.max(),
                min_usage_percent: self.cpu_usage.min(),
                total_cores: self.total_cores,
                active_cores: self.active_cores.total(),
            },
            memory: MemoryAggregate {
                avg_usage_percent: self.memory_usage.avg(),
                max_usage_percent: self.memory_usage.max(),
                min_usage_percent: self.memory_usage.min(),
                total_gb: self.memory_total_mb / MB_PER_GB,
                used_gb: self.memory_used_mb.total().map(|mb| mb / MB_PER_GB),
            },
            disk: DiskAggregate {
                avg_usage_percent: self.disk_usage.avg(),
                max_usage_percent: self.disk_usage.max(),
                total_read_iops: self.read_iops.total(),
                total_write_iops: self.write_iops.total(),
                avg_read_latency: self.read_latency.avg(),
                avg_write_latency: self.write_latency.avg(),
            },
            network: NetworkAggregate {
                total_in_bps: self.in_bps.total(),
                total_out_bps: self.out_bps.total(),
                avg_in_bps: self.in_bps.avg(),
                avg_out_bps: self.out_bps.avg(),
            },
        }
    }
}

/// VM groups from the config, matched against each VM.
#[derive(Debug, Clone, Default)]
pub struct GroupMatcher {
    groups: Vec<GroupConfig>,
}

impl GroupMatcher {
    pub fn new(groups: Vec<GroupConfig>) -> Self {
        Self { groups }
    }

    /// Returns true when `group` has a VM with this id, name pattern or folder.
    fn contains(group: &GroupConfig, record: &VmRecord) -> bool {
        let vm = &record.vm;
        group.vm_ids.contains(&vm.id)
            || group
                .name_patterns
                .iter()
                .any(|pattern| wildcard_match(pattern, &vm.name))
            || vm.folder.as_deref().is_some_and(|folder| {
                group
                    .folders
                    .iter()
                    .any(|wanted| folder_within(folder, wanted))
            })
    }
}

/// Matches `text` against a shell-style pattern where `*` is any run of characters and `?`
/// one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The position after the last `*` seen, and the text position it was tried at.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            backtrack = Some((p + 1, t));
            p += 1;
        } else if let Some((after_star, tried)) = backtrack {
            p = after_star;
            t = tried + 1;
            backtrack = Some((after_star, tried + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Returns true when `folder` is `wanted` or lies below it (`/dc/vm/web` is within `/dc/vm`).
fn folder_within(folder: &str, wanted: &str) -> bool {
    let wanted = wanted.trim_end_matches('/');
    folder == wanted
        || folder
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Returns the health score for VM status counts and the active alerts' worst severity per VM.
///
/// The score starts at 100 and loses points by the share of VMs in each condition:
/// `100 - 200 x critical - 120 x high - 60 x medium - 20 x low - 150 x error - 20 x offline`,
/// where `critical` is the share of VMs whose worst active alert is critical (likewise for the
/// other severities), `error` the share in error and `offline` the share offline. It is
/// clamped to 0..=100 and rounded. With no VMs the score is 100.
pub fn health_score(status: &VmStatusCount, worst_by_vm: &HashMap<&str, Severity>) -> u8 {
    if status.total == 0 {
        return 100;
    }
    let total = status.total as f64;
    let share = |count: u64| count as f64 / total;
    let with = |severity: Severity| {
        share(
            worst_by_vm
                .values()
                .filter(|&&worst| worst == severity)
                .count() as u64,
        )
    };
    let penalty = 200.0 * with(Severity::Critical)
        + 120.0 * with(Severity::High)
        + 60.0 * with(Severity::Medium)
        + 20.0 * with(Severity::Low)
        + 150.0 * share(status.error)
        + 20.0 * share(status.offline);
    (100.0 - penalty).clamp(0.0, 100.0).round() as u8
}

/// Returns the level of a health score: excellent from 90, good from 75, warning from 50,
/// critical below.
pub fn health_level(score: u8) -> HealthLevel {
    match score {
        90.. => HealthLevel::Excellent,
        75..=89 => HealthLevel::Good,
        50..=74 => HealthLevel::Warning,
        _ => HealthLevel::Critical,
    }
}

/// How far back the trend looks, and the score change that counts as up or down.
pub const TREND_WINDOW: Duration = Duration::from_secs(300);
pub const TREND_MIN_CHANGE: u8 = 2;

/// Inputs of one computation besides the live data.
pub struct ViewInputs<'a> {
    pub active_alerts: &'a [Alert],
    /// The newest alerts (active or resolved), newest first; the first five are shown.
    pub recent_alerts: &'a [Alert],
    pub now_ms: i64,
    pub interval: Duration,
}

/// The latest [`Views`], replaced after every cycle, plus the score history for the trend.
#[derive(Debug)]
pub struct ViewCache {
    groups: GroupMatcher,
    current: RwLock<Arc<Views>>,
    /// (time in ms, score) of earlier computations, oldest first, covering the trend window.
    scores: Mutex<VecDeque<(i64, u8)>>,
}

impl ViewCache {
    pub fn new(groups: Vec<GroupConfig>) -> Self {
        let groups = GroupMatcher::new(groups);
        let empty = compute(
            &LiveData::default(),
            &groups,
            &ViewInputs {
                active_alerts: &[],
                recent_alerts: &[],
                now_ms: 0,
                interval: Duration::from_secs(30),
            },
            Trend::Stable,
        );
        Self {
            groups,
            current: RwLock::new(Arc::new(empty)),
            scores: Mutex::new(VecDeque::new()),
        }
    }

    /// Returns the latest views.
    pub fn current(&self) -> Arc<Views> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Recomputes every view from `data` and makes it current.
    pub fn refresh(&self, data: &LiveData, inputs: &ViewInputs<'_>) -> Arc<Views> {
        let mut views = compute(data, &self.groups, inputs, Trend::Stable);
        let score = views.overview.health_score.value;
        views.overview.health_score.trend = self.record_score(inputs.now_ms, score);
        let views = Arc::new(views);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = views.clone();
        views
    }

    /// Stores `score` at `now_ms` and returns the trend against the oldest score within the
    /// trend window.
    fn record_score(&self, now_ms: i64, score: u8) -> Trend {
        let window_ms = TREND_WINDOW.as_millis() as i64;
        let mut scores = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        while scores
            .front()
            .is_some_and(|&(at, _)| now_ms - at > window_ms)
        {
            scores.pop_front();
        }
        let trend = match scores.front() {
            Some(&(_, earlier)) if score >= earlier.saturating_add(TREND_MIN_CHANGE) => Trend::Up,
            Some(&(_, earlier)) if score.saturating_add(TREND_MIN_CHANGE) <= earlier => Trend::Down,
            _ => Trend::Stable,
        };
        scores.push_back((now_ms, score));
        trend
    }
}

/// Computes every aggregate, each VM's state and the overview.
fn compute(data: &LiveData, groups: &GroupMatcher, inputs: &ViewInputs<'_>, trend: Trend) -> Views {
    let disconnected: HashSet<String> = data
        .sources
        .values()
        .flat_map(|source| source.hosts.iter())
        .filter(|host| !host.connected)
        .map(|host| host.id.clone())
        .collect();
    let mut worst_by_vm: HashMap<&str, Severity> = HashMap::new();
    for alert in inputs.active_alerts {
        let worst = worst_by_vm
            .entry(alert.vm_id.as_str())
            .or_insert(alert.severity);
        *worst = (*worst).max(alert.severity);
    }

    let mut global = Accumulator::default();
    let mut by_datacenter: BTreeMap<&str, Accumulator> = BTreeMap::new();
    let mut by_cluster: BTreeMap<&str, Accumulator> = BTreeMap::new();
    let mut by_host: BTreeMap<&str, Accumulator> = BTreeMap::new();
    let mut by_group: Vec<Accumulator> = vec![Accumulator::default(); groups.groups.len()];
    let mut vm_states = HashMap::with_capacity(data.vms.len());
    let mut status = VmStatusCount::default();
    let mut core = CoreMetrics::default();

    for record in data.vms.values() {
        let state = match record.status(&disconnected, inputs.now_ms, inputs.interval) {
            VmStatus::Online
                if worst_by_vm
                    .get(record.vm.id.as_str())
                    .is_some_and(|&worst| worst >= Severity::Medium) =>
            {
                VmState::Warning
            }
            VmStatus::Online => VmState::Online,
            VmStatus::Offline => VmState::Offline,
            VmStatus::Error => VmState::Error,
        };
        vm_states.insert(record.vm.id.clone(), state);
        status.total += 1;
        match state {
            VmState::Online => status.online += 1,
            VmState::Offline => status.offline += 1,
            VmState::Error => status.error += 1,
            VmState::Warning => status.warning += 1,
        }
        if matches!(state, VmState::Online | VmState::Warning)
            && record
                .metrics
                .as_ref()
                .and_then(|m| m.disk.usage_percent)
                .is_some_and(|usage| usage > 80.0)
        {
            core.disk.high_usage_count += 1;
        }

        global.add(record, state);
        let vm = &record.vm;
        for (id, scope) in [
            (&vm.datacenter_id, &mut by_datacenter),
            (&vm.cluster_id, &mut by_cluster),
            (&vm.host_id, &mut by_host),
        ] {
            if let Some(id) = id {
                scope.entry(id.as_str()).or_default().add(record, state);
            }
        }
        for (group, accumulator) in groups.groups.iter().zip(by_group.iter_mut()) {
            if GroupMatcher::contains(group, record) {
                accumulator.add(record, state);
            }
        }
    }

    let names = EntityNames::new(data);
    let now_ms = inputs.now_ms;
    let finish_all =
        |scope: Scope, map: BTreeMap<&str, Accumulator>, names: &HashMap<&str, &str>| {
            map.into_iter()
                .map(|(id, acc)| {
                    let name = names.get(id).copied().unwrap_or(id);
                    (id.to_owned(), acc.finish(scope, id, name, now_ms))
                })
                .collect::<HashMap<_, _>>()
        };
    // Every known cluster, host and datacenter has an aggregate, even one without VMs.
    for id in names.datacenters.keys() {
        by_datacenter.entry(id).or_default();
    }
    for id in names.clusters.keys() {
        by_cluster.entry(id).or_default();
    }
    for id in names.hosts.keys() {
        by_host.entry(id).or_default();
    }
    let global = global.finish(Scope::Global, "global", "Global", now_ms);
    let groups_views = groups
        .groups
        .iter()
        .zip(by_group)
        .map(|(group, acc)| {
            (
                group.id.clone(),
                acc.finish(Scope::Group, &group.id, &group.name, now_ms),
            )
        })
        .collect();

    let mut alerts = AlertCount::default();
    for alert in inputs.active_alerts {
        match alert.severity {
            Severity::Critical => alerts.critical += 1,
            Severity::High => alerts.high += 1,
            Severity::Medium => alerts.medium += 1,
            Severity::Low => alerts.low += 1,
        }
        alerts.total += 1;
        match alert.metric {
            AlertMetric::Cpu => core.cpu.alert_count += 1,
            AlertMetric::Memory => core.memory.alert_count += 1,
            AlertMetric::Disk | AlertMetric::Network => {}
        }
    }
    core.cpu.avg_usage_percent = global.cpu.avg_usage_percent;
    core.memory.avg_usage_percent = global.memory.avg_usage_percent;
    core.disk.avg_usage_percent = global.disk.avg_usage_percent;
    core.network.total_in_bps = global.network.total_in_bps;
    core.network.total_out_bps = global.network.total_out_bps;

    let score = health_score(&status, &worst_by_vm);
    let overview = SystemOverview {
        timestamp: Timestamp(now_ms),
        health_score: HealthScore {
            value: score,
            level: health_level(score),
            trend,
        },
        vm_status: status,
        core_metrics: core,
        alerts,
        recent_alerts: Vec::new(),
    };
    Views {
        computed_at_ms: now_ms,
        datacenters: finish_all(Scope::Datacenter, by_datacenter, &names.datacenters),
        clusters: finish_all(Scope::Cluster, by_cluster, &names.clusters),
        hosts: finish_all(Scope::Host, by_host, &names.hosts),
        groups: groups_views,
        global,
        overview,
        recent: inputs.recent_alerts.iter().take(5).cloned().collect(),
        vm_states,
    }
}

/// Display names of the inventory's entities by id.
struct EntityNames<'a> {
    datacenters: HashMap<&'a str, &'a str>,
    clusters: HashMap<&'a str, &'a str>,
    hosts: HashMap<&'a str, &'a str>,
}

impl<'a> EntityNames<'a> {
    fn new(data: &'a LiveData) -> Self {
        let mut names = Self {
            datacenters: HashMap::new(),
            clusters: HashMap::new(),
            hosts: HashMap::new(),
        };
        for source in data.sources.values() {
            for dc in &source.datacenters {
                names.datacenters.insert(&dc.id, &dc.name);
            }
            for cluster in &source.clusters {
                names.clusters.insert(&cluster.id, &cluster.name);
            }
            for host in &source.hosts {
                names.hosts.insert(&host.id, &host.name);
            }
        }
        names
    }
}
