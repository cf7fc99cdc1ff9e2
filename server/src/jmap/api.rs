//! The API request envelope (RFC 8620 §3.3-3.7): parsing, `using` and limit checks, result
//! references (`#arg` with a ResultReference), creation ids, and method dispatch in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use tokio::sync::OwnedSemaphorePermit;

use super::error::{MethodError, RequestError};
use super::methods::{self, Call};
use super::state::Tracker;
use super::{JmapContext, budget, session};
use crate::inflight::Reservation;

pub const CORE: &str = "urn:ietf:params:jmap:core";
pub const MAIL: &str = "urn:ietf:params:jmap:mail";
pub const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
pub const WEBSOCKET: &str = "urn:ietf:params:jmap:websocket";
/// This server's own limits beyond RFC 8620's (filter size, parsed request size). A vendor
/// capability: clients that do not know it ignore it; it names no methods.
pub const LIMITS: &str = "https://mail-oidc.example/jmap/limits";
/// Every capability the session advertises (and `using` may name).
pub const CAPABILITIES: [&str; 5] = [CORE, MAIL, SUBMISSION, WEBSOCKET, LIMITS];

/// Who is calling, from the HTTP layer.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub account_id: String,
    pub peer: Option<SocketAddr>,
    /// The client reached us over HTTPS (per the public base URL): `Received: ... with HTTPS`.
    pub secure: bool,
}

impl Caller {
    pub fn new(user: &str, peer: Option<SocketAddr>, secure: bool) -> Self {
        Self {
            user: user.to_string(),
            account_id: super::ids::account_id(user),
            peer,
            secure,
        }
    }
}

/// A parsed Request object.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub using: Vec<String>,
    pub method_calls: Vec<(String, Map<String, Value>, String)>,
    #[serde(default)]
    pub created_ids: Option<HashMap<String, String>>,
}

/// Body bytes -> Request: `notJSON` if not JSON, the `limit` error if its parsed tree would be
/// over `maxValuesInRequest` / `maxDepthInRequest`, `notRequest` if not the right shape.
// The server parses after `reserve_parsed`'s walk; this one-step form serves the fuzz targets and
// tests, which hold no reservation.
#[cfg(any(test, feature = "fuzzing"))]
pub fn parse_request(body: &[u8], limits: &super::Limits) -> Result<Request, RequestError> {
    budget::measure(body, limits)?;
    parse_measured(body)
}

/// Body bytes that [`budget::measure`] (or [`reserve_parsed`]) already accepted -> Request,
/// without walking them a second time.
pub fn parse_measured(body: &[u8]) -> Result<Request, RequestError> {
    serde_json::from_slice(body)
        .map_err(|e| RequestError::NotJson(e.to_string()))
        .and_then(request_from_value)
}

/// Reserves, against the server-wide in-flight budget, what parsing `body` will build (on top
/// of whatever `reservation` already holds, e.g. the body itself): `Busy` when the budget is
/// spent. The walk refuses bad or oversized JSON first, so a refused request costs nothing.
pub fn reserve_parsed(
    ctx: &JmapContext,
    reservation: &mut Reservation,
    body: &[u8],
) -> Result<(), RequestError> {
    let shape = budget::measure(body, &ctx.limits)?;
    if reservation.try_grow(shape.estimated_bytes) {
        Ok(())
    } else {
        Err(busy(ctx, shape.estimated_bytes))
    }
}

/// The in-flight budget cannot take `bytes` more.
pub fn busy(ctx: &JmapContext, bytes: usize) -> RequestError {
    RequestError::Busy(format!(
        "{bytes} more bytes in flight would pass the server's budget of {} bytes",
        ctx.inflight.limit()
    ))
}

/// One of the caller's `maxConcurrentRequests` slots, held until the response is built.
pub struct Admission {
    tracker: Arc<Tracker>,
    _permit: OwnedSemaphorePermit,
}

/// Takes a request slot of the caller before anything of the request is read or parsed, so
/// requests over `maxConcurrentRequests` cost nothing.
pub fn admit(ctx: &JmapContext, caller: &Caller) -> Result<Admission, RequestError> {
    let tracker = ctx.tracker(&caller.user);
    let permit = tracker.requests.clone().try_acquire_owned().map_err(|_| {
        tracing::info!(user = %caller.user, "JMAP request refused: too many concurrent requests");
        RequestError::Limit {
            limit: "maxConcurrentRequests",
            detail: format!(
                "at most {} concurrent requests",
                ctx.limits.max_concurrent_requests
            ),
        }
    })?;
    Ok(Admission {
        tracker,
        _permit: permit,
    })
}

pub fn request_from_value(value: Value) -> Result<Request, RequestError> {
    serde_json::from_value(value).map_err(|e| RequestError::NotRequest(e.to_string()))
}

/// Runs a whole request in a fresh request slot; the Response object on success.
pub async fn execute(
    ctx: &JmapContext,
    caller: &Caller,
    request: Request,
) -> Result<Map<String, Value>, RequestError> {
    let admission = admit(ctx, caller)?;
    execute_admitted(ctx, caller, &admission, request).await
}

/// Runs a whole request in the slot `admission` holds.
pub async fn execute_admitted(
    ctx: &JmapContext,
    caller: &Caller,
    admission: &Admission,
    request: Request,
) -> Result<Map<String, Value>, RequestError> {
    if let Some(unknown) = request
        .using
        .iter()
        .find(|c| !super::CAPABILITIES.contains(&c.as_str()))
    {
        tracing::info!(user = %caller.user, capability = %unknown, "JMAP request refused: unknown capability");
        return Err(RequestError::UnknownCapability(unknown.clone()));
    }
    if request.method_calls.len() > ctx.limits.max_calls_in_request {
        tracing::info!(user = %caller.user, calls = request.method_calls.len(), "JMAP request refused: too many calls");
        return Err(RequestError::Limit {
            limit: "maxCallsInRequest",
            detail: format!(
                "{} method calls, at most {} allowed",
                request.method_calls.len(),
                ctx.limits.max_calls_in_request
            ),
        });
    }
    let tracker = &admission.tracker;

    let echo_created = request.created_ids.is_some();
    let mut created_ids = request.created_ids.unwrap_or_default();
    let mut responses: Vec<(String, Value, String)> = Vec::new();
    for (name, args, call_id) in request.method_calls {
        let outputs = match resolve_references(args, &responses) {
            Err(e) => vec![("error".to_string(), e.to_json())],
            Ok(args) => match methods::capability_of(&name) {
                Some(cap) if request.using.iter().any(|u| u == cap) => {
                    let mut call = Call {
                        ctx,
                        caller,
                        tracker,
                        created_ids: &mut created_ids,
                    };
                    methods::dispatch(&mut call, &name, args).await
                }
                Some(cap) => {
                    let e = MethodError::unknown_method(&name);
                    let e = MethodError {
                        description: Some(format!("{name} needs {cap} in \"using\"")),
                        ..e
                    };
                    vec![("error".to_string(), e.to_json())]
                }
                None => vec![(
                    "error".to_string(),
                    MethodError::unknown_method(&name).to_json(),
                )],
            },
        };
        for (n, v) in outputs {
            responses.push((n, v, call_id.clone()));
        }
    }
    let mut out = Map::new();
    out.insert(
        "methodResponses".into(),
        Value::Array(
            responses
                .into_iter()
                .map(|(n, v, id)| json!([n, v, id]))
                .collect(),
        ),
    );
    if echo_created {
        out.insert("createdIds".into(), json!(created_ids));
    }
    out.insert(
        "sessionState".into(),
        json!(session::session_state(ctx, &caller.user)),
    );
    Ok(out)
}

/// Replaces every `#name: ResultReference` argument by the value it points at (RFC 8620 §3.7).
pub fn resolve_references(
    args: Map<String, Value>,
    responses: &[(String, Value, String)],
) -> Result<Map<String, Value>, MethodError> {
    let mut out = Map::with_capacity(args.len());
    let mut refs = Vec::new();
    for (key, value) in args {
        match key.strip_prefix('#') {
            Some(plain) => refs.push((plain.to_string(), value)),
            None => {
                out.insert(key, value);
            }
        }
    }
    for (plain, value) in refs {
        if out.contains_key(&plain) {
            return Err(MethodError::invalid_arguments(format!(
                "argument {plain:?} given both plainly and as a reference"
            )));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ResultReference {
            result_of: String,
            name: String,
            path: String,
        }
        let r: ResultReference = serde_json::from_value(value).map_err(|e| {
            MethodError::invalid_result_reference(format!("#{plain}: not a ResultReference: {e}"))
        })?;
        let (name, result, _) = responses
            .iter()
            .find(|(_, _, id)| *id == r.result_of)
            .ok_or_else(|| {
                MethodError::invalid_result_reference(format!(
                    "#{plain}: no earlier response with call id {:?}",
                    r.result_of
                ))
            })?;
        if *name != r.name {
            return Err(MethodError::invalid_result_reference(format!(
                "#{plain}: response {:?} is {name:?}, not {:?}",
                r.result_of, r.name
            )));
        }
        let resolved = evaluate_pointer(result, &r.path).ok_or_else(|| {
            MethodError::invalid_result_reference(format!(
                "#{plain}: path {:?} does not resolve",
                r.path
            ))
        })?;
        out.insert(plain, resolved);
    }
    Ok(out)
}

/// JSON Pointer (RFC 6901) with JMAP's `*`: applied to every array item, results flattened.
pub fn evaluate_pointer(value: &Value, path: &str) -> Option<Value> {
    if path.is_empty() {
        return Some(value.clone());
    }
    let rest = path.strip_prefix('/')?;
    let tokens: Vec<String> = rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    walk(value, &tokens)
}

fn walk(value: &Value, tokens: &[String]) -> Option<Value> {
    let Some((token, rest)) = tokens.split_first() else {
        return Some(value.clone());
    };
    match value {
        Value::Array(items) if token == "*" => {
            let mut out = Vec::new();
            for item in items {
                match walk(item, rest)? {
                    Value::Array(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            Some(Value::Array(out))
        }
        Value::Array(items) => {
            // RFC 6901: decimal without leading zeros.
            if token.len() > 1 && token.starts_with('0') {
                return None;
            }
            let index: usize = token.parse().ok()?;
            walk(items.get(index)?, rest)
        }
        Value::Object(map) => walk(map.get(token)?, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn responses() -> Vec<(String, Value, String)> {
        vec![
            (
                "Email/query".into(),
                json!({"ids": ["e1", "e2"], "accountId": "a"}),
                "c0".into(),
            ),
            (
                "Email/get".into(),
                json!({"list": [{"threadId": "t1", "x": ["a", "b"]}, {"threadId": "t2", "x": ["c"]}]}),
                "c1".into(),
            ),
        ]
    }

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn pointer_with_wildcards() {
        let v = json!({"list": [{"a": 1, "b": [1, 2]}, {"a": 2, "b": [3]}], "a/b": 5, "m~n": 6});
        assert_eq!(evaluate_pointer(&v, "/list/*/a"), Some(json!([1, 2])));
        assert_eq!(evaluate_pointer(&v, "/list/*/b"), Some(json!([1, 2, 3])));
        assert_eq!(evaluate_pointer(&v, "/list/1/a"), Some(json!(2)));
        assert_eq!(evaluate_pointer(&v, "/a~1b"), Some(json!(5)));
        assert_eq!(evaluate_pointer(&v, "/m~0n"), Some(json!(6)));
        assert_eq!(evaluate_pointer(&v, ""), Some(v.clone()));
        assert_eq!(evaluate_pointer(&v, "/list/01/a"), None);
        assert_eq!(evaluate_pointer(&v, "/list/9"), None);
        assert_eq!(evaluate_pointer(&v, "list"), None);
        assert_eq!(evaluate_pointer(&v, "/list/*/missing"), None);
    }

    #[test]
    fn references_resolve() {
        let a = args(json!({
            "accountId": "a",
            "#ids": {"resultOf": "c0", "name": "Email/query", "path": "/ids"},
            "#threads": {"resultOf": "c1", "name": "Email/get", "path": "/list/*/threadId"}
        }));
        let out = resolve_references(a, &responses()).unwrap();
        assert_eq!(out["ids"], json!(["e1", "e2"]));
        assert_eq!(out["threads"], json!(["t1", "t2"]));
        assert_eq!(out["accountId"], json!("a"));
    }

    #[test]
    fn bad_references_fail() {
        let cases = [
            json!({"#ids": {"resultOf": "nope", "name": "Email/query", "path": "/ids"}}),
            json!({"#ids": {"resultOf": "c0", "name": "Email/get", "path": "/ids"}}),
            json!({"#ids": {"resultOf": "c0", "name": "Email/query", "path": "/nope"}}),
            json!({"#ids": "not an object"}),
        ];
        for c in cases {
            let e = resolve_references(args(c.clone()), &responses()).unwrap_err();
            assert_eq!(e.kind, "invalidResultReference", "{c}");
        }
        let both =
            json!({"ids": [], "#ids": {"resultOf": "c0", "name": "Email/query", "path": "/ids"}});
        let e = resolve_references(args(both), &responses()).unwrap_err();
        assert_eq!(e.kind, "invalidArguments");
    }

    #[test]
    fn request_parsing_errors() {
        let limits = crate::jmap::Limits::new(1 << 20);
        let parse_request = |b: &[u8]| super::parse_request(b, &limits);
        assert!(matches!(parse_request(b"{"), Err(RequestError::NotJson(_))));
        assert!(matches!(
            parse_request(b"\xff"),
            Err(RequestError::NotJson(_))
        ));
        assert!(matches!(
            parse_request(b"[]"),
            Err(RequestError::NotRequest(_))
        ));
        assert!(matches!(
            parse_request(br#"{"using": [], "methodCalls": [["a", {}]]}"#),
            Err(RequestError::NotRequest(_))
        ));
        let ok = parse_request(br#"{"using": [], "methodCalls": [["Core/echo", {"x": 1}, "c"]]}"#)
            .unwrap();
        assert_eq!(ok.method_calls[0].2, "c");
    }
}
