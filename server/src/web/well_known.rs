//! Public documents under `/.well-known/` (no authentication).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use serde_json::{Value, json};

use super::{HttpContext, PublicBase};
use crate::auth::oidc::TokenValidator;
use crate::auth::request_auth::Problem;

const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";

/// RFC 9728 protected-resource metadata. 404 when `bearer` is not enabled: no authorization
/// server protects this resource then.
pub async fn protected_resource(
    State(ctx): State<Arc<HttpContext>>,
    Extension(base): Extension<PublicBase>,
) -> Response {
    match ctx.authenticator().bearer_validator() {
        Some(validator) => Json(resource_metadata(&base.0, validator.as_ref())).into_response(),
        None => Problem::new(
            StatusCode::NOT_FOUND,
            "bearer authentication is not enabled on this server",
        )
        .into_response(),
    }
}

/// The document for `base`. The issuer is the validator's (configured or discovered); before
/// discovery, it is derived from the discovery URL.
pub fn resource_metadata(base: &str, validator: &dyn TokenValidator) -> Value {
    let issuer = validator
        .issuer()
        .or_else(|| issuer_from_discovery_url(&validator.discovery_url()));
    let scopes: Vec<String> = validator
        .required_scope()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    json!({
        "resource": base,
        "authorization_servers": issuer.into_iter().collect::<Vec<_>>(),
        "bearer_methods_supported": ["header"],
        "scopes_supported": scopes,
    })
}

/// `https://idp/realm/.well-known/openid-configuration` -> `https://idp/realm` (OIDC
/// Discovery §4: the issuer is the URL with that suffix removed).
pub fn issuer_from_discovery_url(url: &str) -> Option<String> {
    url.strip_suffix(OPENID_CONFIGURATION)
        .filter(|issuer| !issuer.is_empty())
        .map(str::to_string)
}
