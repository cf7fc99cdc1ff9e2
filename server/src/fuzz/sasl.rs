//! SASL client messages of every mechanism: the parse functions, then the real exchange on
//! backends that accept nothing. No input may ever log in.

use std::sync::Arc;

use futures_util::FutureExt as _;

use super::backends;
#[cfg(test)]
use super::engine::Target;
use crate::auth::sasl::parse::{parse_login_field, parse_oauthbearer, parse_plain, parse_xoauth2};
use crate::auth::sasl::scram::messages::{parse_client_final, parse_client_first};
use crate::auth::sasl::{
    ChannelBinding, Login, OAuthBearer, Plain, Protocol, SaslExchange, SaslMechanism, SaslStep,
    ScramSha256, SessionContext, XOAuth2,
};

#[cfg(test)]
const WORDS: &[&[u8]] = &[
    b"\0",
    b"\x01",
    b"\x01\x01",
    b"n,,",
    b"y,,",
    b"p=tls-exporter,",
    b"a=",
    b"n=",
    b"r=",
    b"c=",
    b"p=",
    b"m=",
    b"=2C",
    b"=3D",
    b"=",
    b",",
    b"auth=Bearer ",
    b"user=",
    b"host=",
    b"port=",
    b"alice@example.com",
    b"admin@example.com",
    b"biws",
    b"eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
];

/// The fixed server nonce, so corpus client-final messages can carry the combined nonce.
pub const SERVER_NONCE: &str = "3rfcNHYJY1ZVvWVs7j";

fn context(binding: bool) -> SessionContext {
    SessionContext {
        protocol: Protocol::Imap,
        tls: true,
        allow_plaintext_without_tls: true,
        peer: None,
        channel_binding: binding.then(|| ChannelBinding {
            kind: "tls-exporter",
            data: vec![7; 32],
        }),
    }
}

fn step(exchange: &mut Box<dyn SaslExchange>, client: Option<&[u8]>) -> SaslStep {
    exchange
        .step(client)
        .now_or_never()
        .expect("fuzz backends answer without waiting")
}

/// Starts `mechanism` with `initial` and answers every challenge with the next of `rest`;
/// asserts that nothing succeeds. Returns the steps seen.
fn exchange(mechanism: &dyn SaslMechanism, initial: &[u8], rest: &[&[u8]]) -> Vec<SaslStep> {
    let ctx = context(true);
    let mut ex = mechanism.start(Some(initial), &ctx);
    let mut steps = vec![step(&mut ex, Some(initial))];
    for message in rest {
        if !matches!(steps.last(), Some(SaslStep::Challenge(_))) {
            break;
        }
        steps.push(step(&mut ex, Some(message)));
    }
    for s in &steps {
        assert!(
            !matches!(s, SaslStep::Success { .. }),
            "{} logged in without credentials",
            mechanism.name()
        );
    }
    // A finished exchange stays finished.
    if !matches!(steps.last(), Some(SaslStep::Challenge(_))) {
        assert!(
            matches!(step(&mut ex, Some(b"again")), SaslStep::Failure(_)),
            "{}: a step after the end did not fail",
            mechanism.name()
        );
    }
    steps
}

#[test]
fn fuzz_sasl_plain() {
    let mech = Plain::new(backends());
    Target::new("sasl_plain")
        .dictionary(WORDS)
        .run(|input| plain(&mech, input));
}

/// One PLAIN message: parsed, then run as an initial response.
pub(super) fn plain(mech: &Plain, input: &[u8]) {
    if let Ok(m) = parse_plain(input) {
        assert_eq!(
            m.authzid.len() + m.authcid.len() + m.password.len() + 2,
            input.len()
        );
    }
    exchange(mech, input, &[]);
}

#[test]
fn fuzz_sasl_login() {
    let mech = Login::new(backends());
    Target::new("sasl_login")
        .dictionary(WORDS)
        .run(|input| login(&mech, input));
}

/// One LOGIN exchange; corpus entries are `user NUL password`, the two LOGIN responses.
pub(super) fn login(mech: &Login, input: &[u8]) {
    let mut parts = input.splitn(2, |&b| b == 0);
    let user = parts.next().unwrap_or_default();
    let password = parts.next().unwrap_or_default();
    let _ = parse_login_field(user, "user name");
    let ctx = context(true);
    let mut ex = mech.start(None, &ctx);
    let mut steps = vec![step(&mut ex, None)];
    for message in [user, password] {
        if matches!(steps.last(), Some(SaslStep::Challenge(_))) {
            steps.push(step(&mut ex, Some(message)));
        }
    }
    assert!(
        !steps.iter().any(|s| matches!(s, SaslStep::Success { .. })),
        "LOGIN logged in without credentials"
    );
    // And with the user name as initial response.
    exchange(mech, user, &[password]);
}

#[test]
fn fuzz_sasl_oauthbearer() {
    let mech = OAuthBearer::new(backends());
    Target::new("sasl_oauthbearer")
        .dictionary(WORDS)
        .run(|input| oauthbearer(&mech, input));
}

/// One OAUTHBEARER initial response: a refused token gets the RFC 7628 error challenge
/// (JSON), then a failure.
pub(super) fn oauthbearer(mech: &OAuthBearer, input: &[u8]) {
    if let Ok(m) = parse_oauthbearer(input) {
        assert!(!m.token.is_empty() || input.windows(6).any(|w| w == b"Bearer"));
    }
    let steps = exchange(mech, input, &[b"\x01"]);
    if let Some(SaslStep::Challenge(c)) = steps.first() {
        let v: serde_json::Value = serde_json::from_slice(c).expect("error challenge is JSON");
        assert_eq!(v["status"], "invalid_token");
    }
}

#[test]
fn fuzz_sasl_xoauth2() {
    let mech = XOAuth2::new(backends());
    Target::new("sasl_xoauth2")
        .dictionary(WORDS)
        .run(|input| xoauth2(&mech, input));
}

/// One XOAUTH2 initial response.
pub(super) fn xoauth2(mech: &XOAuth2, input: &[u8]) {
    let _ = parse_xoauth2(input);
    let steps = exchange(mech, input, &[b""]);
    if let Some(SaslStep::Challenge(c)) = steps.first() {
        let v: serde_json::Value = serde_json::from_slice(c).expect("error challenge is JSON");
        assert_eq!(v["status"], "invalid_token");
    }
}

pub(super) fn scram(plus: bool) -> ScramSha256 {
    let nonces = Arc::new(|| SERVER_NONCE.to_string());
    if plus {
        ScramSha256::plus(backends()).with_nonces(nonces)
    } else {
        ScramSha256::new(backends()).with_nonces(nonces)
    }
}

#[test]
fn fuzz_sasl_scram_client_first() {
    let mechs = [scram(false), scram(true)];
    Target::new("sasl_scram_client_first")
        .dictionary(WORDS)
        .run(|input| scram_client_first(&mechs, input));
}

/// One client-first message, to SCRAM-SHA-256 and its -PLUS variant.
pub(super) fn scram_client_first(mechs: &[ScramSha256; 2], input: &[u8]) {
    let parsed = parse_client_first(input);
    for mech in mechs {
        let steps = exchange(mech, input, &[]);
        if let Some(SaslStep::Challenge(server_first)) = steps.first() {
            // Only a well-formed client-first gets a server-first, which extends the
            // client's nonce.
            let first = parsed
                .as_ref()
                .expect("challenge for an unparsable message");
            let text = String::from_utf8(server_first.clone()).expect("UTF-8");
            let expected = format!("r={}{SERVER_NONCE},s=", first.nonce);
            assert!(text.starts_with(&expected), "server-first {text:?}");
        }
    }
}

#[test]
fn fuzz_sasl_scram_client_final() {
    let mechs = [scram(false), scram(true)];
    Target::new("sasl_scram_client_final")
        .dictionary(WORDS)
        .run(|input| scram_client_final(&mechs, input));
}

/// One client-final message after a fixed client-first, to both SCRAM variants.
pub(super) fn scram_client_final([plain, plus]: &[ScramSha256; 2], input: &[u8]) {
    let _ = parse_client_final(input);
    for (mech, first) in [
        (plain, &b"n,,n=alice@example.com,r=rOprNGfwEbeRWgbNEkqO"[..]),
        (
            plus,
            &b"p=tls-exporter,,n=alice@example.com,r=rOprNGfwEbeRWgbNEkqO"[..],
        ),
    ] {
        let steps = exchange(mech, first, &[input, b""]);
        assert!(
            matches!(steps.first(), Some(SaslStep::Challenge(_))),
            "the fixed client-first must get a server-first"
        );
    }
}
