//! OAUTHBEARER (RFC 7628), plus the token exchange it shares with XOAUTH2: a refused token gets
//! the RFC 7628 error challenge, and the failure only follows the client's dummy reply.

use async_trait::async_trait;

use super::parse::{invalid_token_challenge, parse_oauthbearer};
use super::plain::{authorize, fail, finished, success};
use super::{SaslExchange, SaslFailure, SaslIdentity, SaslMechanism, SaslStep, SessionContext};
use crate::auth::AuthBackends;
use crate::auth::oidc::{TokenValidator, ValidatedToken};

pub struct OAuthBearer {
    backends: AuthBackends,
}

impl OAuthBearer {
    pub fn new(backends: AuthBackends) -> Self {
        Self { backends }
    }
}

impl SaslMechanism for OAuthBearer {
    fn name(&self) -> &str {
        "OAUTHBEARER"
    }

    /// A bearer token is a credential like a password: not in clear unless
    /// `allow_plaintext_auth` says so.
    fn available(&self, ctx: &SessionContext) -> bool {
        self.backends.validator.is_some() && ctx.plaintext_allowed()
    }

    fn start(&self, initial: Option<&[u8]>, ctx: &SessionContext) -> Box<dyn SaslExchange> {
        Box::new(BearerExchange::new(
            self.backends.clone(),
            BearerKind::OAuthBearer,
            initial,
            ctx.peer,
        ))
    }
}

/// The bearer-token mechanisms; one exchange type runs both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BearerKind {
    OAuthBearer,
    XOAuth2,
}

/// What a mechanism decided about the client's message.
pub(super) enum Verdict {
    Accept(SaslIdentity),
    /// RFC 7628 refusal: the error challenge now, `InvalidCredentials { reason }` after the
    /// client's dummy reply.
    Refuse(String),
    /// Fail at once (malformed message, delegation, IdP or directory down).
    Fail(SaslFailure),
}

enum State {
    /// `initial` is the SASL-IR given to `start`, if any.
    Start {
        initial: Option<Vec<u8>>,
    },
    /// The empty challenge went out; the next message is the client response.
    AwaitingResponse,
    /// The error challenge went out; whatever comes next ends in this failure.
    Refused {
        reason: String,
    },
    Done,
}

pub(super) struct BearerExchange {
    backends: AuthBackends,
    kind: BearerKind,
    /// For the failed-login budget (by address only: a token names no user before it is valid).
    peer: Option<std::net::SocketAddr>,
    state: State,
}

impl BearerExchange {
    pub(super) fn new(
        backends: AuthBackends,
        kind: BearerKind,
        initial: Option<&[u8]>,
        peer: Option<std::net::SocketAddr>,
    ) -> Self {
        Self {
            backends,
            kind,
            peer,
            state: State::Start {
                initial: initial.map(<[u8]>::to_vec),
            },
        }
    }

    async fn respond(&mut self, message: &[u8]) -> SaslStep {
        let Some(validator) = self.backends.validator.clone() else {
            return fail(SaslFailure::MechanismUnavailable(
                "no token validator configured".into(),
            ));
        };
        let attempt = match self.backends.admit_login(self.peer, None).await {
            Ok(attempt) => attempt,
            Err(refusal) => return fail(refusal.into()),
        };
        let verdict = match self.kind {
            BearerKind::OAuthBearer => check(&self.backends, validator.as_ref(), message).await,
            BearerKind::XOAuth2 => {
                super::xoauth2::check(&self.backends, validator.as_ref(), message).await
            }
        };
        // Only a refused token is a failed guess; a malformed message or an unreachable IdP
        // is not counted.
        match verdict {
            Verdict::Accept(identity) => {
                attempt.succeeded().await;
                success(identity)
            }
            Verdict::Fail(failure) => fail(failure),
            Verdict::Refuse(reason) => {
                if crate::auth::throttle::token_refusal_counts(&reason) {
                    attempt.failed().await;
                }
                tracing::info!(mechanism = ?self.kind, %reason, "token refused, sending RFC 7628 error challenge");
                self.state = State::Refused { reason };
                SaslStep::Challenge(invalid_token_challenge(
                    &validator.required_scope(),
                    &validator.discovery_url(),
                ))
            }
        }
    }
}

#[async_trait]
impl SaslExchange for BearerExchange {
    async fn step(&mut self, client: Option<&[u8]>) -> SaslStep {
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, client) {
            (State::Start { initial }, client) => match client.map(<[u8]>::to_vec).or(initial) {
                Some(message) => self.respond(&message).await,
                None => {
                    self.state = State::AwaitingResponse;
                    SaslStep::Challenge(Vec::new())
                }
            },
            (State::AwaitingResponse, Some(message)) => self.respond(message).await,
            (State::AwaitingResponse, None) => {
                fail(SaslFailure::Malformed("missing client response".into()))
            }
            // Any reply to the error challenge (RFC 7628 wants 0x01) ends the exchange; the
            // token was judged already and is not validated again.
            (State::Refused { reason }, _) => fail(SaslFailure::InvalidCredentials { reason }),
            (State::Done, _) => finished(),
        }
    }

    fn abort(&mut self) -> SaslFailure {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Refused { reason } => SaslFailure::AbortedAfterRefusal { reason },
            _ => SaslFailure::Aborted,
        }
    }
}

/// Validates a token; refusals become verdicts (temporary ones fail at once).
pub(super) async fn validate(
    validator: &dyn TokenValidator,
    token: &str,
) -> Result<ValidatedToken, Verdict> {
    validator.validate(token).await.map_err(|e| {
        tracing::info!(code = e.code(), error = %e, "bearer token not accepted");
        if e.is_temporary() {
            Verdict::Fail(SaslFailure::TemporaryFailure(e.to_string()))
        } else {
            Verdict::Refuse(e.code().to_string())
        }
    })
}

/// The identity of a bearer login; the token is kept with its session for re-checks.
pub(super) fn identity(
    token: ValidatedToken,
    bearer: &str,
    authorization_id: String,
) -> SaslIdentity {
    SaslIdentity {
        token: Some(token.session(Some(bearer))),
        authentication_id: token.username,
        authorization_id,
    }
}

async fn check(backends: &AuthBackends, validator: &dyn TokenValidator, message: &[u8]) -> Verdict {
    let parsed = match parse_oauthbearer(message) {
        Ok(parsed) => parsed,
        Err(e) => return Verdict::Fail(e.into()),
    };
    let token = match validate(validator, &parsed.token).await {
        Ok(token) => token,
        Err(verdict) => return verdict,
    };
    let authorization_id = if parsed.authzid.is_empty() {
        token.username.clone()
    } else {
        match authorize(backends, &token.username, &parsed.authzid).await {
            Ok(id) => id,
            Err(failure) => return Verdict::Fail(failure),
        }
    };
    Verdict::Accept(identity(token, &parsed.token, authorization_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oidc::TokenError;
    use crate::auth::sasl::TokenSession;
    use crate::testkit::sasl::{
        DISCOVERY, SCOPE, TestDirectory, TestValidator, assert_no_login, backends, ctx, odd_inputs,
        run, token_for,
    };
    use std::sync::Arc;

    fn setup(delegation: bool) -> (OAuthBearer, Arc<TestValidator>) {
        let validator = TestValidator::new();
        validator.set("good", Ok(token_for("alice@example.com")));
        validator.set("expired", Err(TokenError::Expired));
        validator.set(
            "down",
            Err(TokenError::Unavailable("connect refused".into())),
        );
        let m = OAuthBearer::new(backends(
            TestDirectory::new(),
            Some(validator.clone()),
            if delegation {
                &["alice@example.com"]
            } else {
                &[]
            },
        ));
        (m, validator)
    }

    fn msg(authzid: &str, token: &str) -> Vec<u8> {
        format!("n,{authzid},\x01host=localhost\x01port=143\x01auth=Bearer {token}\x01\x01")
            .into_bytes()
    }

    fn error_challenge() -> SaslStep {
        SaslStep::Challenge(
            format!(
                r#"{{"status":"invalid_token","scope":"{SCOPE}","openid-configuration":"{DISCOVERY}"}}"#
            )
            .into_bytes(),
        )
    }

    #[test]
    fn available_with_a_validator_under_tls_or_when_plaintext_is_allowed() {
        let (m, _) = setup(false);
        assert!(
            !m.available(&ctx(false)),
            "a token is a credential: not in clear"
        );
        assert!(m.available(&ctx(true)));
        let allowed = SessionContext {
            allow_plaintext_without_tls: true,
            ..ctx(false)
        };
        assert!(m.available(&allowed));
        let none = OAuthBearer::new(backends(TestDirectory::new(), None, &[]));
        assert!(!none.available(&ctx(true)));
    }

    #[tokio::test]
    async fn abort_after_the_error_challenge_counts_as_a_failure() {
        let (m, _) = setup(false);
        let mut ex = m.start(None, &ctx(true));
        assert_eq!(ex.step(Some(&msg("", "expired"))).await, error_challenge());
        let failure = ex.abort();
        assert!(
            matches!(failure, SaslFailure::AbortedAfterRefusal { ref reason } if reason == "expired"),
            "{failure:?}"
        );
        assert!(failure.counts_as_failure());
        // A plain abort before any refusal does not count.
        let mut ex = m.start(None, &ctx(true));
        assert_eq!(ex.step(None).await, SaslStep::Challenge(Vec::new()));
        let plain = ex.abort();
        assert_eq!(plain, SaslFailure::Aborted);
        assert!(!plain.counts_as_failure());
    }

    #[tokio::test]
    async fn valid_token_with_and_without_authzid() {
        let (m, _) = setup(false);
        for authzid in ["", "a=alice@example.com", "a=ALICE@example.com", "a=alice"] {
            let step = run(&m, Some(&msg(authzid, "good")), &[]).await;
            let SaslStep::Success {
                identity,
                server_data,
            } = step
            else {
                panic!("{authzid}: {step:?}");
            };
            assert_eq!(server_data, None);
            assert_eq!(identity.authentication_id, "alice@example.com");
            assert_eq!(identity.authorization_id, "alice@example.com");
            assert_eq!(
                identity.token,
                Some(TokenSession {
                    issuer: "https://idp.example.com".into(),
                    subject: "sub-alice@example.com".into(),
                    sid: Some("sid-1".into()),
                    expires_at: 4_000_000_000,
                    issued_at: Some(1_700_000_000),
                    bearer: Some(crate::auth::secret::Secret::new("good")),
                })
            );
        }
    }

    #[tokio::test]
    async fn no_initial_response_gets_empty_challenge() {
        let (m, _) = setup(false);
        let mut ex = m.start(None, &ctx(true));
        assert_eq!(ex.step(None).await, SaslStep::Challenge(Vec::new()));
        assert!(matches!(
            ex.step(Some(&msg("", "good"))).await,
            SaslStep::Success { .. }
        ));
    }

    #[tokio::test]
    async fn invalid_token_challenge_then_failure_without_revalidation() {
        for reply in [&b"\x01"[..], b"", b"anything at all"] {
            let (m, validator) = setup(false);
            let mut ex = m.start(Some(&msg("", "expired")), &ctx(true));
            assert_eq!(ex.step(None).await, error_challenge());
            assert_eq!(
                ex.step(Some(reply)).await,
                SaslStep::Failure(SaslFailure::InvalidCredentials {
                    reason: "expired".into()
                })
            );
            assert_eq!(validator.calls(), 1);
        }
        // Unknown tokens (bad signature in the test validator) behave the same.
        let (m, _) = setup(false);
        assert_eq!(
            run(&m, Some(&msg("", "forged")), &[b"\x01"]).await,
            SaslStep::Failure(SaslFailure::InvalidCredentials {
                reason: "bad_signature".into()
            })
        );
    }

    #[tokio::test]
    async fn unavailable_idp_fails_at_once() {
        let (m, _) = setup(false);
        let step = run(&m, Some(&msg("", "down")), &[]).await;
        assert!(
            matches!(step, SaslStep::Failure(SaslFailure::TemporaryFailure(_))),
            "{step:?}"
        );
    }

    #[tokio::test]
    async fn delegation() {
        let (m, _) = setup(false);
        assert_eq!(
            run(&m, Some(&msg("a=bob@example.com", "good")), &[]).await,
            SaslStep::Failure(SaslFailure::DelegationForbidden {
                authcid: "alice@example.com".into(),
                authzid: "bob@example.com".into(),
            })
        );
        let (m, _) = setup(true);
        let step = run(&m, Some(&msg("a=BOB", "good")), &[]).await;
        let SaslStep::Success { identity, .. } = step else {
            panic!("{step:?}");
        };
        assert_eq!(identity.authentication_id, "alice@example.com");
        assert_eq!(identity.authorization_id, "bob@example.com");
        assert_eq!(
            run(&m, Some(&msg("a=nobody", "good")), &[]).await,
            SaslStep::Failure(SaslFailure::InvalidCredentials {
                reason: "unknown_authzid".into()
            })
        );
    }

    #[tokio::test]
    async fn malformed_messages_fail_without_validation() {
        let (m, validator) = setup(false);
        for bad in [
            &b"\x01"[..],
            b"p=tls-unique,,\x01auth=Bearer good\x01\x01",
            b"n,,\x01host=x\x01\x01",
            b"n,,\x01auth=Basic good\x01\x01",
            b"n,,\x01auth=Bearer good",
        ] {
            let step = run(&m, Some(bad), &[]).await;
            assert!(
                matches!(step, SaslStep::Failure(SaslFailure::Malformed(_))),
                "{bad:?}: {step:?}"
            );
        }
        assert_eq!(validator.calls(), 0);
        // `y` (client could bind, thinks we cannot) is accepted.
        assert!(matches!(
            run(&m, Some(b"y,,\x01auth=Bearer good\x01\x01"), &[]).await,
            SaslStep::Success { .. }
        ));
    }

    #[tokio::test]
    async fn never_panics() {
        let (m, _) = setup(false);
        for a in odd_inputs() {
            for b in odd_inputs() {
                let mut ex = m.start(Some(&a), &ctx(true));
                assert_no_login(&ex.step(None).await, &a);
                assert_no_login(&ex.step(Some(&b)).await, &b);
                assert_no_login(&ex.step(None).await, &b);
            }
            let mut ex = m.start(None, &ctx(true));
            assert_no_login(&ex.step(None).await, &[]);
            assert_no_login(&ex.step(Some(&a)).await, &a);
        }
    }
}
