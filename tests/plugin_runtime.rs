//! The plugin runtime against real fixture components: limits, the outbound allowlist,
//! TLS, error reporting, back-off, log redaction and the compile cache.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmpulse::config::PluginKind;
use vmpulse::plugin::bindings::types::{PowerState, Severity, VmSample};
use vmpulse::plugin::health::Health;
use vmpulse::plugin::{GuestError, LoadSource, PluginError, PluginRuntime, Vm, guest_error_kind};
use vmpulse_tests::fixtures::declaration;
use vmpulse_tests::http_peer::{Behaviour, HttpPeer, self_signed_tls};

fn vm(name: &str) -> Vm {
    Vm {
        id: format!("id-{name}"),
        name: name.to_owned(),
        source_ref: None,
        host_id: None,
        cluster_id: None,
        datacenter_id: None,
        folder: None,
        power_state: PowerState::PoweredOn,
        vcpus: Some(2),
        memory_mb: Some(4096),
        tools_status: None,
        guest_ip: None,
        guest_hostname: None,
    }
}

fn runtime() -> PluginRuntime {
    PluginRuntime::new(None).unwrap()
}

fn echo_declaration(id: &str, peer: &HttpPeer, extra: &str) -> vmpulse::config::PluginConfig {
    declaration(
        id,
        "collector",
        "echo-collector",
        &format!(
            "allowed_outbound_hosts = [\"{origin}\"]\nconfig = {{ url = \"{origin}/value\" }}\n{extra}",
            origin = peer.origin(false)
        ),
    )
}

#[tokio::test]
async fn collector_collects_over_granted_http() {
    let peer = HttpPeer::start(Behaviour::Respond("42.5".into())).await;
    let runtime = runtime();
    let plugin = runtime
        .load(&echo_declaration("echo", &peer, ""))
        .await
        .unwrap();

    let vms = [vm("a"), vm("b"), vm("c")];
    let first = plugin.collect(&vms).await.unwrap();
    let second = plugin.collect(&vms).await.unwrap();

    assert_eq!(first.samples.len(), 3);
    assert!(first.errors.is_empty());
    assert_eq!(first.samples[1].vm_id, "id-b");
    assert_eq!(first.samples[0].cpu.usage_percent, Some(42.5));
    assert_eq!(
        first.samples[0].cpu.usage_mhz, None,
        "unmeasured fields stay absent"
    );
    // The fixture stores a call counter in host state and reports it as the timestamp.
    assert_eq!(first.samples[0].timestamp_ms, 1);
    assert_eq!(second.samples[0].timestamp_ms, 2);
    assert_eq!(peer.connections(), 2);
    assert_eq!(plugin.status().health, Health::Healthy);
}

#[tokio::test]
async fn discover_returns_inventory() {
    let peer = HttpPeer::start(Behaviour::Respond("1".into())).await;
    let runtime = runtime();
    let plugin = runtime
        .load(&echo_declaration("echo", &peer, ""))
        .await
        .unwrap();

    let inventory = plugin.discover().await.unwrap();

    assert_eq!(inventory.vms.len(), 1);
    assert_eq!(inventory.vms[0].vcpus, Some(2));
    assert_eq!(plugin.info().unwrap().name, "echo");
}

/// A current-thread runtime has one worker: the ticker only advances if the spinning guest
/// yields to it.
#[tokio::test(flavor = "current_thread")]
async fn spinning_plugin_times_out_without_starving_host() {
    let runtime = runtime();
    let spin = declaration(
        "spin",
        "collector",
        "spin-forever",
        "call_timeout_secs = 0.5\nresponse_timeout_secs = 0.4",
    );
    let plugin = runtime.load(&spin).await.unwrap();
    let ticks = Arc::new(Mutex::new(0u32));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                *ticks.lock().unwrap() += 1;
            }
        })
    };

    let started = Instant::now();
    let error = plugin.collect(&[vm("a")]).await.unwrap_err();
    let elapsed = started.elapsed();
    ticker.abort();

    assert!(
        matches!(error, PluginError::Timeout { spinning: true, .. }),
        "unexpected error: {error}"
    );
    assert!(error.to_string().contains("`spin`"), "{error}");
    assert!(
        elapsed < Duration::from_secs(5),
        "the deadline did not stop the loop: {elapsed:?}"
    );
    assert!(
        *ticks.lock().unwrap() >= 5,
        "the host's other tasks were starved"
    );
}

#[tokio::test]
async fn memory_hog_hits_its_cap_and_host_keeps_serving() {
    let peer = HttpPeer::start(Behaviour::Respond("7".into())).await;
    let runtime = runtime();
    let hog = declaration("hog", "collector", "memory-hog", "memory_limit_mb = 16");
    let hog = runtime.load(&hog).await.unwrap();
    let echo = runtime
        .load(&echo_declaration("echo", &peer, ""))
        .await
        .unwrap();

    let error = hog.collect(&[vm("a")]).await.unwrap_err();

    assert!(
        matches!(error, PluginError::MemoryLimit { limit_mb: 16, .. }),
        "unexpected error: {error}"
    );
    assert!(error.to_string().contains("`hog`"), "{error}");
    let result = echo.collect(&[vm("a")]).await.unwrap();
    assert_eq!(result.samples[0].cpu.usage_percent, Some(7.0));
}

#[tokio::test]
async fn repeated_traps_back_off_and_mark_unhealthy() {
    let runtime = runtime();
    let spin = declaration(
        "spin",
        "collector",
        "spin-forever",
        "call_timeout_secs = 0.1\nresponse_timeout_secs = 0.05",
    );
    let plugin = runtime.load(&spin).await.unwrap();

    for _ in 0..3 {
        let error = plugin.collect(&[vm("a")]).await.unwrap_err();
        assert_eq!(error.kind(), "timeout");
    }
    let started = Instant::now();
    let refused = plugin.collect(&[vm("a")]).await.unwrap_err();

    assert!(
        matches!(refused, PluginError::BackedOff { failures: 3, .. }),
        "{refused}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "a backed-off plugin still ran"
    );
    let status = plugin.status();
    assert_eq!(status.health, Health::Unhealthy);
    assert_eq!(status.consecutive_failures, 3);
    assert_eq!(status.last_error.unwrap().kind, "timeout");
    assert!(status.backoff_remaining_secs.unwrap() > 0.0);
}

#[tokio::test]
async fn ungranted_host_is_denied_before_connecting() {
    let target = HttpPeer::start(Behaviour::Respond("1".into())).await;
    let runtime = runtime();
    let extra = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.2:9\"]\n\
         config = {{ url = \"{}/x\", socket_addr = \"{}\" }}",
        target.origin(false),
        target.addr
    );
    let plugin = runtime
        .load(&declaration("nosy", "collector", "denied-host", &extra))
        .await
        .unwrap();

    let error = plugin.collect(&[vm("a")]).await.unwrap_err();

    let PluginError::Guest { error: guest, .. } = &error else {
        panic!("unexpected error: {error}");
    };
    // The fixture returns `other` with "escaped:" if a socket, a name lookup, the file
    // system or the request itself got through.
    assert_eq!(guest_error_kind(guest), "config", "{error}");
    assert!(error.to_string().contains("denied"), "{error}");
    assert_eq!(
        target.connections(),
        0,
        "a connection reached the ungranted peer"
    );
}

#[tokio::test]
async fn each_guest_error_kind_is_reported() {
    let runtime = runtime();
    let plugin = runtime
        .load(&declaration("errors", "collector", "error-kinds", ""))
        .await
        .unwrap();

    for kind in ["config", "unreachable", "auth", "protocol", "other"] {
        let error = plugin.collect(&[vm(kind)]).await.unwrap_err();
        let PluginError::Guest {
            error: guest,
            function,
            ..
        } = &error
        else {
            panic!("unexpected error for {kind}: {error}");
        };
        assert_eq!(guest_error_kind(guest), kind);
        assert_eq!(*function, "collect");
        assert!(error.to_string().contains("`errors`"), "{error}");
    }
    // Reported errors never pause a plugin: the peer may recover by the next cycle.
    assert!(plugin.status().backoff_remaining_secs.is_none());
    assert_eq!(plugin.status().health, Health::Unhealthy);
}

#[tokio::test]
async fn secret_in_returned_error_is_redacted() {
    // SAFETY: no other thread of this test binary reads this variable.
    unsafe { std::env::set_var("VMPULSE_TEST_ERROR_SECRET", "requested by VM") };
    let runtime = runtime();
    let declaration = declaration(
        "errors",
        "collector",
        "error-kinds",
        "secrets = { token = \"VMPULSE_TEST_ERROR_SECRET\" }",
    );
    let plugin = runtime.load(&declaration).await.unwrap();

    let error = plugin.collect(&[vm("auth")]).await.unwrap_err().to_string();
    let status = plugin.status().last_error.unwrap().message;

    assert!(error.contains("[redacted] name"), "{error}");
    assert!(!error.contains("requested by VM"), "{error}");
    assert!(!status.contains("requested by VM"), "{status}");
}

#[tokio::test]
async fn per_vm_errors_keep_the_rest_of_the_batch() {
    let runtime = runtime();
    let plugin = runtime
        .load(&declaration("errors", "collector", "error-kinds", ""))
        .await
        .unwrap();

    let result = plugin
        .collect(&[vm("per-vm"), vm("b"), vm("c")])
        .await
        .unwrap();

    assert_eq!(result.samples.len(), 1);
    assert_eq!(result.samples[0].vm_id, "id-per-vm");
    assert_eq!(result.errors.len(), 2);
    assert_eq!(result.errors[1].vm_id, "id-c");
    assert!(matches!(result.errors[0].error, GuestError::Protocol(_)));
}

#[tokio::test]
async fn guest_panic_is_a_trap_with_its_message() {
    let runtime = runtime();
    let plugin = runtime
        .load(&declaration("errors", "collector", "error-kinds", ""))
        .await
        .unwrap();

    let error = plugin.collect(&[vm("panic")]).await.unwrap_err();

    assert!(
        matches!(error, PluginError::Trap { .. }),
        "unexpected error: {error}"
    );
    assert!(
        error.to_string().contains("requested by VM name"),
        "{error}"
    );
    // A fresh instance per call: the next call runs normally.
    assert!(plugin.collect(&[vm("fine")]).await.is_ok());
}

#[tokio::test]
async fn discover_error_is_reported() {
    let runtime = runtime();
    let plugin = runtime
        .load(&declaration("errors", "collector", "error-kinds", ""))
        .await
        .unwrap();

    let error = plugin.discover().await.unwrap_err();

    assert_eq!(error.kind(), "unreachable", "{error}");
}

#[tokio::test]
async fn response_timeout_is_unreachable_not_a_hang() {
    let peer = HttpPeer::start(Behaviour::Hang).await;
    let runtime = runtime();
    let plugin = runtime
        .load(&echo_declaration(
            "echo",
            &peer,
            "response_timeout_secs = 0.3",
        ))
        .await
        .unwrap();

    let error = plugin.collect(&[vm("a")]).await.unwrap_err();

    assert_eq!(error.kind(), "unreachable", "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn call_deadline_cuts_a_slow_peer() {
    let peer = HttpPeer::start(Behaviour::Hang).await;
    let runtime = runtime();
    let mut declaration = echo_declaration(
        "echo",
        &peer,
        "call_timeout_secs = 0.3\nresponse_timeout_secs = 0.2",
    );
    // Config validation keeps the response timeout below the deadline; the runtime must
    // still cut a guest that waits longer, for example on a trickling body.
    declaration.response_timeout_secs = 60.0;
    let plugin = runtime.load(&declaration).await.unwrap();

    let error = plugin.collect(&[vm("a")]).await.unwrap_err();

    assert!(
        matches!(
            error,
            PluginError::Timeout {
                spinning: false,
                ..
            }
        ),
        "unexpected error: {error}"
    );
    assert!(plugin.status().backoff_remaining_secs.is_none());
}

#[tokio::test]
async fn trickling_peer_is_waiting_not_spinning() {
    let peer = HttpPeer::start(Behaviour::Trickle).await;
    let runtime = runtime();
    let extra = "call_timeout_secs = 0.8\nresponse_timeout_secs = 0.5";
    let plugin = runtime
        .load(&echo_declaration("echo", &peer, extra))
        .await
        .unwrap();

    let error = plugin.collect(&[vm("a")]).await.unwrap_err();

    assert!(
        matches!(
            error,
            PluginError::Timeout {
                spinning: false,
                ..
            }
        ),
        "unexpected error: {error}"
    );
    assert!(!error.is_misbehaviour());
}

#[tokio::test]
async fn tls_with_ca_file_succeeds() {
    let (server_config, ca_pem) = self_signed_tls();
    let peer = HttpPeer::start_with_tls(Behaviour::Respond("3".into()), Some(server_config)).await;
    let folder = tempfile::tempdir().unwrap();
    let ca_file = folder.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let origin = peer.origin(true);
    let extra = format!(
        "allowed_outbound_hosts = [\"{origin}\"]\nconfig = {{ url = \"{origin}/v\" }}\n\
         tls.\"{origin}\" = {{ ca_file = {:?} }}",
        ca_file.display().to_string()
    );
    let runtime = runtime();
    let plugin = runtime
        .load(&declaration("tls", "collector", "echo-collector", &extra))
        .await
        .unwrap();

    let result = plugin.collect(&[vm("a")]).await.unwrap();

    assert_eq!(result.samples[0].cpu.usage_percent, Some(3.0));
}

#[tokio::test]
async fn tls_without_trusted_ca_fails_and_insecure_succeeds() {
    let (server_config, _) = self_signed_tls();
    let peer = HttpPeer::start_with_tls(Behaviour::Respond("4".into()), Some(server_config)).await;
    let origin = peer.origin(true);
    let grant =
        format!("allowed_outbound_hosts = [\"{origin}\"]\nconfig = {{ url = \"{origin}/v\" }}");
    let runtime = runtime();
    let strict = runtime
        .load(&declaration(
            "strict",
            "collector",
            "echo-collector",
            &grant,
        ))
        .await
        .unwrap();
    let insecure = format!("{grant}\ntls.\"{origin}\" = {{ insecure = true }}");
    let lax = runtime
        .load(&declaration(
            "lax",
            "collector",
            "echo-collector",
            &insecure,
        ))
        .await
        .unwrap();

    let error = strict.collect(&[vm("a")]).await.unwrap_err();
    let result = lax.collect(&[vm("a")]).await.unwrap();

    assert_eq!(error.kind(), "protocol", "{error}");
    assert!(error.to_string().contains("TlsCertificateError"), "{error}");
    assert_eq!(result.samples[0].cpu.usage_percent, Some(4.0));
}

/// Collects log lines written on this thread; the test runs on a current-thread runtime.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn guest_log_carries_plugin_id_and_hides_secrets() {
    const SECRET: &str = "s3cr3t-vc-password";
    // SAFETY: no other thread of this test binary reads this variable.
    unsafe { std::env::set_var("VMPULSE_TEST_ECHO_TOKEN", SECRET) };
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Another test thread may have registered the log call sites before this subscriber
    // existed, and cached that no subscriber is interested. Rebuild that cache now.
    tracing::callsite::rebuild_interest_cache();
    let peer = HttpPeer::start(Behaviour::Respond("1".into())).await;
    let extra = "secrets = { token = \"VMPULSE_TEST_ECHO_TOKEN\" }";
    let mut declaration = echo_declaration("echo-log", &peer, extra);
    declaration
        .config
        .insert("log_secret".into(), toml::Value::Boolean(true));
    let runtime = runtime();
    let plugin = runtime.load(&declaration).await.unwrap();

    plugin.collect(&[vm("a")]).await.unwrap();

    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("with token [redacted]"), "{log}");
    assert!(
        log.contains("plugin=\"echo-log\"") || log.contains("plugin=echo-log"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "the secret reached the log:\n{log}");
}

#[tokio::test]
async fn missing_secret_variable_fails_load_with_its_name() {
    let peer = HttpPeer::start(Behaviour::Respond("1".into())).await;
    let extra = "secrets = { token = \"VMPULSE_TEST_UNSET_VARIABLE\" }";
    let runtime = runtime();

    let error = runtime
        .load(&echo_declaration("echo", &peer, extra))
        .await
        .err()
        .unwrap();

    assert!(
        error.to_string().contains("VMPULSE_TEST_UNSET_VARIABLE"),
        "{error}"
    );
}

#[tokio::test]
async fn alert_rule_finds_threshold_crossing() {
    let runtime = runtime();
    let rule = runtime
        .load(&declaration(
            "cpu",
            "alert-rule",
            "cpu-rule",
            "config = { threshold = 80.0 }",
        ))
        .await
        .unwrap();
    let mut sample = empty_sample("id-a");

    let unknown = rule.evaluate(&vm("a"), &sample).await.unwrap();
    sample.cpu.usage_percent = Some(91.0);
    let high = rule.evaluate(&vm("a"), &sample).await.unwrap();
    sample.cpu.usage_percent = Some(50.0);
    let normal = rule.evaluate(&vm("a"), &sample).await.unwrap();

    assert!(unknown.is_empty(), "missing data must not fire");
    assert_eq!(high.len(), 1);
    assert_eq!(high[0].severity, Severity::High);
    assert_eq!(high[0].current_value, 91.0);
    assert_eq!(high[0].threshold, 80.0);
    assert!(normal.is_empty());
}

#[tokio::test]
async fn collector_declared_as_rule_fails_to_load() {
    let runtime = runtime();

    let error = runtime
        .load(&declaration("misfiled", "alert-rule", "echo-collector", ""))
        .await
        .err()
        .unwrap();

    assert!(matches!(error, PluginError::Load { .. }), "{error}");
    assert!(error.to_string().contains("`misfiled`"), "{error}");
    assert!(error.to_string().contains("alert-rule"), "{error}");
}

#[tokio::test]
async fn rule_method_on_collector_is_wrong_kind() {
    let runtime = runtime();
    let plugin = runtime
        .load(&declaration("errors", "collector", "error-kinds", ""))
        .await
        .unwrap();

    let error = plugin
        .evaluate(&vm("a"), &empty_sample("id-a"))
        .await
        .unwrap_err();

    assert!(
        matches!(
            error,
            PluginError::WrongKind {
                actual: PluginKind::Collector,
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn compile_cache_is_used_and_survives_corruption() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = PluginRuntime::new(Some(cache.path().to_owned())).unwrap();
    let rule = declaration(
        "cpu",
        "alert-rule",
        "cpu-rule",
        "config = { threshold = 1.0 }",
    );

    let cold = runtime.load(&rule).await.unwrap();
    let warm = runtime.load(&rule).await.unwrap();
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    std::fs::write(&entries[0], b"not machine code").unwrap();
    let after_corruption = runtime.load(&rule).await.unwrap();
    let reloaded = runtime.load(&rule).await.unwrap();

    assert_eq!(cold.load_stats().0, LoadSource::Compiled);
    assert_eq!(warm.load_stats().0, LoadSource::Cache);
    assert_eq!(entries.len(), 1);
    assert_eq!(after_corruption.load_stats().0, LoadSource::Compiled);
    assert_eq!(reloaded.load_stats().0, LoadSource::Cache);
    assert!(
        reloaded
            .evaluate(&vm("a"), &empty_sample("id-a"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn concurrent_calls_share_one_plugin() {
    let peer = HttpPeer::start(Behaviour::Respond("5".into())).await;
    let runtime = runtime();
    let plugin = Arc::new(
        runtime
            .load(&echo_declaration("echo", &peer, ""))
            .await
            .unwrap(),
    );

    let calls: Vec<_> = (0..16)
        .map(|i| {
            let plugin = plugin.clone();
            tokio::spawn(async move { plugin.collect(&[vm(&format!("vm{i}"))]).await })
        })
        .collect();
    let mut samples = 0;
    for call in calls {
        samples += call.await.unwrap().unwrap().samples.len();
    }

    assert_eq!(samples, 16);
    assert_eq!(
        plugin.status().calls,
        17,
        "16 collects plus the describe at load"
    );
}

fn empty_sample(vm_id: &str) -> VmSample {
    VmSample::empty(vm_id, 0)
}
