//! mail-oidc-harness: stands up a real IdP, LDAP, Redis and our mail server, and drives them.
