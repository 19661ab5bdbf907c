//! The chat's own tools on top of the general local stack (`infra/local-stack`, which knows the
//! chat only through template.yaml): what the chat supplies to that stack ([`chat`]), the
//! DynamoDB request log the tests and the benchmark count with ([`ddb_log`]), the benchmark
//! ([`bench`], [`bench_report`]), the one WebSocket client of the tests and tools
//! ([`ws_client`]), the fake WeChat API ([`fake_wechat`]), and the binaries (`local-stack`, `local-bench`,
//! `local-reliability`, `mint-token`).
pub mod bench;
pub mod bench_report;
pub mod chat;
pub mod ddb_log;
pub mod fake_webhook;
pub mod fake_wechat;
pub mod reliability;
pub mod ws_client;

pub use local_stack::DevError;

/// The repository root (where `template.yaml` lives).
pub fn repo_root() -> std::path::PathBuf {
    local_stack::project_root()
}
