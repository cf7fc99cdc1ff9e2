//! HTTP authentication strategies (basic, bearer, x-user), tried in the configured order.
//!
//! The core, [`HttpAuthenticator::authenticate`], sees only headers and the peer address and
//! reaches the outside world only through the [`Directory`] and [`TokenValidator`] traits;
//! header parsing, gateway trust and challenges are pure functions. [`layer`] is the axum glue.
//!
//! Policy: every enabled strategy whose credentials are present is tried, in order; the first
//! that accepts wins. Nothing presented, or every attempt refused: 401 with every strategy's
//! challenge. An attempt that could not be decided (IdP or directory down) and no later
//! success: 503. Two `Authorization` or two x-user headers: 400 before anything else.
//!
//! Basic and bearer attempts go through the failed-login budget (`[login_throttle]`) like
//! every mail protocol's: while the client's address (or, for Basic, the user name) must wait,
//! the request gets 429 with `Retry-After` and nothing is checked. Requests from a trusted
//! gateway source (`x_user_trusted_sources`) are counted by user name only: the gateway's
//! address is everyone's.

pub mod challenge;
pub mod credentials;
pub mod forwarded;
pub mod gateway;
pub mod layer;
pub mod problem;
pub mod settings;

#[cfg(test)]
mod tests;

pub use layer::{AuthState, require_auth};
pub use problem::Problem;
pub use settings::{HttpAuthSettings, strategy_name};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::auth::AuthBackends;
use crate::auth::directory::{Directory, DirectoryError};
use crate::auth::oidc::{TokenError, TokenValidator};
use crate::auth::revocation::{Denied, RevocationService};
use crate::auth::sasl::TokenSession;
use crate::auth::throttle::{
    Attempt as ThrottleAttempt, LoginThrottle, Refusal, retry_after_seconds,
};
use crate::config::{ConfigError, HttpAuthSection, HttpStrategy};
use credentials::{Authorization, Presented};

/// Seconds a client is told to wait after a 503 (IdP or directory unreachable).
pub use problem::RETRY_AFTER_SECONDS;

/// Who an authenticated HTTP request is, put in the request extensions by the auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpIdentity {
    /// Canonical directory user.
    pub user: String,
    /// Which strategy accepted the request: `basic`, `bearer` or `x-user`.
    pub strategy: &'static str,
    /// Set for bearer logins.
    pub token: Option<TokenSession>,
}

impl HttpIdentity {
    /// Whether the request provably came through the trusted gateway (`x-user` accepted it).
    pub fn via_gateway(&self) -> bool {
        self.strategy == strategy_name(crate::config::HttpStrategy::XUser)
    }
}

/// Why a request was not authenticated; each variant is one status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRejection {
    /// 400: the request is ambiguous (duplicate headers) or unreadable.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401: no usable credentials, or every presented credential was refused.
    #[error("unauthorized: {detail}")]
    Unauthorized {
        /// For the problem body; never contains a credential.
        detail: String,
        /// Set when a bearer token was sent and refused: adds the RFC 6750 hint.
        bearer_error: Option<TokenError>,
    },
    /// 503: the IdP or the directory could not be asked; retry later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// 429: too many failed logins from this address or for this user name; nothing was
    /// checked. Retry after this many seconds.
    #[error("too many failed logins; retry in {retry_after_seconds}s")]
    Throttled { retry_after_seconds: u64 },
}

/// The result of one strategy on one request.
enum Attempt {
    /// The request carries nothing for this strategy.
    Absent,
    Accepted(HttpIdentity),
    Refused {
        /// For the log: may name configuration (which proof failed).
        reason: String,
        /// For the client's problem detail.
        detail: String,
        bearer_error: Option<TokenError>,
    },
    /// The backend could not be asked: `reason` for the log, `detail` for the client.
    Undecided {
        reason: String,
        detail: &'static str,
    },
    /// The failed-login budget refused to check it.
    Throttled {
        retry_after_seconds: u64,
    },
}

/// The configured strategies with the backends they check against.
pub struct HttpAuthenticator {
    settings: HttpAuthSettings,
    directory: Arc<dyn Directory>,
    validator: Option<Arc<dyn TokenValidator>>,
    /// Checks gateway-forwarded token sessions (bearer tokens are checked by the validator,
    /// which the server wraps in the same check).
    revocation: Option<Arc<RevocationService>>,
    /// The failed-login budget Basic and bearer attempts go through.
    throttle: Option<Arc<LoginThrottle>>,
}

impl HttpAuthenticator {
    /// `bearer` without an `[oidc]` section cannot work: it is dropped with a warning (it is in
    /// the default list), and if nothing is left the server refuses to start.
    pub fn new(section: &HttpAuthSection, backends: &AuthBackends) -> Result<Self, ConfigError> {
        let mut settings = HttpAuthSettings::from_section(section)?;
        if backends.validator.is_none() && settings.strategies.contains(&HttpStrategy::Bearer) {
            tracing::warn!("http.auth: `bearer` is disabled because there is no [oidc] section");
            settings.strategies.retain(|s| *s != HttpStrategy::Bearer);
            if settings.strategies.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "http.auth.strategies".into(),
                    message: "only `bearer` is listed and there is no [oidc] section".into(),
                });
            }
        }
        Ok(Self::with_settings(
            settings,
            backends.directory.clone(),
            backends.validator.clone(),
        )
        .with_revocation(backends.revocation.clone())
        .with_throttle(backends.throttle.clone()))
    }

    /// Basic and bearer attempts are counted in (and refused by) this budget.
    pub fn with_throttle(mut self, throttle: Option<Arc<LoginThrottle>>) -> Self {
        self.throttle = throttle;
        self
    }

    /// The budget's admission for a request from `peer` trying `user`. A trusted gateway's
    /// address is shared by all its clients: such requests are counted by user name only.
    async fn admit(
        &self,
        peer: Option<SocketAddr>,
        user: Option<&str>,
    ) -> Result<ThrottleAttempt, Attempt> {
        let Some(throttle) = &self.throttle else {
            return Ok(ThrottleAttempt::unthrottled());
        };
        let ip = peer.map(|p| p.ip().to_canonical());
        let address = ip.filter(|ip| {
            !self
                .settings
                .x_user_trusted_sources
                .iter()
                .any(|net| net.contains(ip))
        });
        throttle
            .admit(address, user)
            .await
            .map_err(|refusal| match refusal {
                Refusal::Throttled { retry_after } => Attempt::Throttled {
                    retry_after_seconds: retry_after_seconds(retry_after),
                },
                Refusal::Unavailable(why) => {
                    undecided(why, "the login throttle store could not be reached")
                }
            })
    }

    pub fn with_settings(
        settings: HttpAuthSettings,
        directory: Arc<dyn Directory>,
        validator: Option<Arc<dyn TokenValidator>>,
    ) -> Self {
        Self {
            settings,
            directory,
            validator,
            revocation: None,
            throttle: None,
        }
    }

    /// Gateway-forwarded token sessions are checked against this deny-list.
    pub fn with_revocation(mut self, revocation: Option<Arc<RevocationService>>) -> Self {
        self.revocation = revocation;
        self
    }

    pub fn settings(&self) -> &HttpAuthSettings {
        &self.settings
    }

    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// The validator, when `bearer` is enabled.
    pub fn bearer_validator(&self) -> Option<&Arc<dyn TokenValidator>> {
        if self.settings.strategies.contains(&HttpStrategy::Bearer) {
            self.validator.as_ref()
        } else {
            None
        }
    }

    /// Decides who the request is. Every refusal is logged with strategy and reason, never
    /// with the token, password or secret.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<HttpIdentity, AuthRejection> {
        let presented = credentials::presented(headers, &self.settings.x_user_header)
            .inspect_err(|e| tracing::info!(?peer, reason = %e, "HTTP request refused"))?;
        let mut refusals: Vec<String> = Vec::new();
        let mut bearer_error = None;
        let mut undecided = None;
        let mut throttled = None;
        for strategy in &self.settings.strategies {
            let name = strategy_name(*strategy);
            let attempt = match strategy {
                HttpStrategy::Basic => self.basic(&presented, peer).await,
                HttpStrategy::Bearer => self.bearer(&presented, peer).await,
                HttpStrategy::XUser => self.x_user(&presented, headers, peer).await,
            };
            match attempt {
                Attempt::Absent => {}
                Attempt::Accepted(identity) => {
                    tracing::debug!(strategy = name, user = %identity.user, "HTTP request authenticated");
                    return Ok(identity);
                }
                Attempt::Refused {
                    reason,
                    detail,
                    bearer_error: e,
                } => {
                    tracing::info!(strategy = name, ?peer, %reason, "HTTP authentication refused");
                    refusals.push(format!("{name}: {detail}"));
                    bearer_error = bearer_error.or(e);
                }
                Attempt::Undecided { reason, detail } => {
                    tracing::warn!(strategy = name, ?peer, %reason, "HTTP authentication could not be decided");
                    undecided.get_or_insert(format!("{name}: {detail}"));
                }
                Attempt::Throttled {
                    retry_after_seconds,
                } => {
                    tracing::info!(
                        strategy = name,
                        ?peer,
                        retry_after_seconds,
                        "HTTP authentication throttled: too many failed logins"
                    );
                    throttled.get_or_insert(retry_after_seconds);
                }
            }
        }
        if let Some(retry_after_seconds) = throttled {
            return Err(AuthRejection::Throttled {
                retry_after_seconds,
            });
        }
        if let Some(reason) = undecided {
            return Err(AuthRejection::Unavailable(reason));
        }
        if refusals.is_empty() {
            let reason = match &presented.authorization {
                Some(Authorization::Other(scheme)) => {
                    format!("Authorization scheme {scheme:?} is not supported")
                }
                Some(Authorization::Basic(_)) => "Basic is not an enabled strategy".into(),
                Some(Authorization::Bearer(_)) => "Bearer is not an enabled strategy".into(),
                None => "no credentials".into(),
            };
            tracing::info!(strategy = "none", ?peer, %reason, "HTTP authentication refused");
            refusals.push(reason);
        }
        Err(AuthRejection::Unauthorized {
            detail: refusals.join("; "),
            bearer_error,
        })
    }

    async fn basic(&self, presented: &Presented, peer: Option<SocketAddr>) -> Attempt {
        let Some(Authorization::Basic(payload)) = &presented.authorization else {
            return Attempt::Absent;
        };
        let (user, password) = match credentials::decode_basic(payload) {
            Ok(pair) => pair,
            Err(reason) => return refused(reason),
        };
        let attempt = match self.admit(peer, Some(&user)).await {
            Ok(attempt) => attempt,
            Err(refusal) => return refusal,
        };
        match self.directory.verify_password(&user, &password).await {
            Ok(Some(canonical)) => {
                attempt.succeeded().await;
                Attempt::Accepted(HttpIdentity {
                    user: canonical,
                    strategy: strategy_name(HttpStrategy::Basic),
                    token: None,
                })
            }
            // One reason for both: which of the two was wrong is nobody's business.
            Ok(None) => {
                attempt.failed().await;
                refused("invalid user name or password")
            }
            Err(e @ DirectoryError::RevocationUnavailable(_)) => {
                undecided(e.to_string(), REVOCATION_DOWN)
            }
            Err(e) => undecided(e.to_string(), DIRECTORY_DOWN),
        }
    }

    async fn bearer(&self, presented: &Presented, peer: Option<SocketAddr>) -> Attempt {
        let Some(Authorization::Bearer(token)) = &presented.authorization else {
            return Attempt::Absent;
        };
        let Some(validator) = &self.validator else {
            return Attempt::Absent;
        };
        // A token names no user before it is valid: counted by address only.
        let attempt = match self.admit(peer, None).await {
            Ok(attempt) => attempt,
            Err(refusal) => return refusal,
        };
        let result = if token.is_empty() {
            Err(TokenError::Malformed("empty bearer token".into()))
        } else {
            validator.validate(token).await
        };
        let validated = match result {
            Ok(v) => v,
            Err(e) if e.is_temporary() => {
                return undecided(e.to_string(), "the identity provider could not be reached");
            }
            Err(e) => {
                if crate::auth::throttle::token_refusal_counts(e.code()) {
                    attempt.failed().await;
                }
                let description = challenge::error_description(&e);
                return Attempt::Refused {
                    reason: description.clone(),
                    detail: description,
                    bearer_error: Some(e),
                };
            }
        };
        // The validator already asked the deny-list (the server wraps it in the check). The
        // token goes with the session for the introspection re-check of long-lived connections
        // (the registry drops it when no re-check is configured).
        Attempt::Accepted(HttpIdentity {
            token: Some(validated.session(Some(token))),
            user: validated.username,
            strategy: strategy_name(HttpStrategy::Bearer),
        })
    }

    async fn x_user(
        &self,
        presented: &Presented,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Attempt {
        let Some(name) = &presented.x_user else {
            return Attempt::Absent;
        };
        // Trust first: an untrusted header must not even cause a directory lookup.
        if let Err(why) = gateway::check_trusted(&self.settings, headers, peer) {
            return Attempt::Refused {
                reason: format!("not sent by the trusted gateway: {why}"),
                detail: "not accepted from this client".into(),
                bearer_error: None,
            };
        }
        if name.is_empty() {
            return refused("empty user name");
        }
        let default_issuer = self.validator.as_ref().and_then(|v| v.issuer());
        let token = match forwarded::forwarded_session(
            headers,
            &self.settings.x_user_token_headers,
            default_issuer,
            self.settings.x_user_requires_session,
        ) {
            Ok(token) => token,
            Err(why) => return refused(format!("gateway token headers: {why}")),
        };
        let canonical = match self.directory.lookup(name).await {
            Ok(Some(canonical)) => canonical,
            Ok(None) => return refused(format!("user {name:?} is not in the directory")),
            Err(e) => return undecided(e.to_string(), DIRECTORY_DOWN),
        };
        if let (Some(token), Some(revocation)) = (&token, &self.revocation) {
            match revocation.check(token, &canonical).await {
                Ok(()) => {}
                Err(Denied::Revoked(why)) => {
                    let e = TokenError::Revoked(why);
                    let description = challenge::error_description(&e);
                    return Attempt::Refused {
                        reason: description.clone(),
                        detail: description,
                        bearer_error: Some(e),
                    };
                }
                Err(Denied::Unavailable(why)) => {
                    return undecided(why, "the revocation store could not be reached");
                }
            }
        }
        Attempt::Accepted(HttpIdentity {
            user: canonical,
            strategy: strategy_name(HttpStrategy::XUser),
            token,
        })
    }

    /// The challenges a 401 carries, one header field each, in order.
    pub fn challenges(&self, base: &str, bearer_error: Option<&TokenError>) -> Vec<String> {
        challenge::challenges(
            &self.settings.strategies,
            &self.settings.realm,
            base,
            bearer_error,
        )
    }

    /// The complete error response: problem JSON, plus `WWW-Authenticate` (401) or
    /// `Retry-After` (503). `base` is the public base URL for `resource_metadata`.
    pub fn rejection_response(&self, rejection: &AuthRejection, base: &str) -> Response {
        match rejection {
            AuthRejection::BadRequest(detail) => {
                Problem::new(StatusCode::BAD_REQUEST, detail.clone()).into_response()
            }
            AuthRejection::Unauthorized {
                detail,
                bearer_error,
            } => {
                let mut response =
                    Problem::new(StatusCode::UNAUTHORIZED, detail.clone()).into_response();
                for c in self.challenges(base, bearer_error.as_ref()) {
                    match HeaderValue::from_str(&c) {
                        Ok(v) => {
                            response.headers_mut().append(WWW_AUTHENTICATE, v);
                        }
                        // Unreachable: realm, base and description are checked or sanitized.
                        Err(_) => {
                            tracing::error!(challenge = %c, "challenge is not a valid header value")
                        }
                    }
                }
                response
            }
            AuthRejection::Throttled {
                retry_after_seconds,
            } => {
                let mut response = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed logins from this address or for this user; retry later",
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
                response
            }
            // `Retry-After` comes with every 503 Problem.
            AuthRejection::Unavailable(detail) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("authentication is temporarily unavailable ({detail}); retry later"),
            )
            .into_response(),
        }
    }
}

const DIRECTORY_DOWN: &str = "the directory could not be reached";
const REVOCATION_DOWN: &str = "the revocation store could not be reached";

fn refused(reason: impl Into<String>) -> Attempt {
    let reason = reason.into();
    Attempt::Refused {
        detail: reason.clone(),
        reason,
        bearer_error: None,
    }
}

fn undecided(reason: String, detail: &'static str) -> Attempt {
    Attempt::Undecided { reason, detail }
}
