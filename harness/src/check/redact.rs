//! Evidence without secrets: tokens, SASL credentials and passwords are replaced before a wire
//! exchange or an error goes into a report, and the text is cut short.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use regex::Regex;

/// Longest evidence kept, in bytes (a failure needs the reply, not a whole mailbox).
pub const MAX_EVIDENCE: usize = 600;

/// Secrets shorter than this are not replaced literally: "a" would mangle every word.
const MIN_SECRET_LEN: usize = 4;

fn regexes() -> &'static [(Regex, &'static str)] {
    static RE: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RE.get_or_init(|| {
        [
            // Compact JWS/JWT (alg none ends with an empty signature).
            (
                r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*",
                "<jwt redacted>",
            ),
            // `Authorization: Bearer x`, OAUTHBEARER's `auth=Bearer x`, XOAUTH2's too.
            (r#"(?i)\b(bearer[ \t]+)[^\s\x01",;]+"#, "${1}<redacted>"),
            (r#"(?i)\b(basic[ \t]+)[A-Za-z0-9+/=]+"#, "${1}<redacted>"),
            // Form and JSON members that hold secrets.
            (
                r#"(?i)((?:password|client_secret|access_token|refresh_token|id_token|logout_token|token)"?\s*[=:]\s*"?)[^&\s"',}]+"#,
                "${1}<redacted>",
            ),
        ]
        .into_iter()
        .filter_map(|(re, with)| Regex::new(re).ok().map(|re| (re, with)))
        .collect()
    })
}

fn base64_blob() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"[A-Za-z0-9+/]{12,}={0,2}").ok())
        .as_ref()
}

/// Whether decoded SASL data carries credentials: a bearer (`auth=`), XOAUTH2's `user=`, or
/// PLAIN's NUL-separated password.
fn is_credential(decoded: &[u8]) -> bool {
    decoded.contains(&0)
        || decoded.windows(5).any(|w| w.eq_ignore_ascii_case(b"auth="))
        || decoded.windows(5).any(|w| w.eq_ignore_ascii_case(b"user="))
}

/// `text` with every token, SASL credential and given secret replaced.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    // Literal secrets first, longest first, so a password inside a longer secret goes too.
    let mut secrets: Vec<&str> = secrets
        .iter()
        .copied()
        .filter(|s| s.len() >= MIN_SECRET_LEN)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        out = out.replace(s, "<redacted>");
    }
    if let Some(re) = base64_blob() {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let blob = &c[0];
                match STANDARD.decode(blob) {
                    Ok(decoded) if is_credential(&decoded) => {
                        "<base64 credentials redacted>".to_string()
                    }
                    _ => blob.to_string(),
                }
            })
            .into_owned();
    }
    for (re, with) in regexes() {
        out = re.replace_all(&out, *with).into_owned();
    }
    out
}

/// Cut to at most [`MAX_EVIDENCE`] bytes on a character boundary, saying how much was left out.
pub fn cut(text: &str) -> String {
    if text.len() <= MAX_EVIDENCE {
        return text.to_string();
    }
    let mut end = MAX_EVIDENCE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

/// Redacted, then cut short: what a report shows.
pub fn evidence(text: &str, secrets: &[&str]) -> String {
    cut(&redact(text, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJlLWJ5dGVz";

    #[test]
    fn jwts_and_bearer_tokens_go() {
        let text = format!("sent {JWT} then Authorization: Bearer opaque-token-123");
        let out = redact(&text, &[]);
        assert!(!out.contains("eyJ"), "{out}");
        assert!(!out.contains("opaque-token-123"), "{out}");
        assert!(out.contains("<jwt redacted>"), "{out}");
        assert!(out.contains("Bearer <redacted>"), "{out}");
        // alg none: empty signature.
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJkZW1vIn0.";
        assert_eq!(redact(none, &[]), "<jwt redacted>");
    }

    #[test]
    fn sasl_payloads_with_credentials_go_and_challenges_stay() {
        let oauthbearer = STANDARD.encode(format!(
            "n,a=demo@example.com,\x01host=h\x01port=993\x01auth=Bearer {JWT}\x01\x01"
        ));
        let plain = STANDARD.encode("\0demo@example.com\0hunter2-password");
        let challenge = STANDARD.encode(r#"{"status":"invalid_token","scope":"openid"}"#);
        let text = format!(
            "C: a AUTHENTICATE OAUTHBEARER {oauthbearer}\r\nC: {plain}\r\nS: + {challenge}"
        );
        let out = redact(&text, &[]);
        assert!(!out.contains(&oauthbearer), "{out}");
        assert!(!out.contains(&plain), "{out}");
        assert_eq!(
            out.matches("<base64 credentials redacted>").count(),
            2,
            "{out}"
        );
        // The server's error challenge is evidence, not a secret.
        assert!(out.contains(&challenge), "{out}");
    }

    #[test]
    fn given_secrets_and_secret_members_go() {
        let text = "LOGIN demo s3cret-pass; password=another&client_secret=xyz123 {\"access_token\":\"abc\"}";
        let out = redact(text, &["s3cret-pass", "ab"]);
        assert!(!out.contains("s3cret-pass"), "{out}");
        assert!(!out.contains("another"), "{out}");
        assert!(!out.contains("xyz123"), "{out}");
        assert!(!out.contains("\"abc\""), "{out}");
        // Too short to replace literally: ordinary words survive.
        assert!(out.contains("LOGIN demo"), "{out}");
    }

    #[test]
    fn evidence_is_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_EVIDENCE);
        let out = evidence(&long, &[]);
        assert!(out.len() < long.len(), "not cut");
        assert!(out.contains("more bytes)"), "{out}");
        assert_eq!(evidence("short", &[]), "short");
    }
}
