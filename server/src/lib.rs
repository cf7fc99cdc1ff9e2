//! mail-oidc-server: a compact mail server whose logins go through OpenID Connect.
//!
//! Layout: `auth` is protocol-neutral (SASL, OIDC, directory); `imap` and `smtp` are front ends
//! that only do framing and wire replies; `store` holds mail; `server` wires it all from `config`.

pub mod auth;
pub mod config;
pub mod http;
pub mod imap;
pub mod jmap;
pub mod server;
pub mod sieve;
pub mod smtp;
pub mod store;
#[cfg(test)]
pub(crate) mod testkit;
pub mod time;
pub mod tls;
