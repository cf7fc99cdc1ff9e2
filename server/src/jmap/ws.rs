//! JMAP over WebSocket (RFC 8887): subprotocol `jmap`, Request/Response/RequestError objects
//! with `@type` and `requestId`, and StateChange push after `WebSocketPushEnable`.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code,
    rejection::WebSocketUpgradeRejection,
};
use axum::response::Response;
use http::StatusCode;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::JmapContext;
use super::api::{self, Caller};
use super::error::{RequestError, problem};
use super::push::{PushStream, parse_types};
use super::routes::Authed;
use crate::auth::revocation::{SessionHandle, ended};
use crate::auth::sasl::TokenSession;

/// Push notifications waiting to be written; a client that reads nothing stalls its own
/// push task, nothing else.
const PUSH_QUEUE: usize = 16;

pub async fn handler(
    State(ctx): State<Arc<JmapContext>>,
    authed: Authed,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(user = %authed.caller.user, error = %e, "JMAP WebSocket refused: not an upgrade");
            return problem(StatusCode::BAD_REQUEST, "a WebSocket upgrade is required");
        }
    };
    let upgrade = upgrade.protocols(["jmap"]);
    if upgrade.selected_protocol().is_none() {
        tracing::info!(user = %authed.caller.user, "JMAP WebSocket refused: no jmap subprotocol");
        return problem(
            StatusCode::BAD_REQUEST,
            "the \"jmap\" WebSocket subprotocol is required",
        );
    }
    let caller = authed.caller;
    let token = authed.token;
    upgrade
        .max_message_size(ctx.limits.max_size_request)
        .on_upgrade(move |socket| run(socket, ctx, caller, token))
}

/// Longest close reason a control frame carries (125 bytes minus the 2-byte code).
const MAX_CLOSE_REASON: usize = 123;

/// Refused messages (not JSON, not a Request, refused requests) after which the connection is
/// closed (1008), as POP3 and ManageSieve close after 10 protocol errors.
pub const MAX_BAD_MESSAGES: u32 = 10;

/// One connection's refused messages: counted, and logged within the same per-connection
/// budget as the other protocols' bad commands.
struct BadMessages {
    count: u32,
    log: crate::log_limit::LogLimit,
}

impl BadMessages {
    fn new() -> Self {
        Self {
            count: 0,
            log: crate::log_limit::LogLimit::new("JMAP-WebSocket"),
        }
    }

    /// A refused message: logged (within the budget) and counted toward the close, unless the
    /// server, not the client, is at fault (`Busy`).
    fn refused(&mut self, caller: &Caller, e: &RequestError) {
        if !matches!(e, RequestError::Busy(_)) {
            self.count += 1;
        }
        if self.log.allow() {
            tracing::info!(user = %caller.user, error = %e, "JMAP WebSocket message refused");
        }
    }
}

async fn run(
    mut socket: WebSocket,
    ctx: Arc<JmapContext>,
    caller: Caller,
    token: Option<TokenSession>,
) {
    tracing::debug!(user = %caller.user, "JMAP WebSocket open");
    let mut live: Option<SessionHandle> = ctx.register("jmap-ws", &caller.user, token);
    let (push_tx, mut push_rx) = mpsc::channel::<String>(PUSH_QUEUE);
    let mut push_task: Option<JoinHandle<()>> = None;
    let limits = ctx.stream_limits().clone();
    let mut shutdown = limits.shutdown.clone();
    // Any frame from the client proves it alive; silence gets a ping, then a close.
    let mut heard = tokio::time::Instant::now();
    let mut pinged = false;
    let mut bad = BadMessages::new();
    loop {
        let wake_at = if pinged {
            heard + limits.idle
        } else {
            heard + limits.ping.min(limits.idle)
        };
        tokio::select! {
            msg = socket.recv() => {
                heard = tokio::time::Instant::now();
                pinged = false;
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.as_str().to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(user = %caller.user, error = %e, "JMAP WebSocket read failed");
                        break;
                    }
                };
                let reply = handle(&ctx, &caller, &text, &push_tx, &mut push_task, &mut bad).await;
                drop(text);
                if let Some(reply) = reply
                    && socket.send(Message::text(reply)).await.is_err()
                {
                    break;
                }
                if bad.count >= MAX_BAD_MESSAGES {
                    // Always logged: it says why the connection ends.
                    tracing::info!(user = %caller.user, bad = bad.count, "JMAP WebSocket closed: too many bad messages");
                    let frame = CloseFrame {
                        code: close_code::POLICY,
                        reason: "too many bad messages".into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
            }
            Some(change) = push_rx.recv() => {
                if socket.send(Message::text(change)).await.is_err() {
                    break;
                }
            }
            reason = ended(&mut live) => {
                tracing::info!(user = %caller.user, code = reason.code(), "JMAP WebSocket ended");
                let mut text = reason.text();
                while text.len() > MAX_CLOSE_REASON {
                    text.pop();
                }
                // 1008: policy violation, the RFC 6455 code for "no longer allowed".
                let frame = CloseFrame {
                    code: close_code::POLICY,
                    reason: text.into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
            () = tokio::time::sleep_until(wake_at) => {
                if !pinged && limits.ping < limits.idle {
                    pinged = true;
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                    continue;
                }
                tracing::info!(user = %caller.user, idle_seconds = limits.idle.as_secs(), "JMAP WebSocket closed: no traffic from the client");
                let frame = CloseFrame {
                    code: close_code::AWAY,
                    reason: "idle for too long".into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
            () = shutdown.requested() => {
                tracing::info!(user = %caller.user, "JMAP WebSocket closed: shutdown");
                let frame = CloseFrame {
                    code: close_code::AWAY,
                    reason: "server shutting down".into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    if let Some(task) = push_task {
        task.abort();
    }
    tracing::debug!(user = %caller.user, "JMAP WebSocket closed");
}

fn request_error(request_id: Option<&Value>, e: &RequestError) -> String {
    let mut obj = e.to_json();
    obj.insert("@type".into(), json!("RequestError"));
    if let Some(id) = request_id {
        obj.insert("requestId".into(), id.clone());
    }
    Value::Object(obj).to_string()
}

/// One client message; the reply to send, if any. Refusals are counted in `bad`.
async fn handle(
    ctx: &Arc<JmapContext>,
    caller: &Caller,
    text: &str,
    push_tx: &mpsc::Sender<String>,
    push_task: &mut Option<JoinHandle<()>>,
    bad: &mut BadMessages,
) -> Option<String> {
    let mut refuse = |id: Option<&Value>, e: RequestError| {
        bad.refused(caller, &e);
        Some(request_error(id, &e))
    };
    // The message and the tree parsed from it count against the in-flight budget until the
    // reply is built; the tree is measured (and refused if too big) before it is built.
    let mut reservation = ctx.inflight.empty();
    if !reservation.try_grow(text.len()) {
        return refuse(None, api::busy(ctx, text.len()));
    }
    if let Err(e) = api::reserve_parsed(ctx, &mut reservation, text.as_bytes()) {
        return refuse(None, e);
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return refuse(None, RequestError::NotJson(e.to_string())),
    };
    let Value::Object(mut obj) = value else {
        return refuse(None, RequestError::NotRequest("not an object".into()));
    };
    let kind = obj.remove("@type");
    match kind.as_ref().and_then(Value::as_str) {
        Some("Request") => {
            let id = obj.remove("id");
            let result = match api::request_from_value(Value::Object(obj)) {
                Ok(req) => api::execute(ctx, caller, req).await,
                Err(e) => Err(e),
            };
            Some(match result {
                Ok(mut response) => {
                    response.insert("@type".into(), json!("Response"));
                    if let Some(id) = id {
                        response.insert("requestId".into(), id);
                    }
                    Value::Object(response).to_string()
                }
                Err(e) => return refuse(id.as_ref(), e),
            })
        }
        Some("WebSocketPushEnable") => {
            let types = match obj.get("dataTypes") {
                None | Some(Value::Null) => None,
                Some(v) => match serde_json::from_value::<Vec<String>>(v.clone()) {
                    Ok(list) => parse_types(Some(list)),
                    Err(e) => return refuse(None, RequestError::NotRequest(e.to_string())),
                },
            };
            let push_state = obj
                .get("pushState")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(old) = push_task.take() {
                old.abort();
            }
            let mut stream = PushStream::new(ctx, caller, types);
            let tx = push_tx.clone();
            *push_task = Some(tokio::spawn(async move {
                // A client resuming from an older pushState gets the current states at once.
                if push_state.is_some_and(|s| s != stream.push_state_now())
                    && tx.send(stream.current().to_string()).await.is_err()
                {
                    return;
                }
                while let Some(change) = stream.next().await {
                    if tx.send(change.to_string()).await.is_err() {
                        return;
                    }
                }
            }));
            None
        }
        Some("WebSocketPushDisable") => {
            if let Some(old) = push_task.take() {
                old.abort();
            }
            None
        }
        _ => {
            let mut detail = Map::new();
            detail.insert("@type".into(), kind.clone().unwrap_or(Value::Null));
            refuse(
                obj.get("id"),
                RequestError::NotRequest(format!("unknown @type {}", Value::Object(detail))),
            )
        }
    }
}
