//! DynamoDB adapters for the storage ports, one file per port group: [`connections`],
//! [`messages`] (pages and the snapshot), [`send`] (a send's transaction), [`inbox`], [`recall`], [`identity`],
//! [`wechat_token`] (each app's WeChat access token);
//! [`items`] encodes. Item layouts (see also docs/architecture.md):
//!
//! Connections table, key `connection_id`:
//! - connection record: `app_sid`, `user`, `friend` (conversation connections only), `name`,
//!   `avatar`, `connected_at` (ms), `expires_at` (s, the table's TTL attribute), `reg` (true
//!   once it is in its user's registry), `typing_at` (ms, the typing throttle), `sends_<window>`
//!   (messages sent in that minute, `window` = epoch s / 60; a send's transaction counts one and
//!   removes older windows' counts: the rate limit). Records written before the registry
//!   existed may also carry `conversation`, which nothing reads.
//! - registry: `connection_id` = `r#<app>#<user>` (API Gateway's ids never contain `#`);
//!   `conns` = map of connection id → `{kind: "user"|"conversation", friend?, at, exp}`;
//!   `name`, `avatar` (the profile of the user's latest handshake), `user`, `app_sid`,
//!   `last_conn` (ms, the latest `$connect`), `grants#<template>` (offline notices the user
//!   granted, [`notices`]). No TTL: expired entries are ignored and pruned at the user's next
//!   `$connect`.
//! - notified: `connection_id` = `n#<app>#<user>#<peer>`; `at` (ms, when the user was last
//!   sent a notice about the conversation with `peer`), `expires_at` (s, TTL, 30 days).
//! - WeChat access token: `connection_id` = `wxtoken#<appid>`; `token`, `expires_at` (s, TTL),
//!   `forced_at` (s), `refresh_until` (ms) ([`wechat_token`]).
//!
//! Messages table, key (`pk`, `sk`):
//! - message: `pk` = conversation key, `sk` = `m#<ulid>`; `sender`, `receiver`, `app_sid`,
//!   `chat_type`, `content`, `created_at`, `client_msg_id`?, `seq`? (the sender's count; absent
//!   on messages from before conversation entries), `recalled`?; for uploaded media also
//!   `media_type`, `media_size`, `media_w`?, `media_h`?, `poster`? (`content` is then the key);
//!   moderation's `mod`?, `mod_label`?, `mod_sub`?, `unchecked`? (the sparse `unchecked`
//!   index) and, while a media check is pending, `mc_shard`, `mc_due` (the sparse
//!   `media_checks` index), `mc_trace`?, `mc_asks`? ([`media_checks`]).
//! - media check: `pk` = `mc#<trace_id>`, `sk` = `mc`; `msg_pk`, `msg_sk` (the message),
//!   `expires_at` (TTL).
//! - profile: `pk` = conversation key, `sk` = `p#<account>`; `name`, `avatar`.
//! - idempotency marker: `pk` = `d#<conversation key>#<sender>#<client_msg_id>`, `sk` = `d`;
//!   a copy of the message it guards, so a duplicate is answered without another read, and
//!   `expires_at` (s, the table's TTL attribute; `IDEMPOTENCY_TTL_SECONDS` after the send).
//!   Writes treat a marker whose `expires_at` has passed as absent.
//! - conversation entry: `pk` = `i#<app>#<user>`, `sk` = `c#<peer>`; `last` (a map with the
//!   last message's attributes), `updated_at`, `sent`, `peer_sent`, `read_seq`,
//!   `peer_read_id`?, `peer_read_seq`?, `ver`, `peer_name`, `peer_avatar`, `user`, `peer`, and
//!   the keys of the sparse `by_activity` index: `inbox` (= `pk`) and `activity`
//!   (`<updated_at, 15 digits>#<peer>`).
//!
//! - WeChat identity: `pk` = `w#<app>#<openid>`, `sk` = `w`: `account`; and `pk` =
//!   `u#<app>#<account>`, `sk` = `w`: `openid` ([`identity`]; no TTL).
//!
//! Inside a conversation partition `m#…` sorts before `p#…` and nothing sorts before `m#`, so
//! "latest page plus profiles" is one descending Query over `[m#, p$]`, and "older than
//! cursor" is `sk < m#<cursor>`.

mod client;
mod connections;
mod identity;
mod inbox;
mod items;
mod media_checks;
mod messages;
mod notices;
mod push_nonce;
mod recall;
mod screening;
mod send;
mod wechat_token;

pub use client::{DynamoStore, BY_ACTIVITY_INDEX};
pub use items::MARKER_TTL_ATTRIBUTE;
pub use screening::UNCHECKED_INDEX;
