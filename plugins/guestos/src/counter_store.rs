//! The previous scrape's counters of each VM, kept in the host's plugin state.
//!
//! Every call runs in a fresh instance, so the [`Snapshot`] a rate needs lives in host
//! state under `counters/<vm id>`, one short line of text per VM (about 200 bytes). The
//! host runs batches concurrently, but a VM is in one batch per cycle, so no two calls
//! write the same VM's key at once.
//!
//! The host caps a plugin's state at 4 MiB and offers no way to list keys. So that
//! entries of deleted VMs do not pile up, each VM id is also listed in one of
//! [`INDEX_BUCKETS`] index keys (`index/<n>`, by hash of the id). When a new VM joins a
//! bucket, or when the state is full, the bucket's entries older than
//! [`MAX_RATE_WINDOW_SECS`] (too old for a rate anyway) are removed.

use crate::devices;
use crate::rates::{Clock, MAX_RATE_WINDOW_SECS, Snapshot};
use crate::reading::{Counter, Counters, DeviceSet};

/// Number of index keys the VM ids are spread over.
const INDEX_BUCKETS: u32 = 256;

/// First field of every stored entry; an entry with another one is ignored.
const FORMAT_VERSION: &str = "v1";

/// Key-value storage that outlives a call: the host's plugin state, or a map in tests.
pub trait StateStore {
    fn get(&self, key: &str) -> Option<String>;

    /// Stores `value`, or removes the key for `None`. Returns false when the store is full.
    fn set(&mut self, key: &str, value: Option<&str>) -> bool;
}

/// The counter snapshots of all VMs in a [`StateStore`].
pub struct CounterStore<S> {
    state: S,
    /// The plugin's wall clock, in seconds since the Unix epoch.
    now: f64,
}

/// The store was full even after stale entries were removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFull;

impl<S: StateStore> CounterStore<S> {
    pub fn new(state: S, now: f64) -> Self {
        Self { state, now }
    }

    /// Returns the snapshot saved for `vm_id`, if a readable one exists.
    pub fn load(&self, vm_id: &str) -> Option<Snapshot> {
        let entry = self.state.get(&entry_key(vm_id))?;
        decode(&entry).map(|(_, snapshot)| snapshot)
    }

    /// Saves `snapshot` as the latest for `vm_id`.
    ///
    /// # Errors
    ///
    /// [`StoreFull`] when the host's state quota is used up by live entries; the next
    /// scrape of this VM then has no rates.
    pub fn save(&mut self, vm_id: &str, snapshot: &Snapshot) -> Result<(), StoreFull> {
        let key = entry_key(vm_id);
        let entry = encode(self.now, snapshot);
        let is_new = self.state.get(&key).is_none();
        if is_new {
            self.add_to_index(vm_id);
        }
        if self.state.set(&key, Some(&entry)) {
            return Ok(());
        }
        // Keep this VM listed: its entry is about to exist.
        self.remove_stale(bucket_of(vm_id), Some(vm_id));
        if self.state.set(&key, Some(&entry)) {
            Ok(())
        } else {
            Err(StoreFull)
        }
    }

    /// Lists `vm_id` in its index bucket and removes the bucket's stale entries.
    ///
    /// NOTE: two concurrent calls adding different new VMs to the same bucket can both
    /// read it before either writes, and one id is then lost from the index. That VM's
    /// entry still works but is never removed when stale: it costs its 200 bytes until
    /// the host restarts.
    fn add_to_index(&mut self, vm_id: &str) {
        self.remove_stale(bucket_of(vm_id), Some(vm_id));
    }

    /// Rewrites index bucket `bucket` without the ids whose entries are missing or older
    /// than the rate window, deleting those entries, and with `add` appended.
    fn remove_stale(&mut self, bucket: u32, add: Option<&str>) {
        let index_key = format!("index/{bucket}");
        let listed = self.state.get(&index_key).unwrap_or_default();
        let mut live_ids: Vec<&str> = Vec::new();
        for id in listed.lines().filter(|id| !id.is_empty()) {
            if Some(id) == add || live_ids.contains(&id) {
                continue;
            }
            let entry_key = entry_key(id);
            let saved_at = self
                .state
                .get(&entry_key)
                .and_then(|entry| decode(&entry).map(|(saved_at, _)| saved_at));
            match saved_at {
                Some(saved_at) if self.now - saved_at <= MAX_RATE_WINDOW_SECS => live_ids.push(id),
                _ => {
                    self.state.set(&entry_key, None);
                }
            }
        }
        live_ids.extend(add);
        // The host accepts a value no longer than the old one, so only adding an id can
        // fail, and then that id stays unlisted.
        self.state.set(&index_key, Some(&live_ids.join("\n")));
    }
}

fn entry_key(vm_id: &str) -> String {
    format!("counters/{vm_id}")
}

fn bucket_of(vm_id: &str) -> u32 {
    devices::fingerprint([vm_id]) % INDEX_BUCKETS
}

/// Writes `v1 <saved at> <clock> <time> <boot time> <3 device sets> <11 counters>`,
/// separated by blanks, with `-` for an unknown value.
fn encode(saved_at: f64, snapshot: &Snapshot) -> String {
    let clock = match snapshot.clock {
        Clock::Exporter => "e",
        Clock::Scrape => "s",
    };
    let mut fields = vec![
        FORMAT_VERSION.to_owned(),
        saved_at.to_string(),
        clock.to_owned(),
        snapshot.time.to_string(),
        optional(snapshot.boot_time),
    ];
    for set in DeviceSet::ALL {
        fields.push(snapshot.counters.device_set(set).to_string());
    }
    for counter in Counter::ALL {
        fields.push(optional(snapshot.counters.get(counter)));
    }
    fields.join(" ")
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Reads an entry back as (saved at, snapshot); `None` when it is not a valid entry.
fn decode(entry: &str) -> Option<(f64, Snapshot)> {
    let mut fields = entry.split(' ');
    if fields.next()? != FORMAT_VERSION {
        return None;
    }
    let saved_at = fields.next()?.parse().ok()?;
    let clock = match fields.next()? {
        "e" => Clock::Exporter,
        "s" => Clock::Scrape,
        _ => return None,
    };
    let time = fields.next()?.parse().ok()?;
    let boot_time = parse_optional(fields.next()?)?;
    let mut counters = Counters::default();
    for set in DeviceSet::ALL {
        counters.set_device_set(set, fields.next()?.parse().ok()?);
    }
    for counter in Counter::ALL {
        counters.set(counter, parse_optional(fields.next()?)?);
    }
    if fields.next().is_some() {
        return None;
    }
    let snapshot = Snapshot {
        clock,
        time,
        boot_time,
        counters,
    };
    Some((saved_at, snapshot))
}

/// Parses a field that may be `-`; the outer `None` means the field is invalid.
fn parse_optional(field: &str) -> Option<Option<f64>> {
    if field == "-" {
        Some(None)
    } else {
        field.parse().ok().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A map with a byte quota, like the host's state.
    #[derive(Default)]
    struct MapStore {
        values: HashMap<String, String>,
        quota: Option<usize>,
    }

    impl MapStore {
        fn bytes(&self) -> usize {
            self.values.iter().map(|(k, v)| k.len() + v.len()).sum()
        }
    }

    impl StateStore for &mut MapStore {
        fn get(&self, key: &str) -> Option<String> {
            self.values.get(key).cloned()
        }

        fn set(&mut self, key: &str, value: Option<&str>) -> bool {
            let Some(value) = value else {
                self.values.remove(key);
                return true;
            };
            let old = self.values.get(key).map_or(0, |v| key.len() + v.len());
            if let Some(quota) = self.quota
                && self.bytes() - old + key.len() + value.len() > quota
            {
                return false;
            }
            self.values.insert(key.to_owned(), value.to_owned());
            true
        }
    }

    fn snapshot(time: f64) -> Snapshot {
        let mut counters = Counters::default();
        counters.set(Counter::CpuIdle, Some(123.25));
        counters.set(Counter::NetReceivedBytes, Some(1.5e12));
        counters.set_device_set(DeviceSet::Interfaces, 0xdead_beef);
        Snapshot {
            clock: Clock::Exporter,
            time,
            boot_time: Some(1_699_000_000.0),
            counters,
        }
    }

    #[test]
    fn snapshot_round_trips() {
        let mut map = MapStore::default();
        let original = snapshot(1_700_000_000.123);

        CounterStore::new(&mut map, 1_700_000_001.0)
            .save("vc1.vm-42", &original)
            .unwrap();
        let loaded = CounterStore::new(&mut map, 1_700_000_002.0).load("vc1.vm-42");

        assert_eq!(loaded, Some(original));
    }

    #[test]
    fn entry_is_compact() {
        let mut counters = Counters::default();
        for counter in Counter::ALL {
            counters.set(counter, Some(123_456_789_012.345));
        }
        let full = Snapshot {
            clock: Clock::Exporter,
            time: 1_700_000_000.123_456,
            boot_time: Some(1_699_000_000.0),
            counters,
        };

        let entry = encode(1_700_000_000.5, &full);

        assert!(entry.len() < 240, "{} bytes: {entry}", entry.len());
    }

    #[test]
    fn unreadable_entries_are_ignored() {
        for entry in [
            "",
            "v0 1 e 2 - 0 0 0",
            "v1 1 e 2 - 0 0 0 - - -",
            "v1 x e 2 -",
        ] {
            assert_eq!(decode(entry), None, "{entry:?}");
        }
    }

    #[test]
    fn unknown_vm_has_no_snapshot() {
        let mut map = MapStore::default();

        assert_eq!(CounterStore::new(&mut map, 0.0).load("vm-1"), None);
    }

    #[test]
    fn joining_vm_removes_stale_bucket_entries() {
        let mut map = MapStore::default();
        let ids: Vec<String> = (0..2000).map(|i| format!("vc.vm-{i}")).collect();
        let start = 1_700_000_000.0;
        {
            let mut store = CounterStore::new(&mut map, start);
            for id in &ids {
                store.save(id, &snapshot(start)).unwrap();
            }
        }
        assert_eq!(map.values.len(), ids.len() + INDEX_BUCKETS as usize);

        // Long after, a VM that shares a bucket with the first one appears.
        let later = start + MAX_RATE_WINDOW_SECS + 1.0;
        let newcomer = (0..)
            .map(|i| format!("new-{i}"))
            .find(|id| bucket_of(id) == bucket_of(&ids[0]))
            .unwrap();
        CounterStore::new(&mut map, later)
            .save(&newcomer, &snapshot(later))
            .unwrap();

        let store = CounterStore::new(&mut map, later);
        assert_eq!(store.load(&ids[0]), None, "stale and in the same bucket");
        assert!(store.load(&newcomer).is_some());
        let other_bucket = ids
            .iter()
            .find(|id| bucket_of(id) != bucket_of(&ids[0]))
            .unwrap();
        assert!(
            store.load(other_bucket).is_some(),
            "other buckets wait their turn"
        );
    }

    #[test]
    fn live_entries_stay_listed_once() {
        let mut map = MapStore::default();
        let now = 1_700_000_000.0;
        {
            let mut store = CounterStore::new(&mut map, now);
            store.save("vm-a", &snapshot(now)).unwrap();
            store.save("vm-a", &snapshot(now + 30.0)).unwrap();
        }

        let index = &map.values[&format!("index/{}", bucket_of("vm-a"))];
        assert_eq!(index, "vm-a");
    }

    #[test]
    fn full_store_frees_stale_entries_of_the_bucket() {
        let mut map = MapStore::default();
        let start = 1_700_000_000.0;
        let old_id = "old-vm";
        let new_id = (0..)
            .map(|i| format!("vm-{i}"))
            .find(|id| bucket_of(id) == bucket_of(old_id))
            .unwrap();
        CounterStore::new(&mut map, start)
            .save(old_id, &snapshot(start))
            .unwrap();
        // Room for everything but a second entry.
        map.quota = Some(map.bytes() + new_id.len() + 1);

        let later = start + MAX_RATE_WINDOW_SECS + 1.0;
        // The new id joins the bucket first, which already removes the stale one.
        let saved = CounterStore::new(&mut map, later).save(&new_id, &snapshot(later));

        assert_eq!(saved, Ok(()));
        assert_eq!(CounterStore::new(&mut map, later).load(old_id), None);
    }

    #[test]
    fn full_store_of_live_entries_is_reported() {
        let mut map = MapStore::default();
        let now = 1_700_000_000.0;
        CounterStore::new(&mut map, now)
            .save("vm-a", &snapshot(now))
            .unwrap();
        // Room for a second index line, not for a second entry.
        map.quota = Some(map.bytes() + 30);

        let mut store = CounterStore::new(&mut map, now);
        let second = store.save("vm-b", &snapshot(now));

        assert_eq!(second, Err(StoreFull));
        assert!(store.load("vm-a").is_some(), "the live entry is kept");
    }
}
