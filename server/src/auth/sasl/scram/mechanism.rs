//! The SCRAM exchange: client-first -> server-first (challenge) -> client-final -> success
//! with the server signature. One type serves both mechanisms; `plus` selects -PLUS.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::crypto;
use super::messages::{
    CbFlag, ScramError, ServerError, ServerFinal, ServerFirst, parse_client_final,
    parse_client_first,
};
use crate::auth::AuthBackends;
use crate::auth::directory::{ScramSecret, ScramUser};
use crate::auth::sasl::plain::{authorization_id, fail, finished, temporary};
use crate::auth::sasl::{
    ChannelBinding, SaslExchange, SaslFailure, SaslIdentity, SaslMechanism, SaslStep,
    SessionContext,
};
use crate::auth::throttle::Attempt;

const NAME: &str = "SCRAM-SHA-256";
const NAME_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel-binding type we bind to (RFC 9266; `tls-unique` is unsafe in TLS 1.3).
const TLS_EXPORTER: &str = "tls-exporter";

/// Makes the server's part of the nonce. Production draws 24 random bytes; tests inject a
/// fixed one to replay RFC vectors.
pub type NonceSource = Arc<dyn Fn() -> String + Send + Sync>;

/// 24 random bytes, base64: 32 printable characters without `,` (RFC 5802 asks for a nonce
/// that is hard to predict; 18 bytes or more is the usual bar).
fn random_nonce() -> String {
    STANDARD.encode(rand::random::<[u8; 24]>())
}

/// SCRAM-SHA-256 or SCRAM-SHA-256-PLUS.
#[derive(Clone)]
pub struct ScramSha256 {
    backends: AuthBackends,
    plus: bool,
    /// Whether SCRAM-SHA-256-PLUS is offered beside this (non-PLUS) mechanism. Assumed until
    /// the registry says otherwise: refusing a `y` client is the safe mistake.
    plus_offered: bool,
    nonces: NonceSource,
}

impl ScramSha256 {
    /// SCRAM-SHA-256.
    pub fn new(backends: AuthBackends) -> Self {
        Self {
            backends,
            plus: false,
            plus_offered: true,
            nonces: Arc::new(random_nonce),
        }
    }

    /// SCRAM-SHA-256-PLUS: the same, bound to the session's `tls-exporter` channel binding.
    pub fn plus(backends: AuthBackends) -> Self {
        Self {
            plus: true,
            ..Self::new(backends)
        }
    }

    /// Replaces the source of server nonces (e.g. a fixed one to replay test vectors).
    pub fn with_nonces(self, nonces: NonceSource) -> Self {
        Self { nonces, ..self }
    }
}

/// The session's binding if it is one we can use.
fn tls_exporter(ctx: &SessionContext) -> Option<&ChannelBinding> {
    ctx.channel_binding
        .as_ref()
        .filter(|cb| cb.kind == TLS_EXPORTER && !cb.data.is_empty())
}

impl SaslMechanism for ScramSha256 {
    fn name(&self) -> &str {
        if self.plus { NAME_PLUS } else { NAME }
    }

    fn available(&self, ctx: &SessionContext) -> bool {
        // No password travels, so unlike PLAIN no TLS is needed; but without secrets in the
        // directory every login would fail.
        self.backends.directory.has_scram_secrets() && (!self.plus || tls_exporter(ctx).is_some())
    }

    fn start(&self, initial: Option<&[u8]>, ctx: &SessionContext) -> Box<dyn SaslExchange> {
        let plus_usable = self.backends.directory.has_scram_secrets()
            && self.plus_offered
            && tls_exporter(ctx).is_some();
        Box::new(ScramExchange {
            backends: self.backends.clone(),
            peer: ctx.peer,
            plus: self.plus,
            channel_binding: tls_exporter(ctx).map(|cb| cb.data.clone()),
            plus_usable,
            nonces: self.nonces.clone(),
            state: State::Start {
                initial: initial.map(<[u8]>::to_vec),
            },
        })
    }

    fn with_siblings(&self, offered: &[String]) -> Option<Arc<dyn SaslMechanism>> {
        if self.plus {
            return None;
        }
        Some(Arc::new(Self {
            plus_offered: offered.iter().any(|n| n == NAME_PLUS),
            ..self.clone()
        }))
    }
}

enum State {
    /// Nothing sent yet; `initial` is the SASL-IR given to `start`, if any.
    Start {
        initial: Option<Vec<u8>>,
    },
    /// The empty challenge went out; the next message is the client-first.
    AwaitingClientFirst,
    /// The server-first went out; the next message is the client-final.
    AwaitingClientFinal(Box<Pending>),
    Done,
}

/// What checking the client-final needs.
struct Pending {
    /// The user name as sent (saslname decoded).
    authcid: String,
    authzid: String,
    account: Account,
    /// What `c=` must decode to: the GS2 header, then the channel-binding data for -PLUS.
    expected_cbind: Vec<u8>,
    /// Client nonce followed by ours.
    nonce: String,
    client_first_bare: String,
    server_first: String,
    /// The failed-login budget's admission, told whether the proof matched.
    attempt: Attempt,
}

enum Account {
    Known(ScramUser),
    /// Unknown user, or one without a SCRAM secret: the exchange runs on a fake secret so the
    /// client cannot tell, and fails at the proof.
    Unknown(ScramSecret),
}

struct ScramExchange {
    backends: AuthBackends,
    /// For the failed-login budget.
    peer: Option<std::net::SocketAddr>,
    plus: bool,
    /// The session's `tls-exporter` data, if any.
    channel_binding: Option<Vec<u8>>,
    /// SCRAM-SHA-256-PLUS is offered and usable in this session: a `y` client (it supports
    /// channel binding but saw no -PLUS) means someone removed -PLUS from the list it saw.
    plus_usable: bool,
    nonces: NonceSource,
    state: State,
}

#[async_trait]
impl SaslExchange for ScramExchange {
    async fn step(&mut self, client: Option<&[u8]>) -> SaslStep {
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, client) {
            (State::Start { initial }, client) => match client.map(<[u8]>::to_vec).or(initial) {
                Some(message) => self.client_first(&message).await,
                None => {
                    // No initial response: the client-first comes after an empty challenge.
                    self.state = State::AwaitingClientFirst;
                    SaslStep::Challenge(Vec::new())
                }
            },
            (State::AwaitingClientFirst, Some(message)) => self.client_first(message).await,
            (State::AwaitingClientFinal(pending), Some(message)) => {
                self.client_final(*pending, message).await
            }
            (State::AwaitingClientFirst | State::AwaitingClientFinal(_), None) => {
                fail(SaslFailure::Malformed("missing SCRAM message".into()))
            }
            (State::Done, _) => finished(),
        }
    }
}

impl ScramExchange {
    async fn client_first(&mut self, message: &[u8]) -> SaslStep {
        if self.plus && self.channel_binding.is_none() {
            return fail(SaslFailure::MechanismUnavailable(format!(
                "{NAME_PLUS} needs a TLS 1.3 channel binding ({TLS_EXPORTER})"
            )));
        }
        let first = match parse_client_first(message) {
            Ok(first) => first,
            Err(e) => return refuse(e),
        };
        if let Err(e) = self.check_flag(&first.flag) {
            return refuse(e);
        }
        // The budget is asked before the directory, as for PLAIN.
        let attempt = match self
            .backends
            .admit_login(self.peer, Some(&first.username))
            .await
        {
            Ok(attempt) => attempt,
            Err(refusal) => return fail(refusal.into()),
        };
        let account = match self.backends.directory.scram_sha256(&first.username).await {
            Ok(Some(user)) => Account::Known(user),
            Ok(None) => Account::Unknown(fake_secret(&first.username)),
            Err(e) => return fail(temporary(e)),
        };
        let secret = match &account {
            Account::Known(user) => &user.secret,
            Account::Unknown(secret) => secret,
        };
        let server_first = ServerFirst {
            nonce: format!("{}{}", first.nonce, (self.nonces)()),
            salt: secret.salt.clone(),
            iterations: secret.iterations,
        };
        let mut expected_cbind = first.gs2_header.into_bytes();
        if self.plus {
            expected_cbind.extend_from_slice(self.channel_binding.as_deref().unwrap_or_default());
        }
        let challenge = server_first.to_string();
        self.state = State::AwaitingClientFinal(Box::new(Pending {
            authcid: first.username,
            authzid: first.authzid,
            account,
            expected_cbind,
            nonce: server_first.nonce,
            client_first_bare: first.bare,
            server_first: challenge.clone(),
            attempt,
        }));
        SaslStep::Challenge(challenge.into_bytes())
    }

    /// The GS2 channel-binding flag against the mechanism and the session (RFC 5802 section 6).
    fn check_flag(&self, flag: &CbFlag) -> Result<(), ScramError> {
        match (self.plus, flag) {
            (true, CbFlag::Used(name)) if name == TLS_EXPORTER => Ok(()),
            (true, CbFlag::Used(name)) => Err(ScramError::new(
                ServerError::UnsupportedChannelBindingType,
                format!("channel binding {name:?}; only {TLS_EXPORTER} is supported"),
            )),
            (true, _) => Err(ScramError::new(
                ServerError::InvalidEncoding,
                format!("{NAME_PLUS} needs the p={TLS_EXPORTER} flag"),
            )),
            (false, CbFlag::Used(_)) => Err(ScramError::new(
                ServerError::ChannelBindingNotSupported,
                format!("channel binding requested with {NAME}; use {NAME_PLUS}"),
            )),
            (false, CbFlag::ClientOnly) if self.plus_usable => Err(ScramError::new(
                ServerError::ServerDoesSupportChannelBinding,
                format!("client supports channel binding and {NAME_PLUS} is offered: downgrade?"),
            )),
            (false, _) => Ok(()),
        }
    }

    async fn client_final(&mut self, pending: Pending, message: &[u8]) -> SaslStep {
        let last = match parse_client_final(message) {
            Ok(last) => last,
            Err(e) => return refuse(e),
        };
        if last.nonce != pending.nonce {
            return refuse(ScramError::new(
                ServerError::OtherError,
                "nonce differs from the server-first's",
            ));
        }
        if !crypto::ct_eq(&last.channel_binding, &pending.expected_cbind) {
            return refuse(ScramError::new(
                ServerError::ChannelBindingsDontMatch,
                "c= is not the GS2 header and channel binding of this session",
            ));
        }
        let auth_message = format!(
            "{},{},{}",
            pending.client_first_bare, pending.server_first, last.without_proof
        );
        let user = match pending.account {
            Account::Known(user) => user,
            Account::Unknown(secret) => {
                // Same work as a real check, then the same refusal as a wrong password.
                let _ =
                    crypto::verify_proof(&secret.stored_key, auth_message.as_bytes(), &last.proof);
                tracing::info!(user = %pending.authcid, "SCRAM: unknown user or no SCRAM secret");
                pending.attempt.failed().await;
                return refuse(invalid_proof());
            }
        };
        if !crypto::verify_proof(
            &user.secret.stored_key,
            auth_message.as_bytes(),
            &last.proof,
        ) {
            tracing::info!(user = %user.canonical, "SCRAM: wrong proof");
            pending.attempt.failed().await;
            return refuse(invalid_proof());
        }
        pending.attempt.succeeded().await;
        // Credentials first, then the authzid: the same order and rule as PLAIN.
        let authorization_id = match authorization_id(
            &self.backends,
            &pending.authcid,
            &user.canonical,
            &pending.authzid,
        )
        .await
        {
            Ok(id) => id,
            Err(failure) => return fail(failure),
        };
        let signature = crypto::server_signature(&user.secret.server_key, auth_message.as_bytes());
        tracing::debug!(
            authcid = %user.canonical,
            authzid = %authorization_id,
            plus = self.plus,
            "SASL authentication succeeded"
        );
        SaslStep::Success {
            identity: SaslIdentity {
                authentication_id: user.canonical,
                authorization_id,
                token: None,
            },
            server_data: Some(
                ServerFinal::Verifier(signature.to_vec())
                    .to_string()
                    .into_bytes(),
            ),
        }
    }
}

fn invalid_proof() -> ScramError {
    ScramError::new(
        ServerError::InvalidProof,
        "proof does not match the stored key",
    )
}

/// The SASL outcome of an RFC 5802 error. The `e=` value leads the reason for logs; front ends
/// reply with their usual failure lines, not a server-final.
fn refuse(e: ScramError) -> SaslStep {
    // The server-final a protocol with room for it would send; ours reply in their own words.
    tracing::debug!(server_final = %ServerFinal::Error(e.kind), detail = %e.detail, "SCRAM refused");
    fail(match e.kind {
        ServerError::InvalidProof
        | ServerError::ChannelBindingsDontMatch
        | ServerError::ServerDoesSupportChannelBinding => SaslFailure::InvalidCredentials {
            reason: e.kind.as_str().to_string(),
        },
        _ => SaslFailure::Malformed(e.to_string()),
    })
}

/// Key of the fake salts; per process, so every listener and both mechanisms show the same
/// salt for the same unknown name, as they would for a real user.
static FAKE_SALT_KEY: OnceLock<crypto::Key> = OnceLock::new();

/// A deterministic stand-in secret for a name the directory has no SCRAM secret for: repeated
/// attempts see a stable salt and the default iteration count, like a real user's.
fn fake_secret(username: &str) -> ScramSecret {
    let key = FAKE_SALT_KEY.get_or_init(rand::random);
    // Lower case: directories match names ignoring case, so "Bob" and "bob" get one salt.
    let digest = crypto::hmac(key, username.to_lowercase().as_bytes());
    ScramSecret {
        iterations: ScramSecret::MIN_ITERATIONS,
        salt: digest[..ScramSecret::SALT_LEN].to_vec(),
        stored_key: crypto::hmac(key, &digest),
        server_key: [0; crypto::KEY_LEN],
    }
}
