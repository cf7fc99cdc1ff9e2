//! `[http.auth]` checked once at start-up, so a request never meets a bad setting.

use http::HeaderName;
use ipnet::IpNet;

use super::forwarded::TokenHeaders;
use crate::config::{ConfigError, HttpAuthSection, HttpStrategy};

/// The HTTP auth settings in the form the strategies use.
#[derive(Clone)]
pub struct HttpAuthSettings {
    /// Tried in this order; their challenges appear in this order.
    pub strategies: Vec<HttpStrategy>,
    /// Printable ASCII (checked), so it fits a quoted-string once escaped.
    pub realm: String,
    pub x_user_header: HeaderName,
    pub x_user_secret_header: HeaderName,
    pub x_user_secret: Option<String>,
    pub x_user_trusted_sources: Vec<IpNet>,
    /// The token-session headers the gateway sends beside `x_user_header`.
    pub x_user_token_headers: TokenHeaders,
    /// Whether a gateway-asserted user without those headers is refused.
    pub x_user_requires_session: bool,
}

// The shared secret must never reach a log line through `{:?}`.
impl std::fmt::Debug for HttpAuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuthSettings")
            .field("strategies", &self.strategies)
            .field("realm", &self.realm)
            .field("x_user_header", &self.x_user_header)
            .field("x_user_secret_header", &self.x_user_secret_header)
            .field(
                "x_user_secret",
                &self.x_user_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("x_user_trusted_sources", &self.x_user_trusted_sources)
            .field("x_user_requires_session", &self.x_user_requires_session)
            .finish()
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn header_name(key: &str, value: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| invalid(key, format!("{value:?} is not a valid header name")))
}

/// An address or a CIDR network (a bare address is a /32 or /128).
fn network(value: &str) -> Result<IpNet, ConfigError> {
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            invalid(
                "http.auth.x_user_trusted_sources",
                format!("{value:?} is not an address or CIDR network"),
            )
        })
}

impl HttpAuthSettings {
    /// Repeats the cross-key checks of `Config::validate`, because a hand-built `Config` may
    /// never have been validated.
    pub fn from_section(section: &HttpAuthSection) -> Result<Self, ConfigError> {
        if section.strategies.is_empty() {
            return Err(invalid(
                "http.auth.strategies",
                "empty list: leave the key out for the defaults",
            ));
        }
        if section.strategies.contains(&HttpStrategy::XUser)
            && section.x_user_secret.is_none()
            && section.x_user_trusted_sources.is_empty()
        {
            return Err(invalid(
                "http.auth.strategies",
                "`x-user` needs http.auth.x_user_secret and/or http.auth.x_user_trusted_sources",
            ));
        }
        if section.x_user_secret.as_deref() == Some("") {
            // An empty secret would be matched by an empty header: no protection at all.
            return Err(invalid("http.auth.x_user_secret", "must not be empty"));
        }
        if section.realm.is_empty() || !section.realm.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(invalid(
                "http.auth.realm",
                "must be non-empty printable ASCII",
            ));
        }
        let x_user_header = header_name("http.auth.x_user_header", &section.x_user_header)?;
        let x_user_secret_header = header_name(
            "http.auth.x_user_secret_header",
            &section.x_user_secret_header,
        )?;
        if x_user_header == x_user_secret_header {
            return Err(invalid(
                "http.auth.x_user_secret_header",
                "must differ from http.auth.x_user_header",
            ));
        }
        let x_user_token_headers = TokenHeaders::for_base(&x_user_header).map_err(|_| {
            invalid(
                "http.auth.x_user_header",
                "too long for the derived -Iss/-Sub/-Sid/-Iat/-Exp names",
            )
        })?;
        let mut strategies = Vec::with_capacity(section.strategies.len());
        for s in &section.strategies {
            // A repeated strategy would only repeat its challenge.
            if !strategies.contains(s) {
                strategies.push(*s);
            }
        }
        Ok(Self {
            strategies,
            realm: section.realm.clone(),
            x_user_header,
            x_user_secret_header,
            x_user_secret: section.x_user_secret.clone(),
            x_user_token_headers,
            x_user_requires_session: section.x_user_requires_session,
            x_user_trusted_sources: section
                .x_user_trusted_sources
                .iter()
                .map(|s| network(s))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The name used in logs, problem details and [`super::HttpIdentity::strategy`].
pub fn strategy_name(strategy: HttpStrategy) -> &'static str {
    match strategy {
        HttpStrategy::Basic => "basic",
        HttpStrategy::Bearer => "bearer",
        HttpStrategy::XUser => "x-user",
    }
}
