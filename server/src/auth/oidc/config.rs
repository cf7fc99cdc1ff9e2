//! Validator settings, checked once at start-up so validation never meets a bad setting.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use crate::config::{ConfigError, IntrospectionSection, OidcSection};

/// How old a JWKS may get before it is refetched (kept if the IdP is unreachable).
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Longest time an introspection answer is reused (never past the token's `exp`).
pub const DEFAULT_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most introspection answers kept at once.
pub const DEFAULT_INTROSPECTION_CACHE_CAPACITY: usize = 10_000;

/// Everything [`super::OidcValidator`] needs, parsed from `[oidc]`.
#[derive(Debug, Clone)]
pub struct OidcValidatorConfig {
    pub discovery_url: Option<String>,
    pub issuer: Option<String>,
    pub jwks_url: Option<String>,
    /// Accepted `aud` values; empty = not checked.
    pub audience: Vec<String>,
    pub username_claim: String,
    pub leeway: Duration,
    /// Allowed JWS algorithms (never HMAC: those are refused even if listed here).
    pub algorithms: Vec<Algorithm>,
    pub scope: String,
    pub jwks_refetch_interval: Duration,
    pub jwks_max_age: Duration,
    pub http_timeout: Duration,
    /// Extra PEM root certificate(s) for the IdP's HTTPS.
    pub ca_cert_pem: Option<Vec<u8>>,
    pub introspection: Option<IntrospectionConfig>,
    /// How long a token whose signature and claims verified is remembered (never past its
    /// `exp`); zero = off.
    pub token_cache_ttl: Duration,
    pub token_cache_capacity: usize,
}

/// RFC 7662 introspection with `client_secret_basic`.
#[derive(Clone)]
pub struct IntrospectionConfig {
    /// Absent = discovery's `introspection_endpoint`.
    pub endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    pub cache_ttl: Duration,
    pub cache_capacity: usize,
}

// The secret must never reach a log line through `{:?}`.
impl fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_capacity", &self.cache_capacity)
            .finish()
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn check_url(key: &str, value: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(value).map_err(|e| invalid(key, format!("{value:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(invalid(
            key,
            format!("{value:?}: scheme {other:?} is not http or https"),
        )),
    }
}

fn parse_algorithm(name: &str) -> Result<Algorithm, ConfigError> {
    let alg = Algorithm::from_str(name)
        .map_err(|_| invalid("oidc.algorithms", format!("unknown algorithm {name:?}")))?;
    if alg.family() == AlgorithmFamily::Hmac {
        // A shared secret cannot come from a public JWKS; HS* only enables key-confusion forgeries.
        return Err(invalid(
            "oidc.algorithms",
            format!("{name} is an HMAC algorithm; only public-key algorithms are accepted"),
        ));
    }
    Ok(alg)
}

impl IntrospectionConfig {
    fn from_section(s: &IntrospectionSection) -> Result<Self, ConfigError> {
        if let Some(endpoint) = &s.endpoint {
            check_url("oidc.introspection.endpoint", endpoint)?;
        }
        if s.client_id.is_empty() {
            return Err(invalid("oidc.introspection.client_id", "must not be empty"));
        }
        Ok(Self {
            endpoint: s.endpoint.clone(),
            client_id: s.client_id.clone(),
            client_secret: s.client_secret.clone(),
            cache_ttl: DEFAULT_INTROSPECTION_CACHE_TTL,
            cache_capacity: DEFAULT_INTROSPECTION_CACHE_CAPACITY,
        })
    }
}

impl OidcValidatorConfig {
    pub fn from_section(section: &OidcSection) -> Result<Self, ConfigError> {
        if let Some(url) = &section.discovery_url {
            check_url("oidc.discovery_url", url)?;
        } else if section.issuer.is_none() || section.jwks_url.is_none() {
            return Err(invalid(
                "oidc",
                "set `discovery_url`, or both `issuer` and `jwks_url`",
            ));
        }
        if let Some(url) = &section.jwks_url {
            check_url("oidc.jwks_url", url)?;
        }
        if section.issuer.as_deref() == Some("") {
            return Err(invalid("oidc.issuer", "must not be empty"));
        }
        if section.audience.is_empty() && section.audience_check {
            return Err(invalid(
                "oidc.audience",
                "required (or `audience_check = false` to accept any audience)",
            ));
        }
        if section.username_claim.is_empty() {
            return Err(invalid("oidc.username_claim", "must not be empty"));
        }
        if section.http_timeout_seconds == 0 {
            return Err(invalid("oidc.http_timeout_seconds", "must be at least 1"));
        }
        if section.algorithms.is_empty() {
            return Err(invalid(
                "oidc.algorithms",
                "must name at least one algorithm",
            ));
        }
        let algorithms = section
            .algorithms
            .iter()
            .map(|a| parse_algorithm(a))
            .collect::<Result<Vec<_>, _>>()?;
        let introspection = section
            .introspection
            .as_ref()
            .map(IntrospectionConfig::from_section)
            .transpose()?;
        if let Some(i) = &introspection
            && i.endpoint.is_none()
            && section.discovery_url.is_none()
        {
            return Err(invalid(
                "oidc.introspection.endpoint",
                "required when `oidc.discovery_url` is not set",
            ));
        }
        let ca_cert_pem = section
            .ca_cert
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })
            })
            .transpose()?;
        Ok(Self {
            discovery_url: section.discovery_url.clone(),
            issuer: section.issuer.clone(),
            jwks_url: section.jwks_url.clone(),
            audience: section.audience.clone(),
            username_claim: section.username_claim.clone(),
            leeway: Duration::from_secs(section.leeway_seconds),
            algorithms,
            scope: section.scope.clone(),
            jwks_refetch_interval: Duration::from_secs(section.jwks_refetch_interval_seconds),
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
            http_timeout: Duration::from_secs(section.http_timeout_seconds),
            ca_cert_pem,
            introspection,
            token_cache_ttl: Duration::from_secs(section.token_cache_seconds),
            token_cache_capacity: section.token_cache_capacity,
        })
    }

    /// The URL sent in RFC 7628 challenges: the configured one, or the issuer's well-known URL.
    pub fn discovery_url(&self) -> String {
        match (&self.discovery_url, &self.issuer) {
            (Some(url), _) => url.clone(),
            (None, Some(issuer)) => format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
            // `from_section` refuses this combination; a hand-built config gets an empty hint.
            (None, None) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `toml_text` with `audience = ["mail"]` first, unless it sets an audience itself.
    fn section(toml_text: &str) -> OidcSection {
        let text = if toml_text.contains("audience") {
            toml_text.to_string()
        } else {
            format!("audience = [\"mail\"]\n{toml_text}")
        };
        match toml::from_str(&text) {
            Ok(s) => s,
            Err(e) => panic!("test section does not parse: {e}"),
        }
    }

    #[test]
    fn discovery_url_defaults_to_issuer_well_known() {
        let cfg = OidcValidatorConfig::from_section(&section(
            "issuer = \"https://idp.example/\"\njwks_url = \"https://idp.example/jwks\"",
        ));
        let cfg = match cfg {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            cfg.discovery_url(),
            "https://idp.example/.well-known/openid-configuration"
        );
        assert_eq!(cfg.scope, "openid email");
        assert_eq!(cfg.username_claim, "email");
        assert_eq!(cfg.algorithms.len(), 9);
    }

    #[test]
    fn refuses_hmac_none_and_missing_endpoints() {
        let cases = [
            (
                "discovery_url = \"https://i/.well-known/openid-configuration\"\nalgorithms = [\"HS256\"]",
                "oidc.algorithms",
            ),
            (
                "discovery_url = \"https://i/.well-known/openid-configuration\"\nalgorithms = [\"none\"]",
                "oidc.algorithms",
            ),
            ("issuer = \"https://i\"", "oidc"),
            (
                "audience = []\ndiscovery_url = \"https://i/.well-known/openid-configuration\"",
                "oidc.audience",
            ),
            ("discovery_url = \"ftp://i/x\"", "oidc.discovery_url"),
            (
                "issuer = \"https://i\"\njwks_url = \"https://i/jwks\"\n[introspection]\nclient_id = \"c\"\nclient_secret = \"s\"",
                "oidc.introspection.endpoint",
            ),
        ];
        for (text, want_key) in cases {
            match OidcValidatorConfig::from_section(&section(text)) {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, want_key, "{text}"),
                other => panic!("{text}: expected Invalid({want_key}), got {other:?}"),
            }
        }
    }

    #[test]
    fn no_audience_only_with_the_explicit_opt_out() {
        let cfg = OidcValidatorConfig::from_section(&section(
            "audience = []\naudience_check = false\ndiscovery_url = \"https://i/.well-known/openid-configuration\"",
        ));
        assert!(cfg.is_ok_and(|c| c.audience.is_empty()));
    }

    #[test]
    fn introspection_secret_is_not_debug_printed() {
        let cfg = IntrospectionConfig {
            endpoint: None,
            client_id: "mail".into(),
            client_secret: "hunter2".into(),
            cache_ttl: DEFAULT_INTROSPECTION_CACHE_TTL,
            cache_capacity: 1,
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}
