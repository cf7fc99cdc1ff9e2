//! The HTTP listener: a public `/.well-known/oauth-protected-resource`, and everything else
//! (JMAP) behind the auth layer. Plain HTTP: TLS is the gateway's job.
//!
//! Layers, outermost first: body limit (`http.max_upload_size`), guard (413 on a too-large
//! `Content-Length`, default [`PublicBase`], hard-limited body), then per protected route the
//! auth layer ([`crate::auth::request_auth::require_auth`]).

pub mod admin;
mod listener;
pub mod logout;
mod well_known;

#[cfg(test)]
mod tests;

pub use crate::public_url::{BaseUrl, PublicBase};
pub use listener::{HttpLimits, serve_limited};
pub use well_known::{issuer_from_discovery_url, resource_metadata};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, RequestExt, Router};
use http::StatusCode;
use http::header::CONTENT_LENGTH;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::auth::oidc::TokenValidator;
use crate::auth::request_auth::{
    AuthState, HttpAuthenticator, HttpIdentity, Problem, challenge::RESOURCE_METADATA_PATH,
    require_auth,
};
use crate::auth::revocation::{LogoutReceiver, LogoutSettings, RevocationService};
use crate::config::{Config, ConfigError};
use crate::limits::{ShutdownSignal, StreamLimits};
use crate::server::{Services, StartError};

/// Everything the HTTP routes share, built once at start-up.
pub struct HttpContext {
    auth: AuthState,
    max_upload_size: usize,
    /// JMAP behind the auth layer; `None` only for embedders testing the auth layer alone.
    jmap: Option<Arc<crate::jmap::JmapContext>>,
    /// The back-channel logout receiver; `None` without `[oidc]` (the route answers 404).
    logout: Option<Arc<LogoutReceiver>>,
    /// For `/admin/revoke`.
    revocation: Option<Arc<RevocationService>>,
    admins: Vec<String>,
    /// Knows the configured (or discovered) issuer for admin revocations by sub or sid.
    issuer: Option<Arc<dyn TokenValidator>>,
}

impl HttpContext {
    pub fn new(
        config: &Config,
        bound: SocketAddr,
        services: &Services,
    ) -> Result<Self, StartError> {
        Self::new_with(config, bound, services, ShutdownSignal::never())
    }

    /// [`HttpContext::new`] whose WebSocket and EventSource streams end on `shutdown`.
    pub fn new_with(
        config: &Config,
        bound: SocketAddr,
        services: &Services,
        shutdown: ShutdownSignal,
    ) -> Result<Self, StartError> {
        let authenticator = HttpAuthenticator::new(&config.http.auth, &services.backends)?;
        let default_base = match &config.http.public_url {
            Some(url) => BaseUrl::parse(url).map_err(|message| ConfigError::Invalid {
                key: "http.public_url".into(),
                message,
            })?,
            None => BaseUrl::from_bound(bound),
        };
        let gateway_base = gateway_base(&config.http)?;
        let jmap = crate::jmap::JmapContext::with_limits(
            services.store.clone(),
            services.backends.directory.clone(),
            config.server.hostname.clone(),
            crate::jmap::Limits::from_config(config),
        )
        .with_offload(services.offload.clone())
        .with_inflight(services.inflight.clone())
        .with_sessions(services.revocation.registry().clone())
        .with_filter(services.filter.clone())
        .with_stream_limits(StreamLimits {
            ping: Duration::from_secs(config.limits.http.websocket_ping_seconds),
            idle: Duration::from_secs(config.limits.http.websocket_idle_seconds),
            shutdown,
        });
        let mut ctx = Self::from_parts(authenticator, default_base, config.http.max_upload_size);
        ctx.auth.gateway_base = gateway_base.map(Arc::new);
        ctx.jmap = Some(Arc::new(jmap));
        ctx.logout = services.raw_validator.clone().map(|validator| {
            Arc::new(LogoutReceiver::new(
                validator,
                services.revocation.clone(),
                LogoutSettings {
                    audiences: config.logout_audiences(),
                    max_age: config.revocation.logout_token_max_age_seconds,
                    leeway: config.oidc.as_ref().map_or(0, |o| o.leeway_seconds),
                },
            ))
        });
        ctx.revocation = Some(services.revocation.clone());
        ctx.admins = config.server.admins.clone();
        ctx.issuer = services.raw_validator.clone();
        Ok(ctx)
    }

    /// For tests and embedders that build the authenticator themselves.
    pub fn from_parts(
        authenticator: HttpAuthenticator,
        default_base: BaseUrl,
        max_upload_size: usize,
    ) -> Self {
        Self {
            auth: AuthState {
                authenticator: Arc::new(authenticator),
                default_base: Arc::new(default_base),
                gateway_base: None,
            },
            max_upload_size,
            jmap: None,
            logout: None,
            revocation: None,
            admins: Vec::new(),
            issuer: None,
        }
    }

    pub fn authenticator(&self) -> &HttpAuthenticator {
        &self.auth.authenticator
    }

    /// `http.public_url`, else `http://<bound addr>`.
    pub fn default_base(&self) -> &BaseUrl {
        &self.auth.default_base
    }
}

/// `http.gateway_public_url` (required with the `x-user` strategy, see `Config::validate`):
/// absolute URLs in answers to gateway requests come from it, never from the request's `Host`
/// or `X-Forwarded-*`, which a proxy fills from what the client sent.
fn gateway_base(http: &crate::config::HttpSection) -> Result<Option<BaseUrl>, ConfigError> {
    http.gateway_public_url
        .as_deref()
        .map(BaseUrl::parse)
        .transpose()
        .map_err(|message| ConfigError::Invalid {
            key: "http.gateway_public_url".into(),
            message,
        })
}

/// The whole application.
pub fn router(ctx: Arc<HttpContext>) -> Router {
    let mut protected = Router::new().route("/whoami", get(whoami)).merge(
        Router::new()
            .route(admin::PATH, post(admin::revoke))
            .with_state(ctx.clone()),
    );
    if let Some(jmap) = &ctx.jmap {
        protected = protected.merge(crate::jmap::router(jmap.clone()));
    }
    let protected = protected.route_layer(from_fn_with_state(ctx.auth.clone(), require_auth));
    let public = Router::new()
        .route(RESOURCE_METADATA_PATH, get(well_known::protected_resource))
        .route(logout::PATH, post(logout::backchannel_logout))
        .with_state(ctx.clone());
    public
        .merge(protected)
        .layer(from_fn_with_state(ctx.clone(), guard))
        .layer(DefaultBodyLimit::max(ctx.max_upload_size))
}

/// Serves until the listener fails. The peer address reaches the auth layer as
/// `ConnectInfo<SocketAddr>` (for `x_user_trusted_sources`).
pub async fn serve(listener: TcpListener, ctx: Arc<HttpContext>) {
    let app = router(ctx).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTP listener stopped");
    }
}

/// Runs before routing: refuses an announced too-large body early, sets the default
/// [`PublicBase`], and caps the body however a handler reads it.
async fn guard(State(ctx): State<Arc<HttpContext>>, req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = announced
        && length > ctx.max_upload_size as u64
    {
        tracing::info!(
            length,
            limit = ctx.max_upload_size,
            "HTTP request refused: body too large"
        );
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {length} bytes exceeds the limit of {} bytes",
                ctx.max_upload_size
            ),
        )
        .into_response();
    }
    let mut req = req.with_limited_body();
    req.extensions_mut()
        .insert(PublicBase(ctx.default_base().to_string()));
    next.run(req).await
}

/// Who the server thinks the caller is: a tiny authenticated route for tests and debugging.
async fn whoami(
    Extension(identity): Extension<HttpIdentity>,
    Extension(base): Extension<PublicBase>,
) -> Json<Value> {
    Json(json!({
        "user": identity.user,
        "strategy": identity.strategy,
        "publicBase": base.0,
    }))
}
