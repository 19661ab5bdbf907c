//! Runs function binaries the way Lambda does: each instance is a process that pulls
//! invocations from its own Lambda Runtime API endpoint (`AWS_LAMBDA_RUNTIME_API`). Instances
//! are kept warm and reused; a new one starts (a cold start) when all are busy. After every
//! invocation a `REPORT` line gives duration, init duration on a cold start, and peak memory.

use crate::sam::FunctionSpec;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use std::collections::{BTreeMap, HashMap};
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
}

/// Runs the functions of one template.
pub struct Invoker {
    pools: BTreeMap<String, Pool>,
    binaries: PathBuf,
    /// Variables every function gets on top of its template environment.
    extra_env: BTreeMap<String, String>,
    logs: Logs,
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
                };
                (id, pool)
            })
            .collect();
        Invoker {
            pools,
            binaries,
            extra_env,
            logs,
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        }
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
        let (tx, rx) = oneshot::channel();
        let deadline_ms = (std::time::SystemTime::now() + timeout)
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let job = Job {
            request_id: request_id.clone(),
            payload: payload.to_string().into_bytes(),
            deadline_ms,
            reply: tx,
        };
        instance
            .jobs
            .send(job)
            .await
            .map_err(|_| InvokeError::Crashed("runtime API closed".into()))?;
        let cold = instance.ready.take();
        let mut init = None;
        if let Some(ready) = cold {
            // Init ends when the process first asks for work (or fails before).
            tokio::select! {
                _ = ready => init = Some(instance.started.elapsed()),
                status = instance.child.wait() => {
                    return Err(InvokeError::Crashed(status.map(|s| s.to_string()).unwrap_or_default()));
                }
                _ = tokio::time::sleep(Duration::from_secs(10)) => {
                    return Err(InvokeError::Start("init took over 10 s".into()));
                }
            }
        }
        let started = Instant::now();
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
        let healthy = matches!(outcome, Ok(_) | Err(InvokeError::Function(_)));
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
        println!("{line}");
    }

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
                crate::sam::LOCAL_REGION,
                crate::sam::LOCAL_ACCOUNT,
                spec.logical_id
            ),
        });
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
            .with_state(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let mut cmd = Command::new(&binary);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(&spec.env)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
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
            .env("AWS_REGION", crate::sam::LOCAL_REGION)
            .env("AWS_DEFAULT_REGION", crate::sam::LOCAL_REGION)
            .env("_HANDLER", "bootstrap")
            .envs(&self.extra_env)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match self.logs {
            Logs::Print => cmd.stdout(Stdio::piped()).stderr(Stdio::piped()),
            Logs::Quiet => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        crate::process::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| InvokeError::Start(e.to_string()))?;
        if self.logs == Logs::Print {
            let prefix = format!("[{}]", spec.logical_id);
            if let Some(out) = child.stdout.take() {
                forward_lines(prefix.clone(), out);
            }
            if let Some(err) = child.stderr.take() {
                forward_lines(prefix, err);
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
}

fn forward_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(prefix: String, r: R) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{prefix} {line}");
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
