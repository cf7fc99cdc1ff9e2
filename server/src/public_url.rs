//! The public base URL absolute URLs are built from, and the gateway's `X-Forwarded-*` rules.

use std::fmt;
use std::net::SocketAddr;

use http::HeaderMap;

/// `scheme://authority[/path]`, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    scheme: String,
    authority: String,
    path: String,
}

impl BaseUrl {
    /// `http.public_url`: http(s), a host, no user info, query or fragment.
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = url::Url::parse(value).map_err(|e| format!("{value:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{value:?}: scheme is not http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{value:?}: must not contain user info"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{value:?}: must not contain a query or fragment"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("{value:?}: no host"))?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Ok(Self {
            scheme: url.scheme().to_string(),
            authority,
            path: url.path().trim_end_matches('/').to_string(),
        })
    }

    /// `http://<bound addr>`, the last resort.
    pub fn from_bound(addr: SocketAddr) -> Self {
        Self {
            scheme: "http".into(),
            authority: addr.to_string(),
            path: String::new(),
        }
    }

    /// This base with each part the gateway sent (and that is well-formed) replacing ours:
    /// `X-Forwarded-Proto` (http/https), `X-Forwarded-Host`, `X-Forwarded-Prefix`. Only for
    /// requests that came through the trusted gateway.
    pub fn forwarded(&self, headers: &HeaderMap) -> BaseUrl {
        let mut base = self.clone();
        if let Some(proto) = first_value(headers, "x-forwarded-proto") {
            let proto = proto.to_ascii_lowercase();
            if proto == "http" || proto == "https" {
                base.scheme = proto;
            } else {
                tracing::debug!(%proto, "X-Forwarded-Proto ignored");
            }
        }
        if let Some(host) = first_value(headers, "x-forwarded-host") {
            if valid_host(&host) {
                base.authority = host;
            } else {
                tracing::debug!(%host, "X-Forwarded-Host ignored");
            }
        }
        if let Some(prefix) = first_value(headers, "x-forwarded-prefix") {
            if valid_prefix(&prefix) {
                base.path = prefix.trim_end_matches('/').to_string();
            } else {
                tracing::debug!(%prefix, "X-Forwarded-Prefix ignored");
            }
        }
        base
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// The first element of the first field: the one the client-facing proxy wrote.
fn first_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let raw = headers.get(name)?.to_str().ok()?;
    let first = raw.split(',').next()?.trim();
    (!first.is_empty()).then(|| first.to_string())
}

/// A host name or `[v6]`, with an optional port: nothing that could change the URL's shape.
fn valid_host(host: &str) -> bool {
    host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
        })
}

/// An absolute path of URL path characters; `//` would make URLs protocol-relative.
fn valid_prefix(prefix: &str) -> bool {
    prefix.starts_with('/')
        && !prefix.starts_with("//")
        && prefix.len() <= 1024
        && prefix.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'%'
                        | b'/'
                        | b':'
                        | b'@'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                )
        })
}

/// The base URL for absolute URLs in a response (JMAP session `apiUrl`, ...), as a request
/// extension. From the gateway's `X-Forwarded-*` only when the request was authenticated by
/// `x-user` (so it provably came through the gateway), else `http.public_url`, else
/// `http://<bound addr>`. No trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase(pub String);

impl PublicBase {
    /// `via_gateway`: the request was authenticated by the trusted gateway (`x-user`).
    pub fn for_request(default: &BaseUrl, headers: &HeaderMap, via_gateway: bool) -> Self {
        if via_gateway {
            PublicBase(default.forwarded(headers).to_string())
        } else {
            PublicBase(default.to_string())
        }
    }
}
