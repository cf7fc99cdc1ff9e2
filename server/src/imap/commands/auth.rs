//! AUTHENTICATE and LOGIN through the protocol-neutral SASL driver. The only place where
//! `SaslFailure` becomes an IMAP reply.

use crate::auth::sasl::{AuthAction, AuthDone, SaslFailure, SaslIdentity};
use crate::imap::response::{self, Status};
use crate::imap::session::{Event, Mode, Next, Session};

/// The wire reply of each failure (Dovecot's texts; RFC 5530 codes).
pub fn failure_reply(failure: &SaslFailure) -> (Status, Option<&'static str>, &'static str) {
    match failure {
        SaslFailure::InvalidCredentials { .. } => (
            Status::No,
            Some("AUTHENTICATIONFAILED"),
            "Authentication failed.",
        ),
        SaslFailure::DelegationForbidden { .. } => (
            Status::No,
            Some("AUTHORIZATIONFAILED"),
            "Authorization failed: not allowed to act as that user.",
        ),
        SaslFailure::TemporaryFailure(_) => (
            Status::No,
            Some("UNAVAILABLE"),
            "Temporary authentication failure.",
        ),
        SaslFailure::Malformed(_) => (Status::Bad, None, "Malformed SASL message."),
        SaslFailure::InvalidBase64 => (Status::Bad, None, BAD_BASE64),
        // RFC 3501 6.2.2: a cancelled AUTHENTICATE gets BAD, refused credentials or not.
        SaslFailure::Aborted | SaslFailure::AbortedAfterRefusal { .. } => {
            (Status::Bad, None, "Authentication aborted by client.")
        }
        SaslFailure::MechanismUnavailable(_) => {
            (Status::No, None, "Unsupported authentication mechanism.")
        }
        SaslFailure::EncryptionRequired(_) => {
            (Status::No, Some("PRIVACYREQUIRED"), PRIVACY_REQUIRED)
        }
        // Temporary: the credentials were not checked, so nothing says they are wrong.
        SaslFailure::Throttled { .. } => (Status::No, Some("UNAVAILABLE"), THROTTLED),
    }
}

/// The reply to an attempt refused by the failed-login budget (`[login_throttle]`).
pub const THROTTLED: &str =
    "Too many failed logins from this address or for this user; try again later.";
const BAD_BASE64: &str = "Invalid base64 data in continued response.";
const PRIVACY_REQUIRED: &str = "Plaintext authentication disallowed on non-secure connections.";

impl Session {
    /// `AUTHENTICATE <mechanism> [initial-response]`; `ir` is the raw base64 (or `=`).
    pub(in crate::imap) fn authenticate(
        &mut self,
        tag: &str,
        mechanism: &str,
        ir: Option<&[u8]>,
    ) -> Next {
        let context = self.session_context();
        let action = self.sasl.start(&self.ctx.registry, mechanism, ir, context);
        self.auth_action(tag.to_string(), action)
    }

    /// Answer to [`Event::Auth`].
    pub fn auth_done(&mut self, done: AuthDone) -> Next {
        let Mode::Authenticate { tag } = std::mem::replace(&mut self.mode, Mode::Command) else {
            tracing::error!(peer = ?self.peer, "IMAP: SASL result without an AUTHENTICATE");
            return Next::Close;
        };
        let action = self.sasl.step_done(done);
        self.auth_action(tag, action)
    }

    /// A client line during AUTHENTICATE: base64 data or `*`.
    pub(in crate::imap) fn authenticate_line(&mut self, tag: String, line: &[u8]) -> Next {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let action = self.sasl.client_response(line);
        self.auth_action(tag, action)
    }

    fn auth_action(&mut self, tag: String, action: AuthAction) -> Next {
        match action {
            AuthAction::Run(work) => {
                self.mode = Mode::Authenticate { tag };
                Next::Event(Event::Auth(work))
            }
            AuthAction::Challenge(text) => {
                response::continuation(&mut self.out, &text);
                self.mode = Mode::Authenticate { tag };
                Next::Continue
            }
            AuthAction::Success { identity, .. } => self.logged_in(&tag, identity),
            AuthAction::Failure { failure, close, .. } => {
                let (status, code, text) = failure_reply(&failure);
                response::status(&mut self.out, &tag, status, code, text);
                if close {
                    self.too_many_failures()
                } else {
                    Next::Continue
                }
            }
        }
    }

    /// An AUTHENTICATE command imap-codec refused: with an initial response, it is bad base64.
    pub(in crate::imap) fn authenticate_syntax_error(&mut self, bytes: &[u8]) -> Option<Next> {
        let line = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let [tag, command, mechanism, _ir] = words.as_slice() else {
            return None;
        };
        if !command.eq_ignore_ascii_case(b"AUTHENTICATE") || self.user.is_some() {
            return None;
        }
        let tag = crate::imap::framing::tag_of(tag)?;
        let mechanism = String::from_utf8_lossy(mechanism);
        let action = self.sasl.refused(&mechanism, SaslFailure::InvalidBase64);
        Some(self.auth_action(tag, action))
    }

    /// `LOGIN user password`: only where plaintext authentication is allowed.
    pub(in crate::imap) fn login(&mut self, tag: &str, user: &[u8], pass: &[u8]) -> Next {
        if !self.session_context().plaintext_allowed() {
            let action = self
                .sasl
                .refused("LOGIN", SaslFailure::EncryptionRequired("LOGIN".into()));
            return self.auth_action(tag.to_string(), action);
        }
        self.mode = Mode::Authenticate {
            tag: tag.to_string(),
        };
        Next::Event(Event::CheckPassword {
            user: user.to_vec(),
            password: pass.to_vec(),
        })
    }

    /// Answer to [`Event::CheckPassword`].
    pub fn password_checked(&mut self, result: Result<String, SaslFailure>) -> Next {
        let Mode::Authenticate { tag } = std::mem::replace(&mut self.mode, Mode::Command) else {
            tracing::error!(peer = ?self.peer, "IMAP: password result without a LOGIN");
            return Next::Close;
        };
        let action = self.sasl.password_checked("LOGIN", result);
        self.auth_action(tag, action)
    }

    fn logged_in(&mut self, tag: &str, identity: SaslIdentity) -> Next {
        let user = identity.authorization_id;
        self.ctx.store.ensure_user(&user);
        self.user = Some(user);
        self.token = identity.token;
        let caps = format!("CAPABILITY {}", self.capabilities());
        self.ok_code(tag, &caps, "Logged in");
        Next::Continue
    }

    fn too_many_failures(&mut self) -> Next {
        response::status(
            &mut self.out,
            "*",
            Status::Bye,
            None,
            "Too many invalid authentication attempts.",
        );
        Next::Close
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
        assert_eq!(failure_reply(&deleg).1, Some("AUTHORIZATIONFAILED"));
        assert_eq!(
            failure_reply(&SaslFailure::EncryptionRequired("PLAIN".into())),
            (Status::No, Some("PRIVACYREQUIRED"), PRIVACY_REQUIRED)
        );
        assert_eq!(
            failure_reply(&SaslFailure::InvalidBase64),
            (Status::Bad, None, BAD_BASE64)
        );
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
