//! The guest OS collector (`plugins/guestos`) for tests: its build, its declarations, a
//! real node exporter process, and an exporter stand-in that serves scripted responses.

use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vmpulse::config::{Config, PluginConfig};

use crate::fixtures::workspace_root;

/// Debian's node exporter, which `scripts/install-deps` installs.
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// Builds the plugin once per process and returns the path of its `.wasm` file.
///
/// The build uses its own target folder, so it waits neither for the outer `cargo test`
/// nor for another plugin's build.
///
/// # Panics
///
/// When cargo fails; its output then shows why.
pub fn component() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target").join("guestos-plugin");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args(["build", "--quiet", "--target", "wasm32-wasip2"])
            .args(["--profile", "release-wasm", "-p", "vmpulse-plugin-guestos"])
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cannot run cargo to build plugins/guestos");
        assert!(
            status.success(),
            "building plugins/guestos failed: {status}"
        );
        target
            .join("wasm32-wasip2")
            .join("release-wasm")
            .join("vmpulse_plugin_guestos.wasm")
    })
}

/// Returns the folder where tests cache the compiled component.
pub fn component_cache() -> PathBuf {
    workspace_root()
        .join("target")
        .join("guestos-plugin")
        .join("component-cache")
}

/// Parses an enrichment `[[plugins]]` entry for the plugin with `extra` TOML lines, which
/// grant origins and set `config`.
///
/// # Panics
///
/// When the declaration is invalid.
pub fn declaration(id: &str, extra: &str) -> PluginConfig {
    let text = format!(
        "[[plugins]]\nid = \"{id}\"\nkind = \"collector\"\nrole = \"enrichment\"\n\
         component = {path:?}\n{extra}\n",
        path = component().display().to_string(),
    );
    let config = Config::parse(&text, Path::new("test.toml"), Path::new("/"))
        .unwrap_or_else(|err| panic!("{err}\n{text}"));
    config.plugins.into_iter().next().unwrap()
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A node exporter process on 127.0.0.1; it is killed when dropped.
pub struct NodeExporter {
    pub addr: SocketAddr,
    child: Child,
}

impl NodeExporter {
    /// Starts the exporter on a free port with `extra_args` and waits until it accepts
    /// connections.
    ///
    /// # Panics
    ///
    /// When the binary is missing (run `scripts/install-deps`) or the process exits
    /// before it listens.
    pub fn start(extra_args: &[&str]) -> Self {
        assert!(
            Path::new(NODE_EXPORTER).exists(),
            "{NODE_EXPORTER} is missing: run scripts/install-deps"
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address={addr}"))
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {NODE_EXPORTER}: {err}"));
        let mut exporter = Self { addr, child };
        exporter.wait_until_listening();
        exporter
    }

    /// Returns `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn wait_until_listening(&mut self) {
        // Up to 10 s: the exporter usually listens within a few milliseconds.
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{NODE_EXPORTER} exited with {status} before listening on {}",
                    self.addr
                );
            }
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{NODE_EXPORTER} did not listen on {} within 10 s",
            self.addr
        );
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scripted response: an HTTP status and a body.
#[derive(Debug, Clone)]
pub struct ScriptedResponse {
    pub status: u16,
    pub body: String,
}

impl ScriptedResponse {
    /// `200 OK` with `body`.
    pub fn ok(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: body.into(),
        }
    }
}

/// An HTTP/1.1 stand-in for an exporter on 127.0.0.1: the n-th request gets the n-th
/// response, and requests past the end get the last one. It stops when dropped.
pub struct ScriptedExporter {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedExporter {
    /// Starts the stand-in on a free port.
    ///
    /// # Panics
    ///
    /// When `responses` is empty.
    pub async fn start(responses: Vec<ScriptedResponse>) -> Self {
        assert!(
            !responses.is_empty(),
            "a scripted exporter needs a response"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let responses = Arc::new(responses);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = counter.fetch_add(1, Ordering::SeqCst);
                let response = responses[index.min(responses.len() - 1)].clone();
                drop(tokio::spawn(respond_once(stream, response)));
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    /// Returns `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests accepted so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedExporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond_once(mut stream: tokio::net::TcpStream, scripted: ScriptedResponse) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 {} Scripted\r\ncontent-type: text/plain; version=0.0.4\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{}",
        scripted.status,
        scripted.body.len(),
        scripted.body
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
