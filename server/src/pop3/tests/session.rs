//! Transcript tests of the session state machine: bytes in, replies and events out, no sockets.
//! Events are answered the way the connection answers them (the SASL driver, the directory
//! check, the maildrop over a [`MemoryStore`]).

use std::sync::Arc;

use futures_util::FutureExt as _;

use super::{
    ALICE, DOTS, HOST, LF_ONLY, NO_FINAL_CRLF, Scripted, auth_backends, b64, identity, inbox,
    oauthbearer, registry, store_with,
};
use crate::auth::revocation::EndReason;
use crate::auth::sasl::{AuthWork, SaslFailure, SaslStep, driver};
use crate::pop3::maildrop::{self, Maildrop, MaildropLocks};
use crate::pop3::session::{
    Event, Interrupt, Io, MAX_AUTH_LINE, MAX_ERRORS, Session, SessionConfig,
};
use crate::store::{MemoryStore, StoreError};
use crate::testkit::{DISCOVERY, SCOPE};

const GREETING: &str = "+OK pop.example.com mail-oidc ready.\r\n";
const LOGGED_IN: &str = "+OK Logged in.\r\n";
const PLAINTEXT_REFUSED: &str =
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n";
const REVOKED: &str = "Session revoked: the session was logged out at the identity provider.";

struct Setup {
    plaintext: bool,
    stls: bool,
    tls: bool,
    store: Arc<MemoryStore>,
    locks: Arc<MaildropLocks>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            plaintext: false,
            stls: true,
            tls: false,
            store: store_with(&[DOTS, NO_FINAL_CRLF, LF_ONLY]),
            locks: MaildropLocks::new(),
        }
    }
}

/// Drives a session, answering events like a connection would.
struct Driver {
    session: Session,
    store: Arc<MemoryStore>,
    scripted: Arc<Scripted>,
    /// What the SASL work carried: (mechanism of a start or "", payload).
    auth_seen: Vec<(String, Option<Vec<u8>>)>,
    events: Vec<&'static str>,
    /// Answer the next UPDATE with this end instead (a revocation racing QUIT).
    end_before_update: Option<EndReason>,
    maildrop_fails: bool,
    closed: bool,
}

impl Driver {
    fn new() -> Self {
        Self::with(Setup::default())
    }

    fn with(setup: Setup) -> Self {
        let scripted = Scripted::new(vec![]);
        let backends = auth_backends();
        let config = Arc::new(SessionConfig {
            hostname: HOST.into(),
            allow_plaintext_auth: setup.plaintext,
            max_auth_failures: 3,
            stls_available: setup.stls,
            registry: registry(&backends, scripted.clone()),
            locks: setup.locks,
        });
        let mut d = Self {
            session: Session::new(config, Some("192.0.2.7:4444".parse().unwrap()), setup.tls),
            store: setup.store,
            scripted,
            auth_seen: Vec::new(),
            events: Vec::new(),
            end_before_update: None,
            maildrop_fails: false,
            closed: false,
        };
        assert_eq!(d.run(), GREETING);
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
        String::from_utf8(out).expect("replies are UTF-8 here")
    }

    fn answer(&mut self, event: Event) {
        match event {
            Event::StartTls => {
                self.events.push("tls");
                self.session.tls_established();
            }
            Event::Auth(work) => {
                self.events.push("auth");
                self.auth_seen.push(match &work {
                    AuthWork::Start {
                        mechanism, initial, ..
                    } => (mechanism.name().to_string(), initial.clone()),
                    AuthWork::Step { response, .. } => (String::new(), Some(response.clone())),
                });
                // The test doubles never wait.
                let done = driver::run(work)
                    .now_or_never()
                    .expect("exchange is ready at once");
                self.session.auth_done(done);
            }
            Event::CheckPassword { user, password } => {
                self.events.push("password");
                let directory = crate::testkit::TestDirectory::new();
                let result = driver::verify_password(directory.as_ref(), &user, &password)
                    .now_or_never()
                    .expect("directory is ready at once");
                self.session.password_checked(result);
            }
            Event::OpenMaildrop { user } => {
                self.events.push("open");
                let result = if self.maildrop_fails {
                    Err(StoreError::NoSuchMailbox("INBOX".into()))
                } else {
                    Maildrop::load(self.store.as_ref(), &user)
                };
                self.session.maildrop_opened(result);
            }
            Event::Update { user, uids } => {
                self.events.push("update");
                match self.end_before_update.take() {
                    Some(reason) => self.session.ended(&reason),
                    None => {
                        let result = maildrop::commit(self.store.as_ref(), &user, &uids);
                        self.session.updated(result);
                    }
                }
            }
        }
    }

    /// A successful one-step XSCRIPT login as alice.
    fn login(&mut self) {
        self.scripted.push_back(SaslStep::Success {
            identity: identity(ALICE),
            server_data: None,
        });
        assert_eq!(self.send("AUTH XSCRIPT =\r\n"), LOGGED_IN);
    }

    fn inbox(&self) -> Vec<Vec<u8>> {
        inbox(self.store.as_ref(), ALICE)
    }
}

fn capa_lines(reply: &str) -> Vec<&str> {
    let lines: Vec<&str> = reply.split("\r\n").collect();
    assert_eq!(
        lines.first(),
        Some(&"+OK Capability list follows."),
        "{reply}"
    );
    assert_eq!(lines[lines.len() - 2..], [".", ""], "{reply}");
    lines[1..lines.len() - 2].to_vec()
}

#[test]
fn capa_follows_tls_policy_and_state() {
    let mut d = Driver::new();
    assert_eq!(
        capa_lines(&d.send("CAPA\r\n")),
        [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "SASL XSCRIPT",
            "STLS",
            "IMPLEMENTATION mail-oidc"
        ],
        "no USER and no password or token mechanism before TLS"
    );
    let mut d = Driver::with(Setup {
        plaintext: true,
        stls: false,
        ..Setup::default()
    });
    assert_eq!(
        capa_lines(&d.send("capa\r\n")),
        [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "USER",
            "SASL PLAIN OAUTHBEARER XOAUTH2 XSCRIPT",
            "IMPLEMENTATION mail-oidc"
        ]
    );
    d.login();
    assert_eq!(
        capa_lines(&d.send("CAPA\r\n")),
        [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "IMPLEMENTATION mail-oidc"
        ],
        "nothing about logging in once logged in"
    );
}

#[test]
fn plaintext_logins_are_refused_before_tls() {
    let mut d = Driver::new();
    assert_eq!(d.send("USER alice\r\n"), PLAINTEXT_REFUSED);
    assert_eq!(d.send("PASS alicepw\r\n"), "-ERR No username given.\r\n");
    assert_eq!(
        d.send(&format!("AUTH PLAIN {}\r\n", b64(b"\0alice\0alicepw"))),
        PLAINTEXT_REFUSED
    );
    assert_eq!(
        d.send(&format!(
            "AUTH OAUTHBEARER {}\r\n",
            oauthbearer(ALICE, "good-alice")
        )),
        PLAINTEXT_REFUSED
    );
    assert_eq!(
        d.send("AUTH CRAM-MD5\r\n"),
        "-ERR Unsupported authentication mechanism.\r\n"
    );
    assert_eq!(
        d.send("AUTH\r\n"),
        "+OK Supported mechanisms follow.\r\nXSCRIPT\r\n.\r\n"
    );
    assert!(
        d.events.iter().all(|e| *e != "password"),
        "no directory call"
    );
    assert!(d.auth_seen.is_empty(), "no exchange started");
    // None of those counted as an authentication failure.
    d.login();
}

#[test]
fn stls_discards_pipelined_input_then_user_pass_works() {
    let mut d = Driver::new();
    assert_eq!(
        d.send("STLS\r\nUSER alice\r\nPASS alicepw\r\n"),
        "+OK Begin TLS negotiation.\r\n"
    );
    assert_eq!(d.events, ["tls"]);
    assert!(d.session.is_tls());
    let caps = d.send("CAPA\r\n");
    assert!(
        caps.contains("\r\nUSER\r\nSASL PLAIN OAUTHBEARER XOAUTH2 XSCRIPT\r\n"),
        "{caps}"
    );
    assert!(!caps.contains("STLS"), "{caps}");
    assert_eq!(d.send("STLS\r\n"), "-ERR TLS is already active.\r\n");
    assert_eq!(d.send("USER alice\r\n"), "+OK Password required.\r\n");
    assert_eq!(
        d.send("PASS wrong\r\n"),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    assert_eq!(
        d.send("PASS alicepw\r\n"),
        "-ERR No username given.\r\n",
        "a PASS consumes its USER"
    );
    assert_eq!(
        d.send("USER alice\r\nPASS alicepw\r\n"),
        "+OK Password required.\r\n+OK Logged in.\r\n"
    );
    assert_eq!(d.events, ["tls", "password", "password", "open"]);
    assert_eq!(
        d.session.identity().map(|i| i.authorization_id.as_str()),
        Some(ALICE)
    );
    for command in ["STLS", "USER bob", "PASS x", "AUTH PLAIN", "AUTH"] {
        assert_eq!(
            d.send(&format!("{command}\r\n")),
            "-ERR Already logged in.\r\n",
            "{command}"
        );
    }
}

#[test]
fn stls_without_a_certificate() {
    let mut d = Driver::with(Setup {
        stls: false,
        ..Setup::default()
    });
    assert_eq!(d.send("STLS\r\n"), "-ERR STLS is not available.\r\n");
    assert!(!d.send("CAPA\r\n").contains("STLS"));
}

#[test]
fn password_with_spaces_and_unknown_user() {
    let mut d = Driver::with(Setup {
        tls: true,
        ..Setup::default()
    });
    assert_eq!(
        d.send("USER carol\r\n"),
        "+OK Password required.\r\n",
        "no user enumeration"
    );
    assert_eq!(
        d.send("PASS x y\r\n"),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    assert_eq!(
        d.send("USER ALICE\r\nPASS alicepw\r\n"),
        "+OK Password required.\r\n+OK Logged in.\r\n"
    );
}

#[test]
fn auth_plain_with_initial_response_and_with_continuation() {
    let setup = || Setup {
        tls: true,
        ..Setup::default()
    };
    let mut d = Driver::with(setup());
    assert_eq!(
        d.send(&format!("AUTH PLAIN {}\r\n", b64(b"\0alice\0alicepw"))),
        LOGGED_IN
    );
    let mut d = Driver::with(setup());
    assert_eq!(
        d.send("AUTH PLAIN\r\n"),
        "+ \r\n",
        "empty challenge is `+ `"
    );
    assert_eq!(
        d.send(&format!("{}\r\n", b64(b"\0alice\0wrong"))),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    assert_eq!(d.send("auth plain\r\n"), "+ \r\n");
    assert_eq!(
        d.send(&format!("{}\r\n", b64(b"\0alice\0alicepw"))),
        LOGGED_IN
    );
}

#[test]
fn empty_initial_response_and_empty_continuation() {
    let mut d = Driver::new();
    d.scripted.extend([
        SaslStep::Challenge(b"who?".to_vec()),
        SaslStep::Success {
            identity: identity(ALICE),
            server_data: None,
        },
    ]);
    assert_eq!(
        d.send("AUTH XSCRIPT =\r\n"),
        format!("+ {}\r\n", b64(b"who?"))
    );
    assert_eq!(d.send("\r\n"), LOGGED_IN);
    assert_eq!(
        *d.scripted.received.lock().unwrap(),
        [Some(Vec::new()), Some(Vec::new())],
        "`=` and an empty line are both empty responses"
    );
}

#[test]
fn abort_bad_base64_and_malformed() {
    let mut d = Driver::new();
    d.scripted.push_back(SaslStep::Challenge(b"who?".to_vec()));
    assert_eq!(
        d.send("AUTH XSCRIPT\r\n"),
        format!("+ {}\r\n", b64(b"who?"))
    );
    assert_eq!(
        d.send("*\r\n"),
        "-ERR Authentication aborted by client.\r\n"
    );

    d.scripted.push_back(SaslStep::Challenge(Vec::new()));
    assert_eq!(d.send("AUTH XSCRIPT\r\n"), "+ \r\n");
    assert_eq!(
        d.send("not base64!\r\n"),
        "-ERR Invalid base64 data in continued response.\r\n"
    );
    assert_eq!(
        d.send("AUTH XSCRIPT ab$c\r\n"),
        "-ERR Invalid base64 data in continued response.\r\n"
    );
    assert_eq!(
        d.send("AUTH XSCRIPT a b\r\n"),
        "-ERR Syntax error: AUTH mechanism [initial-response].\r\n"
    );
    // Two counted failures so far (the bad base64): one more closes.
    d.scripted
        .push_back(SaslStep::Failure(SaslFailure::Malformed("gs2".into())));
    assert_eq!(
        d.send("AUTH XSCRIPT =\r\n"),
        "-ERR [AUTH] Too many invalid authentication attempts.\r\n"
    );
    assert!(d.closed);
}

#[test]
fn malformed_delegation_and_temporary_failures() {
    let mut d = Driver::with(Setup {
        tls: true,
        ..Setup::default()
    });
    d.scripted
        .push_back(SaslStep::Failure(SaslFailure::Malformed("gs2".into())));
    assert_eq!(
        d.send("AUTH XSCRIPT =\r\n"),
        "-ERR Malformed SASL message.\r\n"
    );
    // Alice's valid token asking to act as bob.
    assert_eq!(
        d.send(&format!(
            "AUTH OAUTHBEARER {}\r\n",
            oauthbearer("bob@example.com", "good-alice")
        )),
        "-ERR [AUTH] Authorization failed: not allowed to act as that user.\r\n"
    );
    assert_eq!(
        d.send(&format!(
            "AUTH OAUTHBEARER {}\r\n",
            oauthbearer(ALICE, "idp-down")
        )),
        "-ERR [SYS/TEMP] Temporary authentication failure.\r\n"
    );
    assert!(!d.closed, "an unreachable IdP is not the client's failure");
    assert_eq!(
        d.send(&format!(
            "AUTH OAUTHBEARER {}\r\n",
            oauthbearer(ALICE, "good-alice")
        )),
        LOGGED_IN
    );
}

#[test]
fn bearer_refusal_sends_the_rfc7628_challenge_then_fails() {
    for mechanism in ["OAUTHBEARER", "XOAUTH2"] {
        for initial in [true, false] {
            let mut d = Driver::with(Setup {
                tls: true,
                ..Setup::default()
            });
            let payload = match mechanism {
                "OAUTHBEARER" => oauthbearer(ALICE, "expired"),
                _ => b64(format!("user={ALICE}\x01auth=Bearer expired\x01\x01").as_bytes()),
            };
            let challenge = if initial {
                d.send(&format!("AUTH {mechanism} {payload}\r\n"))
            } else {
                assert_eq!(d.send(&format!("AUTH {mechanism}\r\n")), "+ \r\n");
                d.send(&format!("{payload}\r\n"))
            };
            let encoded = challenge
                .strip_prefix("+ ")
                .and_then(|c| c.strip_suffix("\r\n"))
                .unwrap_or_else(|| panic!("{mechanism}: {challenge:?}"));
            let json: serde_json::Value = serde_json::from_slice(
                &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
                    .expect("base64"),
            )
            .expect("JSON");
            assert_eq!(
                json,
                serde_json::json!({
                    "status": "invalid_token",
                    "scope": SCOPE,
                    "openid-configuration": DISCOVERY,
                })
            );
            assert_eq!(
                d.send("AQ==\r\n"),
                "-ERR [AUTH] Authentication failed.\r\n",
                "{mechanism} after the dummy reply"
            );
        }
    }
}

#[test]
fn success_data_goes_out_as_a_challenge() {
    let mut d = Driver::new();
    d.scripted.push_back(SaslStep::Success {
        identity: identity(ALICE),
        server_data: Some(b"v=final".to_vec()),
    });
    assert_eq!(
        d.send("AUTH XSCRIPT =\r\n"),
        format!("+ {}\r\n", b64(b"v=final"))
    );
    assert_eq!(d.send("\r\n"), LOGGED_IN);
}

#[test]
fn the_failure_limit_closes_the_connection() {
    let mut d = Driver::with(Setup {
        tls: true,
        ..Setup::default()
    });
    let wrong = b64(b"\0alice\0wrong");
    assert_eq!(
        d.send(&format!("AUTH PLAIN {wrong}\r\n")),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    d.scripted.push_back(SaslStep::Challenge(Vec::new()));
    d.send("AUTH XSCRIPT\r\n");
    assert_eq!(
        d.send("*\r\n"),
        "-ERR Authentication aborted by client.\r\n",
        "not counted"
    );
    assert_eq!(
        d.send("USER alice\r\nPASS nope\r\n"),
        "+OK Password required.\r\n-ERR [AUTH] Authentication failed.\r\n"
    );
    assert!(!d.closed);
    assert_eq!(
        d.send(&format!("AUTH PLAIN {wrong}\r\nSTAT\r\n")),
        "-ERR [AUTH] Too many invalid authentication attempts.\r\n",
        "nothing after the limit"
    );
    assert!(d.closed);
}

#[test]
fn transaction_commands_before_login() {
    let mut d = Driver::new();
    for command in [
        "STAT", "LIST", "UIDL 1", "RETR 1", "TOP 1 0", "DELE 1", "RSET", "NOOP",
    ] {
        assert_eq!(
            d.send(&format!("{command}\r\n")),
            "-ERR Log in first.\r\n",
            "{command}"
        );
    }
    assert_eq!(d.send("QUIT\r\n"), "+OK Logging out.\r\n");
    assert!(d.closed);
}

#[test]
fn stat_list_uidl_with_exact_sizes() {
    let mut d = Driver::new();
    d.login();
    // DOTS is 74 octets already in CRLF; NO_FINAL_CRLF gains 2; LF_ONLY gains one per line.
    let sizes = [DOTS.len(), NO_FINAL_CRLF.len() + 2, LF_ONLY.len() + 4];
    assert_eq!(sizes, [74, 41, 31]);
    let total: usize = sizes.iter().sum();
    assert_eq!(d.send("STAT\r\n"), format!("+OK 3 {total}\r\n"));
    assert_eq!(
        d.send("LIST\r\n"),
        format!("+OK 3 messages ({total} octets)\r\n1 74\r\n2 41\r\n3 31\r\n.\r\n")
    );
    assert_eq!(d.send("LIST 2\r\n"), "+OK 2 41\r\n");
    for bad in [
        "LIST 0",
        "LIST 4",
        "UIDL 4",
        "RETR 0",
        "TOP 9 1",
        "DELE 4",
        "LIST 99999999999999999999",
    ] {
        assert_eq!(
            d.send(&format!("{bad}\r\n")),
            "-ERR No such message.\r\n",
            "{bad}"
        );
    }
    let validity = crate::store::MailStore::status(d.store.as_ref(), ALICE, "INBOX")
        .expect("status")
        .uid_validity;
    assert_eq!(
        d.send("UIDL\r\n"),
        format!(
            "+OK Unique-ID listing follows.\r\n1 {validity}.1\r\n2 {validity}.2\r\n3 {validity}.3\r\n.\r\n"
        )
    );
    assert_eq!(d.send("UIDL 3\r\n"), format!("+OK 3 {validity}.3\r\n"));
    assert_eq!(d.send("NOOP\r\n"), "+OK\r\n");
    assert_eq!(
        d.send("LIST x\r\n"),
        "-ERR Syntax error: number expected.\r\n"
    );
}

#[test]
fn retr_is_dot_stuffed_crlf_and_has_the_announced_size() {
    let mut d = Driver::new();
    d.login();
    assert_eq!(
        d.send("RETR 1\r\n"),
        "+OK 74 octets\r\nFrom: bob@example.com\r\nSubject: dots\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n.\r\n"
    );
    assert_eq!(
        d.send("RETR 2\r\n"),
        "+OK 41 octets\r\nSubject: no final line end\r\n\r\nlast line\r\n.\r\n"
    );
    assert_eq!(
        d.send("retr 3\r\n"),
        "+OK 31 octets\r\nSubject: lf\r\n\r\nline 1\r\nline 2\r\n.\r\n"
    );
    // Unstuffed, every message is exactly as long as announced.
    for (n, size) in [(1, 74), (2, 41), (3, 31)] {
        let reply = d.send(&format!("RETR {n}\r\n"));
        let body = reply
            .split_once("\r\n")
            .map(|(_, b)| b)
            .and_then(|b| b.strip_suffix(".\r\n"))
            .expect("multi-line reply");
        let unstuffed: usize = body
            .split_inclusive("\r\n")
            .map(|l| l.strip_prefix('.').unwrap_or(l).len())
            .sum();
        assert_eq!(unstuffed, size, "message {n}");
    }
}

#[test]
fn top_sends_headers_blank_line_and_k_lines() {
    let mut d = Driver::new();
    d.login();
    assert_eq!(
        d.send("TOP 1 0\r\n"),
        "+OK Top of message follows.\r\nFrom: bob@example.com\r\nSubject: dots\r\n\r\n.\r\n"
    );
    assert_eq!(
        d.send("TOP 1 2\r\n"),
        "+OK Top of message follows.\r\nFrom: bob@example.com\r\nSubject: dots\r\n\r\n..leading dot\r\n...two dots\r\n.\r\n"
    );
    assert_eq!(
        d.send("TOP 2 100\r\n"),
        "+OK Top of message follows.\r\nSubject: no final line end\r\n\r\nlast line\r\n.\r\n",
        "k beyond the body sends the whole body"
    );
    assert_eq!(
        d.send("TOP 3 1\r\n"),
        "+OK Top of message follows.\r\nSubject: lf\r\n\r\nline 1\r\n.\r\n"
    );
    assert_eq!(
        d.send("TOP 1\r\n"),
        "-ERR Syntax error: TOP message-number lines.\r\n"
    );
}

#[test]
fn dele_marks_rset_unmarks_and_deleted_messages_are_refused() {
    let mut d = Driver::new();
    d.login();
    assert_eq!(d.send("DELE 2\r\n"), "+OK Marked to be deleted.\r\n");
    for command in ["RETR 2", "TOP 2 0", "LIST 2", "UIDL 2", "DELE 2"] {
        assert_eq!(
            d.send(&format!("{command}\r\n")),
            "-ERR Message 2 is deleted.\r\n",
            "{command}"
        );
    }
    assert_eq!(d.send("STAT\r\n"), "+OK 2 105\r\n");
    let list = d.send("LIST\r\n");
    assert_eq!(list, "+OK 2 messages (105 octets)\r\n1 74\r\n3 31\r\n.\r\n");
    assert!(!d.send("UIDL\r\n").contains("\r\n2 "));
    assert_eq!(
        d.send("RSET\r\n"),
        "+OK Maildrop has 3 messages (146 octets).\r\n"
    );
    assert_eq!(d.send("LIST 2\r\n"), "+OK 2 41\r\n");
    assert_eq!(
        d.send("DELE 1\r\nQUIT\r\n"),
        "+OK Marked to be deleted.\r\n+OK Logging out, 1 message(s) deleted.\r\n"
    );
    assert!(d.closed);
    assert_eq!(
        d.inbox(),
        [NO_FINAL_CRLF.to_vec(), LF_ONLY.to_vec()],
        "only message 1 is gone"
    );
}

#[test]
fn quit_without_deletions_removes_nothing() {
    let mut d = Driver::new();
    d.login();
    assert_eq!(d.send("QUIT\r\n"), "+OK Logging out.\r\n");
    assert_eq!(d.events, ["auth", "open", "update"]);
    assert_eq!(d.inbox().len(), 3);
}

#[test]
fn a_session_that_ends_without_quit_deletes_nothing() {
    let setup = Setup::default();
    let (store, locks) = (setup.store.clone(), setup.locks.clone());
    let mut d = Driver::with(setup);
    d.login();
    d.send("DELE 1\r\nDELE 2\r\n");
    assert!(locks.is_locked(ALICE));
    drop(d);
    assert!(!locks.is_locked(ALICE), "the lock goes with the session");
    assert_eq!(inbox(store.as_ref(), ALICE).len(), 3);
}

#[test]
fn a_second_session_finds_the_maildrop_in_use() {
    let first_setup = Setup::default();
    let (store, locks) = (first_setup.store.clone(), first_setup.locks.clone());
    let mut first = Driver::with(first_setup);
    first.login();
    let mut second = Driver::with(Setup {
        store: store.clone(),
        locks: locks.clone(),
        ..Setup::default()
    });
    second.scripted.push_back(SaslStep::Success {
        identity: identity("ALICE@example.com"),
        server_data: None,
    });
    assert_eq!(
        second.send("AUTH XSCRIPT =\r\n"),
        "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
    );
    assert!(second.session.identity().is_none());
    assert_eq!(second.send("STAT\r\n"), "-ERR Log in first.\r\n");
    first.send("DELE 3\r\n");
    assert_eq!(
        first.send("QUIT\r\n"),
        "+OK Logging out, 1 message(s) deleted.\r\n"
    );
    // Released before the QUIT reply went out: the second session gets in at once.
    second.login();
    assert_eq!(second.send("STAT\r\n"), "+OK 2 115\r\n");
}

#[test]
fn revocation_ends_the_session_without_update() {
    let mut d = Driver::new();
    d.login();
    d.send("DELE 1\r\n");
    d.session.ended(&EndReason::Revoked(
        "the session was logged out at the identity provider".into(),
    ));
    assert_eq!(d.run(), format!("-ERR [SYS/PERM] {REVOKED}\r\n"));
    assert!(d.closed);
    assert_eq!(d.inbox().len(), 3, "nothing deleted");

    // Ended while QUIT waits for its UPDATE: still nothing deleted.
    let mut d = Driver::new();
    d.login();
    d.end_before_update = Some(EndReason::TokenExpired);
    assert_eq!(
        d.send("DELE 1\r\nQUIT\r\n"),
        "+OK Marked to be deleted.\r\n-ERR [SYS/PERM] Session ended: the access token has expired.\r\n"
    );
    assert!(d.closed);
    assert_eq!(d.inbox().len(), 3);
}

#[test]
fn idle_timeout_closes_without_update() {
    let mut d = Driver::new();
    d.login();
    d.send("DELE 1\r\n");
    d.session.timed_out();
    assert_eq!(d.run(), "-ERR Disconnected for inactivity.\r\n");
    assert!(d.closed);
    assert_eq!(d.inbox().len(), 3);
}

#[test]
fn unreadable_maildrop_is_a_temporary_failure() {
    let mut d = Driver::new();
    d.maildrop_fails = true;
    d.scripted.push_back(SaslStep::Success {
        identity: identity(ALICE),
        server_data: None,
    });
    assert_eq!(
        d.send("AUTH XSCRIPT =\r\n"),
        "-ERR [SYS/TEMP] Cannot open the mailbox, try again later.\r\n"
    );
    assert!(d.session.identity().is_none());
    d.maildrop_fails = false;
    d.login();
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mut d = Driver::new();
    d.login();
    assert_eq!(
        d.send("NOOP\r\nLIST 1\r\nDELE 1\r\nSTAT\r\nRSET\r\nSTAT\r\n"),
        "+OK\r\n+OK 1 74\r\n+OK Marked to be deleted.\r\n+OK 2 72\r\n\
         +OK Maildrop has 3 messages (146 octets).\r\n+OK 3 146\r\n"
    );
    // Bytes split anywhere, bare LF accepted.
    assert_eq!(d.send("ST"), "");
    assert_eq!(d.send("AT\nNO"), "+OK 3 146\r\n");
    assert_eq!(d.send("OP\r\n"), "+OK\r\n");
}

#[test]
fn long_lines_and_too_many_errors() {
    let mut d = Driver::new();
    let long = "X".repeat(2000);
    assert_eq!(
        d.send(&format!("NOOP {long}\r\n")),
        "-ERR Line too long.\r\n"
    );
    // A bearer token sized AUTH line is fine.
    let big = b64(&vec![b'a'; 10_000]);
    d.scripted.push_back(SaslStep::Success {
        identity: identity(ALICE),
        server_data: None,
    });
    assert_eq!(d.send(&format!("AUTH XSCRIPT {big}\r\n")), LOGGED_IN);
    assert_eq!(
        d.scripted.received.lock().unwrap()[0]
            .as_ref()
            .map(Vec::len),
        Some(10_000)
    );
    let huge = "A".repeat(MAX_AUTH_LINE + 10);
    let mut d = Driver::new();
    assert_eq!(
        d.send(&format!("AUTH XSCRIPT {huge}\r\n")),
        "-ERR Line too long.\r\n"
    );
    // Unknown commands, each counted like the long line, until the connection closes.
    let mut out = String::new();
    for _ in 2..MAX_ERRORS {
        out.push_str(&d.send("APOP alice 0123\r\n"));
        assert!(!d.closed);
    }
    assert_eq!(
        out,
        "-ERR Unknown command.\r\n".repeat(MAX_ERRORS as usize - 2)
    );
    assert_eq!(
        d.send("GET / HTTP/1.1\r\n"),
        "-ERR Unknown command.\r\n-ERR Too many errors.\r\n"
    );
    assert!(d.closed);
}

/// Regression: each call searched the whole buffered line again for its end, so a 16 KiB AUTH
/// line sent a byte at a time cost quadratic time. The search now resumes where it stopped.
#[test]
fn a_line_arriving_byte_by_byte_is_searched_once() {
    let mut d = Driver::new();
    let line = format!("AUTH XSCRIPT {}", "A".repeat(3000));
    for (i, byte) in line.bytes().enumerate() {
        assert_eq!(d.send_bytes(&[byte]), "");
        assert_eq!(
            d.session.input_scanned(),
            i + 1,
            "bytes already searched are not searched again"
        );
    }
    d.scripted.push_back(SaslStep::Success {
        identity: identity(ALICE),
        server_data: None,
    });
    assert_eq!(d.send("\r\n"), LOGGED_IN);
    assert_eq!(d.session.input_scanned(), 0);
}

#[test]
fn a_continuation_line_may_be_as_long_as_an_auth_line() {
    let mut d = Driver::new();
    d.scripted.extend([
        SaslStep::Challenge(Vec::new()),
        SaslStep::Success {
            identity: identity(ALICE),
            server_data: None,
        },
    ]);
    assert_eq!(d.send("AUTH XSCRIPT\r\n"), "+ \r\n");
    let big = b64(&vec![b'a'; 9_000]);
    assert_eq!(d.send(&format!("{big}\r\n")), LOGGED_IN);
    assert_eq!(d.auth_seen.len(), 2);
}

#[test]
fn bad_command_log_lines_are_rate_limited() {
    // Below the error limit, so the connection stays open; only the log is spared.
    let (_, log) = crate::testkit::logs::capture(|| {
        let mut d = Driver::new();
        for _ in 0..9 {
            assert_eq!(d.send("FROB\r\n"), "-ERR Unknown command.\r\n");
        }
        assert!(!d.closed);
        drop(d);
    });
    let first = crate::log_limit::FIRST_LINES as usize;
    assert_eq!(log.matches("POP3 refused").count(), first, "{log}");
    assert_eq!(
        log.matches("their log lines are suppressed").count(),
        1,
        "{log}"
    );
    // The rest is summed up when the connection ends.
    let rest = format!("{} more bad-command log lines suppressed", 9 - first);
    assert_eq!(log.matches(&rest).count(), 1, "{log}");
}
