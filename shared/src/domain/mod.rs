//! The domain: values, keys and rules of the chat, as plain Rust with no AWS type and no I/O.
//! The flows in [`crate::flows`] read through the ports, call these rules and write what they
//! return.
//!
//! Bottom up: [`ids`] (accounts, conversations, ULIDs, cursors) ← [`message`] ← [`connection`],
//! [`inbox`] ← [`send`]; [`media`], [`auth`], [`wechat`], [`login`], [`moderation`], [`push`]
//! and [`notice`] stand beside them.
pub mod auth;
pub mod connection;
pub mod ids;
pub mod inbox;
pub mod login;
pub mod media;
pub mod message;
pub mod moderation;
pub mod notice;
pub mod push;
pub mod send;
pub mod wechat;
