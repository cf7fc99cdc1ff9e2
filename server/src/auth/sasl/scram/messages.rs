//! The four SCRAM messages (RFC 5802 section 7), sans-IO: client messages are parsed strictly
//! by the grammar, server messages serialized. Verbatim pieces the signatures cover
//! (`client-first-message-bare`, `client-final-message-without-proof`, the GS2 header) are kept
//! as sent, never re-serialized.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::auth::sasl::parse::decode_saslname;

/// RFC 5802 `server-error-value`: what a server-final `e=` would say. Also the vocabulary of
/// our failure reasons and log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerError {
    InvalidEncoding,
    ExtensionsNotSupported,
    InvalidProof,
    ChannelBindingsDontMatch,
    ServerDoesSupportChannelBinding,
    ChannelBindingNotSupported,
    UnsupportedChannelBindingType,
    InvalidUsernameEncoding,
    OtherError,
}

impl ServerError {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerError::InvalidEncoding => "invalid-encoding",
            ServerError::ExtensionsNotSupported => "extensions-not-supported",
            ServerError::InvalidProof => "invalid-proof",
            ServerError::ChannelBindingsDontMatch => "channel-bindings-dont-match",
            ServerError::ServerDoesSupportChannelBinding => "server-does-support-channel-binding",
            ServerError::ChannelBindingNotSupported => "channel-binding-not-supported",
            ServerError::UnsupportedChannelBindingType => "unsupported-channel-binding-type",
            ServerError::InvalidUsernameEncoding => "invalid-username-encoding",
            ServerError::OtherError => "other-error",
        }
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused client message: the RFC error plus a detail for logs (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct ScramError {
    pub kind: ServerError,
    pub detail: String,
}

impl ScramError {
    pub fn new(kind: ServerError, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

fn encoding(detail: impl Into<String>) -> ScramError {
    ScramError::new(ServerError::InvalidEncoding, detail)
}

/// `gs2-cbind-flag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CbFlag {
    /// `n`: the client does not support channel binding.
    None,
    /// `y`: the client supports channel binding but thinks the server does not.
    ClientOnly,
    /// `p=<cb-name>`: the client uses this channel binding type.
    Used(String),
}

/// `client-first-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub flag: CbFlag,
    /// Decoded `a=` value; empty when absent.
    pub authzid: String,
    /// `gs2-header` verbatim, trailing comma included: `c=` must repeat it.
    pub gs2_header: String,
    /// Decoded `n=` value (saslname escapes undone). Not SASLprep-ed.
    pub username: String,
    /// `c-nonce`.
    pub nonce: String,
    /// `client-first-message-bare` verbatim, for the AuthMessage.
    pub bare: String,
}

pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = utf8(message)?;
    let (flag_text, rest) = text
        .split_once(',')
        .ok_or_else(|| encoding("missing GS2 header"))?;
    let flag = match flag_text {
        "n" => CbFlag::None,
        "y" => CbFlag::ClientOnly,
        f => match f.strip_prefix("p=") {
            Some(name) if is_cb_name(name) => CbFlag::Used(name.to_string()),
            _ => return Err(encoding("bad GS2 channel-binding flag")),
        },
    };
    let (authzid_text, bare) = rest
        .split_once(',')
        .ok_or_else(|| encoding("unterminated GS2 header"))?;
    let authzid = if authzid_text.is_empty() {
        String::new()
    } else {
        let name = authzid_text
            .strip_prefix("a=")
            .ok_or_else(|| encoding("bad GS2 authzid"))?;
        saslname(name).ok_or_else(|| encoding("bad authzid saslname"))?
    };
    let gs2_header = &text[..text.len() - bare.len()];

    let mut attrs = bare.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        // Reserved for mandatory extensions: we know none, so we must refuse.
        return Err(ScramError::new(
            ServerError::ExtensionsNotSupported,
            "mandatory extension (m=) requested",
        ));
    }
    let username = first
        .strip_prefix("n=")
        .ok_or_else(|| encoding("expected n=<username> first"))?;
    let username = saslname(username).ok_or_else(|| {
        ScramError::new(
            ServerError::InvalidUsernameEncoding,
            "empty username or bad saslname escape",
        )
    })?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| encoding("expected r=<nonce> after the username"))?;
    if !is_printable(nonce) {
        return Err(encoding("empty or non-printable client nonce"));
    }
    check_extensions(attrs)?;
    Ok(ClientFirst {
        flag,
        authzid,
        gs2_header: gs2_header.to_string(),
        username,
        nonce: nonce.to_string(),
        bare: bare.to_string(),
    })
}

/// `server-first-message` (we never send extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    /// Client nonce followed by the server's.
    pub nonce: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl std::fmt::Display for ServerFirst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "r={},s={},i={}",
            self.nonce,
            STANDARD.encode(&self.salt),
            self.iterations
        )
    }
}

/// `client-final-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    /// Decoded `c=`: GS2 header followed by the channel-binding data, if any.
    pub channel_binding: Vec<u8>,
    pub nonce: String,
    /// Decoded `p=`.
    pub proof: Vec<u8>,
    /// `client-final-message-without-proof` verbatim, for the AuthMessage.
    pub without_proof: String,
}

pub fn parse_client_final(message: &[u8]) -> Result<ClientFinal, ScramError> {
    let text = utf8(message)?;
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or_else(|| encoding("missing p=<proof> at the end"))?;
    let proof = base64(proof, "p=")?;
    let mut attrs = without_proof.split(',');
    let cbind = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or_else(|| encoding("expected c=<channel binding> first"))?;
    let channel_binding = base64(cbind, "c=")?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| encoding("expected r=<nonce> after c="))?;
    if !is_printable(nonce) {
        return Err(encoding("empty or non-printable nonce"));
    }
    check_extensions(attrs)?;
    Ok(ClientFinal {
        channel_binding,
        nonce: nonce.to_string(),
        proof,
        without_proof: without_proof.to_string(),
    })
}

/// `server-final-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFinal {
    /// `v=`: the server signature, proving the server knows the user's ServerKey.
    Verifier(Vec<u8>),
    /// `e=`.
    Error(ServerError),
}

impl std::fmt::Display for ServerFinal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerFinal::Verifier(signature) => write!(f, "v={}", STANDARD.encode(signature)),
            ServerFinal::Error(e) => write!(f, "e={e}"),
        }
    }
}

/// RFC 5802 saslname: `,` and `=` travel as `=2C` and `=3D`. Only our tests' client encodes.
#[cfg(test)]
pub fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn utf8(message: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(message).map_err(|_| encoding("message is not UTF-8"))
}

/// A non-empty saslname without NUL, with its escapes undone.
fn saslname(text: &str) -> Option<String> {
    if text.is_empty() || text.contains('\0') {
        return None;
    }
    decode_saslname(text).ok()
}

/// `cb-name = 1*(ALPHA / DIGIT / "." / "-")`.
fn is_cb_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// `printable = %x21-2B / %x2D-7E`, at least one.
fn is_printable(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Optional `extensions` after the nonce: `attr-val = ALPHA "=" value`. Their meaning is
/// unknown to us and, not being mandatory, they are ignored once their syntax is checked.
fn check_extensions<'a>(attrs: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for attr in attrs {
        let mut bytes = attr.bytes();
        let well_formed = matches!(
            (bytes.next(), bytes.next(), bytes.next()),
            (Some(name), Some(b'='), Some(_)) if name.is_ascii_alphabetic()
        ) && !attr.contains('\0');
        if !well_formed {
            return Err(encoding("bad attribute"));
        }
    }
    Ok(())
}

fn base64(value: &str, what: &str) -> Result<Vec<u8>, ScramError> {
    match STANDARD.decode(value) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(encoding(format!("{what} is not base64"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(result: Result<impl std::fmt::Debug, ScramError>) -> ServerError {
        match result {
            Ok(v) => panic!("accepted: {v:?}"),
            Err(e) => e.kind,
        }
    }

    #[test]
    fn client_first_rfc7677() {
        let m = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(
            m,
            ClientFirst {
                flag: CbFlag::None,
                authzid: String::new(),
                gs2_header: "n,,".into(),
                username: "user".into(),
                nonce: "rOprNGfwEbeRWgbNEkqO".into(),
                bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(),
            }
        );
    }

    #[test]
    fn client_first_flags_authzid_escapes_and_extensions() {
        let m = parse_client_first(b"y,a=b=2Cc=3Dd,n=a=3Db=2Cc,r=x,z=ext").unwrap();
        assert_eq!(m.flag, CbFlag::ClientOnly);
        assert_eq!(m.authzid, "b,c=d");
        assert_eq!(m.gs2_header, "y,a=b=2Cc=3Dd,");
        assert_eq!(m.username, "a=b,c");
        assert_eq!(m.bare, "n=a=3Db=2Cc,r=x,z=ext");
        let m = parse_client_first(b"p=tls-exporter,,n=user,r=abc").unwrap();
        assert_eq!(m.flag, CbFlag::Used("tls-exporter".into()));
        assert_eq!(m.gs2_header, "p=tls-exporter,,");
        let m = parse_client_first("n,,n=j\u{fc}rgen,r=~!".as_bytes()).unwrap();
        assert_eq!(m.username, "j\u{fc}rgen");
    }

    #[test]
    fn client_first_malformed() {
        use ServerError::*;
        let cases: &[(&[u8], ServerError)] = &[
            (b"", InvalidEncoding),
            (b"n", InvalidEncoding),
            (b"n,", InvalidEncoding),
            (b"x,,n=user,r=abc", InvalidEncoding),
            (b"N,,n=user,r=abc", InvalidEncoding),
            (b"p=,,n=user,r=abc", InvalidEncoding),
            (b"p=tls_exporter,,n=user,r=abc", InvalidEncoding),
            (b"n,b=x,n=user,r=abc", InvalidEncoding),
            (b"n,a=,n=user,r=abc", InvalidEncoding),
            (b"n,a=bad=escape,n=user,r=abc", InvalidEncoding),
            (b"n,,m=ext,n=user,r=abc", ExtensionsNotSupported),
            (b"n,,r=abc", InvalidEncoding),
            (b"n,,n=,r=abc", InvalidUsernameEncoding),
            (b"n,,n=us=er,r=abc", InvalidUsernameEncoding),
            (b"n,,n=us=2cer,r=abc", InvalidUsernameEncoding),
            (b"n,,n=us\0er,r=abc", InvalidUsernameEncoding),
            (b"n,,n=user", InvalidEncoding),
            (b"n,,n=user,", InvalidEncoding),
            (b"n,,n=user,x=1,r=abc", InvalidEncoding),
            (b"n,,n=user,r=", InvalidEncoding),
            (b"n,,n=user,r=a b", InvalidEncoding),
            (b"n,,n=user,r=\xc3\xa9", InvalidEncoding),
            (b"n,,n=user,r=abc,", InvalidEncoding),
            (b"n,,n=user,r=abc,1=x", InvalidEncoding),
            (b"n,,n=user,r=abc,x=", InvalidEncoding),
            (b"n,,n=user,r=abc,xy=1", InvalidEncoding),
            (b"n,,n=\xff,r=abc", InvalidEncoding),
        ];
        for (bad, expected) in cases {
            assert_eq!(
                kind(parse_client_first(bad)),
                *expected,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn client_final_rfc7677() {
        let m = parse_client_final(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
        assert_eq!(m.channel_binding, b"n,,");
        assert_eq!(
            m.nonce,
            "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
        assert_eq!(m.proof.len(), 32);
        assert_eq!(
            m.without_proof,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
        // Extensions between the nonce and the proof are covered by the signature, then ignored.
        let m = parse_client_final(b"c=biws,r=abc,x=1,p=AAAA").unwrap();
        assert_eq!(m.without_proof, "c=biws,r=abc,x=1");
    }

    #[test]
    fn client_final_malformed() {
        for bad in [
            &b""[..],
            b"c=biws,r=abc",
            b"c=biws,r=abc,p=",
            b"c=biws,r=abc,p=not base64",
            b"c=biws,r=abc,p=AAA",
            b"c=bi,r=abc,p=AAAA",
            b"c=,r=abc,p=AAAA",
            b"r=abc,c=biws,p=AAAA",
            b"c=biws,p=AAAA",
            b"c=biws,r=,p=AAAA",
            b"c=biws,r=abc,,p=AAAA",
            b"c=biws,r=abc,1=x,p=AAAA",
            b"c=biws,r=abc,p=AAAA,x=1",
            b"c=biws,r=a\xffbc,p=AAAA",
        ] {
            assert_eq!(
                kind(parse_client_final(bad)),
                ServerError::InvalidEncoding,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn server_messages() {
        let first = ServerFirst {
            nonce: "abcdef".into(),
            salt: b"salt".to_vec(),
            iterations: 4096,
        };
        assert_eq!(first.to_string(), "r=abcdef,s=c2FsdA==,i=4096");
        assert_eq!(ServerFinal::Verifier(vec![0xff; 3]).to_string(), "v=////");
        assert_eq!(
            ServerFinal::Error(ServerError::InvalidProof).to_string(),
            "e=invalid-proof"
        );
        assert_eq!(
            ServerFinal::Error(ServerError::ServerDoesSupportChannelBinding).to_string(),
            "e=server-does-support-channel-binding"
        );
    }

    #[test]
    fn saslname_round_trip() {
        for name in ["user", "a,b", "a=b", "=2C", ",=,=", "j\u{fc}rgen"] {
            let encoded = encode_saslname(name);
            assert!(!encoded.contains(','), "{encoded}");
            let m = parse_client_first(format!("n,,n={encoded},r=x").as_bytes()).unwrap();
            assert_eq!(m.username, name);
        }
    }
}
