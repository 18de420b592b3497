//! The live view and history survive a restart of the host.

use std::sync::Arc;

use vmpulse::collection::{CollectionLoop, CycleSink};
use vmpulse::config::{CollectionConfig, StorageConfig};
use vmpulse::live::LiveState;
use vmpulse::metrics::FIELDS;
use vmpulse::persist::{StoreWriter, open_store, restore};
use vmpulse::plugin::PluginRuntime;
use vmpulse_tests::fixtures::declaration;

#[tokio::test]
async fn restart_restores_latest_values_and_history() {
    let folder = tempfile::tempdir().unwrap();
    let storage = StorageConfig {
        path: folder.path().join("vmpulse.redb"),
        retention_days: 7.0,
    };
    let runtime = PluginRuntime::new(None).unwrap();
    let source = Arc::new(
        runtime
            .load(&declaration(
                "estate",
                "collector",
                "fake-estate",
                "config = { vms = 20, powered_off_every = 5, missing_vm = \"vm-003\" }",
            ))
            .await
            .unwrap(),
    );

    let cycles = {
        let store = Arc::new(open_store(&storage).unwrap());
        let live = Arc::new(LiveState::default());
        let (writer, task) = StoreWriter::start(store.clone(), live.clone());
        let sinks: Vec<Arc<dyn CycleSink>> = vec![writer];
        let cycle = CollectionLoop::new(source, vec![], CollectionConfig::default(), live, sinks);
        let first = cycle.run_cycle().await;
        let second = cycle.run_cycle().await;
        drop(cycle);
        task.await.unwrap();
        [first, second]
    };

    let store = open_store(&storage).unwrap();
    let live = LiveState::default();
    let restored = restore(&store, &live, &["estate"]).unwrap();
    let renamed = restore(&store, &LiveState::default(), &["estate-renamed"]).unwrap();

    assert_eq!(
        restored, 20,
        "every VM of the inventory, powered off ones included"
    );
    assert_eq!(
        renamed, 0,
        "VMs of a collector no longer configured are dropped"
    );
    let (metrics, failed_reason) = live.read(|data| {
        (
            data.vms["fake.007"].metrics.clone().unwrap(),
            data.vms["fake.003"].last_error.clone(),
        )
    });
    assert_eq!(metrics.cpu.usage_mhz, Some(700.0));
    assert!(failed_reason.unwrap().contains("NoPermission"));
    assert!(live.read(|data| data.sources["estate"].hosts.len()) == 2);

    let usage = FIELDS
        .iter()
        .position(|f| f.path() == "cpu.usageMHz")
        .unwrap();
    let history = store
        .range("fake.007", 0, u64::MAX, Some(&[usage]))
        .unwrap();
    let times: Vec<u64> = history.iter().map(|(t, _)| *t).collect();
    let expected: Vec<u64> = cycles.iter().map(|c| c.started_at_ms as u64).collect();
    assert_eq!(times, expected, "one history point per cycle");
    assert_eq!(history[1].1, vec![Some(700.0)]);
    assert!(
        store
            .range("fake.003", 0, u64::MAX, None)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn foreign_file_is_refused_with_its_path() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("notes.txt");
    std::fs::write(&path, "not a database").unwrap();
    let storage = StorageConfig {
        path: path.clone(),
        retention_days: 7.0,
    };

    let error = open_store(&storage).err().unwrap().to_string();

    assert!(error.contains(&path.display().to_string()), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a database");
}
