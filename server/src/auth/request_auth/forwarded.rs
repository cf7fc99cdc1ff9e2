//! The token session a trusted gateway forwards beside `X-User`: `<X-User>-Iss`, `-Sub`, `-Sid`,
//! `-Iat` and `-Exp` (header names follow `http.auth.x_user_header`). Read only after the
//! gateway is trusted, exactly like `X-User` itself; they let the server check the deny-list and
//! end WebSocket sessions opened through the gateway.

use http::{HeaderMap, HeaderName};

use crate::auth::sasl::TokenSession;

/// The five header names.
#[derive(Debug, Clone)]
pub struct TokenHeaders {
    pub issuer: HeaderName,
    pub subject: HeaderName,
    pub sid: HeaderName,
    pub issued_at: HeaderName,
    pub expires_at: HeaderName,
}

impl TokenHeaders {
    /// `<base>-Iss`, `<base>-Sub`, `<base>-Sid`, `<base>-Iat`, `<base>-Exp`.
    pub fn for_base(base: &HeaderName) -> Result<Self, http::header::InvalidHeaderName> {
        let name = |suffix: &str| HeaderName::from_bytes(format!("{base}-{suffix}").as_bytes());
        Ok(Self {
            issuer: name("iss")?,
            subject: name("sub")?,
            sid: name("sid")?,
            issued_at: name("iat")?,
            expires_at: name("exp")?,
        })
    }

    pub fn all(&self) -> [&HeaderName; 5] {
        [
            &self.issuer,
            &self.subject,
            &self.sid,
            &self.issued_at,
            &self.expires_at,
        ]
    }
}

fn one(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, String> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(format!("more than one {name} header")),
        (Some(v), None) => {
            let text = v
                .to_str()
                .map_err(|_| format!("{name} is not visible ASCII"))?
                .trim();
            Ok((!text.is_empty()).then(|| text.to_string()))
        }
    }
}

fn seconds(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, String> {
    one(headers, name)?
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| format!("{name} is not a number of seconds"))
        })
        .transpose()
}

/// The forwarded session; `None` when the gateway sent no session headers at all and
/// `required` is off (a gateway that authenticates without OIDC tokens).
/// `default_issuer` stands in for a missing `-Iss` (the gateway accepts one issuer only).
///
/// With `required`, `-Sub` (non-empty), `-Sid`, `-Iat` and `-Exp` must all be present; the
/// gateway sends `-Sid` and `-Iat` empty when the token has no such claim. A missing one means
/// something between the gateway and us dropped it (a client that names it in its own
/// `Connection` header makes a proxy do exactly that), and a session registered without its
/// `sid` or `sub` would outlive a logout of that `sid` or `sub`: refused, never degraded.
pub fn forwarded_session(
    headers: &HeaderMap,
    names: &TokenHeaders,
    default_issuer: Option<String>,
    required: bool,
) -> Result<Option<TokenSession>, String> {
    if required {
        for name in [
            &names.subject,
            &names.sid,
            &names.issued_at,
            &names.expires_at,
        ] {
            if !headers.contains_key(name) {
                return Err(format!(
                    "no {name} header (the gateway always sends it; was it named in a Connection header?)"
                ));
            }
        }
    }
    let Some(subject) = one(headers, &names.subject)? else {
        if required {
            return Err(format!("{} is empty", names.subject));
        }
        return Ok(None);
    };
    let issuer = match one(headers, &names.issuer)? {
        Some(iss) => iss,
        None => default_issuer
            .ok_or_else(|| format!("{} missing and no issuer is known", names.issuer))?,
    };
    let expires_at = match seconds(headers, &names.expires_at)? {
        Some(exp) => exp,
        None if required => return Err(format!("{} is empty", names.expires_at)),
        None => u64::MAX,
    };
    Ok(Some(TokenSession {
        issuer,
        subject,
        sid: one(headers, &names.sid)?,
        expires_at,
        issued_at: seconds(headers, &names.issued_at)?,
        bearer: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::headers;

    fn names() -> TokenHeaders {
        TokenHeaders::for_base(&HeaderName::from_static("x-user")).expect("names")
    }

    #[test]
    fn names_follow_the_user_header() {
        let n = names();
        assert_eq!(n.issuer.as_str(), "x-user-iss");
        assert_eq!(n.expires_at.as_str(), "x-user-exp");
    }

    #[test]
    fn full_and_partial_sessions() {
        let h = headers(&[
            ("X-User-Iss", "https://idp"),
            ("X-User-Sub", "alice"),
            ("X-User-Sid", "s1"),
            ("X-User-Iat", "100"),
            ("X-User-Exp", "200"),
        ]);
        assert_eq!(
            forwarded_session(&h, &names(), None, true),
            Ok(Some(TokenSession {
                issuer: "https://idp".into(),
                subject: "alice".into(),
                sid: Some("s1".into()),
                expires_at: 200,
                issued_at: Some(100),
                bearer: None,
            }))
        );
        let h = headers(&[("X-User-Sub", "alice"), ("X-User-Sid", "")]);
        let s = forwarded_session(&h, &names(), Some("https://cfg".into()), false)
            .expect("ok")
            .expect("session");
        assert_eq!(
            (s.issuer.as_str(), s.sid, s.issued_at),
            ("https://cfg", None, None)
        );
        assert_eq!(
            forwarded_session(&headers(&[]), &names(), None, false),
            Ok(None)
        );
    }

    #[test]
    fn ambiguous_or_garbled_headers_are_refused() {
        let two = headers(&[("X-User-Sub", "a"), ("X-User-Sub", "b")]);
        assert!(forwarded_session(&two, &names(), Some("i".into()), false).is_err());
        let nan = headers(&[("X-User-Sub", "a"), ("X-User-Iat", "soon")]);
        assert!(forwarded_session(&nan, &names(), Some("i".into()), false).is_err());
        let no_iss = headers(&[("X-User-Sub", "a")]);
        assert!(forwarded_session(&no_iss, &names(), None, false).is_err());
    }

    fn complete() -> Vec<(&'static str, &'static str)> {
        vec![
            ("X-User-Iss", "https://idp"),
            ("X-User-Sub", "alice"),
            ("X-User-Sid", "s1"),
            ("X-User-Iat", "100"),
            ("X-User-Exp", "200"),
        ]
    }

    /// A client that lists `X-User-Sid` in its `Connection` header makes the proxy drop it: the
    /// session must be refused, not registered under the user alone (issue 13's SLO bypass).
    #[test]
    fn a_required_session_missing_any_header_is_refused() {
        for dropped in ["X-User-Sub", "X-User-Sid", "X-User-Iat", "X-User-Exp"] {
            let h = headers(
                &complete()
                    .into_iter()
                    .filter(|(n, _)| *n != dropped)
                    .collect::<Vec<_>>(),
            );
            let err = forwarded_session(&h, &names(), Some("https://idp".into()), true)
                .expect_err(dropped);
            assert!(
                err.contains(&dropped.to_ascii_lowercase()),
                "{dropped}: {err}"
            );
        }
        assert!(forwarded_session(&headers(&[]), &names(), None, true).is_err());
        let no_exp = headers(&[
            ("X-User-Sub", "alice"),
            ("X-User-Sid", ""),
            ("X-User-Iat", ""),
            ("X-User-Exp", ""),
        ]);
        assert!(forwarded_session(&no_exp, &names(), Some("i".into()), true).is_err());
    }

    /// Empty `-Sid` and `-Iat` stand for a token without those claims.
    #[test]
    fn a_required_session_may_have_no_sid_or_iat() {
        let h = headers(&[
            ("X-User-Sub", "alice"),
            ("X-User-Sid", ""),
            ("X-User-Iat", ""),
            ("X-User-Exp", "200"),
        ]);
        let s = forwarded_session(&h, &names(), Some("https://idp".into()), true)
            .expect("ok")
            .expect("session");
        assert_eq!((s.sid, s.issued_at, s.expires_at), (None, None, 200));
        assert!(
            forwarded_session(&headers(&complete()), &names(), None, true)
                .expect("ok")
                .is_some()
        );
    }
}
