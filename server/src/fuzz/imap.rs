//! IMAP before login: the framer (lines, literals, limits) and the session state machine with
//! imap-codec's command parser, fed in random chunks as a connection would.

use std::sync::Arc;

#[cfg(test)]
use super::engine::Target;
use super::split::chunks;
use super::{backends, check_password, crlf_lines, registry, run_auth};
use crate::auth::sasl::Protocol;
use crate::config::ImapSection;
use crate::imap::ImapContext;
use crate::imap::framing::{Frame, Framer, Limits};
use crate::imap::session::{Event, Next, Session};
use crate::store::MemoryStore;

#[cfg(test)]
const WORDS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b" ",
    b"a1 ",
    b"CAPABILITY",
    b"NOOP",
    b"LOGOUT",
    b"STARTTLS",
    b"LOGIN",
    b"AUTHENTICATE",
    b"PLAIN",
    b"LOGIN",
    b"OAUTHBEARER",
    b"XOAUTH2",
    b"SCRAM-SHA-256",
    b"ID",
    b"NIL",
    b"SELECT",
    b"IDLE",
    b"DONE",
    b"APPEND",
    b"UID",
    b"{5}\r\n",
    b"{0}\r\n",
    b"{3+}\r\n",
    b"{4294967296}\r\n",
    b"{99999999999999999999}\r\n",
    b"\"",
    b"(",
    b")",
    b"*",
    b"=",
    b"AGFsaWNlAGFsaWNlcHc=",
    b"bixhPWFsaWNlQGV4YW1wbGUuY29tLAFhdXRoPUJlYXJlciB4AQE=",
];

pub(super) fn context() -> Arc<ImapContext> {
    let backends = backends();
    Arc::new(ImapContext {
        hostname: "mail.example.com".into(),
        config: ImapSection {
            allow_plaintext_auth: true,
            ..ImapSection::default()
        },
        registry: registry(Protocol::Imap, &backends),
        backends,
        store: Arc::new(MemoryStore::new()),
        tls: None,
        offload: crate::offload::Offload::default(),
        inflight: crate::inflight::InFlight::new(1 << 30),
    })
}

/// Every response line: `* `, `+` or a tag, then text without control characters.
fn check_output(out: &[u8]) {
    for line in crlf_lines(out) {
        let first = line.split(|&b| b == b' ').next().unwrap_or_default();
        assert!(
            !first.is_empty() && (line.len() == first.len() || line[first.len()] == b' '),
            "malformed response line {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            first == b"*" || first == b"+" || first.iter().all(|b| b.is_ascii_graphic()),
            "bad tag in {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            !line.iter().any(|&b| b < 0x20 || b == 0x7f),
            "control character in {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

/// What a frame may hold at most under `limits`.
fn check_frame(frame: &Frame, limits: &Limits) {
    let command_limit = limits
        .literal
        .saturating_add(limits.line.saturating_mul(4))
        .max(limits.auth_line);
    match frame {
        Frame::Command(bytes) => {
            assert!(
                bytes.len() <= command_limit,
                "command of {} bytes",
                bytes.len()
            );
            assert!(bytes.ends_with(b"\r\n"), "command without CRLF");
        }
        Frame::Line(bytes) => {
            assert!(
                bytes.len() <= limits.auth_line,
                "line of {} bytes",
                bytes.len()
            );
            assert!(bytes.ends_with(b"\r\n"), "line without CRLF");
        }
        _ => {}
    }
}

/// Runs one session; returns how many SASL steps and password checks it ran.
pub(super) fn session(ctx: &Arc<ImapContext>, input: &[u8]) -> usize {
    let mut auth = 0;
    let mut session = Session::new(ctx.clone(), None, false);
    session.greeting();
    check_output(&session.take_output());
    let mut framer = Framer::new();
    for chunk in chunks(input) {
        framer.enqueue(chunk);
        loop {
            let limits = session.limits();
            let frame = framer.next(session.framer_mode(), &limits);
            if frame == Frame::NeedMore {
                break;
            }
            check_frame(&frame, &limits);
            let answers = matches!(
                frame,
                Frame::Command(_) | Frame::Line(_) | Frame::LineTooLong
            );
            let mut next = session.handle(frame);
            while let Next::Event(event) = next {
                auth += 1;
                next = match event {
                    Event::Auth(work) => session.auth_done(run_auth(work)),
                    Event::CheckPassword { user, password } => {
                        session.password_checked(check_password(&user, &password))
                    }
                    Event::Heavy(_) => panic!("heavy work (LIST, SEARCH) before login"),
                };
            }
            assert!(session.user.is_none(), "logged in without credentials");
            let out = session.take_output();
            assert!(!answers || !out.is_empty(), "a command got no reply");
            if !out.is_empty() {
                check_output(&out);
            }
            match next {
                Next::Continue | Next::Event(_) => {}
                Next::AcceptLiteral => framer.accept_literal(),
                Next::RejectLiteral => framer.reject_literal(),
                // No TLS acceptor: STARTTLS is refused, so this ends the session too.
                Next::Close | Next::StartTls => return auth,
            }
        }
    }
    auth
}

#[test]
fn fuzz_imap_preauth() {
    let ctx = context();
    let mut auth = 0;
    Target::new("imap_preauth")
        .dictionary(WORDS)
        .run(|input| auth += session(&ctx, input));
    // The target reaches the SASL mechanisms, not only the command parser.
    assert!(auth > 0, "no input reached authentication");
}

/// The framer alone under tiny limits, in both modes: frames never exceed them.
#[test]
fn fuzz_imap_framer() {
    Target::new("imap_preauth").dictionary(WORDS).run(framer);
}

/// One input through the framer alone (the `fuzz_imap_framer` test).
pub(super) fn framer(input: &[u8]) {
    let limits = Limits {
        line: 64,
        auth_line: 128,
        literal: 32,
    };
    let mut framer = Framer::new();
    let mut line_mode = false;
    for chunk in chunks(input) {
        framer.enqueue(chunk);
        loop {
            let mode = if line_mode {
                crate::imap::framing::Mode::Line
            } else {
                crate::imap::framing::Mode::Command
            };
            let frame = framer.next(mode, &limits);
            check_frame(&frame, &limits);
            match frame {
                Frame::NeedMore => break,
                Frame::LineTooLong => {
                    assert_eq!(framer.next(mode, &limits), Frame::LineTooLong);
                    return;
                }
                Frame::Literal { too_big, .. } => {
                    if too_big {
                        framer.reject_literal();
                    } else {
                        framer.accept_literal();
                    }
                }
                Frame::Command(c) => line_mode = c.len() % 3 == 0,
                Frame::Line(_) => line_mode = false,
            }
        }
    }
}
