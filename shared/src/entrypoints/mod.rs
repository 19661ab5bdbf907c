//! The entry points: Lambda events in, the flows called, a response out ([`websocket`] for the
//! WebSocket API, [`http`] for the HTTP API, [`token_keeper`] and [`recheck`] for the scheduled functions, [`notify`] for the messages
//! table's stream), and
//! the wiring of AWS clients and adapters each function builds once per cold start
//! ([`wiring`]).
pub mod http;
pub mod notify;
pub mod recheck;
pub mod token_keeper;
pub mod websocket;
pub mod wiring;

pub use websocket::{connect, default, disconnect, response, ConnectDeps, HandlerResult, WsEvent};
pub use wiring::aws_sdk_config;
