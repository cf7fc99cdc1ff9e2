//! Long-lived JMAP connections end when their session is revoked: the WebSocket gets a Close
//! frame with code 1008, an EventSource stream finishes. The identity (with its OIDC session)
//! is put in the request extensions as the auth layer would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tower::ServiceExt;

use super::*;
use crate::auth::request_auth::HttpIdentity;
use crate::auth::revocation::{
    MemoryRevocationStore, Revocation, RevocationService, SessionRegistry,
};
use crate::testkit::revocation::{now, token_session};
use crate::web::PublicBase;

const ISS: &str = "https://idp.example.com/realms/mail";
const DEADLINE: Duration = Duration::from_secs(10);

struct Setup {
    ctx: Arc<JmapContext>,
    service: Arc<RevocationService>,
}

fn setup() -> Setup {
    let registry = SessionRegistry::new(false);
    let service = RevocationService::new(
        Arc::new(MemoryRevocationStore::new(Duration::from_secs(3600))),
        registry.clone(),
        false,
    );
    let ctx = Arc::new(
        JmapContext::new(
            Arc::new(MemoryStore::new()),
            TestDirectory::new(),
            "mx.example.com".into(),
            1024 * 1024,
        )
        .with_sessions(registry),
    );
    Setup { ctx, service }
}

/// The JMAP router as alice, bearer-authenticated in IdP session `sid`.
fn app(ctx: &Arc<JmapContext>, sid: &str) -> axum::Router {
    crate::jmap::router(ctx.clone())
        .layer(Extension(PublicBase("http://test".into())))
        .layer(Extension(HttpIdentity {
            user: ALICE.into(),
            strategy: "bearer",
            token: Some(token_session(ISS, "sub-alice", Some(sid), now() - 10)),
        }))
}

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(addr: SocketAddr) -> Ws {
    let mut req = format!("ws://{addr}/jmap/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "jmap".parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    // One round trip: the connection is running (and registered) once it answers.
    echo(&mut ws, "ready").await;
    ws
}

async fn echo(ws: &mut Ws, id: &str) {
    let request = json!({"@type": "Request", "id": id, "using": USING,
        "methodCalls": [["Core/echo", {}, "e"]]});
    ws.send(Message::text(request.to_string()))
        .await
        .expect("send");
    let msg = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("reply within the deadline")
        .expect("open")
        .expect("no error");
    let Message::Text(text) = msg else {
        panic!("expected a text reply, got {msg:?}");
    };
    let reply: serde_json::Value = serde_json::from_str(text.as_str()).expect("JSON");
    assert_eq!(reply["requestId"], json!(id));
}

fn logout(sid: &str) -> Revocation {
    Revocation::Session {
        issuer: ISS.into(),
        sid: sid.into(),
    }
}

#[tokio::test]
async fn revoked_websocket_gets_close_1008_and_others_stay_open() {
    let s = setup();
    let mut gone = open(serve(app(&s.ctx, "ws-gone")).await).await;
    let mut kept = open(serve(app(&s.ctx, "ws-kept")).await).await;
    assert_eq!(s.service.registry().sessions().len(), 2);

    assert_eq!(s.service.revoke(logout("ws-gone")).await, Ok(1));
    let msg = tokio::time::timeout(DEADLINE, gone.next())
        .await
        .expect("a frame within the deadline")
        .expect("a frame before the end")
        .expect("no error");
    match msg {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Policy, "1008");
            assert_eq!(u16::from(frame.code), 1008);
            assert_eq!(
                frame.reason.as_str(),
                "Session revoked: the session was logged out at the identity provider."
            );
        }
        other => panic!("expected a Close frame, got {other:?}"),
    }
    // Nothing follows the close.
    let rest = tokio::time::timeout(DEADLINE, gone.next())
        .await
        .expect("the stream ends");
    assert!(
        !matches!(rest, Some(Ok(Message::Text(_)))),
        "no data after the close: {rest:?}"
    );

    echo(&mut kept, "still-here").await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while s.service.registry().len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended socket never deregistered"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn revoked_eventsource_stream_ends() {
    let s = setup();
    let req = Request::builder()
        .uri("/jmap/eventsource?types=*&closeafter=no&ping=0")
        .body(Body::empty())
        .expect("request");
    let response = app(&s.ctx, "es-gone")
        .oneshot(req)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "an event stream"
    );
    let other = app(&s.ctx, "es-kept")
        .oneshot(
            Request::builder()
                .uri("/jmap/eventsource?types=*&closeafter=no&ping=0")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(s.service.registry().sessions().len(), 2, "both registered");

    assert_eq!(s.service.revoke(logout("es-gone")).await, Ok(1));
    let mut body = response.into_body().into_data_stream();
    let finished = tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = body.next().await {
            chunk.expect("a well-formed chunk");
        }
    })
    .await;
    assert!(
        finished.is_ok(),
        "the response body finishes after the revocation"
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while s.service.registry().len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended stream never deregistered"
        );
        tokio::task::yield_now().await;
    }
    // The other stream is still open: a store change reaches it.
    let mut other = other.into_body().into_data_stream();
    s.ctx.store.ensure_user(ALICE);
    s.ctx
        .store
        .append(
            ALICE,
            "INBOX",
            b"Subject: hi\r\n\r\nhello\r\n".to_vec(),
            Default::default(),
            Some(5),
        )
        .expect("append");
    let chunk = tokio::time::timeout(DEADLINE, other.next())
        .await
        .expect("an event within the deadline")
        .expect("the stream is open")
        .expect("chunk");
    let text = String::from_utf8_lossy(&chunk).into_owned();
    assert!(text.contains("event: state"), "{text}");
}
