//! SMTP before login: command lines, AUTH exchanges, and DATA (dot-unstuffing, line ends, size
//! limit) on the inbound listener, where mail is accepted without login.

use std::sync::Arc;

use futures_util::FutureExt as _;

#[cfg(test)]
use super::engine::Target;
use super::split::chunks;
use super::{NoPasswords, backends, crlf_lines, registry, run_auth};
use crate::auth::directory::Directory;
use crate::auth::sasl::Protocol;
use crate::smtp::SmtpListenerKind;
use crate::smtp::data::{DataOutcome, DataReader};
use crate::smtp::session::{Event, Interrupt, Io, Session, SessionConfig};

const MAX_MESSAGE: usize = 4096;

#[cfg(test)]
const WORDS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r\n.\r\n",
    b"\r\n..",
    b".",
    b"EHLO client.example.com\r\n",
    b"HELO ",
    b"MAIL FROM:<",
    b"RCPT TO:<",
    b"alice@example.com>",
    b"<>",
    b" SIZE=",
    b" BODY=8BITMIME",
    b" SMTPUTF8",
    b"DATA\r\n",
    b"BDAT",
    b"RSET\r\n",
    b"NOOP",
    b"QUIT\r\n",
    b"VRFY ",
    b"STARTTLS\r\n",
    b"AUTH PLAIN ",
    b"AUTH LOGIN",
    b"AUTH XOAUTH2 ",
    b"AUTH OAUTHBEARER ",
    b"AUTH SCRAM-SHA-256 ",
    b"*\r\n",
    b"=\r\n",
    b"AGFsaWNlAGFsaWNlcHc=",
    b"@[127.0.0.1]",
    b"\"quoted local\"@example.com",
];

pub(super) fn config(kind: SmtpListenerKind) -> Arc<SessionConfig> {
    let backends = backends();
    Arc::new(SessionConfig {
        hostname: "mx.example.com".into(),
        kind,
        max_message_size: MAX_MESSAGE,
        max_auth_failures: 3,
        allow_plaintext_auth: true,
        local_domains: vec!["example.com".into()],
        starttls_available: false,
        registry: registry(Protocol::Smtp, &backends),
        max_recipient_refusals: 10,
        inflight: crate::inflight::InFlight::new(1 << 30),
        address_refusals: Arc::new(crate::smtp::refusals::RecipientRefusals::new(1000)),
    })
}

/// Every line is `<3 digits><space or dash><text>`, without control characters.
fn check_replies(out: &[u8]) {
    for line in crlf_lines(out) {
        let ok = line.len() >= 3
            && line[..3].iter().all(u8::is_ascii_digit)
            && matches!(line.get(3), None | Some(b' ' | b'-'))
            && !line.iter().any(|&b| b < 0x20 || b == 0x7f);
        assert!(ok, "malformed reply {:?}", String::from_utf8_lossy(line));
    }
}

/// Runs one session; returns how many messages it delivered.
pub(super) fn session(config: &Arc<SessionConfig>, input: &[u8]) -> usize {
    let mut delivered = 0;
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
                    check_replies(&output);
                    return delivered;
                }
                Interrupt::Event(Event::StartTls) => panic!("STARTTLS without a TLS acceptor"),
                Interrupt::Event(Event::Auth(work)) => session.auth_done(run_auth(work)),
                Interrupt::Event(Event::CheckRecipient(address)) => {
                    let result = NoPasswords.lookup(&address).now_or_never();
                    session.recipient_checked(result.expect("ready at once"));
                }
                Interrupt::Event(Event::Deliver(envelope)) => {
                    assert_eq!(
                        config.kind,
                        SmtpListenerKind::Inbound,
                        "delivery without login"
                    );
                    assert!(!envelope.recipients.is_empty(), "delivery to nobody");
                    check_message(&envelope.message);
                    delivered += 1;
                    session.delivered(Ok("FUZZ1".into()));
                }
            }
            assert!(
                session.identity().is_none(),
                "logged in without credentials"
            );
        }
    }
    if !output.is_empty() {
        check_replies(&output);
    }
    delivered
}

/// An accepted message: within the size limit, CRLF line ends only.
fn check_message(message: &[u8]) {
    assert!(
        message.len() <= MAX_MESSAGE,
        "message of {} bytes",
        message.len()
    );
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' {
            assert!(
                i > 0 && message[i - 1] == b'\r',
                "bare LF in an accepted message"
            );
        }
    }
}

#[test]
fn fuzz_smtp_submission_preauth() {
    let config = config(SmtpListenerKind::Submission);
    Target::new("smtp_session").dictionary(WORDS).run(|input| {
        session(&config, input);
    });
}

#[test]
fn fuzz_smtp_inbound() {
    let config = config(SmtpListenerKind::Inbound);
    let mut delivered = 0;
    Target::new("smtp_session")
        .dictionary(WORDS)
        .run(|input| delivered += session(&config, input));
    // The target reaches DATA, not only the command parser.
    assert!(delivered > 0, "no input was delivered");
}

/// The DATA reader alone: a stuffed dot is removed, the end marker is only `CRLF.CRLF`, and
/// feeding in pieces gives the same result as feeding at once.
#[test]
fn fuzz_smtp_data() {
    Target::new("smtp_data").dictionary(WORDS).run(data);
}

/// One input through the DATA reader, at once and in pieces (the `fuzz_smtp_data` test).
pub(super) fn data(input: &[u8]) {
    let whole = {
        let mut reader = DataReader::new(MAX_MESSAGE);
        let (used, outcome) = reader.feed(input);
        match outcome {
            // Only a strict CRLF.CRLF ends it (or a first line that is just a dot).
            Some(_) => assert!(
                &input[..used] == b".\r\n" || input[..used].ends_with(b"\r\n.\r\n"),
                "data ended without the end marker"
            ),
            None => assert_eq!(used, input.len(), "bytes left over without an end marker"),
        }
        (used, outcome)
    };
    let mut reader = DataReader::new(MAX_MESSAGE);
    let mut used = 0;
    let mut outcome = None;
    for chunk in chunks(input) {
        let (n, o) = reader.feed(chunk);
        used += n;
        if o.is_some() {
            outcome = o;
            break;
        }
        assert_eq!(n, chunk.len(), "bytes left over without an end marker");
    }
    assert_eq!(
        (used, outcome.clone()),
        whole,
        "pieces and whole input differ"
    );
    if let Some(DataOutcome::Complete(message)) = outcome {
        check_message(&message);
    }
}
