//! POP3 replies (RFC 1939 3, RFC 2449 response codes). Every fixed reply text lives here, so the
//! wire strings can be checked in one place; [`Reply::sasl_failure`] is the one mapping from a
//! SASL failure to the POP3 wire.

use crate::auth::sasl::SaslFailure;

use super::command::CommandError;
use super::maildrop::MessageError;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK <text>`; an empty text is a bare `+OK`.
    Ok(String),
    /// `-ERR [<code>] <text>` (RFC 2449 RESP-CODES, RFC 3206 SYS/TEMP, SYS/PERM, AUTH).
    Err {
        code: Option<&'static str>,
        text: String,
    },
    /// `+OK <text>`, one line per item, then `.` (items never start with `.`).
    Listing { text: String, items: Vec<String> },
    /// `+OK <text>`, then a message already in its dot-stuffed wire form, then `.`.
    Message { text: String, body: Vec<u8> },
    /// `+ <base64>` (RFC 5034 4): a SASL challenge.
    Continuation(String),
}

impl Reply {
    fn ok(text: impl Into<String>) -> Self {
        Reply::Ok(text.into())
    }

    fn err(code: Option<&'static str>, text: impl Into<String>) -> Self {
        Reply::Err {
            code,
            text: text.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Err { .. })
    }

    /// The response code of an error, for logs.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Reply::Err { code, .. } => *code,
            _ => None,
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let ok_line = |out: &mut Vec<u8>, text: &str| {
            out.extend_from_slice(b"+OK");
            if !text.is_empty() {
                out.push(b' ');
                out.extend_from_slice(text.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        };
        match self {
            Reply::Ok(text) => ok_line(out, text),
            Reply::Err { code, text } => {
                out.extend_from_slice(b"-ERR ");
                if let Some(code) = code {
                    out.extend_from_slice(format!("[{code}] ").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Listing { text, items } => {
                ok_line(out, text);
                for item in items {
                    out.extend_from_slice(item.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b".\r\n");
            }
            Reply::Message { text, body } => {
                ok_line(out, text);
                out.extend_from_slice(body);
                out.extend_from_slice(b".\r\n");
            }
            Reply::Continuation(data) => {
                // RFC 5034 4: `"+" SP [base64]`, so an empty challenge is `+ `.
                out.extend_from_slice(b"+ ");
                out.extend_from_slice(data.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn greeting(hostname: &str) -> Self {
        Self::ok(format!("{hostname} mail-oidc ready."))
    }
    pub fn capabilities(items: Vec<String>) -> Self {
        Reply::Listing {
            text: "Capability list follows.".into(),
            items,
        }
    }
    /// RFC 5034's optional form of `AUTH` without arguments.
    pub fn mechanisms(names: Vec<String>) -> Self {
        Reply::Listing {
            text: "Supported mechanisms follow.".into(),
            items: names,
        }
    }
    pub fn noop() -> Self {
        Self::ok("")
    }
    pub fn bye() -> Self {
        Self::ok("Logging out.")
    }
    pub fn bye_after_update(deleted: usize) -> Self {
        if deleted == 0 {
            Self::bye()
        } else {
            Self::ok(format!("Logging out, {deleted} message(s) deleted."))
        }
    }
    pub fn update_failed() -> Self {
        Self::err(Some("SYS/TEMP"), "Some deleted messages were not removed.")
    }
    pub fn begin_tls() -> Self {
        Self::ok("Begin TLS negotiation.")
    }
    pub fn password_required() -> Self {
        Self::ok("Password required.")
    }

    // TRANSACTION state.
    pub fn stat(count: usize, octets: u64) -> Self {
        Self::ok(format!("{count} {octets}"))
    }
    pub fn scan_listing(sizes: Vec<(usize, u64)>, octets: u64) -> Self {
        Reply::Listing {
            text: format!("{} messages ({octets} octets)", sizes.len()),
            items: sizes.iter().map(|(n, s)| format!("{n} {s}")).collect(),
        }
    }
    pub fn scan_line(number: u64, size: u64) -> Self {
        Self::ok(format!("{number} {size}"))
    }
    pub fn unique_id_listing(ids: Vec<(usize, String)>) -> Self {
        Reply::Listing {
            text: "Unique-ID listing follows.".into(),
            items: ids.iter().map(|(n, id)| format!("{n} {id}")).collect(),
        }
    }
    pub fn unique_id_line(number: u64, id: &str) -> Self {
        Self::ok(format!("{number} {id}"))
    }
    pub fn message(size: u64, body: Vec<u8>) -> Self {
        Reply::Message {
            text: format!("{size} octets"),
            body,
        }
    }
    pub fn top(body: Vec<u8>) -> Self {
        Reply::Message {
            text: "Top of message follows.".into(),
            body,
        }
    }
    pub fn deleted() -> Self {
        Self::ok("Marked to be deleted.")
    }
    pub fn reset(count: usize, octets: u64) -> Self {
        Self::ok(format!("Maildrop has {count} messages ({octets} octets)."))
    }
    pub fn message_error(error: MessageError) -> Self {
        match error {
            MessageError::NoSuchMessage => Self::err(None, "No such message."),
            MessageError::Deleted(n) => Self::err(None, format!("Message {n} is deleted.")),
        }
    }

    // Refusals.
    pub fn command_error(error: &CommandError) -> Self {
        match error {
            CommandError::Unknown(_) => Self::err(None, "Unknown command."),
            CommandError::Syntax(what) => Self::err(None, format!("Syntax error: {what}.")),
        }
    }
    pub fn line_too_long() -> Self {
        Self::err(None, "Line too long.")
    }
    pub fn too_many_errors() -> Self {
        Self::err(None, "Too many errors.")
    }
    pub fn not_logged_in() -> Self {
        Self::err(None, "Log in first.")
    }
    pub fn already_logged_in() -> Self {
        Self::err(None, "Already logged in.")
    }
    pub fn no_user() -> Self {
        Self::err(None, "No username given.")
    }
    pub fn in_use() -> Self {
        Self::err(Some("IN-USE"), "Mailbox is locked by another POP3 session.")
    }
    pub fn maildrop_unavailable() -> Self {
        Self::err(
            Some("SYS/TEMP"),
            "Cannot open the mailbox, try again later.",
        )
    }
    pub fn tls_active() -> Self {
        Self::err(None, "TLS is already active.")
    }
    pub fn tls_unavailable() -> Self {
        Self::err(None, "STLS is not available.")
    }
    pub fn timeout() -> Self {
        Self::err(None, "Disconnected for inactivity.")
    }
    /// The server is shutting down (RFC 3206 SYS/TEMP: try again later).
    pub fn shutting_down() -> Self {
        Self::err(Some("SYS/TEMP"), "Server shutting down, try again later.")
    }
    /// The session was ended from outside (logout at the IdP, revocation, token expiry).
    pub fn session_ended(text: &str) -> Self {
        Self::err(Some("SYS/PERM"), text)
    }
    pub fn too_many_auth_failures() -> Self {
        Self::err(Some("AUTH"), "Too many invalid authentication attempts.")
    }

    /// The one mapping from a SASL failure to the POP3 wire (Dovecot's texts; RFC 2449 and
    /// RFC 3206 codes, RFC 5034 AUTH-RESP-CODE).
    pub fn sasl_failure(failure: &SaslFailure) -> Self {
        match failure {
            SaslFailure::InvalidCredentials { .. } => {
                Self::err(Some("AUTH"), "Authentication failed.")
            }
            SaslFailure::DelegationForbidden { .. } => Self::err(
                Some("AUTH"),
                "Authorization failed: not allowed to act as that user.",
            ),
            SaslFailure::TemporaryFailure(_) => {
                Self::err(Some("SYS/TEMP"), "Temporary authentication failure.")
            }
            SaslFailure::Malformed(_) => Self::err(None, "Malformed SASL message."),
            SaslFailure::InvalidBase64 => {
                Self::err(None, "Invalid base64 data in continued response.")
            }
            // Like IMAP: a cancelled exchange is a protocol outcome, refused credentials or not.
            SaslFailure::Aborted | SaslFailure::AbortedAfterRefusal { .. } => {
                Self::err(None, "Authentication aborted by client.")
            }
            SaslFailure::MechanismUnavailable(_) => {
                Self::err(None, "Unsupported authentication mechanism.")
            }
            SaslFailure::EncryptionRequired(_) => Self::err(
                Some("AUTH"),
                "Plaintext authentication disallowed on non-secure connections.",
            ),
            SaslFailure::Throttled { .. } => Self::err(
                Some("SYS/TEMP"),
                "Too many failed logins from this address or for this user; try again later.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(reply: Reply) -> String {
        String::from_utf8(reply.to_bytes()).expect("ASCII")
    }

    #[test]
    fn encodes_every_shape() {
        assert_eq!(wire(Reply::noop()), "+OK\r\n");
        assert_eq!(wire(Reply::bye()), "+OK Logging out.\r\n");
        assert_eq!(
            wire(Reply::in_use()),
            "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
        );
        assert_eq!(
            wire(Reply::scan_listing(vec![(1, 10), (3, 7)], 17)),
            "+OK 2 messages (17 octets)\r\n1 10\r\n3 7\r\n.\r\n"
        );
        assert_eq!(
            wire(Reply::message(3, b"..\r\n".to_vec())),
            "+OK 3 octets\r\n..\r\n.\r\n"
        );
        assert_eq!(wire(Reply::Continuation(String::new())), "+ \r\n");
        assert_eq!(wire(Reply::Continuation("e30=".into())), "+ e30=\r\n");
        assert_eq!(
            wire(Reply::session_ended("Session revoked: x.")),
            "-ERR [SYS/PERM] Session revoked: x.\r\n"
        );
    }

    #[test]
    fn sasl_failures_map_to_dovecot_replies() {
        let w = |f: SaslFailure| wire(Reply::sasl_failure(&f));
        assert_eq!(
            w(SaslFailure::InvalidCredentials { reason: "x".into() }),
            "-ERR [AUTH] Authentication failed.\r\n"
        );
        assert_eq!(
            w(SaslFailure::DelegationForbidden {
                authcid: "a".into(),
                authzid: "b".into()
            }),
            "-ERR [AUTH] Authorization failed: not allowed to act as that user.\r\n"
        );
        assert_eq!(
            w(SaslFailure::TemporaryFailure("idp".into())),
            "-ERR [SYS/TEMP] Temporary authentication failure.\r\n"
        );
        assert_eq!(
            w(SaslFailure::Malformed("gs2".into())),
            "-ERR Malformed SASL message.\r\n"
        );
        assert_eq!(
            w(SaslFailure::InvalidBase64),
            "-ERR Invalid base64 data in continued response.\r\n"
        );
        assert_eq!(
            w(SaslFailure::Aborted),
            "-ERR Authentication aborted by client.\r\n"
        );
        assert_eq!(
            w(SaslFailure::AbortedAfterRefusal { reason: "x".into() }),
            "-ERR Authentication aborted by client.\r\n"
        );
        assert_eq!(
            w(SaslFailure::MechanismUnavailable("X".into())),
            "-ERR Unsupported authentication mechanism.\r\n"
        );
        assert_eq!(
            w(SaslFailure::EncryptionRequired("PLAIN".into())),
            "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n"
        );
    }

    #[test]
    fn message_and_command_errors() {
        assert_eq!(
            wire(Reply::message_error(MessageError::NoSuchMessage)),
            "-ERR No such message.\r\n"
        );
        assert_eq!(
            wire(Reply::message_error(MessageError::Deleted(4))),
            "-ERR Message 4 is deleted.\r\n"
        );
        assert_eq!(
            wire(Reply::command_error(&CommandError::Unknown("APOP".into()))),
            "-ERR Unknown command.\r\n"
        );
        assert_eq!(
            wire(Reply::command_error(&CommandError::Syntax(
                "number expected"
            ))),
            "-ERR Syntax error: number expected.\r\n"
        );
    }
}
