//! The adapters: one folder or file per AWS service, each implementing ports for the flows and
//! tested against the real local servers in `tests/` (DynamoDB Local, s3s-fs, the local
//! gateway).
pub mod apigw;
pub mod dynamo;
pub mod s3;
pub mod secrets;
pub mod webhook;
pub mod wechat;
