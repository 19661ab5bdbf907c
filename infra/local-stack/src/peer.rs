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
/// [`same_user_only`]), in a task of its own until it is aborted.
pub fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>()).await;
    })
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
