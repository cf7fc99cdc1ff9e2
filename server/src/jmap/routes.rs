//! The axum routes. `crate::web` mounts [`router`] behind its auth layer, which puts
//! [`HttpIdentity`] into the request extensions; [`PublicBase`] gives absolute URLs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::CACHE_CONTROL;
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::JmapContext;
use super::api::{self, Caller};
use super::error::{RequestError, problem};
use super::{blob, eventsource, session, ws};
use crate::auth::request_auth::HttpIdentity;
use crate::web::PublicBase;

/// Routes: session, API, WebSocket, EventSource, upload, download.
pub fn router(ctx: Arc<JmapContext>) -> Router {
    Router::new()
        .route("/.well-known/jmap", get(session_handler))
        .route("/jmap", post(api_handler))
        .route("/jmap/ws", get(ws::handler))
        .route("/jmap/eventsource", get(eventsource::handler))
        .route("/upload/{account_id}", post(blob::upload))
        .route("/upload/{account_id}/", post(blob::upload))
        .route(
            "/download/{account_id}/{blob_id}/{name}",
            get(blob::download),
        )
        .with_state(ctx)
}

/// The authenticated caller and the base URL of this request.
pub struct Authed {
    pub caller: Caller,
    pub base: String,
    /// The OIDC session behind the request (bearer, or forwarded by the gateway), so long-lived
    /// connections can be ended when it is revoked.
    pub token: Option<crate::auth::sasl::TokenSession>,
}

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let Some(identity) = parts.extensions.get::<HttpIdentity>() else {
            // Only reachable if the router is mounted without the auth layer.
            tracing::warn!(path = %parts.uri.path(), "JMAP request without an authenticated identity");
            return Err(problem(StatusCode::UNAUTHORIZED, "authentication required"));
        };
        // Absolute URLs come from configuration (the web layer sets PublicBase), never from the
        // request's Host header.
        let Some(base) = parts.extensions.get::<PublicBase>() else {
            tracing::error!(path = %parts.uri.path(), "JMAP request without a public base URL");
            return Err(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no public base URL configured",
            ));
        };
        let base = base.0.trim_end_matches('/').to_string();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let secure = base.starts_with("https://");
        Ok(Authed {
            caller: Caller::new(&identity.user, peer, secure),
            base,
            token: identity.token.clone(),
        })
    }
}

async fn session_handler(State(ctx): State<Arc<JmapContext>>, authed: Authed) -> Response {
    let body = session::session_json(&ctx, &authed.caller, &authed.base);
    (
        [(
            CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store"),
        )],
        axum::Json(body),
    )
        .into_response()
}

async fn api_handler(State(ctx): State<Arc<JmapContext>>, authed: Authed, body: Body) -> Response {
    match api_request(&ctx, &authed.caller, body).await {
        Ok(response) => axum::Json(response).into_response(),
        Err(e) => {
            tracing::info!(user = %authed.caller.user, error = %e, "JMAP request refused");
            e.into_response()
        }
    }
}

/// One API request, in the order that makes refusals cheap: the caller's request slot before
/// the body is read, the body's bytes reserved against `server.max_in_flight_bytes` as they
/// arrive, then the parsed tree measured and reserved before it is built. The reservation is
/// held until the response is built.
async fn api_request(
    ctx: &JmapContext,
    caller: &Caller,
    body: Body,
) -> Result<serde_json::Map<String, serde_json::Value>, RequestError> {
    let admission = api::admit(ctx, caller)?;
    let mut reservation = ctx.inflight.empty();
    let bytes = read_body(ctx, &mut reservation, body).await?;
    // The walk that reserves the parsed size also checks the limits: parse once, unmeasured.
    api::reserve_parsed(ctx, &mut reservation, &bytes)?;
    let request = api::parse_measured(&bytes)?;
    drop(bytes);
    api::execute_admitted(ctx, caller, &admission, request).await
}

/// The request body, at most `maxSizeRequest` bytes, each chunk reserved before it is kept.
async fn read_body(
    ctx: &JmapContext,
    reservation: &mut crate::inflight::Reservation,
    body: Body,
) -> Result<Vec<u8>, RequestError> {
    use futures_util::StreamExt as _;
    let limit = ctx.limits.max_size_request;
    let too_large = || RequestError::Limit {
        limit: "maxSizeRequest",
        detail: format!("request body over {limit} bytes"),
    };
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            // The web layer's hard body limit ends the stream with an error too.
            RequestError::Limit {
                limit: "maxSizeRequest",
                detail: format!("request body unreadable or too large: {e}"),
            }
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        if !reservation.try_grow(chunk.len()) {
            return Err(api::busy(ctx, chunk.len()));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
