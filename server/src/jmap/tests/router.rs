//! The HTTP routes through `oneshot`, with HttpIdentity and PublicBase set by hand.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::auth::request_auth::HttpIdentity;
use crate::jmap::router;
use crate::web::PublicBase;

pub(super) const BASE: &str = "https://mail.example.com/prefix";

pub(super) fn authed(user: &str, req: Request<Body>) -> Request<Body> {
    let mut req = req;
    req.extensions_mut().insert(HttpIdentity {
        user: user.to_string(),
        strategy: "basic",
        token: None,
    });
    req.extensions_mut().insert(PublicBase(BASE.into()));
    req
}

pub(super) async fn send(h: &Harness, req: Request<Body>) -> Response {
    router(h.ctx.clone()).oneshot(req).await.unwrap()
}

async fn body_bytes(r: Response) -> Vec<u8> {
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

pub(super) async fn body_json(r: Response) -> Value {
    serde_json::from_slice(&body_bytes(r).await).unwrap()
}

pub(super) fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn session_resource() {
    let h = harness();
    let r = send(
        &h,
        authed(
            ALICE,
            Request::get("/.well-known/jmap")
                .body(Body::empty())
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let s = body_json(r).await;
    let acc = h.account(ALICE);
    assert_eq!(s["username"], json!(ALICE));
    assert_eq!(s["apiUrl"], json!(format!("{BASE}/jmap")));
    assert_eq!(
        s["uploadUrl"],
        json!(format!("{BASE}/upload/{{accountId}}"))
    );
    assert_eq!(
        s["downloadUrl"],
        json!(format!(
            "{BASE}/download/{{accountId}}/{{blobId}}/{{name}}?type={{type}}"
        ))
    );
    assert_eq!(s["primaryAccounts"][crate::jmap::MAIL], json!(acc));
    assert_eq!(s["accounts"][&acc]["name"], json!(ALICE));
    let ws = &s["capabilities"][crate::jmap::WEBSOCKET];
    assert_eq!(ws["url"], json!("wss://mail.example.com/prefix/jmap/ws"));
    assert_eq!(ws["supportsPush"], json!(true));
    assert_eq!(
        s["capabilities"][crate::jmap::CORE]["maxSizeUpload"],
        json!(1024 * 1024)
    );
    assert!(s["state"].is_string());
    assert!(crate::jmap::ids::is_valid(&acc));
}

#[tokio::test]
async fn api_round_trip_and_request_errors() {
    let h = harness();
    let ok = json!({"using": USING, "methodCalls": [["Core/echo", {"x": 1}, "0"]]}).to_string();
    let r = send(&h, authed(ALICE, post("/jmap", ok))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        body_json(r).await["methodResponses"],
        json!([["Core/echo", {"x": 1}, "0"]])
    );

    let cases = [
        (
            "{not json".to_string(),
            "urn:ietf:params:jmap:error:notJSON",
        ),
        (
            json!({"using": "x"}).to_string(),
            "urn:ietf:params:jmap:error:notRequest",
        ),
        (
            json!({"using": ["urn:nope"], "methodCalls": []}).to_string(),
            "urn:ietf:params:jmap:error:unknownCapability",
        ),
        (
            // Over maxSizeRequest (1 MiB in these tests).
            format!("{{\"pad\": \"{}\"}}", "x".repeat(1024 * 1024 + 1)),
            "urn:ietf:params:jmap:error:limit",
        ),
    ];
    for (body, kind) in cases {
        let r = send(&h, authed(ALICE, post("/jmap", body))).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{kind}");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let p = body_json(r).await;
        assert_eq!(
            (p["type"].clone(), p["status"].clone()),
            (json!(kind), json!(400))
        );
    }
}

#[tokio::test]
async fn unauthenticated_requests_get_401_not_500() {
    let h = harness();
    let r = send(
        &h,
        Request::get("/.well-known/jmap")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = send(
        &h,
        authed(ALICE, Request::get("/jmap/ws").body(Body::empty()).unwrap()),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a plain GET is not an upgrade"
    );
}

#[tokio::test]
async fn upload_then_download_with_account_checks() {
    let h = harness();
    let acc = h.account(ALICE);
    let up = Request::post(format!("/upload/{acc}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("hello blob"))
        .unwrap();
    let r = send(&h, authed(ALICE, up)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v = body_json(r).await;
    assert_eq!(
        (v["size"].clone(), v["type"].clone()),
        (json!(10), json!("text/plain"))
    );
    let blob = v["blobId"].as_str().unwrap().to_string();

    let get = |user: &str, account: &str, q: &str| {
        authed(
            user,
            Request::get(format!("/download/{account}/{blob}/n%C3%A9.txt{q}"))
                .body(Body::empty())
                .unwrap(),
        )
    };
    let r = send(&h, get(ALICE, &acc, "?type=text/x-note")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/x-note");
    let cd = r.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cd.contains("filename*=UTF-8''n%C3%A9.txt"), "{cd}");
    assert_eq!(body_bytes(r).await, b"hello blob");

    // Bob can neither read Alice's account nor find her blob in his.
    let r = send(&h, get(BOB, &acc, "")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        body_json(r).await["type"],
        json!("urn:ietf:params:jmap:error:accountNotFound")
    );
    let r = send(&h, get(BOB, &h.account(BOB), "")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let up = Request::post(format!("/upload/{acc}"))
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(
        send(&h, authed(BOB, up)).await.status(),
        StatusCode::FORBIDDEN
    );

    // Too large.
    let big = Request::post(format!("/upload/{acc}"))
        .body(Body::from(vec![b'x'; 1024 * 1024 + 1]))
        .unwrap();
    let r = send(&h, authed(ALICE, big)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A whole message is downloadable by its blobId too.
    h.deliver(ALICE, "INBOX", "Subject: s\n\nbody\n", 1);
    let v = h
        .ok(
            ALICE,
            "Email/get",
            json!({"accountId": acc, "properties": ["blobId"]}),
        )
        .await;
    let mblob = v["list"][0]["blobId"].as_str().unwrap();
    let r = send(
        &h,
        authed(
            ALICE,
            Request::get(format!("/download/{acc}/{mblob}/m.eml"))
                .body(Body::empty())
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "message/rfc822");
    assert_eq!(body_bytes(r).await, b"Subject: s\r\n\r\nbody\r\n");
}

#[tokio::test]
async fn eventsource_long_poll_gets_a_state_event() {
    let h = harness();
    h.ctx.tracker(ALICE);
    let r = send(
        &h,
        authed(
            ALICE,
            Request::get("/jmap/eventsource?types=Email&closeafter=state&ping=0")
                .body(Body::empty())
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    h.deliver(ALICE, "INBOX", "Subject: push\n\nx\n", 1);
    let body = tokio::time::timeout(std::time::Duration::from_secs(10), body_bytes(r))
        .await
        .expect("the stream ends after one state event");
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("event: state\ndata: "), "{text}");
    let data: Value =
        serde_json::from_str(text.lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    let changed = &data["changed"][h.account(ALICE)];
    assert!(changed["Email"].is_string(), "{data}");
    assert!(changed.get("Mailbox").is_none(), "only the requested types");
}
