//! AUTHENTICATE (driving the SASL SPI) and LOGIN. The only place where `SaslFailure` becomes an
//! IMAP reply.

use base64::Engine as _;
use imap_codec::AuthenticateDataCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::auth::AuthenticateData;

use crate::auth::sasl::{SaslExchange, SaslFailure, SaslIdentity, SaslStep};
use crate::imap::response::{self, Status};
use crate::imap::session::{Mode, Next, Session};

/// A running AUTHENTICATE command.
pub struct AuthInProgress {
    pub tag: String,
    pub mechanism: String,
    pub exchange: Box<dyn SaslExchange>,
    /// Success came with additional data, sent as a last challenge; the client's empty answer
    /// completes the login (RFC 3501 has no other way to carry it).
    pub pending: Option<SaslIdentity>,
}

/// The wire reply of each failure (Dovecot's texts).
pub fn failure_reply(failure: &SaslFailure) -> (Status, Option<&'static str>, &'static str) {
    match failure {
        SaslFailure::InvalidCredentials { .. } | SaslFailure::DelegationForbidden { .. } => (
            Status::No,
            Some("AUTHENTICATIONFAILED"),
            "Authentication failed.",
        ),
        SaslFailure::TemporaryFailure(_) => (
            Status::No,
            Some("UNAVAILABLE"),
            "Temporary authentication failure.",
        ),
        SaslFailure::Malformed(_) => (Status::Bad, None, "Malformed SASL message."),
        // RFC 3501 6.2.2: a cancelled AUTHENTICATE gets BAD, refused credentials or not.
        SaslFailure::Aborted | SaslFailure::AbortedAfterRefusal { .. } => {
            (Status::Bad, None, "Authentication aborted by client.")
        }
        SaslFailure::MechanismUnavailable(_) => {
            (Status::No, None, "Unsupported authentication mechanism.")
        }
    }
}

const BAD_BASE64: &str = "Invalid base64 data in continued response.";
const PRIVACY_REQUIRED: &str = "Plaintext authentication disallowed on non-secure connections.";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Session {
    /// `AUTHENTICATE <mechanism> [initial-response]`; `ir` is already base64-decoded.
    pub(in crate::imap) async fn authenticate(
        &mut self,
        tag: &str,
        mechanism: &str,
        ir: Option<Vec<u8>>,
    ) -> Next {
        let sctx = self.session_context();
        if !self.ctx.registry.is_enabled(mechanism) {
            tracing::info!(peer = ?self.peer, mechanism, "IMAP AUTHENTICATE refused: mechanism not enabled");
            self.no(tag, "Unsupported authentication mechanism.");
            return Next::Continue;
        }
        let Some(mech) = self.ctx.registry.get(mechanism, &sctx) else {
            tracing::info!(peer = ?self.peer, mechanism, "IMAP AUTHENTICATE refused: plaintext mechanism before TLS");
            self.no_code(tag, "PRIVACYREQUIRED", PRIVACY_REQUIRED);
            return Next::Continue;
        };
        let mut exchange = mech.start(ir.as_deref(), &sctx);
        let step = exchange.step(ir.as_deref()).await;
        let auth = Box::new(AuthInProgress {
            tag: tag.to_string(),
            mechanism: mech.name().to_string(),
            exchange,
            pending: None,
        });
        self.auth_step(auth, step)
    }

    fn auth_step(&mut self, mut auth: Box<AuthInProgress>, step: SaslStep) -> Next {
        match step {
            SaslStep::Challenge(bytes) => {
                response::continuation(&mut self.out, &b64(&bytes));
                self.mode = Mode::Authenticate(auth);
                Next::Continue
            }
            SaslStep::Success {
                identity,
                server_data: Some(data),
            } if !data.is_empty() => {
                response::continuation(&mut self.out, &b64(&data));
                auth.pending = Some(identity);
                self.mode = Mode::Authenticate(auth);
                Next::Continue
            }
            SaslStep::Success { identity, .. } => self.logged_in(
                &auth.tag,
                identity.authorization_id,
                identity.token,
                &auth.mechanism,
            ),
            SaslStep::Failure(failure) => self.auth_failed(&auth.tag, &auth.mechanism, failure),
        }
    }

    /// A client line during AUTHENTICATE: base64 data or `*`.
    pub(in crate::imap) async fn authenticate_line(
        &mut self,
        mut auth: Box<AuthInProgress>,
        line: &[u8],
    ) -> Next {
        match AuthenticateDataCodec::default().decode(line) {
            Ok((_, AuthenticateData::Cancel)) => {
                let failure = if auth.pending.is_some() {
                    SaslFailure::Aborted
                } else {
                    auth.exchange.abort()
                };
                self.auth_failed(&auth.tag, &auth.mechanism, failure)
            }
            Ok((_, AuthenticateData::Continue(data))) => {
                let data = data.declassify();
                if let Some(identity) = auth.pending.take() {
                    if data.is_empty() {
                        return self.logged_in(
                            &auth.tag,
                            identity.authorization_id,
                            identity.token,
                            &auth.mechanism,
                        );
                    }
                    let failure = SaslFailure::Malformed("non-empty reply to success data".into());
                    return self.auth_failed(&auth.tag, &auth.mechanism, failure);
                }
                let step = auth.exchange.step(Some(data)).await;
                self.auth_step(auth, step)
            }
            Err(_) => {
                tracing::info!(peer = ?self.peer, mechanism = %auth.mechanism, "IMAP AUTHENTICATE: invalid base64 in continuation");
                response::status(&mut self.out, &auth.tag, Status::Bad, None, BAD_BASE64);
                self.count_failure()
            }
        }
    }

    /// An AUTHENTICATE command imap-codec refused: with an initial response, it is bad base64.
    pub(in crate::imap) fn authenticate_syntax_error(&mut self, bytes: &[u8]) -> Option<Next> {
        let line = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let [tag, command, _mechanism, _ir] = words.as_slice() else {
            return None;
        };
        if !command.eq_ignore_ascii_case(b"AUTHENTICATE") || self.user.is_some() {
            return None;
        }
        let tag = crate::imap::framing::tag_of(tag)?;
        tracing::info!(peer = ?self.peer, "IMAP AUTHENTICATE: invalid base64 initial response");
        response::status(&mut self.out, &tag, Status::Bad, None, BAD_BASE64);
        Some(self.count_failure())
    }

    /// `LOGIN user password`: only where plaintext authentication is allowed.
    pub(in crate::imap) async fn login(&mut self, tag: &str, user: &[u8], pass: &[u8]) -> Next {
        if !self.session_context().plaintext_allowed() {
            tracing::info!(peer = ?self.peer, "IMAP LOGIN refused: plaintext before TLS");
            self.no_code(tag, "PRIVACYREQUIRED", PRIVACY_REQUIRED);
            return Next::Continue;
        }
        let (Ok(user), Ok(pass)) = (std::str::from_utf8(user), std::str::from_utf8(pass)) else {
            let failure = SaslFailure::InvalidCredentials {
                reason: "credentials_not_utf8".into(),
            };
            return self.auth_failed(tag, "LOGIN", failure);
        };
        if user.is_empty() || pass.is_empty() {
            // Never ask the directory: an empty-password LDAP bind is anonymous and succeeds.
            let failure = SaslFailure::InvalidCredentials {
                reason: "empty_credentials".into(),
            };
            return self.auth_failed(tag, "LOGIN", failure);
        }
        let directory = self.ctx.backends.directory.clone();
        match directory.verify_password(user, pass).await {
            Ok(Some(canonical)) => self.logged_in(tag, canonical, None, "LOGIN"),
            Ok(None) => {
                let failure = SaslFailure::InvalidCredentials {
                    reason: format!("bad_password for {user:?}"),
                };
                self.auth_failed(tag, "LOGIN", failure)
            }
            Err(e) => self.auth_failed(tag, "LOGIN", SaslFailure::TemporaryFailure(e.to_string())),
        }
    }

    fn logged_in(
        &mut self,
        tag: &str,
        user: String,
        token: Option<crate::auth::sasl::TokenSession>,
        mechanism: &str,
    ) -> Next {
        self.ctx.store.ensure_user(&user);
        tracing::info!(peer = ?self.peer, user = %user, mechanism, tls = self.tls, sid = ?token.as_ref().and_then(|t| t.sid.as_deref()), "IMAP login");
        self.user = Some(user);
        self.token = token;
        let caps = format!("CAPABILITY {}", self.capabilities());
        self.ok_code(tag, &caps, "Logged in");
        Next::Continue
    }

    fn auth_failed(&mut self, tag: &str, mechanism: &str, failure: SaslFailure) -> Next {
        tracing::info!(peer = ?self.peer, mechanism, reason = %failure, "IMAP authentication failed");
        let (status, code, text) = failure_reply(&failure);
        response::status(&mut self.out, tag, status, code, text);
        if !failure.counts_as_failure() {
            return Next::Continue;
        }
        self.count_failure()
    }

    /// One more failed authentication; past the limit the connection ends.
    fn count_failure(&mut self) -> Next {
        self.auth_failures += 1;
        if self.auth_failures >= self.ctx.config.max_auth_failures.max(1) {
            tracing::info!(peer = ?self.peer, failures = self.auth_failures, "IMAP: too many authentication failures, closing");
            response::status(
                &mut self.out,
                "*",
                Status::Bye,
                None,
                "Too many invalid authentication attempts.",
            );
            return Next::Close;
        }
        Next::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_reply() {
        let creds = SaslFailure::InvalidCredentials { reason: "x".into() };
        assert_eq!(
            failure_reply(&creds),
            (
                Status::No,
                Some("AUTHENTICATIONFAILED"),
                "Authentication failed."
            )
        );
        let deleg = SaslFailure::DelegationForbidden {
            authcid: "a".into(),
            authzid: "b".into(),
        };
        assert_eq!(failure_reply(&deleg).1, Some("AUTHENTICATIONFAILED"));
        assert_eq!(
            failure_reply(&SaslFailure::TemporaryFailure("x".into())),
            (
                Status::No,
                Some("UNAVAILABLE"),
                "Temporary authentication failure."
            )
        );
        assert_eq!(
            failure_reply(&SaslFailure::Malformed("x".into())),
            (Status::Bad, None, "Malformed SASL message.")
        );
        assert_eq!(
            failure_reply(&SaslFailure::Aborted),
            (Status::Bad, None, "Authentication aborted by client.")
        );
        assert_eq!(
            failure_reply(&SaslFailure::MechanismUnavailable("x".into())).0,
            Status::No
        );
    }
}
