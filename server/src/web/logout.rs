//! `POST /backchannel-logout` (OpenID Connect Back-Channel Logout 1.0 §2.5): form field
//! `logout_token`, no HTTP authentication (the signed token is the credential). 200 with
//! `Cache-Control: no-store` once the logout is recorded; 400 with an OAuth error body when the
//! token is refused; 503 when the IdP's keys or the revocation store cannot be reached.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use super::HttpContext;
use crate::auth::request_auth::RETRY_AFTER_SECONDS;
use crate::auth::revocation::LogoutError;

pub const PATH: &str = "/backchannel-logout";

/// The form's single `logout_token`, or why the request is not a logout request.
pub fn logout_token_from_form(headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err("the body must be application/x-www-form-urlencoded".into());
    }
    let mut tokens = url::form_urlencoded::parse(body)
        .filter(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    match (tokens.next(), tokens.next()) {
        (Some(t), None) if !t.is_empty() => Ok(t),
        (Some(_), Some(_)) => Err("more than one logout_token".into()),
        _ => Err("no logout_token in the form".into()),
    }
}

fn answer(status: StatusCode, body: Option<serde_json::Value>) -> Response {
    let mut response = match body {
        Some(b) => (status, axum::Json(b)).into_response(),
        None => status.into_response(),
    };
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn invalid_request(description: &str) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        Some(json!({"error": "invalid_request", "error_description": description})),
    )
}

pub async fn backchannel_logout(
    State(ctx): State<Arc<HttpContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(receiver) = &ctx.logout else {
        return answer(StatusCode::NOT_FOUND, None);
    };
    let token = match logout_token_from_form(&headers, &body) {
        Ok(t) => t,
        Err(why) => {
            tracing::info!(reason = %why, "back-channel logout refused");
            return invalid_request(&why);
        }
    };
    match receiver.receive(&token).await {
        Ok(revocation) => {
            tracing::info!(?revocation, "back-channel logout accepted");
            answer(StatusCode::OK, None)
        }
        Err(LogoutError::Invalid(e)) => {
            tracing::info!(reason = %e, "back-channel logout refused");
            invalid_request(&e.to_string())
        }
        Err(LogoutError::Unavailable(why)) => {
            tracing::warn!(reason = %why, "back-channel logout could not be recorded");
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(json!({"error": "temporarily_unavailable", "error_description": why})),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::headers;

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    #[test]
    fn form_parsing() {
        assert_eq!(
            logout_token_from_form(&headers(&[FORM]), b"logout_token=a.b.c&x=1"),
            Ok("a.b.c".into())
        );
        let charset = headers(&[(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )]);
        assert!(logout_token_from_form(&charset, b"logout_token=t").is_ok());
        for (h, body) in [
            (headers(&[FORM]), &b"logout_token=a&logout_token=b"[..]),
            (headers(&[FORM]), b"token=a"),
            (headers(&[FORM]), b"logout_token="),
            (
                headers(&[("content-type", "application/json")]),
                b"logout_token=a",
            ),
            (headers(&[]), b"logout_token=a"),
        ] {
            assert!(logout_token_from_form(&h, body).is_err(), "{body:?}");
        }
    }
}
