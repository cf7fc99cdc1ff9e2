//! Command handlers, one file per group, each an `impl Session` block.

pub mod auth;
pub mod condstore;
pub mod fetch;
pub mod mailbox;
pub mod manage;
pub mod search;
pub mod store;
