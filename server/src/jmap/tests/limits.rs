//! Issue 13: what one JMAP request may cost. Filter caps, heavy queries off the async workers,
//! the parsed size of a request, the in-flight budget, per-user concurrency, and the log and
//! close budget of bad WebSocket messages.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use super::router::{authed, body_json, post, send};
use super::*;
use crate::inflight::InFlight;
use crate::jmap::LIMITS;
use crate::offload::Offload;

const DEADLINE: Duration = Duration::from_secs(10);

const MSG: &str = "From: bob@example.com\nTo: alice@example.com\nSubject: lunch\n\
    Message-ID: <1@example.com>\n\nnoon at the usual place\n";

fn or(conditions: Vec<Value>) -> Value {
    json!({"operator": "OR", "conditions": conditions})
}

/// `n` filter nodes in all: one OR operator and `n - 1` body conditions.
fn wide_filter(n: usize) -> Value {
    or((1..n).map(|i| json!({"body": format!("w{i}")})).collect())
}

/// `depth` OR operators nested, a condition at the bottom.
fn deep_filter(depth: usize) -> Value {
    (0..depth).fold(json!({"body": "noon"}), |inner, _| or(vec![inner]))
}

fn query(h: &Harness, filter: Value) -> Value {
    json!([["Email/query", {"accountId": h.account(ALICE), "filter": filter}, "q"]])
}

#[tokio::test]
async fn email_query_filters_over_the_caps_get_unsupported_filter() {
    let h = harness();
    h.deliver(ALICE, "INBOX", MSG, 1_700_000_000);
    let max = h.ctx.limits.max_filter_conditions;
    let depth = h.ctx.limits.max_filter_depth;
    assert_eq!((max, depth), (100, 10), "the documented defaults");

    // At the caps: answered.
    let mut at = wide_filter(max);
    at["conditions"][0] = json!({"body": "noon"});
    let r = h.calls(ALICE, query(&h, at)).await;
    assert_eq!(r[0][0], json!("Email/query"), "{r:?}");
    assert_eq!(r[0][1]["ids"].as_array().map(Vec::len), Some(1), "{r:?}");
    let r = h.calls(ALICE, query(&h, deep_filter(depth))).await;
    assert_eq!(r[0][1]["ids"].as_array().map(Vec::len), Some(1), "{r:?}");

    // One node, or one level, more: the method error, naming the cap.
    for (filter, cap) in [
        (wide_filter(max + 1), "maxFilterConditions"),
        (wide_filter(4000), "maxFilterConditions"),
        (deep_filter(depth + 1), "maxFilterDepth"),
    ] {
        let r = h.calls(ALICE, query(&h, filter)).await;
        assert_eq!(r[0][0], json!("error"), "{r:?}");
        assert_eq!(r[0][1]["type"], json!("unsupportedFilter"), "{r:?}");
        let description = r[0][1]["description"].as_str().unwrap_or_default();
        assert!(description.contains(cap), "{description}");
    }
    // The other /query methods share the caps.
    let r = h
        .calls(
            ALICE,
            json!([["Mailbox/query", {"accountId": h.account(ALICE),
                "filter": or(vec![json!({"hasAnyRole": true}); max])}, "m"]]),
        )
        .await;
    assert_eq!(r[0][1]["type"], json!("unsupportedFilter"), "{r:?}");
}

#[tokio::test]
async fn the_session_advertises_the_caps_it_enforces() {
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
    let s = body_json(r).await;
    let l = &h.ctx.limits;
    assert_eq!(
        s["capabilities"][LIMITS],
        json!({
            "maxFilterConditions": l.max_filter_conditions,
            "maxFilterDepth": l.max_filter_depth,
            "maxValuesInRequest": l.max_values_in_request,
            "maxDepthInRequest": l.max_depth_in_request,
        })
    );
    assert_eq!(
        s["capabilities"][crate::jmap::CORE]["maxConcurrentRequests"],
        json!(l.max_concurrent_requests)
    );
    // A client may name the capability in `using`.
    let req = request_from_value(
        json!({"using": [crate::jmap::CORE, LIMITS], "methodCalls": [["Core/echo", {}, "e"]]}),
    )
    .unwrap();
    let out = execute(&h.ctx, &Caller::new(ALICE, None, true), req)
        .await
        .unwrap();
    assert_eq!(out["methodResponses"][0][0], json!("Core/echo"));
}

#[tokio::test]
async fn email_query_runs_off_the_async_workers() {
    // A single-threaded runtime: the test and every request share one thread. A query held at
    // the gate blocks the thread that runs it, so another request can only be answered while
    // it is held if the query does not run on the runtime's thread.
    let (offload, mut gate) = Offload::gated(1);
    let h = harness_built(|ctx| ctx.with_offload(offload));
    h.deliver(ALICE, "INBOX", MSG, 1_700_000_000);
    let ctx = h.ctx.clone();
    let acc = h.account(ALICE);
    let heavy = tokio::spawn(async move {
        let req = request_from_value(json!({"using": USING, "methodCalls": [
            ["Email/query", {"accountId": acc, "filter": {"body": "noon"}}, "q"]]}))
        .unwrap();
        execute(&ctx, &Caller::new(ALICE, None, true), req).await
    });
    tokio::time::timeout(DEADLINE, gate.job_started())
        .await
        .expect("Email/query runs as a heavy job");
    // The query is still running; other requests, of the same user and of another, are served.
    let boxes = h
        .ok(ALICE, "Mailbox/get", json!({"accountId": h.account(ALICE)}))
        .await;
    assert!(!boxes["list"].as_array().unwrap().is_empty(), "{boxes}");
    h.store.ensure_user(BOB);
    let (name, _) = h
        .call(
            BOB,
            "Email/get",
            json!({"accountId": h.account(BOB), "ids": []}),
        )
        .await;
    assert_eq!(name, "Email/get");
    assert!(!heavy.is_finished(), "the query waits at the gate");
    gate.release_one();
    let out = heavy.await.unwrap().unwrap();
    assert_eq!(out["methodResponses"][0][0], json!("Email/query"));
    assert_eq!(
        out["methodResponses"][0][1]["ids"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn requests_too_big_once_parsed_are_refused_before_they_are_built() {
    let h = harness();
    let max = h.ctx.limits.max_values_in_request;
    // The attack of issue 13 in small: many tiny conditions (each a ~700-byte map once parsed).
    let conditions: Vec<Value> = (0..max)
        .map(|i| json!({"subject": format!("x{i}")}))
        .collect();
    let body = json!({"using": USING, "methodCalls": [["Email/query",
        {"accountId": h.account(ALICE), "filter": or(conditions)}, "q"]]});
    let r = send(&h, authed(ALICE, post("/jmap", body.to_string()))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let problem = body_json(r).await;
    assert_eq!(problem["type"], json!("urn:ietf:params:jmap:error:limit"));
    assert_eq!(problem["limit"], json!("maxValuesInRequest"), "{problem}");

    let deep = format!(
        "{{\"using\": [], \"methodCalls\": [[\"Core/echo\", {{\"a\": {}1{}}}, \"e\"]]}}",
        "[".repeat(40),
        "]".repeat(40)
    );
    let r = send(&h, authed(ALICE, post("/jmap", deep))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(r).await["limit"], json!("maxDepthInRequest"));

    // Over WebSocket alike (the same parse path).
    let text = json!({"@type": "Request", "id": "r", "using": USING,
        "methodCalls": [["Core/echo", {"list": vec![1; max]}, "e"]]})
    .to_string();
    let (reply, _) = super::websocket::exchange(&h, vec![text]).await;
    assert_eq!(reply[0]["@type"], json!("RequestError"), "{reply:?}");
    assert_eq!(reply[0]["limit"], json!("maxValuesInRequest"), "{reply:?}");
}

#[tokio::test]
async fn requests_count_against_the_in_flight_budget() {
    let (offload, mut gate) = Offload::gated(1);
    let pool = InFlight::new(64 * 1024);
    let h = harness_built(|ctx| ctx.with_offload(offload).with_inflight(pool.clone()));
    h.deliver(ALICE, "INBOX", MSG, 1_700_000_000);
    let q = json!({"using": USING, "methodCalls": query(&h, json!({"body": "noon"}))}).to_string();

    // A query held at the gate holds its body and its parsed tree.
    let held = tokio::spawn({
        let ctx = h.ctx.clone();
        let q = q.clone();
        async move { as_alice(ctx, post("/jmap", q)).await }
    });
    tokio::time::timeout(DEADLINE, gate.job_started())
        .await
        .expect("the query is running");
    let held_bytes = pool.in_use();
    assert!(
        held_bytes > q.len(),
        "body and parsed estimate: {held_bytes}"
    );

    // A request the rest of the budget cannot take, but the whole budget can: 503 with
    // Retry-After, nothing held.
    let big = (0..)
        .map(|n| {
            json!({"using": USING, "methodCalls": [["Core/echo", {"pad": "x".repeat(n * 64)}, "e"]]})
                .to_string()
        })
        .find(|b| cost(&h, b) > pool.limit() - held_bytes)
        .unwrap();
    assert!(cost(&h, &big) <= pool.limit(), "{held_bytes}");
    let r = send(&h, authed(ALICE, post("/jmap", big.clone()))).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    let problem = body_json(r).await;
    assert_eq!(problem["status"], json!(503), "{problem}");
    assert_eq!(pool.in_use(), held_bytes, "a refusal holds nothing");
    // A small one still fits.
    let echo = json!({"using": USING, "methodCalls": [["Core/echo", {}, "e"]]});
    let r = send(&h, authed(ALICE, post("/jmap", echo.to_string()))).await;
    assert_eq!(r.status(), StatusCode::OK);

    gate.open();
    let r = held.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(pool.in_use(), 0, "every request done: nothing in flight");
    let r = send(&h, authed(ALICE, post("/jmap", big.clone()))).await;
    assert_eq!(r.status(), StatusCode::OK, "fits once the budget is free");
}

/// What a request holds of the in-flight budget: its body and its parsed estimate.
fn cost(h: &Harness, body: &str) -> usize {
    let shape = crate::jmap::budget::measure(body.as_bytes(), &h.ctx.limits).unwrap();
    body.len() + shape.estimated_bytes
}

#[tokio::test]
async fn requests_over_max_concurrent_requests_are_refused_before_their_body_is_read() {
    let (offload, mut gate) = Offload::gated(1);
    let h = harness_built(|ctx| ctx.with_offload(offload));
    h.deliver(ALICE, "INBOX", MSG, 1_700_000_000);
    let advertised = h.ctx.limits.max_concurrent_requests;
    let q = json!({"using": USING, "methodCalls": query(&h, json!({"body": "noon"}))}).to_string();
    // `advertised` queries in flight (one running, the others waiting for the pool).
    let mut held = Vec::new();
    for _ in 0..advertised {
        held.push(tokio::spawn({
            let ctx = h.ctx.clone();
            let q = q.clone();
            async move { as_alice(ctx, post("/jmap", q)).await }
        }));
    }
    tokio::time::timeout(DEADLINE, gate.job_started())
        .await
        .expect("a query is running");
    until_no_slot_is_free(&h).await;
    // One more: refused before its body (not even JSON) is looked at.
    let r = send(&h, authed(ALICE, post("/jmap", "not json"))).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body_json(r).await["limit"], json!("maxConcurrentRequests"));
    // Another user is not affected.
    let echo = json!({"using": USING, "methodCalls": [["Core/echo", {}, "e"]]});
    let r = send(&h, authed(BOB, post("/jmap", echo.to_string()))).await;
    assert_eq!(r.status(), StatusCode::OK);
    gate.open();
    for task in held {
        assert_eq!(task.await.unwrap().status(), StatusCode::OK);
    }
    let r = send(&h, authed(ALICE, post("/jmap", "not json"))).await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a free slot: the body is read"
    );
}

/// Alice's request through the router, from a task of its own.
async fn as_alice(ctx: Arc<JmapContext>, req: Request<Body>) -> axum::response::Response {
    use tower::ServiceExt as _;
    crate::jmap::router(ctx)
        .oneshot(authed(ALICE, req))
        .await
        .unwrap()
}

/// Lets the spawned requests run until alice holds every request slot.
async fn until_no_slot_is_free(h: &Harness) {
    let tracker = h.ctx.tracker(ALICE);
    for _ in 0..10_000 {
        if tracker.requests.available_permits() == 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the held requests never took every slot");
}
