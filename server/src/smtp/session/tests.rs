//! Transcript tests of the session state machine: bytes in, replies and events out, no sockets.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::{Rng, SeedableRng};

use super::*;
use futures_util::FutureExt as _;

use crate::auth::sasl::{SaslFailure, SaslStep};
use crate::smtp::delivery::DeliveryError;
use crate::smtp::tests::{Scripted, backends, directory, identity, registry};
use crate::store::StoreError;

const HOST: &str = "mx.example.com";

fn config(kind: SmtpListenerKind, starttls: bool, plaintext: bool) -> Arc<SessionConfig> {
    config_with(kind, starttls, plaintext, Scripted::new(vec![]))
}

fn config_with(
    kind: SmtpListenerKind,
    starttls: bool,
    plaintext: bool,
    scripted: Arc<Scripted>,
) -> Arc<SessionConfig> {
    let backends = backends(directory(), None, &[]);
    Arc::new(SessionConfig {
        hostname: HOST.into(),
        kind,
        max_message_size: 1000,
        max_auth_failures: 3,
        allow_plaintext_auth: plaintext,
        local_domains: vec!["example.com".into()],
        starttls_available: starttls,
        registry: registry(&backends, scripted),
        max_recipient_refusals: 10,
        inflight: crate::inflight::InFlight::new(1 << 30),
        address_refusals: Arc::new(crate::smtp::refusals::RecipientRefusals::new(1000)),
    })
}

/// Drives a session, answering events like a connection would.
struct Driver {
    session: Session,
    /// Steps the `XSCRIPT` exchange answers with, in order.
    auth_script: Arc<Scripted>,
    /// What the SASL work carried: (mechanism of a start or "", payload).
    auth_seen: Vec<(String, Option<Vec<u8>>)>,
    delivered: Vec<Envelope>,
    delivery_fails: bool,
    closed: bool,
}

impl Driver {
    fn new(kind: SmtpListenerKind) -> Self {
        let scripted = Scripted::new(vec![]);
        Self::scripted(
            config_with(kind, true, false, scripted.clone()),
            false,
            scripted,
        )
    }

    fn with(config: Arc<SessionConfig>, tls: bool) -> Self {
        Self::scripted(config, tls, Scripted::new(vec![]))
    }

    fn scripted(config: Arc<SessionConfig>, tls: bool, scripted: Arc<Scripted>) -> Self {
        let mut d = Self {
            session: Session::new(config, Some("192.0.2.7:4444".parse().unwrap()), tls),
            auth_script: scripted,
            auth_seen: Vec::new(),
            delivered: Vec::new(),
            delivery_fails: false,
            closed: false,
        };
        assert_eq!(d.send(""), format!("220 {HOST} ESMTP mail-oidc\r\n"));
        d
    }

    /// Feeds `input` and returns everything written until the session wants more input.
    fn send(&mut self, input: &str) -> String {
        self.send_bytes(input.as_bytes())
    }

    fn send_bytes(&mut self, input: &[u8]) -> String {
        self.session.enqueue_input(input);
        self.run()
    }

    fn run(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            match self.session.next_interrupt() {
                Interrupt::Io(Io::Output(bytes)) => out.extend_from_slice(&bytes),
                Interrupt::Io(Io::NeedMoreInput) => break,
                Interrupt::Io(Io::Close) => {
                    self.closed = true;
                    break;
                }
                Interrupt::Event(event) => self.answer(event),
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn answer(&mut self, event: Event) {
        match event {
            Event::StartTls => self.session.tls_established(),
            Event::Auth(work) => {
                self.auth_seen.push(match &work {
                    AuthWork::Start {
                        mechanism, initial, ..
                    } => (mechanism.name().to_string(), initial.clone()),
                    AuthWork::Step { response, .. } => (String::new(), Some(response.clone())),
                });
                // The scripted exchange never waits.
                let done = crate::auth::sasl::driver::run(work)
                    .now_or_never()
                    .expect("scripted exchange is ready at once");
                self.session.auth_done(done);
            }
            Event::CheckRecipient(address) => {
                let result = match address.to_ascii_lowercase().as_str() {
                    "down@example.com" => Err(DirectoryError::Unavailable("down".into())),
                    "alice@example.com" | "alice" => Ok(Some("alice@example.com".into())),
                    "bob@example.com" => Ok(Some("bob@example.com".into())),
                    a if a.starts_with("user") => Ok(Some(a.to_string())),
                    _ => Ok(None),
                };
                self.session.recipient_checked(result);
            }
            Event::Deliver(envelope) => {
                self.delivered.push(envelope);
                let result = if self.delivery_fails {
                    Err(DeliveryError::Store {
                        user: "alice@example.com".into(),
                        source: StoreError::NoSuchMailbox("INBOX".into()),
                    })
                } else {
                    Ok("QID1".into())
                };
                self.session.delivered(result);
            }
        }
    }

    /// Exchanges released so far.
    fn released(&self) -> usize {
        self.auth_script
            .dropped
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// EHLO, then a successful one-step XSCRIPT login as `user`.
    fn login(&mut self, user: &str) {
        self.send("EHLO client.example\r\n");
        self.auth_script.push_back(SaslStep::Success {
            identity: identity(user),
            server_data: None,
        });
        assert_eq!(
            self.send("AUTH XSCRIPT =\r\n"),
            "235 2.7.0 Authentication successful\r\n"
        );
    }
}

fn ehlo_lines(reply: &str) -> Vec<&str> {
    reply.lines().map(|l| &l[4..]).collect()
}

#[test]
fn ehlo_on_submission_before_tls() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    let reply = d.send("EHLO client.example\r\n");
    assert_eq!(
        reply,
        "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 AUTH XSCRIPT\r\n"
    );
}

#[test]
fn ehlo_with_plaintext_allowed_lists_mechanisms_in_order() {
    let mut d = Driver::with(config(SmtpListenerKind::Submission, false, true), false);
    let reply = d.send("EHLO client.example\r\n");
    assert_eq!(
        ehlo_lines(&reply),
        [
            HOST,
            "PIPELINING",
            "SIZE 1000",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "AUTH PLAIN LOGIN XSCRIPT"
        ]
    );
}

#[test]
fn ehlo_on_inbound_has_no_auth() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    let reply = d.send("ehlo client.example\r\n");
    assert!(reply.ends_with("250 STARTTLS\r\n"), "{reply}");
    assert!(!reply.contains("AUTH"));
    assert_eq!(
        d.send("AUTH PLAIN =\r\n"),
        "503 5.5.1 AUTH not available on this port\r\n"
    );
}

#[test]
fn submission_refuses_a_from_header_naming_someone_else() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.login("alice@example.com");
    let start = "MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n";
    for from in [
        "Bob <bob@example.com>",
        "alice@example.com, bob@example.com",
        "Team: bob@example.com;",
    ] {
        assert!(
            d.send(start)
                .ends_with("354 End data with <CR><LF>.<CR><LF>\r\n")
        );
        assert_eq!(
            d.send(&format!("From: {from}\r\nSubject: x\r\n\r\nbody\r\n.\r\n")),
            "550 5.7.1 From header address not owned by user\r\n",
            "{from}"
        );
        assert!(d.delivered.is_empty(), "{from}: nothing is delivered");
    }
    // The user's own address, in any case and with a display name, and no From at all, pass.
    for header in ["From: \"Alice\" <ALICE@Example.com>\r\n", ""] {
        assert!(
            d.send(start)
                .ends_with("354 End data with <CR><LF>.<CR><LF>\r\n")
        );
        assert_eq!(
            d.send(&format!("{header}Subject: x\r\n\r\nbody\r\n.\r\n")),
            "250 2.0.0 Ok: queued as QID1\r\n",
            "{header:?}"
        );
    }
    assert_eq!(d.delivered.len(), 2);
}

#[test]
fn inbound_mail_may_come_from_anyone() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    d.send("EHLO relay.remote.test\r\n");
    d.send("MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n");
    assert_eq!(
        d.send("From: Alice <alice@example.com>\r\n\r\nhi\r\n.\r\n"),
        "250 2.0.0 Ok: queued as QID1\r\n"
    );
}

#[test]
fn helo_works_and_is_plain_smtp() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    assert_eq!(d.send("HELO client\r\n"), format!("250 {HOST}\r\n"));
    let out = d.send("MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n");
    assert_eq!(
        out,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    assert_eq!(d.send("hi\r\n.\r\n"), "250 2.0.0 Ok: queued as QID1\r\n");
    assert_eq!(d.delivered[0].trace.protocol, "SMTP");
    assert_eq!(d.delivered[0].trace.helo, "client");
}

#[test]
fn starttls_discards_pipelined_input_and_resets() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.send("EHLO a\r\n");
    assert_eq!(
        d.send("STARTTLS\r\nMAIL FROM:<alice@example.com>\r\n"),
        "220 2.0.0 Ready to start TLS\r\n"
    );
    assert!(d.session.is_tls());
    // The pipelined MAIL got no reply; EHLO is needed again.
    assert_eq!(
        d.send("MAIL FROM:<alice@example.com>\r\n"),
        "503 5.5.1 Bad sequence of commands: send EHLO first\r\n"
    );
    let reply = d.send("EHLO a\r\n");
    assert!(!reply.contains("STARTTLS"), "{reply}");
    assert!(
        reply.ends_with("250 AUTH PLAIN LOGIN XSCRIPT\r\n"),
        "{reply}"
    );
    assert_eq!(d.send("STARTTLS\r\n"), "503 5.5.1 TLS already active\r\n");
}

#[test]
fn starttls_unavailable_without_certificate() {
    let mut d = Driver::with(config(SmtpListenerKind::Submission, false, false), false);
    d.send("EHLO a\r\n");
    assert_eq!(
        d.send("STARTTLS\r\n"),
        "502 5.5.1 STARTTLS not available\r\n"
    );
    assert_eq!(
        d.send("STARTTLS now\r\n"),
        "501 5.5.4 Syntax error: no argument allowed\r\n"
    );
}

#[test]
fn auth_mechanism_checks() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    assert_eq!(
        d.send("AUTH XSCRIPT\r\n"),
        "503 5.5.1 Bad sequence of commands: send EHLO first\r\n"
    );
    d.send("EHLO a\r\n");
    assert_eq!(
        d.send("AUTH CRAM-MD5\r\n"),
        "504 5.5.4 Unrecognized authentication type\r\n"
    );
    assert_eq!(
        d.send("AUTH OAUTHBEARER\r\n"),
        "504 5.5.4 Unrecognized authentication type\r\n"
    );
    assert_eq!(
        d.send("AUTH PLAIN AGFsaWNlAGFsaWNlcHc=\r\n"),
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    assert_eq!(
        d.send("AUTH\r\n"),
        "501 5.5.4 Syntax error: mechanism required\r\n"
    );
    assert!(d.auth_seen.is_empty());
}

#[test]
fn auth_challenge_response_success() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.send("EHLO a\r\n");
    d.auth_script.extend([
        SaslStep::Challenge(Vec::new()),
        SaslStep::Challenge(b"hello".to_vec()),
        SaslStep::Success {
            identity: identity("alice@example.com"),
            server_data: None,
        },
    ]);
    assert_eq!(d.send("auth xscript\r\n"), "334 \r\n");
    assert_eq!(
        d.send("Zmlyc3Q=\r\n"),
        format!("334 {}\r\n", BASE64.encode("hello"))
    );
    assert_eq!(d.send("\r\n"), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(
        d.auth_seen,
        [
            ("XSCRIPT".to_string(), None),
            (String::new(), Some(b"first".to_vec())),
            (String::new(), Some(Vec::new())),
        ]
    );
    assert_eq!(
        d.session.identity().map(|i| i.authorization_id.as_str()),
        Some("alice@example.com")
    );
    assert_eq!(
        d.send("AUTH XSCRIPT\r\n"),
        "503 5.5.1 Already authenticated\r\n"
    );
}

#[test]
fn auth_initial_response_forms() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.send("EHLO a\r\n");
    d.auth_script
        .push_back(SaslStep::Failure(SaslFailure::TemporaryFailure(
            "idp".into(),
        )));
    assert_eq!(
        d.send("AUTH XSCRIPT =\r\n"),
        "454 4.7.0 Temporary authentication failure\r\n"
    );
    d.auth_script
        .push_back(SaslStep::Failure(SaslFailure::TemporaryFailure(
            "idp".into(),
        )));
    d.send("AUTH XSCRIPT AQ==\r\n");
    assert_eq!(
        d.auth_seen,
        [
            ("XSCRIPT".to_string(), Some(Vec::new())),
            ("XSCRIPT".to_string(), Some(vec![1])),
        ]
    );
    assert_eq!(
        d.send("AUTH XSCRIPT !!!\r\n"),
        "501 5.5.2 Invalid base64 data\r\n"
    );
    assert_eq!(d.auth_seen.len(), 2);
}

#[test]
fn auth_abort_and_bad_base64_in_exchange() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.send("EHLO a\r\n");
    d.auth_script.push_back(SaslStep::Challenge(Vec::new()));
    assert_eq!(d.send("AUTH XSCRIPT\r\n"), "334 \r\n");
    assert_eq!(d.send("*\r\n"), "501 5.7.0 Authentication aborted\r\n");
    assert_eq!(d.released(), 1);
    d.auth_script.push_back(SaslStep::Challenge(Vec::new()));
    d.send("AUTH XSCRIPT\r\n");
    assert_eq!(
        d.send("not base64!\r\n"),
        "501 5.5.2 Invalid base64 data\r\n"
    );
    assert_eq!(d.released(), 2);
    // Back in command mode.
    assert_eq!(d.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

#[test]
fn bearer_style_failure_then_too_many_failures() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.send("EHLO a\r\n");
    let json = br#"{"status":"invalid_token"}"#.to_vec();
    for attempt in 1..=3 {
        d.auth_script.extend([
            SaslStep::Challenge(json.clone()),
            SaslStep::Failure(SaslFailure::InvalidCredentials {
                reason: "expired".into(),
            }),
        ]);
        assert_eq!(
            d.send("AUTH XSCRIPT dG9rZW4=\r\n"),
            format!("334 {}\r\n", BASE64.encode(&json))
        );
        let reply = d.send("AQ==\r\n");
        if attempt < 3 {
            assert_eq!(reply, "535 5.7.8 Authentication credentials invalid\r\n");
            assert!(!d.closed);
        } else {
            assert_eq!(
                reply,
                "535 5.7.8 Authentication credentials invalid\r\n\
                 421 4.7.0 Too many authentication failures\r\n"
            );
            assert!(d.closed);
        }
    }
}

#[test]
fn failure_kinds_map_to_replies() {
    let cases = [
        (
            SaslFailure::DelegationForbidden {
                authcid: "a".into(),
                authzid: "b".into(),
            },
            "535 5.7.8 Authorization failed: not allowed to act as that user\r\n",
        ),
        (
            SaslFailure::Malformed("gs2".into()),
            "501 5.5.2 Malformed SASL message\r\n",
        ),
    ];
    for (failure, expected) in cases {
        let mut d = Driver::new(SmtpListenerKind::Submission);
        d.send("EHLO a\r\n");
        d.auth_script.push_back(SaslStep::Failure(failure));
        assert_eq!(d.send("AUTH XSCRIPT =\r\n"), expected);
    }
}

#[test]
fn success_with_server_data() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.send("EHLO a\r\n");
    d.auth_script.push_back(SaslStep::Success {
        identity: identity("alice@example.com"),
        server_data: Some(b"v=xyz".to_vec()),
    });
    assert_eq!(
        d.send("AUTH XSCRIPT =\r\n"),
        format!("334 {}\r\n", BASE64.encode("v=xyz"))
    );
    assert_eq!(d.send("\r\n"), "235 2.7.0 Authentication successful\r\n");
}

#[test]
fn submission_requires_auth_and_owned_sender() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.send("EHLO a\r\n");
    assert_eq!(
        d.send("MAIL FROM:<alice@example.com>\r\n"),
        "530 5.7.0 Authentication required\r\n"
    );
    d.auth_script.push_back(SaslStep::Success {
        identity: identity("alice@example.com"),
        server_data: None,
    });
    d.send("AUTH XSCRIPT =\r\n");
    assert_eq!(
        d.send("MAIL FROM:<bob@example.com>\r\n"),
        "553 5.7.1 Sender address not owned by user\r\n"
    );
    assert_eq!(
        d.send("MAIL FROM:<alice@example.com> SIZE=1001\r\n"),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        d.send("MAIL FROM:<ALICE@Example.COM>\r\n"),
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(
        d.send("MAIL FROM:<>\r\n"),
        "503 5.5.1 Bad sequence of commands: nested MAIL command\r\n"
    );
    assert_eq!(d.send("RSET\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(
        d.send("MAIL FROM:<> SIZE=1000 BODY=8BITMIME\r\n"),
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(
        d.send("AUTH XSCRIPT\r\n"),
        "503 5.5.1 Already authenticated\r\n"
    );
}

#[test]
fn recipients() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.login("alice@example.com");
    assert_eq!(
        d.send("RCPT TO:<bob@example.com>\r\n"),
        "503 5.5.1 Bad sequence of commands: need MAIL command\r\n"
    );
    d.send("MAIL FROM:<alice@example.com>\r\n");
    assert_eq!(
        d.send("RCPT TO:<nobody@example.com>\r\n"),
        "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown\r\n"
    );
    assert_eq!(
        d.send("RCPT TO:<down@example.com>\r\n"),
        "451 4.3.0 Temporary directory failure\r\n"
    );
    assert_eq!(
        d.send("DATA\r\n"),
        "503 5.5.1 Bad sequence of commands: no valid recipients\r\n"
    );
    // Submission does not check local_domains; the directory decides.
    assert_eq!(
        d.send("RCPT TO:<alice>\r\n"),
        "501 5.5.4 Syntax error: address needs a domain\r\n"
    );
    assert_eq!(d.send("RCPT TO:<bob@example.com>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(d.send("RCPT TO:<BOB@example.com>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(
        d.send("RCPT TO:<alice@example.com>\r\n"),
        "250 2.1.5 Ok\r\n"
    );
    d.send("DATA\r\nx\r\n.\r\n");
    assert_eq!(
        d.delivered[0].recipients,
        ["bob@example.com", "alice@example.com"]
    );
}

#[test]
fn inbound_relay_check_and_no_auth_needed() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    d.send("EHLO remote.test\r\n");
    assert_eq!(
        d.send("MAIL FROM:<someone@remote.test>\r\n"),
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(
        d.send("RCPT TO:<carol@other.test>\r\n"),
        "550 5.7.1 Relay access denied\r\n"
    );
    assert_eq!(
        d.send("RCPT TO:<alice@EXAMPLE.com>\r\n"),
        "250 2.1.5 Ok\r\n"
    );
}

#[test]
fn recipient_limit() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    d.send("EHLO remote.test\r\nMAIL FROM:<>\r\n");
    let mut batch = String::new();
    for i in 0..MAX_RECIPIENTS {
        batch.push_str(&format!("RCPT TO:<user{i}@example.com>\r\n"));
    }
    let replies = d.send(&batch);
    assert_eq!(replies.matches("250 2.1.5 Ok\r\n").count(), MAX_RECIPIENTS);
    assert_eq!(
        d.send("RCPT TO:<alice@example.com>\r\n"),
        "452 4.5.3 Too many recipients\r\n"
    );
}

#[test]
fn recipient_refusals_end_the_session_with_421() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    d.send("EHLO remote.test\r\nMAIL FROM:<>\r\n");
    // Temporary failures and accepted recipients are not enumeration: never counted.
    for _ in 0..20 {
        assert_eq!(
            d.send("RCPT TO:<down@example.com>\r\n"),
            "451 4.3.0 Temporary directory failure\r\n"
        );
    }
    assert_eq!(
        d.send("RCPT TO:<carol@other.test>\r\n"),
        "550 5.7.1 Relay access denied\r\n"
    );
    // A new transaction does not reset the count: it is per session.
    d.send("RSET\r\nMAIL FROM:<>\r\n");
    for i in 1..9 {
        let reply = d.send(&format!("RCPT TO:<nobody{i}@example.com>\r\n"));
        assert!(reply.starts_with("550 5.1.1 "), "{reply}");
        assert!(!d.closed);
    }
    // The tenth refusal: its 550, then 421, and nothing pipelined after it is read.
    let reply = d.send("RCPT TO:<nobody10@example.com>\r\nRCPT TO:<alice@example.com>\r\n");
    assert_eq!(
        reply,
        "550 5.1.1 <nobody10@example.com>: Recipient address rejected: User unknown\r\n\
         421 4.7.0 Too many recipient refusals, closing connection\r\n"
    );
    assert!(d.closed);
}

/// An inbound session whose DATA bytes count against `pool`.
fn budgeted(pool: &crate::inflight::InFlight, max_message_size: usize) -> Driver {
    let mut cfg = (*config(SmtpListenerKind::Inbound, false, false)).clone();
    cfg.inflight = pool.clone();
    cfg.max_message_size = max_message_size;
    let mut d = Driver::with(Arc::new(cfg), false);
    assert_eq!(
        d.send("EHLO remote.test\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\n")
            .lines()
            .last(),
        Some("250 2.1.5 Ok")
    );
    d
}

#[test]
fn data_is_refused_with_452_when_the_in_flight_budget_is_spent() {
    let pool = crate::inflight::InFlight::new(1500);
    let mut a = budgeted(&pool, 1000);
    let mut b = budgeted(&pool, 1000);
    assert_eq!(
        a.send("DATA\r\n"),
        "354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    assert_eq!(pool.in_use(), 1000, "DATA reserves before any byte arrives");
    assert_eq!(
        b.send("DATA\r\n"),
        "452 4.3.1 Insufficient system storage\r\n"
    );
    assert_eq!(pool.in_use(), 1000, "a refusal holds nothing");
    // Not in DATA: the next line is a command.
    assert_eq!(b.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
    assert!(a.send("hello\r\n.\r\n").starts_with("250 "));
    assert_eq!(a.delivered.len(), 1);
    assert_eq!(pool.in_use(), 0, "stored: no longer in flight");
    assert_eq!(
        b.send("DATA\r\n"),
        "354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    assert!(b.send("hi\r\n.\r\n").starts_with("250 "));
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn a_message_outgrowing_the_budget_is_read_to_its_end_and_refused_with_452() {
    let step = DATA_RESERVE_STEP;
    let pool = crate::inflight::InFlight::new(2 * step + step / 2);
    let mut a = budgeted(&pool, 10 * step);
    let mut b = budgeted(&pool, 10 * step);
    a.send("DATA\r\n");
    b.send("DATA\r\n");
    assert_eq!(pool.in_use(), 2 * step);
    // More than a's first step: it cannot grow, so what it held is freed and the rest skipped.
    let line = format!("{}\r\n", "x".repeat(998));
    assert_eq!(a.send(&line.repeat(40)), "");
    assert_eq!(pool.in_use(), step, "a gave its bytes back");
    assert_eq!(a.send(&line.repeat(10)), "");
    assert_eq!(pool.in_use(), step, "the rest of a is not kept");
    assert_eq!(
        a.send(".\r\nNOOP\r\n"),
        "452 4.3.1 Insufficient system storage\r\n250 2.0.0 Ok\r\n"
    );
    assert!(a.delivered.is_empty(), "nothing half-stored");
    // b, within its step, is unaffected.
    assert!(b.send(&format!("{line}.\r\n")).starts_with("250 "));
    assert_eq!(b.delivered[0].message.len(), 1000);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn refusals_from_one_address_across_sessions_end_each_further_session() {
    let mut cfg = (*config(SmtpListenerKind::Inbound, false, false)).clone();
    cfg.address_refusals = Arc::new(crate::smtp::refusals::RecipientRefusals::new(13));
    let cfg = Arc::new(cfg);
    // Each session stays under its own limit of 10, as an enumerator reconnecting would.
    for _ in 0..2 {
        let mut d = Driver::with(cfg.clone(), false);
        d.send("EHLO remote.test\r\nMAIL FROM:<>\r\n");
        for i in 0..6 {
            let reply = d.send(&format!("RCPT TO:<guess{i}@example.com>\r\n"));
            assert!(reply.starts_with("550 5.1.1 "), "{reply}");
        }
        assert!(!d.closed);
    }
    // 12 so far, the limit is 13: a new session's first refusal ends it.
    let mut d = Driver::with(cfg.clone(), false);
    d.send("EHLO remote.test\r\nMAIL FROM:<>\r\n");
    assert_eq!(
        d.send("RCPT TO:<alice@example.com>\r\n"),
        "250 2.1.5 Ok\r\n"
    );
    let reply = d.send("RCPT TO:<guess@example.com>\r\n");
    assert!(
        reply.ends_with("\r\n421 4.7.0 Too many recipient refusals, closing connection\r\n"),
        "{reply}"
    );
    assert!(d.closed);
}

#[test]
fn data_keeps_exact_bytes_and_trace_info() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.login("alice@example.com");
    d.send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n");
    assert_eq!(
        d.send("DATA\r\n"),
        "354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    // Split across chunks, including inside the end marker.
    assert_eq!(d.send("Subject: x\r\n\r\n..dot\r\nbare\nlf\r\n\r"), "");
    assert_eq!(d.send("\n."), "");
    assert_eq!(
        d.send("\r\nNOOP\r\n"),
        "250 2.0.0 Ok: queued as QID1\r\n250 2.0.0 Ok\r\n"
    );
    let env = &d.delivered[0];
    assert_eq!(env.message, b"Subject: x\r\n\r\n.dot\r\nbare\r\nlf\r\n\r\n");
    assert_eq!(env.from, ReversePath::Mailbox("alice@example.com".into()));
    assert_eq!(env.trace.protocol, "ESMTPA");
    assert_eq!(env.trace.peer, Some("192.0.2.7:4444".parse().unwrap()));
    // The transaction is over.
    assert_eq!(
        d.send("RCPT TO:<bob@example.com>\r\n"),
        "503 5.5.1 Bad sequence of commands: need MAIL command\r\n"
    );
}

#[test]
fn oversized_data_is_read_to_the_end_then_refused() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    d.send("EHLO r\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n");
    let big = "x".repeat(600);
    assert_eq!(d.send(&format!("{big}\r\n{big}\r\n")), "");
    assert_eq!(d.send(".\r\n"), "552 5.3.4 Message too big\r\n");
    assert!(d.delivered.is_empty());
    assert_eq!(
        d.send("DATA\r\n"),
        "503 5.5.1 Bad sequence of commands: need MAIL command\r\n"
    );
}

#[test]
fn store_failure_gives_451() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    d.delivery_fails = true;
    let out = d.send("EHLO r\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n");
    assert!(out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"));
    assert_eq!(
        d.send("x\r\n.\r\n"),
        "451 4.3.0 Temporary failure storing the message, try again later\r\n"
    );
}

#[test]
fn whole_transaction_pipelined_in_one_packet() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    let out = d.send(
        "EHLO r\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.com>\r\n\
         RCPT TO:<nobody@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n\
         hello\r\n.\r\nRSET\r\nQUIT\r\n",
    );
    let codes: Vec<&str> = out.lines().map(|l| &l[..4]).collect();
    assert_eq!(
        codes,
        [
            "250-", "250-", "250-", "250-", "250-", "250 ", // EHLO
            "250 ", "250 ", "550 ", "250 ", "354 ", "250 ", "250 ", "221 ",
        ]
    );
    assert!(d.closed);
    assert_eq!(d.delivered.len(), 1);
    assert_eq!(d.delivered[0].message, b"hello\r\n");
}

#[test]
fn simple_commands() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    assert_eq!(d.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(d.send("VRFY alice\r\n"), "252 2.5.2 Cannot VRFY user\r\n");
    assert_eq!(d.send("HELP\r\n"), "214 2.0.0 See RFC 5321\r\n");
    assert_eq!(
        d.send("EXPN list\r\n"),
        "502 5.5.1 EXPN not implemented\r\n"
    );
    assert_eq!(d.send("BDAT 10\r\n"), "500 5.5.2 Command unrecognized\r\n");
    assert_eq!(
        d.send("MAIL FROM:<a@b.example>\r\n"),
        "503 5.5.1 Bad sequence of commands: send EHLO first\r\n"
    );
    assert_eq!(
        d.send("EHLO x\r\nMAIL FROM:<a@b.example> FOO=1\r\n")
            .lines()
            .last(),
        Some("555 5.5.4 Unsupported parameter")
    );
    // Bare LF line ends are tolerated for commands.
    assert_eq!(d.send("NOOP\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(d.send("QUIT\r\n"), "221 2.0.0 Bye\r\n");
    assert!(d.closed);
}

#[test]
fn line_limits() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.send("EHLO a\r\n");
    let long = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE));
    assert_eq!(d.send(&long), "500 5.5.2 Line too long\r\n");
    // Arriving in pieces: refused once, the tail is dropped.
    assert_eq!(
        d.send(&"y".repeat(MAX_COMMAND_LINE + 10)),
        "500 5.5.2 Line too long\r\n"
    );
    assert_eq!(d.send(&"y".repeat(100)), "");
    assert_eq!(d.send("yyy\r\nNOOP\r\n"), "250 2.0.0 Ok\r\n");
    // A 12 KiB AUTH line (a JWT) is fine, in pieces too.
    let token = BASE64.encode(vec![b'j'; 9000]);
    d.auth_script.push_back(SaslStep::Success {
        identity: identity("alice@example.com"),
        server_data: None,
    });
    let line = format!("AUTH XSCRIPT {token}\r\n");
    let (a, b) = line.split_at(5000);
    assert_eq!(d.send(a), "");
    assert_eq!(d.send(b), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(d.auth_seen[0].1.as_ref().map(Vec::len), Some(9000));
    let too_long = format!("AUTH XSCRIPT {}\r\n", "A".repeat(MAX_AUTH_LINE));
    assert_eq!(d.send(&too_long), "500 5.5.2 Line too long\r\n");
}

/// Regression: each call searched the whole buffered line again for its end, so a 16 KiB AUTH
/// line sent a byte at a time cost quadratic time. The search now resumes where it stopped.
#[test]
fn a_line_arriving_byte_by_byte_is_searched_once() {
    let mut d = Driver::new(SmtpListenerKind::Submission);
    d.send("EHLO a\r\n");
    let line = format!("AUTH XSCRIPT {}", "A".repeat(3000));
    for (i, byte) in line.bytes().enumerate() {
        assert_eq!(d.send_bytes(&[byte]), "");
        assert_eq!(
            d.session.input.scanned(),
            i + 1,
            "bytes already searched are not searched again"
        );
    }
    d.auth_script.push_back(SaslStep::Success {
        identity: identity("alice@example.com"),
        server_data: None,
    });
    assert_eq!(d.send("\r\n"), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(d.session.input.scanned(), 0);
}

#[test]
fn too_many_errors_closes() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    let out = d.send(&"GET / HTTP/1.1\r\n".repeat(MAX_ERRORS as usize + 5));
    assert_eq!(
        out.matches("500 5.5.2 Command unrecognized\r\n").count(),
        MAX_ERRORS as usize
    );
    assert!(out.ends_with("421 4.7.0 Too many errors\r\n"));
    assert!(d.closed);
}

#[test]
fn timeout_closes() {
    let mut d = Driver::new(SmtpListenerKind::Inbound);
    d.session.timed_out();
    assert_eq!(d.run(), "421 4.4.2 Timeout\r\n");
    assert!(d.closed);
}

#[test]
fn random_input_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5321);
    let pieces: &[&[u8]] = &[
        b"EHLO x\r\n",
        b"HELO\r\n",
        b"MAIL FROM:<>\r\n",
        b"MAIL FROM:<a@example.com> SIZE=99999999999999999999\r\n",
        b"RCPT TO:<alice@example.com>\r\n",
        b"RCPT TO:<\xff>\r\n",
        b"DATA\r\n",
        b".\r\n",
        b"\r\n.\r\n",
        b"AUTH XSCRIPT\r\n",
        b"AUTH XSCRIPT =\r\n",
        b"*\r\n",
        b"STARTTLS\r\n",
        b"RSET\r\n",
        b"\n",
        b"\r",
        b"\0",
        b"<>@:",
    ];
    for _ in 0..300 {
        let kind = if rng.random_bool(0.5) {
            SmtpListenerKind::Submission
        } else {
            SmtpListenerKind::Inbound
        };
        let mut d = Driver::new(kind);
        for _ in 0..40 {
            if d.closed {
                break;
            }
            if rng.random_bool(0.2) {
                d.auth_script.push_back(SaslStep::Challenge(vec![1, 2]));
            }
            let input: Vec<u8> = if rng.random_bool(0.7) {
                pieces[rng.random_range(0..pieces.len())].to_vec()
            } else {
                (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
            };
            let out = d.send_bytes(&input);
            // Every reply line is well formed.
            for line in out.lines() {
                assert!(line.len() >= 4 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit));
            }
        }
    }
}

#[test]
fn bad_command_log_lines_are_rate_limited() {
    // Below the error limit, so the connection stays open; only the log is spared.
    let (_, log) = crate::testkit::logs::capture(|| {
        let mut d = Driver::new(SmtpListenerKind::Inbound);
        for _ in 0..9 {
            assert_eq!(d.send("FROB\r\n"), "500 5.5.2 Command unrecognized\r\n");
        }
        assert!(!d.closed);
        drop(d);
    });
    let first = crate::log_limit::FIRST_LINES as usize;
    assert_eq!(log.matches("reason=").count(), first, "{log}");
    assert_eq!(
        log.matches("their log lines are suppressed").count(),
        1,
        "{log}"
    );
    // The rest is summed up when the connection ends.
    let rest = format!("{} more bad-command log lines suppressed", 9 - first);
    assert_eq!(log.matches(&rest).count(), 1, "{log}");
}
