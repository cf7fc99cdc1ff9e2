//! RSA signing keys for the IdP and for hostile tokens. Generated with the `openssl` CLI because
//! RSA key generation in unoptimised Rust takes seconds, and openssl is installed anyway.

use std::process::Command;

use anyhow::{Context, bail};

/// A PEM key pair: PKCS#1 private key (what LemonLDAP::NG expects), the same key as PKCS#8 (what
/// Keycloak's `rsa` key provider expects) and the SPKI public key.
#[derive(Debug, Clone)]
pub struct RsaKeyPair {
    pub private_pem: String,
    pub pkcs8_pem: String,
    pub public_pem: String,
}

/// Runs `openssl <args>` with `input` on stdin; its stdout.
fn openssl(args: &[&str], input: &str) -> anyhow::Result<String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running openssl {} (is openssl installed?)", args.join(" ")))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("openssl stdin")?;
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("openssl output is not UTF-8")
}

impl RsaKeyPair {
    /// The pair of an existing private key (PKCS#1 or PKCS#8 PEM).
    pub fn from_private_pem(pem: &str) -> anyhow::Result<Self> {
        let private_pem = openssl(&["rsa", "-traditional"], pem)?;
        Ok(Self {
            pkcs8_pem: openssl(&["pkcs8", "-topk8", "-nocrypt"], &private_pem)?,
            public_pem: openssl(&["rsa", "-pubout"], &private_pem)?,
            private_pem,
        })
    }

    /// A fresh 2048-bit key.
    pub fn generate() -> anyhow::Result<Self> {
        let private_pem = openssl(&["genrsa", "-traditional", "2048"], "")?;
        Ok(Self {
            pkcs8_pem: openssl(&["pkcs8", "-topk8", "-nocrypt"], &private_pem)?,
            public_pem: openssl(&["rsa", "-pubout"], &private_pem)?,
            private_pem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_in_three_encodings() {
        let k = RsaKeyPair::generate().expect("key");
        assert!(k.private_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(k.pkcs8_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(k.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let from_pkcs8 = openssl(&["rsa", "-pubout"], &k.pkcs8_pem).expect("pubout");
        assert_eq!(from_pkcs8, k.public_pem, "the PKCS#8 key is the same key");
    }
}
