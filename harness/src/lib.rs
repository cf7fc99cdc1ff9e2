//! mail-oidc-harness: stands up a real IdP (LemonLDAP::NG), LDAP (slapd), Redis and our mail
//! server as local processes, and drives them with small protocol clients.

pub mod bench;
pub mod check;
pub mod clients;
pub mod compose;
pub mod cookies;
pub mod envfile;
pub mod html;
pub mod idp;
pub mod keys;
pub mod private;
pub mod realm;
pub mod stack;
pub mod suites;
pub mod tokens;
