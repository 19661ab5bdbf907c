//! `s3s-fs` (0.14.1, installed by `infra/install.sh` into `.tools/bin`): a local S3 that
//! enforces SigV4 and POST policies, storing under a folder. Its credentials (random per run,
//! `crate::clients`) are on its command line, visible to every local user, so it listens inside
//! a private network namespace, like DynamoDB Local, reached through a forwarder on 127.0.0.1
//! that serves only the stack's own user; without one it refuses to start unless
//! `LOCAL_STACK_HOST_NETWORK=1` accepts 127.0.0.1 of the host.

use crate::process::{free_port, require_isolation, spawn_tied_to_process, Forwarder};
use crate::DevError;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Local {
    child: Child,
    port: u16,
    _forwarder: Option<Forwarder>,
}

fn binary() -> PathBuf {
    std::env::var_os("S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join(".tools/bin/s3s-fs"))
}

impl S3Local {
    /// Starts s3s-fs on a free loopback port with one folder per bucket under `root`.
    pub fn start(root: &Path, buckets: &[String]) -> Result<Self, DevError> {
        Self::start_with(root, buckets, None)
    }

    /// As [`S3Local::start`], on `port` of 127.0.0.1 if given (a restart after an outage).
    pub fn start_with(
        root: &Path,
        buckets: &[String],
        port: Option<u16>,
    ) -> Result<Self, DevError> {
        let bin = binary();
        if !bin.is_file() {
            return Err(DevError::S3(format!(
                "{} not found; run `bash infra/install.sh`",
                bin.display()
            )));
        }
        std::fs::create_dir_all(root)?;
        for b in buckets {
            std::fs::create_dir_all(root.join(b))?;
        }
        let net = require_isolation("s3s-fs")?;
        let outer_port = port;
        let port = match (net, outer_port) {
            (Some(ns), _) => ns.free_port()?,
            (None, Some(p)) => p,
            (None, None) => free_port()?,
        };
        let mut cmd = Command::new(bin);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            crate::clients::access_key(),
            "--secret-key",
            crate::clients::secret_key(),
        ])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut child = match net {
            Some(ns) => ns.spawn(cmd, port)?,
            None => spawn_tied_to_process(cmd)?,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let up = || match net {
            Some(ns) => ns.connect(port).is_ok(),
            None => TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !up() {
            if child.try_wait()?.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                return Err(DevError::S3("s3s-fs did not start".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let forwarder = match net {
            Some(ns) => Some(Forwarder::start(outer_port.unwrap_or(0), port, ns)?),
            None => None,
        };
        Ok(S3Local {
            child,
            port: forwarder.as_ref().map_or(port, |f| f.port),
            _forwarder: forwarder,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for S3Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
