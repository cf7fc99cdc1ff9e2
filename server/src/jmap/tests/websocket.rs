//! RFC 8887 over a real listener: request/response, push after a store append.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;
use crate::auth::request_auth::HttpIdentity;
use crate::web::PublicBase;

/// Serves the JMAP router with every request authenticated as alice.
async fn serve(h: &Harness) -> SocketAddr {
    async fn as_alice(mut req: Request, next: Next) -> axum::response::Response {
        req.extensions_mut().insert(HttpIdentity {
            user: ALICE.into(),
            strategy: "bearer",
            token: None,
        });
        req.extensions_mut()
            .insert(PublicBase("http://test".into()));
        next.run(req).await
    }
    let app = crate::jmap::router(h.ctx.clone()).layer(from_fn(as_alice));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    let deadline = Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout(deadline, ws.next())
            .await
            .expect("a message before the deadline")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn websocket_requests_and_push() {
    let h = harness();
    let addr = serve(&h).await;
    let mut req = format!("ws://{addr}/jmap/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "jmap".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "jmap");

    let acc = h.account(ALICE);
    let request = json!({"@type": "Request", "id": "r1", "using": USING,
        "methodCalls": [["Mailbox/get", {"accountId": acc, "properties": ["role"]}, "0"]]});
    ws.send(Message::text(request.to_string())).await.unwrap();
    let resp = next_json(&mut ws).await;
    assert_eq!(
        (resp["@type"].clone(), resp["requestId"].clone()),
        (json!("Response"), json!("r1"))
    );
    assert_eq!(resp["methodResponses"][0][0], json!("Mailbox/get"));

    ws.send(Message::text("{bad")).await.unwrap();
    let err = next_json(&mut ws).await;
    assert_eq!(err["@type"], json!("RequestError"));
    assert_eq!(err["type"], json!("urn:ietf:params:jmap:error:notJSON"));
    ws.send(Message::text(
        json!({"@type": "Request", "id": "r2", "using": ["urn:x"], "methodCalls": []}).to_string(),
    ))
    .await
    .unwrap();
    let err = next_json(&mut ws).await;
    assert_eq!(
        (err["requestId"].clone(), err["type"].clone()),
        (
            json!("r2"),
            json!("urn:ietf:params:jmap:error:unknownCapability")
        )
    );

    ws.send(Message::text(
        json!({"@type": "WebSocketPushEnable", "dataTypes": ["Email", "Mailbox"]}).to_string(),
    ))
    .await
    .unwrap();
    // Push enable has no reply; a round trip proves the push task is running before we append.
    ws.send(Message::text(json!({"@type": "Request", "id": "r3", "using": USING, "methodCalls": [["Core/echo", {}, "e"]]}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["requestId"], json!("r3"));

    h.deliver(ALICE, "INBOX", "Subject: pushed\n\nhello\n", 5);
    let change = next_json(&mut ws).await;
    assert_eq!(change["@type"], json!("StateChange"));
    let changed = &change["changed"][&acc];
    assert!(
        changed["Email"].is_string() && changed["Mailbox"].is_string(),
        "{change}"
    );
    assert!(changed.get("Thread").is_none(), "Thread was not asked for");
    // The pushed state is what Email/get now reports.
    let get = json!({"@type": "Request", "id": "r4", "using": USING,
        "methodCalls": [["Email/get", {"accountId": acc, "ids": []}, "g"]]});
    ws.send(Message::text(get.to_string())).await.unwrap();
    let resp = next_json(&mut ws).await;
    assert_eq!(resp["methodResponses"][0][1]["state"], changed["Email"]);

    ws.send(Message::text(
        json!({"@type": "WebSocketPushDisable"}).to_string(),
    ))
    .await
    .unwrap();
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn websocket_without_jmap_subprotocol_is_refused() {
    let h = harness();
    let addr = serve(&h).await;
    let err = tokio_tungstenite::connect_async(format!("ws://{addr}/jmap/ws"))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 400);
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Connects as alice, sends `messages` one at a time and reads each reply, until all were
/// answered or the server closed. The JSON replies, and the close frame's code and reason.
pub(super) async fn exchange(
    h: &Harness,
    messages: Vec<String>,
) -> (Vec<Value>, Option<(u16, String)>) {
    let addr = serve(h).await;
    let mut req = format!("ws://{addr}/jmap/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "jmap".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut replies = Vec::new();
    for m in messages {
        if ws.send(Message::text(m)).await.is_err() {
            break;
        }
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a reply before the deadline");
        match msg {
            Some(Ok(Message::Text(t))) => replies.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                let close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                // The server drops the connection after its close: wait for the end, so its
                // connection task (and what it logs when it ends) is done.
                while let Ok(Some(Ok(_))) =
                    tokio::time::timeout(Duration::from_secs(10), ws.next()).await
                {}
                return (replies, close);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (replies, None)
}

#[test]
fn bad_messages_are_logged_within_the_budget_and_too_many_close_the_connection() {
    use crate::jmap::ws::MAX_BAD_MESSAGES;
    use crate::log_limit::FIRST_LINES;
    // One thread runs the test and the server, so the capture sees the server's lines.
    let ((replies, close), log) = crate::testkit::logs::capture(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let h = harness();
                // A good request first: it does not count.
                let mut messages = vec![
                    json!({"@type": "Request", "id": "ok", "using": USING,
                        "methodCalls": [["Core/echo", {}, "e"]]})
                    .to_string(),
                ];
                messages.extend((0..MAX_BAD_MESSAGES + 5).map(|i| format!("{{bad {i}")));
                exchange(&h, messages).await
            })
    });
    let bad = MAX_BAD_MESSAGES as usize;
    assert_eq!(replies.len(), 1 + bad, "{replies:?}");
    assert_eq!(replies[0]["requestId"], json!("ok"));
    assert!(
        replies[1..]
            .iter()
            .all(|r| r["type"] == json!("urn:ietf:params:jmap:error:notJSON")),
        "{replies:?}"
    );
    assert_eq!(close, Some((1008, "too many bad messages".to_string())));
    let first = FIRST_LINES as usize;
    assert_eq!(
        log.matches("JMAP WebSocket message refused").count(),
        first,
        "{log}"
    );
    assert_eq!(
        log.matches("their log lines are suppressed").count(),
        1,
        "{log}"
    );
    let rest = format!("{} more bad-command log lines suppressed", bad - first);
    assert_eq!(log.matches(&rest).count(), 1, "{log}");
    assert_eq!(
        log.matches("JMAP WebSocket closed: too many bad messages")
            .count(),
        1,
        "{log}"
    );
}
