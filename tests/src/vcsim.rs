//! The simulated vCenter of `scripts/vcsim` for integration tests: started on a free
//! loopback port with its CA certificate in a temporary folder, stopped with SIGTERM, and
//! restarted on the same port with the same estate.
//!
//! ```ignore
//! let mut vcsim = Vcsim::start(&["-vms", "200"]);
//! let url = vcsim.sdk_url();          // https://127.0.0.1:PORT/sdk
//! vcsim.restart();                    // same port, same IDs, sessions lost
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

use crate::fixtures::workspace_root;

/// How long the launcher may take to print its ready line. The first run builds it with
/// Go, which takes longer than starting 1,500 VMs. The limit only guards against a hang.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// The JSON line the launcher prints once it serves.
#[derive(Debug, Clone, Deserialize)]
pub struct ReadyLine {
    pub url: String,
    pub port: u16,
    pub username: String,
    pub instance_uuid: String,
    pub ca_file: PathBuf,
    pub datacenters: usize,
    pub clusters: usize,
    pub hosts: usize,
    pub vms: usize,
    pub powered_on: usize,
    pub powered_off: usize,
    pub suspended: usize,
    pub tools_not_running: usize,
    pub awkward_vms: Vec<VmEntry>,
    /// The VMs given a guest IP with `-guest-ip`.
    pub guest_ip_vms: Vec<VmEntry>,
    /// The launcher's process id, for measuring its CPU time.
    pub pid: u32,
}

/// One VM as the ready line describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct VmEntry {
    pub name: String,
    /// The name as the `name` property returns it, with `/`, `\` and `%` escaped.
    pub wire_name: String,
    pub moref: String,
    pub instance_uuid: String,
    pub host: String,
    pub power_state: String,
    pub tools_running: bool,
    pub guest_ip: Option<String>,
}

/// A running simulator; it is stopped when dropped.
pub struct Vcsim {
    pub ready: ReadyLine,
    args: Vec<String>,
    dir: tempfile::TempDir,
    process: Option<Launched>,
}

struct Launched {
    child: Child,
    // The launcher writes nothing after the ready line. The pipe stays open anyway, so a
    // late write cannot fail with SIGPIPE.
    _stdout: BufReader<ChildStdout>,
}

impl Vcsim {
    /// Starts the launcher with `args` (such as `["-vms", "200"]`) on a free port.
    ///
    /// # Panics
    ///
    /// When the launcher fails or prints no ready line. The panic message quotes its log.
    pub fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("cannot create a temporary folder");
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let (process, ready) = launch(&args, "127.0.0.1:0", dir.path());
        Self {
            ready,
            args,
            dir,
            process: Some(process),
        }
    }

    /// Returns `https://127.0.0.1:PORT`, the origin to grant a plugin.
    pub fn origin(&self) -> String {
        format!("https://127.0.0.1:{}", self.ready.port)
    }

    /// Returns the SDK endpoint, `https://127.0.0.1:PORT/sdk`.
    pub fn sdk_url(&self) -> String {
        self.ready.url.clone()
    }

    /// Stops the launcher with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            terminate(&mut process.child);
        }
    }

    /// Stops the launcher and starts it again on the same port with the same flags. The
    /// estate and its IDs stay the same, but sessions and views are gone.
    pub fn restart(&mut self) {
        self.stop();
        let listen = format!("127.0.0.1:{}", self.ready.port);
        let (process, ready) = launch(&self.args, &listen, self.dir.path());
        self.ready = ready;
        self.process = Some(process);
    }
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        self.stop();
    }
}

fn launch(args: &[String], listen: &str, dir: &Path) -> (Launched, ReadyLine) {
    let log_path = dir.join("vcsim.log");
    let log = File::create(&log_path).expect("cannot create the launcher's log file");
    let mut child = Command::new(workspace_root().join("scripts").join("vcsim"))
        .args(["-listen", listen, "-cert-out"])
        .arg(dir.join("ca.pem"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("cannot run scripts/vcsim");

    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let (sender, receiver) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let result = stdout.read_line(&mut line).map(|_| line);
        let _ = sender.send(result);
        stdout
    });

    let line = match receiver.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(line)) if !line.trim().is_empty() => line,
        outcome => {
            terminate(&mut child);
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("scripts/vcsim printed no ready line ({outcome:?}); its log:\n{log}");
        }
    };
    let stdout = reader.join().expect("the ready line reader panicked");
    let ready: ReadyLine = serde_json::from_str(&line)
        .unwrap_or_else(|err| panic!("invalid ready line from scripts/vcsim: {err}\n{line}"));
    let process = Launched {
        child,
        _stdout: stdout,
    };
    (process, ready)
}

/// Sends SIGTERM, so the launcher removes its datastore folder, and waits for the exit.
fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|status| status.success());
    if !sent {
        let _ = child.kill();
    }
    let _ = child.wait();
}
