//! The driver alone: every protocol gets these semantics, whatever its framing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::FutureExt as _;

use super::*;
use crate::auth::sasl::SaslIdentity;
use crate::testkit::sasl::{Scripted, TestDirectory, backends};

fn identity(user: &str) -> SaslIdentity {
    SaslIdentity {
        authentication_id: user.into(),
        authorization_id: user.into(),
        token: None,
    }
}

fn context(tls: bool) -> SessionContext {
    SessionContext {
        protocol: Protocol::Pop3,
        tls,
        allow_plaintext_without_tls: false,
        peer: None,
        channel_binding: None,
    }
}

/// PLAIN (needs TLS) and `XSCRIPT` (scripted, offered everywhere).
fn registry(scripted: Arc<Scripted>) -> SaslRegistry {
    let mut registry = SaslRegistry::with_builtins(&backends(TestDirectory::new(), None, &[]));
    registry.register(scripted);
    registry
        .enable(&["PLAIN".into(), "XSCRIPT".into()])
        .expect("known mechanisms")
}

fn driver(max_failures: u32, style: SuccessData) -> SaslDriver {
    SaslDriver::new(Protocol::Pop3, None, max_failures, style)
}

/// Runs work the way a connection loop does; scripted exchanges never wait.
fn perform(driver: &mut SaslDriver, action: AuthAction) -> AuthAction {
    match action {
        AuthAction::Run(work) => {
            let done = run(work).now_or_never().expect("ready at once");
            driver.step_done(done)
        }
        other => other,
    }
}

fn challenge(action: &AuthAction) -> &str {
    match action {
        AuthAction::Challenge(text) => text,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn failure(action: AuthAction) -> (SaslFailure, bool) {
    match action {
        AuthAction::Failure { failure, close, .. } => (failure, close),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn responses_decode_abort_empty_and_base64() {
    assert_eq!(decode_response(b"*"), Ok(ClientResponse::Abort));
    assert_eq!(decode_response(b""), Ok(ClientResponse::Data(vec![])));
    assert_eq!(decode_response(b"="), Ok(ClientResponse::Data(vec![])));
    assert_eq!(decode_response(b"AQ=="), Ok(ClientResponse::Data(vec![1])));
    assert_eq!(decode_response(b"not base64!"), Err(BadBase64));
    assert_eq!(decode_response(b"**"), Err(BadBase64));
    assert_eq!(decode_initial(b"="), Ok(vec![]));
    assert_eq!(decode_initial(b"AQ=="), Ok(vec![1]));
    // `*` is no initial response: it is not base64.
    assert_eq!(decode_initial(b"*"), Err(BadBase64));
}

#[test]
fn unknown_and_tls_only_mechanisms_are_refused_uncounted() {
    let mut d = driver(1, SuccessData::AsChallenge);
    let reg = registry(Scripted::new(vec![]));
    let (f, close) = failure(d.start(&reg, "CRAM-MD5", None, context(false)));
    assert_eq!(f, SaslFailure::MechanismUnavailable("CRAM-MD5".into()));
    assert!(!close);
    let (f, close) = failure(d.start(&reg, "plain", Some(b"="), context(false)));
    assert_eq!(f, SaslFailure::EncryptionRequired("plain".into()));
    assert!(!close);
    assert_eq!(d.failures(), 0);
    assert!(!d.is_active());
}

#[test]
fn bad_base64_initial_response_counts() {
    let mut d = driver(2, SuccessData::AsChallenge);
    let reg = registry(Scripted::new(vec![]));
    let (f, close) = failure(d.start(&reg, "XSCRIPT", Some(b"!!"), context(true)));
    assert_eq!(f, SaslFailure::InvalidBase64);
    assert!(!close);
    let (_, close) = failure(d.start(&reg, "XSCRIPT", Some(b"%%"), context(true)));
    assert!(close, "the second failure reaches the limit");
}

#[test]
fn challenge_response_then_success() {
    let scripted = Scripted::new(vec![]);
    scripted.extend([
        SaslStep::Challenge(b"who?".to_vec()),
        SaslStep::Success {
            identity: identity("alice@example.com"),
            server_data: None,
        },
    ]);
    let reg = registry(scripted.clone());
    let mut d = driver(3, SuccessData::AsChallenge);
    let action = {
        let a = d_start(&mut d, &reg, None);
        perform(&mut d, a)
    };
    assert_eq!(challenge(&action), BASE64.encode("who?"));
    assert!(d.awaits_client());
    let action = {
        let a = d.client_response(b"YWxpY2U=");
        perform(&mut d, a)
    };
    let AuthAction::Success { identity, data, .. } = action else {
        panic!("{action:?}");
    };
    assert_eq!(identity.authorization_id, "alice@example.com");
    assert_eq!(data, None);
    assert_eq!(
        *scripted.received.lock().unwrap(),
        [None, Some(b"alice".to_vec())]
    );
    assert_eq!(scripted.dropped.load(Ordering::SeqCst), 1);
    assert!(!d.is_active());
}

fn d_start(d: &mut SaslDriver, reg: &SaslRegistry, initial: Option<&[u8]>) -> AuthAction {
    d.start(reg, "XSCRIPT", initial, context(true))
}

#[test]
fn success_data_as_a_last_challenge_needs_an_empty_answer() {
    let data = b"v=signature".to_vec();
    for (answer, ok) in [
        (&b""[..], true),
        (b"=", true),
        (b"AQ==", false),
        (b"*", false),
    ] {
        let scripted = Scripted::new(vec![SaslStep::Success {
            identity: identity("alice@example.com"),
            server_data: Some(data.clone()),
        }]);
        let reg = registry(scripted);
        let mut d = driver(3, SuccessData::AsChallenge);
        let action = {
            let a = d_start(&mut d, &reg, Some(b"="));
            perform(&mut d, a)
        };
        assert_eq!(challenge(&action), BASE64.encode(&data));
        let action = d.client_response(answer);
        match (ok, action) {
            (true, AuthAction::Success { data: None, .. }) => {}
            (false, AuthAction::Failure { failure, .. }) => assert!(
                matches!(failure, SaslFailure::Malformed(_) | SaslFailure::Aborted),
                "{failure:?}"
            ),
            (_, other) => panic!("{answer:?}: {other:?}"),
        }
    }
}

#[test]
fn success_data_in_the_final_reply() {
    let scripted = Scripted::new(vec![SaslStep::Success {
        identity: identity("alice@example.com"),
        server_data: Some(b"v=x".to_vec()),
    }]);
    let reg = registry(scripted);
    let mut d = driver(3, SuccessData::InFinalReply);
    let action = {
        let a = d_start(&mut d, &reg, Some(b"="));
        perform(&mut d, a)
    };
    let AuthAction::Success { data, .. } = action else {
        panic!("{action:?}");
    };
    assert_eq!(data.as_deref(), Some(BASE64.encode("v=x").as_str()));
}

#[test]
fn abort_is_uncounted_unless_credentials_were_refused() {
    // A plain abort after a challenge.
    let scripted = Scripted::new(vec![SaslStep::Challenge(vec![])]);
    let reg = registry(scripted.clone());
    let mut d = driver(1, SuccessData::AsChallenge);
    {
        let a = d_start(&mut d, &reg, None);
        perform(&mut d, a)
    };
    let (f, close) = failure(d.client_response(b"*"));
    assert_eq!(f, SaslFailure::Aborted);
    assert!(!close);
    assert_eq!(d.failures(), 0);
    assert_eq!(scripted.dropped.load(Ordering::SeqCst), 1);
}

/// An exchange that refuses with an RFC 7628 error challenge: its abort is a failure.
struct Refusing;

#[async_trait::async_trait]
impl SaslExchange for Refusing {
    async fn step(&mut self, _client: Option<&[u8]>) -> SaslStep {
        SaslStep::Challenge(br#"{"status":"invalid_token"}"#.to_vec())
    }
    fn abort(&mut self) -> SaslFailure {
        SaslFailure::AbortedAfterRefusal {
            reason: "expired".into(),
        }
    }
}

struct RefusingMechanism;

impl SaslMechanism for RefusingMechanism {
    fn name(&self) -> &str {
        "XREFUSE"
    }
    fn available(&self, _ctx: &SessionContext) -> bool {
        true
    }
    fn start(&self, _initial: Option<&[u8]>, _ctx: &SessionContext) -> Box<dyn SaslExchange> {
        Box::new(Refusing)
    }
}

#[test]
fn abort_after_an_error_challenge_counts() {
    let mut reg = SaslRegistry::with_builtins(&backends(TestDirectory::new(), None, &[]));
    reg.register(Arc::new(RefusingMechanism));
    let reg = reg.enable(&["XREFUSE".into()]).expect("known");
    let mut d = driver(2, SuccessData::AsChallenge);
    for attempt in 1..=2 {
        let action = {
            let a = d.start(&reg, "XREFUSE", Some(b"AQ=="), context(true));
            perform(&mut d, a)
        };
        challenge(&action);
        let (f, close) = failure(d.client_response(b"*"));
        assert!(
            matches!(f, SaslFailure::AbortedAfterRefusal { .. }),
            "{f:?}"
        );
        assert_eq!(close, attempt == 2);
    }
}

#[test]
fn bad_base64_mid_exchange_releases_the_exchange_and_counts() {
    let scripted = Scripted::new(vec![SaslStep::Challenge(vec![])]);
    let reg = registry(scripted.clone());
    let mut d = driver(3, SuccessData::AsChallenge);
    {
        let a = d_start(&mut d, &reg, None);
        perform(&mut d, a)
    };
    let (f, _) = failure(d.client_response(b"%%%"));
    assert_eq!(f, SaslFailure::InvalidBase64);
    assert_eq!(d.failures(), 1);
    assert_eq!(scripted.dropped.load(Ordering::SeqCst), 1);
    assert!(!d.is_active());
}

#[test]
fn cancel_releases_and_stray_responses_are_refused() {
    let scripted = Scripted::new(vec![SaslStep::Challenge(vec![])]);
    let reg = registry(scripted.clone());
    let mut d = driver(3, SuccessData::AsChallenge);
    {
        let a = d_start(&mut d, &reg, None);
        perform(&mut d, a)
    };
    d.cancel();
    assert_eq!(scripted.dropped.load(Ordering::SeqCst), 1);
    let (f, _) = failure(d.client_response(b"AQ=="));
    assert!(matches!(f, SaslFailure::Malformed(_)), "{f:?}");
}

#[test]
fn password_logins_count_like_exchanges() {
    let mut d = driver(2, SuccessData::AsChallenge);
    let bad = || {
        Err(SaslFailure::InvalidCredentials {
            reason: "bad_password".into(),
        })
    };
    let (_, close) = failure(d.password_checked("USER", bad()));
    assert!(!close);
    let (_, close) = failure(d.password_checked("USER", bad()));
    assert!(close);
    let action = d.password_checked("USER", Ok("alice@example.com".into()));
    assert!(matches!(action, AuthAction::Success { .. }), "{action:?}");
}

#[tokio::test]
async fn verify_password_never_asks_with_empty_or_non_utf8_credentials() {
    let directory = TestDirectory::new();
    for (user, pass) in [
        (&b""[..], &b"alicepw"[..]),
        (b"alice", b""),
        (b"alice\xff", b"alicepw"),
        (b"alice", b"\xff"),
    ] {
        let result = verify_password(directory.as_ref(), user, pass).await;
        assert!(
            matches!(result, Err(SaslFailure::InvalidCredentials { .. })),
            "{result:?}"
        );
    }
    assert_eq!(directory.calls(), 0);
    assert_eq!(
        verify_password(directory.as_ref(), b"ALICE", b"alicepw").await,
        Ok("alice@example.com".into())
    );
    directory.set_down(true);
    assert!(matches!(
        verify_password(directory.as_ref(), b"alice", b"alicepw").await,
        Err(SaslFailure::TemporaryFailure(_))
    ));
}
