//! Behaviour of the store through its public API, on files in temporary directories.

use std::path::Path;
use std::time::Duration;

use vmpulse_store::{AlertWrite, SampleRow, Store, StoreError, StoreOptions};

const SCHEMA: [&str; 4] = ["cpu.usage_mhz", "cpu.ready", "mem.usage_mb", "net.in_bps"];
const START_MS: u64 = 1_700_000_000_000;
const CYCLE_MS: u64 = 30_000;

fn options() -> StoreOptions {
    StoreOptions {
        max_block_samples: 5,
        ..StoreOptions::default()
    }
}

fn open(path: &Path) -> Store {
    Store::open(path, &SCHEMA, options()).expect("store opens")
}

/// Deterministic values with gaps: every seventh value is absent.
fn values(cycle: u64, vm: u64) -> Vec<Option<f64>> {
    (0..SCHEMA.len() as u64)
        .map(|field| {
            if (cycle + vm + field).is_multiple_of(7) {
                None
            } else {
                Some(((cycle * 31 + vm * 17 + field * 5) % 1000) as f64 / 8.0 - 20.0)
            }
        })
        .collect()
}

fn vm_name(vm: u64) -> String {
    format!("vm-{vm}")
}

fn write_cycles(store: &Store, cycles: std::ops::Range<u64>, vms: u64) {
    for cycle in cycles {
        let names: Vec<String> = (0..vms).map(vm_name).collect();
        let all_values: Vec<Vec<Option<f64>>> = (0..vms).map(|vm| values(cycle, vm)).collect();
        let rows: Vec<SampleRow<'_>> = names
            .iter()
            .zip(&all_values)
            .map(|(vm_id, values)| SampleRow { vm_id, values })
            .collect();
        store
            .write_cycle(START_MS + cycle * CYCLE_MS, &rows, &[])
            .expect("cycle written");
    }
}

fn expected_history(cycles: std::ops::Range<u64>, vm: u64) -> Vec<(u64, Vec<Option<f64>>)> {
    cycles
        .map(|cycle| (START_MS + cycle * CYCLE_MS, values(cycle, vm)))
        .collect()
}

fn bits(points: &[(u64, Vec<Option<f64>>)]) -> Vec<(u64, Vec<Option<u64>>)> {
    points
        .iter()
        .map(|(ts, values)| (*ts, values.iter().map(|v| v.map(f64::to_bits)).collect()))
        .collect()
}

#[test]
fn none_values_round_trip_as_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    let values = [None, Some(0.0), None, Some(-0.0)];
    let rows = [SampleRow {
        vm_id: "vm-1",
        values: &values,
    }];
    store.write_cycle(START_MS, &rows, &[]).unwrap();

    let points = store.range("vm-1", START_MS, START_MS, None).unwrap();

    assert_eq!(points.len(), 1);
    assert_eq!(points[0].1[0], None);
    assert_eq!(points[0].1[2], None);
    assert_eq!(points[0].1[1].map(f64::to_bits), Some(0.0f64.to_bits()));
    assert_eq!(points[0].1[3].map(f64::to_bits), Some((-0.0f64).to_bits()));
}

#[test]
fn history_spanning_sealed_blocks_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    write_cycles(&store, 0..23, 3);

    for vm in 0..3 {
        let points = store.range(&vm_name(vm), 0, u64::MAX, None).unwrap();
        assert_eq!(bits(&points), bits(&expected_history(0..23, vm)), "vm {vm}");
    }
}

#[test]
fn blocks_sealed_by_size_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path().join("store.redb"),
        &SCHEMA,
        StoreOptions {
            block_bytes: 1024,
            max_block_samples: 10_000,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    write_cycles(&store, 0..300, 2);

    for vm in 0..2 {
        let points = store.range(&vm_name(vm), 0, u64::MAX, None).unwrap();
        assert_eq!(
            bits(&points),
            bits(&expected_history(0..300, vm)),
            "vm {vm}"
        );
    }
    let middle = store
        .range(
            "vm-1",
            START_MS + 100 * CYCLE_MS,
            START_MS + 199 * CYCLE_MS,
            None,
        )
        .unwrap();
    assert_eq!(bits(&middle), bits(&expected_history(100..200, 1)));
}

#[test]
fn same_cycle_written_twice_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    write_cycles(&store, 0..7, 2);

    // Rewrite a cycle in a sealed block, one in the open block, and the newest one.
    for cycle in [2, 6, 6] {
        let values = values(cycle, 0);
        let rows = [SampleRow {
            vm_id: "vm-0",
            values: &values,
        }];
        let summary = store
            .write_cycle(START_MS + cycle * CYCLE_MS, &rows, &[])
            .unwrap();
        assert_eq!(summary.stored, 0);
        assert_eq!(summary.duplicates, 1);
    }

    let points = store.range("vm-0", 0, u64::MAX, None).unwrap();
    assert_eq!(bits(&points), bits(&expected_history(0..7, 0)));
}

#[test]
fn duplicate_keeps_the_first_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    let first = [Some(1.0), None, None, None];
    let second = [Some(2.0), None, None, None];
    for values in [&first, &second] {
        let rows = [SampleRow {
            vm_id: "vm-1",
            values,
        }];
        store.write_cycle(START_MS, &rows, &[]).unwrap();
    }

    let points = store.range("vm-1", 0, u64::MAX, Some(&[0])).unwrap();
    assert_eq!(points, vec![(START_MS, vec![Some(1.0)])]);
}

#[test]
fn range_bounds_are_inclusive() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    write_cycles(&store, 0..12, 1);
    let at = |cycle: u64| START_MS + cycle * CYCLE_MS;
    let timestamps = |from: u64, to: u64| -> Vec<u64> {
        store
            .range("vm-0", from, to, Some(&[]))
            .unwrap()
            .into_iter()
            .map(|(ts, _)| ts)
            .collect()
    };

    assert_eq!(timestamps(at(4), at(6)), vec![at(4), at(5), at(6)]);
    assert_eq!(timestamps(at(4) + 1, at(6) - 1), vec![at(5)]);
    assert_eq!(timestamps(at(11), u64::MAX), vec![at(11)]);
    assert_eq!(timestamps(0, at(0)), vec![at(0)]);
    assert!(timestamps(at(6), at(4)).is_empty());
    assert!(timestamps(at(11) + 1, u64::MAX).is_empty());
    assert_eq!(timestamps(0, u64::MAX).len(), 12);
}

#[test]
fn range_selects_fields_in_requested_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    write_cycles(&store, 0..3, 1);

    let points = store.range("vm-0", 0, u64::MAX, Some(&[3, 0])).unwrap();

    for (cycle, (_, selected)) in points.iter().enumerate() {
        let all = values(cycle as u64, 0);
        assert_eq!(selected, &vec![all[3], all[0]]);
    }
    let error = store.range("vm-0", 0, u64::MAX, Some(&[4])).unwrap_err();
    assert!(
        matches!(error, StoreError::FieldIndex { index: 4, .. }),
        "{error}"
    );
}

#[test]
fn range_of_unknown_vm_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    write_cycles(&store, 0..3, 2);

    assert!(store.range("vm-9", 0, u64::MAX, None).unwrap().is_empty());
    // A VM whose id is a prefix of another must not see the other's blocks.
    assert!(store.range("vm-", 0, u64::MAX, None).unwrap().is_empty());
}

#[test]
fn out_of_order_samples_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    // Even cycles first, then the odd ones, newest first: the late samples land in the open
    // block, in sealed blocks, and before the first block.
    let odd: Vec<u64> = (1..17).step_by(2).collect();
    let even_descending: Vec<u64> = (1..9).rev().map(|half| half * 2).collect();
    let order: Vec<u64> = odd.into_iter().chain(even_descending).chain([0]).collect();
    for cycle in order {
        write_cycles(&store, cycle..cycle + 1, 1);
    }

    let points = store.range("vm-0", 0, u64::MAX, None).unwrap();
    assert_eq!(bits(&points), bits(&expected_history(0..17, 0)));
}

#[test]
fn row_with_wrong_value_count_rejects_whole_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    let good = values(0, 0);
    let short = [Some(1.0)];
    let rows = [
        SampleRow {
            vm_id: "vm-0",
            values: &good,
        },
        SampleRow {
            vm_id: "vm-1",
            values: &short,
        },
    ];

    let error = store.write_cycle(START_MS, &rows, &[]).unwrap_err();

    assert!(
        matches!(&error, StoreError::FieldCount { vm_id, expected: 4, found: 1 } if vm_id == "vm-1"),
        "{error}"
    );
    assert!(store.range("vm-0", 0, u64::MAX, None).unwrap().is_empty());
}

#[test]
fn invalid_ids_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    let values = values(0, 0);
    let long_id = "v".repeat(1025);
    for vm_id in ["", long_id.as_str()] {
        let rows = [SampleRow {
            vm_id,
            values: &values,
        }];
        let error = store.write_cycle(START_MS, &rows, &[]).unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidId { kind: "VM", .. }),
            "{error}"
        );
    }
    let error = store.put_alert("", true, b"x").unwrap_err();
    assert!(
        matches!(error, StoreError::InvalidId { kind: "alert", .. }),
        "{error}"
    );
}

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = open(&path);
        write_cycles(&store, 0..8, 2);
        let latest: [(&str, &[u8]); 2] = [("vm-0", b"{\"a\":1}"), ("vm-1", b"{\"b\":2}")];
        store
            .write_cycle(START_MS + 8 * CYCLE_MS, &[], &latest)
            .unwrap();
        store.put_inventory(b"inventory-v1").unwrap();
        store.put_alert("a-1", true, b"cpu high").unwrap();
        store
            .put_alert("a-2", false, b"mem high, resolved")
            .unwrap();
    }

    let store = open(&path);

    for vm in 0..2 {
        let points = store.range(&vm_name(vm), 0, u64::MAX, None).unwrap();
        assert_eq!(bits(&points), bits(&expected_history(0..8, vm)));
    }
    assert_eq!(
        store.latest_all().unwrap(),
        vec![
            ("vm-0".to_string(), b"{\"a\":1}".to_vec()),
            ("vm-1".to_string(), b"{\"b\":2}".to_vec())
        ]
    );
    assert_eq!(store.latest("vm-1").unwrap(), Some(b"{\"b\":2}".to_vec()));
    assert_eq!(store.latest("vm-7").unwrap(), None);
    assert_eq!(store.inventory().unwrap(), Some(b"inventory-v1".to_vec()));
    let active = store.active_alerts().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].alert_id, "a-1");
    assert_eq!(active[0].record, b"cpu high");
    let resolved = store.resolved_alerts(10).unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].alert_id, "a-2");
}

#[test]
fn writes_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    write_cycles(&open(&path), 0..7, 2);

    write_cycles(&open(&path), 7..13, 2);

    let points = open(&path).range("vm-1", 0, u64::MAX, None).unwrap();
    assert_eq!(bits(&points), bits(&expected_history(0..13, 1)));
}

#[test]
fn inventory_is_absent_until_put() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    assert_eq!(store.inventory().unwrap(), None);
    store.put_inventory(b"v1").unwrap();
    store.put_inventory(b"v2").unwrap();
    assert_eq!(store.inventory().unwrap(), Some(b"v2".to_vec()));
}

#[test]
fn invalid_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let cases = [
        StoreOptions {
            max_block_samples: 0,
            ..StoreOptions::default()
        },
        StoreOptions {
            block_bytes: 100,
            ..StoreOptions::default()
        },
    ];
    for options in cases {
        let error = Store::open(&path, &SCHEMA, options)
            .err()
            .expect("rejected");
        assert!(
            matches!(error, StoreError::InvalidOptions { .. }),
            "{error}"
        );
    }
    assert!(!path.exists());
}

#[test]
fn text_file_is_rejected_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "not a database\n").unwrap();

    let error = Store::open(&path, &SCHEMA, options())
        .err()
        .expect("rejected");

    assert!(matches!(error, StoreError::NotAStore { .. }), "{error}");
    assert!(
        error.to_string().contains(path.to_str().unwrap()),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a database\n");
}

#[test]
fn empty_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.redb");
    std::fs::write(&path, "").unwrap();

    let error = Store::open(&path, &SCHEMA, options())
        .err()
        .expect("rejected");

    assert!(matches!(error, StoreError::NotAStore { .. }), "{error}");
    assert!(
        error.to_string().contains(path.to_str().unwrap()),
        "{error}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn foreign_redb_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    let other: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("counters");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(other).unwrap().insert("hits", 7).unwrap();
        txn.commit().unwrap();
    }

    let error = Store::open(&path, &SCHEMA, options())
        .err()
        .expect("rejected");

    assert!(matches!(error, StoreError::NotAStore { .. }), "{error}");
    assert!(
        error.to_string().contains(path.to_str().unwrap()),
        "{error}"
    );
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let tables: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|table| redb::TableHandle::name(&table).to_string())
        .collect();
    assert_eq!(tables, vec!["counters".to_string()]);
}

#[test]
fn damaged_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    write_cycles(&open(&path), 0..40, 20);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    // Keep redb's header intact and overwrite everything after the first page.
    for byte in &mut bytes[4096..len] {
        *byte ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();

    let error = Store::open(&path, &SCHEMA, options())
        .err()
        .expect("rejected");

    assert!(
        matches!(
            error,
            StoreError::Corrupted { .. } | StoreError::Open { .. }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains(path.to_str().unwrap()),
        "{error}"
    );
}

#[test]
fn appended_fields_read_as_none_in_old_samples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    write_cycles(&open(&path), 0..7, 1);
    let grown: Vec<&str> = SCHEMA.iter().copied().chain(["disk.read_iops"]).collect();

    let store = Store::open(&path, &grown, options()).unwrap();
    let new_values = [Some(1.0), None, Some(3.0), None, Some(5.0)];
    let rows = [SampleRow {
        vm_id: "vm-0",
        values: &new_values,
    }];
    store
        .write_cycle(START_MS + 7 * CYCLE_MS, &rows, &[])
        .unwrap();
    let points = store.range("vm-0", 0, u64::MAX, None).unwrap();

    assert_eq!(points.len(), 8);
    for (cycle, (_, stored)) in points.iter().take(7).enumerate() {
        let mut expected = values(cycle as u64, 0);
        expected.push(None);
        assert_eq!(stored, &expected, "cycle {cycle}");
    }
    assert_eq!(points[7].1, new_values.to_vec());
    drop(store);
    // The grown schema is now the stored one; the old, shorter list no longer matches.
    let error = Store::open(&path, &SCHEMA, options())
        .err()
        .expect("rejected");
    assert!(
        matches!(error, StoreError::SchemaMismatch { index: 4, .. }),
        "{error}"
    );
}

#[test]
fn renamed_field_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    drop(open(&path));
    let renamed = [
        "cpu.usage_mhz",
        "cpu.ready_ms",
        "mem.usage_mb",
        "net.in_bps",
    ];

    let error = Store::open(&path, &renamed, options())
        .err()
        .expect("rejected");

    match &error {
        StoreError::SchemaMismatch {
            index,
            stored,
            requested,
            ..
        } => {
            assert_eq!(*index, 1);
            assert_eq!(stored.as_deref(), Some("cpu.ready"));
            assert_eq!(requested.as_deref(), Some("cpu.ready_ms"));
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(
        error.to_string().contains(path.to_str().unwrap()),
        "{error}"
    );
}

#[test]
fn sweep_removes_only_expired_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path().join("store.redb"),
        &SCHEMA,
        StoreOptions {
            max_block_samples: 5,
            retention: Duration::from_millis(10 * CYCLE_MS),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    write_cycles(&store, 0..23, 3);
    let now = START_MS + 22 * CYCLE_MS;

    // Blocks hold cycles 0-4, 5-9, 10-14, 15-19 and the open 20-22. The cutoff is cycle 12,
    // so the first two blocks of each VM expire: six blocks, removed two per call.
    assert!(store.sweep(now, 2).unwrap());
    assert!(store.sweep(now, 2).unwrap());
    assert!(!store.sweep(now, 2).unwrap());
    assert!(!store.sweep(now, 2).unwrap());

    for vm in 0..3 {
        let points = store.range(&vm_name(vm), 0, u64::MAX, None).unwrap();
        assert_eq!(
            bits(&points),
            bits(&expected_history(10..23, vm)),
            "vm {vm}"
        );
    }
}

#[test]
fn sweep_removes_open_block_of_silent_vm() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path().join("store.redb"),
        &SCHEMA,
        StoreOptions {
            max_block_samples: 100,
            retention: Duration::from_millis(5 * CYCLE_MS),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    write_cycles(&store, 0..3, 2);

    assert!(!store.sweep(START_MS + 20 * CYCLE_MS, 100).unwrap());

    assert!(store.range("vm-0", 0, u64::MAX, None).unwrap().is_empty());
    // The VM can report again after its history expired.
    write_cycles(&store, 30..31, 1);
    assert_eq!(store.range("vm-0", 0, u64::MAX, None).unwrap().len(), 1);
}

#[test]
fn file_size_stabilizes_under_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = Store::open(
        &path,
        &SCHEMA,
        StoreOptions {
            max_block_samples: 4,
            retention: Duration::from_millis(20 * CYCLE_MS),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let size = || std::fs::metadata(&path).unwrap().len();

    let mut sizes = Vec::new();
    for round in 0..8u64 {
        let cycles = round * 40..(round + 1) * 40;
        for cycle in cycles {
            write_cycles(&store, cycle..cycle + 1, 40);
            while store.sweep(START_MS + cycle * CYCLE_MS, 50).unwrap() {}
        }
        sizes.push(size());
    }

    // After the first rounds the retained data is constant, so freed pages must be reused.
    let settled = sizes[2];
    let last = *sizes.last().unwrap();
    assert!(last <= settled + settled / 4, "file grew: {sizes:?}");
}

#[test]
fn compact_shrinks_file_after_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let mut store = Store::open(
        &path,
        &SCHEMA,
        StoreOptions {
            retention: Duration::from_millis(5 * CYCLE_MS),
            ..options()
        },
    )
    .unwrap();
    write_cycles(&store, 0..60, 200);
    while store.sweep(START_MS + 59 * CYCLE_MS, 1000).unwrap() {}
    let before = std::fs::metadata(&path).unwrap().len();

    while store.compact().unwrap() {}

    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after < before, "file did not shrink: {before} -> {after}");
    let points = store
        .range("vm-7", START_MS + 50 * CYCLE_MS, u64::MAX, None)
        .unwrap();
    assert_eq!(bits(&points), bits(&expected_history(50..60, 7)));
}

#[test]
fn delete_vm_removes_history_and_latest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    write_cycles(&store, 0..12, 2);
    let latest: [(&str, &[u8]); 2] = [("vm-0", b"a"), ("vm-1", b"b")];
    store
        .write_cycle(START_MS + 12 * CYCLE_MS, &[], &latest)
        .unwrap();

    store.delete_vm("vm-0").unwrap();

    assert!(store.range("vm-0", 0, u64::MAX, None).unwrap().is_empty());
    assert_eq!(store.latest("vm-0").unwrap(), None);
    assert_eq!(store.range("vm-1", 0, u64::MAX, None).unwrap().len(), 12);
    // No expiry key may point at the deleted blocks: a full sweep must not fail.
    assert!(!store.sweep(u64::MAX / 2, 1000).unwrap());
    assert!(store.range("vm-1", 0, u64::MAX, None).unwrap().is_empty());
}

#[test]
fn alerts_move_between_active_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path().join("store.redb"),
        &SCHEMA,
        StoreOptions {
            max_resolved_alerts: 3,
            ..options()
        },
    )
    .unwrap();
    for id in ["a", "b", "c", "d", "e"] {
        store.put_alert(id, true, id.as_bytes()).unwrap();
    }
    for id in ["b", "d", "a", "e"] {
        store
            .put_alert(id, false, format!("{id} resolved").as_bytes())
            .unwrap();
    }
    // Updating a resolved alert keeps its place in the resolved order.
    store
        .put_alert("a", false, b"a resolved, note added")
        .unwrap();

    let ids = |records: Vec<vmpulse_store::AlertRecord>| -> Vec<String> {
        records.into_iter().map(|record| record.alert_id).collect()
    };
    assert_eq!(ids(store.active_alerts().unwrap()), vec!["c"]);
    // "b" was resolved first and fell off the bound of three.
    assert_eq!(ids(store.resolved_alerts(10).unwrap()), vec!["e", "a", "d"]);
    assert_eq!(ids(store.resolved_alerts(2).unwrap()), vec!["e", "a"]);
    assert_eq!(store.alert("b").unwrap(), None);
    let a = store.alert("a").unwrap().expect("kept");
    assert!(!a.active);
    assert_eq!(a.record, b"a resolved, note added");

    // Reactivating removes the alert from the resolved list.
    store.put_alert("e", true, b"e again").unwrap();
    assert_eq!(ids(store.active_alerts().unwrap()), vec!["c", "e"]);
    assert_eq!(ids(store.resolved_alerts(10).unwrap()), vec!["a", "d"]);

    assert!(store.delete_alert("c").unwrap());
    assert!(!store.delete_alert("c").unwrap());
    assert_eq!(ids(store.active_alerts().unwrap()), vec!["e"]);
}

#[test]
fn alert_batch_is_applied_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.redb"));
    let write = |alert_id, active, record: &'static [u8]| AlertWrite {
        alert_id,
        active,
        record,
    };
    store
        .put_alerts(&[
            write("a", true, b"a fired"),
            write("b", true, b"b fired"),
            write("a", false, b"a resolved"),
        ])
        .unwrap();

    let active = store.active_alerts().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].alert_id, "b");
    let a = store.alert("a").unwrap().expect("stored");
    assert!(!a.active);
    assert_eq!(a.record, b"a resolved");

    // One invalid id rejects the whole batch.
    let error = store
        .put_alerts(&[write("c", true, b"c fired"), write("", true, b"x")])
        .unwrap_err();
    assert!(
        matches!(error, StoreError::InvalidId { kind: "alert", .. }),
        "{error}"
    );
    assert_eq!(store.alert("c").unwrap(), None);
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}
