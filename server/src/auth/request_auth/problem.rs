//! RFC 7807 problem details: the body of every HTTP error this server produces itself.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";
/// `Retry-After` of every `503` this server answers (README promises one on each).
pub const RETRY_AFTER_SECONDS: u64 = 10;

/// `{type, title, status, detail}`. `type` is `about:blank`, so `title` is the status phrase
/// (RFC 7807 §4.2) and `detail` says what went wrong; it never contains a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip)]
    status_code: StatusCode,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            status_code: status,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        // Serializing four strings cannot fail; the fallback only avoids an unwrap.
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status_code;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // Every 503 is temporary by definition: here once, so no handler can forget it.
        if self.status_code == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}
