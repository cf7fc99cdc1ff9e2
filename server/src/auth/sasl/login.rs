//! LOGIN (draft-murchison-sasl-login): `Username:` and `Password:` challenges, then the same
//! checks as PLAIN. Kept for SMTP clients that know nothing else.

use async_trait::async_trait;

use super::parse::parse_login_field;
use super::plain::{fail, finished, success, verify};
use super::{SaslExchange, SaslFailure, SaslMechanism, SaslStep, SessionContext};
use crate::auth::AuthBackends;

const USERNAME_PROMPT: &[u8] = b"Username:";
const PASSWORD_PROMPT: &[u8] = b"Password:";

pub struct Login {
    backends: AuthBackends,
}

impl Login {
    pub fn new(backends: AuthBackends) -> Self {
        Self { backends }
    }
}

impl SaslMechanism for Login {
    fn name(&self) -> &str {
        "LOGIN"
    }

    fn available(&self, ctx: &SessionContext) -> bool {
        ctx.plaintext_allowed()
    }

    fn start(&self, initial: Option<&[u8]>, ctx: &SessionContext) -> Box<dyn SaslExchange> {
        Box::new(LoginExchange {
            backends: self.backends.clone(),
            peer: ctx.peer,
            // An empty initial response carries no user name; ask for one as usual.
            state: State::Start {
                initial: initial.filter(|i| !i.is_empty()).map(<[u8]>::to_vec),
            },
        })
    }
}

enum State {
    /// `initial` (the SASL-IR, if any) is the user name.
    Start {
        initial: Option<Vec<u8>>,
    },
    AwaitingUsername,
    AwaitingPassword {
        username: String,
    },
    Done,
}

struct LoginExchange {
    backends: AuthBackends,
    /// For the failed-login budget.
    peer: Option<std::net::SocketAddr>,
    state: State,
}

impl LoginExchange {
    fn take_username(&mut self, message: &[u8]) -> SaslStep {
        match parse_login_field(message, "user name") {
            Ok(username) => {
                self.state = State::AwaitingPassword { username };
                SaslStep::Challenge(PASSWORD_PROMPT.to_vec())
            }
            Err(e) => fail(e.into()),
        }
    }
}

#[async_trait]
impl SaslExchange for LoginExchange {
    async fn step(&mut self, client: Option<&[u8]>) -> SaslStep {
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, client) {
            (State::Start { initial }, client) => match client.map(<[u8]>::to_vec).or(initial) {
                Some(username) => self.take_username(&username),
                None => {
                    self.state = State::AwaitingUsername;
                    SaslStep::Challenge(USERNAME_PROMPT.to_vec())
                }
            },
            (State::AwaitingUsername, Some(message)) => self.take_username(message),
            (State::AwaitingPassword { username }, Some(message)) => {
                let password = match parse_login_field(message, "password") {
                    Ok(password) => password,
                    Err(e) => return fail(e.into()),
                };
                match verify(&self.backends, self.peer, &username, &password, "").await {
                    Ok(identity) => success(identity),
                    Err(failure) => fail(failure),
                }
            }
            (State::AwaitingUsername | State::AwaitingPassword { .. }, None) => {
                fail(SaslFailure::Malformed("missing LOGIN response".into()))
            }
            (State::Done, _) => finished(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::sasl::{TestDirectory, assert_no_login, backends, ctx, odd_inputs, run};

    fn mech() -> Login {
        Login::new(backends(TestDirectory::new(), None, &[]))
    }

    #[test]
    fn available_only_when_plaintext_allowed() {
        assert!(mech().available(&ctx(true)));
        assert!(!mech().available(&ctx(false)));
    }

    #[tokio::test]
    async fn full_dialogue() {
        let m = mech();
        let mut ex = m.start(None, &ctx(true));
        assert_eq!(
            ex.step(None).await,
            SaslStep::Challenge(b"Username:".to_vec())
        );
        assert_eq!(
            ex.step(Some(b"alice")).await,
            SaslStep::Challenge(b"Password:".to_vec())
        );
        let step = ex.step(Some(b"alicepw")).await;
        let SaslStep::Success { identity, .. } = step else {
            panic!("{step:?}");
        };
        assert_eq!(identity.authentication_id, "alice@example.com");
        assert_eq!(identity.authorization_id, "alice@example.com");
    }

    #[tokio::test]
    async fn initial_response_is_the_username() {
        let m = mech();
        let mut ex = m.start(Some(b"bob@example.com"), &ctx(true));
        assert_eq!(
            ex.step(None).await,
            SaslStep::Challenge(b"Password:".to_vec())
        );
        assert!(matches!(
            ex.step(Some(b"bobpw")).await,
            SaslStep::Success { .. }
        ));
        // An empty initial response still asks for the user name.
        let mut ex = m.start(Some(b""), &ctx(true));
        assert_eq!(
            ex.step(None).await,
            SaslStep::Challenge(b"Username:".to_vec())
        );
    }

    #[tokio::test]
    async fn failures() {
        let m = mech();
        assert_eq!(
            run(&m, None, &[b"alice", b"wrong"]).await,
            SaslStep::Failure(SaslFailure::InvalidCredentials {
                reason: "bad_password".into()
            })
        );
        assert!(matches!(
            run(&m, None, &[b"alice", b"\xff"]).await,
            SaslStep::Failure(SaslFailure::Malformed(_))
        ));
        assert!(matches!(
            run(&m, None, &[b"\xc3"]).await,
            SaslStep::Failure(SaslFailure::Malformed(_))
        ));
        let dir = TestDirectory::new();
        dir.set_down(true);
        let m = Login::new(backends(dir, None, &[]));
        assert!(matches!(
            run(&m, Some(b"alice"), &[b"alicepw"]).await,
            SaslStep::Failure(SaslFailure::TemporaryFailure(_))
        ));
    }

    #[tokio::test]
    async fn never_panics() {
        let m = mech();
        for a in odd_inputs() {
            for b in odd_inputs() {
                let mut ex = m.start(Some(&a), &ctx(true));
                assert_no_login(&ex.step(None).await, &a);
                assert_no_login(&ex.step(Some(&b)).await, &b);
                assert_no_login(&ex.step(Some(&b)).await, &b);
                assert_no_login(&ex.step(None).await, &b);
            }
        }
    }
}
