//! The axum middleware around [`super::HttpAuthenticator`]: `Ok` continues with
//! [`super::HttpIdentity`] and [`crate::public_url::PublicBase`] in the extensions, `Err` is the
//! finished 400/401/503. Mount with `route_layer`, so unknown paths stay 404.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::HttpAuthenticator;
use crate::public_url::{BaseUrl, PublicBase};

/// What the middleware needs: the strategies and the default public base.
#[derive(Clone)]
pub struct AuthState {
    pub authenticator: Arc<HttpAuthenticator>,
    /// `http.public_url`, else `http://<bound addr>`.
    pub default_base: Arc<BaseUrl>,
    /// `http.gateway_public_url`: the base for requests that came through the gateway.
    pub gateway_base: Option<Arc<BaseUrl>>,
}

/// `axum::middleware::from_fn_with_state(state, require_auth)`.
pub async fn require_auth(
    State(state): State<AuthState>,
    mut req: Request,
    next: Next,
) -> Response {
    // Absent outside a real listener (e.g. `oneshot` tests without MockConnectInfo); then no
    // source network can match.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match state.authenticator.authenticate(req.headers(), peer).await {
        Ok(identity) => {
            let base = PublicBase::for_request(
                &state.default_base,
                state.gateway_base.as_deref(),
                identity.via_gateway(),
            );
            // The gateway secret is a credential: handlers have no use for it.
            req.headers_mut()
                .remove(&state.authenticator.settings().x_user_secret_header);
            req.extensions_mut().insert(base);
            req.extensions_mut().insert(identity);
            next.run(req).await
        }
        Err(rejection) => state
            .authenticator
            .rejection_response(&rejection, &state.default_base.to_string()),
    }
}
