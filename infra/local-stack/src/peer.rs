//! Who is on the other end of a loopback connection, so that the local stack's inner
//! endpoints (each function's Runtime API, the @connections management API, the S3 front and
//! the forwarders into the private namespace) answer only processes of the user who started
//! the stack. On AWS these are private to the service or IAM-signed; on a shared machine a
//! loopback port is open to every local user, and the Runtime API hands out events with
//! tokens in them.
//!
//! The kernel lists every TCP socket of this network namespace with its owner's uid in
//! `/proc/net/tcp`; the client's end of a connection we accepted is the entry whose local
//! address is our peer and whose remote address is our local one. (The `procfs` crate parses
//! the same file; for one lookup of one column its dependency tree is not worth it.)

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;

/// The connection info of the local stack's servers (`into_make_service_with_connect_info::
/// <Peer>()`): the client's address, and whether it runs as this process's user. The owner of
/// a connection cannot change, so that is looked up once per connection, at its first request
/// that asks (the public WebSocket endpoint never asks), not on every request.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    local: Option<SocketAddr>,
    same_user: Arc<OnceLock<bool>>,
}

impl Peer {
    /// Whether the client runs as this process's effective user (looked up once).
    pub fn is_same_user(&self) -> bool {
        *self
            .same_user
            .get_or_init(|| self.local.is_some_and(|l| is_same_user(l, self.addr)))
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            local: stream.io().local_addr().ok(),
            same_user: Arc::default(),
        }
    }
}

/// The uid owning the client end of the loopback connection `peer` → `local`, if the kernel
/// lists it (IPv4 only: everything here binds 127.0.0.1).
pub fn uid_of_peer(local: SocketAddr, peer: SocketAddr) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (l, r, uid) = (f.get(1)?, f.get(2)?, f.get(7)?);
        (parse_addr(l)? == peer && parse_addr(r)? == local).then(|| uid.parse().ok())?
    })
}

/// Whether the process at the other end runs as this process's effective user.
pub fn is_same_user(local: SocketAddr, peer: SocketAddr) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    uid_of_peer(local, peer) == Some(me)
}

/// `0100007F:1F90` → 127.0.0.1:8080: the address as the kernel stores it (network order)
/// printed as a native-endian u32, then the port in host order.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    if ip.len() != 8 {
        return None;
    }
    let raw = u32::from_str_radix(ip, 16).ok()?;
    let ip = Ipv4Addr::from(raw.to_ne_bytes());
    Some(SocketAddr::new(
        IpAddr::V4(ip),
        u16::from_str_radix(port, 16).ok()?,
    ))
}

/// Serves `app` on `listener` with each connection's [`Peer`] known (for
/// [`same_user_only`]) and only requests addressed to the loopback ([`loopback_host_only`]),
/// in a task of its own until it is aborted.
pub fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> tokio::task::JoinHandle<()> {
    let app = app.layer(axum::middleware::from_fn(loopback_host_only));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>()).await;
    })
}

/// Whether a `Host` header (or authority) names the loopback: `127.0.0.1`, `localhost` or
/// `[::1]`, with any port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    matches!(
        name.to_ascii_lowercase().as_str(),
        "127.0.0.1" | "localhost" | "::1"
    )
}

/// Axum middleware: 421 for a request addressed to any other name. A page in the developer's
/// own browser whose domain an attacker rebound to 127.0.0.1 (DNS rebinding) passes the
/// same-user check (it is the user's browser) but sends its own domain as `Host`.
pub async fn loopback_host_only(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if host.is_some_and(is_loopback_host) {
        next.run(req).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "this local endpoint answers only requests addressed to 127.0.0.1 or localhost\n",
        )
            .into_response()
    }
}

/// Axum middleware (`from_fn(same_user_only)`, on a service made with
/// `into_make_service_with_connect_info::<Peer>()`): 403 for another user.
pub async fn same_user_only(
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request,
    next: Next,
) -> Response {
    if peer.is_same_user() {
        next.run(req).await
    } else {
        (
            StatusCode::FORBIDDEN,
            "this local endpoint answers only the user who started the stack\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for host in [
            "127.0.0.1:3001",
            "localhost:80",
            "LOCALHOST",
            "[::1]:9000",
            "127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "attacker.example:3001",
            "127.0.0.1.nip.io:80",
            "10.0.0.1:3001",
            "",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[tokio::test]
    async fn a_request_for_another_name_is_refused_with_421() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // GIVEN a server made by `serve`
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let server = serve(listener, app);
        let ask = |host: String| async move {
            let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            c.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            out
        };
        // THEN a request for 127.0.0.1 is served, one for a rebound domain is not
        assert!(ask(format!("127.0.0.1:{port}"))
            .await
            .starts_with("HTTP/1.1 200"));
        let rebound = ask(format!("attacker.example:{port}")).await;
        assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
        server.abort();
    }

    #[test]
    fn parses_the_kernels_notation() {
        assert_eq!(
            parse_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(parse_addr("zz"), None);
        assert_eq!(parse_addr("00000000000000000000000001000000:0050"), None);
    }

    #[test]
    fn a_connection_of_this_process_is_the_same_user() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let _client = TcpStream::connect(local).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(uid_of_peer(local, peer), Some(unsafe { libc::geteuid() }));
        assert!(is_same_user(local, peer));
        // and a peer that is not connected is nobody
        let elsewhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(!is_same_user(local, elsewhere));
    }

    #[test]
    #[ignore = "needs root"]
    fn a_connection_of_another_user_is_not() {
        // Needs root to run a client as `nobody` (setpriv); `make test`, as root in CI, runs it
        // with --include-ignored.
        assert_eq!(unsafe { libc::geteuid() }, 0, "run as root");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let mut client = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "python3",
                "-c",
            ])
            .arg(format!(
                "import socket,time; s=socket.create_connection(('127.0.0.1',{})); time.sleep(5)",
                local.port()
            ))
            .current_dir("/")
            .spawn()
            .expect("setpriv and python3 run");
        let (_server, peer) = listener.accept().unwrap();
        // (both read while the client lives: a dead process's socket in TIME_WAIT is listed
        // with uid 0)
        let uid = uid_of_peer(local, peer);
        let same = is_same_user(local, peer);
        let _ = client.kill();
        let _ = client.wait();
        assert_eq!(uid, Some(65534));
        assert!(!same);
    }
}
