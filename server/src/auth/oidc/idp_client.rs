//! The HTTP client for the IdP. Every failure here is the IdP's, never the token's, so all of
//! them map to [`TokenError::Unavailable`].

use std::time::Duration;

use serde_json::Value;

use super::TokenError;
use crate::config::ConfigError;

/// Largest IdP answer read (discovery, JWKS and introspection answers are a few KiB).
const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct IdpClient {
    client: reqwest::Client,
}

impl IdpClient {
    /// `extra_roots`: PEM certificate(s) trusted in addition to the system roots.
    pub fn new(timeout: Duration, extra_roots: Option<&[u8]>) -> Result<Self, ConfigError> {
        // reqwest is built without a rustls provider of its own.
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("mail-oidc-server/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = extra_roots {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ConfigError::Invalid {
                    key: "oidc.ca_cert".into(),
                    message: chain(&e),
                })?;
            if certs.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "oidc.ca_cert".into(),
                    message: "no PEM certificate found".into(),
                });
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| ConfigError::Invalid {
            key: "oidc".into(),
            message: format!("cannot build the HTTP client: {}", chain(&e)),
        })?;
        Ok(Self { client })
    }

    /// GETs a JSON document. `what` names it in errors ("discovery", "JWKS").
    pub async fn get_json(&self, what: &str, url: &str) -> Result<Value, TokenError> {
        let request = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        self.send(what, url, request).await
    }

    /// POSTs a form with an `Authorization` header and reads a JSON answer.
    pub async fn post_form_json(
        &self,
        what: &str,
        url: &str,
        authorization: &str,
        form: &[(&str, &str)],
    ) -> Result<Value, TokenError> {
        let request = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::AUTHORIZATION, authorization)
            .form(form);
        self.send(what, url, request).await
    }

    async fn send(
        &self,
        what: &str,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, TokenError> {
        let unavailable =
            |detail: String| TokenError::Unavailable(format!("{what} {url}: {detail}"));
        let mut response = request.send().await.map_err(|e| unavailable(chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unavailable(chain(&e)))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(unavailable(format!("answer larger than {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("invalid JSON: {e}")))
    }
}

/// An error with its causes ("error sending request: connection refused"), since reqwest's
/// top-level message alone rarely says what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        // Bind then drop: the port is closed, so the connect is refused at once.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let client = IdpClient::new(Duration::from_secs(2), None).expect("client");
        let err = client
            .get_json("JWKS", &format!("http://{addr}/jwks"))
            .await
            .expect_err("closed port");
        assert!(err.is_temporary(), "{err:?}");
    }

    #[test]
    fn bad_ca_pem_is_a_config_error() {
        let err = IdpClient::new(Duration::from_secs(1), Some(b"not a pem"))
            .err()
            .expect("garbage PEM refused");
        assert!(
            matches!(err, ConfigError::Invalid { ref key, .. } if key == "oidc.ca_cert"),
            "{err:?}"
        );
    }
}
