//! `mail-oidc bench --validation`: what one bearer-token validation costs in the server's own
//! validator, with the validated-token cache off and on, beside the bare RS256 signature check
//! on ring (what the server uses) and on jsonwebtoken's pure-Rust backend (what it used before).
//! In process, against a JWKS served on loopback; printed, never asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use mail_oidc_server::auth::directory::{Directory, DirectoryError};
use mail_oidc_server::auth::oidc::{OidcValidator, OidcValidatorConfig, TokenValidator};
use mail_oidc_server::config::OidcSection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::keys::RsaKeyPair;
use crate::tokens::TokenForge;

/// Serves `body` as JSON to every HTTP request on a loopback port (an issuer's JWKS); runs
/// until the runtime ends.
pub async fn serve_json(body: String) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

/// A fresh RSA issuer: its key, its JWKS served on loopback, and a forge for its tokens
/// (`kid` `bench-1`, audience `mail`).
pub async fn loopback_issuer() -> anyhow::Result<(TokenForge, std::net::SocketAddr)> {
    let keys = RsaKeyPair::generate()?;
    let encoding = EncodingKey::from_rsa_pem(keys.private_pem.as_bytes())?;
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::RS256)?)?;
    jwk["kid"] = "bench-1".into();
    let addr = serve_json(serde_json::json!({ "keys": [jwk] }).to_string()).await?;
    let forge = TokenForge {
        private_pem: keys.private_pem,
        public_pem: keys.public_pem,
        kid: "bench-1".into(),
        issuer: format!("http://{addr}"),
        audience: "mail".into(),
    };
    Ok((forge, addr))
}

/// Knows every name (the directory's own cost is not what is measured here).
struct EveryUser;

#[async_trait]
impl Directory for EveryUser {
    async fn lookup(&self, name: &str) -> Result<Option<String>, DirectoryError> {
        Ok(Some(name.to_string()))
    }
    async fn verify_password(&self, _: &str, _: &str) -> Result<Option<String>, DirectoryError> {
        Ok(None)
    }
}

/// Mean time per operation.
#[derive(Debug, Clone)]
pub struct ValidationCost {
    pub iterations: usize,
    pub uncached: Duration,
    pub cached: Duration,
    pub verify_ring: Duration,
    pub verify_rust_crypto: Duration,
}

impl std::fmt::Display for ValidationCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        writeln!(
            f,
            "bearer validation, RS256 2048-bit, mean of {} (directory lookup in memory):",
            self.iterations
        )?;
        writeln!(
            f,
            "  validator, token cache off: {:>9.1} µs",
            us(self.uncached)
        )?;
        writeln!(
            f,
            "  validator, token cache on:  {:>9.1} µs",
            us(self.cached)
        )?;
        writeln!(
            f,
            "  signature only, ring:        {:>9.1} µs",
            us(self.verify_ring)
        )?;
        write!(
            f,
            "  signature only, jsonwebtoken rust_crypto: {:>9.1} µs",
            us(self.verify_rust_crypto)
        )
    }
}

fn validator(issuer: &str, cache_seconds: u64) -> anyhow::Result<OidcValidator> {
    let section: OidcSection = toml::from_str(&format!(
        "issuer = \"{issuer}\"\njwks_url = \"{issuer}/jwks\"\naudience = [\"mail\"]\n\
         token_cache_seconds = {cache_seconds}"
    ))?;
    Ok(OidcValidator::new(
        OidcValidatorConfig::from_section(&section)?,
        Arc::new(EveryUser),
    )?)
}

async fn mean_of<F, Fut>(iterations: usize, mut op: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    op().await.context("warm-up")?;
    let started = Instant::now();
    for _ in 0..iterations {
        op().await?;
    }
    Ok(started.elapsed() / iterations.max(1) as u32)
}

/// Measures each figure over `iterations` runs (after one warm-up).
pub async fn validation_cost(iterations: usize) -> anyhow::Result<ValidationCost> {
    let iterations = iterations.clamp(1, 1_000_000);
    let (forge, _) = loopback_issuer().await?;
    let token = forge.mint(&forge.claims_for("bench@example.com", "sub-bench"));
    let uncached_validator = validator(&forge.issuer, 0)?;
    let cached_validator = validator(&forge.issuer, 300)?;
    let uncached = mean_of(iterations, || async {
        uncached_validator.validate(&token).await?;
        Ok(())
    })
    .await?;
    let cached = mean_of(iterations, || async {
        cached_validator.validate(&token).await?;
        Ok(())
    })
    .await?;

    let (input, signature) = token.rsplit_once('.').context("three parts")?;
    let signature_bytes = URL_SAFE_NO_PAD.decode(signature)?;
    let public = DecodingKey::from_rsa_pem(forge.public_pem.as_bytes())?;
    let verify_rust_crypto = mean_of(iterations, || async {
        anyhow::ensure!(jsonwebtoken::crypto::verify(
            signature,
            input.as_bytes(),
            &public,
            Algorithm::RS256
        )?);
        Ok(())
    })
    .await?;
    let spki = ring_public_key(&forge.public_pem)?;
    let verify_ring = mean_of(iterations, || async {
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &spki)
            .verify(input.as_bytes(), &signature_bytes)
            .map_err(|_| anyhow::anyhow!("ring: bad signature"))
    })
    .await?;
    Ok(ValidationCost {
        iterations,
        uncached,
        cached,
        verify_ring,
        verify_rust_crypto,
    })
}

/// The PKCS#1 RSAPublicKey ring verifies with, from an SPKI PEM (via openssl, like the keys).
fn ring_public_key(spki_pem: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["rsa", "-pubin", "-RSAPublicKey_out", "-outform", "DER"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running openssl")?;
    child
        .stdin
        .take()
        .context("openssl stdin")?
        .write_all(spki_pem.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}
