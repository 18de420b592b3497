//! The `/metrics` page in the Prometheus text exposition format (version 0.0.4).
//!
//! A value the service has not measured yet (no cycle has run, a plugin never called) is
//! left out rather than written as 0.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::operations::health_name;
use crate::service::Service;
use crate::telemetry::HTTP_LATENCY_BUCKETS;
use crate::views::VmState;

/// Writes one metric family's `HELP` and `TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric of the service.
pub fn render(service: &Service) -> String {
    let mut out = String::with_capacity(8192);
    render_collection(&mut out, service);
    render_plugins(&mut out, service);
    render_estate(&mut out, service);
    render_websocket(&mut out, service);
    render_http(&mut out, service);
    out
}

fn render_collection(out: &mut String, service: &Service) {
    let loops: Vec<(String, crate::collection::LoopStats)> = service
        .loops
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(source, stats)| {
            let stats = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
            (escape(source), stats)
        })
        .collect();

    family(
        out,
        "vmpulse_collection_cycles_total",
        "counter",
        "Collection cycles run.",
    );
    for (source, stats) in &loops {
        let _ = writeln!(
            out,
            "vmpulse_collection_cycles_total{{source=\"{source}\"}} {}",
            stats.cycles
        );
    }
    family(
        out,
        "vmpulse_collection_skipped_ticks_total",
        "counter",
        "Collection ticks skipped because the cycle before was still running.",
    );
    for (source, stats) in &loops {
        let _ = writeln!(
            out,
            "vmpulse_collection_skipped_ticks_total{{source=\"{source}\"}} {}",
            stats.skipped_ticks
        );
    }
    family(
        out,
        "vmpulse_collection_cycle_duration_seconds",
        "gauge",
        "Duration of the last collection cycle.",
    );
    for (source, stats) in &loops {
        if let Some(cycle) = &stats.last_cycle {
            let _ = writeln!(
                out,
                "vmpulse_collection_cycle_duration_seconds{{source=\"{source}\"}} {}",
                cycle.duration_ms / 1e3
            );
        }
    }
    family(
        out,
        "vmpulse_collection_vms",
        "gauge",
        "VMs of the last collection cycle by outcome (scheduled, collected, failed).",
    );
    for (source, stats) in &loops {
        if let Some(cycle) = &stats.last_cycle {
            for (outcome, count) in [
                ("scheduled", cycle.vms_scheduled),
                ("collected", cycle.vms_collected),
                ("failed", cycle.vms_failed),
            ] {
                let _ = writeln!(
                    out,
                    "vmpulse_collection_vms{{source=\"{source}\",outcome=\"{outcome}\"}} {count}"
                );
            }
        }
    }
    family(
        out,
        "vmpulse_collection_last_success_timestamp_seconds",
        "gauge",
        "When a cycle last collected at least one VM, in seconds since the Unix epoch.",
    );
    for (source, stats) in &loops {
        if let Some(at) = stats.last_success_ms {
            let _ = writeln!(
                out,
                "vmpulse_collection_last_success_timestamp_seconds{{source=\"{source}\"}} {}",
                at as f64 / 1e3
            );
        }
    }
    family(
        out,
        "vmpulse_pipeline_dropped_cycles_total",
        "counter",
        "Cycles whose alert and aggregate processing was skipped because it was behind.",
    );
    let _ = writeln!(
        out,
        "vmpulse_pipeline_dropped_cycles_total {}",
        service.dropped_cycles.load(Ordering::Relaxed)
    );
}

fn render_plugins(out: &mut String, service: &Service) {
    let statuses: Vec<_> = service.plugins.iter().map(|p| p.status()).collect();
    let label = |status: &crate::plugin::PluginStatus| {
        format!(
            "plugin=\"{}\",kind=\"{}\"",
            escape(&status.id),
            escape(&status.kind)
        )
    };

    family(
        out,
        "vmpulse_plugin_calls_total",
        "counter",
        "Calls into each plugin.",
    );
    for status in &statuses {
        let _ = writeln!(
            out,
            "vmpulse_plugin_calls_total{{{}}} {}",
            label(status),
            status.calls
        );
    }
    family(
        out,
        "vmpulse_plugin_errors_total",
        "counter",
        "Plugin calls that failed.",
    );
    for status in &statuses {
        let _ = writeln!(
            out,
            "vmpulse_plugin_errors_total{{{}}} {}",
            label(status),
            status.failures
        );
    }
    family(
        out,
        "vmpulse_plugin_call_duration_seconds",
        "summary",
        "Duration of plugin calls since start.",
    );
    for status in &statuses {
        if let Some(mean_ms) = status.mean_duration_ms {
            let total = mean_ms / 1e3 * status.calls as f64;
            let _ = writeln!(
                out,
                "vmpulse_plugin_call_duration_seconds_sum{{{}}} {total}",
                label(status)
            );
            let _ = writeln!(
                out,
                "vmpulse_plugin_call_duration_seconds_count{{{}}} {}",
                label(status),
                status.calls
            );
        }
    }
    family(
        out,
        "vmpulse_plugin_last_call_duration_seconds",
        "gauge",
        "Duration of each plugin's last call.",
    );
    for status in &statuses {
        if let Some(last_ms) = status.last_duration_ms {
            let _ = writeln!(
                out,
                "vmpulse_plugin_last_call_duration_seconds{{{}}} {}",
                label(status),
                last_ms / 1e3
            );
        }
    }
    family(
        out,
        "vmpulse_plugin_health",
        "gauge",
        "1 for each plugin's current health (healthy, degraded, unhealthy).",
    );
    for status in &statuses {
        let _ = writeln!(
            out,
            "vmpulse_plugin_health{{{},health=\"{}\"}} 1",
            label(status),
            health_name(status.health)
        );
    }
    family(
        out,
        "vmpulse_plugins_failed_to_load",
        "gauge",
        "Declared plugins that failed to load.",
    );
    let _ = writeln!(
        out,
        "vmpulse_plugins_failed_to_load {}",
        service.failed_plugins.len()
    );
}

fn render_estate(out: &mut String, service: &Service) {
    let views = service.views.current();
    let mut by_state: BTreeMap<&str, u64> =
        [("online", 0), ("offline", 0), ("error", 0), ("warning", 0)].into();
    for state in views.vm_states.values() {
        let name = match state {
            VmState::Online => "online",
            VmState::Offline => "offline",
            VmState::Error => "error",
            VmState::Warning => "warning",
        };
        *by_state.entry(name).or_default() += 1;
    }
    family(
        out,
        "vmpulse_vms",
        "gauge",
        "VMs by status at the last aggregation.",
    );
    for (state, count) in by_state {
        let _ = writeln!(out, "vmpulse_vms{{status=\"{state}\"}} {count}");
    }

    let counts = &views.overview(crate::i18n::Lang::En).alerts;
    family(
        out,
        "vmpulse_alerts_active",
        "gauge",
        "Active alerts by severity.",
    );
    for (severity, count) in [
        ("critical", counts.critical),
        ("high", counts.high),
        ("medium", counts.medium),
        ("low", counts.low),
    ] {
        let _ = writeln!(
            out,
            "vmpulse_alerts_active{{severity=\"{severity}\"}} {count}"
        );
    }
}

fn render_websocket(out: &mut String, service: &Service) {
    let telemetry = &service.telemetry;
    family(
        out,
        "vmpulse_websocket_connections",
        "gauge",
        "WebSocket connections open now.",
    );
    let _ = writeln!(
        out,
        "vmpulse_websocket_connections {}",
        telemetry.ws_connections.load(Ordering::Relaxed)
    );
    family(
        out,
        "vmpulse_websocket_connections_total",
        "counter",
        "WebSocket connections accepted since start.",
    );
    let _ = writeln!(
        out,
        "vmpulse_websocket_connections_total {}",
        telemetry.ws_connections_total.load(Ordering::Relaxed)
    );
    family(
        out,
        "vmpulse_websocket_closed_total",
        "counter",
        "WebSocket connections closed by the server, by reason.",
    );
    let closed = telemetry
        .ws_closed
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for (reason, count) in closed.iter() {
        let _ = writeln!(
            out,
            "vmpulse_websocket_closed_total{{reason=\"{}\"}} {count}",
            escape(reason)
        );
    }
    drop(closed);
    for (name, help, value) in [
        (
            "vmpulse_websocket_frames_sent_total",
            "WebSocket text frames written to clients.",
            &telemetry.ws_frames_sent,
        ),
        (
            "vmpulse_websocket_metrics_replaced_total",
            "Pending metrics messages replaced by newer ones before they were written.",
            &telemetry.ws_metrics_replaced,
        ),
        (
            "vmpulse_websocket_errors_sent_total",
            "WebSocket error messages sent about client messages.",
            &telemetry.ws_errors_sent,
        ),
        (
            "vmpulse_websocket_alert_events_lost_total",
            "Alert changes the WebSocket fan-out fell too far behind to push.",
            &telemetry.ws_alert_events_lost,
        ),
    ] {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }
}

fn render_http(out: &mut String, service: &Service) {
    let http = &service.telemetry.http;
    family(
        out,
        "vmpulse_http_requests_total",
        "counter",
        "REST requests by operation, method and status.",
    );
    let requests = http
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for ((route, method, status), count) in &requests {
        let _ = writeln!(
            out,
            "vmpulse_http_requests_total{{route=\"{route}\",method=\"{}\",status=\"{status}\"}} {count}",
            escape(method)
        );
    }
    family(
        out,
        "vmpulse_http_request_duration_seconds",
        "histogram",
        "REST request latency by operation, from the request to the response headers.",
    );
    let latency = http
        .latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (route, histogram) in &latency {
        for (bound, count) in HTTP_LATENCY_BUCKETS.iter().zip(histogram.cumulative()) {
            let _ = writeln!(
                out,
                "vmpulse_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "vmpulse_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(
            out,
            "vmpulse_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
            histogram.sum
        );
        let _ = writeln!(
            out,
            "vmpulse_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
            histogram.count
        );
    }
}
