//! Where the issuer's keys and introspection live: from config, or from the discovery document
//! (fetched on first use, retried on later use while it fails).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde_json::Value;

use super::TokenError;
use super::idp_client::IdpClient;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub issuer: String,
    pub jwks_uri: String,
    pub introspection_endpoint: Option<String>,
}

/// Explicitly configured values; they win over the discovery document.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub issuer: Option<String>,
    pub jwks_uri: Option<String>,
    pub introspection_endpoint: Option<String>,
}

/// Builds the endpoints from a discovery document. A configured issuer must equal the
/// document's: tokens are checked against it, so a mismatch is a misconfiguration.
pub fn from_document(doc: &Value, overrides: &Overrides) -> Result<Endpoints, TokenError> {
    let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_string);
    let broken = |what: String| TokenError::Unavailable(format!("discovery document: {what}"));
    let issuer = field("issuer").ok_or_else(|| broken("no issuer".into()))?;
    if let Some(expected) = &overrides.issuer
        && *expected != issuer
    {
        return Err(broken(format!(
            "issuer {issuer:?} is not the configured issuer {expected:?}"
        )));
    }
    let jwks_uri = overrides
        .jwks_uri
        .clone()
        .or_else(|| field("jwks_uri"))
        .ok_or_else(|| broken("no jwks_uri".into()))?;
    Ok(Endpoints {
        issuer,
        jwks_uri,
        introspection_endpoint: overrides
            .introspection_endpoint
            .clone()
            .or_else(|| field("introspection_endpoint")),
    })
}

pub enum Discovery {
    /// Issuer and JWKS URL configured; nothing to fetch.
    Fixed(Arc<Endpoints>),
    Remote(Box<Remote>),
}

pub struct Remote {
    url: String,
    overrides: Overrides,
    http: IdpClient,
    resolved: RwLock<Option<Arc<Endpoints>>>,
    /// Held across the fetch (one at a time); remembers the last failure so that callers
    /// who waited behind a failed fetch share its result instead of each retrying.
    fetch: tokio::sync::Mutex<Option<(Instant, TokenError)>>,
}

impl Discovery {
    pub fn remote(url: String, overrides: Overrides, http: IdpClient) -> Self {
        Discovery::Remote(Box::new(Remote {
            url,
            overrides,
            http,
            resolved: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(None),
        }))
    }

    pub async fn endpoints(&self) -> Result<Arc<Endpoints>, TokenError> {
        match self {
            Discovery::Fixed(endpoints) => Ok(endpoints.clone()),
            Discovery::Remote(remote) => remote.endpoints().await,
        }
    }

    /// The issuer without I/O: fixed, discovered, or configured (which discovery must match).
    pub fn issuer(&self) -> Option<String> {
        match self {
            Discovery::Fixed(endpoints) => Some(endpoints.issuer.clone()),
            Discovery::Remote(remote) => remote
                .resolved()
                .map(|e| e.issuer.clone())
                .or_else(|| remote.overrides.issuer.clone()),
        }
    }
}

impl Remote {
    fn resolved(&self) -> Option<Arc<Endpoints>> {
        self.resolved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn endpoints(&self) -> Result<Arc<Endpoints>, TokenError> {
        if let Some(done) = self.resolved() {
            return Ok(done);
        }
        let asked = Instant::now();
        let mut last_failure = self.fetch.lock().await;
        if let Some(done) = self.resolved() {
            return Ok(done);
        }
        if let Some((at, error)) = &*last_failure
            && *at >= asked
        {
            return Err(error.clone());
        }
        let result = self
            .http
            .get_json("discovery", &self.url)
            .await
            .and_then(|doc| from_document(&doc, &self.overrides));
        match result {
            Ok(endpoints) => {
                tracing::info!(url = %self.url, issuer = %endpoints.issuer, "OIDC discovery done");
                let endpoints = Arc::new(endpoints);
                *self.resolved.write().unwrap_or_else(|e| e.into_inner()) = Some(endpoints.clone());
                *last_failure = None;
                Ok(endpoints)
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "OIDC discovery failed");
                *last_failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "issuer": "https://idp.example",
            "jwks_uri": "https://idp.example/jwks",
            "introspection_endpoint": "https://idp.example/introspect",
        })
    }

    #[test]
    fn document_gives_endpoints() {
        let e = from_document(&doc(), &Overrides::default()).expect("valid");
        assert_eq!(e.issuer, "https://idp.example");
        assert_eq!(e.jwks_uri, "https://idp.example/jwks");
        assert_eq!(
            e.introspection_endpoint.as_deref(),
            Some("https://idp.example/introspect")
        );
    }

    #[test]
    fn configured_values_win_and_issuer_must_match() {
        let o = Overrides {
            issuer: Some("https://idp.example".into()),
            jwks_uri: Some("https://other/jwks".into()),
            introspection_endpoint: Some("https://other/introspect".into()),
        };
        let e = from_document(&doc(), &o).expect("valid");
        assert_eq!(e.jwks_uri, "https://other/jwks");
        assert_eq!(
            e.introspection_endpoint.as_deref(),
            Some("https://other/introspect")
        );
        let o = Overrides {
            issuer: Some("https://idp.example/".into()),
            ..Overrides::default()
        };
        assert!(matches!(
            from_document(&doc(), &o),
            Err(TokenError::Unavailable(_))
        ));
    }

    #[test]
    fn incomplete_document_is_the_idps_fault() {
        for broken in [json!({}), json!({"issuer": "x"}), json!([1])] {
            assert!(matches!(
                from_document(&broken, &Overrides::default()),
                Err(TokenError::Unavailable(_))
            ));
        }
    }
}
