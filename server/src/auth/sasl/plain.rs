//! PLAIN (RFC 4616): one message `authzid NUL authcid NUL passwd`, checked against the directory.
//! Also holds the password and authzid checks LOGIN shares.

use std::net::SocketAddr;

use async_trait::async_trait;

use super::parse::parse_plain;
use super::{SaslExchange, SaslFailure, SaslIdentity, SaslMechanism, SaslStep, SessionContext};
use crate::auth::AuthBackends;
use crate::auth::directory::DirectoryError;

pub struct Plain {
    backends: AuthBackends,
}

impl Plain {
    pub fn new(backends: AuthBackends) -> Self {
        Self { backends }
    }
}

impl SaslMechanism for Plain {
    fn name(&self) -> &str {
        "PLAIN"
    }

    fn available(&self, ctx: &SessionContext) -> bool {
        ctx.plaintext_allowed()
    }

    fn start(&self, initial: Option<&[u8]>, ctx: &SessionContext) -> Box<dyn SaslExchange> {
        Box::new(PlainExchange {
            backends: self.backends.clone(),
            peer: ctx.peer,
            state: State::Start {
                initial: initial.map(<[u8]>::to_vec),
            },
        })
    }
}

enum State {
    /// Nothing sent yet; `initial` is the SASL-IR given to `start`, if any.
    Start {
        initial: Option<Vec<u8>>,
    },
    /// The empty challenge went out; the next message is the credentials.
    AwaitingCredentials,
    Done,
}

struct PlainExchange {
    backends: AuthBackends,
    /// For the failed-login budget.
    peer: Option<SocketAddr>,
    state: State,
}

#[async_trait]
impl SaslExchange for PlainExchange {
    async fn step(&mut self, client: Option<&[u8]>) -> SaslStep {
        let state = std::mem::replace(&mut self.state, State::Done);
        let message = match (state, client) {
            (State::Start { initial }, client) => match client.map(<[u8]>::to_vec).or(initial) {
                Some(message) => message,
                None => {
                    // No initial response: RFC 4616 has the server send an empty challenge.
                    self.state = State::AwaitingCredentials;
                    return SaslStep::Challenge(Vec::new());
                }
            },
            (State::AwaitingCredentials, Some(message)) => message.to_vec(),
            (State::AwaitingCredentials, None) => {
                return fail(SaslFailure::Malformed("missing PLAIN response".into()));
            }
            (State::Done, _) => return finished(),
        };
        let parsed = match parse_plain(&message) {
            Ok(parsed) => parsed,
            Err(e) => return fail(e.into()),
        };
        match verify(
            &self.backends,
            self.peer,
            &parsed.authcid,
            &parsed.password,
            &parsed.authzid,
        )
        .await
        {
            Ok(identity) => success(identity),
            Err(failure) => fail(failure),
        }
    }
}

/// Checks a password login and the requested authzid (empty = none); shared with LOGIN. The
/// failed-login budget of `peer` and `authcid` is asked first and told the outcome.
pub(super) async fn verify(
    backends: &AuthBackends,
    peer: Option<SocketAddr>,
    authcid: &str,
    password: &str,
    authzid: &str,
) -> Result<SaslIdentity, SaslFailure> {
    if authcid.is_empty() || password.is_empty() {
        // Never ask the directory: an empty-password LDAP bind is anonymous and succeeds.
        return Err(SaslFailure::InvalidCredentials {
            reason: "empty_credentials".into(),
        });
    }
    let attempt = backends.admit_login(peer, Some(authcid)).await?;
    let canonical = match backends.directory.verify_password(authcid, password).await {
        Ok(Some(canonical)) => {
            attempt.succeeded().await;
            canonical
        }
        Ok(None) => {
            attempt.failed().await;
            return Err(SaslFailure::InvalidCredentials {
                reason: "bad_password".into(),
            });
        }
        Err(e) => return Err(temporary(e)),
    };
    let authorization_id = authorization_id(backends, authcid, &canonical, authzid).await?;
    Ok(SaslIdentity {
        authentication_id: canonical,
        authorization_id,
        token: None,
    })
}

/// The canonical authorization id once `authcid`'s credentials are verified (`canonical` is
/// its canonical name): the user itself for an empty authzid or one naming the login, else
/// [`authorize`]'s answer. The one rule PLAIN, LOGIN and SCRAM share.
pub(super) async fn authorization_id(
    backends: &AuthBackends,
    authcid: &str,
    canonical: &str,
    authzid: &str,
) -> Result<String, SaslFailure> {
    if authzid.is_empty() || authzid.eq_ignore_ascii_case(authcid) {
        Ok(canonical.to_string())
    } else {
        authorize(backends, canonical, authzid).await
    }
}

/// Resolves an authzid that is not literally the authenticated user: another name of the same
/// user is fine, someone else only for `server.admins`. Returns the canonical authorization id.
pub(super) async fn authorize(
    backends: &AuthBackends,
    authenticated: &str,
    authzid: &str,
) -> Result<String, SaslFailure> {
    if authzid.eq_ignore_ascii_case(authenticated) {
        return Ok(authenticated.to_string());
    }
    let target = backends
        .directory
        .lookup(authzid)
        .await
        .map_err(temporary)?;
    match target {
        Some(target) if target.eq_ignore_ascii_case(authenticated) => Ok(authenticated.to_string()),
        Some(target) if backends.may_act_as_others(authenticated) => Ok(target),
        None if backends.may_act_as_others(authenticated) => Err(SaslFailure::InvalidCredentials {
            reason: "unknown_authzid".into(),
        }),
        _ => Err(SaslFailure::DelegationForbidden {
            authcid: authenticated.to_string(),
            authzid: authzid.to_string(),
        }),
    }
}

pub(super) fn temporary(e: DirectoryError) -> SaslFailure {
    SaslFailure::TemporaryFailure(e.to_string())
}

pub(super) fn success(identity: SaslIdentity) -> SaslStep {
    tracing::debug!(
        authcid = %identity.authentication_id,
        authzid = %identity.authorization_id,
        "SASL authentication succeeded"
    );
    SaslStep::Success {
        identity,
        server_data: None,
    }
}

pub(super) fn fail(failure: SaslFailure) -> SaslStep {
    tracing::info!(reason = %failure, "SASL authentication refused");
    SaslStep::Failure(failure)
}

/// A step after success or failure: the front end should not call it, but it must not panic.
pub(super) fn finished() -> SaslStep {
    fail(SaslFailure::Malformed(
        "SASL exchange already finished".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::sasl::{TestDirectory, backends, ctx, odd_inputs, run};

    /// `delegation`: alice is in `server.admins`.
    fn mech(delegation: bool) -> Plain {
        let admins: &[&str] = if delegation {
            &["alice@example.com"]
        } else {
            &[]
        };
        Plain::new(backends(TestDirectory::new(), None, admins))
    }

    async fn plain(message: &[u8], delegation: bool) -> SaslStep {
        let mut ex = mech(delegation).start(Some(message), &ctx(true));
        ex.step(None).await
    }

    fn invalid(reason: &str) -> SaslStep {
        SaslStep::Failure(SaslFailure::InvalidCredentials {
            reason: reason.into(),
        })
    }

    #[test]
    fn available_only_when_plaintext_allowed() {
        let m = mech(false);
        assert!(m.available(&ctx(true)));
        assert!(!m.available(&ctx(false)));
        let mut c = ctx(false);
        c.allow_plaintext_without_tls = true;
        assert!(m.available(&c));
    }

    #[tokio::test]
    async fn initial_response_success_uses_canonical_name() {
        let step = plain(b"\0ALICE\0alicepw", false).await;
        let SaslStep::Success { identity, .. } = step else {
            panic!("{step:?}");
        };
        assert_eq!(identity.authentication_id, "alice@example.com");
        assert_eq!(identity.authorization_id, "alice@example.com");
        assert_eq!(identity.token, None);
    }

    #[tokio::test]
    async fn no_initial_response_sends_empty_challenge_first() {
        let m = mech(false);
        let mut ex = m.start(None, &ctx(true));
        assert_eq!(ex.step(None).await, SaslStep::Challenge(Vec::new()));
        let step = ex.step(Some(b"\0alice\0alicepw")).await;
        assert!(matches!(step, SaslStep::Success { .. }), "{step:?}");
        // Stepping a finished exchange is refused, not a panic.
        assert!(matches!(
            ex.step(Some(b"x")).await,
            SaslStep::Failure(SaslFailure::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn wrong_password_unknown_user_and_empty_password() {
        assert_eq!(
            plain(b"\0alice\0nope", false).await,
            invalid("bad_password")
        );
        assert_eq!(plain(b"\0nobody\0x", false).await, invalid("bad_password"));
        assert_eq!(
            plain(b"\0alice\0", false).await,
            invalid("empty_credentials")
        );
    }

    #[tokio::test]
    async fn directory_down_is_temporary() {
        let dir = TestDirectory::new();
        dir.set_down(true);
        let m = Plain::new(backends(dir, None, &[]));
        let step = run(&m, Some(b"\0alice\0alicepw"), &[]).await;
        assert!(
            matches!(step, SaslStep::Failure(SaslFailure::TemporaryFailure(_))),
            "{step:?}"
        );
    }

    #[tokio::test]
    async fn malformed_messages() {
        for bad in [&b"alice\0alicepw"[..], b"\0alice\0pw\0", b"\0al\xffice\0pw"] {
            assert!(
                matches!(
                    plain(bad, false).await,
                    SaslStep::Failure(SaslFailure::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn authzid_rules() {
        // Same user, by any of its names: fine without delegation.
        for authzid in ["alice", "Alice@Example.com", "alice@example.com"] {
            let msg = format!("{authzid}\0alice\0alicepw");
            let step = plain(msg.as_bytes(), false).await;
            let SaslStep::Success { identity, .. } = step else {
                panic!("{authzid}: {step:?}");
            };
            assert_eq!(identity.authorization_id, "alice@example.com");
        }
        // Someone else: forbidden without delegation.
        assert_eq!(
            plain(b"bob\0alice\0alicepw", false).await,
            SaslStep::Failure(SaslFailure::DelegationForbidden {
                authcid: "alice@example.com".into(),
                authzid: "bob".into(),
            })
        );
        // With delegation: the target's canonical name; unknown targets are refused.
        let step = plain(b"BOB\0alice\0alicepw", true).await;
        let SaslStep::Success { identity, .. } = step else {
            panic!("{step:?}");
        };
        assert_eq!(identity.authentication_id, "alice@example.com");
        assert_eq!(identity.authorization_id, "bob@example.com");
        assert_eq!(
            plain(b"nobody\0alice\0alicepw", true).await,
            invalid("unknown_authzid")
        );
        // Only the administrator may: bob may not act as alice while alice is the admin.
        assert_eq!(
            plain(b"alice\0bob\0bobpw", true).await,
            SaslStep::Failure(SaslFailure::DelegationForbidden {
                authcid: "bob@example.com".into(),
                authzid: "alice".into(),
            })
        );
        // The password is checked before the authzid.
        assert_eq!(
            plain(b"bob\0alice\0wrong", false).await,
            invalid("bad_password")
        );
    }

    #[tokio::test]
    async fn never_panics() {
        let m = mech(true);
        for a in odd_inputs() {
            let step = run(&m, Some(&a), &[&a]).await;
            assert!(matches!(step, SaslStep::Failure(_)), "{a:?}: {step:?}");
            let mut ex = m.start(None, &ctx(true));
            ex.step(None).await;
            ex.step(Some(&a)).await;
            ex.step(None).await;
        }
    }
}
