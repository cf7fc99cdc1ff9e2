//! One SASL driver for every protocol. The sans-IO part ([`SaslDriver`]) decides what a client
//! message means (base64, `*` abort, `=` or empty for an empty response), keeps the exchange
//! between steps, turns each [`SaslStep`] into an [`AuthAction`] and counts failures (an abort
//! after an error challenge is a failure). The only async part is [`run`], which the connection
//! loop calls for [`AuthAction::Run`]. A protocol adds nothing but its framing and wire replies.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{
    Protocol, SaslExchange, SaslFailure, SaslIdentity, SaslMechanism, SaslRegistry, SaslStep,
    SessionContext,
};
use crate::auth::AuthBackends;
use crate::auth::directory::Directory;

/// How a protocol carries a mechanism's additional data with the outcome of success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessData {
    /// As one more challenge; the client answers with an empty response (IMAP, SMTP, POP3).
    AsChallenge,
    /// In the final reply itself (ManageSieve `OK (SASL "<base64>")`).
    InFinalReply,
}

/// Slow work for the connection loop: answer it with [`run`], then [`SaslDriver::step_done`].
pub enum AuthWork {
    Start {
        mechanism: Arc<dyn SaslMechanism>,
        initial: Option<Vec<u8>>,
        context: SessionContext,
    },
    Step {
        exchange: Box<dyn SaslExchange>,
        response: Vec<u8>,
    },
}

impl fmt::Debug for AuthWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print SASL payloads: they hold passwords and tokens.
        match self {
            AuthWork::Start {
                mechanism, initial, ..
            } => f
                .debug_struct("Start")
                .field("mechanism", &mechanism.name())
                .field("initial", &initial.as_ref().map(Vec::len))
                .finish(),
            AuthWork::Step { response, .. } => write!(f, "Step({} bytes)", response.len()),
        }
    }
}

/// What [`run`] produced: the exchange (to keep for the next step) and its step.
pub struct AuthDone {
    exchange: Box<dyn SaslExchange>,
    step: SaslStep,
}

impl AuthDone {
    /// The step the exchange produced.
    pub fn step(&self) -> &SaslStep {
        &self.step
    }
}

/// Performs one [`AuthWork`]: starts the exchange (stepping it once with the initial response)
/// or steps it with the client's response.
pub async fn run(work: AuthWork) -> AuthDone {
    match work {
        AuthWork::Start {
            mechanism,
            initial,
            context,
        } => {
            let mut exchange = mechanism.start(initial.as_deref(), &context);
            let step = exchange.step(initial.as_deref()).await;
            AuthDone { exchange, step }
        }
        AuthWork::Step {
            mut exchange,
            response,
        } => {
            let step = exchange.step(Some(&response)).await;
            AuthDone { exchange, step }
        }
    }
}

/// What the protocol must do now.
#[derive(Debug)]
pub enum AuthAction {
    /// Run this with [`run`] and hand the result to [`SaslDriver::step_done`].
    Run(AuthWork),
    /// Send this base64 challenge and wait for the client's response.
    Challenge(String),
    /// Logged in. `data`: base64 success data for the final reply ([`SuccessData::InFinalReply`]).
    Success {
        identity: SaslIdentity,
        mechanism: String,
        data: Option<String>,
    },
    /// Send the protocol's reply for `failure`; with `close`, the failure limit is reached: say
    /// goodbye and close the connection.
    Failure {
        failure: SaslFailure,
        mechanism: String,
        close: bool,
    },
}

/// A client response of a running exchange, after the protocol removed its framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientResponse {
    /// `*`: the client cancels.
    Abort,
    Data(Vec<u8>),
}

/// The client sent something that is not base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64")]
pub struct BadBase64;

/// A continuation response: `*` aborts; an empty line or `=` is an empty response.
pub fn decode_response(line: &[u8]) -> Result<ClientResponse, BadBase64> {
    match line {
        b"*" => Ok(ClientResponse::Abort),
        b"" | b"=" => Ok(ClientResponse::Data(Vec::new())),
        _ => BASE64
            .decode(line)
            .map(ClientResponse::Data)
            .map_err(|_| BadBase64),
    }
}

/// An initial response (SASL-IR, `AUTH <mech> <ir>`): `=` is an empty one.
pub fn decode_initial(text: &[u8]) -> Result<Vec<u8>, BadBase64> {
    match text {
        b"=" => Ok(Vec::new()),
        _ => BASE64.decode(text).map_err(|_| BadBase64),
    }
}

fn encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

enum State {
    Idle,
    /// [`AuthWork`] is out; waiting for [`SaslDriver::step_done`].
    Running {
        mechanism: String,
    },
    /// A challenge went out; the exchange waits for the client.
    AwaitingClient {
        mechanism: String,
        exchange: Box<dyn SaslExchange>,
    },
    /// Success data went out as a challenge; the client's empty answer completes the login.
    AwaitingSuccessAck {
        mechanism: String,
        identity: SaslIdentity,
    },
}

/// The SASL side of one session.
pub struct SaslDriver {
    protocol: Protocol,
    peer: Option<SocketAddr>,
    max_failures: u32,
    failures: u32,
    success_data: SuccessData,
    state: State,
}

impl SaslDriver {
    pub fn new(
        protocol: Protocol,
        peer: Option<SocketAddr>,
        max_failures: u32,
        success_data: SuccessData,
    ) -> Self {
        Self {
            protocol,
            peer,
            max_failures: max_failures.max(1),
            failures: 0,
            success_data,
            state: State::Idle,
        }
    }

    /// An exchange is running (waiting for the loop or for the client).
    pub fn is_active(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Waiting for the client's next response.
    pub fn awaits_client(&self) -> bool {
        matches!(
            self.state,
            State::AwaitingClient { .. } | State::AwaitingSuccessAck { .. }
        )
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// `AUTHENTICATE <mechanism> [initial]`; `initial` is the raw wire text (base64 or `=`).
    pub fn start(
        &mut self,
        registry: &SaslRegistry,
        mechanism: &str,
        initial: Option<&[u8]>,
        context: SessionContext,
    ) -> AuthAction {
        self.state = State::Idle;
        let Some(mech) = registry.get(mechanism, &context) else {
            let with_tls = SessionContext {
                tls: true,
                ..context.clone()
            };
            let failure = if !context.tls && registry.get(mechanism, &with_tls).is_some() {
                SaslFailure::EncryptionRequired(mechanism.to_string())
            } else {
                SaslFailure::MechanismUnavailable(mechanism.to_string())
            };
            return self.fail(mechanism.to_string(), failure);
        };
        let initial = match initial.map(decode_initial).transpose() {
            Ok(initial) => initial,
            Err(BadBase64) => {
                return self.fail(mech.name().to_string(), SaslFailure::InvalidBase64);
            }
        };
        tracing::debug!(protocol = ?self.protocol, peer = ?self.peer, mechanism = mech.name(), "SASL exchange started");
        self.state = State::Running {
            mechanism: mech.name().to_string(),
        };
        AuthAction::Run(AuthWork::Start {
            mechanism: mech,
            initial,
            context,
        })
    }

    /// The client's response to a challenge, its framing removed (the line of IMAP, SMTP and
    /// POP3; the string of ManageSieve).
    pub fn client_response(&mut self, response: &[u8]) -> AuthAction {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::AwaitingClient {
                mechanism,
                mut exchange,
            } => match decode_response(response) {
                // The exchange knows whether it had refused the credentials already.
                Ok(ClientResponse::Abort) => {
                    let failure = exchange.abort();
                    self.fail(mechanism, failure)
                }
                Ok(ClientResponse::Data(response)) => {
                    self.state = State::Running { mechanism };
                    AuthAction::Run(AuthWork::Step { exchange, response })
                }
                Err(BadBase64) => self.fail(mechanism, SaslFailure::InvalidBase64),
            },
            State::AwaitingSuccessAck {
                mechanism,
                identity,
            } => match decode_response(response) {
                Ok(ClientResponse::Data(data)) if data.is_empty() => {
                    self.succeed(mechanism, identity, None)
                }
                Ok(ClientResponse::Abort) => self.fail(mechanism, SaslFailure::Aborted),
                Ok(ClientResponse::Data(_)) => self.fail(
                    mechanism,
                    SaslFailure::Malformed("non-empty reply to success data".into()),
                ),
                Err(BadBase64) => self.fail(mechanism, SaslFailure::InvalidBase64),
            },
            other => {
                // A caller bug, not client input: refuse rather than guess.
                tracing::error!(protocol = ?self.protocol, "SASL response without an exchange waiting for it");
                let mechanism = match other {
                    State::Running { mechanism } => mechanism,
                    _ => String::new(),
                };
                self.fail(
                    mechanism,
                    SaslFailure::Malformed("no exchange waiting for a response".into()),
                )
            }
        }
    }

    /// The result of [`run`] for the work this driver handed out.
    pub fn step_done(&mut self, done: AuthDone) -> AuthAction {
        let mechanism = match std::mem::replace(&mut self.state, State::Idle) {
            State::Running { mechanism } => mechanism,
            _ => {
                tracing::error!(protocol = ?self.protocol, "SASL step result without running work");
                return self.fail(
                    String::new(),
                    SaslFailure::Malformed("unexpected exchange step".into()),
                );
            }
        };
        let AuthDone { exchange, step } = done;
        match step {
            SaslStep::Challenge(bytes) => {
                self.state = State::AwaitingClient {
                    mechanism,
                    exchange,
                };
                AuthAction::Challenge(encode(&bytes))
            }
            SaslStep::Success {
                identity,
                server_data: Some(data),
            } if !data.is_empty() => match self.success_data {
                SuccessData::AsChallenge => {
                    self.state = State::AwaitingSuccessAck {
                        mechanism,
                        identity,
                    };
                    AuthAction::Challenge(encode(&data))
                }
                SuccessData::InFinalReply => self.succeed(mechanism, identity, Some(encode(&data))),
            },
            SaslStep::Success { identity, .. } => self.succeed(mechanism, identity, None),
            SaslStep::Failure(failure) => self.fail(mechanism, failure),
        }
    }

    /// Drops a running exchange (protocol error, connection end). Not counted.
    pub fn cancel(&mut self) {
        self.state = State::Idle;
    }

    /// The outcome of a login without SASL (IMAP LOGIN, POP3 USER/PASS), counted like one.
    pub fn password_checked(
        &mut self,
        command: &str,
        result: Result<String, SaslFailure>,
    ) -> AuthAction {
        match result {
            Ok(user) => self.succeed(
                command.to_string(),
                SaslIdentity {
                    authentication_id: user.clone(),
                    authorization_id: user,
                    token: None,
                },
                None,
            ),
            Err(failure) => self.fail(command.to_string(), failure),
        }
    }

    /// A refusal decided by the protocol itself (e.g. bad base64 it found first), counted
    /// like one from an exchange.
    pub fn refused(&mut self, mechanism: &str, failure: SaslFailure) -> AuthAction {
        self.state = State::Idle;
        self.fail(mechanism.to_string(), failure)
    }

    fn succeed(
        &mut self,
        mechanism: String,
        identity: SaslIdentity,
        data: Option<String>,
    ) -> AuthAction {
        self.state = State::Idle;
        tracing::info!(
            protocol = ?self.protocol,
            peer = ?self.peer,
            mechanism = %mechanism,
            user = %identity.authorization_id,
            authcid = %identity.authentication_id,
            sid = ?identity.token.as_ref().and_then(|t| t.sid.as_deref()),
            "login"
        );
        AuthAction::Success {
            identity,
            mechanism,
            data,
        }
    }

    fn fail(&mut self, mechanism: String, failure: SaslFailure) -> AuthAction {
        self.state = State::Idle;
        if failure.counts_as_failure() {
            self.failures += 1;
        }
        let close = self.failures >= self.max_failures;
        tracing::info!(
            protocol = ?self.protocol,
            peer = ?self.peer,
            mechanism = %mechanism,
            reason = %failure,
            failures = self.failures,
            close,
            "authentication failed"
        );
        AuthAction::Failure {
            failure,
            mechanism,
            close,
        }
    }
}

/// [`verify_password`] under the failed-login budget of `peer` and the user name: what IMAP
/// LOGIN and POP3 USER/PASS call. A throttled attempt is refused without asking the directory.
pub async fn verify_password_throttled(
    backends: &AuthBackends,
    peer: Option<SocketAddr>,
    user: &[u8],
    password: &[u8],
) -> Result<String, SaslFailure> {
    let (Ok(name), false) = (std::str::from_utf8(user), password.is_empty()) else {
        // Refused below without the directory: nothing to count.
        return verify_password(backends.directory.as_ref(), user, password).await;
    };
    if name.is_empty() {
        return verify_password(backends.directory.as_ref(), user, password).await;
    }
    let attempt = backends.admit_login(peer, Some(name)).await?;
    let result = verify_password(backends.directory.as_ref(), user, password).await;
    match &result {
        Ok(_) => attempt.succeeded().await,
        Err(SaslFailure::InvalidCredentials { .. }) => attempt.failed().await,
        Err(_) => {}
    }
    result
}

/// A password login outside SASL (IMAP LOGIN, POP3 USER/PASS): the canonical user, or why not.
pub async fn verify_password(
    directory: &dyn Directory,
    user: &[u8],
    password: &[u8],
) -> Result<String, SaslFailure> {
    let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
    else {
        return Err(SaslFailure::InvalidCredentials {
            reason: "credentials_not_utf8".into(),
        });
    };
    if user.is_empty() || password.is_empty() {
        // Never ask the directory: an empty-password LDAP bind is anonymous and succeeds.
        return Err(SaslFailure::InvalidCredentials {
            reason: "empty_credentials".into(),
        });
    }
    match directory.verify_password(user, password).await {
        Ok(Some(canonical)) => Ok(canonical),
        Ok(None) => Err(SaslFailure::InvalidCredentials {
            reason: format!("bad_password for {user:?}"),
        }),
        Err(e) => Err(SaslFailure::TemporaryFailure(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
