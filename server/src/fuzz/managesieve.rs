//! ManageSieve before login: the word parser (atoms, quoted strings, literals) and the session
//! (CAPABILITY, STARTTLS, AUTHENTICATE with its quoted or literal responses, LOGOUT, ...).

use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
use super::engine::Target;
use super::split::chunks;
use super::{backends, registry, run_auth};
use crate::auth::sasl::Protocol;
use crate::managesieve::parser::{Command, Limits, Parser, Word};
use crate::managesieve::session::{Event, Interrupt, Io, Session, SessionConfig};
use crate::store::scripts::{ScriptLimits, SieveScripts};

#[cfg(test)]
const WORDS: &[&[u8]] = &[
    b"\r\n",
    b" ",
    b"\"",
    b"\\\"",
    b"{5+}\r\n",
    b"{5}\r\n",
    b"{0+}\r\n",
    b"{18446744073709551616+}\r\n",
    b"CAPABILITY",
    b"STARTTLS",
    b"AUTHENTICATE",
    b"\"PLAIN\"",
    b"\"OAUTHBEARER\"",
    b"\"XOAUTH2\"",
    b"\"SCRAM-SHA-256\"",
    b"\"*\"",
    b"\"\"",
    b"LOGOUT",
    b"NOOP",
    b"UNAUTHENTICATE",
    b"HAVESPACE",
    b"PUTSCRIPT",
    b"LISTSCRIPTS",
    b"CHECKSCRIPT",
    b"\"AGFsaWNlAGFsaWNlcHc=\"",
];

pub(super) fn config() -> Arc<SessionConfig> {
    let backends = backends();
    let limits = ScriptLimits {
        max_script_size: 4096,
        max_scripts: 4,
    };
    Arc::new(SessionConfig {
        hostname: "mail.example.com".into(),
        registry: registry(Protocol::ManageSieve, &backends),
        max_auth_failures: 3,
        allow_plaintext_auth: true,
        starttls_available: false,
        scripts: Arc::new(SieveScripts::new(limits)),
        check: Arc::new(|source| {
            crate::sieve::Script::compile(source)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }),
        extensions: crate::managesieve::sieve_extensions(),
        preauth_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(600),
    })
}

/// Responses, capability lines and SASL challenges: CRLF lines of UTF-8 without NUL, CR or LF,
/// where a line ending in `{n}` is followed by n raw bytes (a string that cannot be quoted)
/// and then the rest of the line.
fn check_output(out: &[u8]) {
    let text = || String::from_utf8_lossy(out).into_owned();
    let mut rest = out;
    while !rest.is_empty() {
        let lf = rest
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or_else(|| panic!("unterminated line in {:?}", text()));
        let line = rest[..lf]
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("bare LF in {:?}", text()));
        assert!(
            std::str::from_utf8(line).is_ok() && !line.iter().any(|&b| b == 0 || b == b'\r'),
            "bad response line in {:?}",
            text()
        );
        rest = &rest[lf + 1..];
        if let Some(n) = literal_length(line) {
            assert!(
                n <= rest.len(),
                "literal longer than the output in {:?}",
                text()
            );
            rest = &rest[n..];
        }
    }
}

/// `{n}` or `{n+}` at the end of a line.
fn literal_length(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = inner[open + 1..]
        .strip_suffix(b"+")
        .unwrap_or(&inner[open + 1..]);
    std::str::from_utf8(digits).ok()?.parse().ok()
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
                Interrupt::Event(Event::StartTls) => panic!("STARTTLS without a TLS acceptor"),
                Interrupt::Event(Event::Auth(work)) => session.auth_done(run_auth(work)),
            }
            assert!(
                session.identity().is_none(),
                "logged in without credentials"
            );
        }
    }
    check_output(&output);
}

#[test]
fn fuzz_managesieve_preauth() {
    let config = config();
    Target::new("managesieve_session")
        .dictionary(WORDS)
        .run(|input| session(&config, input));
}

/// The parser alone under small limits: it never buffers a line or literal past them, and
/// every command it yields converts (or is refused) without panicking.
#[test]
fn fuzz_managesieve_parser() {
    Target::new("managesieve_session")
        .dictionary(WORDS)
        .run(parser);
}

/// One input through the parser alone (the `fuzz_managesieve_parser` test).
pub(super) fn parser(input: &[u8]) {
    let limits = Limits::uniform(256, 64);
    let mut parser = Parser::new();
    for chunk in chunks(input) {
        parser.enqueue(chunk);
        while let Some(result) = parser.next(&limits) {
            if let Ok(words) = result {
                for word in &words {
                    let len = match word {
                        Word::Atom(a) => a.len(),
                        Word::Str(s) => s.len(),
                        Word::Number(_) => 0,
                    };
                    assert!(len <= 256, "a word of {len} bytes passed the limits");
                }
                let _ = Command::from_words(words);
            }
        }
        assert!(
            parser.buffered() <= input.len(),
            "parser holds more than it was given"
        );
    }
}
