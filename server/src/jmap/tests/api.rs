//! The request envelope: capabilities, errors, back-references, creation ids, limits.

use serde_json::json;

use super::*;
use crate::jmap::RequestError;

#[tokio::test]
async fn echo_and_method_errors() {
    let h = harness();
    let acc = h.account(ALICE);
    let r = h
        .calls(
            ALICE,
            json!([
                ["Core/echo", {"hello": [1, 2]}, "a"],
                ["Nope/get", {}, "b"],
                ["Mailbox/get", {"accountId": "someone-else"}, "c"],
                ["Mailbox/get", {"accountId": acc, "bogus": 1}, "d"],
                ["Mailbox/get", {"accountId": acc, "properties": ["nope"]}, "e"],
                ["Email/changes", {"accountId": acc, "sinceState": "stale-0"}, "f"],
                ["Email/get", {"accountId": acc, "ids": "not-a-list"}, "g"],
            ]),
        )
        .await;
    assert_eq!(r[0], json!(["Core/echo", {"hello": [1, 2]}, "a"]));
    let kinds: Vec<_> = r[1..]
        .iter()
        .map(|x| (x[0].clone(), x[1]["type"].clone(), x[2].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (json!("error"), json!("unknownMethod"), json!("b")),
            (json!("error"), json!("accountNotFound"), json!("c")),
            (json!("error"), json!("invalidArguments"), json!("d")),
            (json!("error"), json!("invalidArguments"), json!("e")),
            (json!("error"), json!("cannotCalculateChanges"), json!("f")),
            (json!("error"), json!("invalidArguments"), json!("g")),
        ]
    );
}

#[tokio::test]
async fn capabilities_are_checked() {
    let h = harness();
    let caller = Caller::new(ALICE, None, false);
    let unknown = request_from_value(json!({"using": ["urn:x"], "methodCalls": []})).unwrap();
    assert_eq!(
        execute(&h.ctx, &caller, unknown).await.unwrap_err(),
        RequestError::UnknownCapability("urn:x".into())
    );
    // A known method whose capability is not in `using`.
    let req = request_from_value(json!({
        "using": [crate::jmap::CORE],
        "methodCalls": [["Mailbox/get", {"accountId": h.account(ALICE)}, "0"]]
    }))
    .unwrap();
    let out = execute(&h.ctx, &caller, req).await.unwrap();
    assert_eq!(out["methodResponses"][0][1]["type"], json!("unknownMethod"));
    assert!(out["sessionState"].is_string());
}

#[tokio::test]
async fn too_many_calls_is_a_request_error() {
    let h = harness();
    let calls: Vec<_> = (0..33)
        .map(|i| json!(["Core/echo", {}, i.to_string()]))
        .collect();
    let req = request_from_value(json!({"using": USING, "methodCalls": calls})).unwrap();
    let e = execute(&h.ctx, &Caller::new(ALICE, None, false), req)
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        RequestError::Limit {
            limit: "maxCallsInRequest",
            ..
        }
    ));
    assert_eq!(e.to_json()["limit"], json!("maxCallsInRequest"));
}

#[tokio::test]
async fn back_references_chain_query_get_thread() {
    let h = harness();
    let acc = h.account(ALICE);
    h.deliver(
        ALICE,
        "INBOX",
        "Message-ID: <a@x>\nSubject: one\n\nbody\n",
        10,
    );
    h.deliver(
        ALICE,
        "INBOX",
        "Message-ID: <b@x>\nIn-Reply-To: <a@x>\nSubject: Re: one\n\nbody\n",
        20,
    );
    let r = h
        .calls(
            ALICE,
            json!([
                ["Email/query", {"accountId": acc, "sort": [{"property": "receivedAt"}]}, "q"],
                ["Email/get", {"accountId": acc, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                               "properties": ["threadId", "subject"]}, "g"],
                ["Thread/get", {"accountId": acc, "#ids": {"resultOf": "g", "name": "Email/get", "path": "/list/*/threadId"}}, "t"],
                ["Email/get", {"accountId": acc, "#ids": {"resultOf": "q", "name": "Email/get", "path": "/ids"}}, "bad"],
            ]),
        )
        .await;
    let ids = r[0][1]["ids"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 2);
    let list = r[1][1]["list"].as_array().unwrap();
    assert_eq!(list[0]["subject"], json!("one"));
    assert_eq!(list[1]["id"], ids[1]);
    assert_eq!(
        list[0]["threadId"], list[1]["threadId"],
        "reply joins the thread"
    );
    let threads = r[2][1]["list"].as_array().unwrap();
    assert_eq!(
        threads.len(),
        1,
        "the same thread asked twice is answered once"
    );
    assert_eq!(threads[0]["emailIds"], ids);
    assert_eq!(r[3][1]["type"], json!("invalidResultReference"));
}

#[tokio::test]
async fn creation_ids_flow_between_calls() {
    let h = harness();
    let acc = h.account(ALICE);
    let req = request_from_value(json!({
        "using": USING,
        "createdIds": {"earlier": "m-none"},
        "methodCalls": [
            ["Mailbox/set", {"accountId": acc, "create": {"mb": {"name": "Projects"}}}, "0"],
            ["Email/set", {"accountId": acc, "create": {"e1": {
                "mailboxIds": {"#mb": true}, "subject": "in projects",
                "from": [{"email": ALICE}],
            }}}, "1"],
            ["Email/get", {"accountId": acc, "ids": ["#e1"], "properties": ["mailboxIds", "subject"]}, "2"],
        ]
    }))
    .unwrap();
    let out = execute(&h.ctx, &Caller::new(ALICE, None, false), req)
        .await
        .unwrap();
    let r = &out["methodResponses"];
    let mb = r[0][1]["created"]["mb"]["id"].as_str().unwrap();
    let e1 = r[1][1]["created"]["e1"]["id"].as_str().unwrap();
    assert_eq!(r[2][1]["list"][0]["id"], json!(e1));
    assert_eq!(r[2][1]["list"][0]["mailboxIds"], json!({mb: true}));
    assert_eq!(out["createdIds"]["mb"], json!(mb));
    assert_eq!(out["createdIds"]["earlier"], json!("m-none"));
    assert!(
        h.store
            .list_mailboxes(ALICE)
            .contains(&"Projects".to_string())
    );
}

#[tokio::test]
async fn get_limit_is_enforced() {
    let h = harness();
    let ids: Vec<String> = (0..501).map(|i| format!("e{i}")).collect();
    let (name, v) = h
        .call(
            ALICE,
            "Email/get",
            json!({"accountId": h.account(ALICE), "ids": ids}),
        )
        .await;
    assert_eq!(
        (name.as_str(), &v["type"]),
        ("error", &json!("requestTooLarge"))
    );
}
