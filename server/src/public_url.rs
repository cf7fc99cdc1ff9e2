//! The public base URLs absolute URLs are built from: the server's own and the gateway's, both
//! from configuration.

use std::fmt;
use std::net::SocketAddr;

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
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// The base URL for absolute URLs in a response (JMAP session `apiUrl`, ...), as a request
/// extension: `http.gateway_public_url` for a request authenticated by `x-user` (it came
/// through the gateway), else `http.public_url`, else `http://<bound addr>`. Never from a
/// request header: behind a proxy that preserves `Host` (or adds `X-Forwarded-Host`), that is
/// the client's choice, and a client must not choose where the session sends others' requests.
/// No trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase(pub String);

impl PublicBase {
    /// `via_gateway`: the request was authenticated by the trusted gateway (`x-user`).
    pub fn for_request(default: &BaseUrl, gateway: Option<&BaseUrl>, via_gateway: bool) -> Self {
        match (via_gateway, gateway) {
            (true, Some(gateway)) => PublicBase(gateway.to_string()),
            _ => PublicBase(default.to_string()),
        }
    }
}
