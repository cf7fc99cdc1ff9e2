//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 7617, RFC 6750, RFC 9728), built
//! without I/O. One header field per challenge, in the configured strategy order (JAMES-3522):
//! parameters contain commas, so separate fields are easier for clients than one joined field.

use crate::auth::oidc::TokenError;
use crate::config::HttpStrategy;

/// Where the RFC 9728 protected-resource metadata is served, relative to the public base.
pub const RESOURCE_METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// Longest `error_description` sent; the reason may quote token contents.
const MAX_DESCRIPTION: usize = 200;

/// One challenge per configured strategy, in order.
///
/// - basic: `Basic realm="<realm>", charset="UTF-8"`
/// - bearer: `Bearer realm="<realm>", resource_metadata="<base>/.well-known/oauth-protected-resource"`,
///   followed by `, error="invalid_token", error_description="<code>: <reason>"` when a bearer
///   token was sent and refused.
/// - x-user: none. There is no standard scheme for a gateway-asserted identity and a client
///   cannot use it anyway, so advertising one would only mislead.
pub fn challenges(
    strategies: &[HttpStrategy],
    realm: &str,
    base: &str,
    bearer_error: Option<&TokenError>,
) -> Vec<String> {
    strategies
        .iter()
        .filter_map(|s| match s {
            HttpStrategy::Basic => Some(format!("Basic realm={}, charset=\"UTF-8\"", quote(realm))),
            HttpStrategy::Bearer => {
                let mut c = format!(
                    "Bearer realm={}, resource_metadata={}",
                    quote(realm),
                    quote(&format!("{base}{RESOURCE_METADATA_PATH}"))
                );
                if let Some(e) = bearer_error {
                    c.push_str(", error=\"invalid_token\", error_description=");
                    c.push_str(&quote(&error_description(e)));
                }
                Some(c)
            }
            HttpStrategy::XUser => None,
        })
        .collect()
}

/// `<code>: <Display text>`, e.g. `expired: token has expired`: the stable code for programs,
/// the text for people. Restricted to RFC 6750's error_description characters (printable ASCII
/// without `"` and `\`) and shortened, since parts of it come from the token.
pub fn error_description(e: &TokenError) -> String {
    let raw = format!("{}: {}", e.code(), e);
    let mut out: String = raw
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .take(MAX_DESCRIPTION)
        .collect();
    if raw.chars().count() > MAX_DESCRIPTION {
        out.push_str("...");
    }
    out
}

/// An RFC 9110 quoted-string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
