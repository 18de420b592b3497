//! Reading the active and recently resolved alerts back from the store when the engine
//! starts.

use vmpulse_store::{AlertWrite, Store};

use super::{Alert, AlertError, EngineState, RECENT_RESOLVED, RuleKey, Track};

/// Loads the stored active alerts into `state` as tracks, and the newest resolved ones into
/// its resolved list.
pub(super) fn restore(store: &Store, state: &mut EngineState) -> Result<(), AlertError> {
    let read_error = |err: vmpulse_store::StoreError| AlertError::Store {
        id: "*".to_owned(),
        message: err.to_string(),
    };
    let mut superseded = Vec::new();
    for record in store.active_alerts().map_err(read_error)? {
        let alert: Alert = match serde_json::from_slice(&record.record) {
            Ok(alert) => alert,
            Err(err) => {
                tracing::warn!(alert = %record.alert_id, error = %err, "unreadable stored alert skipped");
                continue;
            }
        };
        let key = RuleKey {
            plugin: alert.plugin.clone(),
            rule: alert.rule.clone(),
        };
        let vm_tracks = state.tracks.entry(alert.vm_id.clone()).or_default();
        let Some(track) = vm_tracks.get_mut(&key) else {
            let track = Track {
                pending_since_ms: None,
                clean_cycles: 0,
                alert: Some(alert),
            };
            vm_tracks.insert(key, track);
            continue;
        };
        // A second active alert for one condition means the first one's resolution was
        // not stored. Keep the newer one and resolve the older one when the newer fired.
        let current = track.alert.as_mut().expect("restored tracks have alerts");
        let mut older = if alert.fired_at_ms > current.fired_at_ms {
            std::mem::replace(current, alert)
        } else {
            alert
        };
        older.resolved_at_ms = Some(current.fired_at_ms);
        superseded.push(older);
    }
    store_superseded(store, &superseded);

    for record in store.resolved_alerts(RECENT_RESOLVED).map_err(read_error)? {
        if let Ok(alert) = serde_json::from_slice::<Alert>(&record.record) {
            state.resolved.push(alert);
        }
    }
    Ok(())
}

/// Stores restored alerts that a newer alert of their condition replaced as resolved.
fn store_superseded(store: &Store, superseded: &[Alert]) {
    if superseded.is_empty() {
        return;
    }
    let records: Vec<(&Alert, Vec<u8>)> = superseded
        .iter()
        .filter_map(|alert| Some((alert, serde_json::to_vec(alert).ok()?)))
        .collect();
    let writes: Vec<AlertWrite<'_>> = records
        .iter()
        .map(|(alert, record)| AlertWrite {
            alert_id: &alert.id,
            active: false,
            record,
        })
        .collect();
    let ids: Vec<&str> = superseded.iter().map(|alert| alert.id.as_str()).collect();
    match store.put_alerts(&writes) {
        Ok(()) => tracing::warn!(alerts = ?ids, "stored alerts replaced by newer ones resolved"),
        Err(err) => {
            tracing::error!(alerts = ?ids, error = %err, "replaced alerts not stored as resolved")
        }
    }
}
