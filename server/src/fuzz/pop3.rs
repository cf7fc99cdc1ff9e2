//! POP3 before login: USER/PASS, APOP, AUTH (with SASL-IR), CAPA, STLS and the rest, fed in
//! random chunks.

use std::sync::Arc;

#[cfg(test)]
use super::engine::Target;
use super::split::chunks;
use super::{backends, check_password, crlf_lines, registry, run_auth};
use crate::auth::sasl::Protocol;
use crate::pop3::maildrop::MaildropLocks;
use crate::pop3::session::{Event, Interrupt, Io, Session, SessionConfig};

#[cfg(test)]
const WORDS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"USER alice@example.com\r\n",
    b"PASS ",
    b"APOP ",
    b"AUTH",
    b" PLAIN",
    b" LOGIN",
    b" XOAUTH2",
    b" OAUTHBEARER",
    b" SCRAM-SHA-256",
    b"CAPA\r\n",
    b"STLS\r\n",
    b"STAT",
    b"LIST 1",
    b"RETR 1",
    b"DELE",
    b"TOP 1 0",
    b"UIDL",
    b"RSET",
    b"NOOP",
    b"QUIT\r\n",
    b"UTF8",
    b"*\r\n",
    b"=",
    b"AGFsaWNlAGFsaWNlcHc=",
];

pub(super) fn config() -> Arc<SessionConfig> {
    let backends = backends();
    Arc::new(SessionConfig {
        hostname: "mail.example.com".into(),
        allow_plaintext_auth: true,
        max_auth_failures: 3,
        stls_available: false,
        registry: registry(Protocol::Pop3, &backends),
        locks: MaildropLocks::new(),
    })
}

/// Status lines, continuations and CAPA listings: CRLF lines without control characters.
fn check_output(out: &[u8]) {
    for line in crlf_lines(out) {
        assert!(
            !line.iter().any(|&b| b < 0x20 || b == 0x7f),
            "control character in {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

pub(super) fn session(config: &Arc<SessionConfig>, input: &[u8]) {
    let mut session = Session::new(config.clone(), None, false);
    let mut output = Vec::new();
    // The greeting first, then the input in pieces.
    for chunk in std::iter::once(&b""[..]).chain(chunks(input)) {
        session.enqueue_input(chunk);
        loop {
            match session.next_interrupt() {
                Interrupt::Io(Io::Output(bytes)) => output.extend(bytes),
                Interrupt::Io(Io::NeedMoreInput) => break,
                Interrupt::Io(Io::Close) => {
                    check_output(&output);
                    return;
                }
                Interrupt::Event(Event::StartTls) => panic!("STLS without a TLS acceptor"),
                Interrupt::Event(Event::Auth(work)) => session.auth_done(run_auth(work)),
                Interrupt::Event(Event::CheckPassword { user, password }) => {
                    session.password_checked(check_password(&user, &password))
                }
                Interrupt::Event(Event::OpenMaildrop { .. } | Event::Update { .. }) => {
                    panic!("maildrop reached without credentials")
                }
            }
            assert!(
                session.identity().is_none(),
                "logged in without credentials"
            );
        }
    }
    assert!(output.starts_with(b"+OK"), "no greeting");
    check_output(&output);
}

#[test]
fn fuzz_pop3_preauth() {
    let config = config();
    Target::new("pop3_session")
        .dictionary(WORDS)
        .run(|input| session(&config, input));
}
