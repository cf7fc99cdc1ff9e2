//! What a request presents, read from its headers without any I/O.

use base64::Engine;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

use super::AuthRejection;

/// The `Authorization` header, split by scheme (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// The base64 payload, not decoded yet.
    Basic(String),
    /// The token, possibly empty.
    Bearer(String),
    /// Any other scheme, by name.
    Other(String),
}

/// The credentials a request carries, before any strategy looks at them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presented {
    pub authorization: Option<Authorization>,
    /// The gateway-asserted user header, trimmed (trust is checked separately).
    pub x_user: Option<String>,
}

/// Reads the credentials. Two `Authorization` or two x-user headers make the identity
/// ambiguous: 400, whatever strategies are enabled.
pub fn presented(
    headers: &HeaderMap,
    x_user_header: &HeaderName,
) -> Result<Presented, AuthRejection> {
    let authorization = single(headers, &AUTHORIZATION)?
        .map(|raw| {
            let text = std::str::from_utf8(raw).map_err(|_| {
                AuthRejection::BadRequest("the Authorization header is not valid UTF-8".into())
            })?;
            Ok::<_, AuthRejection>(parse_authorization(text))
        })
        .transpose()?;
    let x_user = single(headers, x_user_header)?
        .map(|raw| {
            std::str::from_utf8(raw)
                .map(|s| s.trim().to_string())
                .map_err(|_| {
                    AuthRejection::BadRequest(format!(
                        "the {x_user_header} header is not valid UTF-8"
                    ))
                })
        })
        .transpose()?;
    Ok(Presented {
        authorization,
        x_user,
    })
}

/// The value of a header that may appear at most once.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a [u8]>, AuthRejection> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthRejection::BadRequest(format!(
            "more than one {} header",
            display_name(name)
        )));
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// `authorization` prints as `Authorization` in messages, others as configured (lower case).
fn display_name(name: &HeaderName) -> &str {
    if name == AUTHORIZATION {
        "Authorization"
    } else {
        name.as_str()
    }
}

fn parse_authorization(value: &str) -> Authorization {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim().to_string();
    if scheme.eq_ignore_ascii_case("basic") {
        Authorization::Basic(rest)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Authorization::Bearer(rest)
    } else {
        Authorization::Other(scheme.to_string())
    }
}

/// Decodes a Basic payload (RFC 7617, UTF-8) into user and password.
pub fn decode_basic(payload: &str) -> Result<(String, String), &'static str> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .map_err(|_| "credentials are not valid base64")?;
    let text = String::from_utf8(bytes).map_err(|_| "credentials are not UTF-8")?;
    let (user, password) = text
        .split_once(':')
        .ok_or("credentials have no ':' separator")?;
    if user.is_empty() {
        return Err("empty user name");
    }
    Ok((user.to_string(), password.to_string()))
}
