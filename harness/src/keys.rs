//! RSA signing keys for the IdP and for hostile tokens. Generated with the `openssl` CLI because
//! RSA key generation in unoptimised Rust takes seconds, and openssl is installed anyway.

use std::process::Command;

use anyhow::{Context, bail};

/// A PEM key pair: PKCS#1 private key (what LemonLDAP::NG expects) and SPKI public key.
#[derive(Debug, Clone)]
pub struct RsaKeyPair {
    pub private_pem: String,
    pub public_pem: String,
}

impl RsaKeyPair {
    /// A fresh 2048-bit key.
    pub fn generate() -> anyhow::Result<Self> {
        let private = Command::new("openssl")
            .args(["genrsa", "-traditional", "2048"])
            .output()
            .context("running openssl genrsa (is openssl installed?)")?;
        if !private.status.success() {
            bail!(
                "openssl genrsa failed: {}",
                String::from_utf8_lossy(&private.stderr)
            );
        }
        let private_pem = String::from_utf8(private.stdout).context("openssl genrsa output")?;
        let mut child = Command::new("openssl")
            .args(["rsa", "-pubout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running openssl rsa -pubout")?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().context("openssl stdin")?;
            stdin.write_all(private_pem.as_bytes())?;
        }
        let public = child.wait_with_output()?;
        if !public.status.success() {
            bail!(
                "openssl rsa -pubout failed: {}",
                String::from_utf8_lossy(&public.stderr)
            );
        }
        Ok(Self {
            private_pem,
            public_pem: String::from_utf8(public.stdout).context("openssl rsa output")?,
        })
    }
}
