//! SMTP replies (RFC 5321 section 4.2) with RFC 3463 enhanced status codes. Every fixed reply
//! text lives here, so the wire strings can be checked in one place.

use crate::auth::sasl::SaslFailure;

use super::command::CommandError;

/// One (possibly multi-line) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Text of each line; the enhanced status code, when any, is part of the text.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            lines: vec![text.into()],
        }
    }

    pub fn multiline(code: u16, lines: Vec<String>) -> Self {
        Self { code, lines }
    }

    /// Wire form: `250-first\r\n250 last\r\n`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{} \r\n", self.code).as_bytes());
        }
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{sep}{line}\r\n", self.code).as_bytes());
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// 4xx and 5xx replies.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    pub fn greeting(hostname: &str) -> Self {
        Self::new(220, format!("{hostname} ESMTP mail-oidc"))
    }
    pub fn ok() -> Self {
        Self::new(250, "2.0.0 Ok")
    }
    pub fn sender_ok() -> Self {
        Self::new(250, "2.1.0 Ok")
    }
    pub fn recipient_ok() -> Self {
        Self::new(250, "2.1.5 Ok")
    }
    pub fn queued(id: &str) -> Self {
        Self::new(250, format!("2.0.0 Ok: queued as {id}"))
    }
    pub fn bye() -> Self {
        Self::new(221, "2.0.0 Bye")
    }
    pub fn help() -> Self {
        Self::new(214, "2.0.0 See RFC 5321")
    }
    pub fn cannot_vrfy() -> Self {
        Self::new(252, "2.5.2 Cannot VRFY user")
    }
    pub fn expn_not_implemented() -> Self {
        Self::new(502, "5.5.1 EXPN not implemented")
    }
    pub fn start_data() -> Self {
        Self::new(354, "End data with <CR><LF>.<CR><LF>")
    }
    pub fn ready_for_tls() -> Self {
        Self::new(220, "2.0.0 Ready to start TLS")
    }
    pub fn tls_not_available() -> Self {
        Self::new(502, "5.5.1 STARTTLS not available")
    }
    pub fn tls_already_active() -> Self {
        Self::new(503, "5.5.1 TLS already active")
    }
    pub fn bad_sequence() -> Self {
        Self::new(503, "5.5.1 Bad sequence of commands")
    }
    pub fn need_helo() -> Self {
        Self::new(503, "5.5.1 Bad sequence of commands: send EHLO first")
    }
    pub fn nested_mail() -> Self {
        Self::new(503, "5.5.1 Bad sequence of commands: nested MAIL command")
    }
    pub fn need_mail() -> Self {
        Self::new(503, "5.5.1 Bad sequence of commands: need MAIL command")
    }
    pub fn no_valid_recipients() -> Self {
        Self::new(503, "5.5.1 Bad sequence of commands: no valid recipients")
    }
    pub fn line_too_long() -> Self {
        Self::new(500, "5.5.2 Line too long")
    }
    pub fn too_many_errors() -> Self {
        Self::new(421, "4.7.0 Too many errors")
    }
    /// The session was ended from outside (logout at the IdP, revocation, token expiry).
    pub fn session_ended(text: &str) -> Self {
        Self::new(421, format!("4.7.0 {text}"))
    }

    pub fn timeout() -> Self {
        Self::new(421, "4.4.2 Timeout")
    }
    /// RFC 3463 4.3.2: the system is not accepting network messages.
    pub fn shutting_down() -> Self {
        Self::new(421, "4.3.2 Server shutting down, try again later")
    }
    pub fn auth_required() -> Self {
        Self::new(530, "5.7.0 Authentication required")
    }
    pub fn sender_not_owned() -> Self {
        Self::new(553, "5.7.1 Sender address not owned by user")
    }
    /// After DATA: the message's `From:` names someone else (the envelope was checked at MAIL).
    pub fn from_header_not_owned() -> Self {
        Self::new(550, "5.7.1 From header address not owned by user")
    }
    pub fn size_exceeded() -> Self {
        Self::new(552, "5.3.4 Message size exceeds fixed maximum message size")
    }
    pub fn message_too_big() -> Self {
        Self::new(552, "5.3.4 Message too big")
    }
    pub fn too_many_recipients() -> Self {
        Self::new(452, "4.5.3 Too many recipients")
    }
    pub fn relay_denied() -> Self {
        Self::new(550, "5.7.1 Relay access denied")
    }
    pub fn unknown_user(address: &str) -> Self {
        Self::new(
            550,
            format!("5.1.1 <{address}>: Recipient address rejected: User unknown"),
        )
    }
    /// Too many refused recipients in one session (directory enumeration): the session ends.
    pub fn too_many_recipient_refusals() -> Self {
        Self::new(421, "4.7.0 Too many recipient refusals, closing connection")
    }
    /// The server-wide budget of message bytes in flight is spent (at DATA, or after the data).
    pub fn insufficient_storage() -> Self {
        Self::new(452, "4.3.1 Insufficient system storage")
    }
    pub fn directory_failure() -> Self {
        Self::new(451, "4.3.0 Temporary directory failure")
    }
    /// RCPT of a user whose quota is used up (RFC 3463 X.2.2, mailbox full): try later.
    pub fn mailbox_full(address: &str) -> Self {
        Self::new(452, format!("4.2.2 <{address}>: Mailbox full"))
    }
    /// After DATA: the message does not fit in a recipient's quota; nothing was stored.
    pub fn over_quota(user: &str) -> Self {
        Self::new(
            552,
            format!("5.2.2 <{user}>: Mailbox full, message not delivered to any recipient"),
        )
    }
    pub fn store_failure() -> Self {
        Self::new(
            451,
            "4.3.0 Temporary failure storing the message, try again later",
        )
    }

    // AUTH (RFC 4954).
    pub fn auth_success() -> Self {
        Self::new(235, "2.7.0 Authentication successful")
    }
    /// `334 <base64>`; `334 ` when the challenge is empty.
    pub fn auth_challenge(encoded: String) -> Self {
        Self::new(334, encoded)
    }
    pub fn auth_not_on_this_port() -> Self {
        Self::new(503, "5.5.1 AUTH not available on this port")
    }
    pub fn already_authenticated() -> Self {
        Self::new(503, "5.5.1 Already authenticated")
    }
    pub fn auth_in_transaction() -> Self {
        Self::new(503, "5.5.1 AUTH not permitted during a mail transaction")
    }
    pub fn unknown_mechanism() -> Self {
        Self::new(504, "5.5.4 Unrecognized authentication type")
    }
    pub fn encryption_required() -> Self {
        Self::new(
            538,
            "5.7.11 Encryption required for requested authentication mechanism",
        )
    }
    pub fn invalid_base64() -> Self {
        Self::new(501, "5.5.2 Invalid base64 data")
    }
    pub fn too_many_auth_failures() -> Self {
        Self::new(421, "4.7.0 Too many authentication failures")
    }

    /// The one mapping from a SASL failure to the SMTP wire (Dovecot's replies).
    pub fn sasl_failure(failure: &SaslFailure) -> Self {
        match failure {
            SaslFailure::InvalidCredentials { .. } => {
                Self::new(535, "5.7.8 Authentication credentials invalid")
            }
            // RFC 4954 has no code of its own for a refused authorization identity.
            SaslFailure::DelegationForbidden { .. } => Self::new(
                535,
                "5.7.8 Authorization failed: not allowed to act as that user",
            ),
            SaslFailure::TemporaryFailure(_) => {
                Self::new(454, "4.7.0 Temporary authentication failure")
            }
            SaslFailure::Malformed(_) => Self::new(501, "5.5.2 Malformed SASL message"),
            // RFC 4954 4: a cancelled AUTH gets 501, refused credentials or not.
            SaslFailure::Aborted | SaslFailure::AbortedAfterRefusal { .. } => {
                Self::new(501, "5.7.0 Authentication aborted")
            }
            SaslFailure::MechanismUnavailable(_) => Self::unknown_mechanism(),
            SaslFailure::EncryptionRequired(_) => Self::encryption_required(),
            SaslFailure::InvalidBase64 => Self::invalid_base64(),
            // Temporary (RFC 4954's 454): the credentials were not checked, so nothing says
            // they are wrong.
            SaslFailure::Throttled { .. } => Self::new(
                454,
                "4.7.0 Too many failed logins from this address or for this user; try again later",
            ),
        }
    }

    /// The one mapping from a parse error to the wire.
    pub fn command_error(error: &CommandError) -> Self {
        match error {
            CommandError::Unrecognized(_) => Self::new(500, "5.5.2 Command unrecognized"),
            CommandError::Syntax(what) => Self::new(501, format!("5.5.4 Syntax error: {what}")),
            CommandError::UnsupportedParameter(_) => Self::new(555, "5.5.4 Unsupported parameter"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_single_and_multi_line() {
        assert_eq!(Reply::ok().to_bytes(), b"250 2.0.0 Ok\r\n");
        assert_eq!(
            Reply::multiline(250, vec!["a".into(), "b".into(), "c".into()]).to_bytes(),
            b"250-a\r\n250-b\r\n250 c\r\n"
        );
        assert_eq!(Reply::auth_challenge(String::new()).to_bytes(), b"334 \r\n");
    }

    #[test]
    fn sasl_failures_map_to_dovecot_replies() {
        let code = |f: SaslFailure| Reply::sasl_failure(&f).to_bytes();
        assert_eq!(
            code(SaslFailure::InvalidCredentials { reason: "x".into() }),
            b"535 5.7.8 Authentication credentials invalid\r\n"
        );
        assert_eq!(
            code(SaslFailure::DelegationForbidden {
                authcid: "a".into(),
                authzid: "b".into()
            }),
            b"535 5.7.8 Authorization failed: not allowed to act as that user\r\n"
        );
        assert_eq!(
            code(SaslFailure::EncryptionRequired("PLAIN".into())),
            b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
        );
        assert_eq!(
            code(SaslFailure::InvalidBase64),
            b"501 5.5.2 Invalid base64 data\r\n"
        );
        assert_eq!(
            code(SaslFailure::TemporaryFailure("idp".into())),
            b"454 4.7.0 Temporary authentication failure\r\n"
        );
        assert_eq!(
            code(SaslFailure::Malformed("gs2".into())),
            b"501 5.5.2 Malformed SASL message\r\n"
        );
        assert_eq!(
            code(SaslFailure::Aborted),
            b"501 5.7.0 Authentication aborted\r\n"
        );
    }
}
