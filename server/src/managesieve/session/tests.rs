//! Transcript tests of the session state machine: bytes in, responses and events out, no
//! sockets. SASL runs the real PLAIN and OAUTHBEARER over the test kit's directory and
//! validator, and the scripted `XSCRIPT` mechanism for exact step control.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::FutureExt as _;

use super::*;
use crate::auth::sasl::{SaslFailure, SaslStep};
/// What the interpreter implements, spelled out so a change to the capability shows here.
const SIEVE_EXTENSIONS: &str =
    "fileinto envelope copy imap4flags body comparator-i;octet comparator-i;ascii-casemap";
use crate::store::ScriptLimits;
use crate::testkit::sasl::Scripted;
use crate::testkit::{TestDirectory, TestValidator, backends};

const HOST: &str = "sieve.example.com";
const ALICE: &str = "alice@example.com";

/// Refuses scripts containing `bad`, as the interpreter would with its line number.
pub fn test_check() -> ScriptCheck {
    Arc::new(|source: &str| {
        if source.contains("bad") {
            Err("line 2: unknown command bad".to_string())
        } else {
            Ok(())
        }
    })
}

fn identity(user: &str) -> SaslIdentity {
    SaslIdentity {
        authentication_id: user.into(),
        authorization_id: user.into(),
        token: None,
    }
}

struct Setup {
    starttls: bool,
    plaintext: bool,
    limits: ScriptLimits,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            starttls: true,
            plaintext: false,
            limits: ScriptLimits {
                max_script_size: 100,
                max_scripts: 3,
            },
        }
    }
}

fn config(setup: Setup, scripted: Arc<Scripted>) -> Arc<SessionConfig> {
    let backends = backends(
        TestDirectory::new(),
        Some(Arc::new(TestValidator::named())),
        &[],
    );
    let mut registry = SaslRegistry::with_builtins(&backends);
    registry.register(scripted);
    let registry = registry
        .enable(&[
            "PLAIN".into(),
            "OAUTHBEARER".into(),
            "XOAUTH2".into(),
            "XSCRIPT".into(),
        ])
        .expect("known mechanisms");
    Arc::new(SessionConfig {
        hostname: HOST.into(),
        registry,
        max_auth_failures: 3,
        allow_plaintext_auth: setup.plaintext,
        starttls_available: setup.starttls,
        scripts: Arc::new(SieveScripts::new(setup.limits)),
        check: test_check(),
        extensions: super::super::sieve_extensions(),
        preauth_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(600),
    })
}

/// Drives a session, answering events like a connection would.
struct Driver {
    session: Session,
    config: Arc<SessionConfig>,
    /// Steps the `XSCRIPT` exchange answers with, in order.
    script: Arc<Scripted>,
    /// What the SASL work carried: (mechanism of a start or "", payload).
    auth_seen: Vec<(String, Option<Vec<u8>>)>,
    closed: bool,
}

/// The greeting's capability lines before TLS with the default setup.
fn caps(sasl: &str, starttls: bool) -> String {
    format!(
        "\"IMPLEMENTATION\" \"mail-oidc\"\r\n\"SASL\" \"{sasl}\"\r\n\"SIEVE\" \"{SIEVE_EXTENSIONS}\"\r\n{}\"VERSION\" \"1.0\"\r\n\"UNAUTHENTICATE\"\r\n",
        if starttls { "\"STARTTLS\"\r\n" } else { "" }
    )
}

const ALL_MECHS: &str = "PLAIN OAUTHBEARER XOAUTH2 XSCRIPT";

impl Driver {
    fn new() -> Self {
        Self::with(Setup::default(), false)
    }

    /// A session already under TLS (as after STARTTLS).
    fn tls() -> Self {
        Self::with(Setup::default(), true)
    }

    fn with(setup: Setup, tls: bool) -> Self {
        let script = Scripted::new(vec![]);
        let config = config(setup, script.clone());
        let mut d = Self {
            session: Session::new(config.clone(), Some("192.0.2.9:4190".parse().unwrap()), tls),
            config,
            script,
            auth_seen: Vec::new(),
            closed: false,
        };
        let greeting = d.send("");
        assert!(
            greeting.ends_with(&format!("OK \"{HOST} mail-oidc ManageSieve ready.\"\r\n")),
            "{greeting}"
        );
        d
    }

    fn send(&mut self, input: &str) -> String {
        self.send_bytes(input.as_bytes())
    }

    fn send_bytes(&mut self, input: &[u8]) -> String {
        self.session.enqueue_input(input);
        let out = self.run();
        String::from_utf8(out).expect("responses are UTF-8 in these tests")
    }

    fn run(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match self.session.next_interrupt() {
                Interrupt::Io(Io::Output(bytes)) => out.extend_from_slice(&bytes),
                Interrupt::Io(Io::NeedMoreInput) => break,
                Interrupt::Io(Io::Close) => {
                    self.closed = true;
                    break;
                }
                Interrupt::Event(Event::StartTls) => self.session.tls_established(),
                Interrupt::Event(Event::Auth(work)) => {
                    self.auth_seen.push(match &work {
                        AuthWork::Start {
                            mechanism, initial, ..
                        } => (mechanism.name().to_string(), initial.clone()),
                        AuthWork::Step { response, .. } => (String::new(), Some(response.clone())),
                    });
                    // The test doubles never wait.
                    let done = crate::auth::sasl::driver::run(work)
                        .now_or_never()
                        .expect("test exchanges are ready at once");
                    self.session.auth_done(done);
                }
            }
        }
        out
    }

    /// A one-step XSCRIPT login as `user`.
    fn login(&mut self, user: &str) {
        self.script.push_back(SaslStep::Success {
            identity: identity(user),
            server_data: None,
        });
        assert_eq!(
            self.send("AUTHENTICATE \"XSCRIPT\" \"\"\r\n"),
            "OK \"Logged in.\"\r\n"
        );
    }

    fn scripts(&self) -> &SieveScripts {
        &self.config.scripts
    }
}

#[test]
fn greeting_lists_capabilities_then_ok() {
    let mut d = Driver::new();
    let fresh = Session::new(d.config.clone(), None, false);
    assert_eq!(
        String::from_utf8(fresh.output.clone()).unwrap(),
        format!(
            "{}OK \"{HOST} mail-oidc ManageSieve ready.\"\r\n",
            caps("XSCRIPT", true)
        )
    );
    assert_eq!(
        d.send("CAPABILITY\r\n"),
        format!("{}OK \"Capability completed.\"\r\n", caps("XSCRIPT", true))
    );
}

#[test]
fn starttls_reissues_capabilities_and_drops_pipelined_input() {
    let mut d = Driver::new();
    assert_eq!(
        d.send("STARTTLS\r\nCAPABILITY\r\n"),
        format!(
            "OK \"Begin TLS negotiation now.\"\r\n{}OK \"TLS negotiation successful.\"\r\n",
            caps(ALL_MECHS, false)
        )
    );
    assert!(d.session.is_tls());
    // The pipelined CAPABILITY got no answer; sieve-connect's resync NOOP does.
    assert_eq!(
        d.send("NOOP \"STARTTLS-RESYNC-CAPA\"\r\n"),
        "OK (TAG \"STARTTLS-RESYNC-CAPA\") \"Done\"\r\n"
    );
    assert_eq!(d.send("STARTTLS\r\n"), "NO \"TLS is already active.\"\r\n");
}

#[test]
fn starttls_unavailable_or_after_login() {
    let mut d = Driver::with(
        Setup {
            starttls: false,
            ..Setup::default()
        },
        false,
    );
    assert_eq!(
        d.send("CAPABILITY\r\n"),
        format!("{}OK \"Capability completed.\"\r\n", caps("XSCRIPT", false))
    );
    assert_eq!(
        d.send("STARTTLS\r\n"),
        "NO \"STARTTLS is not available.\"\r\n"
    );
    assert_eq!(
        d.send("STARTTLS now\r\n"),
        "NO \"Syntax error: expected no arguments.\"\r\n"
    );
    let mut d = Driver::with(
        Setup {
            plaintext: true,
            ..Setup::default()
        },
        false,
    );
    d.login(ALICE);
    assert_eq!(
        d.send("STARTTLS\r\n"),
        "NO \"STARTTLS is only allowed before authentication.\"\r\n"
    );
}

#[test]
fn noop_logout_and_capability_after_login() {
    let mut d = Driver::tls();
    assert_eq!(d.send("NOOP\r\n"), "OK \"Done\"\r\n");
    assert_eq!(
        d.send("noop {3+}\r\na\"b\r\n"),
        "OK (TAG \"a\\\"b\") \"Done\"\r\n"
    );
    d.login(ALICE);
    assert_eq!(
        d.send("CAPABILITY\r\n"),
        format!("{}OK \"Capability completed.\"\r\n", caps("", false))
    );
    assert_eq!(d.send("LOGOUT\r\n"), "OK \"Logout completed.\"\r\n");
    assert!(d.closed);
}

#[test]
fn unknown_and_malformed_commands_are_counted_then_bye() {
    let mut d = Driver::new();
    assert_eq!(d.send("FROBNICATE\r\n"), "NO \"Unknown command.\"\r\n");
    assert_eq!(
        d.send("HAVESPACE \"a\" \"1\"\r\n"),
        "NO \"Syntax error: expected a script name and a size.\"\r\n"
    );
    assert_eq!(
        d.send("NOOP \"a\"\"b\"\r\n"),
        "NO \"Syntax error: missing space between arguments.\"\r\n"
    );
    assert_eq!(d.send("LISTSCRIPTS\r\n"), "NO \"Authenticate first.\"\r\n");
    assert_eq!(
        d.send("UNAUTHENTICATE\r\n"),
        "NO \"Not authenticated.\"\r\n"
    );
    for _ in 6..MAX_ERRORS {
        assert!(!d.closed);
        assert_eq!(
            d.send("GETSCRIPT \"a\"\r\n"),
            "NO \"Authenticate first.\"\r\n"
        );
    }
    assert!(!d.closed);
    assert_eq!(
        d.send("FROB\r\nNOOP\r\n"),
        "NO \"Unknown command.\"\r\nBYE \"Too many invalid commands.\"\r\n"
    );
    assert!(d.closed);
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mut d = Driver::tls();
    d.login(ALICE);
    assert_eq!(
        d.send("PUTSCRIPT \"a\" {5+}\r\nkeep;\r\nSETACTIVE \"a\"\r\nLISTSCRIPTS\r\nNOOP\r\n"),
        "OK \"Putscript completed.\"\r\nOK \"Setactive completed.\"\r\n\"a\" ACTIVE\r\n\
         OK \"Listscripts completed.\"\r\nOK \"Done\"\r\n"
    );
}

// AUTHENTICATE.

#[test]
fn authenticate_with_initial_response_quoted_literal_or_empty() {
    for (line, seen) in [
        (
            "AUTHENTICATE \"XSCRIPT\" \"Zmlyc3Q=\"\r\n",
            Some(b"first".to_vec()),
        ),
        (
            "authenticate \"xscript\" {8+}\r\nZmlyc3Q=\r\n",
            Some(b"first".to_vec()),
        ),
        (
            "AUTHENTICATE XSCRIPT {8}\r\nZmlyc3Q=\r\n",
            Some(b"first".to_vec()),
        ),
        ("AUTHENTICATE \"XSCRIPT\" \"\"\r\n", Some(Vec::new())),
    ] {
        let mut d = Driver::new();
        d.script.push_back(SaslStep::Success {
            identity: identity(ALICE),
            server_data: None,
        });
        assert_eq!(d.send(line), "OK \"Logged in.\"\r\n", "{line}");
        assert_eq!(d.auth_seen, [("XSCRIPT".to_string(), seen)], "{line}");
        assert_eq!(
            d.session.identity().map(|i| i.authorization_id.as_str()),
            Some(ALICE)
        );
        assert_eq!(d.session.logins(), 1);
    }
}

#[test]
fn authenticate_challenges_and_string_responses() {
    let mut d = Driver::new();
    d.script.extend([
        SaslStep::Challenge(Vec::new()),
        SaslStep::Challenge(b"hello".to_vec()),
        SaslStep::Success {
            identity: identity(ALICE),
            server_data: Some(b"v=verified".to_vec()),
        },
    ]);
    assert_eq!(d.send("AUTHENTICATE \"XSCRIPT\"\r\n"), "\"\"\r\n");
    // A response as a literal, then as a quoted string.
    assert_eq!(
        d.send("{8+}\r\nZmlyc3Q=\r\n"),
        format!("\"{}\"\r\n", BASE64.encode("hello"))
    );
    assert_eq!(
        d.send("\"c2Vjb25k\"\r\n"),
        format!(
            "OK (SASL \"{}\") \"Logged in.\"\r\n",
            BASE64.encode("v=verified")
        )
    );
    assert_eq!(
        d.auth_seen,
        [
            ("XSCRIPT".to_string(), None),
            (String::new(), Some(b"first".to_vec())),
            (String::new(), Some(b"second".to_vec())),
        ]
    );
    assert_eq!(
        d.send("AUTHENTICATE \"XSCRIPT\"\r\n"),
        "NO \"Already authenticated.\"\r\n"
    );
}

#[test]
fn authenticate_abort_bad_base64_and_non_string_responses() {
    let mut d = Driver::new();
    d.script.push_back(SaslStep::Challenge(Vec::new()));
    d.send("AUTHENTICATE \"XSCRIPT\"\r\n");
    assert_eq!(d.send("\"*\"\r\n"), "NO \"Authentication aborted.\"\r\n");
    d.script.push_back(SaslStep::Challenge(Vec::new()));
    d.send("AUTHENTICATE \"XSCRIPT\"\r\n");
    assert_eq!(
        d.send("\"not base64!\"\r\n"),
        "NO \"Invalid base64 data.\"\r\n"
    );
    // RFC 5804 responses are strings: a bare word is malformed.
    d.script.push_back(SaslStep::Challenge(Vec::new()));
    d.send("AUTHENTICATE \"XSCRIPT\"\r\n");
    assert_eq!(d.send("Zmlyc3Q=\r\n"), "NO \"Malformed SASL message.\"\r\n");
    assert!(!d.closed, "an abort is not a failed attempt");
    assert_eq!(d.send("NOOP\r\n"), "OK \"Done\"\r\n");

    let mut d = Driver::new();
    d.script.push_back(SaslStep::Challenge(Vec::new()));
    d.send("AUTHENTICATE \"XSCRIPT\"\r\n");
    assert_eq!(
        d.send("\"a\" \"b\"\r\n"),
        "NO \"Malformed SASL message.\"\r\n"
    );
    // Bad syntax in a response ends the exchange the same way.
    d.script.push_back(SaslStep::Challenge(Vec::new()));
    d.send("AUTHENTICATE \"XSCRIPT\"\r\n");
    assert_eq!(d.send("\"\\x\"\r\n"), "NO \"Malformed SASL message.\"\r\n");
    assert_eq!(d.send("NOOP\r\n"), "OK \"Done\"\r\n");
    assert_eq!(
        d.auth_seen.iter().filter(|(m, _)| m.is_empty()).count(),
        0,
        "no response reached the exchange"
    );
    assert_eq!(
        d.script.dropped.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[test]
fn authenticate_initial_response_not_base64() {
    let mut d = Driver::new();
    assert_eq!(
        d.send("AUTHENTICATE \"XSCRIPT\" \"!!!\"\r\n"),
        "NO \"Invalid base64 data.\"\r\n"
    );
    assert!(d.auth_seen.is_empty());
}

#[test]
fn authenticate_mechanism_checks() {
    let mut d = Driver::new();
    assert_eq!(
        d.send("AUTHENTICATE \"CRAM-MD5\"\r\n"),
        "NO \"Unsupported authentication mechanism.\"\r\n"
    );
    assert_eq!(
        d.send("AUTHENTICATE \"PLAIN\" \"AGFsaWNlAGFsaWNlcHc=\"\r\n"),
        "NO (ENCRYPT-NEEDED) \"Plaintext authentication disallowed on non-secure connections.\"\r\n"
    );
    assert_eq!(
        d.send("AUTHENTICATE \"OAUTHBEARER\"\r\n"),
        "NO (ENCRYPT-NEEDED) \"Plaintext authentication disallowed on non-secure connections.\"\r\n"
    );
    assert!(d.auth_seen.is_empty());
    assert_eq!(
        d.send("AUTHENTICATE\r\n"),
        "NO \"Syntax error: expected a mechanism and an optional initial response.\"\r\n"
    );
}

#[test]
fn failure_kinds_map_to_responses() {
    let cases = [
        (
            SaslFailure::TemporaryFailure("idp".into()),
            "NO (TRYLATER) \"Temporary authentication failure.\"\r\n",
        ),
        (
            SaslFailure::DelegationForbidden {
                authcid: "a".into(),
                authzid: "b".into(),
            },
            "NO \"Authorization failed: not allowed to act as that user.\"\r\n",
        ),
        (
            SaslFailure::Malformed("gs2".into()),
            "NO \"Malformed SASL message.\"\r\n",
        ),
    ];
    for (failure, wire) in cases {
        let mut d = Driver::new();
        d.script.push_back(SaslStep::Failure(failure));
        assert_eq!(d.send("AUTHENTICATE \"XSCRIPT\" \"\"\r\n"), wire);
        assert!(!d.closed);
    }
}

#[test]
fn error_challenge_then_dummy_reply_then_no_and_the_limit() {
    let mut d = Driver::new();
    let json = br#"{"status":"invalid_token"}"#.to_vec();
    for attempt in 1..=3 {
        d.script.extend([
            SaslStep::Challenge(json.clone()),
            SaslStep::Failure(SaslFailure::InvalidCredentials {
                reason: "expired".into(),
            }),
        ]);
        assert_eq!(
            d.send("AUTHENTICATE \"XSCRIPT\" \"dG9rZW4=\"\r\n"),
            format!("\"{}\"\r\n", BASE64.encode(&json))
        );
        let reply = d.send("\"AQ==\"\r\n");
        if attempt < 3 {
            assert_eq!(reply, "NO \"Authentication failed.\"\r\n");
            assert!(!d.closed);
        } else {
            assert_eq!(
                reply,
                "NO \"Authentication failed.\"\r\nBYE \"Too many invalid authentication attempts.\"\r\n"
            );
            assert!(d.closed);
        }
    }
}

#[test]
fn real_oauthbearer_error_challenge_and_success_under_tls() {
    let mut d = Driver::tls();
    let bad = BASE64.encode("n,,\x01auth=Bearer expired\x01\x01");
    let challenge = d.send(&format!("AUTHENTICATE \"OAUTHBEARER\" \"{bad}\"\r\n"));
    let encoded = challenge
        .strip_prefix('"')
        .and_then(|c| c.strip_suffix("\"\r\n"))
        .expect("a quoted challenge");
    let json: serde_json::Value =
        serde_json::from_slice(&BASE64.decode(encoded).expect("base64")).expect("JSON");
    assert_eq!(json["status"], "invalid_token");
    assert_eq!(
        json["openid-configuration"],
        crate::testkit::DISCOVERY,
        "{json}"
    );
    assert_eq!(d.send("\"AQ==\"\r\n"), "NO \"Authentication failed.\"\r\n");
    // A JWT-sized initial response goes as a literal (quoted strings stop at 1024 octets).
    let good = BASE64.encode("n,,\x01auth=Bearer good-alice\x01\x01");
    assert_eq!(
        d.send(&format!(
            "AUTHENTICATE \"OAUTHBEARER\" {{{}+}}\r\n{good}\r\n",
            good.len()
        )),
        "OK \"Logged in.\"\r\n"
    );
    let token = d.session.identity().and_then(|i| i.token.clone());
    assert_eq!(token.and_then(|t| t.sid), Some("sid-1".into()));
}

#[test]
fn real_plain_against_the_directory() {
    let mut d = Driver::tls();
    let wrong = BASE64.encode("\0alice\0nope");
    assert_eq!(
        d.send(&format!("AUTHENTICATE \"PLAIN\" \"{wrong}\"\r\n")),
        "NO \"Authentication failed.\"\r\n"
    );
    // Without initial response: an empty challenge, then the credentials.
    assert_eq!(d.send("AUTHENTICATE \"PLAIN\"\r\n"), "\"\"\r\n");
    let right = BASE64.encode("\0alice\0alicepw");
    assert_eq!(
        d.send(&format!("{{{}+}}\r\n{right}\r\n", right.len())),
        "OK \"Logged in.\"\r\n"
    );
    assert_eq!(
        d.session.identity().map(|i| i.authorization_id.as_str()),
        Some(ALICE)
    );
}

#[test]
fn auth_lines_may_carry_big_tokens_other_preauth_input_may_not() {
    let mut d = Driver::tls();
    // 12 KiB of base64 in a quoted initial response: accepted by the framing, refused by
    // the mechanism (an RFC 7628 challenge), not by a line limit.
    let big = BASE64.encode(format!("n,,\x01auth=Bearer {}\x01\x01", "x".repeat(9000)));
    let out = d.send(&format!("AUTHENTICATE \"OAUTHBEARER\" \"{big}\"\r\n"));
    assert!(out.starts_with('"'), "{out}");
    assert_eq!(d.send("\"AQ==\"\r\n"), "NO \"Authentication failed.\"\r\n");
    // An ordinary command of 3 KiB before login ends the connection.
    let long = format!("NOOP \"{}\"\r\n", "y".repeat(3000));
    assert_eq!(d.send(&long), "BYE \"Command too long.\"\r\n");
    assert!(d.closed);
    // So does a literal over the pre-login limit.
    let mut d = Driver::tls();
    assert_eq!(d.send("NOOP {5000+}\r\n"), "BYE \"Command too long.\"\r\n");
    assert!(d.closed);
    // And an AUTHENTICATE literal over 16 KiB, or a response literal as big.
    let mut d = Driver::tls();
    assert_eq!(
        d.send("AUTHENTICATE \"OAUTHBEARER\" {20000+}\r\n"),
        "BYE \"Command too long.\"\r\n"
    );
    let mut d = Driver::tls();
    assert_eq!(d.send("AUTHENTICATE \"PLAIN\"\r\n"), "\"\"\r\n");
    assert_eq!(d.send("{4000000000+}\r\n"), "BYE \"Command too long.\"\r\n");
    assert!(d.closed);
}

// Scripts.

#[test]
fn script_commands_need_a_login() {
    let mut d = Driver::tls();
    for command in [
        "PUTSCRIPT \"a\" \"keep;\"",
        "CHECKSCRIPT \"keep;\"",
        "LISTSCRIPTS",
        "SETACTIVE \"a\"",
        "GETSCRIPT \"a\"",
        "DELETESCRIPT \"a\"",
        "RENAMESCRIPT \"a\" \"b\"",
        "HAVESPACE \"a\" 1",
    ] {
        assert_eq!(
            d.send(&format!("{command}\r\n")),
            "NO \"Authenticate first.\"\r\n",
            "{command}"
        );
    }
    assert!(d.scripts().list(ALICE).is_empty());
}

#[test]
fn put_list_get_activate_rename_delete() {
    let mut d = Driver::tls();
    d.login(ALICE);
    assert_eq!(
        d.send("LISTSCRIPTS\r\n"),
        "OK \"Listscripts completed.\"\r\n"
    );
    let vacation = "require \"vacation\";\r\nvacation \"away\";\r\n";
    assert_eq!(
        d.send(&format!(
            "PUTSCRIPT \"vacation\" {{{}+}}\r\n{vacation}\r\n",
            vacation.len()
        )),
        "OK \"Putscript completed.\"\r\n"
    );
    assert_eq!(
        d.send("PUTSCRIPT \"quote \\\"me\\\"\" \"keep;\"\r\n"),
        "OK \"Putscript completed.\"\r\n"
    );
    assert_eq!(
        d.send("SETACTIVE \"vacation\"\r\n"),
        "OK \"Setactive completed.\"\r\n"
    );
    assert_eq!(
        d.send("LISTSCRIPTS\r\n"),
        "\"quote \\\"me\\\"\"\r\n\"vacation\" ACTIVE\r\nOK \"Listscripts completed.\"\r\n"
    );
    assert_eq!(
        d.send("GETSCRIPT \"vacation\"\r\n"),
        format!(
            "{{{}}}\r\n{vacation}\r\nOK \"Getscript completed.\"\r\n",
            vacation.len()
        )
    );
    assert_eq!(
        d.scripts().active(ALICE),
        Some(("vacation".into(), vacation.into()))
    );
    assert_eq!(
        d.send("DELETESCRIPT \"vacation\"\r\n"),
        "NO (ACTIVE) \"The active script cannot be deleted.\"\r\n"
    );
    assert_eq!(
        d.send("RENAMESCRIPT \"vacation\" \"quote \\\"me\\\"\"\r\n"),
        "NO (ALREADYEXISTS) \"A script with that name already exists.\"\r\n"
    );
    assert_eq!(
        d.send("RENAMESCRIPT \"nope\" \"x\"\r\n"),
        "NO (NONEXISTENT) \"There is no script by that name.\"\r\n"
    );
    assert_eq!(
        d.send("RENAMESCRIPT \"vacation\" \"away\"\r\n"),
        "OK \"Renamescript completed.\"\r\n"
    );
    assert_eq!(
        d.scripts().active(ALICE).map(|(name, _)| name),
        Some("away".into()),
        "a renamed active script stays active"
    );
    assert_eq!(
        d.send("SETACTIVE \"\"\r\n"),
        "OK \"Script deactivated.\"\r\n"
    );
    assert_eq!(d.scripts().active(ALICE), None);
    assert_eq!(
        d.send("SETACTIVE \"nope\"\r\n"),
        "NO (NONEXISTENT) \"There is no script by that name.\"\r\n"
    );
    assert_eq!(
        d.send("DELETESCRIPT \"away\"\r\n"),
        "OK \"Deletescript completed.\"\r\n"
    );
    assert_eq!(
        d.send("GETSCRIPT \"away\"\r\n"),
        "NO (NONEXISTENT) \"There is no script by that name.\"\r\n"
    );
    assert_eq!(
        d.send("DELETESCRIPT \"away\"\r\n"),
        "NO (NONEXISTENT) \"There is no script by that name.\"\r\n"
    );
}

#[test]
fn bad_scripts_are_refused_with_their_line_and_not_stored() {
    let mut d = Driver::tls();
    d.login(ALICE);
    let bad = "require \"fileinto\";\r\nbad;\r\n";
    let put = format!("PUTSCRIPT \"s\" {{{}+}}\r\n{bad}\r\n", bad.len());
    assert_eq!(d.send(&put), "NO \"line 2: unknown command bad\"\r\n");
    assert!(d.scripts().list(ALICE).is_empty());
    assert_eq!(
        d.send(&format!("CHECKSCRIPT {{{}+}}\r\n{bad}\r\n", bad.len())),
        "NO \"line 2: unknown command bad\"\r\n"
    );
    assert_eq!(
        d.send("CHECKSCRIPT \"keep;\"\r\n"),
        "OK \"Script is valid.\"\r\n"
    );
    assert_eq!(
        d.send_bytes(b"PUTSCRIPT \"t\" {3+}\r\n\xff\xfe;\r\n"),
        "NO \"Script is not valid UTF-8.\"\r\n"
    );
    assert_eq!(
        d.send_bytes(b"CHECKSCRIPT {2+}\r\n\xff;\r\n"),
        "NO \"Script is not valid UTF-8.\"\r\n"
    );
}

#[test]
fn script_names_are_checked() {
    let mut d = Driver::tls();
    d.login(ALICE);
    assert_eq!(
        d.send("PUTSCRIPT {4+}\r\na\r\nb \"keep;\"\r\n"),
        "NO \"Invalid script name.\"\r\n"
    );
    assert_eq!(
        d.send("PUTSCRIPT \"\" \"keep;\"\r\n"),
        "NO \"Invalid script name.\"\r\n"
    );
    assert_eq!(
        d.send_bytes(b"PUTSCRIPT \"\xc3\" \"keep;\"\r\n"),
        "NO \"Invalid script name.\"\r\n"
    );
    assert_eq!(
        d.send("PUTSCRIPT \"f\u{fc}r mich\" \"keep;\"\r\n"),
        "OK \"Putscript completed.\"\r\n"
    );
    assert_eq!(
        d.send("RENAMESCRIPT \"f\u{fc}r mich\" \"\"\r\n"),
        "NO \"Invalid script name.\"\r\n"
    );
    assert_eq!(
        d.send("HAVESPACE \"\" 1\r\n"),
        "NO \"Invalid script name.\"\r\n"
    );
}

#[test]
fn quotas_maxsize_and_maxscripts() {
    let mut d = Driver::tls();
    d.login(ALICE);
    assert_eq!(
        d.send("HAVESPACE \"a\" 100\r\n"),
        "OK \"Putscript would succeed.\"\r\n"
    );
    assert_eq!(
        d.send("HAVESPACE \"a\" 101\r\n"),
        "NO (QUOTA/MAXSIZE) \"Script too big (at most 100 bytes).\"\r\n"
    );
    // A literal over the limit is refused as soon as its length is known, its bytes skipped,
    // and the session goes on.
    let big = "#".repeat(1500);
    assert_eq!(
        d.send(&format!("PUTSCRIPT \"big\" {{1500+}}\r\n{big}\r\nNOOP\r\n")),
        "NO (QUOTA/MAXSIZE) \"Script too big (at most 100 bytes).\"\r\nOK \"Done\"\r\n"
    );
    // Under the literal limit (1 KiB at least) but over the script limit.
    let over = "#".repeat(101);
    assert_eq!(
        d.send(&format!("PUTSCRIPT \"over\" {{101+}}\r\n{over}\r\n")),
        "NO (QUOTA/MAXSIZE) \"Script too big (at most 100 bytes).\"\r\n"
    );
    assert_eq!(
        d.send(&format!("CHECKSCRIPT {{101+}}\r\n{over}\r\n")),
        "NO (QUOTA/MAXSIZE) \"Script too big (at most 100 bytes).\"\r\n"
    );
    for name in ["a", "b", "c"] {
        assert_eq!(
            d.send(&format!("PUTSCRIPT \"{name}\" \"keep;\"\r\n")),
            "OK \"Putscript completed.\"\r\n"
        );
    }
    assert_eq!(
        d.send("PUTSCRIPT \"d\" \"keep;\"\r\n"),
        "NO (QUOTA/MAXSCRIPTS) \"Too many scripts (at most 3).\"\r\n"
    );
    assert_eq!(
        d.send("HAVESPACE \"d\" 1\r\n"),
        "NO (QUOTA/MAXSCRIPTS) \"Too many scripts (at most 3).\"\r\n"
    );
    assert_eq!(
        d.send("HAVESPACE \"c\" 50\r\n"),
        "OK \"Putscript would succeed.\"\r\n",
        "replacing needs no new slot"
    );
    assert_eq!(
        d.send("PUTSCRIPT \"c\" \"stop;\"\r\n"),
        "OK \"Putscript completed.\"\r\n"
    );
    assert!(!d.closed);
}

#[test]
fn users_see_only_their_scripts() {
    let mut d = Driver::tls();
    d.login(ALICE);
    d.send("PUTSCRIPT \"mine\" \"keep;\"\r\n");
    let mut other = Driver {
        session: Session::new(d.config.clone(), None, true),
        config: d.config.clone(),
        script: d.script.clone(),
        auth_seen: Vec::new(),
        closed: false,
    };
    other.send("");
    other.login("bob@example.com");
    assert_eq!(
        other.send("LISTSCRIPTS\r\n"),
        "OK \"Listscripts completed.\"\r\n"
    );
    assert_eq!(
        other.send("GETSCRIPT \"mine\"\r\n"),
        "NO (NONEXISTENT) \"There is no script by that name.\"\r\n"
    );
}

// UNAUTHENTICATE, timeouts, ends.

#[test]
fn unauthenticate_returns_to_the_non_authenticated_state() {
    let mut d = Driver::tls();
    assert_eq!(d.session.timeout(), Duration::from_secs(60));
    d.login(ALICE);
    assert_eq!(d.session.timeout(), Duration::from_secs(600));
    assert_eq!(d.send("UNAUTHENTICATE\r\n"), "OK \"Unauthenticated.\"\r\n");
    assert!(d.session.identity().is_none());
    assert_eq!(d.session.timeout(), Duration::from_secs(60));
    assert_eq!(d.send("LISTSCRIPTS\r\n"), "NO \"Authenticate first.\"\r\n");
    assert_eq!(
        d.send("CAPABILITY\r\n"),
        format!("{}OK \"Capability completed.\"\r\n", caps(ALL_MECHS, false))
    );
    d.login("bob@example.com");
    assert_eq!(d.session.logins(), 2);
    assert_eq!(
        d.session.identity().map(|i| i.authorization_id.as_str()),
        Some("bob@example.com")
    );
}

#[test]
fn ended_from_outside_says_bye_with_the_reason_and_closes() {
    let mut d = Driver::tls();
    d.login(ALICE);
    // Half a PUTSCRIPT is pending: it is dropped.
    assert_eq!(d.send("PUTSCRIPT \"a\" {50+}\r\nkeep"), "");
    d.session.ended(&EndReason::Revoked(
        "the session was logged out at the identity provider".into(),
    ));
    let out = String::from_utf8(d.run()).unwrap();
    assert_eq!(
        out,
        "BYE \"Session revoked: the session was logged out at the identity provider.\"\r\n"
    );
    assert!(d.closed);
    assert!(d.scripts().list(ALICE).is_empty());

    let mut d = Driver::tls();
    d.login(ALICE);
    d.session.ended(&EndReason::TokenExpired);
    assert_eq!(
        String::from_utf8(d.run()).unwrap(),
        "BYE \"Session ended: the access token has expired.\"\r\n"
    );
}

#[test]
fn idle_timeout_says_bye() {
    let mut d = Driver::new();
    d.session.timed_out();
    assert_eq!(
        String::from_utf8(d.run()).unwrap(),
        "BYE \"Disconnected for inactivity.\"\r\n"
    );
    assert!(d.closed);
}

#[test]
fn answering_an_event_that_was_not_asked_for_closes() {
    let mut d = Driver::new();
    d.session.tls_established();
    assert!(d.run().is_empty());
    assert!(d.closed);
}

#[test]
fn bad_command_log_lines_are_rate_limited() {
    // Below the error limit, so the connection stays open; only the log is spared.
    let (_, log) = crate::testkit::logs::capture(|| {
        let mut d = Driver::new();
        for _ in 0..9 {
            assert_eq!(d.send("FROB\r\n"), "NO \"Unknown command.\"\r\n");
        }
        assert!(!d.closed);
        drop(d);
    });
    let first = crate::log_limit::FIRST_LINES as usize;
    assert_eq!(log.matches("refused").count(), first, "{log}");
    assert_eq!(
        log.matches("their log lines are suppressed").count(),
        1,
        "{log}"
    );
    // The rest is summed up when the connection ends.
    let rest = format!("{} more bad-command log lines suppressed", 9 - first);
    assert_eq!(log.matches(&rest).count(), 1, "{log}");
}
