//! The one WebSocket client of the chat's tests and tools (the end-to-end tests, the benchmark,
//! the reliability run): a connection through the local gateway, frames sent as JSON, frames
//! read with a deadline.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The query of a user connection (all of `me`'s conversations).
pub fn user_query(me: &str, app: &str, token: &str) -> String {
    format!("userphone={me}&app_sid={app}&token={token}")
}

/// The query of a conversation connection (the seed's: `me` with `friend`).
pub fn conversation_query(me: &str, friend: &str, app: &str, token: &str) -> String {
    format!("userphone={me}&friendphone={friend}&app_sid={app}&token={token}")
}

/// What one read of a socket gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// A text frame, parsed (`Value::Null` when it was not JSON).
    Frame(Value),
    /// Nothing within the wait.
    Quiet,
    /// The socket ended: its close code (1005 without one, 1006 when it broke off).
    Ended(u16),
}

/// One connection to the chat.
pub struct ChatSocket {
    ws: Ws,
}

impl ChatSocket {
    /// Opens `ws_url?query`. A refused handshake gives its HTTP status (0: no HTTP answer).
    pub async fn open(ws_url: &str, query: &str) -> Result<Self, u16> {
        match tokio_tungstenite::connect_async(format!("{ws_url}?{query}")).await {
            Ok((ws, _)) => Ok(ChatSocket { ws }),
            Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(_) => Err(0),
        }
    }

    /// [`ChatSocket::open`], trying again a few times, 300 ms apart (a busy gateway under
    /// load, or a restart).
    pub async fn open_retrying(ws_url: &str, query: &str) -> Result<Self, Error> {
        let mut last = 0;
        for attempt in 0..5 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            match Self::open(ws_url, query).await {
                Ok(s) => return Ok(s),
                Err(status) => last = status,
            }
        }
        Err(format!("the handshake failed five times (last status {last})").into())
    }

    pub async fn send_json(&mut self, v: &Value) -> Result<(), Error> {
        self.send_text(&v.to_string()).await
    }

    /// Sends any text, JSON or not (bad frames are tested too).
    pub async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.ws.send(Message::Text(text.to_owned().into())).await?;
        Ok(())
    }

    /// The next text frame within `wait` (other frames are skipped). Cancel-safe: a frame is
    /// never taken off the socket without being returned.
    pub async fn read(&mut self, wait: Duration) -> Read {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let Ok(next) = tokio::time::timeout_at(until, self.ws.next()).await else {
                return Read::Quiet;
            };
            match next {
                Some(Ok(Message::Text(t))) => {
                    return Read::Frame(serde_json::from_str(&t).unwrap_or(Value::Null))
                }
                Some(Ok(Message::Close(Some(f)))) => return Read::Ended(f.code.into()),
                Some(Ok(Message::Close(None))) | None => return Read::Ended(1005),
                Some(Err(_)) => return Read::Ended(1006),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next text frame within `wait`, or an error saying why there was none.
    pub async fn frame(&mut self, wait: Duration) -> Result<Value, Error> {
        match self.read(wait).await {
            Read::Frame(v) => Ok(v),
            Read::Quiet => Err(format!("no frame within {wait:?}").into()),
            Read::Ended(code) => Err(format!("the socket ended ({code})").into()),
        }
    }

    /// Closes with a close frame.
    pub async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}
