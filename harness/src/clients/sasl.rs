//! One view of SASL over every protocol's client, so the same matrix of exchanges (suites::sasl)
//! runs on IMAP, SMTP, POP3 and ManageSieve. Each client keeps its own raw API for
//! protocol-specific tests; this trait only classifies final replies.
//!
//! ManageSieve's `NO` has a code only for [`AuthVerdict::Temporary`] (`TRYLATER`) and
//! [`AuthVerdict::EncryptionRequired`] (`ENCRYPT-NEEDED`); the other verdicts are told apart by
//! the text (Dovecot's, which our server sends too): `Authentication failed.`,
//! `Authorization failed...`, `Unsupported authentication mechanism.`; any other `NO` is a
//! protocol error.

use async_trait::async_trait;

use super::ClientResult;
use super::imap::{ImapClient, SaslReply};
use super::pop3::{self, Pop3Client};
use super::sieve::{self, SieveClient, Status};
use super::smtp::{SmtpClient, SmtpReply};

/// What a protocol's final reply to an exchange means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Logged in (IMAP `OK`, SMTP `235`, POP3 `+OK`, ManageSieve `OK`).
    Success,
    /// Credentials refused (IMAP `NO [AUTHENTICATIONFAILED]`, SMTP `535`, POP3 `-ERR [AUTH]`,
    /// ManageSieve `NO`).
    Refused,
    /// Another identity was asked for and refused (IMAP `NO [AUTHORIZATIONFAILED]`, SMTP `535`
    /// "Authorization failed", POP3 `-ERR [AUTH] Authorization failed`, ManageSieve `NO`).
    AuthorizationRefused,
    /// IdP or directory unreachable (IMAP `NO [UNAVAILABLE]`, SMTP `454`, POP3
    /// `-ERR [SYS/TEMP]`, ManageSieve `NO (TRYLATER)`).
    Temporary,
    /// Malformed, aborted or bad base64 (IMAP `BAD`, SMTP `501`, POP3 `-ERR`, ManageSieve `NO`).
    Protocol,
    /// The mechanism needs TLS (IMAP `NO [PRIVACYREQUIRED]`, SMTP `538`, POP3
    /// `-ERR [AUTH] Plaintext authentication disallowed`, ManageSieve `NO (ENCRYPT-NEEDED)`).
    EncryptionRequired,
    /// Unknown or disabled mechanism.
    UnknownMechanism,
    /// The server closed the connection (failure limit) after its reply.
    Closed,
}

/// One step of an exchange as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthTurn {
    /// A challenge, decoded.
    Challenge(Vec<u8>),
    /// The final reply: its verdict, the reply as sent (for messages) and, for a success,
    /// the additional data it carried (ManageSieve `OK (SASL "...")`).
    Done {
        verdict: AuthVerdict,
        reply: String,
        success_data: Option<Vec<u8>>,
    },
}

impl AuthTurn {
    pub fn verdict(&self) -> Option<AuthVerdict> {
        match self {
            AuthTurn::Done { verdict, .. } => Some(*verdict),
            AuthTurn::Challenge(_) => None,
        }
    }
}

/// A protocol client that can run SASL exchanges step by step.
#[async_trait]
pub trait SaslClient: Send {
    /// `imap`, `smtp`, `pop3` or `sieve`, for messages.
    fn protocol(&self) -> &'static str;
    /// The mechanisms the server offers now.
    async fn mechanisms(&mut self) -> ClientResult<Vec<String>>;
    /// Starts an exchange; `initial`: the initial response (`Some(&[])` sends the empty one).
    async fn auth_start(
        &mut self,
        mechanism: &str,
        initial: Option<&[u8]>,
    ) -> ClientResult<AuthTurn>;
    /// Answers a challenge with `data` (encoded as the protocol wants).
    async fn auth_respond(&mut self, data: &[u8]) -> ClientResult<AuthTurn>;
    /// Answers a challenge with raw wire text (invalid base64 and the like).
    async fn auth_respond_raw(&mut self, text: &str) -> ClientResult<AuthTurn>;
    /// Cancels the exchange (`*`, or `"*"` in ManageSieve).
    async fn auth_abort(&mut self) -> ClientResult<AuthTurn>;
    /// A harmless command, `true` if the session answered it positively.
    async fn noop(&mut self) -> ClientResult<bool>;
    /// Whether the server has closed the connection (a read sees end of stream).
    async fn is_closed(&mut self) -> bool;
    /// The TLS session's `tls-exporter` channel binding, if under TLS 1.3.
    fn channel_binding(&self) -> Option<Vec<u8>>;
}

fn imap_turn(reply: SaslReply) -> AuthTurn {
    let reply = match reply {
        SaslReply::Challenge(data) => return AuthTurn::Challenge(data),
        SaslReply::Done(reply) => reply,
    };
    let verdict = match (reply.status(), reply.code()) {
        ("OK", _) => AuthVerdict::Success,
        ("NO", Some("AUTHENTICATIONFAILED")) => AuthVerdict::Refused,
        ("NO", Some("AUTHORIZATIONFAILED")) => AuthVerdict::AuthorizationRefused,
        ("NO", Some("UNAVAILABLE")) => AuthVerdict::Temporary,
        ("NO", Some("PRIVACYREQUIRED")) => AuthVerdict::EncryptionRequired,
        ("NO", _) => AuthVerdict::UnknownMechanism,
        ("BAD", _) => AuthVerdict::Protocol,
        _ if reply.has_bye() => AuthVerdict::Closed,
        _ => AuthVerdict::Protocol,
    };
    AuthTurn::Done {
        verdict,
        reply: reply.tagged,
        success_data: None,
    }
}

#[async_trait]
impl SaslClient for ImapClient {
    fn protocol(&self) -> &'static str {
        "imap"
    }
    async fn mechanisms(&mut self) -> ClientResult<Vec<String>> {
        Ok(self
            .capabilities()
            .await?
            .iter()
            .filter_map(|c| c.strip_prefix("AUTH="))
            .map(str::to_string)
            .collect())
    }
    async fn auth_start(
        &mut self,
        mechanism: &str,
        initial: Option<&[u8]>,
    ) -> ClientResult<AuthTurn> {
        Ok(imap_turn(
            ImapClient::auth_start(self, mechanism, initial).await?,
        ))
    }
    async fn auth_respond(&mut self, data: &[u8]) -> ClientResult<AuthTurn> {
        Ok(imap_turn(self.auth_continue(data).await?))
    }
    async fn auth_respond_raw(&mut self, text: &str) -> ClientResult<AuthTurn> {
        Ok(imap_turn(self.auth_continue_raw(text).await?))
    }
    async fn auth_abort(&mut self) -> ClientResult<AuthTurn> {
        Ok(imap_turn(ImapClient::auth_abort(self).await?))
    }
    async fn noop(&mut self) -> ClientResult<bool> {
        Ok(self.command("NOOP").await?.is_ok())
    }
    async fn is_closed(&mut self) -> bool {
        ImapClient::is_closed(self).await
    }
    fn channel_binding(&self) -> Option<Vec<u8>> {
        self.tls_exporter().map(<[u8]>::to_vec)
    }
}

fn smtp_turn(reply: SmtpReply) -> AuthTurn {
    if let Some(data) = reply.challenge() {
        return AuthTurn::Challenge(data);
    }
    let first = reply.first_line();
    let verdict = match reply.code {
        235 => AuthVerdict::Success,
        535 if first.contains("Authorization failed") => AuthVerdict::AuthorizationRefused,
        535 => AuthVerdict::Refused,
        454 => AuthVerdict::Temporary,
        538 => AuthVerdict::EncryptionRequired,
        504 => AuthVerdict::UnknownMechanism,
        421 => AuthVerdict::Closed,
        _ => AuthVerdict::Protocol,
    };
    AuthTurn::Done {
        verdict,
        reply: first,
        success_data: None,
    }
}

#[async_trait]
impl SaslClient for SmtpClient {
    fn protocol(&self) -> &'static str {
        "smtp"
    }
    async fn mechanisms(&mut self) -> ClientResult<Vec<String>> {
        let lines = self.ehlo("client.example").await?;
        Ok(lines
            .iter()
            .filter_map(|l| l.strip_prefix("AUTH "))
            .flat_map(|l| l.split(' ').map(str::to_string))
            .collect())
    }
    async fn auth_start(
        &mut self,
        mechanism: &str,
        initial: Option<&[u8]>,
    ) -> ClientResult<AuthTurn> {
        Ok(smtp_turn(
            SmtpClient::auth_start(self, mechanism, initial).await?,
        ))
    }
    async fn auth_respond(&mut self, data: &[u8]) -> ClientResult<AuthTurn> {
        Ok(smtp_turn(self.auth_continue(data).await?))
    }
    async fn auth_respond_raw(&mut self, text: &str) -> ClientResult<AuthTurn> {
        Ok(smtp_turn(self.command(text).await?))
    }
    async fn auth_abort(&mut self) -> ClientResult<AuthTurn> {
        Ok(smtp_turn(SmtpClient::auth_abort(self).await?))
    }
    async fn noop(&mut self) -> ClientResult<bool> {
        Ok(self.command("NOOP").await?.is_positive())
    }
    async fn is_closed(&mut self) -> bool {
        SmtpClient::is_closed(self).await
    }
    fn channel_binding(&self) -> Option<Vec<u8>> {
        self.tls_exporter().map(<[u8]>::to_vec)
    }
}

/// POP3 replies carry their meaning in RFC 2449/3206 codes plus the text: `[AUTH]` covers
/// refused credentials, a refused authzid and the TLS requirement alike.
fn pop3_turn(reply: pop3::SaslReply) -> AuthTurn {
    let reply = match reply {
        pop3::SaslReply::Challenge(data) => return AuthTurn::Challenge(data),
        pop3::SaslReply::Done(reply) => reply,
    };
    let text = reply.text();
    let verdict = if reply.is_ok() {
        AuthVerdict::Success
    } else {
        match reply.code() {
            Some("AUTH") if text.starts_with("Authorization failed") => {
                AuthVerdict::AuthorizationRefused
            }
            Some("AUTH") if text.starts_with("Plaintext authentication disallowed") => {
                AuthVerdict::EncryptionRequired
            }
            // Also the failure that reaches the limit; the connection closes after it.
            Some("AUTH") => AuthVerdict::Refused,
            Some("SYS/TEMP") => AuthVerdict::Temporary,
            _ if text.starts_with("Unsupported authentication mechanism") => {
                AuthVerdict::UnknownMechanism
            }
            _ => AuthVerdict::Protocol,
        }
    };
    AuthTurn::Done {
        verdict,
        reply: reply.line,
        success_data: None,
    }
}

#[async_trait]
impl SaslClient for Pop3Client {
    fn protocol(&self) -> &'static str {
        "pop3"
    }
    async fn mechanisms(&mut self) -> ClientResult<Vec<String>> {
        self.sasl_mechanisms().await
    }
    async fn auth_start(
        &mut self,
        mechanism: &str,
        initial: Option<&[u8]>,
    ) -> ClientResult<AuthTurn> {
        Ok(pop3_turn(
            Pop3Client::auth_start(self, mechanism, initial).await?,
        ))
    }
    async fn auth_respond(&mut self, data: &[u8]) -> ClientResult<AuthTurn> {
        Ok(pop3_turn(self.auth_continue(data).await?))
    }
    async fn auth_respond_raw(&mut self, text: &str) -> ClientResult<AuthTurn> {
        Ok(pop3_turn(self.auth_continue_raw(text).await?))
    }
    async fn auth_abort(&mut self) -> ClientResult<AuthTurn> {
        Ok(pop3_turn(Pop3Client::auth_abort(self).await?))
    }
    /// CAPA: answered in every state (NOOP is refused before login).
    async fn noop(&mut self) -> ClientResult<bool> {
        Ok(self.multiline("CAPA").await?.0.is_ok())
    }
    async fn is_closed(&mut self) -> bool {
        Pop3Client::is_closed(self).await
    }
    fn channel_binding(&self) -> Option<Vec<u8>> {
        self.tls_exporter().map(<[u8]>::to_vec)
    }
}

fn sieve_turn(reply: sieve::SaslReply) -> AuthTurn {
    let reply = match reply {
        sieve::SaslReply::Challenge(data) => return AuthTurn::Challenge(data),
        sieve::SaslReply::Done(reply) => reply,
    };
    let r = &reply.response;
    let verdict = match (r.status, r.code.as_deref()) {
        (Status::Ok, _) => AuthVerdict::Success,
        (Status::Bye, _) => AuthVerdict::Closed,
        (Status::No, Some("TRYLATER")) => AuthVerdict::Temporary,
        (Status::No, Some("ENCRYPT-NEEDED")) => AuthVerdict::EncryptionRequired,
        (Status::No, _) if r.text.starts_with("Authorization failed") => {
            AuthVerdict::AuthorizationRefused
        }
        (Status::No, _) if r.text.starts_with("Authentication failed") => AuthVerdict::Refused,
        (Status::No, _) if r.text.contains("mechanism") => AuthVerdict::UnknownMechanism,
        (Status::No, _) => AuthVerdict::Protocol,
    };
    let success_data = match (r.status, r.code.as_deref()) {
        (Status::Ok, Some("SASL")) => r
            .code_data
            .as_deref()
            .and_then(|d| super::unb64(&String::from_utf8_lossy(d)).ok()),
        _ => None,
    };
    AuthTurn::Done {
        verdict,
        reply: r.line.clone(),
        success_data,
    }
}

#[async_trait]
impl SaslClient for SieveClient {
    fn protocol(&self) -> &'static str {
        "sieve"
    }
    async fn mechanisms(&mut self) -> ClientResult<Vec<String>> {
        self.refresh_capabilities().await?;
        Ok(self.sasl_mechanisms())
    }
    async fn auth_start(
        &mut self,
        mechanism: &str,
        initial: Option<&[u8]>,
    ) -> ClientResult<AuthTurn> {
        Ok(sieve_turn(
            SieveClient::auth_start(self, mechanism, initial).await?,
        ))
    }
    async fn auth_respond(&mut self, data: &[u8]) -> ClientResult<AuthTurn> {
        Ok(sieve_turn(self.auth_continue(data).await?))
    }
    async fn auth_respond_raw(&mut self, text: &str) -> ClientResult<AuthTurn> {
        Ok(sieve_turn(self.auth_continue_raw(text).await?))
    }
    async fn auth_abort(&mut self) -> ClientResult<AuthTurn> {
        Ok(sieve_turn(SieveClient::auth_abort(self).await?))
    }
    async fn noop(&mut self) -> ClientResult<bool> {
        Ok(SieveClient::noop(self, None).await?.is_ok())
    }
    async fn is_closed(&mut self) -> bool {
        SieveClient::is_closed(self).await
    }
    fn channel_binding(&self) -> Option<Vec<u8>> {
        self.tls_exporter().map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::pop3::Pop3Reply;
    use crate::clients::sieve::{SieveReply, SieveResponse};

    #[test]
    fn pop3_final_replies_are_classified() {
        let verdict = |line: &str| {
            pop3_turn(pop3::SaslReply::Done(Pop3Reply { line: line.into() })).verdict()
        };
        for (line, want) in [
            ("+OK Logged in.", AuthVerdict::Success),
            ("-ERR [AUTH] Authentication failed.", AuthVerdict::Refused),
            (
                "-ERR [AUTH] Too many invalid authentication attempts.",
                AuthVerdict::Refused,
            ),
            (
                "-ERR [AUTH] Authorization failed: not allowed to act as that user.",
                AuthVerdict::AuthorizationRefused,
            ),
            (
                "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.",
                AuthVerdict::EncryptionRequired,
            ),
            (
                "-ERR [SYS/TEMP] Temporary authentication failure.",
                AuthVerdict::Temporary,
            ),
            (
                "-ERR Unsupported authentication mechanism.",
                AuthVerdict::UnknownMechanism,
            ),
            ("-ERR Malformed SASL message.", AuthVerdict::Protocol),
            (
                "-ERR Authentication aborted by client.",
                AuthVerdict::Protocol,
            ),
            (
                "-ERR Invalid base64 data in continued response.",
                AuthVerdict::Protocol,
            ),
        ] {
            assert_eq!(verdict(line), Some(want), "{line}");
        }
        assert_eq!(
            pop3_turn(pop3::SaslReply::Challenge(b"{}".to_vec())),
            AuthTurn::Challenge(b"{}".to_vec())
        );
    }

    fn done(status: Status, code: Option<&str>, data: Option<&str>, text: &str) -> AuthTurn {
        sieve_turn(sieve::SaslReply::Done(SieveReply {
            data: Vec::new(),
            response: SieveResponse {
                status,
                code: code.map(str::to_string),
                code_data: data.map(|d| d.as_bytes().to_vec()),
                text: text.into(),
                line: String::new(),
            },
        }))
    }

    #[test]
    fn sieve_final_replies_are_classified() {
        let verdict = |t: AuthTurn| t.verdict();
        assert_eq!(
            verdict(done(Status::Ok, None, None, "Logged in.")),
            Some(AuthVerdict::Success)
        );
        match done(Status::Ok, Some("SASL"), Some("dj1v"), "Logged in.") {
            AuthTurn::Done { success_data, .. } => assert_eq!(success_data, Some(b"v=o".to_vec())),
            other => panic!("{other:?}"),
        }
        let cases = [
            (None, "Authentication failed.", AuthVerdict::Refused),
            (
                None,
                "Authorization failed: not allowed to act as that user.",
                AuthVerdict::AuthorizationRefused,
            ),
            (
                Some("TRYLATER"),
                "Temporary authentication failure.",
                AuthVerdict::Temporary,
            ),
            (
                Some("ENCRYPT-NEEDED"),
                "Plaintext authentication disallowed on non-secure connections.",
                AuthVerdict::EncryptionRequired,
            ),
            (
                None,
                "Unsupported authentication mechanism.",
                AuthVerdict::UnknownMechanism,
            ),
            (None, "Authentication aborted.", AuthVerdict::Protocol),
            (None, "Invalid base64 data.", AuthVerdict::Protocol),
            (None, "Malformed SASL message.", AuthVerdict::Protocol),
        ];
        for (code, text, expected) in cases {
            assert_eq!(
                verdict(done(Status::No, code, None, text)),
                Some(expected),
                "{text}"
            );
        }
        assert_eq!(
            verdict(done(
                Status::Bye,
                None,
                None,
                "Too many invalid authentication attempts."
            )),
            Some(AuthVerdict::Closed)
        );
        assert_eq!(
            sieve_turn(sieve::SaslReply::Challenge(b"x".to_vec())),
            AuthTurn::Challenge(b"x".to_vec())
        );
    }
}
