//! SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677), the -PLUS variant bound to the
//! TLS connection by `tls-exporter` (RFC 9266). The server keeps only salted keys (RFC 5803
//! secrets from the directory), never the password, and proves itself with `v=` on success.

pub(crate) mod crypto;
mod mechanism;
pub(crate) mod messages;
#[cfg(test)]
mod tests;

pub use mechanism::{NonceSource, ScramSha256};
