//! SCRAM exchanges end to end: RFC 7677's vector, then every refusal, driven by a small client.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::crypto;
use super::messages::encode_saslname;
use super::{NonceSource, ScramSha256};
use crate::auth::AuthBackends;
use crate::auth::directory::{Directory, DirectoryError, ScramSecret, ScramUser, StaticDirectory};
use crate::auth::sasl::{
    ChannelBinding, SaslFailure, SaslMechanism, SaslRegistry, SaslStep, SessionContext,
};
use crate::testkit::RFC7677_SECRET;
use crate::testkit::sasl::{TestDirectory, backends, ctx, odd_inputs};

const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const EXPORTER: &[u8] = &[7; 32];

/// A static directory that can be switched down.
struct Users {
    inner: StaticDirectory,
    down: AtomicBool,
}

impl Users {
    fn new() -> Arc<Self> {
        let alice = ScramSecret::derive("alicepw", b"alice's salt", 4096);
        let text = format!(
            r#"
[[user]]
name = "user@example.com"
aliases = ["user"]
scram_sha256 = "{RFC7677_SECRET}"

[[user]]
name = "alice@example.com"
aliases = ["alice", "ali,ce=x"]
scram_sha256 = "{alice}"

# Only a password: unknown to SCRAM, but a delegation target.
[[user]]
name = "bob@example.com"
aliases = ["bob"]
password = "bobpw"
"#
        );
        Arc::new(Self {
            inner: StaticDirectory::parse(&text, Path::new("users.toml")).unwrap(),
            down: AtomicBool::new(false),
        })
    }

    fn check(&self) -> Result<(), DirectoryError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DirectoryError::Unavailable("test directory is down".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Directory for Users {
    async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        self.check()?;
        self.inner.lookup(name).await
    }

    async fn verify_password(
        &self,
        name: &str,
        pw: &str,
    ) -> Result<Option<String>, DirectoryError> {
        self.check()?;
        self.inner.verify_password(name, pw).await
    }

    async fn scram_sha256(&self, name: &str) -> Result<Option<ScramUser>, DirectoryError> {
        self.check()?;
        self.inner.scram_sha256(name).await
    }

    fn has_scram_secrets(&self) -> bool {
        self.inner.has_scram_secrets()
    }
}

/// `delegation`: alice is in `server.admins`.
fn auth(users: Arc<Users>, delegation: bool) -> AuthBackends {
    let admins: &[String] = if delegation {
        &["alice@example.com".to_string()][..]
    } else {
        &[]
    };
    AuthBackends {
        directory: users,
        validator: None,
        admins: admins.into(),
        revocation: None,
        throttle: None,
    }
}

fn fixed_nonce() -> NonceSource {
    Arc::new(|| SERVER_NONCE.to_string())
}

fn scram(delegation: bool) -> ScramSha256 {
    ScramSha256::new(auth(Users::new(), delegation)).with_nonces(fixed_nonce())
}

fn scram_plus() -> ScramSha256 {
    ScramSha256::plus(auth(Users::new(), false)).with_nonces(fixed_nonce())
}

/// A TLS session with an exporter value.
fn bound() -> SessionContext {
    SessionContext {
        channel_binding: Some(ChannelBinding {
            kind: "tls-exporter",
            data: EXPORTER.to_vec(),
        }),
        ..ctx(true)
    }
}

/// The client side of RFC 5802, just enough to drive the server.
struct Client {
    password: String,
    gs2_header: String,
    /// Channel-binding data the client puts after the GS2 header in `c=`.
    cbind_data: Vec<u8>,
    bare: String,
}

impl Client {
    fn new(user: &str, password: &str) -> Self {
        Self::with_header("n,,", user, password)
    }

    fn with_header(gs2_header: &str, user: &str, password: &str) -> Self {
        Self {
            password: password.into(),
            gs2_header: gs2_header.into(),
            cbind_data: Vec::new(),
            bare: format!("n={},r={CLIENT_NONCE}", encode_saslname(user)),
        }
    }

    fn plus(user: &str, password: &str, data: &[u8]) -> Self {
        Self {
            cbind_data: data.to_vec(),
            ..Self::with_header("p=tls-exporter,,", user, password)
        }
    }

    fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.bare).into_bytes()
    }

    /// The client-final for this server-first, and the `v=` the server must answer with.
    fn last(&self, server_first: &[u8]) -> (Vec<u8>, Vec<u8>) {
        self.last_with_nonce(server_first, None)
    }

    fn last_with_nonce(&self, server_first: &[u8], nonce: Option<&str>) -> (Vec<u8>, Vec<u8>) {
        let text = std::str::from_utf8(server_first).unwrap();
        let attr = |name: &str| {
            text.split(',')
                .find_map(|a| a.strip_prefix(name))
                .unwrap()
                .to_string()
        };
        let (server_nonce, salt, iterations) = (attr("r="), attr("s="), attr("i="));
        let salt = STANDARD.decode(salt).unwrap();
        let salted = crypto::hi(self.password.as_bytes(), &salt, iterations.parse().unwrap());
        let client_key = crypto::client_key(&salted);
        let mut cbind = self.gs2_header.as_bytes().to_vec();
        cbind.extend_from_slice(&self.cbind_data);
        let without_proof = format!(
            "c={},r={}",
            STANDARD.encode(cbind),
            nonce.unwrap_or(&server_nonce)
        );
        let auth_message = format!("{},{text},{without_proof}", self.bare);
        let mut proof =
            crypto::client_signature(&crypto::stored_key(&client_key), auth_message.as_bytes());
        crypto::xor_into(&mut proof, &client_key);
        let verifier =
            crypto::server_signature(&crypto::server_key(&salted), auth_message.as_bytes());
        (
            format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes(),
            format!("v={}", STANDARD.encode(verifier)).into_bytes(),
        )
    }
}

/// Runs a whole exchange (client-first as initial response) and returns the final step.
async fn login(mech: &dyn SaslMechanism, ctx: &SessionContext, client: &Client) -> SaslStep {
    let mut ex = mech.start(Some(&client.first()), ctx);
    let SaslStep::Challenge(server_first) = ex.step(None).await else {
        panic!("no server-first");
    };
    let (last, verifier) = client.last(&server_first);
    let step = ex.step(Some(&last)).await;
    if let SaslStep::Success { server_data, .. } = &step {
        assert_eq!(
            server_data.as_deref(),
            Some(&verifier[..]),
            "server signature"
        );
    }
    step
}

fn identity(step: &SaslStep) -> (&str, &str) {
    match step {
        SaslStep::Success { identity, .. } => (
            identity.authentication_id.as_str(),
            identity.authorization_id.as_str(),
        ),
        other => panic!("not a success: {other:?}"),
    }
}

fn invalid(reason: &str) -> SaslStep {
    SaslStep::Failure(SaslFailure::InvalidCredentials {
        reason: reason.into(),
    })
}

#[track_caller]
fn assert_malformed(step: &SaslStep, needle: &str) {
    match step {
        SaslStep::Failure(SaslFailure::Malformed(text)) if text.contains(needle) => {}
        other => panic!("expected Malformed({needle}…), got {other:?}"),
    }
}

#[tokio::test]
async fn rfc7677_test_vector() {
    let m = scram(false);
    let mut ex = m.start(Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"), &ctx(false));
    assert_eq!(
        ex.step(None).await,
        SaslStep::Challenge(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .to_vec()
        )
    );
    let step = ex
        .step(Some(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        ))
        .await;
    let SaslStep::Success {
        identity,
        server_data,
    } = step
    else {
        panic!("{step:?}");
    };
    assert_eq!(identity.authentication_id, "user@example.com");
    assert_eq!(identity.authorization_id, "user@example.com");
    assert_eq!(identity.token, None);
    assert_eq!(
        server_data.as_deref(),
        Some(&b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="[..])
    );
    // A finished exchange refuses further steps without panicking.
    assert_malformed(&ex.step(Some(b"x")).await, "finished");
}

#[tokio::test]
async fn without_initial_response_an_empty_challenge_comes_first() {
    let m = scram(false);
    let client = Client::new("user", "pencil");
    let mut ex = m.start(None, &ctx(true));
    assert_eq!(ex.step(None).await, SaslStep::Challenge(Vec::new()));
    let SaslStep::Challenge(server_first) = ex.step(Some(&client.first())).await else {
        panic!("no server-first");
    };
    let (last, verifier) = client.last(&server_first);
    let SaslStep::Success { server_data, .. } = ex.step(Some(&last)).await else {
        panic!("no success");
    };
    assert_eq!(server_data, Some(verifier));
}

#[tokio::test]
async fn production_nonces_are_random_and_long() {
    let m = ScramSha256::new(auth(Users::new(), false));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut ex = m.start(Some(&Client::new("alice", "x").first()), &ctx(true));
        let SaslStep::Challenge(first) = ex.step(None).await else {
            panic!("no server-first");
        };
        let text = String::from_utf8(first).unwrap();
        let nonce = text.split(',').next().unwrap().strip_prefix("r=").unwrap();
        let ours = nonce.strip_prefix(CLIENT_NONCE).unwrap();
        // 18 random bytes or more, in base64.
        assert!(ours.len() >= 24, "{ours}");
        assert!(ours.bytes().all(|b| b.is_ascii_graphic() && b != b','));
        seen.push(ours.to_string());
    }
    assert_ne!(seen[0], seen[1]);
    // A real exchange with those nonces works too.
    assert!(matches!(
        login(&m, &ctx(true), &Client::new("alice", "alicepw")).await,
        SaslStep::Success { .. }
    ));
}

#[tokio::test]
async fn canonical_names_aliases_and_escaped_names() {
    let m = scram(false);
    for name in ["alice", "ALICE@example.com", "ali,ce=x"] {
        let step = login(&m, &ctx(true), &Client::new(name, "alicepw")).await;
        assert_eq!(
            identity(&step),
            ("alice@example.com", "alice@example.com"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn wrong_password_fails_at_the_proof() {
    let m = scram(false);
    assert_eq!(
        login(&m, &ctx(true), &Client::new("alice", "alicepw2")).await,
        invalid("invalid-proof")
    );
    // A truncated or empty-ish proof is just as wrong.
    let mut ex = m.start(Some(&Client::new("alice", "x").first()), &ctx(true));
    let SaslStep::Challenge(first) = ex.step(None).await else {
        panic!("no server-first");
    };
    let nonce = String::from_utf8(first).unwrap()[2..]
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let last = format!("c=biws,r={nonce},p=AAAA");
    assert_eq!(
        ex.step(Some(last.as_bytes())).await,
        invalid("invalid-proof")
    );
}

/// The server-first an unknown name gets.
async fn server_first_for(m: &ScramSha256, name: &str) -> String {
    let mut ex = m.start(Some(&Client::new(name, "x").first()), &ctx(true));
    match ex.step(None).await {
        SaslStep::Challenge(first) => String::from_utf8(first).unwrap(),
        other => panic!("{name}: {other:?}"),
    }
}

fn salt_and_iterations(server_first: &str) -> (Vec<u8>, String) {
    let mut attrs = server_first.split(',').skip(1);
    let salt = attrs.next().unwrap().strip_prefix("s=").unwrap();
    (
        STANDARD.decode(salt).unwrap(),
        attrs.next().unwrap().to_string(),
    )
}

#[tokio::test]
async fn unknown_user_looks_like_a_wrong_password() {
    let m = scram(false);
    // Same shape as a real user's, stable across attempts, names and mechanisms, per name.
    let (salt, iterations) = salt_and_iterations(&server_first_for(&m, "carol").await);
    assert_eq!(salt.len(), 16);
    assert_eq!(iterations, "i=4096");
    assert_eq!(
        server_first_for(&m, "carol").await,
        server_first_for(&m, "CAROL").await
    );
    let other = ScramSha256::new(auth(Users::new(), false)).with_nonces(fixed_nonce());
    assert_eq!(
        server_first_for(&m, "carol").await,
        server_first_for(&other, "carol").await
    );
    assert_ne!(
        server_first_for(&m, "carol").await,
        server_first_for(&m, "dave").await
    );
    // The refusal comes at the proof, exactly like a wrong password; same for a user with
    // no SCRAM secret (bob has only a password).
    for name in ["carol", "bob", "bob@example.com"] {
        assert_eq!(
            login(&m, &ctx(true), &Client::new(name, "bobpw")).await,
            invalid("invalid-proof"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn directory_down_is_temporary() {
    let users = Users::new();
    users.down.store(true, Ordering::SeqCst);
    let m = ScramSha256::new(auth(users, false));
    let mut ex = m.start(Some(&Client::new("alice", "alicepw").first()), &ctx(true));
    let step = ex.step(None).await;
    assert!(
        matches!(step, SaslStep::Failure(SaslFailure::TemporaryFailure(_))),
        "{step:?}"
    );
}

#[tokio::test]
async fn authzid_rules_follow_plain() {
    let client = |authzid: &str, password: &str| {
        let header = format!("n,a={},", encode_saslname(authzid));
        Client::with_header(&header, "alice", password)
    };
    // The same user by any of its names.
    for authzid in ["alice", "Alice@Example.com", "ali,ce=x"] {
        let step = login(&scram(false), &ctx(true), &client(authzid, "alicepw")).await;
        assert_eq!(
            identity(&step),
            ("alice@example.com", "alice@example.com"),
            "{authzid}"
        );
    }
    // Someone else: refused without delegation, that user's canonical name with it.
    assert_eq!(
        login(&scram(false), &ctx(true), &client("bob", "alicepw")).await,
        SaslStep::Failure(SaslFailure::DelegationForbidden {
            authcid: "alice@example.com".into(),
            authzid: "bob".into(),
        })
    );
    let step = login(&scram(true), &ctx(true), &client("BOB", "alicepw")).await;
    assert_eq!(identity(&step), ("alice@example.com", "bob@example.com"));
    assert_eq!(
        login(&scram(true), &ctx(true), &client("nobody", "alicepw")).await,
        invalid("unknown_authzid")
    );
    // The proof is checked before the authzid.
    assert_eq!(
        login(&scram(false), &ctx(true), &client("bob", "wrong")).await,
        invalid("invalid-proof")
    );
}

#[tokio::test]
async fn y_flag_is_a_downgrade_only_when_plus_is_offered_and_usable() {
    let y = Client::with_header("y,,", "alice", "alicepw");
    // No channel binding in this session: the client is right that we cannot bind.
    assert!(matches!(
        login(&scram(false), &ctx(true), &y).await,
        SaslStep::Success { .. }
    ));
    // -PLUS offered and usable: someone hid it from the client.
    let mut ex = scram(false).start(Some(&y.first()), &bound());
    assert_eq!(
        ex.step(None).await,
        invalid("server-does-support-channel-binding")
    );
    // Through the registry: -PLUS not enabled, so a `y` client is honest even under TLS.
    let backends = auth(Users::new(), false);
    let only = SaslRegistry::with_builtins(&backends)
        .enable(&["SCRAM-SHA-256".into()])
        .unwrap();
    let m = only.get("SCRAM-SHA-256", &bound()).unwrap();
    assert!(matches!(
        login(&*m, &bound(), &y).await,
        SaslStep::Success { .. }
    ));
    let both = SaslRegistry::with_builtins(&backends)
        .enable(&["SCRAM-SHA-256".into(), "SCRAM-SHA-256-PLUS".into()])
        .unwrap();
    let m = both.get("SCRAM-SHA-256", &bound()).unwrap();
    assert_eq!(
        login_first(&*m, &bound(), &y.first()).await,
        invalid("server-does-support-channel-binding")
    );
    // `n` is fine either way: that client cannot bind at all.
    let n = Client::new("alice", "alicepw");
    assert!(matches!(
        login(&*m, &bound(), &n).await,
        SaslStep::Success { .. }
    ));
}

async fn login_first(mech: &dyn SaslMechanism, ctx: &SessionContext, first: &[u8]) -> SaslStep {
    mech.start(Some(first), ctx).step(None).await
}

#[tokio::test]
async fn channel_binding_flag_on_the_plain_mechanism_is_refused() {
    let p = Client::plus("alice", "alicepw", EXPORTER);
    assert_malformed(
        &login_first(&scram(false), &bound(), &p.first()).await,
        "channel-binding-not-supported",
    );
}

#[tokio::test]
async fn plus_binds_to_the_tls_exporter() {
    let m = scram_plus();
    let step = login(&m, &bound(), &Client::plus("alice", "alicepw", EXPORTER)).await;
    assert_eq!(identity(&step), ("alice@example.com", "alice@example.com"));
    // Another connection's exporter (a man in the middle relaying): refused.
    assert_eq!(
        login(&m, &bound(), &Client::plus("alice", "alicepw", &[8; 32])).await,
        invalid("channel-bindings-dont-match")
    );
    assert_eq!(
        login(&m, &bound(), &Client::plus("alice", "alicepw", b"")).await,
        invalid("channel-bindings-dont-match")
    );
    // Wrong flags for -PLUS.
    for (header, needle) in [
        ("n,,", "invalid-encoding"),
        ("y,,", "invalid-encoding"),
        ("p=tls-unique,,", "unsupported-channel-binding-type"),
        (
            "p=tls-server-end-point,,",
            "unsupported-channel-binding-type",
        ),
    ] {
        let c = Client::with_header(header, "alice", "alicepw");
        assert_malformed(&login_first(&m, &bound(), &c.first()).await, needle);
    }
}

#[tokio::test]
async fn plus_without_channel_binding_is_unavailable() {
    let m = scram_plus();
    let p = Client::plus("alice", "alicepw", EXPORTER);
    for ctx in [
        ctx(true),
        SessionContext {
            channel_binding: Some(ChannelBinding {
                kind: "tls-unique",
                data: EXPORTER.to_vec(),
            }),
            ..ctx(true)
        },
    ] {
        assert!(!m.available(&ctx));
        let step = login_first(&m, &ctx, &p.first()).await;
        assert!(
            matches!(
                step,
                SaslStep::Failure(SaslFailure::MechanismUnavailable(_))
            ),
            "{step:?}"
        );
    }
}

#[tokio::test]
async fn mandatory_extension_is_refused() {
    assert_malformed(
        &login_first(&scram(false), &ctx(true), b"n,,m=ext,n=alice,r=abc").await,
        "extensions-not-supported",
    );
}

#[tokio::test]
async fn client_final_must_match_the_exchange() {
    let m = scram(false);
    let client = Client::new("alice", "alicepw");
    let start = || async {
        let mut ex = m.start(Some(&client.first()), &ctx(true));
        let SaslStep::Challenge(first) = ex.step(None).await else {
            panic!("no server-first");
        };
        (ex, first)
    };
    // Nonce: the client's alone, or another one.
    for nonce in [CLIENT_NONCE, "rOprNGfwEbeRWgbNEkqOother"] {
        let (mut ex, first) = start().await;
        let (last, _) = client.last_with_nonce(&first, Some(nonce));
        assert_malformed(&ex.step(Some(&last)).await, "nonce");
    }
    // `c=` must repeat the GS2 header: `y,,` after `n,,` is tampering.
    let (mut ex, first) = start().await;
    let lying = Client::with_header("y,,", "alice", "alicepw");
    let (last, _) = lying.last(&first);
    assert_eq!(
        ex.step(Some(&last)).await,
        invalid("channel-bindings-dont-match")
    );
    // Malformed client-finals.
    for bad in [
        &b""[..],
        b"c=biws",
        b"c=biws,r=x",
        b"c=biws,p=AAAA",
        b"c=b!ws,r=x,p=AAAA",
        b"r=x,c=biws,p=AAAA",
    ] {
        let (mut ex, _) = start().await;
        assert_malformed(&ex.step(Some(bad)).await, "invalid-encoding");
    }
    // No message at all.
    let (mut ex, _) = start().await;
    assert_malformed(&ex.step(None).await, "missing");
}

#[tokio::test]
async fn malformed_client_firsts() {
    let m = scram(false);
    for (bad, needle) in [
        (&b"n,,r=abc"[..], "invalid-encoding"),
        (b"n,,n=alice", "invalid-encoding"),
        (b"n,,n=alice,x=1,r=abc", "invalid-encoding"),
        (b"n,,n=al=ice,r=abc", "invalid-username-encoding"),
        (b"n,,n=alice,r=a,b", "invalid-encoding"),
        (b"q,,n=alice,r=abc", "invalid-encoding"),
        (b"n,,n=alice,r=\x7f", "invalid-encoding"),
    ] {
        assert_malformed(&login_first(&m, &ctx(true), bad).await, needle);
    }
}

#[test]
fn availability() {
    let with = scram(false);
    let plus = scram_plus();
    assert!(
        with.available(&ctx(false)),
        "no password travels: no TLS needed"
    );
    assert!(with.available(&bound()));
    assert!(!plus.available(&ctx(true)));
    assert!(plus.available(&bound()));
    assert_eq!(with.name(), "SCRAM-SHA-256");
    assert_eq!(plus.name(), "SCRAM-SHA-256-PLUS");
    // A directory without SCRAM secrets: never offered.
    let none = backends(TestDirectory::new(), None, &[]);
    assert!(!ScramSha256::new(none.clone()).available(&bound()));
    assert!(!ScramSha256::plus(none).available(&bound()));
}

#[test]
fn registry_knows_both_but_enables_neither_by_default() {
    use crate::auth::sasl::{Protocol, default_mechanisms};
    for protocol in [
        Protocol::Imap,
        Protocol::Smtp,
        Protocol::Pop3,
        Protocol::ManageSieve,
    ] {
        assert!(
            !default_mechanisms(protocol)
                .iter()
                .any(|m| m.starts_with("SCRAM")),
            "{protocol:?}"
        );
    }
    let backends = auth(Users::new(), false);
    let registry = SaslRegistry::with_builtins(&backends)
        .enable(&["scram-sha-256-plus".into(), "SCRAM-SHA-256".into()])
        .unwrap();
    assert_eq!(
        registry.advertised(&bound()),
        ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    );
    assert_eq!(registry.advertised(&ctx(true)), ["SCRAM-SHA-256"]);
}

#[test]
fn channel_binding_debug_hides_the_data() {
    let debug = format!("{:?}", bound());
    assert!(debug.contains("tls-exporter"), "{debug}");
    assert!(!debug.contains("7, 7"), "{debug}");
}

#[tokio::test]
async fn never_panics() {
    for m in [scram(true), scram_plus()] {
        for a in odd_inputs() {
            let mut ex = m.start(Some(&a), &bound());
            assert!(matches!(ex.step(None).await, SaslStep::Failure(_)), "{a:?}");
            ex.step(Some(&a)).await;
            // Odd client-finals after a good client-first.
            let mut ex = m.start(None, &bound());
            ex.step(None).await;
            let first = if m.name().ends_with("PLUS") {
                Client::plus("alice", "x", EXPORTER).first()
            } else {
                Client::new("alice", "x").first()
            };
            assert!(matches!(
                ex.step(Some(&first)).await,
                SaslStep::Challenge(_)
            ));
            assert!(
                matches!(ex.step(Some(&a)).await, SaslStep::Failure(_)),
                "{a:?}"
            );
            ex.step(None).await;
        }
    }
}

#[tokio::test]
async fn wrong_proofs_count_and_a_throttled_user_gets_no_server_first() {
    use crate::auth::throttle::{LoginThrottle, MemoryBudget, Policy, ThrottleSettings};
    use std::time::Duration;
    let policy = Policy {
        free_failures: 1,
        base_delay: Duration::from_secs(300),
        max_delay: Duration::from_secs(300),
    };
    let throttle = LoginThrottle::new(
        Arc::new(MemoryBudget::new()),
        ThrottleSettings {
            per_address: Policy {
                free_failures: 100,
                ..policy
            },
            per_user: policy,
            window: Duration::from_secs(600),
            fail_open: false,
        },
        "",
    );
    let mut backends = auth(Users::new(), false);
    backends.throttle = Some(throttle.clone());
    let m = ScramSha256::new(backends).with_nonces(fixed_nonce());
    let from = SessionContext {
        peer: Some("127.0.0.1:4000".parse().unwrap()),
        ..ctx(true)
    };
    for _ in 0..2 {
        let step = login(&m, &from, &Client::new("alice", "wrong")).await;
        assert!(matches!(
            step,
            SaslStep::Failure(SaslFailure::InvalidCredentials { .. })
        ));
    }
    let peer_ip = from.peer.map(|p| p.ip());
    assert_eq!(throttle.failures(peer_ip, Some("alice")).await, Ok((2, 2)));
    // The right password is refused at the client-first, before the directory is asked.
    let mut ex = m.start(Some(&Client::new("alice", "alicepw").first()), &from);
    assert!(matches!(
        ex.step(None).await,
        SaslStep::Failure(SaslFailure::Throttled { .. })
    ));
}
