//! The whole application on loopback: DynamoDB Local with the template's tables, s3s-fs with
//! the template's buckets behind the S3 front (CORS, event notifications to the functions), and
//! the local API Gateway (the WebSocket API and, when the template has one, the HTTP API)
//! running the function binaries, the functions' schedules and their DynamoDB stream event
//! sources.

use crate::apigw::{self, Gateway};
use crate::app::{self, SamApp, Supplied};
use crate::clients;
use crate::dynamodb_local::DynamoDbLocal;
use crate::httpapi::HttpApi;
use crate::runtime::{InvokeError, Invoker, Logs};
use crate::s3_front::{Deliveries, S3Front};
use crate::s3_local::S3Local;
use crate::schedule::{ScheduleRun, Scheduler};
use crate::streams::{FailureRecord, StreamBatch, StreamPollers};
use crate::tables::create_tables;
use crate::template::Template;
use crate::DevError;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// How to start a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Gateway port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The HTTP API's port on 127.0.0.1 (when the template has one); 0 picks a free one.
    pub http_port: u16,
    /// Folder with the function binaries.
    pub functions_dir: PathBuf,
    pub gateway: apigw::Options,
    pub logs: Logs,
    /// Start s3s-fs (needs `.tools/bin/s3s-fs`) and the S3 front before it.
    pub with_s3: bool,
    /// Template parameter overrides (`sam local --parameter-overrides`), checked against the
    /// parameters' constraints.
    pub parameters: HashMap<String, String>,
    /// Function environment variables the stack supplies instead of the template's value,
    /// which names a service the stack does not emulate (a Secrets Manager secret's ARN): the
    /// resolver leaves them alone. The one explicit list of what is not read from the
    /// template (README.md, "What the stack supplies").
    pub supplied: Supplied,
    /// Extra variables for every function (after the template's).
    pub env: BTreeMap<String, String>,
    /// Replaces every schedule's period (tests); `None` keeps the template's `rate(…)`.
    pub schedule_every: Option<std::time::Duration>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            port: 0,
            http_port: 0,
            functions_dir: std::env::var_os("LOCAL_STACK_FUNCTIONS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| crate::project_root().join("target/debug")),
            gateway: apigw::Options::default(),
            logs: Logs::Print,
            with_s3: true,
            parameters: HashMap::new(),
            supplied: Supplied::new(),
            env: BTreeMap::new(),
            schedule_every: None,
        }
    }
}

/// A running local stack. Dropping it stops every process it started.
pub struct Stack {
    pub app: SamApp,
    /// Each table's logical id → its name in DynamoDB Local.
    pub tables: BTreeMap<String, String>,
    /// `ws://127.0.0.1:<port>/<stage>`
    pub ws_url: String,
    /// `http://127.0.0.1:<port>/<stage>` (the @connections endpoint the functions use)
    pub management_url: String,
    /// The HTTP API's base URL, `http://127.0.0.1:<port>[/<stage>]`, when the template has one.
    pub http_url: Option<String>,
    http_server: Option<tokio::task::JoinHandle<()>>,
    scheduler: Scheduler,
    streams: StreamPollers,
    pub gateway: Arc<Gateway>,
    invoker: Arc<Invoker>,
    /// Behind a lock so that a fault test can stop and restart it while clients use the stack.
    dynamodb: std::sync::Mutex<Option<DynamoDbLocal>>,
    dynamodb_port: u16,
    /// Behind a lock, like DynamoDB Local: an outage test stops and restarts it.
    s3: std::sync::Mutex<Option<S3Local>>,
    s3_port: Option<u16>,
    buckets: Vec<String>,
    s3_front: Option<S3Front>,
    server: tokio::task::JoinHandle<()>,
    data_dir: PathBuf,
}

impl Stack {
    /// Reads the template, starts DynamoDB Local (with its tables) and the local S3, then the
    /// gateway and the functions' runtime.
    pub async fn start(opts: StackOptions) -> Result<Self, DevError> {
        let mut app = app::read(Template::project()?, &opts.parameters, &opts.supplied)?;
        let data_dir = data_dir()?;
        let dynamodb = DynamoDbLocal::start_with(None, Some(&data_dir.join("dynamodb")))?;
        let client = clients::dynamodb(&dynamodb.endpoint());
        let tables = create_tables(&client, &app.tables, "").await?;
        let buckets: Vec<String> = app.buckets.iter().map(|b| b.name.clone()).collect();
        let (s3, front_listener) = match opts.with_s3 {
            true => (
                Some(S3Local::start(&data_dir.join("s3"), &buckets)?),
                Some(S3Front::bind().await?),
            ),
            false => (None, None),
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
            .await
            .map_err(|e| {
                DevError::Gateway(format!("cannot listen on 127.0.0.1:{}: {e}", opts.port))
            })?;
        let addr = listener.local_addr()?;
        let http = format!("http://{addr}");
        point_at_gateway(&mut app, &http);
        let s3_endpoint = front_listener
            .as_ref()
            .map(|l| l.local_addr().map(|a| format!("http://{a}")))
            .transpose()?;
        let env = function_env(&opts, &dynamodb, s3_endpoint.as_deref());
        let invoker = Arc::new(Invoker::new(
            app.functions.clone(),
            opts.functions_dir.clone(),
            env,
            opts.logs,
        ));
        let s3_front = match (&s3, front_listener) {
            (Some(s3), Some(listener)) => Some(S3Front::start_on(
                listener,
                s3.endpoint(),
                app.buckets.clone(),
                invoker.clone(),
            )?),
            _ => None,
        };
        let gateway = Gateway::new(
            app.api.clone(),
            invoker.clone(),
            opts.gateway.clone(),
            addr.to_string(),
        );
        let (http_url, http_server) = match &app.http_api {
            Some(spec) => {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.http_port))
                    .await
                    .map_err(|e| {
                        DevError::Gateway(format!(
                            "cannot listen on 127.0.0.1:{}: {e}",
                            opts.http_port
                        ))
                    })?;
                let at = listener.local_addr()?;
                let api = HttpApi::new(spec.clone(), invoker.clone(), at.to_string());
                let url = match &spec.stage {
                    Some(stage) => format!("http://{at}/{stage}"),
                    None => format!("http://{at}"),
                };
                (Some(url), Some(api.serve(listener)))
            }
            None => (None, None),
        };
        let scheduler =
            Scheduler::start(app.schedules.clone(), invoker.clone(), opts.schedule_every);
        let streams =
            StreamPollers::start(&app.streams, &tables, &dynamodb.endpoint(), invoker.clone());
        let stage = app.api.stage.clone();
        Ok(Stack {
            scheduler,
            streams,
            http_url,
            http_server,
            ws_url: format!("ws://{addr}/{stage}"),
            management_url: format!("{http}/{stage}"),
            server: gateway.serve(listener),
            app,
            tables,
            gateway,
            invoker,
            dynamodb_port: dynamodb.port(),
            dynamodb: std::sync::Mutex::new(Some(dynamodb)),
            s3_port: s3.as_ref().map(S3Local::port),
            s3: std::sync::Mutex::new(s3),
            buckets,
            s3_front,
            data_dir,
        })
    }

    /// The local Lambda runtime (fault tests: crashes, killing a busy instance).
    pub fn invoker(&self) -> &Invoker {
        &self.invoker
    }

    /// Every run of the functions' schedules so far.
    pub fn schedule_runs(&self) -> Vec<ScheduleRun> {
        self.scheduler.runs()
    }

    /// Runs `function`'s schedule now, with the event it would send.
    pub async fn run_schedule(&self, function: &str) -> Result<serde_json::Value, InvokeError> {
        self.scheduler.run_now(function).await
    }

    /// Every invocation of a function by a stream event source so far.
    pub fn stream_batches(&self) -> Vec<StreamBatch> {
        self.streams.batches()
    }

    /// Every invocation record an on-failure destination of a stream event source received.
    pub fn stream_failures(&self) -> Vec<FailureRecord> {
        self.streams.failures()
    }

    /// Pauses or resumes `function`'s stream event sources (records wait in the stream).
    pub fn set_stream_enabled(&self, function: &str, on: bool) -> bool {
        self.streams.set_enabled(function, on)
    }

    /// What the functions logged, with `logs: Logs::Capture` (empty otherwise).
    pub fn function_logs(&self) -> Vec<String> {
        self.invoker.captured_logs()
    }

    pub fn dynamodb_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.dynamodb_port)
    }

    /// The S3 endpoint of the functions (`AWS_ENDPOINT_URL_S3`) and clients: the S3 front,
    /// path-style. `None` without `with_s3`.
    pub fn s3_endpoint(&self) -> Option<String> {
        self.s3_front.as_ref().map(S3Front::endpoint)
    }

    /// Every S3 event notification delivered to a function so far (with its outcome); wait
    /// for one with [`Deliveries::wait_for`]. `None` without `with_s3`.
    pub fn s3_deliveries(&self) -> Option<&Deliveries> {
        self.s3_front.as_ref().map(S3Front::deliveries)
    }

    /// Stops DynamoDB Local (an outage) gracefully: every write it acknowledged stays on disk
    /// for [`Stack::restart_dynamodb`] (see [`DynamoDbLocal::stop`]).
    pub fn stop_dynamodb(&self) {
        if let Some(mut d) = self.dynamodb.lock().expect("dynamodb lock").take() {
            d.stop();
        }
    }

    /// Stops the local S3 (an outage; its front answers 502 meanwhile). Its data stays.
    pub fn stop_s3(&self) {
        *self.s3.lock().expect("s3 lock") = None;
    }

    /// Starts the local S3 again on the same port with the same data (no-op without S3).
    pub fn restart_s3(&self) -> Result<(), DevError> {
        let Some(port) = self.s3_port else {
            return Ok(());
        };
        let mut slot = self.s3.lock().expect("s3 lock");
        *slot = None;
        *slot = Some(S3Local::start_with(
            &self.data_dir.join("s3"),
            &self.buckets,
            Some(port),
        )?);
        Ok(())
    }

    /// Starts DynamoDB Local again on the same port with the same data.
    pub fn restart_dynamodb(&self) -> Result<(), DevError> {
        let mut slot = self.dynamodb.lock().expect("dynamodb lock");
        if let Some(mut d) = slot.take() {
            d.stop();
        }
        *slot = Some(DynamoDbLocal::start_with(
            Some(self.dynamodb_port),
            Some(&self.data_dir.join("dynamodb")),
        )?);
        Ok(())
    }
}

/// A fresh private folder (0700, a random name) for this stack's data (DynamoDB Local's
/// files, the buckets).
fn data_dir() -> Result<PathBuf, DevError> {
    let dir = crate::process::private_dir("local-stack")?;
    std::fs::create_dir_all(dir.join("dynamodb"))?;
    Ok(dir)
}

/// The template points functions at `https://{api}.execute-api.{region}.amazonaws.com`;
/// locally that is the gateway at `http`.
fn point_at_gateway(app: &mut SamApp, http: &str) {
    let aws_base = format!(
        "https://{}.execute-api.{}.amazonaws.com",
        crate::resolve::LOCAL_API_ID,
        crate::resolve::LOCAL_REGION
    );
    for f in app.functions.values_mut() {
        for v in f.env.values_mut() {
            if v.contains(&aws_base) {
                *v = v.replace(&aws_base, http);
            }
        }
    }
}

/// What every function gets besides the template's variables: the local endpoints and
/// credentials, then the options' own.
fn function_env(
    opts: &StackOptions,
    dynamodb: &DynamoDbLocal,
    s3_endpoint: Option<&str>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("AWS_ENDPOINT_URL_DYNAMODB".to_string(), dynamodb.endpoint()),
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            clients::access_key().into(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            clients::secret_key().into(),
        ),
    ]);
    if let Some(endpoint) = s3_endpoint {
        // The front, not s3s-fs: URLs the functions presign reach browsers, which need
        // CORS, and uploads through them must emit events.
        env.insert("AWS_ENDPOINT_URL_S3".into(), endpoint.to_owned());
        env.insert("S3_FORCE_PATH_STYLE".into(), "true".into());
    }
    env.extend(opts.env.clone());
    env
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.scheduler.stop();
        self.streams.stop();
        self.server.abort();
        if let Some(h) = &self.http_server {
            h.abort();
        }
        self.gateway.shutdown();
        if let Ok(mut d) = self.dynamodb.lock() {
            *d = None;
        }
        self.s3_front = None;
        if let Ok(mut s3) = self.s3.lock() {
            *s3 = None;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake;
    use std::time::Duration;

    #[tokio::test]
    async fn an_image_put_through_the_stacks_s3_endpoint_reaches_the_thumbnail_function() {
        // GIVEN the stack, with a stand-in chat-thumbnail that writes down what it was given
        let dir = fake::TempDir::new("stack-s3");
        fake::function(
            &dir.0,
            "chat-thumbnail",
            "seen = {k: os.environ.get(k) for k in ['AWS_ENDPOINT_URL_S3', 'S3_FORCE_PATH_STYLE', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE']}\n\
             seen['key'] = event['Records'][0]['s3']['object']['key']\n\
             open(os.path.join(os.environ['SEEN_DIR'], 'seen.json'), 'w').write(json.dumps(seen))",
        );
        let stack = Stack::start(StackOptions {
            functions_dir: dir.0.clone(),
            logs: Logs::Quiet,
            supplied: Supplied::from([
                ("JWT_SECRET_ARN".to_string(), String::new()),
                ("MEDIA_KEY_SECRET_ARN".to_string(), String::new()),
                ("WECHAT_APPS_SECRET_ARN".to_string(), String::new()),
            ]),
            env: BTreeMap::from([("SEEN_DIR".to_string(), dir.0.display().to_string())]),
            ..Default::default()
        })
        .await
        .unwrap();
        let endpoint = stack.s3_endpoint().expect("the stack has an S3 endpoint");
        let bucket = stack.app.functions["DefaultFunction"].env["MEDIA_BUCKET"].clone();
        let s3 = clients::s3(&endpoint);
        // WHEN a sent image and an upload are put into the media bucket
        for key in ["m/i/first photo.jpg", "u/i/first photo.jpg"] {
            s3.put_object()
                .bucket(&bucket)
                .key(key)
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b"jpeg"))
                .send()
                .await
                .unwrap();
        }
        // THEN the thumbnail function was invoked with the image's event and returned
        let d = stack
            .s3_deliveries()
            .unwrap()
            .wait_for(Duration::from_secs(20), |d| d.key == "m/i/first photo.jpg")
            .await
            .expect("the upload reached the thumbnail function");
        assert_eq!(
            (d.function.as_str(), d.outcome.clone()),
            ("ThumbnailFunction", Ok(()))
        );
        // AND it was pointed at the S3 front, path-style, with its own memory size
        let seen: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.0.join("seen.json")).unwrap())
                .unwrap();
        assert_eq!(seen["AWS_ENDPOINT_URL_S3"], endpoint.as_str());
        assert_eq!(seen["S3_FORCE_PATH_STYLE"], "true");
        assert_eq!(seen["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "1024");
        assert_eq!(seen["key"], "m/i/first+photo.jpg");
        // AND the upload under u/ was not delivered (the template subscribes m/i/)
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(stack.s3_deliveries().unwrap().len(), 1);
    }
}
