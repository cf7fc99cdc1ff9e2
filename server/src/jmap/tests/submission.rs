//! EmailSubmission/set: delivery through smtp::delivery, envelope checks, onSuccess* updates.

use serde_json::{Value, json};

use super::*;

/// Creates a draft from alice; its email id.
async fn draft(h: &Harness, to: &[&str], bcc: &[&str]) -> String {
    draft_from(h, ALICE, to, bcc).await
}

/// A draft of ALICE's whose From header names `from`.
async fn draft_from(h: &Harness, from: &str, to: &[&str], bcc: &[&str]) -> String {
    let acc = h.account(ALICE);
    let drafts = h.mailbox_id(ALICE, "drafts").await;
    let addr = |l: &[&str]| Value::Array(l.iter().map(|a| json!({"email": a})).collect());
    let s = h
        .ok(
            ALICE,
            "Email/set",
            json!({"accountId": acc, "create": {"d": {
                "mailboxIds": {drafts.as_str(): true},
                "keywords": {"$draft": true},
                "from": [{"name": "Alice", "email": from}],
                "to": addr(to),
                "bcc": addr(bcc),
                "subject": "Hello",
                "bodyValues": {"1": {"value": "Hi there"}},
                "textBody": [{"partId": "1"}],
            }}}),
        )
        .await;
    s["created"]["d"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{s}"))
        .to_string()
}

#[tokio::test]
async fn submission_delivers_and_moves_draft_to_sent() {
    let h = harness();
    let acc = h.account(ALICE);
    let identity = crate::jmap::ids::identity_id(ALICE);
    let email = draft(&h, &["Bob@Example.com"], &[ALICE]).await;
    let sent = h.mailbox_id(ALICE, "sent").await;
    let drafts = h.mailbox_id(ALICE, "drafts").await;
    let r = h
        .calls(
            ALICE,
            json!([["EmailSubmission/set", {
            "accountId": acc,
            "create": {"s1": {"identityId": identity, "emailId": email}},
            "onSuccessUpdateEmail": {"#s1": {
                format!("mailboxIds/{drafts}"): null,
                format!("mailboxIds/{sent}"): true,
                "keywords/$draft": null,
            }},
        }, "c"]]),
        )
        .await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0][0], json!("EmailSubmission/set"));
    let created = &r[0][1]["created"]["s1"];
    assert_eq!(created["undoStatus"], json!("final"));
    assert_eq!(
        (r[1][0].clone(), r[1][2].clone()),
        (json!("Email/set"), json!("c"))
    );
    assert_eq!(r[1][1]["updated"], json!({email.as_str(): null}));

    // Bob got it with the SMTP trace headers and without the Bcc line.
    let inbox = h.store.messages(BOB, "INBOX").unwrap();
    assert_eq!(inbox.len(), 1);
    let text = String::from_utf8(inbox[0].data.to_vec()).unwrap();
    assert!(text.starts_with(&format!("Return-Path: <{ALICE}>\r\nReceived: from jmap ([192.0.2.7]) by mx.example.com with HTTPS id ")), "{text}");
    assert!(!text.to_ascii_lowercase().contains("\r\nbcc:"), "{text}");
    assert!(text.contains("Subject: Hello"));
    // Alice was a Bcc recipient: she got a copy too.
    assert_eq!(h.store.messages(ALICE, "INBOX").unwrap().len(), 1);
    // The draft is now in Sent, without $draft.
    let g = h
        .ok(
            ALICE,
            "Email/get",
            json!({"accountId": acc, "ids": [email], "properties": ["mailboxIds", "keywords"]}),
        )
        .await;
    assert_eq!(g["list"][0]["mailboxIds"], json!({sent.as_str(): true}));
    assert_eq!(g["list"][0]["keywords"], json!({}));

    let id = created["id"].as_str().unwrap();
    let g = h
        .ok(
            ALICE,
            "EmailSubmission/get",
            json!({"accountId": acc, "ids": [id]}),
        )
        .await;
    let sub = &g["list"][0];
    assert_eq!(sub["emailId"], json!(email));
    assert_eq!(sub["envelope"]["mailFrom"]["email"], json!(ALICE));
    assert_eq!(sub["envelope"]["rcptTo"].as_array().unwrap().len(), 2);
    let q = h
        .ok(
            ALICE,
            "EmailSubmission/query",
            json!({"accountId": acc, "filter": {"emailIds": [email]}}),
        )
        .await;
    assert_eq!(q["ids"], json!([id]));
    let u = h
        .ok(
            ALICE,
            "EmailSubmission/set",
            json!({"accountId": acc, "update": {id: {"undoStatus": "canceled"}}}),
        )
        .await;
    assert_eq!(u["notUpdated"][id]["type"], json!("cannotUnsend"));
}

#[tokio::test]
async fn submission_refusals() {
    let h = harness();
    let acc = h.account(ALICE);
    let identity = crate::jmap::ids::identity_id(ALICE);
    let email = draft(&h, &["stranger@elsewhere.org", BOB], &[]).await;
    let forged = draft_from(&h, BOB, &[BOB], &[]).await;
    let v = h
        .ok(
            ALICE,
            "EmailSubmission/set",
            json!({"accountId": acc, "create": {
                "unknown": {"identityId": identity, "emailId": email},
                "spoof": {"identityId": identity, "emailId": email,
                          "envelope": {"mailFrom": {"email": BOB}, "rcptTo": [{"email": BOB}]}},
                "noid": {"identityId": "i-nope", "emailId": email},
                "nomail": {"identityId": identity, "emailId": "e-missing"},
                "empty": {"identityId": identity, "emailId": email,
                          "envelope": {"mailFrom": {"email": ALICE}, "rcptTo": []}},
                "junk": {"identityId": identity},
                "forged": {"identityId": identity, "emailId": forged,
                           "envelope": {"mailFrom": {"email": ALICE}, "rcptTo": [{"email": BOB}]}},
            }}),
        )
        .await;
    let nc = &v["notCreated"];
    assert_eq!(nc["unknown"]["type"], json!("invalidRecipients"));
    assert_eq!(
        nc["unknown"]["invalidRecipients"],
        json!(["stranger@elsewhere.org"])
    );
    assert_eq!(nc["spoof"]["type"], json!("forbiddenFrom"));
    assert_eq!(nc["noid"]["properties"], json!(["identityId"]));
    assert_eq!(nc["nomail"]["properties"], json!(["emailId"]));
    assert_eq!(nc["empty"]["type"], json!("noRecipients"));
    assert_eq!(nc["junk"]["type"], json!("invalidProperties"));
    assert_eq!(
        nc["forged"]["type"],
        json!("forbiddenFrom"),
        "a From header naming another user, even with the user's own envelope"
    );
    assert_eq!(v["created"], Value::Null);
    assert!(
        h.store
            .messages(BOB, "INBOX")
            .unwrap_or_default()
            .is_empty(),
        "nothing delivered"
    );
}

#[tokio::test]
async fn directory_outage_fails_the_call() {
    let h = harness_with(true);
    let acc = h.account(ALICE);
    let email = draft(&h, &[BOB], &[]).await;
    let (name, e) = h
        .call(
            ALICE,
            "EmailSubmission/set",
            json!({"accountId": acc, "create": {
            "s": {"identityId": crate::jmap::ids::identity_id(ALICE), "emailId": email}}}),
        )
        .await;
    assert_eq!(
        (name.as_str(), &e["type"]),
        ("error", &json!("serverUnavailable"))
    );
}
