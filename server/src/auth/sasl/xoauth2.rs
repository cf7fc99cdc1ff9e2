//! XOAUTH2 (Google's pre-RFC 7628 mechanism): `user=<user> 0x01 auth=Bearer <token> 0x01 0x01`.
//! Runs the same exchange as OAUTHBEARER; only the message and the user check differ.

use super::oauthbearer::{BearerExchange, BearerKind, Verdict, identity, validate};
use super::parse::parse_xoauth2;
use super::plain::temporary;
use super::{SaslExchange, SaslMechanism, SessionContext};
use crate::auth::AuthBackends;
use crate::auth::oidc::TokenValidator;

pub struct XOAuth2 {
    backends: AuthBackends,
}

impl XOAuth2 {
    pub fn new(backends: AuthBackends) -> Self {
        Self { backends }
    }
}

impl SaslMechanism for XOAuth2 {
    fn name(&self) -> &str {
        "XOAUTH2"
    }

    /// A bearer token is a credential like a password: not in clear unless
    /// `allow_plaintext_auth` says so.
    fn available(&self, ctx: &SessionContext) -> bool {
        self.backends.validator.is_some() && ctx.plaintext_allowed()
    }

    fn start(&self, initial: Option<&[u8]>, ctx: &SessionContext) -> Box<dyn SaslExchange> {
        Box::new(BearerExchange::new(
            self.backends.clone(),
            BearerKind::XOAuth2,
            initial,
            ctx.peer,
        ))
    }
}

pub(super) async fn check(
    backends: &AuthBackends,
    validator: &dyn TokenValidator,
    message: &[u8],
) -> Verdict {
    let parsed = match parse_xoauth2(message) {
        Ok(parsed) => parsed,
        Err(e) => return Verdict::Fail(e.into()),
    };
    let token = match validate(validator, &parsed.token).await {
        Ok(token) => token,
        Err(verdict) => return verdict,
    };
    // `user` may be another name (uid) of the token's user, never someone else.
    if !parsed.user.eq_ignore_ascii_case(&token.username) {
        match backends.directory.lookup(&parsed.user).await {
            Ok(Some(canonical)) if canonical.eq_ignore_ascii_case(&token.username) => {}
            Ok(_) => {
                tracing::info!(user = %parsed.user, token_user = %token.username, "XOAUTH2 user does not match the token");
                return Verdict::Refuse("user_mismatch".into());
            }
            Err(e) => return Verdict::Fail(temporary(e)),
        }
    }
    let authorization_id = token.username.clone();
    Verdict::Accept(identity(token, &parsed.token, authorization_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oidc::TokenError;
    use crate::auth::sasl::{SaslFailure, SaslStep};
    use crate::testkit::sasl::{
        DISCOVERY, SCOPE, TestDirectory, TestValidator, assert_no_login, backends, ctx, odd_inputs,
        run, token_for,
    };
    use std::sync::Arc;

    fn setup() -> (XOAuth2, Arc<TestValidator>, Arc<TestDirectory>) {
        let validator = TestValidator::new();
        validator.set("good", Ok(token_for("alice@example.com")));
        validator.set("bad", Err(TokenError::WrongAudience));
        validator.set("down", Err(TokenError::Unavailable("timeout".into())));
        let directory = TestDirectory::new();
        let m = XOAuth2::new(backends(directory.clone(), Some(validator.clone()), &[]));
        (m, validator, directory)
    }

    fn msg(user: &str, token: &str) -> Vec<u8> {
        format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
    }

    fn refused(reason: &str) -> SaslStep {
        SaslStep::Failure(SaslFailure::InvalidCredentials {
            reason: reason.into(),
        })
    }

    #[test]
    fn available_iff_validator() {
        let (m, _, _) = setup();
        assert!(!m.available(&ctx(false)), "not in clear by default");
        assert!(m.available(&ctx(true)));
        let none = XOAuth2::new(backends(TestDirectory::new(), None, &[]));
        assert!(!none.available(&ctx(true)));
    }

    #[tokio::test]
    async fn valid_token_for_any_name_of_the_user() {
        let (m, _, _) = setup();
        for user in ["alice@example.com", "Alice@Example.COM", "alice"] {
            let step = run(&m, Some(&msg(user, "good")), &[]).await;
            let SaslStep::Success { identity, .. } = step else {
                panic!("{user}: {step:?}");
            };
            assert_eq!(identity.authentication_id, "alice@example.com");
            assert_eq!(identity.authorization_id, "alice@example.com");
            assert_eq!(
                identity.token.map(|t| t.subject),
                Some("sub-alice@example.com".to_string())
            );
        }
    }

    #[tokio::test]
    async fn invalid_token_and_user_mismatch_challenge_then_fail() {
        let challenge = SaslStep::Challenge(
            format!(
                r#"{{"status":"invalid_token","scope":"{SCOPE}","openid-configuration":"{DISCOVERY}"}}"#
            )
            .into_bytes(),
        );
        for (user, token, reason) in [
            ("alice@example.com", "bad", "wrong_audience"),
            ("bob@example.com", "good", "user_mismatch"),
            ("nobody", "good", "user_mismatch"),
        ] {
            let (m, validator, directory) = setup();
            let mut ex = m.start(Some(&msg(user, token)), &ctx(true));
            assert_eq!(ex.step(None).await, challenge, "{user} {token}");
            let lookups = directory.calls();
            assert_eq!(ex.step(Some(b"\x01")).await, refused(reason));
            // The failure step judges nothing again.
            assert_eq!(validator.calls(), 1);
            assert_eq!(directory.calls(), lookups);
        }
    }

    #[tokio::test]
    async fn temporary_failures_are_immediate() {
        let (m, _, directory) = setup();
        assert!(matches!(
            run(&m, Some(&msg("alice", "down")), &[]).await,
            SaslStep::Failure(SaslFailure::TemporaryFailure(_))
        ));
        directory.set_down(true);
        assert!(matches!(
            run(&m, Some(&msg("alice", "good")), &[]).await,
            SaslStep::Failure(SaslFailure::TemporaryFailure(_))
        ));
    }

    #[tokio::test]
    async fn malformed() {
        let (m, validator, _) = setup();
        for bad in [
            &b"user=alice\x01\x01"[..],
            b"auth=Bearer good\x01\x01",
            b"user=alice\x01auth=Bearer good",
            b"user=alice\x01auth=OAuth good\x01\x01",
            b"n,,\x01auth=Bearer good\x01\x01",
        ] {
            assert!(
                matches!(
                    run(&m, Some(bad), &[]).await,
                    SaslStep::Failure(SaslFailure::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(validator.calls(), 0);
    }

    #[tokio::test]
    async fn never_panics() {
        let (m, _, _) = setup();
        for a in odd_inputs() {
            for b in odd_inputs() {
                let mut ex = m.start(Some(&a), &ctx(true));
                assert_no_login(&ex.step(None).await, &a);
                assert_no_login(&ex.step(Some(&b)).await, &b);
                assert_no_login(&ex.step(Some(&b)).await, &b);
            }
        }
    }
}
