//! Collection cycles with real fixture plugins: batching, failures that cost only their
//! batch, overrun skipping, and merging of guest data.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use vmpulse::collection::{CollectionLoop, CycleOutput, CycleSink};
use vmpulse::config::CollectionConfig;
use vmpulse::live::{LiveState, VmOutcome, VmStatus};
use vmpulse::plugin::{Plugin, PluginRuntime};
use vmpulse_tests::fixtures::declaration;
use vmpulse_tests::http_peer::{Behaviour, HttpPeer};

fn settings(batch_size: usize) -> CollectionConfig {
    CollectionConfig {
        batch_size,
        ..CollectionConfig::default()
    }
}

async fn estate(runtime: &PluginRuntime, config: &str, extra: &str) -> Arc<Plugin> {
    let text = format!("config = {{ {config} }}\n{extra}");
    Arc::new(
        runtime
            .load(&declaration("estate", "collector", "fake-estate", &text))
            .await
            .unwrap(),
    )
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Arc<CycleOutput>>>);

impl CycleSink for Recorder {
    fn on_cycle(&self, output: Arc<CycleOutput>) {
        self.0.lock().unwrap().push(output);
    }
}

fn status_of(live: &LiveState, vm_id: &str) -> VmStatus {
    live.read(|data| {
        data.vms[vm_id].status(
            &HashSet::new(),
            vmpulse::collection::now_ms(),
            Duration::from_secs(30),
        )
    })
}

#[tokio::test]
async fn cycle_collects_every_powered_on_vm() {
    let runtime = PluginRuntime::new(None).unwrap();
    let source = estate(&runtime, "vms = 120, powered_off_every = 10", "").await;
    let live = Arc::new(LiveState::default());
    let recorder = Arc::new(Recorder::default());
    let cycle = CollectionLoop::new(
        source,
        vec![],
        settings(50),
        live.clone(),
        vec![recorder.clone()],
    );

    let report = cycle.run_cycle().await;

    assert_eq!(report.vms_scheduled, 108, "12 of 120 VMs are powered off");
    assert_eq!(report.vms_collected, 108);
    assert_eq!(report.vms_failed, 0);
    assert_eq!(report.batches, 3);
    assert!(report.inventory_error.is_none());
    assert_eq!(live.read(|data| data.vms.len()), 120);
    assert_eq!(status_of(&live, "fake.001"), VmStatus::Online);
    assert_eq!(
        status_of(&live, "fake.010"),
        VmStatus::Offline,
        "powered off is not an error"
    );
    let metrics = live.read(|data| data.vms["fake.007"].metrics.clone().unwrap());
    assert_eq!(metrics.cpu.usage_mhz, Some(700.0));
    assert!(metrics.data_sources.vsphere);
    assert!(!metrics.data_sources.guest_os);
    assert_eq!(recorder.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn slow_batch_costs_only_its_vms() {
    let runtime = PluginRuntime::new(None).unwrap();
    let source = estate(
        &runtime,
        "vms = 50, slow_vm = \"vm-017\", slow_ms = 60000",
        "call_timeout_secs = 0.5\nresponse_timeout_secs = 0.4",
    )
    .await;
    let live = Arc::new(LiveState::default());
    let cycle = CollectionLoop::new(source, vec![], settings(10), live.clone(), vec![]);

    let report = cycle.run_cycle().await;

    assert_eq!(report.batches, 5);
    assert_eq!(report.batches_failed, 1);
    assert_eq!(report.vms_failed, 10);
    assert_eq!(report.vms_collected, 40);
    assert_eq!(status_of(&live, "fake.017"), VmStatus::Error);
    assert_eq!(
        status_of(&live, "fake.011"),
        VmStatus::Error,
        "same batch as the slow VM"
    );
    assert_eq!(status_of(&live, "fake.021"), VmStatus::Online);
    let reason = live.read(|data| data.vms["fake.017"].last_error.clone().unwrap());
    assert!(reason.contains("did not finish"), "{reason}");
}

#[tokio::test]
async fn failed_batch_and_per_vm_error_lose_nothing_else() {
    let runtime = PluginRuntime::new(None).unwrap();
    let config = "vms = 30, failing_vm = \"vm-005\", missing_vm = \"vm-025\"";
    let source = estate(&runtime, config, "").await;
    let live = Arc::new(LiveState::default());
    let cycle = CollectionLoop::new(source, vec![], settings(10), live.clone(), vec![]);

    let report = cycle.run_cycle().await;

    assert_eq!(report.batches_failed, 1);
    assert_eq!(report.vms_failed, 11, "one batch of 10 plus one VM");
    assert_eq!(report.vms_collected, 19);
    let reason = live.read(|data| data.vms["fake.025"].last_error.clone().unwrap());
    assert!(reason.contains("NoPermission"), "{reason}");
    assert_eq!(status_of(&live, "fake.024"), VmStatus::Online);
}

#[tokio::test]
async fn rejected_credentials_cost_one_login_per_pause() {
    let runtime = PluginRuntime::new(None).unwrap();
    let source = estate(&runtime, "vms = 120, reject_credentials = true", "").await;
    let live = Arc::new(LiveState::default());
    let cycle = CollectionLoop::new(source.clone(), vec![], settings(10), live.clone(), vec![]);

    let first = cycle.run_cycle().await;
    let calls_after_first = source.status().calls;
    let second = cycle.run_cycle().await;

    // describe at load, discover, and one collect: the other batches are skipped.
    assert_eq!(calls_after_first, 3);
    assert_eq!(first.vms_failed, 120);
    assert_eq!(first.batches_failed, 1);
    assert_eq!(
        source.status().calls,
        3,
        "a paused loop must not log in again"
    );
    assert_eq!(second.vms_failed, 120);
    let reason = live.read(|data| data.vms["fake.050"].last_error.clone().unwrap());
    assert!(reason.contains("next login attempt"), "{reason}");
    assert!(reason.contains("InvalidLogin"), "{reason}");
}

#[tokio::test]
async fn guest_data_is_merged_and_its_absence_is_no_error() {
    let up = HttpPeer::start(Behaviour::Respond("55".into())).await;
    let runtime = PluginRuntime::new(None).unwrap();
    let source = estate(&runtime, "vms = 4", "").await;
    let guest_grant = |peer_origin: String| {
        format!(
            "role = \"enrichment\"\nallowed_outbound_hosts = [\"{peer_origin}\"]\n\
             config = {{ url = \"{peer_origin}/v\" }}"
        )
    };
    let guest = Arc::new(
        runtime
            .load(&declaration(
                "guest",
                "collector",
                "echo-collector",
                &guest_grant(up.origin(false)),
            ))
            .await
            .unwrap(),
    );
    let down_origin = {
        let down = HttpPeer::start(Behaviour::Respond(String::new())).await;
        down.origin(false)
    };
    let absent = Arc::new(
        runtime
            .load(&declaration(
                "absent",
                "collector",
                "echo-collector",
                &guest_grant(down_origin),
            ))
            .await
            .unwrap(),
    );
    let live = Arc::new(LiveState::default());

    let merged = CollectionLoop::new(
        source.clone(),
        vec![guest],
        settings(50),
        live.clone(),
        vec![],
    );
    merged.run_cycle().await;
    let with_guest = live.read(|data| data.vms["fake.002"].metrics.clone().unwrap());
    let unmerged = CollectionLoop::new(source, vec![absent], settings(50), live.clone(), vec![]);
    let report = unmerged.run_cycle().await;
    let without_guest = live.read(|data| data.vms["fake.002"].metrics.clone().unwrap());

    assert!(with_guest.data_sources.vsphere);
    assert!(with_guest.data_sources.guest_os);
    assert_eq!(
        with_guest.cpu.usage_percent,
        Some(55.0),
        "the exporter's value wins"
    );
    assert_eq!(with_guest.cpu.usage_mhz, Some(200.0));
    assert_eq!(
        report.vms_failed, 0,
        "no guest data is not a collection error"
    );
    assert!(!without_guest.data_sources.guest_os);
    assert_eq!(
        without_guest.cpu.usage_percent,
        Some(2.0),
        "back to the vSphere value"
    );
}

#[tokio::test]
async fn overrunning_cycles_skip_ticks_and_never_overlap() {
    let runtime = PluginRuntime::new(None).unwrap();
    let source = estate(
        &runtime,
        "vms = 3, slow_vm = \"vm-001\", slow_ms = 2500",
        "call_timeout_secs = 10",
    )
    .await;
    let live = Arc::new(LiveState::default());
    let recorder = Arc::new(Recorder::default());
    let mut fast = settings(50);
    fast.interval_secs = 1;
    fast.inventory_interval_secs = 1;
    let cycle = CollectionLoop::new(source, vec![], fast, live, vec![recorder.clone()]);
    let stats = cycle.stats();
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(cycle.run(stopped));

    while recorder.0.lock().unwrap().len() < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();

    let outputs = recorder.0.lock().unwrap().clone();
    for pair in outputs.windows(2) {
        let previous_end = pair[0].report.started_at_ms + pair[0].report.duration_ms as i64;
        assert!(
            pair[1].report.started_at_ms >= previous_end,
            "cycle {} started before cycle {} ended",
            pair[1].report.number,
            pair[0].report.number
        );
    }
    assert!(
        stats.lock().unwrap().skipped_ticks >= 2,
        "{:?}",
        stats.lock().unwrap()
    );
    assert!(outputs.iter().all(|o| {
        o.outcomes
            .iter()
            .all(|(_, r)| matches!(r, VmOutcome::Collected(_)))
    }));
}
