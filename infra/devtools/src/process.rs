//! Starting child processes so that none outlives the local stack, and the private
//! loopback-only network namespace that servers without a bind option (DynamoDB Local) run in.
//!
//! Every child is tied to this process with `PR_SET_PDEATHSIG`, so the kernel kills it even
//! when this process panics or is killed. A socket belongs to the network namespace of the
//! thread that creates it and a child inherits its spawning thread's, so the namespace is one
//! thread that spawns and connects on request; [`Forwarder`] brings its ports to the host's
//! 127.0.0.1.

use crate::DevError;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

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

/// Limits the child's address space (`RLIMIT_AS`) to `bytes`: an allocation beyond it fails
/// in the child, which then usually aborts.
pub fn limit_address_space(cmd: &mut tokio::process::Command, bytes: u64) {
    // SAFETY: setrlimit is async-signal-safe and changes only the child's own limits.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

enum NsRequest {
    Spawn(Command, mpsc::Sender<io::Result<Child>>),
    Connect(u16, mpsc::Sender<io::Result<TcpStream>>),
    FreePort(mpsc::Sender<io::Result<u16>>),
}

/// A thread that lives in a private network namespace with only loopback, and starts
/// processes and opens connections there on request (a socket belongs to the namespace of
/// the thread that creates it; a child inherits its spawning thread's namespace).
pub struct Namespace {
    tx: Mutex<mpsc::Sender<NsRequest>>,
}

impl Namespace {
    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<io::Result<T>>) -> NsRequest) -> io::Result<T> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .lock()
            .map_err(|_| io::Error::other("namespace thread poisoned"))?
            .send(make(tx))
            .map_err(|_| io::Error::other("namespace thread gone"))?;
        rx.recv()
            .map_err(|_| io::Error::other("namespace thread gone"))?
    }
    pub fn spawn(&self, cmd: Command) -> io::Result<Child> {
        self.ask(|tx| NsRequest::Spawn(cmd, tx))
    }
    pub fn connect(&self, port: u16) -> io::Result<TcpStream> {
        self.ask(|tx| NsRequest::Connect(port, tx))
    }
    pub fn free_port(&self) -> io::Result<u16> {
        self.ask(NsRequest::FreePort)
    }
}

/// The process's private loopback-only namespace, if the kernel grants one.
pub fn isolated() -> Option<&'static Namespace> {
    static NS: OnceLock<Option<Namespace>> = OnceLock::new();
    NS.get_or_init(|| {
        if std::env::var_os("CHAT_LOCAL_HOST_NETWORK").is_some() {
            return None;
        }
        let (tx, rx) = mpsc::channel::<NsRequest>();
        let (init_tx, init_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || {
                // SAFETY: unshare affects only this thread's namespaces.
                let ok = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0
                    && Command::new("ip")
                        .args(["link", "set", "lo", "up"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success());
                let _ = init_tx.send(ok);
                if !ok {
                    return;
                }
                for req in rx {
                    match req {
                        NsRequest::Spawn(mut cmd, reply) => {
                            let _ = reply.send(spawn_with_parent_death_signal(&mut cmd));
                        }
                        NsRequest::Connect(port, reply) => {
                            let addr = SocketAddr::from(([127, 0, 0, 1], port));
                            let _ = reply.send(TcpStream::connect_timeout(
                                &addr,
                                Duration::from_millis(500),
                            ));
                        }
                        NsRequest::FreePort(reply) => {
                            let _ = reply.send(free_port_here());
                        }
                    }
                }
                // Never return: children die with the thread that spawned them.
                loop {
                    std::thread::park();
                }
            })
            .ok()?;
        if init_rx.recv().unwrap_or(false) {
            Some(Namespace { tx: Mutex::new(tx) })
        } else {
            eprintln!(
                "note: no private network namespace here; DynamoDB Local listens on all interfaces"
            );
            None
        }
    })
    .as_ref()
}

fn free_port_here() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Accepts on 127.0.0.1 of the host and pipes each connection into the namespace.
pub(crate) struct Forwarder {
    pub(crate) port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    pub(crate) fn start(port: u16, inner: u16, ns: &'static Namespace) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("forwarder".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    match ns.connect(inner) {
                        Ok(server) => pipe(client, server),
                        Err(_) => drop(client),
                    }
                }
            })?;
        Ok(Forwarder {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one_way = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        })
    };
    one_way(a, b2);
    one_way(b, a2);
}
