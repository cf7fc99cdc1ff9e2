//! Sans-IO parsers for the client messages of PLAIN, OAUTHBEARER and XOAUTH2, and the RFC 7628
//! error challenge. Nothing here verifies credentials; the exchanges do that.

/// Why a client message does not follow its mechanism's syntax. The text goes to logs and to
/// [`super::SaslFailure::Malformed`]; it never echoes secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<ParseError> for super::SaslFailure {
    fn from(e: ParseError) -> Self {
        super::SaslFailure::Malformed(e.0)
    }
}

/// RFC 7628 key-value separator.
const KVSEP: char = '\x01';

/// A PLAIN message (RFC 4616): `authzid NUL authcid NUL passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainMessage {
    /// Empty when the client did not ask for another identity.
    pub authzid: String,
    pub authcid: String,
    pub password: String,
}

pub fn parse_plain(message: &[u8]) -> Result<PlainMessage, ParseError> {
    let text =
        std::str::from_utf8(message).map_err(|_| ParseError::new("PLAIN message is not UTF-8"))?;
    let mut parts = text.split('\0');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(authzid), Some(authcid), Some(password), None) => Ok(PlainMessage {
            authzid: authzid.to_string(),
            authcid: authcid.to_string(),
            password: password.to_string(),
        }),
        _ => Err(ParseError::new(
            "PLAIN message must contain exactly two NUL separators",
        )),
    }
}

/// A UTF-8 field of a LOGIN exchange (user name or password).
pub fn parse_login_field(message: &[u8], what: &str) -> Result<String, ParseError> {
    std::str::from_utf8(message)
        .map(str::to_string)
        .map_err(|_| ParseError::new(format!("LOGIN {what} is not UTF-8")))
}

/// An OAUTHBEARER initial client response (RFC 7628 section 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthBearerMessage {
    /// Decoded `a=` value; empty for `n,,`.
    pub authzid: String,
    pub host: Option<String>,
    pub port: Option<String>,
    /// The bearer token from `auth=Bearer <token>`.
    pub token: String,
}

pub fn parse_oauthbearer(message: &[u8]) -> Result<OAuthBearerMessage, ParseError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| ParseError::new("OAUTHBEARER message is not UTF-8"))?;
    let (authzid, rest) = parse_gs2_header(text)?;
    let rest = rest
        .strip_prefix(KVSEP)
        .ok_or_else(|| ParseError::new("GS2 header must be followed by 0x01"))?;
    let pairs = parse_kvpairs(rest)?;
    let mut host = None;
    let mut port = None;
    let mut auth = None;
    for (key, value) in pairs {
        let slot = match key {
            "host" => &mut host,
            "port" => &mut port,
            "auth" => &mut auth,
            // RFC 7628 lets clients send extension keys; they carry nothing we use.
            _ => continue,
        };
        if slot.is_some() {
            return Err(ParseError::new(format!("duplicate key {key:?}")));
        }
        *slot = Some(value.to_string());
    }
    let auth = auth.ok_or_else(|| ParseError::new("missing auth key"))?;
    Ok(OAuthBearerMessage {
        authzid,
        host,
        port,
        token: parse_bearer_credentials(&auth)?,
    })
}

/// An XOAUTH2 client response: `user=<user> 0x01 auth=Bearer <token> 0x01 0x01`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XOAuth2Message {
    pub user: String,
    pub token: String,
}

pub fn parse_xoauth2(message: &[u8]) -> Result<XOAuth2Message, ParseError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| ParseError::new("XOAUTH2 message is not UTF-8"))?;
    let mut user = None;
    let mut auth = None;
    for (key, value) in parse_kvpairs(text)? {
        let slot = match key {
            "user" => &mut user,
            "auth" => &mut auth,
            _ => return Err(ParseError::new(format!("unexpected key {key:?}"))),
        };
        if slot.is_some() {
            return Err(ParseError::new(format!("duplicate key {key:?}")));
        }
        *slot = Some(value.to_string());
    }
    let user = user.ok_or_else(|| ParseError::new("missing user key"))?;
    let auth = auth.ok_or_else(|| ParseError::new("missing auth key"))?;
    Ok(XOAuth2Message {
        user,
        token: parse_bearer_credentials(&auth)?,
    })
}

/// The RFC 7628 section 3.2.2 error challenge, keys in the order Dovecot sends them.
pub fn invalid_token_challenge(scope: &str, discovery_url: &str) -> Vec<u8> {
    format!(
        r#"{{"status":"invalid_token","scope":{},"openid-configuration":{}}}"#,
        json_string(scope),
        json_string(discovery_url)
    )
    .into_bytes()
}

fn json_string(value: &str) -> String {
    // Serializing a &str cannot fail; the fallback keeps this path free of panics anyway.
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_string())
}

/// Splits `gs2-cb-flag "," [ "a=" saslname ] ","` off the message; returns the decoded authzid
/// and the rest.
fn parse_gs2_header(text: &str) -> Result<(String, &str), ParseError> {
    let (flag, rest) = text
        .split_once(',')
        .ok_or_else(|| ParseError::new("missing GS2 header"))?;
    match flag {
        // `y`: the client supports channel binding but thinks we do not; that is true.
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(ParseError::new("channel binding is not supported"));
        }
        _ => return Err(ParseError::new("bad GS2 channel-binding flag")),
    }
    let (authzid, rest) = rest
        .split_once(',')
        .ok_or_else(|| ParseError::new("unterminated GS2 header"))?;
    let authzid = if authzid.is_empty() {
        String::new()
    } else {
        let name = authzid
            .strip_prefix("a=")
            .ok_or_else(|| ParseError::new("bad GS2 authzid"))?;
        decode_saslname(name)?
    };
    Ok((authzid, rest))
}

/// RFC 5801 saslname: `,` and `=` travel as `=2C` and `=3D`; any other `=` is an error.
/// Shared with SCRAM (RFC 5802 uses the same escapes for its user names).
pub(super) fn decode_saslname(name: &str) -> Result<String, ParseError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix("2C") {
            out.push(',');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("3D") {
            out.push('=');
            rest = tail;
        } else {
            return Err(ParseError::new("bad escape in GS2 authzid"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `*(key "=" value 0x01) 0x01`, the pairs and the final separator, and nothing after.
fn parse_kvpairs(text: &str) -> Result<Vec<(&str, &str)>, ParseError> {
    let body = text
        .strip_suffix(KVSEP)
        .ok_or_else(|| ParseError::new("message must end with 0x01"))?;
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let body = body
        .strip_suffix(KVSEP)
        .ok_or_else(|| ParseError::new("key-value pair not terminated by 0x01"))?;
    body.split(KVSEP)
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| ParseError::new("key-value pair without '='"))?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ParseError::new("bad key in key-value pair"));
            }
            Ok((key, value))
        })
        .collect()
}

/// `Bearer <token>` (RFC 6750 section 2.1); the scheme is case-insensitive.
fn parse_bearer_credentials(auth: &str) -> Result<String, ParseError> {
    let (scheme, token) = auth
        .split_once(' ')
        .ok_or_else(|| ParseError::new("auth value is not \"Bearer <token>\""))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ParseError::new("auth scheme is not Bearer"));
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err(ParseError::new("empty bearer token"));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_and_without_authzid() {
        assert_eq!(
            parse_plain(b"\0alice\0secret"),
            Ok(PlainMessage {
                authzid: String::new(),
                authcid: "alice".into(),
                password: "secret".into(),
            })
        );
        let m = parse_plain("bob\0alice\0p\u{e4}ss".as_bytes()).unwrap();
        assert_eq!(m.authzid, "bob");
        assert_eq!(m.password, "p\u{e4}ss");
    }

    #[test]
    fn plain_rejects_wrong_nul_count_and_non_utf8() {
        for bad in [
            &b"alice\0secret"[..],
            b"a\0b\0c\0d",
            b"",
            b"\0\0\0",
            b"\0alice\0\xff",
        ] {
            assert!(parse_plain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn oauthbearer_rfc7628_example() {
        let m = parse_oauthbearer(
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01",
        )
        .unwrap();
        assert_eq!(m.authzid, "user@example.com");
        assert_eq!(m.host.as_deref(), Some("server.example.com"));
        assert_eq!(m.port.as_deref(), Some("143"));
        assert_eq!(m.token, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
    }

    #[test]
    fn oauthbearer_empty_authzid_y_flag_escapes_and_scheme_case() {
        let m = parse_oauthbearer(b"n,,\x01auth=Bearer abc\x01\x01").unwrap();
        assert_eq!(m.authzid, "");
        assert_eq!(m.token, "abc");
        let m = parse_oauthbearer(b"y,a=a=2Cb=3Dc,\x01auth=bEaReR tok\x01\x01").unwrap();
        assert_eq!(m.authzid, "a,b=c");
        assert_eq!(m.token, "tok");
    }

    #[test]
    fn oauthbearer_malformed() {
        let cases: &[&[u8]] = &[
            b"\x01",
            b"",
            b"n,,\x01\x01",
            b"p=tls-unique,,\x01auth=Bearer t\x01\x01",
            b"x,,\x01auth=Bearer t\x01\x01",
            b"n,a=bad=escape,\x01auth=Bearer t\x01\x01",
            b"n,b=x,\x01auth=Bearer t\x01\x01",
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01auth=Bearer t",
            b"n,,\x01auth=Basic dXNlcjpwYXNz\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
            b"n,,\x01host=x\x01\x01",
            b"n,,\x01=x\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01\x01\x01",
            b"n,,\x01auth=Bearer \xff\x01\x01",
        ];
        for bad in cases {
            assert!(parse_oauthbearer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xoauth2_valid_and_malformed() {
        let m = parse_xoauth2(b"user=alice@example.com\x01auth=Bearer ya29.x\x01\x01").unwrap();
        assert_eq!(m.user, "alice@example.com");
        assert_eq!(m.token, "ya29.x");
        let cases: &[&[u8]] = &[
            b"",
            b"\x01",
            b"user=a\x01\x01",
            b"auth=Bearer t\x01\x01",
            b"user=a\x01auth=Bearer t",
            b"user=a\x01auth=Bearer t\x01",
            b"user=a\x01auth=Token t\x01\x01",
            b"user=a\x01auth=Bearer t\x01x=y\x01\x01",
        ];
        for bad in cases {
            assert!(parse_xoauth2(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn challenge_json_has_dovecot_key_order_and_escapes() {
        assert_eq!(
            invalid_token_challenge("openid email", "https://idp/.well-known/openid-configuration"),
            br#"{"status":"invalid_token","scope":"openid email","openid-configuration":"https://idp/.well-known/openid-configuration"}"#
        );
        let json = invalid_token_challenge("a\"b", "u");
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["scope"], "a\"b");
    }
}
