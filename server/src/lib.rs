//! mail-oidc-server: a compact mail server whose logins go through OpenID Connect.
//!
//! Layout: `auth` is protocol-neutral (SASL, OIDC, directory, HTTP request authentication,
//! revocation); `imap`, `smtp`, `pop3`, `managesieve` and `jmap` are front ends that only do
//! framing and wire replies; `sieve` is the filter language delivery runs; `web` is the HTTP listener; `public_url` the base URLs both build on; `store`
//! holds mail and Sieve scripts; `limits` holds the deadlines, connection caps and shutdown every
//! listener shares; `server` wires it all from `config`.

pub mod auth;
pub mod cli;
pub mod config;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod imap;
pub mod inflight;
pub mod jmap;
pub mod limits;
pub mod log_escape;
pub mod log_limit;
pub mod managesieve;
pub mod offload;
pub mod pop3;
pub mod public_url;
pub mod sans_io;
pub mod server;
pub mod sieve;
pub mod smtp;
pub mod store;
#[cfg(test)]
pub(crate) mod testkit;
pub mod time;
pub mod tls;
pub mod transport;
pub mod web;
