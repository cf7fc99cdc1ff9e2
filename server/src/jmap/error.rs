//! The three error levels of JMAP: request (RFC 8620 §3.6.1, problem JSON), method (§3.6.2,
//! an `error` response) and per-record SetError (§5.3).

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

/// A request-level error: the whole request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not I-JSON.
    #[error("request is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not a Request object.
    #[error("request is not a JMAP Request object: {0}")]
    NotRequest(String),
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// A server limit (`maxCallsInRequest`, `maxSizeRequest`, `maxConcurrentRequests`).
    #[error("request exceeds the server limit {limit}: {detail}")]
    Limit { limit: &'static str, detail: String },
    /// The server-wide budget of bytes in flight (`server.max_in_flight_bytes`) is spent: not
    /// a limit of the session object the client could respect, so `503` with `Retry-After`.
    #[error("server busy, try again later: {0}")]
    Busy(String),
}

/// Seconds a refused client is asked to wait (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u32 = 5;

impl RequestError {
    pub fn type_uri(&self) -> &'static str {
        match self {
            RequestError::NotJson(_) => "urn:ietf:params:jmap:error:notJSON",
            RequestError::NotRequest(_) => "urn:ietf:params:jmap:error:notRequest",
            RequestError::UnknownCapability(_) => "urn:ietf:params:jmap:error:unknownCapability",
            RequestError::Limit { .. } => "urn:ietf:params:jmap:error:limit",
            // RFC 7807: the status code says it all.
            RequestError::Busy(_) => "about:blank",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::Limit {
                limit: "maxConcurrentRequests",
                ..
            } => StatusCode::TOO_MANY_REQUESTS,
            RequestError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The RFC 7807 problem object (also the body of an RFC 8887 RequestError).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut obj = Map::new();
        obj.insert("type".into(), json!(self.type_uri()));
        obj.insert("status".into(), json!(self.status().as_u16()));
        obj.insert("detail".into(), json!(self.to_string()));
        if let RequestError::Limit { limit, .. } = self {
            obj.insert("limit".into(), json!(limit));
        }
        obj
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let mut response = problem_response(self.status(), Value::Object(self.to_json()));
        if matches!(self, RequestError::Busy(_)) {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

/// An `application/problem+json` reply.
pub fn problem_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// A plain RFC 7807 problem for the non-API routes (upload, download, WebSocket handshake).
pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    problem_response(
        status,
        json!({"type": "about:blank", "status": status.as_u16(), "detail": detail.into()}),
    )
}

/// A method-level error, returned as `["error", {type, description}, callId]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodError {
    pub kind: &'static str,
    pub description: Option<String>,
    /// Extra members, e.g. `properties` for `invalidArguments` details.
    pub extra: Map<String, Value>,
}

impl MethodError {
    fn new(kind: &'static str, description: Option<String>) -> Self {
        Self {
            kind,
            description,
            extra: Map::new(),
        }
    }
    pub fn unknown_method(name: &str) -> Self {
        Self::new("unknownMethod", Some(format!("unknown method {name:?}")))
    }
    pub fn invalid_arguments(description: impl Into<String>) -> Self {
        Self::new("invalidArguments", Some(description.into()))
    }
    pub fn invalid_result_reference(description: impl Into<String>) -> Self {
        Self::new("invalidResultReference", Some(description.into()))
    }
    pub fn account_not_found() -> Self {
        Self::new("accountNotFound", None)
    }
    pub fn cannot_calculate_changes() -> Self {
        Self::new("cannotCalculateChanges", None)
    }
    pub fn request_too_large(description: impl Into<String>) -> Self {
        Self::new("requestTooLarge", Some(description.into()))
    }
    pub fn state_mismatch() -> Self {
        Self::new("stateMismatch", None)
    }
    pub fn unsupported_filter(description: impl Into<String>) -> Self {
        Self::new("unsupportedFilter", Some(description.into()))
    }
    pub fn unsupported_sort(description: impl Into<String>) -> Self {
        Self::new("unsupportedSort", Some(description.into()))
    }
    pub fn anchor_not_found() -> Self {
        Self::new("anchorNotFound", None)
    }
    pub fn server_unavailable(description: impl Into<String>) -> Self {
        Self::new("serverUnavailable", Some(description.into()))
    }

    pub fn to_json(&self) -> Value {
        let mut obj = self.extra.clone();
        obj.insert("type".into(), json!(self.kind));
        if let Some(d) = &self.description {
            obj.insert("description".into(), json!(d));
        }
        Value::Object(obj)
    }
}

/// A per-record failure in a `/set` (or `/import`) response.
#[derive(Debug, Clone, PartialEq)]
pub struct SetError {
    pub kind: &'static str,
    pub description: Option<String>,
    pub extra: Map<String, Value>,
}

impl SetError {
    pub fn new(kind: &'static str, description: impl Into<String>) -> Self {
        Self {
            kind,
            description: Some(description.into()),
            extra: Map::new(),
        }
    }
    pub fn not_found() -> Self {
        Self {
            kind: "notFound",
            description: None,
            extra: Map::new(),
        }
    }
    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new("forbidden", description)
    }
    /// `invalidProperties` naming the offending properties.
    pub fn invalid_properties(properties: &[&str], description: impl Into<String>) -> Self {
        Self::new("invalidProperties", description).with("properties", json!(properties))
    }
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    pub fn to_json(&self) -> Value {
        let mut obj = self.extra.clone();
        obj.insert("type".into(), json!(self.kind));
        if let Some(d) = &self.description {
            obj.insert("description".into(), json!(d));
        }
        Value::Object(obj)
    }
}
