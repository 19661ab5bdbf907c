//! Starting child processes so that none outlives the local stack, and the private
//! loopback-only network namespace that servers without a bind option (DynamoDB Local) run in,
//! as root or as any other user.
//!
//! Every child is tied to this process with `PR_SET_PDEATHSIG`, so the kernel kills it even
//! when this process panics or is killed. A socket belongs to the network namespace of the
//! thread that creates it and a child inherits its spawning thread's, so the namespace is one
//! thread that spawns and connects on request; [`Forwarder`] brings its ports to the host's
//! 127.0.0.1.

use crate::DevError;
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
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

/// A private network namespace with only loopback, for servers that cannot be told to bind
/// 127.0.0.1. Two ways in, depending on what the kernel grants:
/// - as root: one thread of this process enters a new namespace (`unshare(CLONE_NEWNET)`)
///   and starts processes and opens connections there on request (a socket belongs to the
///   namespace of the thread that creates it; a child inherits its spawning thread's);
/// - as any other user: a thread cannot do that (a multithreaded process may not enter a new
///   user namespace, and a network namespace needs one without root), so each server starts
///   in a namespace of its own through `unshare --user --map-root-user --net`, under
///   `netns_bridge.py`, which bridges a Unix socket in a private directory to the server's
///   port inside (a Unix socket is a file, so it crosses the boundary).
pub struct Namespace {
    kind: Kind,
}

enum Kind {
    Thread(Mutex<mpsc::Sender<NsRequest>>),
    Bridged {
        /// Mode 0700, this process's: one `<port>.sock` per server.
        dir: PathBuf,
        next_port: AtomicU16,
    },
}

/// A connection into the namespace.
pub enum NsStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl NsStream {
    fn try_clone(&self) -> io::Result<NsStream> {
        Ok(match self {
            NsStream::Tcp(s) => NsStream::Tcp(s.try_clone()?),
            NsStream::Unix(s) => NsStream::Unix(s.try_clone()?),
        })
    }
    fn shutdown_write(&self) {
        let _ = match self {
            NsStream::Tcp(s) => s.shutdown(Shutdown::Write),
            NsStream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl io::Read for NsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            NsStream::Tcp(s) => s.read(buf),
            NsStream::Unix(s) => s.read(buf),
        }
    }
}

impl io::Write for NsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            NsStream::Tcp(s) => s.write(buf),
            NsStream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const BRIDGE: &str = include_str!("netns_bridge.py");

impl Namespace {
    fn ask<T>(
        tx: &Mutex<mpsc::Sender<NsRequest>>,
        make: impl FnOnce(mpsc::Sender<io::Result<T>>) -> NsRequest,
    ) -> io::Result<T> {
        let (reply, rx) = mpsc::channel();
        tx.lock()
            .map_err(|_| io::Error::other("namespace thread poisoned"))?
            .send(make(reply))
            .map_err(|_| io::Error::other("namespace thread gone"))?;
        rx.recv()
            .map_err(|_| io::Error::other("namespace thread gone"))?
    }

    /// Starts `cmd`, a server that will listen on `port` (from [`Namespace::free_port`])
    /// inside the namespace; it dies with this process.
    pub fn spawn(&self, cmd: Command, port: u16) -> io::Result<Child> {
        match &self.kind {
            Kind::Thread(tx) => Self::ask(tx, |r| NsRequest::Spawn(cmd, r)),
            Kind::Bridged { dir, .. } => {
                let mut outer = Command::new("unshare");
                outer
                    .args(["--user", "--map-root-user", "--net", "--", "python3", "-c"])
                    .arg(BRIDGE)
                    .arg(dir.join(format!("{port}.sock")))
                    .arg(port.to_string())
                    .arg("--")
                    .arg(cmd.get_program())
                    .args(cmd.get_args());
                for (k, v) in cmd.get_envs() {
                    match v {
                        Some(v) => outer.env(k, v),
                        None => outer.env_remove(k),
                    };
                }
                if let Some(d) = cmd.get_current_dir() {
                    outer.current_dir(d);
                }
                outer
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                spawn_tied_to_process(outer)
            }
        }
    }

    /// A connection to `port` inside; fails until the server there answers.
    pub fn connect(&self, port: u16) -> io::Result<NsStream> {
        match &self.kind {
            Kind::Thread(tx) => Self::ask(tx, |r| NsRequest::Connect(port, r)).map(NsStream::Tcp),
            Kind::Bridged { dir, .. } => {
                UnixStream::connect(dir.join(format!("{port}.sock"))).map(NsStream::Unix)
            }
        }
    }

    /// A port to listen on inside (each bridged server has a namespace of its own, so any
    /// port is free there; they differ only to name the sockets).
    pub fn free_port(&self) -> io::Result<u16> {
        match &self.kind {
            Kind::Thread(tx) => Self::ask(tx, NsRequest::FreePort),
            Kind::Bridged { next_port, .. } => Ok(next_port.fetch_add(1, Ordering::SeqCst)),
        }
    }

    /// Whether servers run in namespaces of their own under `unshare` (not root).
    pub fn is_bridged(&self) -> bool {
        matches!(self.kind, Kind::Bridged { .. })
    }
}

/// The process's private loopback-only namespace, if the kernel grants one (see
/// [`Namespace`]). `LOCAL_STACK_NO_NAMESPACE=1` makes none available (to show the refusal of
/// [`require_isolation`] as root).
pub fn isolated() -> Option<&'static Namespace> {
    static NS: OnceLock<Option<Namespace>> = OnceLock::new();
    NS.get_or_init(|| {
        if std::env::var_os("LOCAL_STACK_NO_NAMESPACE").is_some()
            || std::env::var_os("LOCAL_STACK_HOST_NETWORK").is_some()
        {
            return None;
        }
        thread_namespace().or_else(bridged_namespace)
    })
    .as_ref()
}

/// Where a server that cannot be told to stay on loopback (DynamoDB Local listens on every
/// interface; s3s-fs's credentials are on its command line) runs: the private namespace, or
/// the host's network only when `LOCAL_STACK_HOST_NETWORK=1` says so. Without a namespace and
/// without that, it refuses: running open would be the silent fallback another local user
/// could force.
pub fn require_isolation(what: &str) -> Result<Option<&'static Namespace>, io::Error> {
    if let Some(ns) = isolated() {
        return Ok(Some(ns));
    }
    if std::env::var_os("LOCAL_STACK_HOST_NETWORK").is_some() {
        return Ok(None);
    }
    Err(io::Error::other(format!(
        "{what} would run without isolation: no private network namespace can be made here \
         (neither root nor unprivileged user namespaces with unshare and python3; Ubuntu 23.10 \
         and later restrict these through AppArmor), so it would listen where other users and \
         machines can reach it. Set LOCAL_STACK_HOST_NETWORK=1 to accept that."
    )))
}

/// A fresh private directory (mode 0700, a random name) under the temporary folder: what the
/// stack keeps there (data, sockets) is neither readable nor pre-creatable by another user.
pub fn private_dir(prefix: &str) -> io::Result<PathBuf> {
    let tmp = std::env::temp_dir();
    for _ in 0..8 {
        let dir = tmp.join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            ulid::Ulid::new()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no fresh private directory could be made"))
}

fn thread_namespace() -> Option<Namespace> {
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
    init_rx.recv().unwrap_or(false).then(|| Namespace {
        kind: Kind::Thread(Mutex::new(tx)),
    })
}

fn bridged_namespace() -> Option<Namespace> {
    let works = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--net",
            "--",
            "python3",
            "-c",
            "",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        return None;
    }
    let tmp = std::env::temp_dir();
    // Directories of stacks that are gone (their sockets outlive a SIGKILL); only this user's
    // can be removed.
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix("local-stack-netns-"))
                .and_then(|rest| rest.split('-').next());
            if pid.is_some_and(|p| !Path::new("/proc").join(p).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = private_dir("local-stack-netns").ok()?;
    Some(Namespace {
        kind: Kind::Bridged {
            dir,
            next_port: AtomicU16::new(20000),
        },
    })
}

fn free_port_here() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Accepts on 127.0.0.1 of the host and pipes each connection into the namespace. Dropping
/// it stops accepting and cuts every connection it is piping, so that nothing the server
/// answers afterwards reaches a client (an outage begins at once for everyone).
pub(crate) struct Forwarder {
    pub(crate) port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    live: Arc<Live>,
}

/// The client side of each connection being piped, to cut them all.
#[derive(Default)]
struct Live {
    next: AtomicU64,
    streams: Mutex<HashMap<u64, TcpStream>>,
}

impl Live {
    fn add(&self, s: &TcpStream) -> Option<u64> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let clone = s.try_clone().ok()?;
        self.streams.lock().ok()?.insert(id, clone);
        Some(id)
    }
    fn remove(&self, id: u64) {
        if let Ok(mut m) = self.streams.lock() {
            m.remove(&id);
        }
    }
    fn cut_all(&self) {
        if let Ok(m) = self.streams.lock() {
            for s in m.values() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Forwarder {
    pub(crate) fn start(port: u16, inner: u16, ns: &'static Namespace) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let live = Arc::new(Live::default());
        let tracked = live.clone();
        let thread = std::thread::Builder::new()
            .name("forwarder".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    // Only the stack's user's processes reach into the namespace.
                    let allowed = match (client.local_addr(), client.peer_addr()) {
                        (Ok(l), Ok(p)) => crate::peer::is_same_user(l, p),
                        _ => false,
                    };
                    if !allowed {
                        continue;
                    }
                    // Tracked from here (this thread), so a drop, which joins it first, cuts
                    // every connection it accepted.
                    let Some(id) = tracked.add(&client) else {
                        continue;
                    };
                    let tracked = tracked.clone();
                    // The request head is read here (on its own thread: a slow client holds
                    // up nobody) and let through only when addressed to the loopback.
                    std::thread::spawn(move || {
                        if let Some(head) = loopback_request_head(&client) {
                            if let Ok(mut server) = ns.connect(inner) {
                                if io::Write::write_all(&mut server, &head).is_ok() {
                                    pipe(client, server);
                                }
                            }
                        }
                        tracked.remove(id);
                    });
                }
            })?;
        Ok(Forwarder {
            port,
            stop,
            thread: Some(thread),
            live,
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
        self.live.cut_all();
    }
}

/// The first request's head (and whatever followed it in the same reads) off `client`, if it is
/// HTTP addressed to the loopback (`Host`), within 5 s and 16 KB; `None` otherwise (the
/// connection is then dropped). DynamoDB Local and s3s-fs take only HTTP, and a page whose
/// domain was rebound to 127.0.0.1 sends its own name.
fn loopback_request_head(mut client: &TcpStream) -> Option<Vec<u8>> {
    client.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return None;
        }
        let n = io::Read::read(&mut client, &mut buf).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    client.set_read_timeout(None).ok()?;
    let text = String::from_utf8_lossy(&head);
    let host = text.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("host")
            .then(|| value.trim().to_owned())
    })?;
    crate::peer::is_loopback_host(&host).then_some(head)
}

/// Copies both ways until both are done (the other way on a thread of its own).
fn pipe(a: TcpStream, b: NsStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let mut a = NsStream::Tcp(a);
    let mut a2 = NsStream::Tcp(a2);
    let mut b = b;
    let mut b2 = b2;
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut a, &mut b2);
        b2.shutdown_write();
    });
    let _ = io::copy(&mut b, &mut a2);
    a2.shutdown_write();
    let _ = up.join();
}
