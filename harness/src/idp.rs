//! OpenID Connect client for the harness: discovery, the grants tests need, introspection, and a
//! headless browser that walks LemonLDAP::NG's login form for the authorization-code flow (with
//! state, nonce and PKCE S256) and RP-initiated logout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use crate::cookies::CookieJar;
use crate::html::{self, snippet};
use crate::tokens::{decode_unverified, random_id};

/// Deadline of each HTTP call to the IdP.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Scope of the password grant (offline_access: LemonLDAP::NG then issues a refresh token).
const PASSWORD_SCOPE: &str = "openid email profile offline_access";
/// Scope of the authorization-code flow (the proven recipe; the RP issues refresh tokens anyway).
const AUTH_CODE_SCOPE: &str = "openid email profile";

/// Where the IdP is and which client we are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdpSettings {
    /// Issuer URL; discovery is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// `None` for a public client (it sends `client_id` in the form, and PKCE).
    pub client_secret: Option<String>,
    /// Registered redirect URI for the auth-code flow (never actually served).
    pub redirect_uri: String,
}

/// Tokens from one grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

impl TokenSet {
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let access_token = s("access_token").with_context(|| format!("no access_token in {v}"))?;
        let expires_in = match v.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(t)) => t.parse().ok(),
            _ => None,
        };
        Ok(Self {
            access_token,
            id_token: s("id_token"),
            refresh_token: s("refresh_token"),
            expires_in,
        })
    }
}

/// The discovery document fields the harness uses (everything else is in `extra`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub introspection_endpoint: String,
    pub end_session_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    /// RFC 7009 token revocation (Keycloak has one, LemonLDAP::NG does not).
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub backchannel_logout_supported: bool,
    #[serde(default)]
    pub backchannel_logout_session_supported: bool,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// An IdP endpoint refused a request. Carried inside the `anyhow::Error`s of [`IdpClient`]
/// (`err.downcast_ref::<IdpError>()`).
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// Non-success HTTP status, or an OAuth `error` member in the body.
    #[error("{endpoint} endpoint answered HTTP {status}: {body}")]
    Endpoint {
        endpoint: &'static str,
        status: u16,
        /// The IdP's JSON (e.g. `{"error":"invalid_grant"}`), or the text as a JSON string.
        body: Value,
    },
    /// The authorization endpoint redirected back with `error=...`.
    #[error("authorization failed: {error}: {description}")]
    Authorization { error: String, description: String },
}

impl IdpError {
    /// The OAuth `error` code (`invalid_grant`, `invalid_client`, ...), if the IdP sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            IdpError::Endpoint { body, .. } => body.get("error").and_then(Value::as_str),
            IdpError::Authorization { error, .. } => Some(error),
        }
    }
}

/// Result of [`IdpClient::auth_code_login`].
#[derive(Debug, Clone)]
pub struct AuthCodeOutcome {
    pub tokens: TokenSet,
    /// False when the SSO session of the browser was reused (no password asked).
    pub login_form_shown: bool,
}

/// Result of [`IdpClient::logout`].
#[derive(Debug, Clone)]
pub struct LogoutOutcome {
    pub status: u16,
    pub location: Option<String>,
    /// The portal asked for confirmation and the browser confirmed.
    pub confirmed: bool,
}

/// What a page answered: status, redirect target, body.
#[derive(Debug, Clone)]
pub struct PageAnswer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
    /// A confirmation form was submitted to get here.
    pub confirmed: bool,
}

impl PageAnswer {
    async fn read(resp: reqwest::Response, confirmed: bool) -> Self {
        let status = resp.status();
        let location = location_of(&resp);
        Self {
            status,
            location,
            body: resp.text().await.unwrap_or_default(),
            confirmed,
        }
    }
}

/// A headless browser: its own cookie jar (so an SSO session is shared by every client it logs
/// in to) and no automatic redirects (so the code can be read from the redirect). The jar lives
/// in memory ([`BrowserSession::new`]) or in a Netscape cookie file that curl reads and writes
/// too ([`BrowserSession::with_cookie_file`], written back by [`BrowserSession::save`]).
#[derive(Clone)]
pub struct BrowserSession {
    http: reqwest::Client,
    jar: Arc<CookieJar>,
    /// Where [`BrowserSession::save`] writes the jar; `None` for an in-memory browser.
    cookie_file: Option<PathBuf>,
}

impl std::fmt::Debug for BrowserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSession")
            .field("cookie_file", &self.cookie_file)
            .finish_non_exhaustive()
    }
}

impl BrowserSession {
    /// A browser with an empty in-memory jar.
    pub fn new() -> anyhow::Result<Self> {
        Self::build(Arc::new(CookieJar::new()), None)
    }

    /// A browser on the cookies of a Netscape cookie file (a missing file is an empty jar);
    /// [`BrowserSession::save`] writes them back there.
    pub fn with_cookie_file(path: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let path = path.into();
        let jar = CookieJar::load(&path)
            .with_context(|| format!("reading the cookie file {}", path.display()))?;
        Self::build(Arc::new(jar), Some(path))
    }

    /// A browser on an existing jar (shared with whoever else holds it), kept in memory.
    pub fn with_jar(jar: Arc<CookieJar>) -> anyhow::Result<Self> {
        Self::build(jar, None)
    }

    fn build(jar: Arc<CookieJar>, cookie_file: Option<PathBuf>) -> anyhow::Result<Self> {
        mail_oidc_server::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .context("building the browser HTTP client")?;
        Ok(Self {
            http,
            jar,
            cookie_file,
        })
    }

    /// The browser's cookies.
    pub fn jar(&self) -> &Arc<CookieJar> {
        &self.jar
    }

    /// The cookie file this browser was loaded from, if any.
    pub fn cookie_file(&self) -> Option<&Path> {
        self.cookie_file.as_deref()
    }

    /// Writes the jar back to its cookie file (atomically, mode 0600); nothing to do for an
    /// in-memory browser.
    pub fn save(&self) -> anyhow::Result<()> {
        match &self.cookie_file {
            Some(path) => self
                .jar
                .save(path)
                .with_context(|| format!("writing the cookie file {}", path.display())),
            None => Ok(()),
        }
    }

    /// Drops LemonLDAP::NG's `lemonldappdata` cookie: after an abandoned or failed login it
    /// still names the old pending authorization request, which the portal would resume
    /// instead of the new one (with the old `state`).
    fn forget_pending_request(&self, url: &Url) {
        self.jar
            .add_cookie_str("lemonldappdata=; Path=/; Max-Age=0", url);
        if let Some(host) = url.host_str() {
            let with_domain = format!("lemonldappdata=; Path=/; Domain={host}; Max-Age=0");
            self.jar.add_cookie_str(&with_domain, url);
        }
    }

    /// GET `url`; when the IdP answers with a confirmation form (LemonLDAP::NG's `confirm`,
    /// Keycloak's `confirmLogout`), submit it as the user would. The last answer.
    pub async fn get_confirming(&self, url: Url) -> anyhow::Result<PageAnswer> {
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let first = PageAnswer::read(resp, false).await;
        if first.status != StatusCode::OK {
            return Ok(first);
        }
        let confirm = html::forms(&first.body)
            .into_iter()
            .find_map(|f| f.submit_named("confirm").map(|button| (f, button)));
        let Some((form, button)) = confirm else {
            return Ok(first);
        };
        let mut fields = form.hidden();
        fields.retain(|(k, _)| *k != button.0);
        fields.push(button);
        let resp = self
            .http
            .post(form.target(&url)?)
            .form(&fields)
            .send()
            .await
            .context("POST the confirmation")?;
        Ok(PageAnswer::read(resp, true).await)
    }

    /// The `Cookie` header this browser would send to `url` (for diagnostics).
    pub fn cookies_for(&self, url: &str) -> Option<String> {
        let url = Url::parse(url).ok()?;
        self.jar.header_for(&url)
    }
}

pub struct IdpClient {
    pub settings: IdpSettings,
    http: reqwest::Client,
    discovery: tokio::sync::OnceCell<Discovery>,
}

impl std::fmt::Debug for IdpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpClient")
            .field("issuer", &self.settings.issuer)
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

impl IdpClient {
    pub fn new(settings: IdpSettings) -> anyhow::Result<Self> {
        mail_oidc_server::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .context("building the IdP HTTP client")?;
        Ok(Self {
            settings,
            http,
            discovery: tokio::sync::OnceCell::new(),
        })
    }

    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        )
    }

    /// The discovery document, fetched on first use.
    pub async fn discovery(&self) -> anyhow::Result<Discovery> {
        let d = self
            .discovery
            .get_or_try_init(|| async {
                let url = self.discovery_url();
                let resp = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .with_context(|| format!("GET {url}"))?;
                let body = json_body("discovery", resp).await?;
                serde_json::from_value::<Discovery>(body)
                    .with_context(|| format!("discovery document at {url}"))
            })
            .await?;
        Ok(d.clone())
    }

    /// A request authenticated as this client: client_secret_basic, or for a public client
    /// `client_id` in the form (RFC 6749 2.3.1, 3.2.1).
    fn client_post(&self, url: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let req = self.http.post(url);
        match &self.settings.client_secret {
            Some(secret) => req
                .basic_auth(&self.settings.client_id, Some(secret))
                .form(form),
            None => {
                let mut with_id: Vec<(&str, &str)> = form.to_vec();
                with_id.push(("client_id", &self.settings.client_id));
                req.form(&with_id)
            }
        }
    }

    /// POST to the token endpoint as this client.
    async fn token_request(&self, form: &[(&str, &str)]) -> anyhow::Result<TokenSet> {
        let disc = self.discovery().await?;
        let resp = self
            .client_post(&disc.token_endpoint, form)
            .send()
            .await
            .with_context(|| format!("POST {}", disc.token_endpoint))?;
        let body = json_body("token", resp).await?;
        TokenSet::from_json(&body)
    }

    /// Resource-owner password grant, scope `openid email profile offline_access`.
    pub async fn password_grant(&self, user: &str, password: &str) -> anyhow::Result<TokenSet> {
        self.token_request(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
            ("scope", PASSWORD_SCOPE),
        ])
        .await
    }

    /// Client-credentials grant: a token whose `sub` is the client itself.
    pub async fn client_credentials(&self) -> anyhow::Result<TokenSet> {
        self.token_request(&[("grant_type", "client_credentials"), ("scope", "openid")])
            .await
    }

    /// Refresh-token grant. LemonLDAP::NG does not rotate refresh tokens; when the answer has
    /// none, the one used is kept in the result.
    pub async fn refresh(&self, refresh_token: &str) -> anyhow::Result<TokenSet> {
        let mut tokens = self
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .await?;
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.to_string());
        }
        Ok(tokens)
    }

    /// RFC 7009 revocation of `token` as this client. Keycloak sends no back-channel logout on
    /// this path; introspection answers `active: false` afterwards.
    pub async fn revoke(&self, token: &str) -> anyhow::Result<()> {
        let disc = self.discovery().await?;
        let endpoint = disc
            .revocation_endpoint
            .context("the IdP advertises no revocation_endpoint (RFC 7009)")?;
        let resp = self
            .client_post(
                &endpoint,
                &[("token", token), ("token_type_hint", "access_token")],
            )
            .send()
            .await
            .with_context(|| format!("POST {endpoint}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(IdpError::Endpoint {
                endpoint: "revocation",
                status: status.as_u16(),
                body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
            }
            .into());
        }
        Ok(())
    }

    /// RFC 7662 introspection (client_secret_basic): the IdP's JSON (`active`, `sub`, ...).
    pub async fn introspect(&self, token: &str) -> anyhow::Result<Value> {
        let disc = self.discovery().await?;
        let resp = self
            .client_post(&disc.introspection_endpoint, &[("token", token)])
            .send()
            .await
            .with_context(|| format!("POST {}", disc.introspection_endpoint))?;
        json_body("introspection", resp).await
    }

    /// Authorization-code flow with state, nonce and PKCE S256 in `browser`. If the portal shows
    /// its login form, every hidden input (notably the CSRF `token`) is posted back with `user`
    /// (error if `None`); an SSO cookie in the jar skips the form. The code is exchanged with the
    /// verifier and the ID token's nonce is checked.
    pub async fn auth_code_login(
        &self,
        browser: &BrowserSession,
        user: Option<(&str, &str)>,
    ) -> anyhow::Result<AuthCodeOutcome> {
        let disc = self.discovery().await?;
        let state = random_id(24);
        let nonce = random_id(24);
        let verifier = random_id(64);
        let challenge = pkce_challenge(&verifier);
        let mut authorize = Url::parse(&disc.authorization_endpoint)
            .with_context(|| format!("authorization_endpoint {}", disc.authorization_endpoint))?;
        authorize
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("scope", AUTH_CODE_SCOPE)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");

        browser.forget_pending_request(&authorize);
        let resp = browser
            .http
            .get(authorize.clone())
            .send()
            .await
            .context("GET authorize")?;
        let mut login_form_shown = false;
        let resp = if resp.status() == StatusCode::OK {
            let page = resp.text().await.context("reading the authorize page")?;
            let Some(login) = html::login_form(&page) else {
                bail!(
                    "authorize answered 200 without a login form: {}",
                    snippet(&page)
                );
            };
            let Some((name, password)) = user else {
                bail!("the login form was shown but no credentials were given");
            };
            login_form_shown = true;
            // LemonLDAP::NG: `user`, posted back to the page; Keycloak: `username`, posted to
            // its login-actions URL.
            let user_field = login.user_field().unwrap_or("user").to_string();
            let password_field = login.password_field().unwrap_or("password").to_string();
            let mut form: Vec<(String, String)> = login
                .hidden()
                .into_iter()
                .filter(|(k, _)| *k != user_field && *k != password_field)
                .collect();
            form.push((user_field, name.into()));
            form.push((password_field, password.into()));
            browser
                .http
                .post(login.target(&authorize)?)
                .form(&form)
                .send()
                .await
                .context("POST login form")?
        } else {
            resp
        };

        let status = resp.status();
        let location = location_of(&resp);
        let Some(location) = location.filter(|_| status.is_redirection()) else {
            let page = resp.text().await.unwrap_or_default();
            bail!(
                "expected a redirect to {} after {}, got HTTP {status}: {}",
                self.settings.redirect_uri,
                if login_form_shown {
                    "login"
                } else {
                    "authorize"
                },
                html::portal_message(&page).unwrap_or_else(|| snippet(&page))
            );
        };
        let code = self.code_from_redirect(&authorize, &location, &state)?;

        let tokens = self
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &self.settings.redirect_uri),
                ("code_verifier", &verifier),
            ])
            .await?;
        let id_token = tokens
            .id_token
            .as_deref()
            .context("the code exchange returned no id_token")?;
        let (_, claims) = decode_unverified(id_token).context("ID token")?;
        let got = claims.get("nonce").and_then(Value::as_str);
        if got != Some(nonce.as_str()) {
            bail!("ID token nonce {got:?} is not the one sent ({nonce})");
        }
        Ok(AuthCodeOutcome {
            tokens,
            login_form_shown,
        })
    }

    /// Checks the redirect (target, `error`, `state`) and returns the code.
    fn code_from_redirect(
        &self,
        authorize: &Url,
        location: &str,
        state: &str,
    ) -> anyhow::Result<String> {
        let target = authorize
            .join(location)
            .with_context(|| format!("redirect location {location:?}"))?;
        let expected = Url::parse(&self.settings.redirect_uri)
            .with_context(|| format!("redirect_uri {}", self.settings.redirect_uri))?;
        let same_target = target.scheme() == expected.scheme()
            && target.host_str() == expected.host_str()
            && target.port_or_known_default() == expected.port_or_known_default()
            && target.path() == expected.path();
        if !same_target {
            bail!(
                "redirected to {target}, not to the redirect_uri {}",
                self.settings.redirect_uri
            );
        }
        let param = |name: &str| {
            target
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if let Some(error) = param("error") {
            return Err(IdpError::Authorization {
                error,
                description: param("error_description").unwrap_or_default(),
            }
            .into());
        }
        let got_state = param("state");
        if got_state.as_deref() != Some(state) {
            bail!("redirect state {got_state:?} is not the one sent ({state})");
        }
        param("code").with_context(|| format!("no code in the redirect {target}"))
    }

    /// Logs out at the IdP as a user does in the browser: GET `logout_url` (LemonLDAP::NG:
    /// `<portal>/?logout=1`) with the SSO cookie. The IdP then calls every back-channel logout
    /// URL of the session's clients before it answers. Returns the final HTTP status.
    pub async fn browser_logout(
        &self,
        browser: &BrowserSession,
        logout_url: &str,
    ) -> anyhow::Result<u16> {
        let url = Url::parse(logout_url).with_context(|| format!("logout URL {logout_url}"))?;
        let answer = browser.get_confirming(url).await?;
        let status = answer.status;
        if status.is_client_error() || status.is_server_error() {
            bail!(
                "logout at {logout_url} answered HTTP {status}: {}",
                snippet(&answer.body)
            );
        }
        Ok(status.as_u16())
    }

    /// RP-initiated logout at the end_session_endpoint with the browser's SSO cookie (LemonLDAP::NG
    /// then sends back-channel logout tokens). A confirmation page, if shown, is confirmed.
    pub async fn logout(
        &self,
        browser: &BrowserSession,
        id_token_hint: &str,
    ) -> anyhow::Result<LogoutOutcome> {
        let disc = self.discovery().await?;
        let endpoint = disc
            .end_session_endpoint
            .context("the IdP advertises no end_session_endpoint")?;
        let mut url =
            Url::parse(&endpoint).with_context(|| format!("end_session_endpoint {endpoint}"))?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token_hint);
        let answer = browser.get_confirming(url).await?;
        let status = answer.status;
        if status.is_client_error() || status.is_server_error() {
            bail!("logout answered HTTP {status}: {}", snippet(&answer.body));
        }
        Ok(LogoutOutcome {
            status: status.as_u16(),
            location: answer.location,
            confirmed: answer.confirmed,
        })
    }
}

/// Reads a JSON answer; a non-2xx status or an OAuth `error` member becomes [`IdpError`].
async fn json_body(endpoint: &'static str, resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the {endpoint} answer"))?;
    let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    if !status.is_success() || body.get("error").is_some() || !body.is_object() {
        return Err(IdpError::Endpoint {
            endpoint,
            status: status.as_u16(),
            body,
        }
        .into());
    }
    Ok(body)
}

/// RFC 7636 S256: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The `Location` header of an answer, when it is readable text.
pub(crate) fn location_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn token_set_from_json() {
        let t = TokenSet::from_json(&serde_json::json!({
            "access_token": "a", "id_token": "i", "expires_in": "3600", "token_type": "Bearer"
        }))
        .expect("parse");
        assert_eq!(t.access_token, "a");
        assert_eq!(t.id_token.as_deref(), Some("i"));
        assert_eq!(t.refresh_token, None);
        assert_eq!(t.expires_in, Some(3600));
        assert!(TokenSet::from_json(&serde_json::json!({"error": "x"})).is_err());
    }

    #[test]
    fn redirect_checks() {
        let idp = IdpClient::new(IdpSettings {
            issuer: "http://localhost:1".into(),
            client_id: "c".into(),
            client_secret: Some("s".into()),
            redirect_uri: "http://localhost:2/cb".into(),
        })
        .expect("client");
        let base = Url::parse("http://localhost:1/oauth2/authorize?x=1").expect("url");
        assert_eq!(
            idp.code_from_redirect(&base, "http://localhost:2/cb?code=abc&state=st", "st")
                .ok()
                .as_deref(),
            Some("abc")
        );
        assert!(
            idp.code_from_redirect(&base, "http://localhost:2/cb?code=abc&state=x", "st")
                .is_err()
        );
        assert!(
            idp.code_from_redirect(&base, "http://localhost:3/cb?code=abc&state=st", "st")
                .is_err()
        );
        let err = idp
            .code_from_redirect(
                &base,
                "http://localhost:2/cb?error=access_denied&state=st",
                "st",
            )
            .expect_err("error redirect");
        assert_eq!(
            err.downcast_ref::<IdpError>()
                .and_then(IdpError::oauth_error),
            Some("access_denied")
        );
    }
}
