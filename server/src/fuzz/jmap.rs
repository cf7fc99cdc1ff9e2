//! JMAP request bodies: the Request object (RFC 8620 §3.3), then every method call through
//! `api::execute` against a small memory store. `$acc` in an input stands for the caller's
//! account id, so corpus calls reach the methods' argument parsing.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::NoPasswords;
#[cfg(test)]
use super::engine::Target;
use crate::jmap::JmapContext;
use crate::jmap::api::{Caller, execute, parse_request};
use crate::store::{MailStore, MemoryStore};

const USER: &str = "alice@example.com";

#[cfg(test)]
const WORDS: &[&[u8]] = &[
    b"\"using\":",
    b"\"methodCalls\":",
    b"\"createdIds\":",
    b"\"urn:ietf:params:jmap:core\"",
    b"\"urn:ietf:params:jmap:mail\"",
    b"\"urn:ietf:params:jmap:submission\"",
    b"\"Core/echo\"",
    b"\"Mailbox/get\"",
    b"\"Mailbox/query\"",
    b"\"Mailbox/set\"",
    b"\"Email/get\"",
    b"\"Email/query\"",
    b"\"Email/set\"",
    b"\"Email/changes\"",
    b"\"Email/import\"",
    b"\"Thread/get\"",
    b"\"Identity/get\"",
    b"\"EmailSubmission/set\"",
    b"\"accountId\":\"$acc\"",
    b"\"ids\":",
    b"null",
    b"\"#ids\":{\"resultOf\":\"c0\",\"name\":\"Email/query\",\"path\":\"/ids/*\"}",
    b"\"/list/*/id\"",
    b"\"#c1\"",
    b"\"properties\":",
    b"\"filter\":",
    b"\"sort\":",
    b"\"position\":",
    b"\"limit\":",
    b"-1",
    b"9007199254740993",
    b"{}",
    b"[]",
    b"\"\"",
    b",",
];

fn context() -> (JmapContext, String) {
    let store = Arc::new(MemoryStore::new());
    store.ensure_user(USER);
    let message = b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: hi\r\n\
        Message-ID: <1@example.com>\r\nContent-Type: text/plain\r\n\r\nhello\r\n";
    // The store may refuse (e.g. a quota); the methods still run on an empty mailbox.
    let _ = store.append(USER, "INBOX", message.to_vec(), BTreeSet::new(), None);
    let ctx = JmapContext::new(
        store,
        Arc::new(NoPasswords),
        "mx.example.com".into(),
        64 * 1024,
    );
    (ctx, crate::jmap::account_id(USER))
}

fn replace(input: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while !rest.is_empty() {
        if rest.starts_with(from) {
            out.extend_from_slice(to);
            rest = &rest[from.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

#[test]
fn fuzz_jmap_request() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut answered_calls = 0;
    Target::new("jmap_request")
        .dictionary(WORDS)
        .max_len(16 * 1024)
        .run(|input| answered_calls += request(&rt, input));
    // The target reaches the methods, not only the envelope checks.
    assert!(answered_calls > 0, "no method call was answered");
}

/// One request against a fresh store holding one message; returns how many method calls
/// were answered by a method (not an error or an echo).
pub(super) fn request(rt: &tokio::runtime::Runtime, input: &[u8]) -> usize {
    let caller = Caller::new(USER, None, true);
    let (ctx, account) = context();
    let body = replace(input, b"$acc", account.as_bytes());
    let Ok(request) = parse_request(&body, ctx.limits()) else {
        return 0;
    };
    let call_ids: Vec<String> = request
        .method_calls
        .iter()
        .map(|(_, _, id)| id.clone())
        .collect();
    let Ok(response) = rt.block_on(execute(&ctx, &caller, request)) else {
        return 0;
    };
    // Every call answers, in order, under its own call id.
    let Some(Value::Array(responses)) = response.get("methodResponses") else {
        panic!("no methodResponses");
    };
    let mut answered = Vec::new();
    for r in responses {
        let Some([Value::String(_), Value::Object(_), Value::String(id)]) =
            r.as_array().map(Vec::as_slice)
        else {
            panic!("malformed method response {r}");
        };
        if answered.last() != Some(id) {
            answered.push(id.clone());
        }
    }
    let mut expected = call_ids;
    expected.dedup();
    assert_eq!(answered, expected, "calls and responses differ");
    responses
        .iter()
        .filter(|r| r[0] != "error" && r[0] != "Core/echo")
        .count()
}
