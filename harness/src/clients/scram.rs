//! A SCRAM-SHA-256 client (RFC 5802, RFC 7677) with `tls-exporter` channel binding (RFC 9266),
//! written from the RFCs apart from the server's code, for end-to-end logins.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// How the client treats channel binding (the GS2 flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// `n`: the client does not support it (SCRAM-SHA-256 outside TLS or by choice).
    Unsupported,
    /// `y`: the client supports it but thinks the server does not (a downgrade if the server
    /// offers -PLUS).
    NotOffered,
    /// `p=tls-exporter` with these bytes (SCRAM-SHA-256-PLUS).
    TlsExporter(Vec<u8>),
}

/// One SCRAM exchange, client side.
pub struct ScramClient {
    password: String,
    gs2_header: String,
    binding_data: Vec<u8>,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

/// RFC 5802 `saslname`: `,` and `=` escaped.
fn saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; the error cannot happen.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 5802 `Hi()`: PBKDF2 with HMAC-SHA-256 and one block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &block);
    let mut out = u.clone();
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, b) in out.iter_mut().zip(&u) {
            *o ^= b;
        }
    }
    out
}

impl ScramClient {
    /// `authzid`: another identity to act as, if any.
    pub fn new(user: &str, password: &str, authzid: Option<&str>, binding: Binding) -> Self {
        let nonce = STANDARD.encode(rand::random::<[u8; 18]>());
        Self::with_nonce(user, password, authzid, binding, &nonce)
    }

    pub fn with_nonce(
        user: &str,
        password: &str,
        authzid: Option<&str>,
        binding: Binding,
        nonce: &str,
    ) -> Self {
        let flag = match &binding {
            Binding::Unsupported => "n".to_string(),
            Binding::NotOffered => "y".to_string(),
            Binding::TlsExporter(_) => "p=tls-exporter".to_string(),
        };
        let authzid = authzid
            .map(|a| format!("a={}", saslname(a)))
            .unwrap_or_default();
        let binding_data = match binding {
            Binding::TlsExporter(data) => data,
            _ => Vec::new(),
        };
        Self {
            password: password.to_string(),
            gs2_header: format!("{flag},{authzid},"),
            binding_data,
            client_first_bare: format!("n={},r={nonce}", saslname(user)),
            nonce: nonce.to_string(),
            server_signature: None,
        }
    }

    /// `client-first-message`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.client_first_bare).into_bytes()
    }

    /// `client-final-message` for the server's first message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(server_first).map_err(|_| "server-first is not UTF-8")?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(STANDARD.decode(v).map_err(|e| format!("s: {e}"))?),
                Some(("i", v)) => {
                    iterations = Some(v.parse::<u32>().map_err(|e| format!("i: {e}"))?)
                }
                Some(("e", v)) => return Err(format!("server error: {v}")),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(format!("incomplete server-first: {text}"));
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(format!("server nonce does not extend ours: {nonce}"));
        }
        let mut cbind = self.gs2_header.as_bytes().to_vec();
        cbind.extend_from_slice(&self.binding_data);
        let without_proof = format!("c={},r={nonce}", STANDARD.encode(&cbind));
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let salted = hi(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks `server-final-message`: the server proved it knows the password's keys.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "server-final is not UTF-8")?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("server error: {e}"));
        }
        let v = text
            .strip_prefix("v=")
            .ok_or_else(|| format!("no verifier: {text}"))?;
        let got = STANDARD.decode(v).map_err(|e| format!("v: {e}"))?;
        match &self.server_signature {
            Some(expected) if *expected == got => Ok(()),
            Some(_) => Err("the server signature is wrong".into()),
            None => Err("server-final before client-final".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3.
    #[test]
    fn rfc7677_example() {
        let mut client = ScramClient::with_nonce(
            "user",
            "pencil",
            None,
            Binding::Unsupported,
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = client.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(
            client
                .verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .is_err()
        );
        assert!(client.verify_server_final(b"e=invalid-proof").is_err());
    }

    #[test]
    fn names_are_escaped_and_nonces_checked() {
        let mut client =
            ScramClient::with_nonce("a,b=c", "pw", Some("x=y"), Binding::NotOffered, "abc");
        assert_eq!(client.client_first(), b"y,a=x=3Dy,n=a=2Cb=3Dc,r=abc");
        assert!(client.client_final(b"r=zzz,s=AAAA,i=4096").is_err());
        assert!(client.client_final(b"r=abc,s=AAAA,i=4096").is_err());
        assert!(client.client_final(b"e=unknown-user").is_err());
    }
}
