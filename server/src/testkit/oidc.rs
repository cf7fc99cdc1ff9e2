//! Test helpers: signing keys made with the `openssl` CLI, token minting, a tiny HTTP/1.1 IdP
//! (discovery, JWKS, introspection) that counts requests.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const JWKS_PATH: &str = "/jwks";
pub const INTROSPECTION_PATH: &str = "/introspect";

/// Runs `openssl` with `args`, feeding `stdin`, and returns its stdout.
pub fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl CLI is installed");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A signing key with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
    /// SubjectPublicKeyInfo PEM (what a forger would use as an HMAC secret).
    pub public_pem: Vec<u8>,
}

fn with_kid(mut jwk: Value, kid: &str) -> Value {
    jwk["kid"] = kid.into();
    jwk["use"] = "sig".into();
    jwk
}

pub fn rsa_key(kid: &str) -> TestKey {
    // PKCS#1 ("-traditional") is what jsonwebtoken's RSA signer reads.
    let private_pem = openssl(&["genrsa", "-traditional", "2048"], b"");
    let public_pem = openssl(&["rsa", "-pubout"], &private_pem);
    let encoding = EncodingKey::from_rsa_pem(&private_pem).expect("RSA PEM");
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).expect("RSA JWK");
    TestKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        jwk: with_kid(serde_json::to_value(jwk).expect("JWK to JSON"), kid),
        encoding,
        public_pem,
    }
}

pub fn ec_p256_key(kid: &str) -> TestKey {
    let private_pem = openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
        b"",
    );
    let public_pem = openssl(&["pkey", "-pubout"], &private_pem);
    let encoding = EncodingKey::from_ec_pem(&private_pem).expect("EC PEM");
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("EC JWK");
    TestKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        jwk: with_kid(serde_json::to_value(jwk).expect("JWK to JSON"), kid),
        encoding,
        public_pem,
    }
}

pub fn ed25519_key(kid: &str) -> TestKey {
    let private_pem = openssl(&["genpkey", "-algorithm", "ed25519"], b"");
    let public_pem = openssl(&["pkey", "-pubout"], &private_pem);
    let public_der = openssl(&["pkey", "-pubout", "-outform", "DER"], &private_pem);
    // An Ed25519 SubjectPublicKeyInfo ends with the 32-byte raw public key.
    let raw = &public_der[public_der.len() - 32..];
    let jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": URL_SAFE_NO_PAD.encode(raw)});
    TestKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_pem(&private_pem).expect("Ed25519 PEM"),
        jwk: with_kid(jwk, kid),
        public_pem,
    }
}

/// Keys shared by all tests (RSA key generation costs a little).
pub struct Keys {
    /// The IdP's key.
    pub idp: TestKey,
    /// The key the IdP rotates to.
    pub rotated: TestKey,
    /// An attacker's key.
    pub foreign: TestKey,
    pub ec: TestKey,
    pub ed: TestKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        idp: rsa_key("idp-1"),
        rotated: rsa_key("idp-2"),
        foreign: rsa_key("idp-1"),
        ec: ec_p256_key("ec-1"),
        ed: ed25519_key("ed-1"),
    })
}

/// Signs `claims` with `key`; `typ` and `kid` as given (None = member absent).
pub fn mint(key: &TestKey, typ: Option<&str>, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.typ = typ.map(str::to_string);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

/// Builds an unsigned token from raw header and claims JSON.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// One request as the fake IdP saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

struct IdpState {
    issuer: Mutex<String>,
    jwks: Mutex<Value>,
    active: AtomicBool,
    /// Answer 503 to everything.
    down: AtomicBool,
    seen: Mutex<Vec<SeenRequest>>,
}

/// A tiny IdP on 127.0.0.1:0. Every answer closes its connection, so a stopped IdP is
/// really unreachable (no pooled connection survives).
pub struct FakeIdp {
    pub addr: SocketAddr,
    state: Arc<IdpState>,
    task: JoinHandle<()>,
}

impl FakeIdp {
    pub async fn start(jwks_keys: &[&TestKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(IdpState {
            issuer: Mutex::new(format!("http://{addr}")),
            jwks: Mutex::new(Value::Null),
            active: AtomicBool::new(true),
            down: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        });
        let idp = Self {
            addr,
            task: tokio::spawn(accept_loop(listener, state.clone())),
            state,
        };
        idp.set_keys(jwks_keys);
        idp
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        let list: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
        *self.state.jwks.lock().expect("lock") = json!({ "keys": list });
    }

    /// The issuer announced in discovery (default: this IdP's base URL).
    pub fn set_discovery_issuer(&self, issuer: &str) {
        *self.state.issuer.lock().expect("lock") = issuer.into();
    }

    pub fn set_active(&self, active: bool) {
        self.state.active.store(active, Ordering::SeqCst);
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.requests(path).len()
    }

    pub fn total_hits(&self) -> usize {
        self.state.seen.lock().expect("lock").len()
    }

    pub fn requests(&self, path: &str) -> Vec<SeenRequest> {
        self.state
            .seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Closes the listening socket: later connects are refused.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<IdpState>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve(stream, state.clone()));
    }
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn serve(mut stream: TcpStream, state: Arc<IdpState>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = header_value(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    state.seen.lock().expect("lock").push(SeenRequest {
        path: path.clone(),
        authorization: header_value(&head, "authorization").map(str::to_string),
        body: String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string(),
    });
    let issuer = state.issuer.lock().expect("lock").clone();
    let base = match header_value(&head, "host") {
        Some(host) => format!("http://{host}"),
        None => issuer.clone(),
    };
    let (status, body) = if state.down.load(Ordering::SeqCst) {
        ("503 Service Unavailable", json!({"error": "down"}))
    } else {
        match path.as_str() {
            DISCOVERY_PATH => (
                "200 OK",
                json!({
                    "issuer": issuer,
                    "jwks_uri": format!("{base}{JWKS_PATH}"),
                    "introspection_endpoint": format!("{base}{INTROSPECTION_PATH}"),
                }),
            ),
            JWKS_PATH => ("200 OK", state.jwks.lock().expect("lock").clone()),
            INTROSPECTION_PATH => (
                "200 OK",
                json!({"active": state.active.load(Ordering::SeqCst)}),
            ),
            _ => ("404 Not Found", json!({"error": "not found"})),
        }
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The validator settings `[oidc]` with `discovery_url` (this IdP) and `audience = ["mail"]`
/// gives; with `introspection`, RFC 7662 at the discovered endpoint as client `mail`.
pub fn validator_config(
    idp: &FakeIdp,
    introspection: bool,
) -> crate::auth::oidc::OidcValidatorConfig {
    let section: crate::config::OidcSection = toml::from_str(&format!(
        "discovery_url = \"{}\"\naudience = [\"mail\"]\nhttp_timeout_seconds = 5",
        idp.url(DISCOVERY_PATH)
    ))
    .expect("section parses");
    let mut config =
        crate::auth::oidc::OidcValidatorConfig::from_section(&section).expect("valid section");
    if introspection {
        config.introspection = Some(crate::auth::oidc::IntrospectionConfig {
            endpoint: None,
            client_id: "mail".into(),
            client_secret: "s3cret".into(),
            cache_ttl: std::time::Duration::from_secs(60),
            cache_capacity: 100,
        });
    }
    config
}

/// The real validator against this IdP, over the shared test directory (alice, bob).
pub fn validator(idp: &FakeIdp, introspection: bool) -> crate::auth::oidc::OidcValidator {
    crate::auth::oidc::OidcValidator::new(
        validator_config(idp, introspection),
        crate::testkit::TestDirectory::new(),
    )
    .expect("validator builds")
}

/// Access-token claims for alice from this IdP (what [`crate::auth::oidc::OidcValidator::validate`]
/// accepts), with the given `sid`.
pub fn access_claims(idp: &FakeIdp, sid: &str) -> Value {
    let now = crate::time::now_unix().max(0) as u64;
    json!({
        "iss": idp.issuer(),
        "sub": "sub-alice",
        "aud": ["mail"],
        "exp": now + 300,
        "iat": now - 10,
        "sid": sid,
        "email": "alice@example.com",
    })
}
