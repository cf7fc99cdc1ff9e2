//! JWS compact serialization: splitting, header checks and signature verification (no I/O).

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::{Map, Value};

use super::TokenError;
use super::public_key::PublicKey;

/// Larger tokens are refused before decoding (SASL lines are capped at 16 KiB anyway).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// `typ` values of an access token (RFC 9068 `at+jwt`, or the generic `JWT`).
const ACCEPTED_TYPES: [&str; 3] = ["JWT", "at+jwt", "application/at+jwt"];

/// The protected header members we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwsHeader {
    /// `alg` exactly as sent.
    pub alg: String,
    pub typ: Option<String>,
    pub kid: Option<String>,
}

/// A token split and decoded; nothing in it is trusted until [`Jws::verify`] succeeds.
#[derive(Debug)]
pub struct Jws<'a> {
    pub header: JwsHeader,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    signing_input: &'a str,
    signature: Vec<u8>,
    payload: Vec<u8>,
}

fn malformed(message: &str) -> TokenError {
    TokenError::Malformed(message.into())
}

fn b64(part: &str, text: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| TokenError::Malformed(format!("{part} is not base64url")))
}

fn optional_string(header: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::Malformed(format!(
            "header member {name} is not a string"
        ))),
    }
}

fn parse_header(bytes: &[u8]) -> Result<JwsHeader, TokenError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|_| malformed("header is not JSON"))?;
    let Value::Object(header) = value else {
        return Err(malformed("header is not a JSON object"));
    };
    // RFC 7515 4.1.11: extensions we do not implement must make the token invalid.
    if header.contains_key("crit") {
        return Err(malformed("header has critical extensions"));
    }
    let alg = optional_string(&header, "alg")?.ok_or_else(|| malformed("header has no alg"))?;
    Ok(JwsHeader {
        alg,
        typ: optional_string(&header, "typ")?,
        kid: optional_string(&header, "kid")?,
    })
}

/// Splits and decodes a compact JWS. Only the structure is checked here.
pub fn parse(token: &str) -> Result<Jws<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!(
            "token longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three dot-separated parts"));
    };
    let header_bytes = b64("header", header)?;
    let payload_bytes = b64("payload", payload)?;
    let signature = b64("signature", signature)?;
    Ok(Jws {
        header: parse_header(&header_bytes)?,
        signing_input: &token[..header.len() + 1 + payload.len()],
        signature,
        payload: payload_bytes,
    })
}

/// `alg` must be a public-key algorithm in `allowed`; `none` and HMAC never pass.
pub fn check_algorithm(alg: &str, allowed: &[Algorithm]) -> Result<Algorithm, TokenError> {
    let refused = || TokenError::AlgorithmNotAllowed(alg.to_string());
    let parsed = Algorithm::from_str(alg).map_err(|_| refused())?;
    // HMAC with a public key as the secret is the classic key-confusion forgery.
    if parsed.family() == AlgorithmFamily::Hmac || !allowed.contains(&parsed) {
        return Err(refused());
    }
    Ok(parsed)
}

/// `typ` absent, `JWT` or `at+jwt` (any case, with or without `application/`).
pub fn check_type(typ: Option<&str>) -> Result<(), TokenError> {
    match typ {
        None => Ok(()),
        Some(t) if ACCEPTED_TYPES.iter().any(|a| a.eq_ignore_ascii_case(t)) => Ok(()),
        Some(t) => Err(TokenError::WrongType(t.to_string())),
    }
}

impl Jws<'_> {
    pub fn verify(&self, key: &PublicKey, alg: Algorithm) -> Result<(), TokenError> {
        if key.verify(alg, self.signing_input.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }

    /// The claims object. Call only after [`Jws::verify`].
    pub fn claims(&self) -> Result<Map<String, Value>, TokenError> {
        match serde_json::from_slice(&self.payload) {
            Ok(Value::Object(claims)) => Ok(claims),
            Ok(_) => Err(malformed("payload is not a JSON object")),
            Err(_) => Err(malformed("payload is not JSON")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let ok_header = enc(r#"{"alg":"RS256"}"#);
        let inputs = [
            String::new(),
            ".".into(),
            "..".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            "!!!.e30.".into(),
            format!("{ok_header}.!!!."),
            format!("{ok_header}.e30.!!!"),
            format!("{}.e30.", enc("not json")),
            format!("{}.e30.", enc("[1,2]")),
            format!("{}.e30.", enc(r#"{"typ":"JWT"}"#)),
            format!("{}.e30.", enc(r#"{"alg":7}"#)),
            format!("{}.e30.", enc(r#"{"alg":"RS256","kid":[1]}"#)),
            format!("{}.e30.", enc(r#"{"alg":"RS256","crit":["b64"]}"#)),
            format!("{ok_header}=.e30."),
            "\u{e9}\u{e9}.\u{e9}.\u{e9}".into(),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for input in inputs {
            match parse(&input) {
                Err(TokenError::Malformed(_)) => {}
                other => panic!("{input:?}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn payload_must_be_an_object() {
        let token = format!("{}.{}.", enc(r#"{"alg":"RS256"}"#), enc("[]"));
        let jws = parse(&token).expect("structure is fine");
        assert!(matches!(jws.claims(), Err(TokenError::Malformed(_))));
        let token = format!("{}.{}.", enc(r#"{"alg":"RS256"}"#), enc("{"));
        let jws = parse(&token).expect("structure is fine");
        assert!(matches!(jws.claims(), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn header_members_are_read() {
        let token = format!(
            "{}.e30.c2ln",
            enc(r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#)
        );
        let jws = parse(&token).expect("parses");
        assert_eq!(
            jws.header,
            JwsHeader {
                alg: "ES256".into(),
                typ: Some("at+jwt".into()),
                kid: Some("k1".into())
            }
        );
        assert_eq!(jws.signing_input, &token[..token.len() - 5]);
    }

    #[test]
    fn algorithms_none_and_hmac_are_refused() {
        let all = [
            Algorithm::RS256,
            Algorithm::HS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ];
        for alg in ["none", "None", "HS256", "HS512", "rs256", "", "RS384"] {
            assert_eq!(
                check_algorithm(alg, &all),
                Err(TokenError::AlgorithmNotAllowed(alg.into())),
                "{alg}"
            );
        }
        assert_eq!(check_algorithm("RS256", &all), Ok(Algorithm::RS256));
        assert_eq!(check_algorithm("EdDSA", &all), Ok(Algorithm::EdDSA));
    }

    #[test]
    fn access_token_types() {
        for typ in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("at+JWT"),
            Some("Application/AT+JWT"),
        ] {
            assert_eq!(check_type(typ), Ok(()), "{typ:?}");
        }
        for typ in ["logout+jwt", "JOSE", "id_token", ""] {
            assert_eq!(
                check_type(Some(typ)),
                Err(TokenError::WrongType(typ.into()))
            );
        }
    }
}
