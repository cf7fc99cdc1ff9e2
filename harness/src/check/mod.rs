//! `mail-oidc check`: the server-agnostic suites run against any mail server given by its
//! endpoints, every check with an id, its spec section, MUST or SHOULD, and a verdict.
pub mod profile;
pub mod redact;
pub mod render;
