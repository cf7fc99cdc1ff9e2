//! Mailbox, Email and Thread methods against a MemoryStore.

use serde_json::json;

use super::*;

const PLAIN: &str = "From: Bob <bob@example.com>\nTo: alice@example.com\nSubject: Lunch\n\
Message-ID: <lunch@example.com>\nDate: Tue, 14 Nov 2023 22:13:20 +0000\n\nShall we meet at noon?\n";

const MULTI: &str = "From: carol@example.org\nTo: alice@example.com\nSubject: Report\n\
MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
Content-Type: text/plain; charset=utf-8\n\nSee attached.\n--b\n\
Content-Type: application/pdf; name=\"r.pdf\"\nContent-Disposition: attachment; filename=\"r.pdf\"\n\
Content-Transfer-Encoding: base64\n\nJVBERi0=\n--b--\n";

#[tokio::test]
async fn mailboxes_have_roles_counts_and_changes() {
    let h = harness();
    let acc = h.account(ALICE);
    let v = h.ok(ALICE, "Mailbox/get", json!({"accountId": acc})).await;
    let state0 = v["state"].as_str().unwrap().to_string();
    let roles: Vec<_> = v["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].clone())
        .collect();
    assert!(
        roles.contains(&json!("inbox"))
            && roles.contains(&json!("drafts"))
            && roles.contains(&json!("sent"))
    );
    let inbox = h.mailbox_id(ALICE, "inbox").await;

    h.deliver(ALICE, "INBOX", PLAIN, 100);
    let v = h
        .ok(ALICE, "Mailbox/get", json!({"accountId": acc, "ids": [inbox], "properties": ["totalEmails", "unreadEmails", "name"]}))
        .await;
    assert_eq!(
        v["list"][0],
        json!({"id": inbox, "totalEmails": 1, "unreadEmails": 1, "name": "INBOX"})
    );
    let c = h
        .ok(
            ALICE,
            "Mailbox/changes",
            json!({"accountId": acc, "sinceState": state0}),
        )
        .await;
    assert_eq!(c["updated"], json!([inbox]));
    assert_eq!(
        c["updatedProperties"],
        json!([
            "totalEmails",
            "unreadEmails",
            "totalThreads",
            "unreadThreads"
        ])
    );
    assert_eq!(c["newState"], v["state"]);

    let q = h
        .ok(
            ALICE,
            "Mailbox/query",
            json!({"accountId": acc, "filter": {"role": "inbox"}}),
        )
        .await;
    assert_eq!(q["ids"], json!([inbox]));
    let q = h
        .ok(
            ALICE,
            "Mailbox/query",
            json!({"accountId": acc, "sort": [{"property": "sortOrder"}], "calculateTotal": true}),
        )
        .await;
    assert_eq!(q["ids"][0], json!(inbox));
    assert_eq!(q["total"], json!(3));
    let (name, e) = h
        .call(
            ALICE,
            "Mailbox/query",
            json!({"accountId": acc, "filter": {"color": "red"}}),
        )
        .await;
    assert_eq!(
        (name.as_str(), &e["type"]),
        ("error", &json!("unsupportedFilter"))
    );
    let s = h
        .ok(ALICE, "Mailbox/set", json!({"accountId": acc, "destroy": [inbox.clone()], "update": {inbox.as_str(): {"name": "x"}}}))
        .await;
    assert_eq!(s["notDestroyed"][&inbox]["type"], json!("forbidden"));
    assert_eq!(s["notUpdated"][&inbox]["type"], json!("forbidden"));
}

#[tokio::test]
async fn email_get_renders_headers_bodies_and_attachments() {
    let h = harness();
    let acc = h.account(ALICE);
    h.deliver(ALICE, "INBOX", PLAIN, 1_700_000_000);
    h.deliver(ALICE, "INBOX", MULTI, 1_700_000_100);
    let ids = h.email_ids(ALICE, json!({"subject": "lunch"})).await;
    assert_eq!(ids.len(), 1);
    let v = h
        .ok(
            ALICE,
            "Email/get",
            json!({"accountId": acc, "ids": ids, "fetchTextBodyValues": true}),
        )
        .await;
    let e = &v["list"][0];
    assert_eq!(e["from"], json!([{"name": "Bob", "email": BOB}]));
    assert_eq!(e["to"], json!([{"name": null, "email": ALICE}]));
    assert_eq!(e["subject"], json!("Lunch"));
    assert_eq!(e["messageId"], json!(["lunch@example.com"]));
    assert_eq!(e["receivedAt"], json!("2023-11-14T22:13:20Z"));
    assert_eq!(e["sentAt"], json!("2023-11-14T22:13:20Z"));
    assert_eq!(e["preview"], json!("Shall we meet at noon?"));
    assert_eq!(e["keywords"], json!({}));
    assert_eq!(e["hasAttachment"], json!(false));
    let part = e["textBody"][0]["partId"].as_str().unwrap();
    assert_eq!(
        e["bodyValues"][part]["value"],
        json!("Shall we meet at noon?\r\n")
    );
    assert_eq!(e["bodyValues"][part]["isTruncated"], json!(false));
    assert_eq!(e["size"], json!(PLAIN.replace('\n', "\r\n").len()));

    let ids = h.email_ids(ALICE, json!({"hasAttachment": true})).await;
    let v = h
        .ok(ALICE, "Email/get", json!({"accountId": acc, "ids": ids,
            "properties": ["attachments", "bodyStructure", "header:Subject:asText", "header:X-Missing:all"],
            "bodyProperties": ["partId", "blobId", "type", "name", "size", "subParts"]}))
        .await;
    let e = &v["list"][0];
    let att = &e["attachments"][0];
    assert_eq!(
        (&att["type"], &att["name"], &att["size"]),
        (&json!("application/pdf"), &json!("r.pdf"), &json!(5))
    );
    assert!(att.get("subParts").is_none());
    assert_eq!(e["bodyStructure"]["type"], json!("multipart/mixed"));
    assert_eq!(e["bodyStructure"]["subParts"].as_array().unwrap().len(), 2);
    assert_eq!(e["header:Subject:asText"], json!("Report"));
    assert_eq!(e["header:X-Missing:all"], json!([]));
    // The part blob resolves to the decoded bytes.
    let snap = h.ctx.tracker(ALICE).refresh(h.store.as_ref()).0;
    let (data, ty) =
        crate::jmap::blob::resolve(&h.ctx, &acc, &snap, att["blobId"].as_str().unwrap()).unwrap();
    assert_eq!(
        (data.as_slice(), ty.as_deref()),
        (&b"%PDF-"[..], Some("application/pdf"))
    );

    let v = h
        .ok(
            ALICE,
            "Email/get",
            json!({"accountId": acc, "ids": ["nope"], "properties": ["id"]}),
        )
        .await;
    assert_eq!(v["notFound"], json!(["nope"]));
    let (name, _) = h
        .call(
            ALICE,
            "Email/get",
            json!({"accountId": acc, "properties": ["header:Bad:asNothing"]}),
        )
        .await;
    assert_eq!(name, "error");
}

#[tokio::test]
async fn query_filters_sorts_and_pages() {
    let h = harness();
    let acc = h.account(ALICE);
    for i in 0..5 {
        h.deliver(
            ALICE,
            "INBOX",
            &format!("From: n{i}@example.org\nSubject: item {i}\n\nbody {i}\n"),
            100 + i,
        );
    }
    h.deliver(ALICE, "INBOX", PLAIN, 50);
    let q = h
        .ok(
            ALICE,
            "Email/query",
            json!({"accountId": acc, "sort": [{"property": "receivedAt", "isAscending": false}],
            "position": 1, "limit": 2, "calculateTotal": true}),
        )
        .await;
    assert_eq!(
        (q["total"].clone(), q["position"].clone()),
        (json!(6), json!(1))
    );
    assert_eq!(q["ids"].as_array().unwrap().len(), 2);
    let all = h.email_ids(ALICE, json!(null)).await;
    assert_eq!(q["ids"][0], json!(all[1]), "default sort is newest first");
    assert_eq!(h.email_ids(ALICE, json!({"from": "n3@"})).await.len(), 1);
    assert_eq!(h.email_ids(ALICE, json!({"text": "noon"})).await.len(), 1);
    assert_eq!(h.email_ids(ALICE, json!({"body": "body 4"})).await.len(), 1);
    assert_eq!(
        h.email_ids(
            ALICE,
            json!({"operator": "NOT", "conditions": [{"subject": "item"}]})
        )
        .await
        .len(),
        1
    );
    assert_eq!(
        h.email_ids(ALICE, json!({"after": "1970-01-01T00:01:42Z"}))
            .await
            .len(),
        3
    );
    assert_eq!(
        h.email_ids(ALICE, json!({"header": ["Message-ID"]}))
            .await
            .len(),
        1
    );
    let inbox = h.mailbox_id(ALICE, "inbox").await;
    assert_eq!(
        h.email_ids(ALICE, json!({"inMailbox": inbox})).await.len(),
        6
    );
    let anchor = h
        .ok(
            ALICE,
            "Email/query",
            json!({"accountId": acc, "anchor": all[2], "anchorOffset": -1, "limit": 1}),
        )
        .await;
    assert_eq!(anchor["ids"], json!([all[1]]));
    let (name, e) = h
        .call(
            ALICE,
            "Email/query",
            json!({"accountId": acc, "anchor": "missing"}),
        )
        .await;
    assert_eq!(
        (name.as_str(), &e["type"]),
        ("error", &json!("anchorNotFound"))
    );
    let (_, e) = h
        .call(
            ALICE,
            "Email/query",
            json!({"accountId": acc, "sort": [{"property": "color"}]}),
        )
        .await;
    assert_eq!(e["type"], json!("unsupportedSort"));
    let (_, e) = h
        .call(
            ALICE,
            "Email/query",
            json!({"accountId": acc, "filter": {"before": "soon"}}),
        )
        .await;
    assert_eq!(e["type"], json!("invalidArguments"));
    let (_, e) = h
        .call(
            ALICE,
            "Email/queryChanges",
            json!({"accountId": acc, "sinceQueryState": "x"}),
        )
        .await;
    assert_eq!(e["type"], json!("cannotCalculateChanges"));
}

#[tokio::test]
async fn collapse_threads_keeps_one_per_thread() {
    let h = harness();
    h.deliver(ALICE, "INBOX", "Message-ID: <r@x>\nSubject: t\n\na\n", 1);
    h.deliver(
        ALICE,
        "INBOX",
        "Message-ID: <s@x>\nReferences: <r@x>\nSubject: Re: t\n\nb\n",
        2,
    );
    h.deliver(
        ALICE,
        "INBOX",
        "Message-ID: <o@x>\nSubject: other\n\nc\n",
        3,
    );
    let q = h
        .ok(
            ALICE,
            "Email/query",
            json!({"accountId": h.account(ALICE), "collapseThreads": true}),
        )
        .await;
    assert_eq!(q["ids"].as_array().unwrap().len(), 2);
    assert_eq!(q["collapseThreads"], json!(true));
}

#[tokio::test]
async fn drafts_keywords_moves_changes_and_destroy() {
    let h = harness();
    let acc = h.account(ALICE);
    let drafts = h.mailbox_id(ALICE, "drafts").await;
    let inbox = h.mailbox_id(ALICE, "inbox").await;
    let state0 = h
        .ok(ALICE, "Email/get", json!({"accountId": acc, "ids": []}))
        .await["state"]
        .clone();

    let s = h
        .ok(
            ALICE,
            "Email/set",
            json!({"accountId": acc, "create": {"d": {
            "mailboxIds": {drafts.as_str(): true},
            "keywords": {"$draft": true, "$seen": true},
            "from": [{"name": "Alice", "email": ALICE}],
            "to": [{"email": BOB}],
            "subject": "Draft",
            "bodyValues": {"1": {"value": "Hi Bob"}},
            "textBody": [{"partId": "1", "type": "text/plain"}],
        }, "bad": {"mailboxIds": {}}}}),
        )
        .await;
    assert_eq!(s["oldState"], state0);
    assert_eq!(s["notCreated"]["bad"]["type"], json!("invalidProperties"));
    let id = s["created"]["d"]["id"].as_str().unwrap().to_string();
    let g = h
        .ok(
            ALICE,
            "Email/get",
            json!({"accountId": acc, "ids": [id], "fetchTextBodyValues": true,
            "properties": ["keywords", "mailboxIds", "bodyValues", "textBody", "subject"]}),
        )
        .await;
    let e = &g["list"][0];
    assert_eq!(e["keywords"], json!({"$draft": true, "$seen": true}));
    assert_eq!(e["mailboxIds"], json!({drafts.as_str(): true}));
    assert_eq!(e["subject"], json!("Draft"));
    let part = e["textBody"][0]["partId"].as_str().unwrap();
    assert_eq!(e["bodyValues"][part]["value"], json!("Hi Bob"));
    // IMAP sees the flags.
    let stored = h.store.messages(ALICE, "Drafts").unwrap();
    assert!(stored[0].flags.contains("\\Draft") && stored[0].flags.contains("\\Seen"));

    let state1 = g["state"].clone();
    let u = h
        .ok(
            ALICE,
            "Email/set",
            json!({"accountId": acc, "ifInState": state1, "update": {id.as_str(): {
                "keywords/$draft": null, "keywords/$flagged": true,
                format!("mailboxIds/{drafts}"): null, format!("mailboxIds/{inbox}"): true,
            }}}),
        )
        .await;
    assert_eq!(u["updated"], json!({id.as_str(): null}), "{u}");
    let g = h
        .ok(
            ALICE,
            "Email/get",
            json!({"accountId": acc, "ids": [id], "properties": ["keywords", "mailboxIds"]}),
        )
        .await;
    assert_eq!(
        g["list"][0]["keywords"],
        json!({"$flagged": true, "$seen": true})
    );
    assert_eq!(
        g["list"][0]["mailboxIds"],
        json!({inbox.as_str(): true}),
        "moved, same id"
    );
    assert!(h.store.messages(ALICE, "Drafts").unwrap().is_empty());

    let c = h
        .ok(
            ALICE,
            "Email/changes",
            json!({"accountId": acc, "sinceState": state1}),
        )
        .await;
    assert_eq!(
        (c["created"].clone(), c["updated"].clone()),
        (json!([]), json!([id]))
    );
    let c0 = h
        .ok(
            ALICE,
            "Email/changes",
            json!({"accountId": acc, "sinceState": state0}),
        )
        .await;
    assert_eq!(c0["created"], json!([id]));

    let (_, e) = h
        .call(
            ALICE,
            "Email/set",
            json!({"accountId": acc, "ifInState": state1, "destroy": [id]}),
        )
        .await;
    assert_eq!(e["type"], json!("stateMismatch"));
    let bad = h
        .ok(
            ALICE,
            "Email/set",
            json!({"accountId": acc, "update": {
            id.as_str(): {"subject": "new"}, "missing": {"keywords": {}}}}),
        )
        .await;
    assert_eq!(bad["notUpdated"][&id]["type"], json!("invalidProperties"));
    assert_eq!(bad["notUpdated"]["missing"]["type"], json!("notFound"));
    let d = h
        .ok(
            ALICE,
            "Email/set",
            json!({"accountId": acc, "destroy": [id, "missing"]}),
        )
        .await;
    assert_eq!(d["destroyed"], json!([id]));
    assert_eq!(d["notDestroyed"]["missing"]["type"], json!("notFound"));
    let c = h
        .ok(
            ALICE,
            "Email/changes",
            json!({"accountId": acc, "sinceState": state1}),
        )
        .await;
    assert_eq!(c["destroyed"], json!([id]));
    let t = h
        .ok(
            ALICE,
            "Thread/changes",
            json!({"accountId": acc, "sinceState": state0}),
        )
        .await;
    assert_eq!(
        t["created"],
        json!([]),
        "created and destroyed since state0: nothing to report"
    );
}

#[tokio::test]
async fn import_from_upload() {
    let h = harness();
    let acc = h.account(ALICE);
    let inbox = h.mailbox_id(ALICE, "inbox").await;
    let blob = h.ctx.blobs.put(
        &acc,
        PLAIN.replace('\n', "\r\n").into_bytes(),
        "message/rfc822".into(),
    );
    let junk = h.ctx.blobs.put(&acc, Vec::new(), "text/plain".into());
    let v = h
        .ok(ALICE, "Email/import", json!({"accountId": acc, "emails": {
            "i": {"blobId": blob, "mailboxIds": {inbox.as_str(): true}, "keywords": {"$seen": true},
                  "receivedAt": "2024-01-01T00:00:00Z"},
            "j": {"blobId": "bnope", "mailboxIds": {inbox.as_str(): true}},
            "k": {"blobId": junk, "mailboxIds": {inbox.as_str(): true}},
        }}))
        .await;
    assert_eq!(v["created"]["i"]["blobId"], json!(blob));
    assert_eq!(v["notCreated"]["j"]["type"], json!("blobNotFound"));
    assert_eq!(v["notCreated"]["k"]["type"], json!("invalidEmail"));
    let m = h.store.messages(ALICE, "INBOX").unwrap();
    assert_eq!((m.len(), m[0].internal_date), (1, 1_704_067_200));
}

#[tokio::test]
async fn identity_and_threads() {
    let h = harness();
    let acc = h.account(ALICE);
    let v = h.ok(ALICE, "Identity/get", json!({"accountId": acc})).await;
    assert_eq!(v["list"][0]["email"], json!(ALICE));
    assert_eq!(v["list"][0]["mayDelete"], json!(false));
    let s = h
        .ok(
            ALICE,
            "Identity/set",
            json!({"accountId": acc, "create": {"x": {"email": "evil@x"}}}),
        )
        .await;
    assert_eq!(s["notCreated"]["x"]["type"], json!("forbidden"));
    h.deliver(ALICE, "INBOX", "Message-ID: <r@x>\nSubject: t\n\na\n", 1);
    let g = h.ok(ALICE, "Thread/get", json!({"accountId": acc})).await;
    assert_eq!(g["list"].as_array().unwrap().len(), 1);
    let state = g["state"].clone();
    h.deliver(
        ALICE,
        "INBOX",
        "Message-ID: <s@x>\nReferences: <r@x>\nSubject: Re: t\n\nb\n",
        2,
    );
    let c = h
        .ok(
            ALICE,
            "Thread/changes",
            json!({"accountId": acc, "sinceState": state}),
        )
        .await;
    assert_eq!(c["updated"], json!([g["list"][0]["id"]]));
    let c = h
        .ok(
            ALICE,
            "Thread/changes",
            json!({"accountId": acc, "sinceState": state, "maxChanges": 5}),
        )
        .await;
    assert_eq!(c["hasMoreChanges"], json!(false));
    let (_, e) = h
        .call(
            ALICE,
            "Thread/changes",
            json!({"accountId": acc, "sinceState": state, "maxChanges": 0}),
        )
        .await;
    assert_eq!(e["type"], json!("invalidArguments"));
}

#[tokio::test]
async fn users_are_isolated() {
    let h = harness();
    h.deliver(BOB, "INBOX", PLAIN, 1);
    assert!(h.email_ids(ALICE, json!(null)).await.is_empty());
    assert_eq!(h.email_ids(BOB, json!(null)).await.len(), 1);
    let (_, e) = h
        .call(ALICE, "Email/query", json!({"accountId": h.account(BOB)}))
        .await;
    assert_eq!(e["type"], json!("accountNotFound"));
}
