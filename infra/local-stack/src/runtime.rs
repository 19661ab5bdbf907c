//! Runs function binaries the way Lambda does: each instance is a process that pulls
//! invocations from its own Lambda Runtime API endpoint (`AWS_LAMBDA_RUNTIME_API`). Instances
//! are kept warm and reused; a new one starts (a cold start) when all are busy. After every
//! invocation a `REPORT` line gives duration, init duration on a cold start, and peak memory.
//! Each instance is held to its function's `MemorySize` (see [`address_space_limit`]): one
//! that needs more fails, its invocation is an error, and the next invocation gets a new one.

use crate::app::FunctionSpec;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Most instances of one function at once (Lambda's concurrency limit, locally).
pub const MAX_INSTANCES: usize = 8;

/// Address space an instance may use beyond its `MemorySize`, per CPU of this machine on top
/// of [`ADDRESS_SPACE_ALLOWANCE_MB`].
pub const ADDRESS_SPACE_ALLOWANCE_PER_CPU_MB: u64 = 4;
/// Address space an instance may use beyond its `MemorySize`.
pub const ADDRESS_SPACE_ALLOWANCE_MB: u64 = 64;

/// The `RLIMIT_AS` of an instance of a function with `memory_mb` of `MemorySize`, in bytes:
/// `memory_mb` plus [`ADDRESS_SPACE_ALLOWANCE_MB`] plus
/// [`ADDRESS_SPACE_ALLOWANCE_PER_CPU_MB`] per CPU.
///
/// Lambda limits resident memory (a cgroup); the portable local means is `RLIMIT_AS`, which
/// counts address space reserved but never touched too. Measured with the debug binaries on
/// 2 CPUs (`VmPeak` against `VmRSS` of a function that served an invocation):
///
/// - glibc gives threads their own malloc arenas, each reserving 64 MB of address space (up to
///   8 per CPU): `chat-default` peaked at 240 MB of address space for 28 MB resident, so under
///   a bare 256 MB limit it started only by luck, and would not on a machine with more CPUs.
///   Instances therefore get `MALLOC_ARENA_MAX=1` (unless the template or the stack's extra
///   variables set it), which leaves one arena, growing with use: the same binary then peaks
///   at 44 MB for the same 28 MB resident. The allocator locks more under contention; the
///   memory a function can use is unchanged.
/// - What then remains beyond resident memory (16 MB there) is the binary's untouched pages
///   and thread stacks (2 MB reserved per Tokio worker, one worker per CPU): the allowance
///   covers it with room to spare.
///
/// So an instance fails a little above its `MemorySize` (by at most the allowance), never
/// below it, and a function that would run out of memory on Lambda fails here too, roughly
/// where it would.
pub fn address_space_limit(memory_mb: u32) -> u64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    (u64::from(memory_mb) + ADDRESS_SPACE_ALLOWANCE_MB + ADDRESS_SPACE_ALLOWANCE_PER_CPU_MB * cpus)
        << 20
}

/// Why an invocation produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    #[error("no function {0} in the template")]
    UnknownFunction(String),
    #[error("could not start the function: {0}")]
    Start(String),
    #[error("function error: {0}")]
    Function(String),
    #[error("Task timed out after {0:?}")]
    Timeout(Duration),
    #[error("the function process exited ({0})")]
    Crashed(String),
}

/// Where function output and REPORT lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs {
    /// Printed with a `[Function]` prefix.
    Print,
    /// Dropped (tests).
    Quiet,
    /// Kept in memory, for tests that read what the functions logged
    /// ([`Invoker::captured_logs`]).
    Capture,
}

type Reply = oneshot::Sender<Result<Vec<u8>, InvokeError>>;

struct Job {
    request_id: String,
    payload: Vec<u8>,
    deadline_ms: u64,
    reply: Reply,
}

#[derive(Default)]
struct RuntimeApiState {
    jobs: tokio::sync::Mutex<Option<mpsc::Receiver<Job>>>,
    pending: Mutex<HashMap<String, Reply>>,
    ready: Mutex<Option<oneshot::Sender<()>>>,
    function_arn: String,
}

struct Instance {
    child: Child,
    jobs: mpsc::Sender<Job>,
    server: tokio::task::JoinHandle<()>,
    /// Resolves at the first `next` call: the end of init.
    ready: Option<oneshot::Receiver<()>>,
    started: Instant,
}

impl Job {
    /// A job for `payload` with its deadline, and where its answer will come.
    fn new(
        request_id: &str,
        payload: &serde_json::Value,
        timeout: Duration,
    ) -> (Self, oneshot::Receiver<Result<Vec<u8>, InvokeError>>) {
        let (reply, rx) = oneshot::channel();
        let deadline_ms = (std::time::SystemTime::now() + timeout)
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let job = Job {
            request_id: request_id.to_owned(),
            payload: payload.to_string().into_bytes(),
            deadline_ms,
            reply,
        };
        (job, rx)
    }
}

impl Instance {
    /// On a cold instance, waits for the end of init (the process's first `next`) and
    /// returns how long it took; `None` on a warm one.
    async fn init(&mut self) -> Result<Option<Duration>, InvokeError> {
        let Some(ready) = self.ready.take() else {
            return Ok(None);
        };
        tokio::select! {
            _ = ready => Ok(Some(self.started.elapsed())),
            status = self.child.wait() => {
                Err(InvokeError::Crashed(status.map(|s| s.to_string()).unwrap_or_default()))
            }
            _ = tokio::time::sleep(Duration::from_secs(10)) => {
                Err(InvokeError::Start("init took over 10 s".into()))
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.server.abort();
        let _ = self.child.start_kill();
    }
}

struct Pool {
    spec: FunctionSpec,
    idle: Mutex<Vec<Instance>>,
    slots: Semaphore,
    /// Process ids of the instances running an invocation now (for fault tests).
    busy: Mutex<std::collections::BTreeSet<u32>>,
}

/// Runs the functions of one template.
pub struct Invoker {
    pools: BTreeMap<String, Pool>,
    binaries: PathBuf,
    /// Variables every function gets on top of its template environment.
    extra_env: BTreeMap<String, String>,
    logs: Logs,
    /// Lines of output and REPORT lines, with [`Logs::Capture`].
    captured: Arc<Mutex<Vec<String>>>,
    /// Invocations whose process crashed or timed out (not a function's own error answer).
    crashes: AtomicU64,
    next_id: AtomicU64,
    /// Set by [`Invoker::shutdown`]: no new invocations, no instance kept.
    closed: AtomicBool,
}

impl Invoker {
    /// `binaries`: the folder with the function binaries (`target/debug`). `extra_env` is
    /// applied after each function's own environment (local endpoints, overrides).
    pub fn new(
        functions: BTreeMap<String, FunctionSpec>,
        binaries: PathBuf,
        extra_env: BTreeMap<String, String>,
        logs: Logs,
    ) -> Self {
        let pools = functions
            .into_iter()
            .map(|(id, spec)| {
                let pool = Pool {
                    spec,
                    idle: Mutex::new(Vec::new()),
                    slots: Semaphore::new(MAX_INSTANCES),
                    busy: Mutex::default(),
                };
                (id, pool)
            })
            .collect();
        Invoker {
            pools,
            binaries,
            extra_env,
            logs,
            captured: Arc::default(),
            crashes: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        }
    }

    /// Invocations so far whose process crashed, was killed or timed out.
    pub fn crashes(&self) -> u64 {
        self.crashes.load(Ordering::SeqCst)
    }

    /// Kills (SIGKILL) one instance of `function` that is running an invocation now, as a
    /// fault test's "process killed mid-invocation". Whether there was one.
    pub fn kill_one_busy(&self, function: &str) -> bool {
        let Some(pool) = self.pools.get(function) else {
            return false;
        };
        let pid = pool.busy.lock().expect("busy lock").iter().next().copied();
        // SAFETY: kill has no memory effects; the pid is a child of this process.
        pid.is_some_and(|pid| unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0)
    }

    /// Every line the functions wrote so far (stdout and stderr, `[Function] line`) and the
    /// REPORT lines, with [`Logs::Capture`]; empty otherwise.
    pub fn captured_logs(&self) -> Vec<String> {
        self.captured.lock().expect("lock").clone()
    }

    /// Stops every idle instance and refuses further invocations; busy instances stop when
    /// their invocation ends.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for pool in self.pools.values() {
            pool.idle.lock().expect("pool lock").clear();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// A warm instance whose process is still alive, if any.
    fn take_warm(pool: &Pool) -> Option<Instance> {
        let mut idle = pool.idle.lock().expect("pool lock");
        while let Some(mut i) = idle.pop() {
            if matches!(i.child.try_wait(), Ok(None)) {
                return Some(i);
            }
        }
        None
    }

    /// Invokes `function` with `payload`; `label` (the route) goes into the REPORT line.
    pub async fn invoke(
        &self,
        function: &str,
        payload: &serde_json::Value,
        label: &str,
    ) -> Result<serde_json::Value, InvokeError> {
        let pool = self
            .pools
            .get(function)
            .ok_or_else(|| InvokeError::UnknownFunction(function.into()))?;
        let _slot = pool
            .slots
            .acquire()
            .await
            .map_err(|_| InvokeError::Start("pool closed".into()))?;
        if self.closed.load(Ordering::SeqCst) {
            return Err(InvokeError::Start("the local stack is stopping".into()));
        }
        let mut instance = match Self::take_warm(pool) {
            Some(i) => i,
            None => self.spawn(&pool.spec).await?,
        };
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n);
        let timeout = pool.spec.timeout;
        let (job, rx) = Job::new(&request_id, payload, timeout);
        instance
            .jobs
            .send(job)
            .await
            .map_err(|_| InvokeError::Crashed("runtime API closed".into()))?;
        let init = instance.init().await?;
        let started = Instant::now();
        let pid = instance.child.id();
        if let Some(pid) = pid {
            pool.busy.lock().expect("busy lock").insert(pid);
        }
        let outcome = tokio::select! {
            r = rx => r.unwrap_or_else(|_| Err(InvokeError::Crashed("runtime API dropped the invocation".into()))),
            status = instance.child.wait() => Err(InvokeError::Crashed(status.map(|s| s.to_string()).unwrap_or_default())),
            _ = tokio::time::sleep(timeout) => Err(InvokeError::Timeout(timeout)),
        };
        let duration = started.elapsed();
        let peak_mb = instance.child.id().and_then(peak_memory_mb);
        self.report(
            &pool.spec,
            label,
            &request_id,
            duration,
            init,
            peak_mb,
            &outcome,
        );
        if let Some(pid) = pid {
            pool.busy.lock().expect("busy lock").remove(&pid);
        }
        let healthy = matches!(outcome, Ok(_) | Err(InvokeError::Function(_)));
        if !healthy {
            self.crashes.fetch_add(1, Ordering::SeqCst);
        }
        if healthy && !self.closed.load(Ordering::SeqCst) {
            pool.idle.lock().expect("pool lock").push(instance);
        }
        let body = outcome?;
        serde_json::from_slice(&body)
            .map_err(|_| InvokeError::Function("the response is not JSON".into()))
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        spec: &FunctionSpec,
        label: &str,
        request_id: &str,
        duration: Duration,
        init: Option<Duration>,
        peak_mb: Option<u64>,
        outcome: &Result<Vec<u8>, InvokeError>,
    ) {
        if self.logs == Logs::Quiet {
            return;
        }
        let ms = duration.as_secs_f64() * 1000.0;
        let mut line = format!(
            "REPORT RequestId: {request_id} Function: {} Route: {label} Duration: {ms:.2} ms Billed Duration: {} ms Memory Size: {} MB Max Memory Used: {} MB",
            spec.logical_id,
            ms.ceil() as u64,
            spec.memory_mb,
            peak_mb.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
        );
        if let Some(init) = init {
            line.push_str(&format!(
                " Init Duration: {:.2} ms",
                init.as_secs_f64() * 1000.0
            ));
        }
        if let Err(e) = outcome {
            line.push_str(&format!(" Status: error ({e})"));
        }
        if self.logs == Logs::Capture {
            self.captured.lock().expect("lock").push(line);
        } else {
            println!("{line}");
        }
    }

    /// A new instance of `spec`: its own Runtime API endpoint, then its process.
    async fn spawn(&self, spec: &FunctionSpec) -> Result<Instance, InvokeError> {
        let binary = self.binaries.join(&spec.binary);
        if !binary.is_file() {
            return Err(InvokeError::Start(format!(
                "{} not found; build it with `cargo build --workspace --bins`",
                binary.display()
            )));
        }
        let (jobs_tx, jobs_rx) = mpsc::channel(1);
        let (ready_tx, ready_rx) = oneshot::channel();
        let state = Arc::new(RuntimeApiState {
            jobs: tokio::sync::Mutex::new(Some(jobs_rx)),
            pending: Mutex::default(),
            ready: Mutex::new(Some(ready_tx)),
            function_arn: format!(
                "arn:aws:lambda:{}:{}:function:{}",
                crate::resolve::LOCAL_REGION,
                crate::resolve::LOCAL_ACCOUNT,
                spec.logical_id
            ),
        });
        let (addr, server) = serve_runtime_api(state).await?;
        let mut cmd = self.command(&binary, spec, addr);
        let mut child = cmd.spawn().map_err(|e| InvokeError::Start(e.to_string()))?;
        if self.logs != Logs::Quiet {
            let prefix = format!("[{}]", spec.logical_id);
            let sink = (self.logs == Logs::Capture).then(|| self.captured.clone());
            if let Some(out) = child.stdout.take() {
                forward_lines(prefix.clone(), out, sink.clone());
            }
            if let Some(err) = child.stderr.take() {
                forward_lines(prefix, err, sink);
            }
        }
        Ok(Instance {
            child,
            jobs: jobs_tx,
            server,
            ready: Some(ready_rx),
            started: Instant::now(),
        })
    }

    /// The function's process as Lambda starts it: only its own environment and Lambda's
    /// variables (then the stack's), its memory limit, dying with the stack.
    fn command(&self, binary: &std::path::Path, spec: &FunctionSpec, api: SocketAddr) -> Command {
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            // One malloc arena: see `address_space_limit`.
            .env("MALLOC_ARENA_MAX", "1")
            .envs(&spec.env)
            .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &spec.logical_id)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                spec.memory_mb.to_string(),
            )
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", spec.logical_id),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_REGION", crate::resolve::LOCAL_REGION)
            .env("AWS_DEFAULT_REGION", crate::resolve::LOCAL_REGION)
            .env("_HANDLER", "bootstrap")
            .envs(&self.extra_env)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match self.logs {
            Logs::Print | Logs::Capture => cmd.stdout(Stdio::piped()).stderr(Stdio::piped()),
            Logs::Quiet => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        crate::process::die_with_parent(&mut cmd);
        crate::process::limit_address_space(&mut cmd, address_space_limit(spec.memory_mb));
        cmd
    }
}

/// One instance's Lambda Runtime API on a free loopback port, answering only the stack's own
/// user's processes (the events carry tokens).
async fn serve_runtime_api(
    state: Arc<RuntimeApiState>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), InvokeError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| InvokeError::Start(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| InvokeError::Start(e.to_string()))?;
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(state)
        .layer(axum::middleware::from_fn(crate::peer::same_user_only));
    Ok((addr, crate::peer::serve(listener, app)))
}

/// Prints each line of `r` with `prefix`, or keeps it in `sink`.
fn forward_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    prefix: String,
    r: R,
    sink: Option<Arc<Mutex<Vec<String>>>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match &sink {
                Some(sink) => sink.lock().expect("lock").push(format!("{prefix} {line}")),
                None => println!("{prefix} {line}"),
            }
        }
    });
}

/// Peak resident memory of a process (VmHWM), in MB.
fn peak_memory_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb.div_ceil(1024))
}

async fn next(State(s): State<Arc<RuntimeApiState>>) -> impl IntoResponse {
    if let Some(ready) = s.ready.lock().expect("lock").take() {
        let _ = ready.send(());
    }
    let job = {
        let mut guard = s.jobs.lock().await;
        match guard.as_mut() {
            Some(rx) => rx.recv().await,
            None => None,
        }
    };
    let Some(job) = job else {
        return (StatusCode::GONE, HeaderMap::new(), Vec::new());
    };
    s.pending
        .lock()
        .expect("lock")
        .insert(job.request_id.clone(), job.reply);
    let mut h = HeaderMap::new();
    let hv = |v: &str| v.parse().expect("header value");
    h.insert("lambda-runtime-aws-request-id", hv(&job.request_id));
    h.insert(
        "lambda-runtime-deadline-ms",
        hv(&job.deadline_ms.to_string()),
    );
    h.insert("lambda-runtime-invoked-function-arn", hv(&s.function_arn));
    h.insert(
        "lambda-runtime-trace-id",
        hv("Root=1-00000000-000000000000000000000000;Sampled=0"),
    );
    h.insert("content-type", hv("application/json"));
    (StatusCode::OK, h, job.payload)
}

/// Hands an invocation's outcome to the waiting invoker.
fn settle(s: &RuntimeApiState, id: &str, outcome: Result<Vec<u8>, InvokeError>) -> StatusCode {
    match s.pending.lock().expect("lock").remove(id) {
        Some(reply) => {
            let _ = reply.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn respond(
    State(s): State<Arc<RuntimeApiState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    settle(&s, &id, Ok(body.to_vec()))
}

async fn fail(
    State(s): State<Arc<RuntimeApiState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let message = String::from_utf8_lossy(&body).into_owned();
    settle(&s, &id, Err(InvokeError::Function(message)))
}

async fn init_error(body: Bytes) -> StatusCode {
    eprintln!("function init error: {}", String::from_utf8_lossy(&body));
    StatusCode::ACCEPTED
}

/// Fake function binaries for tests: Python scripts that speak the Runtime API.
#[cfg(test)]
pub(crate) mod fake {
    use std::path::Path;

    /// Writes an executable `name` into `dir` that, for every invocation, runs `handle`
    /// (Python statements with `event` bound, setting `result`) and responds with `result`.
    pub fn function(dir: &Path, name: &str, handle: &str) {
        use std::os::unix::fs::PermissionsExt;
        let handle: String = handle.lines().map(|l| format!("    {l}\n")).collect();
        let script = format!(
            r#"#!/usr/bin/env python3
import json, os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid = r.headers["lambda-runtime-aws-request-id"]
        event = json.load(r)
    result = None
{handle}
    body = json.dumps(result).encode()
    urllib.request.urlopen(urllib.request.Request(api + rid + "/response", data=body, method="POST")).read()
"#
        );
        let path = dir.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A fresh folder under the system's temporary folder, removed when dropped.
    pub struct TempDir(pub std::path::PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "devtools-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invoker(dir: &std::path::Path, memory_mb: u32) -> Invoker {
        let spec = FunctionSpec {
            logical_id: "Hungry".into(),
            binary: "hungry".into(),
            timeout: Duration::from_secs(10),
            memory_mb,
            env: BTreeMap::new(),
        };
        Invoker::new(
            BTreeMap::from([("Hungry".to_string(), spec)]),
            dir.to_owned(),
            BTreeMap::new(),
            Logs::Quiet,
        )
    }

    #[tokio::test]
    async fn a_function_that_exceeds_its_memory_fails_and_the_next_invocation_works() {
        // GIVEN a function of 64 MB that allocates what each event asks for
        let dir = fake::TempDir::new("memory");
        fake::function(
            &dir.0,
            "hungry",
            "import resource\n\
             data = bytearray(event['mb'] << 20)\n\
             result = {'limit': resource.getrlimit(resource.RLIMIT_AS)[0], 'arenas': os.environ.get('MALLOC_ARENA_MAX')}",
        );
        let inv = invoker(&dir.0, 64);
        let invoke = |mb: u64| {
            let inv = &inv;
            async move {
                tokio::time::timeout(
                    Duration::from_secs(20),
                    inv.invoke("Hungry", &json!({ "mb": mb }), "test"),
                )
                .await
                .expect("the invocation ended in time")
            }
        };
        // WHEN it allocates 16 MB
        let ok = invoke(16).await.unwrap();
        // THEN it works, under the limit the runtime computed, with one malloc arena
        assert_eq!(ok["limit"], address_space_limit(64));
        assert_eq!(ok["arenas"], "1");
        // WHEN it allocates more than its MemorySize plus the whole allowance
        let over = (address_space_limit(64) >> 20) + 16;
        let failed = invoke(over).await;
        // THEN the invocation fails as the instance dies
        assert!(matches!(failed, Err(InvokeError::Crashed(_))), "{failed:?}");
        // AND the function keeps serving, from a new instance
        assert!(invoke(16).await.is_ok());
        inv.shutdown();
    }

    #[test]
    fn the_limit_is_memory_plus_the_allowance() {
        // GIVEN this machine's CPUs
        let cpus = std::thread::available_parallelism().unwrap().get() as u64;
        // THEN a 256 MB function gets 256 MB plus the documented allowance
        assert_eq!(
            address_space_limit(256),
            (256 + ADDRESS_SPACE_ALLOWANCE_MB + ADDRESS_SPACE_ALLOWANCE_PER_CPU_MB * cpus) << 20
        );
    }
}
